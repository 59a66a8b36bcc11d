//! A tailer in another process follows a writer appending at full rate
//! across segment rolls, and sees every record, in order, intact.
//!
//! The tailer is this test binary run again with `--ignored --exact
//! tailer_process` (the `TAIL_DIR` and `TAIL_RECORDS` variables tell it
//! what to follow). `TAIL_RECORDS` defaults to 10 000 000.

use mutstream::codec::FieldType;
use mutstream::config::Fsync;
use mutstream::journal::tailer::{StartAt, Tailer};
use mutstream::journal::writer::{Options, PartitionWriter, Supply};
use mutstream::pipeline::program::OutSchema;
use mutstream::sink::row::{RowIter, RowValue, encode_values};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn records() -> u64 {
    std::env::var("TAIL_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

fn schema() -> OutSchema {
    OutSchema {
        fields: vec![
            ("k".into(), FieldType::U64),
            ("x".into(), FieldType::F64),
            ("y".into(), FieldType::I64),
        ],
    }
}

#[test]
fn a_tailer_in_another_process_sees_every_record() {
    let n = records();
    let d = tempfile::tempdir().unwrap();
    let opts = Options {
        segment_size: 8 << 20,
        fsync: Fsync::Never,
    };
    let (mut w, _) = PartitionWriter::open(d.path(), 0, opts, Supply::Inline).unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "tailer_process", "--nocapture"])
        .env("TAIL_DIR", d.path())
        .env("TAIL_RECORDS", n.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let s = Arc::new(schema());
    let mut buf = Vec::with_capacity(1024 * 40);
    let t0 = Instant::now();
    let mut k = 0u64;
    while k < n {
        let m = (n - k).min(1024);
        buf.clear();
        for i in k..k + m {
            encode_values(
                &[
                    RowValue::U64(i),
                    RowValue::F64(i as f64 * 0.5),
                    RowValue::I64(-(i as i64)),
                ],
                &mut buf,
            );
        }
        w.append(&s, 1, 0, 0, &buf, m as u32).unwrap();
        k += m;
    }
    let write_s = t0.elapsed().as_secs_f64();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tailer failed:\n{text}");
    assert!(
        text.contains(&format!("tailed {n} records")),
        "the tailer did not report all:\n{text}"
    );
    eprintln!(
        "writer: {n} records in {write_s:.2} s ({:.1} M records/s), {} rolls; the tailer process saw every one",
        n as f64 / write_s / 1e6,
        w.stats.rolls
    );
    assert!(w.stats.rolls > 3);
}

/// The tailer side, run as its own process by the test above.
#[test]
#[ignore = "run by a_tailer_in_another_process_sees_every_record"]
fn tailer_process() {
    let Ok(dir) = std::env::var("TAIL_DIR") else {
        return;
    };
    let n = records();
    let mut t = Tailer::open(std::path::Path::new(&dir), StartAt::Oldest).unwrap();
    let mut next = 0u64;
    let mut last_progress = Instant::now();
    while next < n {
        let mut got = false;
        while let Some(f) = t.next_frame() {
            got = true;
            assert_eq!(f.header.base_seq, next, "gap or duplicate");
            for r in RowIter::new(f.rows, f.schema) {
                assert_eq!(r.get(0, FieldType::U64), RowValue::U64(next));
                assert_eq!(r.get(1, FieldType::F64), RowValue::F64(next as f64 * 0.5));
                assert_eq!(r.get(2, FieldType::I64), RowValue::I64(-(next as i64)));
                next += 1;
            }
        }
        assert!(t.take_events().is_empty());
        if got {
            last_progress = Instant::now();
        } else {
            assert!(
                last_progress.elapsed() < Duration::from_secs(30),
                "stuck at {next}"
            );
            std::thread::yield_now();
        }
    }
    println!("tailed {next} records");
}

mod common;

/// Minor page faults taken so far by thread `tid` of this process.
fn minflt(tid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let rest = s.rsplit_once(')').unwrap().1;
    // Fields after the command name start at field 3; minflt is field 10.
    rest.split_whitespace()
        .nth(10 - 3)
        .unwrap()
        .parse()
        .unwrap()
}

/// Pages are faulted in ahead of the writer by the journal thread, so the
/// worker appending ~90 MB across segment rolls takes (next to) no page
/// fault of its own.
#[test]
fn the_worker_takes_no_page_faults_appending() {
    use std::io::Write;
    let h = common::Harness::start(
        r#"
[admin]
listen = "127.0.0.1:0"
[runtime]
shards = 1
[schemas.tick]
size = 32
fields = [
  { name = "ts", type = "timestamp", offset = 0 }, { name = "seq", type = "u64", offset = 8 },
  { name = "symbol", type = "u32", offset = 16 }, { name = "qty", type = "i32", offset = 20 },
  { name = "price", type = "f64", offset = 24 },
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
path = "{DIR}/j"
segment_size = "64MiB"
"#,
    );
    let app = h.app.as_ref().unwrap();
    let tid = app.metrics().shards[0]
        .tid
        .load(std::sync::atomic::Ordering::Relaxed);
    let send = |from: u64, n: u64| {
        let mut s = std::net::TcpStream::connect(h.addr("t")).unwrap();
        let mut buf = Vec::new();
        for seq in from..from + n {
            mutstream::loadgen::Tick {
                ts: 1,
                seq,
                symbol: 3,
                qty: 4,
                price: 5.0,
            }
            .encode(&mut buf);
            if buf.len() >= 1 << 16 {
                s.write_all(&buf).unwrap();
                buf.clear();
            }
        }
        s.write_all(&buf).unwrap();
    };
    // Warm up: buffers, batches and the first pages of the first segment.
    send(0, 200_000);
    h.wait_records(200_000, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(200));
    let f0 = minflt(tid);
    let n = 2_000_000;
    send(200_000, n);
    h.wait_records(200_000 + n, Duration::from_secs(60));
    let faults = minflt(tid) - f0;
    let m = &app.metrics().shards[0].sinks[0];
    let bytes = m.journal_bytes.get();
    let rolls = m.journal_rolls.get();
    eprintln!(
        "worker: {faults} minor faults while appending {n} records ({} MB, {rolls} rolls, {} pages)",
        bytes / 1_000_000,
        bytes / 4096
    );
    assert!(rolls >= 1, "the run must cross a roll");
    assert!(
        faults < 256,
        "{faults} page faults on the worker for {} pages written",
        bytes / 4096
    );
}

/// Retention removes whole segments past `max_bytes`, whatever readers do;
/// a tailer that falls behind them reports the gap and resumes at the
/// oldest segment left.
#[test]
fn retention_removes_old_segments_and_a_late_tailer_reports_the_gap() {
    use mutstream::config::{OnFull, SinkDef, SinkKind};
    use mutstream::journal::tailer::Event;
    let d = tempfile::tempdir().unwrap();
    let def = SinkDef {
        name: "r".into(),
        kind: SinkKind::Journal,
        path: Some(d.path().join("r")),
        on_full: OnFull::Block,
        segment_size: 1 << 20,
        fsync: Fsync::Never,
        fsync_interval: Duration::from_millis(100),
        max_bytes: Some(3 << 20),
        max_age: None,
        line: 0,
    };
    let (mut writers, svc, _) = mutstream::journal::open(&def, 1).unwrap();
    let mut w = writers.remove(0);
    let metrics = Arc::new(mutstream::metrics::Metrics::new(1, 0, 1));
    let life = Arc::new(mutstream::sink::Lifecycle::default());
    let thread = {
        let (m, l) = (metrics.clone(), life.clone());
        std::thread::spawn(move || mutstream::journal::run_service(vec![(svc, 0)], &m, &l))
    };
    let part = w.dir().to_path_buf();
    // A tailer that reads the first frame, then stalls.
    let mut t = Tailer::open(&part, StartAt::Oldest).unwrap();
    let s = Arc::new(schema());
    let mut buf = Vec::new();
    let mut k = 0u64;
    let mut append = |w: &mut PartitionWriter, n: u64| {
        for _ in 0..n {
            buf.clear();
            for i in k..k + 1024 {
                encode_values(
                    &[RowValue::U64(i), RowValue::F64(0.0), RowValue::I64(0)],
                    &mut buf,
                );
            }
            w.append(&s, 1, 0, 0, &buf, 1024).unwrap();
            k += 1024;
        }
    };
    append(&mut w, 1);
    assert_eq!(t.next_frame().unwrap().header.base_seq, 0);
    // ~10 MiB: ten segments, seven over the limit.
    append(&mut w, 350);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let segs = mutstream::journal::segment::list_segments(&part).unwrap();
        if segs.len() <= 3 {
            assert!(segs[0].0 > 0, "the oldest went first");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention left {} segments",
            segs.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metrics.sinks[0].segments_removed.get() >= 7);
    // The stalled tailer still holds its (removed) first segment mapped and
    // reads it to its end; then its next segment is gone: a gap, and it
    // resumes at the oldest left.
    let mut next = 1024u64;
    let mut gap = None;
    while let Some((base, count)) = t.next_frame().map(|f| (f.header.base_seq, f.header.count)) {
        for e in t.take_events() {
            if let Event::Gap { from, to } = e {
                gap = Some((from, to));
                next = to;
            }
        }
        assert_eq!(base, next, "after the gap, in order");
        next += count as u64;
    }
    let (from, to) = gap.expect("a gap was reported");
    assert!(from < to && to > 1024, "gap {from}..{to}");
    assert_eq!(next, k, "read to the end after the gap");
    life.workers_done
        .store(true, std::sync::atomic::Ordering::Release);
    thread.join().unwrap();
}
