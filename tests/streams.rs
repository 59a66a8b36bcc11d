//! TCP streams cut anywhere, many clients at once, slow clients beside a
//! fast one: nothing lost, merged or stalled.
//!
//! How: each client is a real TCP connection with TCP_NODELAY; a "cut" is
//! a write, a pause long enough for the segment to be received on its own,
//! then the rest, so the appliance sees the record split across receives
//! and must complete it from the connection's carry buffer. Every record
//! carries its connection id and sequence, so any loss, duplication or
//! mixing of two connections' bytes shows up in the exact check.

mod common;

use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The first records of a stream, cut at every byte offset: one
/// connection per offset, each sending `RECORDS` records with one cut.
fn every_offset(wire: Wire) {
    const RECORDS: u64 = 4;
    let mut h = Harness::start(&wire.config(1, "to out", ""));
    let addr = h.addr("in");
    let mut probe = Vec::new();
    for q in 0..RECORDS {
        wire.record(0, q, &mut probe);
    }
    let len = {
        let mut f = Vec::new();
        wire.frame(&probe, &mut f);
        f.len()
    };
    // Connection c cuts its stream at offset c.
    let conns = len as u64 + 1;
    let ids: Vec<u64> = (0..conns).collect();
    std::thread::scope(|s| {
        for group in ids.chunks(64) {
            s.spawn(move || {
                let mut open = Vec::new();
                for &c in group {
                    let mut recs = Vec::new();
                    for q in 0..RECORDS {
                        wire.record(c, q, &mut recs);
                    }
                    let mut framed = Vec::new();
                    wire.frame(&recs, &mut framed);
                    let cut = (c as usize).min(framed.len());
                    let mut sock = TcpStream::connect(addr).unwrap();
                    sock.set_nodelay(true).unwrap();
                    sock.write_all(&framed[..cut]).unwrap();
                    open.push((sock, framed, cut));
                }
                // Long enough for the first part to be received alone.
                std::thread::sleep(Duration::from_millis(30));
                for (sock, framed, cut) in &mut open {
                    sock.write_all(&framed[*cut..]).unwrap();
                }
            });
        }
    });
    h.wait_records(conns * RECORDS, Duration::from_secs(30));
    h.shutdown();
    verify_exact(wire, &h.path("out.jsonl"), conns, RECORDS);
}

#[test]
fn binary_fixed_cut_at_every_offset() {
    every_offset(Wire::BinaryFixed);
}

#[test]
fn len32le_cut_at_every_offset() {
    every_offset(Wire::BinaryLen32);
}

#[test]
fn json_cut_at_every_offset() {
    every_offset(Wire::JsonTcp);
}

#[test]
fn csv_cut_at_every_offset() {
    every_offset(Wire::CsvTcp);
}

#[test]
fn lp_cut_at_every_offset() {
    every_offset(Wire::LpTcp);
}

/// 100 000 records over one connection in writes of random sizes.
fn random_cuts(wire: Wire) {
    const N: u64 = 100_000;
    let mut h = Harness::start(&wire.config(1, "to out", ""));
    let addr = h.addr("in");
    let mut recs = Vec::new();
    for q in 0..N {
        wire.record(7, q, &mut recs);
    }
    let mut framed = Vec::new();
    wire.frame(&recs, &mut framed);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let mut rng = mutstream::loadgen::Rng::new(99);
    let mut at = 0;
    while at < framed.len() {
        let n = (rng.range(1, 3000) as usize).min(framed.len() - at);
        s.write_all(&framed[at..at + n]).unwrap();
        at += n;
        if rng.range(0, 50) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    drop(s);
    h.wait_records(N, Duration::from_secs(60));
    h.shutdown();
    let lines = read_json_lines(&h.path("out.jsonl"));
    assert_eq!(lines.len() as u64, N);
    for (q, v) in lines.iter().enumerate() {
        assert_eq!(wire.check(v), (7, q as u64), "in order, exact");
    }
}

#[test]
fn json_random_cuts() {
    random_cuts(Wire::JsonTcp);
}

#[test]
fn binary_len16be_random_cuts() {
    random_cuts(Wire::BinaryLen16);
}

#[test]
fn lp_random_cuts() {
    random_cuts(Wire::LpTcp);
}

#[test]
fn two_hundred_concurrent_clients() {
    const CLIENTS: u64 = 200;
    const N: u64 = 2_000;
    let wire = Wire::JsonTcp;
    let mut h = Harness::start(&wire.config(2, "to out", ""));
    let addr = h.addr("in");
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            s.spawn(move || send_tcp(addr, wire, c, N, 1500));
        }
    });
    h.wait_records(CLIENTS * N, Duration::from_secs(60));
    h.shutdown();
    verify_exact(wire, &h.path("out.jsonl"), CLIENTS, N);
}

/// 1 000 clients dribbling a byte at a time, with a buffer ring of only 8
/// small buffers, beside one fast client: the fast client's records all
/// arrive while the slow ones are still sending.
#[test]
fn slow_clients_do_not_hold_the_buffer_ring() {
    const SLOW: u64 = 1_000;
    const SLOW_RECORDS: u64 = 2;
    const FAST: u64 = 200_000;
    let wire = Wire::BinaryFixed;
    let cfg = wire.config(1, "to out", "recv_buffers = 8\nrecv_buffer_size = 4096\n");
    let mut h = Harness::start(&cfg);
    let addr = h.addr("in");
    let slow_done = std::sync::atomic::AtomicBool::new(false);
    let fast_seen_while_slow = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let slow_done = &slow_done;
        s.spawn(move || {
            let mut socks = Vec::new();
            let mut data = Vec::new();
            for c in 1..=SLOW {
                let sock = TcpStream::connect(addr).unwrap();
                sock.set_nodelay(true).unwrap();
                socks.push(sock);
                let mut recs = Vec::new();
                for q in 0..SLOW_RECORDS {
                    wire.record(c, q, &mut recs);
                }
                data.push(recs);
            }
            let len = data[0].len();
            for i in 0..len {
                for (sock, d) in socks.iter_mut().zip(&data) {
                    sock.write_all(&d[i..i + 1]).unwrap();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            slow_done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        // Let the slow clients connect and start dribbling.
        std::thread::sleep(Duration::from_millis(300));
        send_tcp(addr, wire, 0, FAST, 64 * 1024);
        let t0 = Instant::now();
        while h.records() < FAST && t0.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if h.records() >= FAST && !slow_done.load(std::sync::atomic::Ordering::SeqCst) {
            fast_seen_while_slow.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    assert!(
        fast_seen_while_slow.load(std::sync::atomic::Ordering::SeqCst),
        "the fast client was not served while slow clients held connections: {}",
        h.state()
    );
    h.wait_records(FAST + SLOW * SLOW_RECORDS, Duration::from_secs(30));
    h.shutdown();
    let lines = read_json_lines(&h.path("out.jsonl"));
    let mut fast = 0u64;
    let mut slow = vec![0u32; SLOW as usize + 1];
    for v in &lines {
        let (c, q) = wire.check(v);
        if c == 0 {
            assert_eq!(q, fast, "fast client in order");
            fast += 1;
        } else {
            assert!(q < SLOW_RECORDS);
            slow[c as usize] += 1;
        }
    }
    assert_eq!(fast, FAST);
    assert!(
        slow[1..].iter().all(|&n| n as u64 == SLOW_RECORDS),
        "every slow client's records, once"
    );
}

/// Eight fast clients against a buffer ring of four small buffers: the
/// receives run out of buffers all the time, and each is re-armed while
/// the data of the one before is still being handled. Every record
/// arrives once, and each client's records in the order sent.
#[test]
fn starved_buffer_ring_keeps_each_connection_in_order() {
    const CLIENTS: u64 = 8;
    const N: u64 = 50_000;
    for shards in [1, 2] {
        let wire = Wire::BinaryFixed;
        let cfg = wire.config(
            shards,
            "to out",
            "recv_buffers = 4\nrecv_buffer_size = 4096\n",
        );
        let mut h = Harness::start(&cfg);
        let addr = h.addr("in");
        std::thread::scope(|s| {
            for c in 0..CLIENTS {
                s.spawn(move || send_tcp(addr, wire, c, N, 64 * 1024));
            }
        });
        h.wait_records(CLIENTS * N, Duration::from_secs(60));
        h.shutdown();
        let lines = read_json_lines(&h.path("out.jsonl"));
        let mut next = vec![0u64; CLIENTS as usize];
        for v in &lines {
            let (c, q) = wire.check(v);
            assert!(c < CLIENTS, "unexpected record {v}");
            assert_eq!(
                q, next[c as usize],
                "client {c} out of order ({shards} shards)"
            );
            next[c as usize] += 1;
        }
        assert!(next.iter().all(|&n| n == N), "{shards} shards: {next:?}");
    }
}
