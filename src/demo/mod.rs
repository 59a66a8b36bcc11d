//! `mutstream demo`: the appliance on its embedded default, a load
//! generator and a scripted series of live mutations in one process, with
//! a live table and a summary that accounts for every record sent.
//!
//! Everything is real: the sources listen on loopback (ephemeral ports),
//! the generator sends over UDP and TCP, mutations go through the same
//! controller as `ctl` (author `demo`, audited in the demo's state
//! directory), and the figures come from the appliance's counters and from
//! reading back the journals it wrote. The admin API is up while the demo
//! runs, so `mutstream ctl --admin ADDR status` works beside it.

pub mod load;
pub mod tail;

use crate::config::Config;
use crate::control::engine::{Controller, Op, Reply, Request};
use crate::control::http::Server;
use crate::metrics::thousands;
use hdrhistogram::Histogram;
use load::{LoadSpec, Sent};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The VWAP pipeline the demo switches to (`examples/ticks-vwap.mts`).
pub const VWAP: &str = include_str!("ticks-vwap.mts");

/// How the demo runs.
#[derive(Clone, Debug)]
pub struct Options {
    pub duration: Duration,
    /// Records per second over UDP and TCP together.
    pub rate: u64,
    /// Journals and state go here; emptied first.
    pub dir: PathBuf,
}

/// One scripted mutation: when (a fraction of the run), what it is called
/// on screen, and the request.
struct Step {
    at: f64,
    label: &'static str,
    op: fn() -> Op,
}

fn script() -> Vec<Step> {
    vec![
        Step {
            at: 0.15,
            label: "set min_price = 50",
            op: || Op::Set {
                name: "min_price".into(),
                value: "50".into(),
            },
        },
        Step {
            at: 0.30,
            label: "table watchlist put 4",
            op: || Op::TablePut {
                table: "watchlist".into(),
                key: "4".into(),
                cols: Vec::new(),
            },
        },
        Step {
            at: 0.45,
            label: "apply ticks-vwap.mts (1 s VWAP bars)",
            op: || Op::Apply {
                text: VWAP.into(),
                origin: "ticks-vwap.mts".into(),
                dry_run: false,
                at: None,
            },
        },
        Step {
            at: 0.70,
            label: "rollback (raw ticks again)",
            op: || Op::Rollback { to: None },
        },
        Step {
            at: 0.85,
            label: "set alert_notional = 100000",
            op: || Op::Set {
                name: "alert_notional".into(),
                value: "100000".into(),
            },
        },
    ]
}

/// What a scripted mutation did.
struct Done {
    at: Duration,
    label: &'static str,
    generation: Option<u64>,
    acked_ns: Option<u64>,
    error: Option<String>,
}

/// The embedded default, moved to ephemeral ports and under `dir`.
pub fn config(dir: &Path) -> Config {
    let mut cfg = Config::embedded();
    cfg.origin = "<embedded demo>".into();
    cfg.admin.listen = "127.0.0.1:0".parse().expect("an address");
    for s in &mut cfg.sources {
        s.listen.set_port(0);
    }
    for k in &mut cfg.sinks {
        k.path = Some(dir.join(&k.name));
    }
    cfg.runtime.state_dir = dir.join("state");
    cfg
}

/// Runs the demo; the result is the process exit code (0: every record
/// accounted for and a clean stop).
///
/// # Errors
/// The appliance or the generator could not start.
pub fn run(opts: &Options) -> anyhow::Result<u8> {
    use anyhow::Context;
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).context("cannot install signal handlers")?;
    }
    if opts.dir.exists() {
        std::fs::remove_dir_all(&opts.dir)
            .with_context(|| format!("cannot empty {}", opts.dir.display()))?;
    }
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("cannot create {}", opts.dir.display()))?;
    let cfg = config(&opts.dir);
    let cores = crate::runtime::housekeeping_cores(&cfg.runtime);
    let (server, inbox) = Server::start(
        cfg.admin.listen,
        &cfg.admin.tokens,
        cores.clone(),
        Arc::new(AtomicBool::new(true)),
    )
    .context("admin API: cannot listen on loopback")?;
    let mut ctl = Controller::start(cfg, true)?;
    crate::sys::allow_cores(&cores);
    let app = ctl.app();
    let addr = |name: &str| app.local_addr(name).expect("the embedded sources exist");
    let spec = LoadSpec {
        udp: addr("ticks-udp"),
        tcp: addr("ticks-tcp"),
        rate: opts.rate,
        seed: 42,
    };
    let journals: Vec<(String, PathBuf)> = app
        .config()
        .sinks
        .iter()
        .filter_map(|k| Some((k.name.clone(), k.path.clone()?)))
        .collect();
    let tail = tail::Tail::start(journals).context("cannot start the journal reader")?;
    let sent = Arc::new(Sent::default());
    let stop_load = Arc::new(AtomicBool::new(false));
    let load = load::spawn(spec, sent.clone(), stop_load.clone())
        .context("cannot connect the load generator")?;

    let tty = std::io::stdout().is_terminal();
    let mut screen = Screen::new(tty, opts, server.local_addr(), spec);
    if !tty {
        // Piped: the header once, then a progress line every few seconds.
        print!("{}", screen.header);
        std::io::stdout().flush()?;
    }
    let steps = script();
    let mut done: Vec<Done> = Vec::new();
    let t0 = Instant::now();
    let mut last_draw = Instant::now();
    let mut last_reclaim = Instant::now();
    let mut interrupted = false;
    loop {
        let elapsed = t0.elapsed();
        if elapsed >= opts.duration {
            break;
        }
        if term.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        if ctl.app().failed_worker() {
            anyhow::bail!("a shard worker stopped unexpectedly");
        }
        match inbox.recv_timeout(ctl.poll_interval().min(Duration::from_millis(10))) {
            Ok((req, answer)) => {
                let _ = answer.send(ctl.handle(req));
            }
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("the admin API stopped")
            }
        }
        ctl.tick();
        if let Some(step) = steps.get(done.len())
            && elapsed.as_secs_f64() >= step.at * opts.duration.as_secs_f64()
        {
            let reply = ctl.handle(Request {
                op: (step.op)(),
                author: "demo".into(),
                if_match: None,
                idempotency_key: None,
            });
            done.push(outcome(elapsed, step.label, &reply));
        }
        if last_draw.elapsed() >= screen.every {
            last_draw = Instant::now();
            screen.draw(ctl.app(), &sent, &tail, &done, elapsed)?;
        }
        if last_reclaim.elapsed() >= Duration::from_secs(1) {
            last_reclaim = Instant::now();
            ctl.app_mut().reclaim();
        }
    }
    stop_load.store(true, Ordering::Relaxed);
    let load_result = load
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the load generator panicked")));
    // Everything sent has been received (decoded, rejected or dropped by
    // the kernel) before the appliance is told to stop.
    let k = spec.per_datagram();
    let drain_deadline = Instant::now() + Duration::from_secs(10);
    while received(ctl.app(), k) < sent.records() && Instant::now() < drain_deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = t0.elapsed();
    screen.draw(ctl.app(), &sent, &tail, &done, elapsed)?;
    server.stop();
    let timeout = ctl.app().config().runtime.shutdown_timeout;
    let summary = ctl.into_app().shutdown(timeout);
    let seen = tail.finish();
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let report = Report {
        elapsed,
        interrupted,
        per_datagram: k,
        sent: &sent,
        summary: &summary,
        seen: &seen,
        done: &done,
        dir: &opts.dir,
    };
    let text = report.render();
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    if let Err(e) = load_result {
        eprintln!("mutstream demo: the load generator stopped early: {e}");
        return Ok(1);
    }
    Ok(
        if report.unaccounted() == 0 && summary.clean && seen.events.is_empty() {
            0
        } else {
            1
        },
    )
}

fn outcome(at: Duration, label: &'static str, r: &Reply) -> Done {
    Done {
        at,
        label,
        generation: r.body.get("generation").and_then(|v| v.as_u64()),
        acked_ns: r.body.get("acked_ns").and_then(|v| v.as_u64()),
        error: r.error().map(str::to_string),
    }
}

/// Records the appliance has taken off its sockets: decoded, rejected, or
/// dropped by the kernel (counted in datagrams of `k` records).
fn received(app: &crate::runtime::Appliance, k: u64) -> u64 {
    let m = app.metrics();
    m.sum(|s| {
        s.sources
            .iter()
            .map(|c| {
                c.records.get()
                    + c.rejects_total()
                    + (c.kernel_drops.get() + c.udp_truncated.get()) * k
            })
            .sum()
    })
}

/// A latency in ns as µs with a sensible precision.
fn us(ns: u64) -> String {
    let u = ns as f64 / 1000.0;
    if u < 100.0 {
        format!("{u:.1}")
    } else {
        format!("{u:.0}")
    }
}

fn pcts(h: &Histogram<u64>) -> [String; 4] {
    if h.is_empty() {
        return ["-".into(), "-".into(), "-".into(), "-".into()];
    }
    [
        us(h.value_at_quantile(0.5)),
        us(h.value_at_quantile(0.99)),
        us(h.value_at_quantile(0.999)),
        us(h.max()),
    ]
}

/// The live table: redrawn in place on a terminal, a progress line every
/// few seconds otherwise.
struct Screen {
    tty: bool,
    every: Duration,
    lines: usize,
    total: Duration,
    header: String,
    /// Per source: records at the last draw.
    last_records: Vec<u64>,
    last_at: Instant,
}

impl Screen {
    fn new(tty: bool, opts: &Options, admin: std::net::SocketAddr, spec: LoadSpec) -> Screen {
        Screen {
            tty,
            every: if tty {
                Duration::from_millis(500)
            } else {
                Duration::from_secs(2)
            },
            lines: 0,
            total: opts.duration,
            header: format!(
                "mutstream demo: {} records/s of market ticks over UDP ({} per datagram) and TCP for {:?}; Ctrl-C stops\nadmin API http://{admin} (try: mutstream ctl --admin {admin} status)\n",
                thousands(opts.rate),
                spec.per_datagram(),
                opts.duration,
            ),
            last_records: Vec::new(),
            last_at: Instant::now(),
        }
    }

    fn draw(
        &mut self,
        app: &crate::runtime::Appliance,
        sent: &Sent,
        tail: &tail::Tail,
        done: &[Done],
        elapsed: Duration,
    ) -> std::io::Result<()> {
        let m = app.metrics();
        let cfg = app.config();
        let dt = self.last_at.elapsed().as_secs_f64().max(1e-3);
        self.last_at = Instant::now();
        self.last_records.resize(cfg.sources.len(), 0);
        let (e2e, inside, journaled) = {
            let mut s = tail.seen.lock().unwrap_or_else(|e| e.into_inner());
            let (e, i) = s.take_recent();
            let j: Vec<(String, u64, u64)> = s
                .journals
                .iter()
                .map(|j| (j.name.clone(), j.records, j.window_rows))
                .collect();
            (e, i, j)
        };
        let gens: Vec<String> = m
            .shards
            .iter()
            .enumerate()
            .map(|(i, s)| format!("shard {i}: generation {}", s.generation.get()))
            .collect();
        if !self.tty {
            let rate: u64 = (0..cfg.sources.len())
                .map(|i| m.sum(|s| s.sources[i].records.get()))
                .sum();
            let before: u64 = self.last_records.iter().sum();
            for (i, r) in self.last_records.iter_mut().enumerate() {
                *r = m.sum(|s| s.sources[i].records.get());
            }
            let p = pcts(&e2e);
            println!(
                "demo: {:>5.1} s  {} records/s  latency p50 {} µs p99 {} µs  {}  {} mutations",
                elapsed.as_secs_f64(),
                thousands(((rate - before) as f64 / dt) as u64),
                p[0],
                p[1],
                gens.join(", "),
                done.len()
            );
            return Ok(());
        }
        let mut t = String::new();
        t.push_str(&self.header);
        let _ = writeln!(
            t,
            "\n{:<12} {:>10} {:>12} {:>6} {:>13}    {:.1} s of {:.0} s",
            "source",
            "records/s",
            "records",
            "bad",
            "kernel drops",
            elapsed.as_secs_f64(),
            self.total.as_secs_f64(),
        );
        for (i, src) in cfg.sources.iter().enumerate() {
            let n = m.sum(|s| s.sources[i].records.get());
            let rate = (n - self.last_records[i]) as f64 / dt;
            self.last_records[i] = n;
            let _ = writeln!(
                t,
                "{:<12} {:>10} {:>12} {:>6} {:>13}",
                src.name,
                thousands(rate as u64),
                thousands(n),
                thousands(m.sum(|s| s.sources[i].rejects_total())),
                thousands(m.sum(|s| s.sources[i].kernel_drops.get())),
            );
        }
        let _ = writeln!(
            t,
            "{:<12} {:>10} {:>12}",
            "sent",
            "",
            thousands(sent.records())
        );
        let _ = writeln!(
            t,
            "\nlatency, last {:.1} s (µs)   {:>8} {:>8} {:>8} {:>8}",
            dt, "p50", "p99", "p99.9", "max"
        );
        for (name, h) in [
            ("intended send → commit", &e2e),
            ("in the appliance", &inside),
        ] {
            let p = pcts(h);
            let _ = writeln!(
                t,
                "  {name:<25} {:>8} {:>8} {:>8} {:>8}",
                p[0], p[1], p[2], p[3]
            );
        }
        let _ = writeln!(t, "\n{}", gens.join("   "));
        let filtered = m.sum(|s| s.filtered.get());
        let windowed = m.sum(|s| s.windowed.get());
        let mut j = String::new();
        for (name, rec, win) in &journaled {
            let _ = write!(j, "{name} {}", thousands(*rec));
            if *win > 0 {
                let _ = write!(j, " (+{} VWAP rows)", thousands(*win));
            }
            j.push_str(" · ");
        }
        let _ = writeln!(
            t,
            "journaled: {j}filtered out {} · into windows {}",
            thousands(filtered),
            thousands(windowed)
        );
        t.push_str("\nmutations:\n");
        for d in done {
            let _ = writeln!(t, "  {}", describe(d));
        }
        let mut out = std::io::stdout().lock();
        if self.lines > 0 {
            // Up to the table's first line, then clear to the end.
            write!(out, "\x1b[{}A\r\x1b[J", self.lines)?;
        }
        out.write_all(t.as_bytes())?;
        out.flush()?;
        self.lines = t.lines().count();
        Ok(())
    }
}

fn describe(d: &Done) -> String {
    match (&d.error, d.generation, d.acked_ns) {
        (None, Some(g), Some(a)) => format!(
            "{:>5.1} s  {:<38} → generation {g}, running on every shard after {} µs",
            d.at.as_secs_f64(),
            d.label,
            us(a)
        ),
        (Some(e), _, _) => format!(
            "{:>5.1} s  {:<38} → refused: {e}",
            d.at.as_secs_f64(),
            d.label
        ),
        _ => format!("{:>5.1} s  {:<38} → ?", d.at.as_secs_f64(), d.label),
    }
}

/// The summary at the end.
struct Report<'a> {
    elapsed: Duration,
    interrupted: bool,
    per_datagram: u64,
    sent: &'a Sent,
    summary: &'a crate::runtime::Summary,
    seen: &'a tail::Seen,
    done: &'a [Done],
    dir: &'a Path,
}

impl Report<'_> {
    fn sent(&self) -> u64 {
        self.sent.records()
    }

    fn journal(&self, name: &str) -> (u64, u64) {
        self.seen
            .journals
            .iter()
            .find(|j| j.name == name)
            .map_or((0, 0), |j| (j.records, j.window_rows))
    }

    /// (bad, kernel, late, state full, sink)
    fn drops(&self) -> (u64, u64, u64, u64, u64) {
        let s = self.summary;
        let bad = s
            .sources
            .iter()
            .flat_map(|x| x.rejects.iter().map(|r| r.1))
            .sum();
        let kernel = s
            .sources
            .iter()
            .map(|x| (x.kernel_drops + x.udp_truncated) * self.per_datagram)
            .sum();
        let sink = s
            .sinks
            .iter()
            .map(|k| k.dropped_full + k.dropped_error + k.dropped_shutdown)
            .sum();
        (bad, kernel, s.late, s.state_full, sink)
    }

    fn accounted(&self) -> u64 {
        let (bad, kernel, late, full, sink) = self.drops();
        let journaled: u64 = self.seen.journals.iter().map(|j| j.records).sum();
        journaled
            + self.summary.filtered
            + self.summary.windowed
            + bad
            + kernel
            + late
            + full
            + sink
    }

    /// Sent but found nowhere (negative: counted twice).
    fn unaccounted(&self) -> i64 {
        self.sent() as i64 - self.accounted() as i64
    }

    fn render(&self) -> String {
        let mut t = String::new();
        let applied = self.done.iter().filter(|d| d.error.is_none()).count();
        let _ = writeln!(
            t,
            "\nmutstream demo: {} after {:.1} s; {} mutations applied while records flowed",
            if self.interrupted {
                "stopped by a signal"
            } else {
                "done"
            },
            self.elapsed.as_secs_f64(),
            applied
        );
        let udp = self.sent.udp_records.load(Ordering::Relaxed);
        let tcp = self.sent.tcp_records.load(Ordering::Relaxed);
        let (ticks, bars) = self.journal("journal");
        let (alerts, alert_bars) = self.journal("alerts");
        let (bad, kernel, late, full, sink) = self.drops();
        let row = |t: &mut String, what: &str, n: u64, note: String| {
            let _ = writeln!(t, "  {what:<14} {:>12}   {note}", thousands(n));
        };
        row(
            &mut t,
            "sent",
            self.sent(),
            format!("udp {} · tcp {}", thousands(udp), thousands(tcp)),
        );
        row(
            &mut t,
            "journaled",
            ticks,
            format!(
                "raw ticks in {}{}",
                self.dir.join("journal").display(),
                if bars + alert_bars > 0 {
                    format!(" (and {} VWAP bar rows)", thousands(bars + alert_bars))
                } else {
                    String::new()
                }
            ),
        );
        row(
            &mut t,
            "routed",
            alerts,
            format!("to alerts, {}", self.dir.join("alerts").display()),
        );
        row(&mut t, "filtered out", self.summary.filtered, String::new());
        row(
            &mut t,
            "into windows",
            self.summary.windowed,
            "aggregated into VWAP bars".into(),
        );
        row(
            &mut t,
            "dropped",
            bad + kernel + late + full + sink,
            format!(
                "bad {} · kernel {} · late {} · state full {} · sinks {}",
                thousands(bad),
                thousands(kernel),
                thousands(late),
                thousands(full),
                thousands(sink)
            ),
        );
        let u = self.unaccounted();
        let _ = writeln!(
            t,
            "  {:<14} {:>12}   {}",
            "unaccounted",
            u,
            if u == 0 {
                "every record sent is accounted for"
            } else {
                "records sent but found nowhere (negative: counted twice)"
            }
        );
        let _ = writeln!(
            t,
            "\nlatency by generation, intended send → journal commit (µs):\n  {:>4}  {:<38} {:>10} {:>8} {:>8} {:>8} {:>8}",
            "gen", "change", "records", "p50", "p99", "p99.9", "max"
        );
        let mut gens: std::collections::BTreeSet<u64> = self.seen.by_gen.keys().copied().collect();
        gens.extend(self.done.iter().filter_map(|d| d.generation));
        let empty = tail::histogram();
        for g in &gens {
            let what = if *g == 1 {
                "(start: the embedded pipeline)"
            } else {
                self.done
                    .iter()
                    .find(|d| d.generation == Some(*g))
                    .map_or("", |d| d.label)
            };
            let h = self.seen.by_gen.get(g).unwrap_or(&empty);
            let p = pcts(h);
            let _ = writeln!(
                t,
                "  {g:>4}  {what:<38} {:>10} {:>8} {:>8} {:>8} {:>8}",
                thousands(h.len()),
                p[0],
                p[1],
                p[2],
                p[3]
            );
        }
        let p = pcts(&self.seen.inside);
        let _ = writeln!(
            t,
            "  in the appliance (first byte read → commit): p50 {} · p99 {} · p99.9 {} · max {}",
            p[0], p[1], p[2], p[3]
        );
        let lag = self.sent.max_lag_ns.load(Ordering::Relaxed);
        if lag > 1_000_000 {
            let _ = writeln!(
                t,
                "  note: the generator fell behind its schedule by up to {:.1} ms (the machine was busy); latency from the intended send time includes that",
                lag as f64 / 1e6
            );
        }
        let errors = self.sent.udp_send_errors.load(Ordering::Relaxed);
        if errors > 0 {
            let _ = writeln!(
                t,
                "  note: {errors} datagrams could not be sent (not counted as sent)"
            );
        }
        for e in &self.seen.events {
            let _ = writeln!(t, "  journal: {e}");
        }
        for l in &self.summary.left {
            let _ = writeln!(t, "  not drained: {l}");
        }
        let _ = writeln!(
            t,
            "\nread what was journaled: mutstream read {} | head",
            self.dir.join("journal").display()
        );
        t
    }
}
