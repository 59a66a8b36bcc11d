//! Both example configs run end to end with their journal sinks swapped
//! for file sinks, everything else as written (pipelines, tables, params,
//! schemas, sources — only the listen ports become ephemeral so tests can
//! run side by side).
//!
//! How: the config text is read from ../shared/examples, edited as above,
//! started in-process; seeded ticks (TCP and UDP) or sensors (line
//! protocol over TCP and UDP, JSON over TCP) are sent over real sockets,
//! and each sink's records are checked against a reference computed here.

mod common;

use common::{Harness, read_json_lines};
use mutstream::config::Config;
use mutstream::loadgen::{Rng, Sensor, Tick};
use mutstream::runtime::Appliance;
use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/examples")
}

/// The example config with journal sinks as file sinks under `dir` and
/// ephemeral ports.
fn swapped(name: &str, dir: &Path) -> Config {
    let text = std::fs::read_to_string(examples().join(name)).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("segment_size") || t.starts_with("fsync") {
            continue;
        }
        let line = if t.starts_with("kind = \"journal\"") {
            "kind = \"file\"".to_string()
        } else if let Some(p) = t.strip_prefix("path = \"./mutstream-data/") {
            format!(
                "path = \"{}/{}.jsonl\"",
                dir.display(),
                p.trim_end_matches('"')
            )
        } else if t.starts_with("listen = \"127.0.0.1:") && !t.contains("9100") {
            "listen = \"127.0.0.1:0\"".to_string()
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    Config::parse(&out, name, &examples()).unwrap_or_else(|e| panic!("{e}"))
}

fn start(cfg: Config, dir: tempfile::TempDir) -> Harness {
    Harness {
        app: Some(Appliance::start(cfg).unwrap_or_else(|e| panic!("{e}"))),
        dir,
    }
}

#[test]
fn ticks_example_runs_with_file_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = swapped("ticks.toml", dir.path());
    let mut h = start(cfg, dir);
    let mut r = Rng::new(5);
    let ticks: Vec<Tick> = (0..20_000)
        .map(|i| Tick::draw(&mut r, 1_000 + i, i as u64))
        .collect();
    let mut tcp = TcpStream::connect(h.addr("ticks-tcp")).unwrap();
    let mut buf = Vec::new();
    for t in &ticks[..10_000] {
        t.encode(&mut buf);
    }
    tcp.write_all(&buf).unwrap();
    drop(tcp);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in ticks[10_000..].chunks(32) {
        buf.clear();
        for t in chunk {
            t.encode(&mut buf);
        }
        udp.send_to(&buf, h.addr("ticks-udp")).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    h.wait_records(20_000, Duration::from_secs(30));
    h.shutdown();
    let journal = read_json_lines(&h.path("ticks.jsonl"));
    let alerts = read_json_lines(&h.path("alerts.jsonl"));
    let passing: Vec<&Tick> = ticks.iter().filter(|t| t.passes_example_filter()).collect();
    let big = passing
        .iter()
        .filter(|t| t.price * t.qty as f64 > 150_000.0)
        .count();
    assert_eq!(journal.len() + alerts.len(), passing.len());
    assert_eq!(alerts.len(), big);
    assert!(
        big > 10,
        "WORKLOADS.md: about 3.5% of passing ticks are alerts"
    );
    let sectors: HashMap<u64, &str> = [
        (1, "energy"),
        (2, "finance"),
        (3, "health"),
        (5, "tech"),
        (8, "health"),
    ]
    .into();
    for v in journal.iter().chain(&alerts) {
        let sym = v["symbol"].as_u64().unwrap();
        if let Some(s) = sectors.get(&sym) {
            assert_eq!(v["sector"].as_str(), Some(*s), "{v}");
        }
        assert!(
            v["lot"].is_i64() && v["notional"].is_f64() && v["_gen"] == 1,
            "{v}"
        );
    }
}

#[test]
fn iot_example_runs_with_file_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = swapped("iot.toml", dir.path());
    let mut h = start(cfg, dir);
    let mut r = Rng::new(9);
    let sensors: Vec<Sensor> = (0..9_000).map(|i| Sensor::draw(&mut r, i)).collect();
    let mut lp = Vec::new();
    let mut json = Vec::new();
    for s in &sensors[..3_000] {
        s.lp(&mut lp);
    }
    for s in &sensors[6_000..] {
        s.json(&mut json);
    }
    TcpStream::connect(h.addr("lp-tcp"))
        .unwrap()
        .write_all(&lp)
        .unwrap();
    TcpStream::connect(h.addr("json-tcp"))
        .unwrap()
        .write_all(&json)
        .unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for chunk in sensors[3_000..6_000].chunks(10) {
        let mut d = Vec::new();
        for s in chunk {
            s.lp(&mut d);
        }
        udp.send_to(&d, h.addr("lp-udp")).unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
    h.wait_records(9_000, Duration::from_secs(30));
    h.shutdown();
    let journal = read_json_lines(&h.path("iot.jsonl"));
    let alerts = read_json_lines(&h.path("iot-alerts.jsonl"));
    let hot = sensors.iter().filter(|s| s.temp > 30.0).count();
    assert_eq!(alerts.len(), hot);
    assert_eq!(journal.len() + alerts.len(), sensors.len());
    let csv = std::fs::read_to_string(examples().join("devices.csv")).unwrap();
    let owners: HashMap<String, (String, i64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].to_string(), (f[1].to_string(), f[2].parse().unwrap()))
        })
        .collect();
    for v in journal.iter().chain(&alerts) {
        let (owner, floor) = &owners[v["device"].as_str().unwrap()];
        assert_eq!(v["owner"].as_str(), Some(owner.as_str()), "{v}");
        assert_eq!(v["floor"].as_i64(), Some(*floor), "{v}");
        let t = v["temp"].as_f64().unwrap();
        assert_eq!(v["temp_f"].as_f64(), Some(t * 9.0 / 5.0 + 32.0));
    }
}

/// `sample 1 in N by f` selects the same records whatever shard a record
/// lands on: one shard and two give the same set.
#[test]
fn sample_by_selects_the_same_records_on_one_and_two_shards() {
    use common::{Wire, send_tcp};
    let mut sets = Vec::new();
    for shards in [1, 2] {
        let wire = Wire::JsonTcp;
        let mut h =
            Harness::start(&wire.config(shards, "sample 1 in 5 by device, seq | to out", ""));
        let addr = h.addr("in");
        std::thread::scope(|s| {
            for c in 0..16 {
                s.spawn(move || send_tcp(addr, wire, c, 2_000, 4096));
            }
        });
        h.wait_records(32_000, Duration::from_secs(30));
        if shards == 2 {
            let m = h.app.as_ref().unwrap().metrics().clone();
            assert!(
                m.shards.iter().all(|s| s.sources[0].records.get() > 0),
                "both shards got records"
            );
        }
        h.shutdown();
        let mut set: Vec<(u64, u64)> = read_json_lines(&h.path("out.jsonl"))
            .iter()
            .map(|v| (v["conn"].as_u64().unwrap(), v["seq"].as_u64().unwrap()))
            .collect();
        set.sort_unstable();
        sets.push(set);
    }
    assert!(
        sets[0].len() > 5_000 && sets[0].len() < 8_000,
        "{} of 32000",
        sets[0].len()
    );
    assert_eq!(sets[0], sets[1]);
}
