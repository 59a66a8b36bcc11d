//! Generations switch under load: every batch runs on exactly one
//! generation and every record says which.
//!
//! How: generation k runs `eval g = k | to out`. While 1 000 000 records
//! flow over 8 TCP connections into 2 shards, the test publishes a new
//! generation every few milliseconds and waits for every shard to
//! acknowledge it. Afterwards every record's `g` must equal its `_gen`,
//! `_gen` must never decrease along a connection's sequence (a connection
//! lives on one shard), and the total must be exact.
//!
//! State across generations (SPEC §5): a window or dedup stage whose name,
//! text and input schema are unchanged keeps its state; a changed one
//! starts fresh and the old one's windows close under the old generation.

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

/// Publishes `text` as the next generation and waits for every shard.
fn publish(h: &mut Harness, text: &str) -> u64 {
    let app = h.app();
    let cfg = app.config().clone();
    let plan = mutstream::pipeline::compile_for(&cfg, text, "gen.mts", 0, &cfg.params)
        .unwrap_or_else(|e| panic!("{}", e.rendered));
    let id = app.publish(plan).unwrap();
    app.wait_acked(id, Duration::from_secs(5))
        .expect("every shard acknowledges");
    id
}

/// Waits until the chains have taken in `n` records (decoded is not
/// enough: a batch runs on the generation current when it is flushed).
fn wait_chain(h: &Harness, n: u64) {
    h.wait_for(
        &format!("{n} records through the chain"),
        Duration::from_secs(20),
        |h| h.app.as_ref().unwrap().metrics().sum(|m| m.chain_in.get()) >= n,
    );
}

/// One shard: dedup and window state pass through two generation switches
/// that keep them (a stage removed before them, then a window changed),
/// and the changed window closes what it held under the old generation.
#[test]
fn unchanged_stages_keep_their_state() {
    const W: &str = "w: window tumbling 1h emit n = count() | to out";
    let wire = Wire::BinaryFixed;
    let mut h = Harness::start(&wire.config(
        1,
        &format!("f: filter seq >= 0 | d: dedup seq within 1h | {W}"),
        "",
    ));
    let addr = h.addr("in");
    // Every record's ts is in the same hour: nothing closes by watermark.
    send_tcp(addr, wire, 0, 1000, 4096);
    wait_chain(&h, 1000);
    // Generation 2 drops `f`; `d` and `w` are unchanged and keep state.
    assert_eq!(publish(&mut h, &format!("d: dedup seq within 1h | {W}")), 2);
    send_tcp(addr, wire, 1, 1500, 4096); // seq 0..999 are repeats
    wait_chain(&h, 2500);
    // Generation 3 changes `w`: the old window closes tagged 2.
    assert_eq!(
        publish(
            &mut h,
            "d: dedup seq within 1h | w: window tumbling 1h emit n = count(), top = max(seq) | to out",
        ),
        3
    );
    send_tcp(addr, wire, 2, 2000, 4096); // seq 0..1499 are repeats
    wait_chain(&h, 4500);
    let carried = h.app().metrics().sum(|m| m.states_carried.get());
    h.shutdown();
    let out = read_json_lines(&h.path("out.jsonl"));
    let got: Vec<(u64, u64, Option<u64>)> = out
        .iter()
        .map(|v| {
            (
                v["_gen"].as_u64().unwrap(),
                v["n"].as_u64().unwrap(),
                v["top"].as_u64(),
            )
        })
        .collect();
    assert_eq!(got, vec![(2, 1500, None), (3, 500, Some(1999))], "{out:?}");
    // d and w into generation 2, d into generation 3.
    assert_eq!(carried, 3);
}

/// Two shards: each shard's open windows move to the next generation when
/// the window stage is unchanged, and close under the old one when not.
#[test]
fn window_state_moves_on_every_shard() {
    const W: &str = "w: window tumbling 1h emit n = count() | to out";
    let wire = Wire::BinaryFixed;
    let mut h = Harness::start(&wire.config(2, W, ""));
    let addr = h.addr("in");
    let send = |conns: std::ops::Range<u64>| {
        std::thread::scope(|s| {
            for c in conns {
                s.spawn(move || send_tcp(addr, wire, c, 1000, 4096));
            }
        })
    };
    send(0..4);
    wait_chain(&h, 4000);
    publish(&mut h, &format!("f: filter seq >= 0 | {W}"));
    send(4..8);
    wait_chain(&h, 8000);
    publish(
        &mut h,
        "w: window tumbling 1h emit n = count(), top = max(seq) | to out",
    );
    send(8..10);
    wait_chain(&h, 10_000);
    h.shutdown();
    let out = read_json_lines(&h.path("out.jsonl"));
    let total = |g: u64| -> u64 {
        out.iter()
            .filter(|v| v["_gen"] == g)
            .map(|v| v["n"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total(1), 0, "generation 1's windows moved on: {out:?}");
    assert_eq!(total(2), 8000, "{out:?}");
    assert_eq!(total(3), 2000, "{out:?}");
    assert!(
        out.len() <= 4,
        "one record per shard per generation: {out:?}"
    );
}
