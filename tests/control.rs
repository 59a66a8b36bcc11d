//! The control API against a real `mutstream run` process over real
//! HTTP: changes while data flows, refusals that change nothing, If-Match,
//! Idempotency-Key, tokens, the audit, restarts that restore the last
//! generation, and `ctl`'s exit codes.

use mutstream::control::client::Client;
use mutstream::loadgen::Tick;
use serde_json::{Value, json};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod process;

use process::{App, BIN, TICK_SOURCE};

const TOKEN: &str = "alice-secret-0123456789";

fn config(admin: &str) -> String {
    format!(
        r#"
[admin]
{admin}
[runtime]
shards = 1
pin = false
{TICK_SOURCE}
[pipeline]
file = "p.mts"
[params]
min_price = 10.0
[tables.watch]
key = {{ symbol = "u64" }}
keys = [1, 2, 3]
[tables.names]
key = {{ symbol = "u64" }}
columns = {{ name = "string", lot = "i64" }}
rows = [{{ symbol = 1, name = "one", lot = 10 }}]
[[sink]]
name = "out"
kind = "file"
path = "out.jsonl"
"#
    )
}

const PIPELINE: &str = "filter price > $min_price and symbol in @watch | to out\n";

/// Ticks `(symbol, price)` over one connection, ts and seq from 1 000 and 0.
fn send(app: &App, ticks: &[(u32, f64)]) {
    let mut s = TcpStream::connect(app.data).unwrap();
    let mut b = Vec::new();
    for (i, &(symbol, price)) in ticks.iter().enumerate() {
        Tick {
            ts: 1_000 + i as i64,
            seq: i as u64,
            symbol,
            qty: 1,
            price,
        }
        .encode(&mut b);
    }
    s.write_all(&b).unwrap();
}

fn setup(admin: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.toml"), config(admin)).unwrap();
    std::fs::write(dir.path().join("p.mts"), PIPELINE).unwrap();
    dir
}

fn out_lines(dir: &Path, n: usize) -> Vec<Value> {
    let t = Instant::now();
    loop {
        let s = std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default();
        let v: Vec<Value> = s
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if v.len() >= n || t.elapsed() > Duration::from_secs(10) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn call(c: &Client, m: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    c.call(m, path, body.map(|b| serde_json::to_vec(&b).unwrap()), &[])
        .unwrap()
}

fn generation(c: &Client) -> u64 {
    call(c, "GET", "/v1/status", None).1["generation"]
        .as_u64()
        .unwrap()
}

#[test]
fn changes_apply_while_data_flows_and_refusals_change_nothing() {
    let dir = setup("listen = \"127.0.0.1:0\"");
    let app = App::start(dir.path(), &[]);
    let c = app.client(None);
    assert_eq!(call(&c, "GET", "/health", None).0, 200);
    assert_eq!(call(&c, "GET", "/ready", None).0, 200);
    let (st, s) = call(&c, "GET", "/v1/status", None);
    assert_eq!(st, 200);
    assert_eq!(s["generation"], 1);
    assert_eq!(s["shards"][0]["generation"], 1);

    send(&app, &[(1, 15.0), (2, 5.0), (9, 50.0)]);
    assert_eq!(out_lines(dir.path(), 1).len(), 1);

    // An integer literal sets a float parameter; the answer comes once
    // every shard runs the new generation.
    let (st, r) = call(
        &c,
        "PUT",
        "/v1/params/min_price",
        Some(json!({"value": 20})),
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["generation"], 2);
    assert!(r["acked_ns"].as_u64().unwrap() > 0);
    send(&app, &[(1, 15.0), (1, 25.0)]);
    let out = out_lines(dir.path(), 2);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[1]["price"], 25.0);
    assert_eq!(out[1]["_gen"], 2);

    // Refusals: each leaves generation 2 running.
    let (st, r) = call(
        &c,
        "PUT",
        "/v1/params/min_price",
        Some(json!({"value": "abc"})),
    );
    assert_eq!(st, 400, "{r}");
    assert!(r["error"].as_str().unwrap().contains("not a number"), "{r}");
    let (st, r) = call(&c, "PUT", "/v1/params/nope", Some(json!({"value": 1})));
    assert_eq!(st, 404, "{r}");
    let (st, r) = c
        .call(
            "POST",
            "/v1/pipeline?origin=q.mts",
            Some(b"filter prcie > 1 | to out\n".to_vec()),
            &[],
        )
        .unwrap();
    assert_eq!(st, 400, "{r}");
    assert!(
        r["error"]
            .as_str()
            .unwrap()
            .starts_with("q.mts:1:8: unknown field `prcie`"),
        "{r}"
    );
    let (st, r) = call(&c, "PUT", "/v1/tables/nosuch/1", None);
    assert_eq!(st, 404, "{r}");
    let (st, r) = call(&c, "DELETE", "/v1/tables/watch/99", None);
    assert_eq!(st, 404, "{r}");
    let (st, r) = c
        .call(
            "POST",
            "/v1/tables/names",
            Some(b"symbol,name,lot\nx,one,1\n".to_vec()),
            &[],
        )
        .unwrap();
    assert_eq!(st, 400, "{r}");
    assert!(r["error"].as_str().unwrap().contains("line 2"), "{r}");
    assert_eq!(generation(&c), 2);

    // check: compiles, says which stages keep state, changes nothing.
    let (st, r) = c
        .call(
            "POST",
            "/v1/pipeline?dry_run=1&origin=w.mts",
            Some(b"w: window tumbling 1s by symbol emit n = count()\n | to out\n".to_vec()),
            &[],
        )
        .unwrap();
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["stages"][0]["stage"], "w");
    assert_eq!(r["stages"][0]["state"], "fresh");
    assert_eq!(generation(&c), 2);

    // If-Match against a stale generation: 409, nothing changes.
    let (st, r) = c
        .call(
            "PUT",
            "/v1/params/min_price",
            Some(br#"{"value": 1.5}"#.to_vec()),
            &[("If-Match", "1".into())],
        )
        .unwrap();
    assert_eq!(st, 409, "{r}");
    let (st, _) = c
        .call(
            "PUT",
            "/v1/params/min_price",
            Some(br#"{"value": 1.5}"#.to_vec()),
            &[("If-Match", "2".into())],
        )
        .unwrap();
    assert_eq!(st, 200);
    assert_eq!(generation(&c), 3);

    // A retried request with the same Idempotency-Key is answered once.
    let key = [("Idempotency-Key", "k-1".to_string())];
    let (st, a) = c.call("PUT", "/v1/tables/watch/9", None, &key).unwrap();
    assert_eq!(st, 200, "{a}");
    let (st, b) = c.call("PUT", "/v1/tables/watch/9", None, &key).unwrap();
    assert_eq!(st, 200);
    assert_eq!(a["generation"], b["generation"]);
    assert_eq!(b["replayed"], true);
    let (st, _) = c.call("DELETE", "/v1/tables/watch/9", None, &key).unwrap();
    assert_eq!(st, 422);
    assert_eq!(generation(&c), 4);
    send(&app, &[(9, 50.0)]);
    let out = out_lines(dir.path(), 3);
    assert_eq!(out.len(), 3, "{out:?}");
    assert_eq!(out[2]["symbol"], 9);
    assert_eq!(out[2]["_gen"], 4);

    // A whole new pipeline with an enrichment from a table loaded whole.
    let (st, r) = c
        .call(
            "POST",
            "/v1/tables/names",
            Some(b"symbol,name,lot\n9,nine,100\n2,two,20\n".to_vec()),
            &[],
        )
        .unwrap();
    assert_eq!(st, 200, "{r}");
    let (st, r) = c
        .call(
            "POST",
            "/v1/pipeline?origin=e.mts",
            Some(b"enrich @names on symbol select name | to out\n".to_vec()),
            &[],
        )
        .unwrap();
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["generation"], 6);
    send(&app, &[(9, 1.0), (1, 1.0)]);
    let out = out_lines(dir.path(), 5);
    assert_eq!(out.len(), 5, "{out:?}");
    assert_eq!(out[3]["name"], "nine");
    assert!(out[4].get("name").is_none(), "{:?}", out[4]);
    assert_eq!(out[4]["_gen"], 6);

    // Rollback publishes generation 5's definition as generation 7.
    let (st, r) = call(&c, "POST", "/v1/rollback", Some(json!({"generation": 5})));
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["generation"], 7);
    send(&app, &[(9, 50.0), (9, 1.0)]);
    let out = out_lines(dir.path(), 6);
    assert_eq!(out.len(), 6, "{out:?}");
    assert!(out[5].get("name").is_none());
    assert_eq!(out[5]["_gen"], 7);

    // History: every change, refusals included, with author and diff.
    let (st, h) = call(&c, "GET", "/v1/history", None);
    assert_eq!(st, 200);
    let h = h["history"].as_array().unwrap().clone();
    let applied: Vec<u64> = h.iter().filter_map(|e| e["generation"].as_u64()).collect();
    assert_eq!(applied, vec![1, 2, 3, 4, 5, 6, 7]);
    assert!(h.iter().filter(|e| e["result"] == "rejected").count() >= 5);
    assert!(
        h.iter()
            .all(|e| e["author"] == "local" || e["author"] == "config")
    );
    assert!(
        h.iter().any(|e| e["diff"]
            .as_str()
            .unwrap()
            .contains("$min_price: 10.0 → 20.0")),
        "{h:?}"
    );
    // The audit journal holds the same lines.
    let audit =
        std::fs::read_to_string(dir.path().join("mutstream-data/state/audit.jsonl")).unwrap();
    assert_eq!(audit.lines().count(), h.len());
    app.stop();
}

fn ctl(dir: &Path, admin: &SocketAddr, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir)
        .arg("ctl")
        .arg("--admin")
        .arg(admin.to_string())
        .args(args)
        .env_remove("MUTSTREAM_TOKEN")
        .output()
        .unwrap()
}

#[test]
fn ctl_speaks_for_humans_and_scripts_with_sysexits() {
    let dir = setup("listen = \"127.0.0.1:0\"");
    std::fs::write(
        dir.path().join("new.mts"),
        "filter price > $min_price | to out\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("bad.mts"), "filter price >\n").unwrap();
    std::fs::write(dir.path().join("names.csv"), "symbol,name,lot\n4,four,40\n").unwrap();
    let app = App::start(dir.path(), &[]);
    let a = app.admin;
    let o = ctl(dir.path(), &a, &["set", "min_price=12.5"]);
    assert!(o.status.success(), "{o:?}");
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.starts_with("generation 2 runs on every shard"), "{s}");
    let o = ctl(dir.path(), &a, &["--json", "status"]);
    assert!(o.status.success());
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["params"]["min_price"], 12.5);
    let o = ctl(dir.path(), &a, &["check", "new.mts"]);
    assert!(o.status.success(), "{o:?}");
    let o = ctl(dir.path(), &a, &["apply", "bad.mts"]);
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.starts_with("mutstream ctl: bad.mts:2:1: expected an expression"),
        "{e}"
    );
    assert!(ctl(dir.path(), &a, &["apply", "new.mts"]).status.success());
    assert!(
        ctl(dir.path(), &a, &["table", "watch", "put", "4"])
            .status
            .success()
    );
    assert!(
        ctl(
            dir.path(),
            &a,
            &["table", "names", "put", "5", "name=five", "lot=50"]
        )
        .status
        .success()
    );
    let o = ctl(dir.path(), &a, &["table", "names", "put", "6", "lot=many"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        ctl(dir.path(), &a, &["table", "names", "load", "names.csv"])
            .status
            .success()
    );
    assert!(
        ctl(dir.path(), &a, &["table", "watch", "del", "4"])
            .status
            .success()
    );
    let o = ctl(dir.path(), &a, &["history"]);
    assert!(o.status.success());
    let h = String::from_utf8_lossy(&o.stdout);
    assert!(h.lines().count() >= 8, "{h}");
    assert!(ctl(dir.path(), &a, &["rollback"]).status.success());
    // Usage errors exit 2, an unreachable API 69.
    assert_eq!(
        ctl(dir.path(), &a, &["set", "min_price"]).status.code(),
        Some(2)
    );
    assert_eq!(ctl(dir.path(), &a, &["frobnicate"]).status.code(), Some(2));
    let down: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let o = ctl(dir.path(), &down, &["status"]);
    assert_eq!(o.status.code(), Some(69));
    assert_eq!(String::from_utf8_lossy(&o.stderr).lines().count(), 1);
    app.stop();
}

#[test]
fn tokens_guard_every_change_and_name_the_author() {
    let dir = setup(&format!(
        "listen = \"127.0.0.1:0\"\ntokens = {{ alice = \"{TOKEN}\" }}"
    ));
    let app = App::start(dir.path(), &[]);
    let anon = app.client(None);
    let wrong = app.client(Some("alice-secret-0123456780"));
    let alice = app.client(Some(TOKEN));
    // Liveness and readiness stay open for probes.
    assert_eq!(call(&anon, "GET", "/health", None).0, 200);
    for c in [&anon, &wrong] {
        assert_eq!(call(c, "GET", "/v1/status", None).0, 401);
        let (st, r) = call(c, "PUT", "/v1/params/min_price", Some(json!({"value": 1})));
        assert_eq!(st, 401, "{r}");
        assert_eq!(call(c, "POST", "/v1/rollback", None).0, 401);
    }
    assert_eq!(generation(&alice), 1);
    let (st, _) = call(
        &alice,
        "PUT",
        "/v1/params/min_price",
        Some(json!({"value": 1})),
    );
    assert_eq!(st, 200);
    let (_, h) = call(&alice, "GET", "/v1/history", None);
    let last = h["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["author"], "alice");
    assert_eq!(last["generation"], 2);
    // ctl takes the token from the environment or a file.
    let tf = dir.path().join("token");
    std::fs::write(&tf, format!("{TOKEN}\n")).unwrap();
    let o = Command::new(BIN)
        .args(["ctl", "--admin", &app.admin.to_string(), "--token-file"])
        .arg(&tf)
        .arg("status")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let o = Command::new(BIN)
        .args(["ctl", "--admin", &app.admin.to_string(), "status"])
        .env("MUTSTREAM_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let o = Command::new(BIN)
        .args(["ctl", "--admin", &app.admin.to_string(), "status"])
        .env("MUTSTREAM_TOKEN", "nope")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    app.stop();
}

#[test]
fn off_loopback_without_tokens_the_appliance_refuses_to_start() {
    let dir = setup("listen = \"0.0.0.0:0\"");
    let o = Command::new(BIN)
        .args(["run", "--config", "m.toml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("is not loopback") && e.contains("tokens"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    // With a token it starts.
    std::fs::write(
        dir.path().join("m.toml"),
        config(&format!(
            "listen = \"0.0.0.0:0\"\ntokens = {{ ops = \"{TOKEN}\" }}"
        )),
    )
    .unwrap();
    let app = App::start(dir.path(), &[]);
    app.stop();
}

fn kill9(mut app: App) {
    app.child.kill().unwrap();
    app.child.wait().unwrap();
}

#[test]
fn a_restart_comes_back_on_the_last_generation_unless_the_files_changed() {
    let dir = setup("listen = \"127.0.0.1:0\"");
    let app = App::start(dir.path(), &[]);
    let c = app.client(None);
    for i in 1..=10 {
        let (st, r) = call(
            &c,
            "PUT",
            "/v1/params/min_price",
            Some(json!({"value": 100 + i})),
        );
        assert_eq!(st, 200, "{r}");
    }
    assert_eq!(generation(&c), 11);
    kill9(app);

    let mut app = App::start(dir.path(), &[]);
    app.wait_for("restored generation 11");
    let c = app.client(None);
    let s = call(&c, "GET", "/v1/status", None).1;
    assert_eq!(s["generation"], 11);
    assert_eq!(s["params"]["min_price"], 110.0);
    // Records are tagged with the restored generation and filtered by it.
    send(&app, &[(1, 105.0), (1, 111.0)]);
    let out = out_lines(dir.path(), 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["_gen"], 11);
    kill9(app);

    // The pipeline file changed: the files win, and the log says so.
    std::fs::write(
        dir.path().join("p.mts"),
        "filter price > $min_price | to out\n",
    )
    .unwrap();
    let mut app = App::start(dir.path(), &[]);
    app.wait_for("changed since generation 11 was applied: the files win");
    let c = app.client(None);
    let s = call(&c, "GET", "/v1/status", None).1;
    assert_eq!(s["generation"], 12);
    assert_eq!(s["params"]["min_price"], 10.0);
    let (st, _) = call(&c, "PUT", "/v1/params/min_price", Some(json!({"value": 7})));
    assert_eq!(st, 200);
    app.stop();

    // The config file changed: the files win again.
    let cfg = std::fs::read_to_string(dir.path().join("m.toml")).unwrap();
    std::fs::write(
        dir.path().join("m.toml"),
        cfg.replace("min_price = 10.0", "min_price = 3.0"),
    )
    .unwrap();
    let mut app = App::start(dir.path(), &[]);
    app.wait_for("the files win");
    assert_eq!(
        call(&app.client(None), "GET", "/v1/status", None).1["params"]["min_price"],
        3.0
    );
    let (st, _) = call(
        &app.client(None),
        "PUT",
        "/v1/params/min_price",
        Some(json!({"value": 8})),
    );
    assert_eq!(st, 200);
    app.stop();

    // --fresh ignores what was saved, and says so.
    let mut app = App::start(dir.path(), &["--fresh"]);
    app.wait_for("--fresh: running the config's pipeline");
    assert_eq!(
        call(&app.client(None), "GET", "/v1/status", None).1["params"]["min_price"],
        3.0
    );
    app.stop();

    // Unchanged files: restored.
    let mut app = App::start(dir.path(), &[]);
    app.wait_for("restored generation");
    app.stop();
}

#[test]
fn sighup_is_a_mutation_by_author_sighup() {
    let dir = setup("listen = \"127.0.0.1:0\"");
    let mut app = App::start(dir.path(), &[]);
    let cfg = std::fs::read_to_string(dir.path().join("m.toml")).unwrap();
    std::fs::write(
        dir.path().join("m.toml"),
        cfg.replace("keys = [1, 2, 3]", "keys = [1, 2, 3, 4]"),
    )
    .unwrap();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(app.child.id() as i32, libc::SIGHUP) };
    app.wait_for("SIGHUP: generation 2 (author sighup) runs on every shard");
    let (_, h) = call(&app.client(None), "GET", "/v1/history", None);
    let last = h["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["author"], "sighup");
    assert_eq!(last["diff"], "@watch: +1 (4 rows in all)");
    app.stop();
}

/// `GET /metrics` over a plain HTTP/1.1 connection: status line,
/// Content-Type and body.
fn scrape(admin: &SocketAddr) -> (String, String, String) {
    use std::io::Read;
    let mut s = TcpStream::connect(admin).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_string();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

/// The sum of family `name`'s samples whose labels include `with`.
fn total(s: &prometheus_parse::Scrape, name: &str, with: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| with.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(h) => h.last().map_or(0.0, |b| b.count),
            other => panic!("{name}: {other:?}"),
        })
        .sum()
}

#[test]
fn metrics_parse_and_count_what_was_sent() {
    let dir = setup("listen = \"127.0.0.1:0\"");
    let app = App::start(dir.path(), &[]);
    // Watched symbols 1-3 above min_price 10.0 pass: 3 of 5.
    send(
        &app,
        &[(1, 15.0), (2, 5.0), (9, 50.0), (3, 20.0), (1, 11.0)],
    );
    assert_eq!(out_lines(dir.path(), 3).len(), 3);
    let c = app.client(None);
    let (st, v) = call(
        &c,
        "PUT",
        "/v1/params/min_price",
        Some(json!({"value": 12.0})),
    );
    assert_eq!(st, 200, "{v}");
    // Latency histograms reach the control thread once a second.
    let end = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, v) = call(&c, "GET", "/v1/status", None);
        let g1 = v["latency_by_generation"]
            .as_array()
            .and_then(|a| a.iter().find(|g| g["generation"] == 1).cloned());
        if let Some(g1) = g1 {
            assert_eq!(g1["pipeline"]["records"], 5, "{v}");
            assert!(g1["pipeline"]["p50_us"].as_f64().unwrap() > 0.0, "{v}");
            assert!(g1["kernel"].is_null(), "TCP has no kernel timestamps: {v}");
            break;
        }
        assert!(
            std::time::Instant::now() < end,
            "no latency for generation 1: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let (status, ctype, body) = scrape(&app.admin);
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let s = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("{e}\n{body}"));
    assert_eq!(
        total(&s, "mutstream_records_total", &[("source", "t")]),
        5.0
    );
    assert_eq!(total(&s, "mutstream_pipeline_records_total", &[]), 5.0);
    assert_eq!(total(&s, "mutstream_filtered_records_total", &[]), 2.0);
    assert_eq!(
        total(&s, "mutstream_sink_records_total", &[("sink", "out")]),
        3.0
    );
    assert_eq!(total(&s, "mutstream_received_bytes_total", &[]), 5.0 * 32.0);
    assert_eq!(total(&s, "mutstream_bad_records_total", &[]), 0.0);
    assert_eq!(total(&s, "mutstream_generation", &[]), 2.0);
    assert_eq!(
        total(&s, "mutstream_shard_generation", &[("shard", "0")]),
        2.0
    );
    assert_eq!(
        total(&s, "mutstream_mutations_total", &[("result", "applied")]),
        1.0
    );
    assert_eq!(total(&s, "mutstream_mutation_ack_seconds", &[]), 1.0);
    assert_eq!(total(&s, "mutstream_pipeline_latency_seconds", &[]), 5.0);
    assert_eq!(total(&s, "mutstream_kernel_latency_seconds", &[]), 0.0);
    let cap = total(&s, "mutstream_sink_ring_capacity_records", &[]);
    assert!(cap >= 1024.0, "{cap}");
    let in_ring = total(&s, "mutstream_sink_ring_records", &[("sink", "out")]);
    assert!((0.0..=cap).contains(&in_ring), "{in_ring}");
    assert_eq!(
        total(
            &s,
            "mutstream_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // CPU time counts in 10 ms ticks: present, perhaps still 0.
    assert!(
        s.samples
            .iter()
            .any(|x| x.metric == "process_cpu_seconds_total")
    );
    assert!(total(&s, "process_start_time_seconds", &[]) > 1.7e9);
    assert!(total(&s, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(total(&s, "process_open_fds", &[]) > 3.0);
    // Every sample is ours or a standard process_ one; no family twice.
    for x in &s.samples {
        assert!(
            x.metric.starts_with("mutstream_") || x.metric.starts_with("process_"),
            "{}",
            x.metric
        );
    }
    let helps = body.lines().filter(|l| l.starts_with("# HELP ")).count();
    let names: std::collections::HashSet<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# HELP ")?.split(' ').next())
        .collect();
    assert_eq!(helps, names.len(), "a family split in two");
    app.stop();
}
