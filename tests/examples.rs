//! Both example configs run end to end as written (pipelines, tables,
//! params, schemas, sources, journal sinks — only the listen ports become
//! ephemeral and the journal directories move under a temporary directory
//! so tests can run side by side).
//!
//! How: the config text is read from ../shared/examples, edited as above,
//! started in-process; seeded ticks (TCP and UDP) or sensors (line
//! protocol over TCP and UDP, JSON over TCP) are sent over real sockets,
//! and what `mutstream read` prints of each journal is checked against a
//! reference computed here.

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

/// The example config with its journals under `dir` and ephemeral ports.
fn as_written(name: &str, dir: &Path) -> Config {
    let text = std::fs::read_to_string(examples().join(name)).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        let t = line.trim_start();
        let line = if let Some(p) = t.strip_prefix("path = \"./mutstream-data/") {
            format!("path = \"{}/{}\"", dir.display(), p.trim_end_matches('"'))
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

/// What `mutstream read DIR` prints, parsed; each partition's `_seq` runs
/// from 0 without a gap.
fn read_journal(dir: &Path) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mutstream"))
        .arg("read")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let mut next: HashMap<u64, u64> = HashMap::new();
    for r in &v {
        let n = next.entry(r["_shard"].as_u64().unwrap()).or_insert(0);
        assert_eq!(r["_seq"].as_u64(), Some(*n), "{r}");
        *n += 1;
        assert!(r["_commit_ns"].as_u64() >= r["_ingest_ns"].as_u64(), "{r}");
    }
    v
}

fn start(cfg: Config, dir: tempfile::TempDir) -> Harness {
    Harness {
        app: Some(Appliance::start(cfg).unwrap_or_else(|e| panic!("{e}"))),
        dir,
    }
}

#[test]
fn ticks_example_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = as_written("ticks.toml", dir.path());
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
    let journal = read_journal(&h.path("ticks"));
    let alerts = read_journal(&h.path("alerts"));
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
    // Exactly what was sent: every passing tick once, its values intact,
    // valued as the pipeline says, on the right side of the route.
    let by_seq: HashMap<u64, &Tick> = passing.iter().map(|t| (t.seq, *t)).collect();
    let mut seen = std::collections::HashSet::new();
    for (v, is_alert) in journal
        .iter()
        .map(|v| (v, false))
        .chain(alerts.iter().map(|v| (v, true)))
    {
        let t = by_seq[&v["seq"].as_u64().unwrap()];
        assert!(seen.insert(t.seq), "{v} twice");
        assert_eq!(v["ts"].as_i64(), Some(t.ts), "{v}");
        assert_eq!(v["symbol"].as_u64(), Some(t.symbol as u64), "{v}");
        assert_eq!(v["qty"].as_i64(), Some(t.qty as i64), "{v}");
        assert_eq!(v["price"].as_f64(), Some(t.price), "{v}");
        let notional = t.price * t.qty as f64;
        assert_eq!(v["notional"].as_f64(), Some(notional), "{v}");
        assert_eq!(is_alert, notional > 150_000.0, "{v}");
    }
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
fn iot_example_runs_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = as_written("iot.toml", dir.path());
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
    let journal = read_journal(&h.path("iot"));
    let alerts = read_journal(&h.path("iot-alerts"));
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
