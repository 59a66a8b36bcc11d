//! Real third-party clients pointed at the appliance.
//!
//! * QuestDB's official Python client (`questdb` on PyPI), the InfluxDB line
//!   protocol over TCP (`tcp::addr=...`): symbols with characters that need
//!   escaping, a string holding a newline, quotes and a backslash, NaN and
//!   infinities, integers, booleans, nanosecond timestamps.
//!
//! How: the client runs in a `python3` child process against a real
//! appliance in this process; the file sink's output is compared with what
//! the client was asked to send. The client is installed with pip when
//! missing (PyPI is one of the registries this project may use); if that is
//! impossible the test fails with the command to run.

mod common;

use common::Harness;
use std::process::Command;
use std::time::Duration;

const SCHEMA: &str = r#"
[admin]
listen = "127.0.0.1:0"
[runtime]
shards = 1
pin = false
[schemas.sensor]
fields = [
  { name = "ts", type = "timestamp" }, { name = "device", type = "symbol" },
  { name = "site", type = "symbol" }, { name = "temp", type = "f64" },
  { name = "hum", type = "f64" }, { name = "battery", type = "i64" },
  { name = "note", type = "string" }, { name = "ok", type = "bool" },
]
[[source]]
name = "ilp"
transport = "tcp"
listen = "127.0.0.1:0"
framing = "newline"
format = "lp"
schema = "sensor"
measurement = "sensors"
[pipeline]
text = "to out"
[[sink]]
name = "out"
kind = "file"
path = "{DIR}/out.jsonl"
"#;

fn ensure_questdb() {
    let has = |py: &str| {
        Command::new("python3")
            .args(["-c", py])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if has("import questdb.ingress") {
        return;
    }
    let ok = Command::new("python3")
        .args(["-m", "pip", "install", "--quiet", "questdb"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok && has("import questdb.ingress"),
        "the QuestDB Python client is needed: python3 -m pip install questdb"
    );
}

#[test]
fn questdb_python_client_over_tcp() {
    ensure_questdb();
    let mut h = Harness::start(SCHEMA);
    let addr = h.addr("ilp");
    let script = format!(
        r#"
import warnings; warnings.simplefilter("ignore")
from questdb.ingress import Sender, TimestampNanos
with Sender.from_conf('tcp::addr={addr};') as s:
    for i in range(1000):
        s.row('sensors',
              symbols={{'device': 'd-%04d' % i, 'site': 'plant 1,a=b' if i % 2 else 'plant-2'}},
              columns={{'temp': i / 8.0, 'hum': float('nan') if i % 3 == 0 else 40.25,
                        'battery': i - 500, 'note': 'line\nbreak "q" \\ %d' % i, 'ok': i % 5 == 0}},
              at=TimestampNanos(1732492800000000000 + i))
    s.row('other', symbols={{'device': 'x'}}, columns={{'temp': 1.0}}, at=TimestampNanos(1))
    s.row('sensors', symbols={{'device': 'inf'}}, columns={{'temp': float('inf'), 'hum': float('-inf')}}, at=TimestampNanos(2))
    s.flush()
"#
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    h.wait_records(1001, Duration::from_secs(30));
    let s = h.shutdown();
    let skipped = s.sources[0]
        .rejects
        .iter()
        .find(|r| r.0 == mutstream::codec::Reason::Skipped)
        .unwrap()
        .1;
    assert_eq!(skipped, 1, "the other measurement is skipped");
    let lines = common::read_json_lines(&h.path("out.jsonl"));
    assert_eq!(lines.len(), 1001);
    for (i, v) in lines[..1000].iter().enumerate() {
        let i = i as i64;
        assert_eq!(v["ts"].as_i64(), Some(1732492800000000000 + i), "{v}");
        assert_eq!(v["device"].as_str(), Some(format!("d-{i:04}").as_str()));
        assert_eq!(
            v["site"].as_str(),
            Some(if i % 2 == 1 { "plant 1,a=b" } else { "plant-2" })
        );
        assert_eq!(v["temp"].as_f64(), Some(i as f64 / 8.0));
        if i % 3 == 0 {
            assert_eq!(v["hum"].as_str(), Some("NaN"));
        } else {
            assert_eq!(v["hum"].as_f64(), Some(40.25));
        }
        assert_eq!(v["battery"].as_i64(), Some(i - 500));
        assert_eq!(
            v["note"].as_str(),
            Some(format!("line\nbreak \"q\" \\ {i}").as_str())
        );
        assert_eq!(v["ok"].as_bool(), Some(i % 5 == 0));
    }
    assert_eq!(lines[1000]["temp"].as_str(), Some("Infinity"));
    assert_eq!(lines[1000]["hum"].as_str(), Some("-Infinity"));
}
