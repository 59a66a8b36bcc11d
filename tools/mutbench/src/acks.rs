//! Acknowledgement latency of changes under load: W4 (binary ticks over
//! TCP, 4 connections, `examples/ticks.mts`-shaped pipeline) runs through
//! the real control path (`Controller::handle`: compile, publish, wait for
//! every shard, audit fsync) while `set min_price` (10.0 / 10.5) and
//! `apply` (two pipelines differing in one stage) alternate at a fixed
//! rate. Reports, per kind, the `acked_ns` each answer carries (publication
//! to the last shard's acknowledgement) and the whole request's time, and
//! the load's records/s beside the same run without changes.

use crate::{SinkChoice, Workload, block, config, send_block, sinks};
use anyhow::{Context, bail};
use mutstream::config::Config;
use mutstream::control::engine::{Controller, Op, Request};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The two pipelines `apply` alternates: the same stages, one changed
/// expression (so `hot` and `big` are rebuilt and the schema is kept).
const PIPELINES: [&str; 2] = [
    "hot: filter price > $min_price\n   | eval notional = price * qty\nbig: route alerts when notional > $alert_notional\n   | to journal",
    "hot: filter price > $min_price\n   | eval notional = qty * price\nbig: route alerts when notional > $alert_notional\n   | to journal",
];

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 200_000_000)]
    records: u64,
    /// Shards (pinned); the senders run on the last CPU, as in `run`.
    #[arg(long, default_value_t = 1)]
    pub shards: usize,
    #[arg(long, default_value_t = 4)]
    conns: usize,
    /// Changes per second (set and apply alternate).
    #[arg(long, default_value_t = 100)]
    rate: u64,
    #[arg(long, value_enum, default_value = "blackhole")]
    sink: SinkChoice,
    /// Keep the kernel's loopback receive processing (RPS) and unbound
    /// workqueues off the workers' cores for the run (root; restored
    /// afterwards), as docs/OPERATIONS.md recommends.
    #[arg(long)]
    pub isolate: bool,
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

#[derive(Default)]
struct Run {
    secs: f64,
    /// (kind, acked_ns, request ns)
    changes: Vec<(&'static str, u64, u64)>,
    /// Times the workers were preempted (nonvoluntary context switches).
    preempted: u64,
    /// CPU time of `ksoftirqd/N` on the workers' cores (ms).
    ksoftirqd_ms: f64,
}

/// `nonvoluntary_ctxt_switches` of thread `tid` of this process.
fn preemptions(tid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("nonvoluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// CPU seconds of the `ksoftirqd/N` threads for `cores`.
fn ksoftirqd_secs(cores: &[usize]) -> f64 {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    let names: Vec<String> = cores.iter().map(|c| format!("ksoftirqd/{c}\n")).collect();
    rd.flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| names.contains(&c))
        })
        .map(|e| crate::stat_cpu(&e.path().join("stat").display().to_string()))
        .sum()
}

fn one(a: &Args, mutate: bool, blocks: &[Vec<u8>], unique: u64) -> anyhow::Result<Run> {
    let dir = tempfile_dir()?;
    let text = config(Workload::W4).replacen(
        "[runtime]\nshards = 1\n",
        &format!(
            "[runtime]\nshards = {}\nstate_dir = \"{}\"\n",
            a.shards,
            dir.join("state").display()
        ),
        1,
    ) + &sinks(a.sink, &dir);
    if !text.contains("state_dir") {
        bail!("the W4 config no longer starts with [runtime] shards = 1");
    }
    let cfg = Config::parse(&text, "mutbench", std::path::Path::new("."))?;
    // Every core again (the previous run confined this thread), so the
    // appliance finds them all to pin its workers on.
    mutstream::sys::allow_cores(&[]);
    let mut ctl = Controller::start(cfg, true)?;
    // As `mutstream run` does: the control thread stays off the workers' cores.
    mutstream::sys::allow_cores(&mutstream::runtime::housekeeping_cores(
        &ctl.app().config().runtime,
    ));
    let addr = ctl.app().local_addr("in").context("bound")?;
    let m = ctl.app().metrics().clone();
    let per = a.records / a.conns as u64;
    let mut socks: Vec<TcpStream> = (0..a.conns)
        .map(|_| TcpStream::connect(addr))
        .collect::<Result<_, _>>()?;
    let sender_core = core_affinity::get_core_ids()
        .unwrap_or_default()
        .last()
        .copied();
    let ordering = std::sync::atomic::Ordering::Relaxed;
    let tids: Vec<i32> = m.shards.iter().map(|s| s.tid.load(ordering)).collect();
    let worker_cores: Vec<usize> = (0..a.shards).collect();
    let pre0: u64 = tids.iter().map(|&t| preemptions(t)).sum();
    let soft0 = ksoftirqd_secs(&worker_cores);
    let mut run = Run::default();
    let t0 = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| -> anyhow::Result<()> {
        for (c, sock) in socks.iter_mut().enumerate() {
            let n = if c == a.conns - 1 {
                a.records - per * (a.conns as u64 - 1)
            } else {
                per
            };
            let data = &blocks[c];
            let done = &done;
            s.spawn(move || {
                if let Some(core) = sender_core {
                    core_affinity::set_for_current(core);
                }
                send_block(sock, Workload::W4, data, unique, n).expect("send");
                done.fetch_add(1, std::sync::atomic::Ordering::Release);
            });
        }
        if !mutate {
            return Ok(());
        }
        let gap = Duration::from_secs_f64(1.0 / a.rate as f64);
        let mut next = Instant::now() + gap;
        let mut k = 0u64;
        while done.load(std::sync::atomic::Ordering::Acquire) < a.conns {
            if let Some(w) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(w);
            }
            next += gap;
            let (kind, op) = if k.is_multiple_of(2) {
                let v = if k.is_multiple_of(4) { "10.5" } else { "10.0" };
                (
                    "set",
                    Op::Set {
                        name: "min_price".into(),
                        value: v.into(),
                    },
                )
            } else {
                (
                    "apply",
                    Op::Apply {
                        text: PIPELINES[(k / 2 % 2) as usize].into(),
                        origin: "mutbench.mts".into(),
                        dry_run: false,
                        at: None,
                    },
                )
            };
            k += 1;
            let r0 = Instant::now();
            let reply = ctl.handle(Request {
                op,
                author: "mutbench".into(),
                if_match: None,
                idempotency_key: None,
            });
            let req_ns = r0.elapsed().as_nanos() as u64;
            if reply.status != 200 {
                bail!("{kind} answered {}: {}", reply.status, reply.body);
            }
            let acked = reply.body["acked_ns"].as_u64().context("acked_ns")?;
            run.changes.push((kind, acked, req_ns));
            ctl.app_mut().reclaim();
        }
        Ok(())
    })?;
    drop(socks);
    let records_in = || m.sum(|s| s.sources[0].records.get());
    while records_in() < a.records {
        if t0.elapsed() > Duration::from_secs(600) {
            bail!("only {} of {} records arrived", records_in(), a.records);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    run.secs = t0.elapsed().as_secs_f64();
    run.preempted = tids.iter().map(|&t| preemptions(t)).sum::<u64>() - pre0;
    run.ksoftirqd_ms = (ksoftirqd_secs(&worker_cores) - soft0) * 1e3;
    let summary = ctl.into_app().shutdown(Duration::from_secs(30));
    if summary.sources[0].records != a.records || summary.chain_in != a.records {
        bail!(
            "lost records: sent {}, decoded {}, chain {}",
            a.records,
            summary.sources[0].records,
            summary.chain_in
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let d = base.join(format!("mutbench-acks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// Percentile `p` (0..=100) of sorted `v`, nearest rank.
fn pct(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[i.clamp(1, v.len()) - 1]
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e3)
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let unique = 100_000;
    let blocks: Vec<Vec<u8>> = (0..a.conns as u64)
        .map(|c| block(Workload::W4, 1, c, unique))
        .collect();
    eprintln!(
        "acks: W4 {} records, {} shard(s), {} connections; first without changes, then with {} changes/s",
        a.records, a.shards, a.conns, a.rate
    );
    let base = one(&a, false, &blocks, unique)?;
    let with = one(&a, true, &blocks, unique)?;
    let rate = |r: &Run| a.records as f64 / r.secs;
    println!(
        "| W4, {} shard(s) | records/s | changes | worker preemptions | ksoftirqd on worker cores |\n|---|---:|---:|---:|---:|",
        a.shards
    );
    for (name, r) in [("without changes", &base), ("with changes", &with)] {
        println!(
            "| {name} | {:.0} | {} | {} | {:.0} ms |",
            rate(r),
            r.changes.len(),
            r.preempted,
            r.ksoftirqd_ms
        );
    }
    println!(
        "\n| change | n | acked p50 µs | p90 | p99 | max | request p50 µs | p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut out = serde_json::Map::new();
    for kind in ["set", "apply"] {
        let sorted = |f: fn(&(&str, u64, u64)) -> u64| {
            let mut v: Vec<u64> = with.changes.iter().filter(|c| c.0 == kind).map(f).collect();
            v.sort_unstable();
            v
        };
        let (acked, req) = (sorted(|c| c.1), sorted(|c| c.2));
        println!(
            "| {kind} | {} | {} | {} | {} | {} | {} | {} |",
            acked.len(),
            us(pct(&acked, 50.0)),
            us(pct(&acked, 90.0)),
            us(pct(&acked, 99.0)),
            us(acked.last().copied().unwrap_or(0)),
            us(pct(&req, 50.0)),
            us(pct(&req, 99.0)),
        );
        out.insert(
            kind.into(),
            serde_json::json!({
                "n": acked.len(),
                "acked_p50_ns": pct(&acked, 50.0),
                "acked_p90_ns": pct(&acked, 90.0),
                "acked_p99_ns": pct(&acked, 99.0),
                "acked_max_ns": acked.last().copied().unwrap_or(0),
                "request_p50_ns": pct(&req, 50.0),
                "request_p99_ns": pct(&req, 99.0),
            }),
        );
    }
    out.insert("records_per_s_without".into(), rate(&base).into());
    out.insert("records_per_s_with".into(), rate(&with).into());
    out.insert("shards".into(), a.shards.into());
    out.insert("worker_preemptions_with".into(), with.preempted.into());
    out.insert("ksoftirqd_ms_with".into(), with.ksoftirqd_ms.into());
    if let Some(p) = a.json {
        std::fs::write(&p, serde_json::to_vec_pretty(&out)?)?;
    }
    Ok(())
}
