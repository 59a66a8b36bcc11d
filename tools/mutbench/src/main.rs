//! `mutbench`: end-to-end throughput of mutstream on WORKLOADS.md's W1, W2
//! and W4 (filter + eval, blackhole or journal sinks, 1 shard), beside the
//! machine's own TCP loopback limit (iperf3) measured in the same run.
//!
//! The appliance runs in this process with its worker pinned to core 0;
//! the senders are pinned to the last core. Throughput is records from the
//! first byte sent until the worker has decoded every record; CPU is the
//! worker's and sink threads' own time from /proc/self/task/TID/stat, so
//! the senders' CPU never counts as the appliance's. A run that loses a
//! record fails.
//!
//! `mutbench send` is the seeded sender alone, for tests and scripts that
//! run the appliance as a separate process.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use mutstream::config::Config;
use mutstream::loadgen::{Rng, Sensor, Tick};
use mutstream::runtime::Appliance;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "mutbench",
    about = "mutstream end-to-end benchmarks (WORKLOADS.md W2, W4)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Sensor JSON lines over TCP, newline framing.
    W1,
    /// Sensor line protocol over TCP, newline framing.
    W2,
    /// Binary ticks over TCP, fixed 32-byte framing.
    W4,
}

#[derive(Subcommand)]
enum Cmd {
    /// W3: ticks over UDP, 32 per datagram, at the sender's maximum rate:
    /// datagrams/s the appliance receives against a do-nothing receiver
    /// fed by the same sender in the same run (SPEC: ≥ 95 %).
    Udp {
        /// Datagrams per run (default 1 562 500: WORKLOADS.md's 50 M ticks).
        #[arg(long, default_value_t = 1_562_500)]
        datagrams: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// L1 and L2: ticks over UDP at a fixed rate through examples/ticks.mts
    /// into a journal; latency from the intended send time (mutgen, mutlat
    /// and the appliance as separate processes), beside sockperf's one-way
    /// loopback latency; L2 changes `min_price` 100 times a second through
    /// the admin API meanwhile and reports the acknowledgement times.
    Latency {
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        /// 3 s at 20 000/s: checks the run is whole, not its speed.
        #[arg(long)]
        quick: bool,
        /// L1 only, without L2 (the same run with 100 parameter changes a
        /// second through the admin API).
        #[arg(long)]
        no_l2: bool,
        /// Then L2 once more with `strace -c` on the worker threads, to
        /// show which syscalls they make while changes are applied (that
        /// run's latency is not reported: strace slows every syscall).
        #[arg(long)]
        strace: bool,
        /// Then "L2x", the control for L2: the same changes, sent to a
        /// second appliance on the machine that receives no records, so
        /// the control plane's work is there and the measured appliance
        /// never switches.
        #[arg(long)]
        l2x: bool,
        /// Keep the kernel's loopback receive processing (RPS) and unbound
        /// workqueues off the worker's core for the run (root; restored
        /// afterwards), as docs/OPERATIONS.md recommends.
        #[arg(long)]
        isolate: bool,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Acknowledgement latency of `set` and `apply` under W4 load, through
    /// the real control path, and the load's records/s with and without
    /// the changes.
    Acks(acks::Args),
    /// The cost of a `tap` nobody reads: W4 records/s with a tap armed on
    /// stage `hot` (its buffers fill, then every tapped batch is dropped
    /// and counted) against W4 without, runs alternating, in one process.
    Tap {
        /// Records per run.
        #[arg(long, default_value_t = 100_000_000)]
        records: u64,
        /// Runs of each kind; medians are compared.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, default_value_t = 4)]
        conns: usize,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Run workloads in-process and print a Markdown table.
    Run {
        #[arg(long, value_enum, num_args = 1.., default_values = ["w1", "w2", "w4"])]
        workload: Vec<Workload>,
        /// Records per run (default: 20M for W1 and W2, 100M for W4 as WORKLOADS.md).
        #[arg(long)]
        records: Option<u64>,
        /// Runs per workload; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 4)]
        conns: usize,
        /// Write the results as JSON too.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
        /// Skip the iperf3 measurement.
        #[arg(long)]
        no_limits: bool,
        /// Where records go: counted by a blackhole, or appended to a
        /// journal (256 MiB segments, fsync interval, 2 GiB retention) in
        /// --journal-dir.
        #[arg(long, value_enum, default_value = "blackhole")]
        sink: SinkChoice,
        /// The journal's directory (default: /dev/shm, else the temp dir);
        /// removed after each run.
        #[arg(long)]
        journal_dir: Option<std::path::PathBuf>,
    },
    /// W1 with a `file` sink through mutstream and its peers (syslog-ng,
    /// rsyslog, Vector, Fluent Bit), each a separate process on the same
    /// seeded bytes; configurations in tools/peers/.
    Peers {
        /// Records per run (W1 is 20 M; the peers take minutes for that).
        #[arg(long, default_value_t = 2_000_000)]
        records: u64,
        #[arg(long, default_value_t = 3)]
        runs: usize,
        #[arg(long, default_value_t = 4)]
        conns: usize,
        /// Systems to run, in this order.
        #[arg(long, num_args = 1.., default_values = ["mutstream", "syslog-ng", "rsyslog", "vector", "fluent-bit"])]
        peer: Vec<String>,
        /// Install the Debian packages of missing peers (apt-get, one
        /// after the other: syslog-ng and rsyslog conflict).
        #[arg(long)]
        install: bool,
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
    /// Send a seeded workload to a running appliance.
    Send {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, value_enum)]
        workload: Workload,
        #[arg(long, default_value_t = 1_000_000)]
        records: u64,
        #[arg(long, default_value_t = 4)]
        conns: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// UDP instead of TCP (W4 only: 32 ticks per datagram, paced to
        /// about 20 000 datagrams/s per connection).
        #[arg(long)]
        udp: bool,
    },
}

/// One connection's bytes: `unique` seeded records, sent repeatedly to
/// reach the record count (generation stays off the measured path).
fn block(w: Workload, seed: u64, conn: u64, unique: u64) -> Vec<u8> {
    let mut r = Rng::for_stream(seed, conn);
    let mut out = Vec::new();
    for i in 0..unique {
        match w {
            Workload::W4 => Tick::draw(&mut r, mutstream::loadgen::SENSOR_EPOCH_NS + i as i64, i)
                .encode(&mut out),
            Workload::W2 => Sensor::draw(&mut r, i).lp(&mut out),
            Workload::W1 => Sensor::draw(&mut r, i).json(&mut out),
        }
    }
    out
}

fn record_len(w: Workload, block: &[u8], unique: u64) -> Option<usize> {
    match w {
        Workload::W4 => Some(32),
        Workload::W1 | Workload::W2 => {
            let _ = (block, unique);
            None
        }
    }
}

/// Sends `records` records of `data` (holding `unique` records) over `s`.
fn send_block(
    s: &mut TcpStream,
    w: Workload,
    data: &[u8],
    unique: u64,
    records: u64,
) -> std::io::Result<()> {
    let mut left = records;
    while left >= unique {
        s.write_all(data)?;
        left -= unique;
    }
    if left > 0 {
        // The first `left` records of the block.
        let cut = match record_len(w, data, unique) {
            Some(n) => n * left as usize,
            None => {
                let mut seen = 0u64;
                let mut at = 0;
                for (i, &b) in data.iter().enumerate() {
                    if b == b'\n' {
                        seen += 1;
                        if seen == left {
                            at = i + 1;
                            break;
                        }
                    }
                }
                at
            }
        };
        s.write_all(&data[..cut])?;
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum SinkChoice {
    Blackhole,
    Journal,
}

fn sinks(choice: SinkChoice, dir: &std::path::Path) -> String {
    match choice {
        SinkChoice::Blackhole => {
            "[[sink]]\nname = \"journal\"\nkind = \"blackhole\"\n[[sink]]\nname = \"alerts\"\nkind = \"blackhole\"\n".into()
        }
        SinkChoice::Journal => format!(
            "[[sink]]\nname = \"journal\"\nkind = \"journal\"\npath = \"{0}/journal\"\nmax_bytes = \"2GiB\"\n[[sink]]\nname = \"alerts\"\nkind = \"journal\"\npath = \"{0}/alerts\"\nmax_bytes = \"2GiB\"\n",
            dir.display()
        ),
    }
}

fn config(w: Workload) -> String {
    let (schema, source, pipeline) = match w {
        Workload::W4 => (
            r#"[schemas.tick]
size = 32
fields = [
  { name = "ts",     type = "timestamp", offset = 0 },
  { name = "seq",    type = "u64",       offset = 8 },
  { name = "symbol", type = "u32",       offset = 16 },
  { name = "qty",    type = "i32",       offset = 20 },
  { name = "price",  type = "f64",       offset = 24 },
]"#,
            "framing = \"fixed\"\nformat = \"binary\"\nschema = \"tick\"",
            "hot: filter price > $min_price\n   | eval notional = price * qty\nbig: route alerts when notional > $alert_notional\n   | to journal",
        ),
        Workload::W1 | Workload::W2 => (
            r#"[schemas.sensor]
fields = [
  { name = "ts",      type = "timestamp" },
  { name = "device",  type = "symbol" },
  { name = "site",    type = "symbol" },
  { name = "temp",    type = "f64" },
  { name = "hum",     type = "f64" },
  { name = "battery", type = "i64" },
]"#,
            if w == Workload::W1 {
                "framing = \"newline\"\nformat = \"json\"\nschema = \"sensor\""
            } else {
                "framing = \"newline\"\nformat = \"lp\"\nschema = \"sensor\""
            },
            "hot: filter temp > 25.0\n   | eval temp_f = temp * 9.0 / 5.0 + 32.0\n   | to journal",
        ),
    };
    format!(
        r#"[runtime]
shards = 1
pin = true
idle = "adaptive"
{schema}
[[source]]
name = "in"
transport = "tcp"
listen = "127.0.0.1:0"
{source}
[pipeline]
text = """
{pipeline}
"""
[params]
min_price = 10.0
alert_notional = 150000.0
"#
    )
}

/// Thread ids of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// utime + stime of thread `tid` of this process, in seconds.
fn thread_cpu(tid: i32) -> f64 {
    stat_cpu(&format!("/proc/self/task/{tid}/stat"))
}

/// utime + stime from a `/proc/.../stat` file, in seconds.
fn stat_cpu(path: &str) -> f64 {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the ")" of the command name; utime and stime are 14 and 15.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14) + ticks(15)) / hz
}

struct RunResult {
    records: u64,
    secs: f64,
    cpu_secs: f64,
    bytes: u64,
}

#[allow(clippy::too_many_arguments)]
fn run_once(
    w: Workload,
    records: u64,
    conns: usize,
    blocks: &[Vec<u8>],
    unique: u64,
    sink: SinkChoice,
    journal_dir: &std::path::Path,
    tap: Option<&str>,
) -> anyhow::Result<RunResult> {
    let text = config(w) + &sinks(sink, journal_dir);
    let cfg = Config::parse(&text, "mutbench", std::path::Path::new("."))?;
    let app = Appliance::start(cfg)?;
    if let Some(stage) = tap {
        // Armed and never read: what an abandoned `mutstream tap` costs.
        let want = mutstream::sink::tap::TapWant::new(stage, 100, 500_000_000)
            .context("stage name too long")?;
        app.set_tap(&want);
    }
    let addr = app.local_addr("in").context("bound")?;
    let m = app.metrics().clone();
    // Worker ids are published before start returns; blackhole sinks
    // count on the worker and journals are appended by it, with one
    // journal thread beside it.
    let ordering = std::sync::atomic::Ordering::Relaxed;
    let tids: Vec<i32> = std::iter::once(m.shards[0].tid.load(ordering))
        .chain(
            m.sinks
                .iter()
                .map(|s| s.tid.load(ordering))
                .filter(|&t| t != 0),
        )
        .chain(threads_named("mutstream-journ"))
        .collect();
    let cpu0: f64 = tids.iter().map(|&t| thread_cpu(t)).sum();
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let sender_core = cores.last().copied();
    let per = records / conns as u64;
    let mut socks: Vec<TcpStream> = (0..conns)
        .map(|_| TcpStream::connect(addr))
        .collect::<Result<_, _>>()?;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (c, sock) in socks.iter_mut().enumerate() {
            let n = if c == conns - 1 {
                records - per * (conns as u64 - 1)
            } else {
                per
            };
            let data = &blocks[c];
            s.spawn(move || {
                if let Some(core) = sender_core {
                    core_affinity::set_for_current(core);
                }
                send_block(sock, w, data, unique, n).expect("send");
            });
        }
    });
    drop(socks);
    let records_in = || m.sum(|s| s.sources[0].records.get());
    while records_in() < records {
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("only {} of {records} records arrived", records_in());
        }
        std::hint::spin_loop();
        std::thread::sleep(Duration::from_micros(200));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1: f64 = tids.iter().map(|&t| thread_cpu(t)).sum();
    let bytes = m.sum(|s| s.sources[0].bytes.get());
    let summary = app.shutdown(Duration::from_secs(30));
    let rejects: u64 = summary.sources[0].rejects.iter().map(|r| r.1).sum();
    if summary.sources[0].records != records || rejects != 0 || summary.chain_in != records {
        bail!(
            "lost records: sent {records}, decoded {}, rejected {rejects}, chain {}",
            summary.sources[0].records,
            summary.chain_in
        );
    }
    Ok(RunResult {
        records,
        secs,
        cpu_secs: cpu1 - cpu0,
        bytes,
    })
}

/// `mutbench tap`: W4 without and with an unread tap, alternating.
fn tap_cmd(
    records: u64,
    runs: usize,
    conns: usize,
    json: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let w = Workload::W4;
    let unique = (records / conns as u64).clamp(1, 1_000_000);
    let blocks: Vec<Vec<u8>> = (0..conns).map(|c| block(w, 1, c as u64, unique)).collect();
    let dir = std::env::temp_dir();
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for r in 0..runs {
        for (tap, v) in [(None, &mut off), (Some("hot"), &mut on)] {
            let res = run_once(
                w,
                records,
                conns,
                &blocks,
                unique,
                SinkChoice::Blackhole,
                &dir,
                tap,
            )?;
            let rps = res.records as f64 / res.secs;
            eprintln!(
                "run {} {}: {:.2} M rec/s",
                r + 1,
                if tap.is_some() {
                    "tap armed, unread"
                } else {
                    "no tap"
                },
                rps / 1e6
            );
            v.push(rps);
        }
    }
    let (a, b) = (median(&mut off), median(&mut on));
    println!(
        "| W4, {records} records, {runs} runs each | median rec/s |\n|---|---|\n| no tap | {:.2} M |\n| tap on `hot`, nobody reading | {:.2} M |\n| cost | {:+.2} % |",
        a / 1e6,
        b / 1e6,
        (a - b) / a * 100.0
    );
    if let Some(p) = json {
        std::fs::write(
            p,
            serde_json::to_vec_pretty(&serde_json::json!({
                "workload": "W4", "records": records, "runs": runs,
                "no_tap": off, "tap_unread": on,
                "median_no_tap": a, "median_tap_unread": b,
                "cost_percent": (a - b) / a * 100.0,
            }))?,
        )?;
    }
    Ok(())
}

mod acks;
mod isolate;
mod latency;
mod peers;
mod udp;

#[allow(clippy::too_many_arguments)]
fn peers_cmd(
    records: u64,
    runs: usize,
    conns: usize,
    names: Vec<String>,
    install: bool,
    json: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    for n in &names {
        if !peers::PEERS.iter().any(|p| p.name == n) {
            bail!(
                "unknown peer {n:?}: one of {}",
                peers::PEERS
                    .iter()
                    .map(|p| p.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let unique = (records / conns as u64).clamp(1, 1_000_000);
    let per = records / conns as u64;
    let per_conn: Vec<u64> = (0..conns)
        .map(|c| {
            if c == conns - 1 {
                records - per * (conns as u64 - 1)
            } else {
                per
            }
        })
        .collect();
    eprintln!("W1 for peers: generating {conns} x {unique} seeded records");
    let blocks: Vec<Vec<u8>> = (0..conns)
        .map(|c| block(Workload::W1, 1, c as u64, unique))
        .collect();
    // P1 passes temp > 25.0: count it on the same draws.
    let mut expected = 0;
    for (c, &n) in per_conn.iter().enumerate() {
        let mut r = Rng::for_stream(1, c as u64);
        let pass: Vec<bool> = (0..unique)
            .map(|i| Sensor::draw(&mut r, i).temp > 25.0)
            .collect();
        let all = pass.iter().filter(|&&p| p).count() as u64;
        let head = pass[..(n % unique) as usize].iter().filter(|&&p| p).count() as u64;
        expected += n / unique * all + head;
    }
    eprintln!("W1 for peers: {records} records, {expected} pass P1");
    let load = peers::Load {
        blocks: &blocks,
        unique,
        per_conn,
        expected,
    };
    let (rows, skipped) = peers::run(&names, &load, records, runs, install)?;
    let base = rows
        .iter()
        .find(|r| r.name == "mutstream")
        .map(|r| r.per_cpu);
    let mut md = format!(
        "W1 with a file sink: {records} sensor JSON records over {conns} TCP connections, P1 ({expected} pass), median of {runs}\n\n| system | version | rec/s | rec per CPU-s | per CPU-s, mutstream ÷ system | records written |\n|---|---|---|---|---|---|\n"
    );
    let mut out = Vec::new();
    for r in &rows {
        md += &format!(
            "| {} | {} | {:.0} k | {:.0} k | {} | {expected} of {expected} |\n",
            r.name,
            r.version,
            r.rate / 1e3,
            r.per_cpu / 1e3,
            base.map_or("-".into(), |b| format!("{:.1}x", b / r.per_cpu)),
        );
        out.push(serde_json::json!({
            "system": r.name, "version": r.version, "records": records, "expected": expected,
            "runs": runs, "records_per_s": r.rate, "records_per_cpu_s": r.per_cpu,
            "mutstream_per_cpu_ratio": base.map(|b| b / r.per_cpu),
        }));
    }
    for s in &skipped {
        md += &format!("\nskipped: {s}");
    }
    println!("{md}");
    if let Some(p) = json {
        std::fs::write(
            &p,
            serde_json::to_vec_pretty(&serde_json::json!({"rows": out, "skipped": skipped}))?,
        )?;
    }
    Ok(())
}

fn udp_cmd(datagrams: u64, runs: usize, json: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    let tp: Vec<Option<f64>> = [64, 1024]
        .iter()
        .map(|&b| latency::sockperf_tp(b, 3))
        .collect();
    match (tp[0], tp[1]) {
        (Some(a), Some(b)) => {
            eprintln!("sockperf tp over loopback: {a:.0} msg/s at 64 B, {b:.0} msg/s at 1024 B")
        }
        _ => eprintln!("sockperf not found: UDP limits not measured (tools/bench.sh installs it)"),
    }
    eprintln!("W3: generating 100 000 seeded datagrams of 32 ticks");
    let block = udp::datagrams(100_000);
    let (mut base, mut app, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..runs {
        let b = udp::baseline(&block, datagrams)?;
        let dir = std::env::temp_dir().join(format!("mutbench-w3-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let a = udp::appliance(&block, datagrams, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        let a = a?;
        eprintln!(
            "W3 run {}: do-nothing receiver {:.0} datagrams/s ({} dropped), appliance {:.0} datagrams/s ({} dropped, {} counted by the kernel), ratio {:.3}",
            r + 1,
            b.rate(),
            b.dropped,
            a.rate(),
            a.dropped,
            a.counted.unwrap_or(0),
            a.rate() / b.rate()
        );
        ratio.push(a.rate() / b.rate());
        base.push(b.rate());
        app.push(a.rate());
    }
    let (b, a, q) = (median(&mut base), median(&mut app), median(&mut ratio));
    println!(
        "| W3 UDP, 32 ticks per datagram | {datagrams} datagrams | receiver {:.0}/s | appliance {:.0}/s ({:.2} M ticks/s) | {:.1} % of the receiver (SPEC ≥ 95 %) | {} |",
        b,
        a,
        a * 32.0 / 1e6,
        q * 100.0,
        match (tp[0], tp[1]) {
            (Some(s), Some(l)) => format!(
                "sockperf tp {s:.0}/s at 64 B, {l:.0}/s at 1024 B ({:.1} % of it)",
                a / l * 100.0
            ),
            _ => "sockperf not measured".into(),
        }
    );
    if let Some(p) = json {
        std::fs::write(
            p,
            serde_json::to_vec_pretty(&serde_json::json!({
                "workload": "W3", "datagrams": datagrams, "runs": runs,
                "receiver_datagrams_per_s": b, "appliance_datagrams_per_s": a, "ratio": q,
                "sockperf_tp_64_msgs_per_s": tp[0], "sockperf_tp_1024_msgs_per_s": tp[1],
            }))?,
        )?;
    }
    Ok(())
}

/// iperf3's single-stream TCP loopback throughput in GB/s, if available.
fn iperf3() -> Option<f64> {
    let port = "5299";
    let mut server = std::process::Command::new("iperf3")
        .args(["-s", "-1", "-p", port])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    let out = std::process::Command::new("iperf3")
        .args(["-c", "127.0.0.1", "-p", port, "-t", "3", "-J"])
        .output()
        .ok()?;
    let _ = server.wait();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 8e9)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn latency_cmd(
    rate: u64,
    secs: u64,
    quick: bool,
    l2: bool,
    l2x: bool,
    strace: bool,
    json: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let (rate, secs) = if quick { (20_000, 3) } else { (rate, secs) };
    let one_way = latency::sockperf_pp(if quick { 1 } else { 5 });
    if one_way.is_none() {
        eprintln!(
            "sockperf not found: one-way loopback latency not measured (tools/bench.sh installs it)"
        );
    }
    let mut runs = Vec::new();
    for (name, per_s, elsewhere) in [("L1", 0u32, false), ("L2", 100, false), ("L2x", 100, true)] {
        if (name == "L2" && !l2) || (name == "L2x" && !l2x) {
            continue;
        }
        let dir = std::env::temp_dir().join(format!(
            "mutbench-{}-{}",
            name.to_lowercase(),
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        eprintln!(
            "{name}: {rate} ticks/s over UDP for {secs} s{} ...",
            match (per_s > 0, elsewhere) {
                (true, false) => ", PUT /v1/params/min_price 10.0/10.5 100 times a second",
                (true, true) => ", the same PUTs to a second appliance that receives nothing",
                _ => "",
            }
        );
        let r = latency::run_l1(&dir, rate, secs, per_s, false, elsewhere);
        if r.is_ok() && !quick {
            let keep = std::path::Path::new("target/bench");
            let stem = name.to_lowercase();
            if std::fs::create_dir_all(keep).is_ok() {
                let _ = std::fs::copy(dir.join("l1.hgrm"), keep.join(format!("{stem}.hgrm")));
                let _ = std::fs::copy(dir.join("l1.svg"), keep.join(format!("{stem}.svg")));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let mut r = r?;
        r.one_way = one_way;
        runs.push((name, r));
    }
    let f = |v: &[f64], i: usize| v.get(i).map_or("-".to_string(), |x| format!("{x:.1}"));
    let mut md = String::new();
    for (name, r) in &runs {
        md += &format!(
            "{name}: {} ticks/s over UDP for {} s, examples/ticks.mts, journal; sent {}, kernel drops {}, journaled {}{}{}\n",
            r.rate,
            r.secs,
            r.sent,
            r.kernel_drops,
            r.journaled,
            r.expected
                .map_or(String::new(), |e| format!(" (expected {e})")),
            if r.kept_schedule {
                String::new()
            } else {
                format!(
                    "; mutgen fell behind its schedule by up to {} ms",
                    r.sender_lag_ms.map_or("?".into(), |l| format!("{l:.2}"))
                )
            }
        );
    }
    md += "\n| µs | p50 | p90 | p99 | p99.9 | p99.99 | max |\n|---|---|---|---|---|---|---|\n";
    let row = |label: &str, v: &[f64]| {
        format!(
            "| {label} | {} | {} | {} | {} | {} | {} |\n",
            f(v, 0),
            f(v, 1),
            f(v, 2),
            f(v, 3),
            f(v, 4),
            f(v, 5)
        )
    };
    for (name, r) in &runs {
        md += &row(&format!("{name} commit_ns − ts"), &r.commit);
        md += &row(&format!("{name} seen by a tailer process − ts"), &r.tailer);
        md += &row(
            &format!("{name} commit_ns − actual send time"),
            &r.from_sent,
        );
        md += &row(
            &format!("{name} commit_ns − ingest_ns (the appliance alone)"),
            &r.inside,
        );
    }
    for (name, b) in runs.iter().skip(1) {
        let a = &runs[0].1;
        let worse = |i: usize| {
            a.commit
                .get(i)
                .zip(b.commit.get(i))
                .map_or("-".into(), |(x, y)| {
                    format!("{:+.0} %", (y / x - 1.0) * 100.0)
                })
        };
        md += &format!(
            "| {name} vs L1 (SPEC: no percentile worse by > 10 %) | {} | {} | {} | {} | {} | {} |\n",
            worse(0),
            worse(1),
            worse(2),
            worse(3),
            worse(4),
            worse(5)
        );
    }
    if let (Some((a, b, c)), Some((_, r))) = (one_way, runs.first()) {
        md +=
            &format!("| one-way loopback (sockperf pp) | {a:.1} | - | {b:.1} | {c:.1} | - | - |\n");
        md += &format!(
            "| L1 commit above loopback | {:.1} | - | {:.1} | {:.1} | - | - |\n| SPEC §9 budget | 5 | - | 15 | 40 | - | - |\n",
            r.commit[0] - a,
            r.commit[2] - b,
            r.commit[3] - c
        );
    }
    let mut acks = None;
    for (name, r) in &mut runs {
        if let Some(m) = r.mutations.as_mut() {
            let [ack, rtt] = m.summary();
            md += &format!(
                "\n{name} mutations: {} sent, {} failed, generations {}..{}. Acknowledged by every shard (server, publication to last ack): p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs (SPEC: p99 ≤ 1 ms); request to answer (client, keep-alive): p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs\n",
                m.sent,
                m.failed,
                m.generations.0,
                m.generations.1,
                ack.0,
                ack.1,
                ack.2,
                rtt.0,
                rtt.1,
                rtt.2
            );
            if *name == "L2" {
                acks = Some((ack, rtt, m.sent, m.failed));
            }
        }
    }
    let mut syscalls = None;
    if strace {
        let dir = std::env::temp_dir().join(format!("mutbench-l2s-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        eprintln!("L2 under strace -c on the worker threads ...");
        let r = latency::run_l1(&dir, rate, secs, 100, true, false);
        let _ = std::fs::remove_dir_all(&dir);
        let r = r?;
        let m = r.mutations.unwrap_or_default();
        let text = r.syscalls.unwrap_or_default();
        md += &format!(
            "\nWorker threads' syscalls during L2 (`strace -c`, a separate run with {} changes, generations {}..{}):\n\n```\n{}```\n",
            m.sent - m.failed,
            m.generations.0,
            m.generations.1,
            text
        );
        syscalls = Some(text);
    }
    println!("{md}");
    if let Some(p) = json {
        let v: Vec<serde_json::Value> = runs
            .iter()
            .map(|(name, r)| {
                serde_json::json!({
                    "workload": name, "rate": r.rate, "secs": r.secs, "sent": r.sent,
                    "kernel_drops": r.kernel_drops, "journaled": r.journaled, "expected": r.expected,
                    "commit_us": r.commit, "tailer_us": r.tailer, "inside_us": r.inside, "from_sent_us": r.from_sent,
                    "one_way_us": r.one_way.map(|(a, b, c)| [a, b, c]),
                    "kept_schedule": r.kept_schedule,
                })
            })
            .collect();
        let v = serde_json::json!({
            "runs": v,
            "l2_mutations": acks.map(|(a, r, sent, failed)| serde_json::json!({
                "sent": sent, "failed": failed,
                "acked_us_p50_p99_max": [a.0, a.1, a.2],
                "round_trip_us_p50_p99_max": [r.0, r.1, r.2],
            })),
            "l2_worker_syscalls": syscalls,
        });
        std::fs::write(&p, serde_json::to_vec_pretty(&v)?)?;
    }
    for (name, r) in &runs {
        if let Some(e) = r.expected
            && e != r.journaled
        {
            bail!(
                "{name} lost records: {} journaled, {e} expected",
                r.journaled
            );
        }
        if let Some(m) = &r.mutations
            && (m.failed > 0 || m.sent == 0)
        {
            bail!(
                "{name}: {} of {} parameter changes failed",
                m.failed,
                m.sent
            );
        }
    }
    Ok(())
}

/// The cores `shards` pinned workers (on cores 0..shards) leave free.
fn housekeeping(shards: usize) -> Vec<usize> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    (shards.min(n)..n).collect()
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Acks(a) => {
            let _iso = match a.isolate {
                true => Some(isolate::Isolation::apply(&housekeeping(a.shards))?),
                false => None,
            };
            acks::run(a)?
        }
        Cmd::Peers {
            records,
            runs,
            conns,
            peer,
            install,
            json,
        } => peers_cmd(records, runs, conns, peer, install, json)?,
        Cmd::Latency {
            rate,
            secs,
            quick,
            no_l2,
            strace,
            l2x,
            isolate,
            json,
        } => {
            // The appliance runs its embedded default: one shard, on core 0.
            let _iso = match isolate {
                true => Some(isolate::Isolation::apply(&housekeeping(1))?),
                false => None,
            };
            latency_cmd(rate, secs, quick, !no_l2, l2x, strace, json)?
        }
        Cmd::Udp {
            datagrams,
            runs,
            json,
        } => udp_cmd(datagrams, runs, json)?,
        Cmd::Tap {
            records,
            runs,
            conns,
            json,
        } => tap_cmd(records, runs, conns, json)?,
        Cmd::Send {
            addr,
            workload,
            records,
            conns,
            seed,
            udp: true,
        } => {
            if workload != Workload::W4 {
                bail!("--udp sends W4 ticks only");
            }
            let per = records / conns as u64;
            std::thread::scope(|s| {
                for c in 0..conns {
                    s.spawn(move || {
                        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
                        let mut r = Rng::for_stream(seed, c as u64);
                        let mut d = Vec::with_capacity(32 * 32);
                        let t0 = Instant::now();
                        let mut sent = 0u64;
                        let mut seq = 0;
                        while seq < per {
                            d.clear();
                            for _ in 0..32.min(per - seq) {
                                Tick::draw(
                                    &mut r,
                                    mutstream::loadgen::SENSOR_EPOCH_NS + seq as i64,
                                    seq,
                                )
                                .encode(&mut d);
                                seq += 1;
                            }
                            sock.send_to(&d, addr).expect("send");
                            sent += 1;
                            let due = Duration::from_secs_f64(sent as f64 / 20_000.0);
                            if let Some(ahead) = due.checked_sub(t0.elapsed()) {
                                std::thread::sleep(ahead);
                            }
                        }
                    });
                }
            });
            eprintln!(
                "mutbench: sent {} W4 records over UDP from {conns} sockets",
                per * conns as u64
            );
        }
        Cmd::Send {
            addr,
            workload,
            records,
            conns,
            seed,
            udp: false,
        } => {
            let unique = (records / conns as u64).clamp(1, 1_000_000);
            let blocks: Vec<Vec<u8>> = (0..conns)
                .map(|c| block(workload, seed, c as u64, unique))
                .collect();
            let per = records / conns as u64;
            let t0 = Instant::now();
            std::thread::scope(|s| {
                for (c, data) in blocks.iter().enumerate() {
                    let n = if c == conns - 1 {
                        records - per * (conns as u64 - 1)
                    } else {
                        per
                    };
                    s.spawn(move || {
                        let mut sock = TcpStream::connect(addr).expect("connect");
                        send_block(&mut sock, workload, data, unique, n).expect("send");
                    });
                }
            });
            eprintln!(
                "mutbench: sent {records} {workload:?} records over {conns} connections in {:.2} s",
                t0.elapsed().as_secs_f64()
            );
        }
        Cmd::Run {
            workload,
            records,
            runs,
            conns,
            json,
            no_limits,
            sink,
            journal_dir,
        } => {
            let base = journal_dir.unwrap_or_else(|| {
                let shm = std::path::Path::new("/dev/shm");
                if shm.is_dir() {
                    shm.to_path_buf()
                } else {
                    std::env::temp_dir()
                }
            });
            let jdir = base.join(format!("mutbench-journal-{}", std::process::id()));
            let limit = if no_limits { None } else { iperf3() };
            match limit {
                Some(g) => eprintln!("iperf3 TCP loopback: {g:.2} GB/s"),
                None if !no_limits => eprintln!(
                    "iperf3 not found on PATH: limits not measured (tools/bench.sh installs it)"
                ),
                None => {}
            }
            let mut rows = Vec::new();
            for w in workload {
                let n = records.unwrap_or(match w {
                    Workload::W1 | Workload::W2 => 20_000_000,
                    Workload::W4 => 100_000_000,
                });
                let unique = (n / conns as u64).clamp(1, 1_000_000);
                eprintln!("{w:?}: generating {conns} x {unique} seeded records");
                let blocks: Vec<Vec<u8>> =
                    (0..conns).map(|c| block(w, 1, c as u64, unique)).collect();
                let (mut rate, mut per_cpu, mut gbs) = (Vec::new(), Vec::new(), Vec::new());
                for r in 0..runs {
                    let res = run_once(w, n, conns, &blocks, unique, sink, &jdir, None);
                    let _ = std::fs::remove_dir_all(&jdir);
                    let res = res?;
                    let rps = res.records as f64 / res.secs;
                    eprintln!(
                        "{w:?} run {}: {} records in {:.3} s = {:.2} M rec/s, {:.2} M rec per CPU-s ({:.2} CPU-s)",
                        r + 1,
                        res.records,
                        res.secs,
                        rps / 1e6,
                        res.records as f64 / res.cpu_secs / 1e6,
                        res.cpu_secs
                    );
                    rate.push(rps);
                    per_cpu.push(res.records as f64 / res.cpu_secs);
                    gbs.push(res.bytes as f64 / res.secs / 1e9);
                }
                let floor = match w {
                    Workload::W1 => 1.5e6,
                    Workload::W2 => 2e6,
                    Workload::W4 => 15e6,
                };
                let target = match w {
                    Workload::W1 => 3e6,
                    Workload::W2 => 4e6,
                    Workload::W4 => 30e6,
                };
                rows.push((
                    w,
                    n,
                    median(&mut rate),
                    median(&mut per_cpu),
                    median(&mut gbs),
                    floor,
                    target,
                ));
            }
            let mut md = String::from(
                "| workload | records | median rec/s | rec per CPU-s | input GB/s | of iperf3 | vs floor | vs SPEC target |\n|---|---|---|---|---|---|---|---|\n",
            );
            let mut out = Vec::new();
            for (w, n, r, c, g, floor, target) in &rows {
                md += &format!(
                    "| {w:?} | {n} | {:.2} M | {:.2} M | {g:.3} | {} | {:.2}x | {:.2}x |\n",
                    r / 1e6,
                    c / 1e6,
                    limit.map_or("-".to_string(), |l| format!("{:.1} %", g / l * 100.0)),
                    r / floor,
                    r / target
                );
                out.push(serde_json::json!({
                    "workload": format!("{w:?}"), "records": n, "runs": runs,
                    "records_per_s": r, "records_per_cpu_s": c, "input_gb_per_s": g,
                                        "iperf3_gb_per_s": limit, "floor": floor, "spec_target": target,
                    "sink": format!("{sink:?}"),
                }));
            }
            println!("sinks: {sink:?}\n\n{md}");
            if let Some(p) = json {
                std::fs::write(&p, serde_json::to_vec_pretty(&out)?)?;
            }
        }
    }
    Ok(())
}
