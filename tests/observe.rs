//! Observing a running appliance: `tap`, per-stage counts, `top`.
//!
//! `mutstream tap STAGE` against a running appliance: with known input,
//! the records printed are exactly the records leaving that stage (as a
//! multiset, with the stage's computed fields), on 1 and 2 shards; a
//! stage that does not exist is refused with the stages that do; an
//! unreachable admin API exits 69.

mod process;

use mutstream::loadgen::{Rng, Tick};
use process::{App, BIN, TICK_SOURCE};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

const N: u64 = 3000;

fn config(shards: usize) -> String {
    format!(
        "[runtime]\nshards = {shards}\npin = false\n[admin]\nlisten = \"127.0.0.1:0\"\n{TICK_SOURCE}\n\
         [pipeline]\ntext = \"\"\"\n\
         cheap: filter price > 50.0\n\
         value: eval notional = price * qty, big = price * qty > 100000.0\n\
         | to out\n\"\"\"\n\
         [[sink]]\nname = \"out\"\nkind = \"blackhole\"\n"
    )
}

fn ticks() -> Vec<Tick> {
    let mut rng = Rng::new(7);
    (0..N)
        .map(|i| Tick::draw(&mut rng, 1_000 + i as i64, i))
        .collect()
}

/// Taps `stage` while sending every tick over `conns` connections; the
/// records printed, parsed.
fn tap_while_sending(shards: usize, stage: &str, conns: usize) -> Vec<serde_json::Value> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.toml"), config(shards)).unwrap();
    let app = App::start(dir.path(), &[]);
    let mut tap = Command::new(BIN)
        .args(["tap", stage, "--limit", "10000", "--interval", "100ms"])
        .args(["--admin", &app.admin.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let out = tap.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    // Armed once it has said what it taps.
    let mut err = BufReader::new(tap.stderr.take().unwrap());
    let mut first = String::new();
    err.read_line(&mut first).unwrap();
    assert!(
        first.contains(&format!("stage {stage} of generation 1")),
        "{first}"
    );
    let all = ticks();
    let mut socks: Vec<_> = (0..conns)
        .map(|_| std::net::TcpStream::connect(app.data).unwrap())
        .collect();
    // In writes of 100 records, as a feed sends them.
    for (i, chunk) in all.chunks(100).enumerate() {
        let mut b = Vec::new();
        for t in chunk {
            t.encode(&mut b);
        }
        socks[i % conns].write_all(&b).unwrap();
    }
    drop(socks);
    let want = expected(stage).len();
    let mut got = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while got.len() < want && Instant::now() < end {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            got.push(l);
        }
    }
    // Anything more would be records the stage did not emit.
    std::thread::sleep(Duration::from_millis(500));
    while let Ok(l) = rx.try_recv() {
        got.push(l);
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(tap.id() as i32, libc::SIGINT) };
    let st = tap.wait().unwrap();
    assert!(st.success(), "tap exited {st:?}");
    app.stop();
    got.iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// What leaves `stage`, by the pipeline's own definition, as
/// (seq, price, notional, big) with `notional` only after `value`.
fn expected(stage: &str) -> Vec<(u64, f64, Option<f64>, Option<bool>)> {
    let mut v: Vec<_> = ticks()
        .into_iter()
        .filter(|t| t.price > 50.0)
        .map(|t| {
            let n = t.price * t.qty as f64;
            match stage {
                "cheap" => (t.seq, t.price, None, None),
                _ => (t.seq, t.price, Some(n), Some(n > 100000.0)),
            }
        })
        .collect();
    v.sort_by_key(|r| r.0);
    v
}

fn check(shards: usize, stage: &str, conns: usize) {
    let got = tap_while_sending(shards, stage, conns);
    let mut seen: Vec<_> = got
        .iter()
        .map(|r| {
            assert_eq!(r["_gen"], 1, "{r}");
            assert!(r["_shard"].as_u64().unwrap() < shards as u64, "{r}");
            (
                r["seq"].as_u64().unwrap(),
                r["price"].as_f64().unwrap(),
                r.get("notional").map(|n| n.as_f64().unwrap()),
                r.get("big").map(|b| b.as_bool().unwrap()),
            )
        })
        .collect();
    seen.sort_by_key(|r| r.0);
    let want = expected(stage);
    assert!(
        want.len() > 100 && want.len() < N as usize,
        "a filter that filters"
    );
    assert_eq!(
        seen.len(),
        want.len(),
        "records tapped vs records leaving {stage}"
    );
    assert_eq!(seen, want);
}

#[test]
fn tap_prints_exactly_the_records_leaving_a_filter() {
    check(1, "cheap", 1);
}

#[test]
fn tap_prints_exactly_the_records_leaving_an_eval_on_two_shards() {
    check(2, "value", 2);
}

#[test]
fn tap_refuses_an_unknown_stage_and_an_unreachable_api() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.toml"), config(1)).unwrap();
    let app = App::start(dir.path(), &[]);
    let out = Command::new(BIN)
        .args(["tap", "nope", "--admin", &app.admin.to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no stage \"nope\"") && err.contains("stages: cheap, value"),
        "{err}"
    );
    app.stop();
    let out = Command::new(BIN)
        .args(["tap", "cheap", "--admin", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

/// `status` counts records into and out of each stage; a stage a mutation
/// keeps by name keeps counting, a new one starts at 0.
#[test]
fn stage_counts_in_status_follow_stages_across_a_mutation() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.toml"), config(2)).unwrap();
    let app = App::start(dir.path(), &[]);
    let client = app.client(None);
    let send = || {
        let mut socks: Vec<_> = (0..2)
            .map(|_| std::net::TcpStream::connect(app.data).unwrap())
            .collect();
        for (i, chunk) in ticks().chunks(100).enumerate() {
            let mut b = Vec::new();
            for t in chunk {
                t.encode(&mut b);
            }
            socks[i % 2].write_all(&b).unwrap();
        }
    };
    let stages = |want_in: u64| -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, v) = client.call("GET", "/v1/status", None, &[]).unwrap();
            if v["stages"][0]["in"] == want_in || Instant::now() > end {
                return v["stages"].clone();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let pass = expected("cheap").len() as u64;
    send();
    let s = stages(N);
    assert_eq!(s[0]["name"], "cheap");
    assert_eq!(s[0]["op"], "filter");
    assert_eq!(
        (s[0]["in"].as_u64(), s[0]["out"].as_u64()),
        (Some(N), Some(pass))
    );
    assert_eq!(
        (s[1]["in"].as_u64(), s[1]["out"].as_u64()),
        (Some(pass), Some(pass))
    );
    let (st, v) = client
        .call(
            "POST",
            "/v1/pipeline",
            Some(
                b"cheap: filter price > 50.0\nextra: filter qty > 0\nvalue: eval notional = price * 2.0\n| to out\n"
                    .to_vec(),
            ),
            &[],
        )
        .unwrap();
    assert_eq!(st, 200, "{v}");
    send();
    let s = stages(2 * N);
    let by = |n: &str| {
        s.as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by("cheap")["in"].as_u64(), Some(2 * N), "{s}");
    assert_eq!(
        by("extra")["in"].as_u64(),
        Some(pass),
        "a new stage starts at 0: {s}"
    );
    assert_eq!(by("value")["in"].as_u64(), Some(2 * pass), "{s}");
    app.stop();
}

/// `top` draws under a pseudo-terminal (sources, stages with their
/// counts, shards), refreshes, and quits on `q` with exit 0, leaving the
/// terminal as it found it; an unreachable API is one line and exit 69.
#[test]
fn top_renders_on_a_terminal_and_quits_on_q() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("m.toml"), config(1)).unwrap();
    let app = App::start(dir.path(), &[]);
    let mut s = std::net::TcpStream::connect(app.data).unwrap();
    let mut b = Vec::new();
    for t in ticks() {
        t.encode(&mut b);
    }
    s.write_all(&b).unwrap();
    let admin = app.admin.to_string();
    let mut p = process::pty::OnPty::spawn(
        &["top", "--admin", &admin, "--interval", "200ms"],
        dir.path(),
    );
    // The first picture, then refreshes (each draw ends by hiding the
    // cursor; ratatui redraws only what changed).
    p.until(Duration::from_secs(20), |t| {
        t.contains("mutstream top") && t.contains("3,000") && t.matches("\x1b[?25l").count() >= 3
    });
    let t = p.text();
    for want in [
        "sources",
        "cheap",
        "filter",
        "value",
        "eval",
        "shards",
        "generation 1",
    ] {
        assert!(t.contains(want), "no {want:?} on the screen:\n{t}");
    }
    p.type_keys("q");
    let (code, out) = p.finish(Duration::from_secs(10));
    assert_eq!(code, 0, "{out}");
    // The alternate screen was entered and left.
    assert!(
        out.contains("\x1b[?1049h") && out.contains("\x1b[?1049l"),
        "{out:?}"
    );
    app.stop();
    let out = Command::new(BIN)
        .args(["top", "--admin", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(69));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}
