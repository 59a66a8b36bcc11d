//! Every transport, framing and format delivers 1 000 000 seeded records to
//! a file sink with exact values, on 1 and on 2 shards.
//!
//! How: a real appliance in this process listens on loopback; senders use
//! plain sockets (32 TCP connections, or 16 UDP sockets paced to 1 000
//! datagrams/s each, well below what the appliance and its file sink
//! sustain, with a 32 MiB receive buffer); every output line is
//! parsed and compared field by field with the record regenerated from its
//! (connection, sequence) pair. Over TCP the count must be exact; over UDP
//! delivered + kernel drops must equal sent, and drops must be 0 at this
//! pace. With 2 shards, SO_REUSEPORT spreads connections: both shards must
//! have decoded records.

mod common;

use common::*;
use std::time::Duration;

const TOTAL: u64 = 1_000_000;

fn run(wire: Wire, shards: usize) {
    let mut h = Harness::start(&wire.config(shards, "to out", ""));
    let addr = h.addr("in");
    let (streams, per_stream) = if wire.is_udp() {
        (16u64, TOTAL / 16)
    } else {
        (32u64, TOTAL / 32)
    };
    let sent: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..streams)
            .map(|c| {
                s.spawn(move || {
                    if wire.is_udp() {
                        let per = if wire.is_binary() { 32 } else { 16 };
                        send_udp(addr, wire, c, per_stream, per, 1_000)
                    } else {
                        send_tcp(addr, wire, c, per_stream, 64 * 1024);
                        0
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let app = h.app.as_ref().unwrap();
    let m = app.metrics().clone();
    let drops = || m.sum(|s| s.sources[0].kernel_drops.get());
    if wire.is_udp() {
        // In datagrams: received + dropped by the kernel = sent.
        let got = || m.sum(|s| s.sources[0].datagrams.get());
        h.wait_for("every datagram or drop", Duration::from_secs(60), |_| {
            got() + drops() >= sent
        });
        assert_eq!(got() + drops(), sent);
        assert_eq!(drops(), 0, "kernel drops at a paced rate");
    }
    h.wait_for("every record", Duration::from_secs(60), |h| {
        h.records() >= TOTAL
    });
    assert_eq!(h.rejects(0), 0, "no record rejected");
    if shards == 2 {
        for k in 0..2 {
            assert!(
                m.shards[k].sources[0].records.get() > 0,
                "shard {k} received nothing"
            );
        }
    }
    let summary = h.shutdown();
    assert_eq!(summary.sinks[0].written, TOTAL);
    verify_exact(wire, &h.path("out.jsonl"), streams, per_stream);
}

macro_rules! ingest_tests {
    ($($name:ident: $wire:expr,)*) => {
        mod one_shard {
            use super::*;
            $( #[test] fn $name() { run($wire, 1) } )*
        }
        mod two_shards {
            use super::*;
            $( #[test] fn $name() { run($wire, 2) } )*
        }
    };
}

ingest_tests! {
    binary_udp_datagram: Wire::BinaryDatagram,
    binary_tcp_fixed: Wire::BinaryFixed,
    binary_tcp_len16be: Wire::BinaryLen16,
    binary_tcp_len32le: Wire::BinaryLen32,
    lp_tcp: Wire::LpTcp,
    lp_udp: Wire::LpUdp,
    json_tcp: Wire::JsonTcp,
    csv_tcp: Wire::CsvTcp,
}

/// A blackhole sink counts on the worker: nothing encoded, nothing lost.
#[test]
fn blackhole_counts_every_record() {
    let wire = Wire::BinaryFixed;
    let cfg = wire.config(1, "filter price > 100.0 | to out", "").replace(
        "kind = \"file\"\npath = \"{DIR}/out.jsonl\"",
        "kind = \"blackhole\"",
    );
    let mut h = Harness::start(&cfg);
    send_tcp(h.addr("in"), wire, 0, 100_000, 64 * 1024);
    h.wait_records(100_000, Duration::from_secs(30));
    let s = h.shutdown();
    let want = (0..100_000)
        .filter(|&q| Brec::make(0, q).price > 100.0)
        .count() as u64;
    assert_eq!(s.sinks[0].written, want);
    assert_eq!(s.filtered, 100_000 - want);
    assert!(!h.path("out.jsonl").exists());
}

/// Every idle policy delivers: `spin` never sleeps, `park` always waits in
/// io_uring_enter and is woken by completions.
#[test]
fn every_idle_mode_delivers() {
    for idle in ["spin", "park", "adaptive"] {
        let wire = Wire::JsonTcp;
        let cfg = wire
            .config(2, "to out", "")
            .replace("idle = \"adaptive\"", &format!("idle = \"{idle}\""));
        let mut h = Harness::start(&cfg);
        let addr = h.addr("in");
        std::thread::scope(|s| {
            for c in 0..4 {
                s.spawn(move || send_tcp(addr, wire, c, 25_000, 8192));
            }
        });
        h.wait_records(100_000, Duration::from_secs(30));
        h.shutdown();
        verify_exact(wire, &h.path("out.jsonl"), 4, 25_000);
    }
}

/// Over UDP each datagram carries the kernel's receive time: every record
/// gets a kernel → worker latency and a pipeline latency, handed to the
/// control side once a second, under the generation that ran it.
#[test]
fn udp_records_carry_kernel_receive_times() {
    let wire = Wire::BinaryDatagram;
    let mut h = Harness::start(&wire.config(1, "to out", ""));
    let n = 2_000;
    send_udp(h.addr("in"), wire, 0, n, 10, 100_000);
    h.wait_records(n, Duration::from_secs(30));
    let (mut pipeline, mut kernel) = (0u64, 0u64);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while pipeline < n && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        h.app().drain_latency(|b| {
            assert_eq!(b.generation, 1);
            pipeline += b.pipeline.len();
            kernel += b.kernel.len();
            // Loopback: well under a second from the kernel to the worker.
            assert!(b.kernel.max() < 1_000_000_000, "{}", b.kernel.max());
        });
    }
    assert_eq!(pipeline, n);
    assert_eq!(kernel, n, "every UDP record has a kernel receive time");
    h.shutdown();
}
