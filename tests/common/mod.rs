//! Test support: start a real appliance in-process on loopback ports,
//! generate seeded records in every format, send them over real sockets,
//! and read back what the file sinks wrote.
#![allow(dead_code)]

use mutstream::config::Config;
use mutstream::loadgen::Rng;
use mutstream::runtime::{Appliance, Summary};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub const SEED: u64 = 0x5eed;

/// An appliance running in this process with its output in a temp dir.
pub struct Harness {
    pub app: Option<Appliance>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// Starts on `config` (TOML), where `{DIR}` stands for the temp dir.
    pub fn start(config: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = config.replace("{DIR}", dir.path().to_str().expect("utf-8 temp path"));
        let cfg = Config::parse(&text, "test.toml", dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let app = Appliance::start(cfg).unwrap_or_else(|e| panic!("{e}"));
        Harness {
            app: Some(app),
            dir,
        }
    }

    pub fn app(&mut self) -> &mut Appliance {
        self.app.as_mut().expect("running")
    }

    pub fn addr(&self, source: &str) -> SocketAddr {
        self.app
            .as_ref()
            .expect("running")
            .local_addr(source)
            .expect("known source")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Records decoded so far, over every source and shard.
    pub fn records(&self) -> u64 {
        let app = self.app.as_ref().expect("running");
        let m = app.metrics();
        (0..app.config().sources.len())
            .map(|i| m.sum(|s| s.sources[i].records.get()))
            .sum()
    }

    /// Rejected records so far, by source.
    pub fn rejects(&self, source: usize) -> u64 {
        let m = self.app.as_ref().expect("running").metrics();
        m.sum(|s| s.sources[source].rejects_total())
    }

    /// Waits until `f` holds (polling), or panics after `timeout`.
    pub fn wait_for(&self, what: &str, timeout: Duration, f: impl Fn(&Harness) -> bool) {
        let t0 = Instant::now();
        while !f(self) {
            assert!(
                t0.elapsed() < timeout,
                "timed out waiting for {what}: {}",
                self.state()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Counters, for failure messages.
    pub fn state(&self) -> String {
        let app = self.app.as_ref().expect("running");
        let m = app.metrics();
        let mut s = String::new();
        for (i, src) in app.config().sources.iter().enumerate() {
            s += &format!(
                "[{}: records {} datagrams {} kernel_drops {} truncated {} rejects {} conns {}] ",
                src.name,
                m.sum(|x| x.sources[i].records.get()),
                m.sum(|x| x.sources[i].datagrams.get()),
                m.sum(|x| x.sources[i].kernel_drops.get()),
                m.sum(|x| x.sources[i].udp_truncated.get()),
                m.sum(|x| x.sources[i].rejects_total()),
                m.sum(|x| x.sources[i].conns_accepted.get()),
            );
        }
        s
    }

    /// Waits for `n` decoded records, then a little longer to be sure no
    /// more arrive.
    pub fn wait_records(&self, n: u64, timeout: Duration) {
        self.wait_for(&format!("{n} records"), timeout, |h| h.records() >= n);
    }

    pub fn shutdown(&mut self) -> Summary {
        let s = self
            .app
            .take()
            .expect("running")
            .shutdown(Duration::from_secs(30));
        assert!(s.clean, "shutdown was not clean: {:?}", s.left);
        s
    }
}

/// Reads a JSON-lines file written by a file sink.
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l:?}: {e}")))
        .collect()
}

/// A record of the text test schema `srec`, a pure function of
/// (conn, seq) so the checker can regenerate it.
#[derive(Clone, Debug, PartialEq)]
pub struct Srec {
    pub ts: i64,
    pub conn: u64,
    pub seq: u64,
    pub device: String,
    pub site: String,
    pub temp: f64,
    pub ok: bool,
    pub battery: i64,
}

pub const SREC_SCHEMA: &str = r#"
[schemas.srec]
fields = [
  { name = "ts",      type = "timestamp" },
  { name = "conn",    type = "u64", required = true },
  { name = "seq",     type = "u64", required = true },
  { name = "device",  type = "symbol" },
  { name = "site",    type = "string" },
  { name = "temp",    type = "f64" },
  { name = "ok",      type = "bool" },
  { name = "battery", type = "i64" },
]
"#;

const SITES: [&str; 6] = ["plant-1", "plant 2", "p,3", "q\"4", "ü=5", "back\\slash"];

impl Srec {
    pub fn make(conn: u64, seq: u64) -> Srec {
        let mut r = Rng::for_stream(SEED ^ seq.wrapping_mul(0x9e37_79b9), conn);
        Srec {
            ts: 1_732_492_800_000_000_000 + (seq as i64) * 1_000_000 + conn as i64,
            conn,
            seq,
            device: format!("d-{:04}", r.range(1, 1000)),
            site: SITES[r.range(0, SITES.len() as u64 - 1) as usize].to_string(),
            temp: (r.range(0, 2_000_000) as f64 - 1_000_000.0) / 1024.0,
            ok: r.range(0, 1) == 1,
            battery: r.range(0, 200) as i64 - 100,
        }
    }

    pub fn json(&self, out: &mut Vec<u8>) {
        let v = serde_json::json!({
            "ts": self.ts, "conn": self.conn, "seq": self.seq, "device": self.device,
            "site": self.site, "temp": self.temp, "ok": self.ok, "battery": self.battery,
        });
        serde_json::to_writer(&mut *out, &v).expect("serialises");
        out.push(b'\n');
    }

    pub fn lp(&self, out: &mut Vec<u8>) {
        let esc_tag = |s: &str| {
            s.replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace('=', "\\=")
                .replace(' ', "\\ ")
        };
        let esc_str = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(
            out,
            "srec,device={} conn={}u,seq={}u,site=\"{}\",temp={:?},ok={},battery={}i {}",
            esc_tag(&self.device),
            self.conn,
            self.seq,
            esc_str(&self.site),
            self.temp,
            if self.ok { "t" } else { "FALSE" },
            self.battery,
            self.ts
        );
    }

    pub fn csv(&self, out: &mut Vec<u8>) {
        let q = |s: &str| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_string()
            }
        };
        let _ = writeln!(
            out,
            "{},{},{},{},{},{:?},{},{}",
            self.ts,
            self.conn,
            self.seq,
            q(&self.device),
            q(&self.site),
            self.temp,
            self.ok,
            self.battery
        );
    }

    /// Checks an output record against the regenerated one.
    pub fn check(v: &serde_json::Value) -> (u64, u64) {
        let conn = v["conn"].as_u64().expect("conn");
        let seq = v["seq"].as_u64().expect("seq");
        let want = Srec::make(conn, seq);
        assert_eq!(v["ts"].as_i64(), Some(want.ts), "{v}");
        assert_eq!(v["device"].as_str(), Some(want.device.as_str()), "{v}");
        assert_eq!(v["site"].as_str(), Some(want.site.as_str()), "{v}");
        assert_eq!(v["temp"].as_f64(), Some(want.temp), "{v}");
        assert_eq!(v["ok"].as_bool(), Some(want.ok), "{v}");
        assert_eq!(v["battery"].as_i64(), Some(want.battery), "{v}");
        (conn, seq)
    }
}

/// The binary test record (40 bytes), exercising every fixed width.
#[derive(Clone, Debug, PartialEq)]
pub struct Brec {
    pub conn: u32,
    pub qty: i32,
    pub ts: i64,
    pub seq: u64,
    pub symbol: u16,
    pub flag: bool,
    pub level: i8,
    pub ratio: f32,
    pub price: f64,
}

pub const BREC_SIZE: usize = 40;

pub const BREC_SCHEMA: &str = r#"
[schemas.brec]
size = 40
fields = [
  { name = "conn",   type = "u32",       offset = 0 },
  { name = "qty",    type = "i32",       offset = 4 },
  { name = "ts",     type = "timestamp", offset = 8 },
  { name = "seq",    type = "u64",       offset = 16 },
  { name = "symbol", type = "u16",       offset = 24 },
  { name = "flag",   type = "bool",      offset = 26 },
  { name = "level",  type = "i8",        offset = 27 },
  { name = "ratio",  type = "f32",       offset = 28 },
  { name = "price",  type = "f64",       offset = 32 },
]
"#;

impl Brec {
    pub fn make(conn: u32, seq: u64) -> Brec {
        let mut r = Rng::for_stream(SEED ^ seq.wrapping_mul(0x9e37_79b9), conn as u64);
        Brec {
            conn,
            qty: r.range(0, 2_000_000) as i32 - 1_000_000,
            ts: 1_732_492_800_000_000_000 + seq as i64,
            seq,
            symbol: r.range(0, 65_535) as u16,
            flag: r.range(0, 1) == 1,
            level: (r.range(0, 255) as i64 - 128) as i8,
            ratio: r.range(0, 4096) as f32 / 4.0,
            price: r.cents(1, 200),
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.conn.to_le_bytes());
        out.extend_from_slice(&self.qty.to_le_bytes());
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.symbol.to_le_bytes());
        out.push(self.flag as u8);
        out.push(self.level as u8);
        out.extend_from_slice(&self.ratio.to_le_bytes());
        out.extend_from_slice(&self.price.to_le_bytes());
    }

    pub fn check(v: &serde_json::Value) -> (u64, u64) {
        let conn = v["conn"].as_u64().expect("conn");
        let seq = v["seq"].as_u64().expect("seq");
        let want = Brec::make(conn as u32, seq);
        assert_eq!(v["qty"].as_i64(), Some(want.qty as i64), "{v}");
        assert_eq!(v["ts"].as_i64(), Some(want.ts), "{v}");
        assert_eq!(v["symbol"].as_u64(), Some(want.symbol as u64), "{v}");
        assert_eq!(v["flag"].as_bool(), Some(want.flag), "{v}");
        assert_eq!(v["level"].as_i64(), Some(want.level as i64), "{v}");
        assert_eq!(v["ratio"].as_f64(), Some(want.ratio as f64), "{v}");
        assert_eq!(v["price"].as_f64(), Some(want.price), "{v}");
        (conn, seq)
    }
}

/// How records are put on the wire in a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    BinaryDatagram,
    BinaryFixed,
    BinaryLen16,
    BinaryLen32,
    LpTcp,
    LpUdp,
    JsonTcp,
    CsvTcp,
}

impl Wire {
    pub fn is_udp(self) -> bool {
        matches!(self, Wire::BinaryDatagram | Wire::LpUdp)
    }

    pub fn is_binary(self) -> bool {
        matches!(
            self,
            Wire::BinaryDatagram | Wire::BinaryFixed | Wire::BinaryLen16 | Wire::BinaryLen32
        )
    }

    /// The `[[source]]` table for this wire, named `in`.
    pub fn source(self) -> String {
        let (transport, framing, format, schema) = match self {
            Wire::BinaryDatagram => ("udp", "datagram", "binary", "brec"),
            Wire::BinaryFixed => ("tcp", "fixed", "binary", "brec"),
            Wire::BinaryLen16 => ("tcp", "len16be", "binary", "brec"),
            Wire::BinaryLen32 => ("tcp", "len32le", "binary", "brec"),
            Wire::LpTcp => ("tcp", "newline", "lp", "srec"),
            Wire::LpUdp => ("udp", "datagram", "lp", "srec"),
            Wire::JsonTcp => ("tcp", "newline", "json", "srec"),
            Wire::CsvTcp => ("tcp", "newline", "csv", "srec"),
        };
        let extra = match self {
            Wire::CsvTcp => {
                "columns = [\"ts\", \"conn\", \"seq\", \"device\", \"site\", \"temp\", \"ok\", \"battery\"]\n"
            }
            Wire::LpTcp | Wire::LpUdp => "measurement = \"srec\"\n",
            _ => "",
        };
        format!(
            "[[source]]\nname = \"in\"\ntransport = \"{transport}\"\nlisten = \"127.0.0.1:0\"\nframing = \"{framing}\"\nformat = \"{format}\"\nschema = \"{schema}\"\nrcvbuf_bytes = \"32MiB\"\n{extra}"
        )
    }

    /// A full config: schemas, this source, `pipeline`, a file sink `out`.
    pub fn config(self, shards: usize, pipeline: &str, extra_runtime: &str) -> String {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[runtime]\nshards = {shards}\npin = false\nidle = \"adaptive\"\n{extra_runtime}\n{BREC_SCHEMA}\n{SREC_SCHEMA}\n{}\n[pipeline]\ntext = \"\"\"\n{pipeline}\n\"\"\"\n\n[[sink]]\nname = \"out\"\nkind = \"file\"\npath = \"{{DIR}}/out.jsonl\"\n",
            self.source()
        )
    }

    /// Appends record (conn, seq) in this wire's record encoding (frame
    /// prefixes are added by `frame`).
    pub fn record(self, conn: u64, seq: u64, out: &mut Vec<u8>) {
        match self {
            _ if self.is_binary() => Brec::make(conn as u32, seq).encode(out),
            Wire::LpTcp | Wire::LpUdp => Srec::make(conn, seq).lp(out),
            Wire::JsonTcp => Srec::make(conn, seq).json(out),
            Wire::CsvTcp => Srec::make(conn, seq).csv(out),
            _ => unreachable!(),
        }
    }

    /// Wraps a run of encoded records as this wire frames them on a stream.
    pub fn frame(self, records: &[u8], out: &mut Vec<u8>) {
        match self {
            Wire::BinaryLen16 => {
                for chunk in records.chunks(BREC_SIZE * 100) {
                    out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
                    out.extend_from_slice(chunk);
                }
            }
            Wire::BinaryLen32 => {
                for chunk in records.chunks(BREC_SIZE * 1000) {
                    out.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
                    out.extend_from_slice(chunk);
                }
            }
            _ => out.extend_from_slice(records),
        }
    }

    pub fn check(self, v: &serde_json::Value) -> (u64, u64) {
        if self.is_binary() {
            Brec::check(v)
        } else {
            Srec::check(v)
        }
    }
}

/// Sends records `0..n` of connection `conn` over one TCP connection,
/// framed, in writes of `chunk` bytes.
pub fn send_tcp(addr: SocketAddr, wire: Wire, conn: u64, n: u64, chunk: usize) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let mut recs = Vec::new();
    let mut framed = Vec::new();
    let mut seq = 0;
    while seq < n {
        recs.clear();
        framed.clear();
        let end = (seq + 1000).min(n);
        for q in seq..end {
            wire.record(conn, q, &mut recs);
        }
        wire.frame(&recs, &mut framed);
        for c in framed.chunks(chunk) {
            s.write_all(c).expect("send");
        }
        seq = end;
    }
    s.flush().expect("flush");
}

/// Sends records `0..n` of stream `conn` over UDP from its own socket,
/// `per` records per datagram, pacing to about `rate` datagrams/s.
/// Returns the datagrams sent.
pub fn send_udp(addr: SocketAddr, wire: Wire, conn: u64, n: u64, per: u64, rate: u64) -> u64 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut buf = Vec::new();
    let mut sent = 0;
    let t0 = Instant::now();
    let mut seq = 0;
    while seq < n {
        buf.clear();
        let end = (seq + per).min(n);
        for q in seq..end {
            wire.record(conn, q, &mut buf);
        }
        s.send_to(&buf, addr).expect("send");
        sent += 1;
        seq = end;
        let due = Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(ahead) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(ahead);
        }
    }
    sent
}

/// Reads the sink file and checks every record exactly: values, no
/// duplicates, none missing for streams `0..conns` of `n` records each.
pub fn verify_exact(wire: Wire, path: &Path, conns: u64, n: u64) {
    let lines = read_json_lines(path);
    let mut seen = vec![vec![false; n as usize]; conns as usize];
    for v in &lines {
        let (c, q) = wire.check(v);
        assert!(c < conns && q < n, "unexpected record {v}");
        assert!(!seen[c as usize][q as usize], "duplicate record {v}");
        seen[c as usize][q as usize] = true;
    }
    let missing: usize = seen.iter().map(|s| s.iter().filter(|x| !**x).count()).sum();
    assert_eq!(missing, 0, "{missing} records missing");
    assert_eq!(lines.len() as u64, conns * n);
}
