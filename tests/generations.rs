//! Generations switch under load: every batch runs on exactly one
//! generation and every record says which.
//!
//! How: generation k runs `eval g = k | to out`. While 1 000 000 records
//! flow over 8 TCP connections into 2 shards, the test publishes a new
//! generation every few milliseconds and waits for every shard to
//! acknowledge it. Afterwards every record's `g` must equal its `_gen`,
//! `_gen` must never decrease along a connection's sequence (a connection
//! lives on one shard), and the total must be exact.

mod common;

use common::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

fn pipeline(g: u64) -> String {
    format!("eval g = {g} | to out")
}

#[test]
fn fifty_generations_under_load() {
    const CONNS: u64 = 8;
    const N: u64 = 125_000;
    let wire = Wire::BinaryFixed;
    let mut h = Harness::start(&wire.config(2, &pipeline(1), ""));
    let addr = h.addr("in");
    let done = AtomicBool::new(false);
    let mut published = 0;
    std::thread::scope(|s| {
        let done = &done;
        let senders = s.spawn(move || {
            std::thread::scope(|s2| {
                for c in 0..CONNS {
                    // Paced so the stream lasts about a second: generations
                    // are published all along it.
                    s2.spawn(move || {
                        let mut sock = std::net::TcpStream::connect(addr).unwrap();
                        let mut buf = Vec::new();
                        for chunk in 0..N / 1000 {
                            buf.clear();
                            for q in chunk * 1000..(chunk + 1) * 1000 {
                                wire.record(c, q, &mut buf);
                            }
                            std::io::Write::write_all(&mut sock, &buf).unwrap();
                            std::thread::sleep(Duration::from_millis(8));
                        }
                    });
                }
            });
            done.store(true, Ordering::SeqCst);
        });
        while !done.load(Ordering::SeqCst) {
            let app = h.app();
            let next = app.generation() + 1;
            let cfg = app.config().clone();
            let plan =
                mutstream::pipeline::compile_for(&cfg, &pipeline(next), "gen.mts", 0, &cfg.params)
                    .unwrap();
            let id = app.publish(plan).unwrap();
            assert_eq!(id, next);
            app.wait_acked(id, Duration::from_secs(5))
                .expect("every shard acknowledges");
            published += 1;
            std::thread::sleep(Duration::from_millis(3));
        }
        senders.join().unwrap();
    });
    h.wait_records(CONNS * N, Duration::from_secs(60));
    let switches = h
        .app
        .as_ref()
        .unwrap()
        .metrics()
        .sum(|m| m.generation_switches.get());
    h.shutdown();
    assert!(published >= 50, "{published} generations published");
    let lines = read_json_lines(&h.path("out.jsonl"));
    assert_eq!(lines.len() as u64, CONNS * N);
    let mut last: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut gens = std::collections::BTreeSet::new();
    for v in &lines {
        let (c, q) = wire.check(v);
        let g = v["g"].as_u64().unwrap();
        let gen_id = v["_gen"].as_u64().unwrap();
        assert_eq!(
            g, gen_id,
            "the record was produced by the generation it names: {v}"
        );
        if let Some(&(lq, lg)) = last.get(&c) {
            assert_eq!(q, lq + 1, "connection {c} in order");
            assert!(
                gen_id >= lg,
                "_gen went back on connection {c}: {lg} -> {gen_id}"
            );
        }
        last.insert(c, (q, gen_id));
        gens.insert(gen_id);
    }
    assert!(
        gens.len() >= 50,
        "records from {} generations ({switches} switches)",
        gens.len()
    );
}

/// With `idle = "park"` and no traffic, every worker sleeps in the kernel;
/// publishing wakes it, and it acknowledges at once.
#[test]
fn parked_workers_are_woken_to_acknowledge() {
    let wire = Wire::BinaryFixed;
    let cfg = wire
        .config(2, &pipeline(1), "")
        .replace("idle = \"adaptive\"", "idle = \"park\"");
    let mut h = Harness::start(&cfg);
    std::thread::sleep(Duration::from_millis(200));
    for _ in 0..20 {
        let app = h.app();
        let next = app.generation() + 1;
        let cfg = app.config().clone();
        let plan =
            mutstream::pipeline::compile_for(&cfg, &pipeline(next), "gen.mts", 0, &cfg.params)
                .unwrap();
        let id = app.publish(plan).unwrap();
        let took = app
            .wait_acked(id, Duration::from_secs(2))
            .expect("parked shards wake and acknowledge");
        assert!(took < Duration::from_secs(1), "acknowledged in {took:?}");
    }
    // Nothing published is lost either: old generations are freed.
    assert!(h.app().reclaim() <= 1);
    send_tcp(h.addr("in"), wire, 0, 10, 4096);
    h.wait_records(10, Duration::from_secs(10));
    h.shutdown();
    for v in read_json_lines(&h.path("out.jsonl")) {
        assert_eq!(v["g"].as_u64(), Some(21));
        assert_eq!(v["_gen"].as_u64(), Some(21));
    }
}
