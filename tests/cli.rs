//! The `mutstream` command as users run it: exit codes, one-line errors,
//! the examples verbatim, a second appliance on a busy address, SIGHUP.
//!
//! How: runs the built binary (`CARGO_BIN_EXE_mutstream`) in temp dirs.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mutstream"))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/examples")
}

fn run(args: &[&str], dir: &Path) -> Output {
    bin().args(args).current_dir(dir).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_passes_on_every_example_verbatim() {
    for cfg in ["ticks.toml", "iot.toml"] {
        let o = run(
            &["check", "--config", examples().join(cfg).to_str().unwrap()],
            Path::new("."),
        );
        assert!(o.status.success(), "{cfg}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("valid"), "{out}");
        assert!(out.contains("(route): route alerts when"), "{out}");
        assert!(!out.contains("journal\" is not yet supported"), "{out}");
    }
    // The replacement pipelines check against the example configs too.
    for (mts, cfg, schema) in [
        ("ticks-vwap.mts", "ticks.toml", "tick"),
        ("iot-downsample.mts", "iot.toml", "sensor"),
    ] {
        let o = run(
            &[
                "check",
                examples().join(mts).to_str().unwrap(),
                "--schema",
                schema,
                "--config",
                examples().join(cfg).to_str().unwrap(),
            ],
            Path::new("."),
        );
        assert!(o.status.success(), "{mts}: {}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("(window)"), "{out}");
        assert!(out.contains("window_start:timestamp"), "{out}");
    }
}

#[test]
fn check_reports_pipeline_errors_with_location() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = std::fs::read_to_string(examples().join("ticks.toml")).unwrap();
    std::fs::write(dir.path().join("ticks.toml"), cfg).unwrap();
    std::fs::write(dir.path().join("instruments.csv"), "symbol,sector,lot\n").unwrap();
    std::fs::write(
        dir.path().join("ticks.mts"),
        "hot: filter prcie > $min_price\n   | to journal\n",
    )
    .unwrap();
    let o = run(&["check", "--config", "ticks.toml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    let first = e.lines().next().unwrap();
    assert!(
        first.ends_with("ticks.mts:1:13: unknown field `prcie`; did you mean `price`?"),
        "{e}"
    );
    assert!(e.contains("^^^^^"), "the span is underlined: {e}");
}

#[test]
fn config_errors_are_one_line_with_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.toml"),
        "[runtime]\nshards = 1\nbogus = 3\n",
    )
    .unwrap();
    let o = run(&["check", "--config", "bad.toml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(e.contains("bad.toml:3:1:") && e.contains("`bogus`"), "{e}");
    let o = run(&["check", "--config", "missing.toml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.toml: cannot read"));
}

#[test]
fn usage_errors_exit_2() {
    let o = run(&["frobnicate"], Path::new("."));
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["run", "--no-such-flag"], Path::new("."));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn run_refuses_what_it_cannot_do_yet() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("fwd.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[pipeline]\ntext = \"to fwd\"\n[[sink]]\nname = \"fwd\"\nkind = \"tcp\"\n",
            TICKS_HEAD
        ),
    )
    .unwrap();
    let o = run(&["run", "--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("not yet supported in this version"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
}

/// A tick schema and a TCP source on an ephemeral port.
const TICKS_HEAD: &str = "[admin]\nlisten = \"127.0.0.1:0\"\n[schemas.tick]\nsize = 32\nfields = [\n  { name = \"ts\", type = \"timestamp\", offset = 0 },\n  { name = \"seq\", type = \"u64\", offset = 8 },\n]\n[[source]]\nname = \"t\"\ntransport = \"tcp\"\nlisten = \"127.0.0.1:0\"\nframing = \"fixed\"\nformat = \"binary\"\nschema = \"tick\"\n";

#[test]
fn a_journal_has_one_writer_and_a_second_gets_exit_74() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("j.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}[pipeline]\ntext = \"to j\"\n[[sink]]\nname = \"j\"\nkind = \"journal\"\npath = \"./jdir\"\nsegment_size = \"1MiB\"\n",
            TICKS_HEAD
        ),
    )
    .unwrap();
    let mut first = Running::start(&["run", "--config", cfg.to_str().unwrap()], dir.path());
    first.wait_for("running generation 1");
    let o = run(&["run", "--config", cfg.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(74), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("in use by another mutstream process"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    let (st, log) = first.stop();
    assert!(st.success(), "{}", log.join("\n"));
    // An empty journal reads as nothing, successfully.
    let o = run(&["read", "jdir"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    let o = run(&["read", "no-such-dir"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no journal here"), "{}", stderr(&o));
    let o = run(&["read", "jdir", "--from", "zero"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("expected SHARD:SEQ"), "{}", stderr(&o));
}

/// A running appliance with its stderr collected line by line.
struct Running {
    child: Child,
    lines: Receiver<String>,
    log: Vec<String>,
}

impl Running {
    fn start(args: &[&str], dir: &Path) -> Running {
        let mut child = bin()
            .args(args)
            .current_dir(dir)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines() {
                if tx.send(l.unwrap()).is_err() {
                    return;
                }
            }
        });
        Running {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits for a log line containing `what`.
    fn wait_for(&mut self, what: &str) -> String {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("no {what:?} in:\n{}", self.log.join("\n")));
            self.log.push(l.clone());
            if l.contains(what) {
                return l;
            }
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: signals our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    fn stop(mut self) -> (std::process::ExitStatus, Vec<String>) {
        self.signal(libc::SIGINT);
        let st = self.child.wait().unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(300)) {
            self.log.push(l);
        }
        (st, std::mem::take(&mut self.log))
    }
}

/// A failed test does not leave its appliance running (holding its ports
/// and the test runner's output pipe).
impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn port_of(line: &str) -> u16 {
    let a = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap();
    a.parse::<std::net::SocketAddr>().unwrap().port()
}

const SMALL: &str = r#"
[admin]
listen = "127.0.0.1:0"
[runtime]
shards = 1
pin = false
[schemas.tick]
size = 32
fields = [
  { name = "ts",     type = "timestamp", offset = 0 },
  { name = "seq",    type = "u64",       offset = 8 },
  { name = "symbol", type = "u32",       offset = 16 },
  { name = "qty",    type = "i32",       offset = 20 },
  { name = "price",  type = "f64",       offset = 24 },
]
[[source]]
name = "t"
transport = "tcp"
listen = "127.0.0.1:PORT"
framing = "fixed"
format = "binary"
schema = "tick"
[pipeline]
file = "p.mts"
[params]
min_price = 10.0
[[sink]]
name = "out"
kind = "file"
path = "out.jsonl"
"#;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn second_appliance_on_the_same_address_fails() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("m.toml"),
        SMALL.replace("PORT", &port.to_string()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.mts"),
        "filter price > $min_price | to out\n",
    )
    .unwrap();
    let mut first = Running::start(&["run", "--config", "m.toml"], dir.path());
    first.wait_for("running generation 1");
    let o = run(&["run", "--config", "m.toml"], dir.path());
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("address in use"), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    let (st, _) = first.stop();
    assert!(st.success());
}

/// SIGHUP re-reads `[tables.*]` from the config file: a changed inline set
/// and a new table take effect in the new generation.
#[test]
fn sighup_applies_changed_tables() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = |keys: &str, extra: &str| {
        SMALL.replace("PORT", &port.to_string())
            + &format!("[tables.watch]\nkey = {{ symbol = \"u64\" }}\nkeys = [{keys}]\n{extra}")
    };
    std::fs::write(dir.path().join("m.toml"), cfg("1", "")).unwrap();
    std::fs::write(
        dir.path().join("p.mts"),
        "filter symbol in @watch | to out\n",
    )
    .unwrap();
    let mut r = Running::start(&["run", "--config", "m.toml"], dir.path());
    r.wait_for("running generation 1");
    let send = |seq: u64, symbol: u32| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut b = Vec::new();
        mutstream::loadgen::Tick {
            ts: 1,
            seq,
            symbol,
            qty: 2,
            price: 20.0,
        }
        .encode(&mut b);
        s.write_all(&b).unwrap();
    };
    send(0, 1);
    send(1, 2);
    std::fs::write(
        dir.path().join("m.toml"),
        cfg(
            "2",
            "[tables.names]\nkey = { symbol = \"u64\" }\ncolumns = { name = \"string\" }\nrows = [{ symbol = 2, name = \"two\" }]\n",
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.mts"),
        "filter symbol in @watch | enrich @names on symbol | to out\n",
    )
    .unwrap();
    r.signal(libc::SIGHUP);
    let l = r.wait_for("SIGHUP:");
    assert!(
        l.contains("generation 2 (author sighup) runs on every shard"),
        "{l}"
    );
    send(2, 1);
    send(3, 2);
    std::thread::sleep(Duration::from_millis(300));
    let (st, log) = r.stop();
    assert!(st.success(), "{}", log.join("\n"));
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("\"seq\":0") && lines[0].ends_with("\"_gen\":1}"),
        "{out}"
    );
    assert!(
        lines[1].contains("\"seq\":3")
            && lines[1].contains("\"name\":\"two\"")
            && lines[1].ends_with("\"_gen\":2}"),
        "{out}"
    );
}

#[test]
fn sighup_applies_a_new_pipeline_and_params() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::write(
        dir.path().join("m.toml"),
        SMALL.replace("PORT", &port.to_string()),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("p.mts"),
        "filter price > $min_price | to out\n",
    )
    .unwrap();
    let mut r = Running::start(&["run", "--config", "m.toml"], dir.path());
    let l = r.wait_for("listening on tcp");
    assert_eq!(port_of(&l), port);
    r.wait_for("running generation 1");
    let send = |seq: u64, price: f64| {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut b = Vec::new();
        mutstream::loadgen::Tick {
            ts: 1,
            seq,
            symbol: 1,
            qty: 2,
            price,
        }
        .encode(&mut b);
        s.write_all(&b).unwrap();
    };
    send(0, 5.0);
    send(1, 50.0);
    // A broken pipeline is refused; the running one stays.
    std::fs::write(dir.path().join("p.mts"), "filter prcie > 1 | to out\n").unwrap();
    r.signal(libc::SIGHUP);
    let l = r.wait_for("SIGHUP:");
    assert!(
        l.contains("unknown field `prcie`") && l.contains("keeping generation 1"),
        "{l}"
    );
    // A new pipeline and a new param value become generation 2.
    std::fs::write(
        dir.path().join("p.mts"),
        "filter price > $min_price | eval x = qty * 10 | to out\n",
    )
    .unwrap();
    let cfg = std::fs::read_to_string(dir.path().join("m.toml"))
        .unwrap()
        .replace("min_price = 10.0", "min_price = 1.0");
    std::fs::write(dir.path().join("m.toml"), cfg).unwrap();
    r.signal(libc::SIGHUP);
    let l = r.wait_for("SIGHUP:");
    assert!(
        l.contains("generation 2 (author sighup) runs on every shard"),
        "{l}"
    );
    send(2, 5.0);
    // A stream ending mid-record: one bad record, reported on stop.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(&[7u8; 40]).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    let (st, log) = r.stop();
    assert!(st.success(), "{}", log.join("\n"));
    assert!(
        log.iter()
            .any(|l| l.contains("source t: 1 bad records dropped (truncated: 1); last: truncated")),
        "{}",
        log.join("\n")
    );
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    // (The cut stream's one whole record has a tiny price: filtered out.)
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].contains("\"seq\":1") && lines[0].ends_with("\"_gen\":1}"),
        "{out}"
    );
    assert!(
        lines[1].contains("\"seq\":2")
            && lines[1].contains("\"x\":20")
            && lines[1].ends_with("\"_gen\":2}"),
        "{out}"
    );
}

#[test]
fn embedded_default_runs_and_logs_json() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded default listens on 127.0.0.1:9000/9001: skip if taken
    // by something else on this machine.
    if UdpSocket::bind("127.0.0.1:9000").is_err()
        || std::net::TcpListener::bind("127.0.0.1:9001").is_err()
    {
        eprintln!("ports 9000/9001 busy; skipping");
        return;
    }
    let mut r = Running::start(&["--log-format", "json", "run"], dir.path());
    let l = r.wait_for("running generation 1");
    let v: serde_json::Value = serde_json::from_str(&l).expect("a JSON log line");
    assert_eq!(v["level"], "INFO");
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut b = Vec::new();
    for i in 0..32 {
        mutstream::loadgen::Tick {
            ts: 1,
            seq: i,
            symbol: 1,
            qty: 1000,
            price: 199.0,
        }
        .encode(&mut b);
    }
    u.send_to(&b, "127.0.0.1:9000").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (st, log) = r.stop();
    assert!(st.success(), "{}", log.join("\n"));
    let o = run(&["read", "mutstream-data/alerts"], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let alerts = String::from_utf8(o.stdout).unwrap();
    assert_eq!(
        alerts.lines().count(),
        32,
        "notional 199000 > 150000: every tick is an alert"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("source ticks-udp: 32 records")),
        "{}",
        log.join("\n")
    );
}

#[test]
fn stdout_sink_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cfg = SMALL
        .replace("PORT", &port.to_string())
        .replace("kind = \"file\"\npath = \"out.jsonl\"", "kind = \"stdout\"");
    std::fs::write(dir.path().join("m.toml"), cfg).unwrap();
    std::fs::write(
        dir.path().join("p.mts"),
        "filter price > $min_price | to out\n",
    )
    .unwrap();
    let mut child = bin()
        .args(["run", "--config", "m.toml"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines() {
            let _ = tx.send(l.unwrap());
        }
    });
    while !rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap()
        .contains("running generation")
    {}
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut b = Vec::new();
    for i in 0..100 {
        mutstream::loadgen::Tick {
            ts: i,
            seq: i as u64,
            symbol: 7,
            qty: 1,
            price: if i % 2 == 0 { 50.0 } else { 5.0 },
        }
        .encode(&mut b);
    }
    s.write_all(&b).unwrap();
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: signals our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 50, "{text}");
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["price"].as_f64(), Some(50.0));
    }
}

#[test]
fn test_command_runs_the_example_cases() {
    let cases = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases/examples.toml");
    let o = run(&["test", cases.to_str().unwrap()], Path::new("."));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("4 tests, 4 passed, 0 failed"), "{out}");
}

/// The language reference's examples (docs/PIPELINE.md §4) are runnable
/// and right: one hand-worked case per stage, and `check` accepts the config.
#[test]
fn reference_examples_pass() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/examples");
    let o = run(
        &["test", docs.join("stages.cases.toml").to_str().unwrap()],
        Path::new("."),
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("15 tests, 15 passed, 0 failed"), "{out}");
    for mts in std::fs::read_dir(&docs).unwrap() {
        let p = mts.unwrap().path();
        if p.extension().is_some_and(|e| e == "mts") {
            let o = run(
                &[
                    "check",
                    "--config",
                    docs.join("stages.toml").to_str().unwrap(),
                    p.to_str().unwrap(),
                    "--schema",
                    "trade",
                ],
                Path::new("."),
            );
            assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
        }
    }
}

#[test]
fn test_command_prints_a_diff_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let ex = examples();
    std::fs::write(dir.path().join("in.jsonl"), "{\"ts\":1,\"seq\":1,\"symbol\":5,\"qty\":120,\"price\":101.25}\n{\"ts\":2,\"qty\":\"x\"}\n").unwrap();
    std::fs::write(
        dir.path().join("out.jsonl"),
        "{\"ts\":1,\"seq\":1,\"symbol\":5,\"qty\":120,\"price\":101.25,\"notional\":12150.0,\"sector\":\"tech\",\"lot\":10,\"_sink\":\"journal\"}\n",
    )
    .unwrap();
    let o = run(
        &[
            "test",
            ex.join("ticks.mts").to_str().unwrap(),
            "--config",
            ex.join("ticks.toml").to_str().unwrap(),
            "--schema",
            "tick",
            "--input",
            "in.jsonl",
            "--expect",
            "out.jsonl",
        ],
        dir.path(),
    );
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("input line 2 rejected: type_mismatch (field qty)"),
        "{out}"
    );
    assert!(out.contains("- {\"ts\":1,\"seq\":1,\"symbol\":5,\"qty\":120,\"price\":101.25,\"notional\":12150.0,\"sector\":\"tech\",\"lot\":10,\"_sink\":\"journal\"}"), "{out}");
    assert!(out.contains("+ {\"ts\":1,\"seq\":1,\"symbol\":5,\"qty\":120,\"price\":101.25,\"notional\":12150.0,\"sector\":\"tech\",\"lot\":100,\"_sink\":\"journal\"}"), "{out}");
    assert!(out.contains("1 test, 0 passed, 1 failed"), "{out}");
}
