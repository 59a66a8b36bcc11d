//! Backpressure and orderly stops.
//!
//! * A slow sink with `on_full = "block"`: the worker stops reading its
//!   sockets, TCP slows the sender, and nothing is lost.
//! * With `on_full = "drop"`: delivered + dropped (counted) = sent.
//! * SIGTERM mid-stream to a real `mutstream run` process: it exits 0 and
//!   every record it read from its sockets is in the sink.
//!
//! How: the slow sink is a file sink writing into a FIFO that this test
//! reads a little at a time; the SIGTERM test runs the built binary.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Creates a FIFO at `path` and starts a thread that reads it slowly,
/// returning the number of lines read once the writer closes it.
fn slow_fifo_reader(path: &Path) -> std::thread::JoinHandle<u64> {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut f = std::fs::File::open(path).unwrap();
        let mut buf = [0u8; 16384];
        let mut lines = 0u64;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                return lines;
            }
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            std::thread::sleep(Duration::from_micros(500));
        }
    })
}

fn slow_sink_config(on_full: &str) -> String {
    Wire::BinaryFixed
        .config(
            1,
            "to out",
            "batch_max = 64\nring_capacity = 256\nrecv_buffers = 8\nrecv_buffer_size = 4096\n",
        )
        .replace("rcvbuf_bytes = \"32MiB\"", "rcvbuf_bytes = \"64KiB\"")
        .replace(
            "path = \"{DIR}/out.jsonl\"",
            &format!("path = \"{{DIR}}/fifo\"\non_full = \"{on_full}\""),
        )
}

#[test]
fn slow_sink_blocking_loses_nothing() {
    // 10 MB of records: more than the kernel buffers on both ends hold.
    const N: u64 = 250_000;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let reader = slow_fifo_reader(&fifo);
    let cfg = slow_sink_config("block").replace("{DIR}", dir.path().to_str().unwrap());
    let mut h = Harness::start(&cfg);
    let t0 = Instant::now();
    send_tcp(h.addr("in"), Wire::BinaryFixed, 0, N, 64 * 1024);
    let send_time = t0.elapsed();
    h.wait_records(N, Duration::from_secs(120));
    let m = h.app.as_ref().unwrap().metrics().clone();
    let summary = h.shutdown();
    let lines = reader.join().unwrap();
    assert_eq!(lines, N, "every record reached the slow sink");
    assert_eq!(summary.sinks[0].dropped_full, 0);
    assert!(
        m.sum(|s| s.sinks[0].blocked_ns.get()) > 0,
        "the worker did wait for the sink"
    );
    // The sender was slowed by TCP flow control, not buffered away.
    assert!(
        send_time > Duration::from_millis(200),
        "sender finished in {send_time:?}"
    );
}

#[test]
fn slow_sink_dropping_counts_every_drop() {
    const N: u64 = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let reader = slow_fifo_reader(&fifo);
    let cfg = slow_sink_config("drop").replace("{DIR}", dir.path().to_str().unwrap());
    let mut h = Harness::start(&cfg);
    send_tcp(h.addr("in"), Wire::BinaryFixed, 0, N, 64 * 1024);
    h.wait_records(N, Duration::from_secs(60));
    let summary = h.shutdown();
    let lines = reader.join().unwrap();
    let dropped = summary.sinks[0].dropped_full;
    assert!(
        dropped > 0,
        "a slow sink with drop must drop something here"
    );
    assert_eq!(
        lines + dropped,
        N,
        "delivered {lines} + dropped {dropped} = sent"
    );
}

#[test]
fn sigterm_mid_stream_drains_everything_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Wire::JsonTcp
        .config(1, "to out", "")
        .replace("{DIR}", dir.path().to_str().unwrap());
    let cfg_path = dir.path().join("mutstream.toml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mutstream"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let l = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("startup log");
        log.push(l.clone());
        if let Some(i) = l.find("listening on tcp ") {
            let a = l[i + 17..].split_whitespace().next().unwrap();
            break a.parse::<std::net::SocketAddr>().unwrap();
        }
    };
    let sender = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut buf = Vec::new();
        let mut seq = 0;
        loop {
            buf.clear();
            for _ in 0..100 {
                Wire::JsonTcp.record(0, seq, &mut buf);
                seq += 1;
            }
            if s.write_all(&buf).is_err() {
                return seq;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    // SAFETY: sends SIGTERM to our child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let sent = sender.join().unwrap();
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        log.push(l);
    }
    assert!(
        status.success(),
        "exit {status:?}; log:\n{}",
        log.join("\n")
    );
    let read = log
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("source in: ")
                .and_then(|r| r.split(' ').next()?.parse::<u64>().ok())
        })
        .expect("summary line");
    let written = log
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("sink out: ")
                .and_then(|r| r.split(' ').next()?.parse::<u64>().ok())
        })
        .expect("summary line");
    let lines = read_json_lines(&dir.path().join("out.jsonl"));
    assert!(
        read > 10_000,
        "the stream was running: {read} records of {sent} sent"
    );
    assert_eq!(written, read, "records read from sockets = records written");
    assert_eq!(
        lines.len() as u64,
        read,
        "records read from sockets = records in the sink"
    );
    for (q, v) in lines.iter().enumerate() {
        assert_eq!(Wire::JsonTcp.check(v), (0, q as u64));
    }
}
