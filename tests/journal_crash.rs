//! kill -9 loop (RELIABILITY.md test 1) on the real binary: `mutstream
//! run` with a journal, seeded ticks with per-connection sequence numbers
//! over TCP, a tailer in another process (`mutstream read --follow`),
//! kill -9 at a seeded moment (one in ten during startup), reopen. After
//! each reopen the new part of the journal is checked against what was
//! sent, with the checker classes of Jepsen: nothing the tailer saw is
//! lost, no duplicate, no gap, no reordering, nothing invented.
//!
//! `CRASH_ITERATIONS` (default 20; tools/heavy-tests.sh: 200).

use mutstream::loadgen::{Rng, Tick};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mutstream");

const CONFIG: &str = r#"
[admin]
listen = "127.0.0.1:0"
[runtime]
shards = 1
batch_max = 256

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
listen = "127.0.0.1:0"
framing = "fixed"
format = "binary"
schema = "tick"

[pipeline]
text = "to j"

[[sink]]
name = "j"
kind = "journal"
path = "./j"
segment_size = "1MiB"
fsync = "never"
"#;

fn below(r: &mut Rng, n: u64) -> u64 {
    r.next_u64() % n.max(1)
}

/// The tick connection `conn` sends as its `seq`-th record.
fn tick(conn: u32, seq: u64) -> Tick {
    Tick {
        ts: 1_700_000_000_000_000_000 + seq as i64,
        seq,
        symbol: conn,
        qty: (seq % 997) as i32 + 1,
        price: seq as f64 + 0.25,
    }
}

/// `mutstream run` with its stderr lines on a channel.
fn spawn_run(dir: &Path) -> (Child, Receiver<String>) {
    let mut child = Command::new(BIN)
        .args(["run", "--config", "crash.toml"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for a line containing `what`; returns it and the lines before.
fn wait_line(rx: &Receiver<String>, what: &str, log: &mut Vec<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            log.push(l.clone());
            if l.contains(what) {
                return l;
            }
        }
    }
    panic!("no {what:?} within 30 s; log:\n{}", log.join("\n"));
}

fn kill9(child: &mut Child) {
    // SAFETY: kill(2) with a pid we spawned and have not reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    let _ = child.wait();
}

/// What the checker knows of each connection.
#[derive(Default)]
struct Conn {
    /// Records written to the socket (an upper bound on what can arrive).
    sent: u64,
    /// The next sequence the journal must hold for it.
    next: u64,
}

/// Reads the journal from `from`, checking each new record; returns the
/// journal's next sequence.
fn verify(dir: &Path, from: u64, conns: &mut HashMap<u32, Conn>) -> u64 {
    let out = Command::new(BIN)
        .args(["read", "j", "--from", &format!("0:{from}")])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "read reported: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut next = from;
    for l in String::from_utf8(out.stdout).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["_seq"].as_u64(), Some(next), "journal sequence gap: {l}");
        next += 1;
        let c = v["symbol"].as_u64().unwrap() as u32;
        let s = v["seq"].as_u64().unwrap();
        let conn = conns
            .get_mut(&c)
            .unwrap_or_else(|| panic!("invented: no connection {c}: {l}"));
        assert!(s >= conn.next, "duplicate or reordered: {l}");
        assert_eq!(
            s, conn.next,
            "gap: connection {c} expected {}: {l}",
            conn.next
        );
        assert!(s < conn.sent, "invented: connection {c} never sent {s}");
        let t = tick(c, s);
        assert_eq!(v["ts"].as_i64(), Some(t.ts), "{l}");
        assert_eq!(v["qty"].as_i64(), Some(t.qty as i64), "{l}");
        assert_eq!(v["price"].as_f64(), Some(t.price), "{l}");
        conn.next += 1;
    }
    next
}

#[test]
fn kill_9_loses_nothing_committed() {
    let iterations: u64 = std::env::var("CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("crash.toml"), CONFIG).unwrap();
    let mut rng = Rng::new(0xdead_beef);
    let conns = Arc::new(Mutex::new(HashMap::<u32, Conn>::new()));
    let mut checked = 0u64;
    let mut recovery_ms = Vec::new();
    let mut tailer_total = 0u64;
    let mut startup_kills = 0;
    for it in 0..iterations {
        let (mut app, rx) = spawn_run(dir.path());
        if below(&mut rng, 10) == 0 {
            // During startup: recovery and segment creation cut anywhere.
            std::thread::sleep(Duration::from_micros(below(&mut rng, 30_000)));
            kill9(&mut app);
            startup_kills += 1;
            continue;
        }
        let mut log = Vec::new();
        let l = wait_line(&rx, "source t listening on tcp ", &mut log);
        let addr = l
            .rsplit("tcp ")
            .next()
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        wait_line(&rx, "running generation 1", &mut log);
        checked = verify(dir.path(), checked, &mut conns.lock().unwrap());

        // A tailer in another process, from where the journal is now.
        let mut tailer = Command::new(BIN)
            .args(["read", "j", "--follow", "--from", &format!("0:{checked}")])
            .current_dir(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(HashMap::<u32, u64>::new()));
        let seen_n = Arc::new(AtomicU64::new(0));
        let out = tailer.stdout.take().unwrap();
        let reader = {
            let (seen, seen_n) = (seen.clone(), seen_n.clone());
            std::thread::spawn(move || {
                for l in BufReader::new(out).lines().map_while(Result::ok) {
                    let v: serde_json::Value = serde_json::from_str(&l).unwrap();
                    let c = v["symbol"].as_u64().unwrap() as u32;
                    let s = v["seq"].as_u64().unwrap();
                    let mut m = seen.lock().unwrap();
                    let e = m.entry(c).or_insert(0);
                    *e = (*e).max(s + 1);
                    seen_n.fetch_add(1, Ordering::Relaxed);
                }
            })
        };

        // Two senders with their own sequence numbers.
        let stop = Arc::new(AtomicBool::new(false));
        let senders: Vec<_> = (0..2u32)
            .map(|k| {
                let id = (it as u32) * 10 + k + 1;
                conns.lock().unwrap().insert(id, Conn::default());
                let (addr, stop, conns) = (addr.clone(), stop.clone(), conns.clone());
                std::thread::spawn(move || {
                    let Ok(mut s) = TcpStream::connect(&addr) else {
                        return;
                    };
                    let mut seq = 0u64;
                    let mut buf = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        buf.clear();
                        for i in 0..64 {
                            tick(id, seq + i).encode(&mut buf);
                        }
                        // Counted before the write: a record partly
                        // written when the appliance dies may still arrive.
                        conns.lock().unwrap().get_mut(&id).unwrap().sent = seq + 64;
                        if s.write_all(&buf).is_err() {
                            return;
                        }
                        seq += 64;
                        std::thread::sleep(Duration::from_micros(300));
                    }
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen_n.load(Ordering::Relaxed) < 1_000 {
            assert!(Instant::now() < deadline, "the tailer saw nothing");
            std::thread::sleep(Duration::from_millis(2));
        }
        std::thread::sleep(Duration::from_micros(below(&mut rng, 200_000)));
        kill9(&mut app);
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
        // The tailer may still read what was committed before the kill.
        std::thread::sleep(Duration::from_millis(50));
        // SAFETY: kill(2) with a pid we spawned and have not reaped.
        unsafe { libc::kill(tailer.id() as i32, libc::SIGTERM) };
        let _ = tailer.wait();
        reader.join().unwrap();
        tailer_total += seen_n.load(Ordering::Relaxed);
        // Everything the tailer saw must survive the reopen: checked by
        // the next iteration's verify, against these marks.
        let seen = seen.lock().unwrap().clone();
        let t0 = Instant::now();
        let (mut app2, rx2) = spawn_run(dir.path());
        let mut log2 = Vec::new();
        wait_line(&rx2, "running generation 1", &mut log2);
        recovery_ms.push(t0.elapsed().as_secs_f64() * 1e3);
        checked = verify(dir.path(), checked, &mut conns.lock().unwrap());
        for (c, upto) in seen {
            let next = conns.lock().unwrap()[&c].next;
            assert!(
                next >= upto,
                "lost: the tailer saw connection {c} up to {upto}, the journal holds {next}"
            );
        }
        // SAFETY: kill(2) with a pid we spawned and have not reaped.
        unsafe { libc::kill(app2.id() as i32, libc::SIGTERM) };
        let st = app2.wait().unwrap();
        assert!(st.success());
    }
    // A last clean start over everything.
    let (mut app, rx) = spawn_run(dir.path());
    wait_line(&rx, "running generation 1", &mut Vec::new());
    checked = verify(dir.path(), checked, &mut conns.lock().unwrap());
    // SAFETY: kill(2) with a pid we spawned and have not reaped.
    unsafe { libc::kill(app.id() as i32, libc::SIGTERM) };
    assert!(app.wait().unwrap().success());
    recovery_ms.sort_by(f64::total_cmp);
    let p = |q: f64| recovery_ms[((recovery_ms.len() - 1) as f64 * q).round() as usize];
    eprintln!(
        "kill -9 loop: {iterations} iterations ({startup_kills} during startup), {checked} records journaled and checked, {tailer_total} seen by tailers; 0 lost, 0 duplicate, 0 gaps, 0 reordered, 0 invented; restart to ready: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert!(checked > 1_000 * (iterations - startup_kills));
}
