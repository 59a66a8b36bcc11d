//! L1 (WORKLOADS.md): ticks over UDP, one per datagram, at a fixed rate,
//! through `examples/ticks.mts` into a journal. The real binaries, as a
//! user runs them: `mutstream run` (the embedded default: ticks.toml with
//! its tables), `mutgen` on its schedule, and `mutlat --follow` as the
//! tailer in another process. Latency is `commit_ns − ts` with `ts` the
//! intended send time; beside it, `sockperf pp`'s one-way loopback latency
//! from the same run, and SPEC §9's budget: p50 ≤ 5 µs, p99 ≤ 15 µs,
//! p99.9 ≤ 40 µs above that.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A binary of this workspace, beside mutbench itself.
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.parent().context("exe dir")?.join(name);
    if !p.exists() {
        bail!(
            "{} is not built: cargo build --release --workspace",
            p.display()
        );
    }
    Ok(p)
}

/// One-way UDP loopback latency percentiles from `sockperf pp` (µs):
/// (p50, p99, p99.9), or `None` without sockperf.
pub fn sockperf_pp(secs: u32) -> Option<(f64, f64, f64)> {
    let port = "11411";
    let mut server = sockperf_server(port)?;
    let out = Command::new("sockperf")
        .args(["pp", "-i", "127.0.0.1", "-p", port, "-t", &secs.to_string()])
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.ok()?.stdout).into_owned();
    let pct = |p: &str| -> Option<f64> {
        text.lines()
            .find(|l| l.contains(&format!("percentile {p} =")))?
            .rsplit('=')
            .next()?
            .trim()
            .parse()
            .ok()
    };
    Some((pct("50.000")?, pct("99.000")?, pct("99.900")?))
}

/// sockperf's UDP throughput over loopback for `size`-byte messages:
/// messages/s its sender achieved against a sockperf server
/// (`sockperf tp`), if sockperf is installed.
pub fn sockperf_tp(size: usize, secs: u32) -> Option<f64> {
    let port = "11412";
    let mut server = sockperf_server(port)?;
    let out = Command::new("sockperf")
        .args(["tp", "-i", "127.0.0.1", "-p", port, "-m", &size.to_string()])
        .args(["-t", &secs.to_string()])
        .output();
    let _ = server.kill();
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.ok()?.stdout).into_owned();
    // "sockperf: Summary: Message Rate is 487728 [msg/sec]"
    text.lines()
        .find_map(|l| l.split_once("Message Rate is "))?
        .1
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A sockperf server on loopback `port`, given time to bind.
fn sockperf_server(port: &str) -> Option<std::process::Child> {
    let server = Command::new("sockperf")
        .args(["server", "-i", "127.0.0.1", "-p", port])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some(server)
}

/// The figures of one L1 run.
pub struct L1 {
    pub rate: u64,
    pub secs: u64,
    pub sent: u64,
    pub journaled: u64,
    pub expected: Option<u64>,
    pub kernel_drops: u64,
    /// µs: p50, p90, p99, p99.9, p99.99, max.
    pub commit: Vec<f64>,
    pub tailer: Vec<f64>,
    /// µs from the first byte of a record's batch leaving the socket to its
    /// commit: the appliance alone.
    pub inside: Vec<f64>,
    /// µs from when each tick actually left the sender to its commit.
    pub from_sent: Vec<f64>,
    pub one_way: Option<(f64, f64, f64)>,
    pub kept_schedule: bool,
    /// How far mutgen fell behind its schedule, when it did (ms).
    pub sender_lag_ms: Option<f64>,
    /// L2: the parameter changes made during the run.
    pub mutations: Option<Mutations>,
    /// `strace -c` of the worker threads during the run, when asked.
    pub syscalls: Option<String>,
}

/// L2's `PUT /v1/params/min_price` requests, over one keep-alive
/// connection.
#[derive(Default)]
pub struct Mutations {
    pub sent: u64,
    pub failed: u64,
    /// Server side: publication to the last shard's acknowledgement (ns).
    pub acked_ns: Vec<u64>,
    /// Client side: request sent to answer read (ns).
    pub round_trip_ns: Vec<u64>,
    /// Generations the run went through.
    pub generations: (u64, u64),
}

fn pct(v: &mut [u64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_unstable();
    v[((v.len() - 1) as f64 * p).round() as usize] as f64
}

impl Mutations {
    /// (p50, p99, max) in µs of the server's acknowledgement time and of
    /// the client's round trip.
    pub fn summary(&mut self) -> [(f64, f64, f64); 2] {
        let f = |v: &mut Vec<u64>| {
            (
                pct(v, 0.5) / 1e3,
                pct(v, 0.99) / 1e3,
                v.iter().max().copied().unwrap_or(0) as f64 / 1e3,
            )
        };
        [f(&mut self.acked_ns), f(&mut self.round_trip_ns)]
    }
}

/// Changes `min_price` between 10.0 and 10.5, `per_sec` times a second,
/// until `stop`.
fn mutate(admin: String, per_sec: u32, stop: &std::sync::atomic::AtomicBool) -> Mutations {
    let c = mutstream::control::client::Client::new(&admin, None, Duration::from_secs(10));
    let mut m = Mutations::default();
    let t0 = Instant::now();
    let mut first = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let v = if m.sent % 2 == 0 { "10.5" } else { "10.0" };
        let t = Instant::now();
        let r = c.call(
            "PUT",
            "/v1/params/min_price",
            Some(format!("{{\"value\": {v}}}").into_bytes()),
            &[],
        );
        m.sent += 1;
        match r {
            Ok((200, a)) => {
                m.round_trip_ns.push(t.elapsed().as_nanos() as u64);
                m.acked_ns.push(a["acked_ns"].as_u64().unwrap_or(0));
                let g = a["generation"].as_u64().unwrap_or(0);
                first.get_or_insert(g);
                m.generations = (first.unwrap_or(g), g);
            }
            _ => m.failed += 1,
        }
        let due = Duration::from_secs_f64(m.sent as f64 / per_sec as f64);
        if let Some(w) = due.checked_sub(t0.elapsed()) {
            std::thread::sleep(w);
        }
    }
    m
}

/// Runs L1 at `rate` records/s for `secs` seconds in `dir`; with
/// `mutations_per_s`, L2: the same while `min_price` alternates through
/// the admin API.
/// A started `mutstream run` on the embedded default, in `dir`, on
/// ephemeral ports, its worker pinned or not; its stderr
/// (past the startup lines), UDP source address and admin address.
#[allow(clippy::type_complexity)]
fn start_appliance(
    dir: &Path,
    file: &str,
    pin: bool,
) -> anyhow::Result<(
    std::process::Child,
    BufReader<std::process::ChildStderr>,
    String,
    Option<String>,
)> {
    let cfg = mutstream::config::EMBEDDED
        .replace("127.0.0.1:9000", "127.0.0.1:0")
        .replace("127.0.0.1:9001", "127.0.0.1:0")
        .replace("127.0.0.1:9100", "127.0.0.1:0")
        .replace("pin = true", if pin { "pin = true" } else { "pin = false" })
        .replace("./mutstream-data/", &format!("{}/", dir.display()));
    std::fs::write(dir.join(file), cfg)?;
    let mut app = Command::new(sibling("mutstream")?)
        .args(["run", "--config", file])
        .current_dir(dir)
        .stderr(Stdio::piped())
        .spawn()?;
    let mut err = BufReader::new(app.stderr.take().context("stderr")?);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut udp = None;
    let mut admin = None;
    loop {
        let mut l = String::new();
        if err.read_line(&mut l)? == 0 || Instant::now() > deadline {
            bail!("mutstream did not start");
        }
        if let Some(a) = l.split("listening on udp ").nth(1) {
            udp = a.split_whitespace().next().map(str::to_string);
        }
        if let Some(a) = l.split("admin API on http://").nth(1) {
            admin = a.split_whitespace().next().map(str::to_string);
        }
        if l.contains("running generation 1") {
            break;
        }
    }
    let udp = udp.context("no UDP source in the log")?;
    Ok((app, err, udp, admin))
}

pub fn run_l1(
    dir: &Path,
    rate: u64,
    secs: u64,
    mutations_per_s: u32,
    strace: bool,
    elsewhere: bool,
) -> anyhow::Result<L1> {
    let (mut app, err, udp, admin) = start_appliance(dir, "l1.toml", true)?;
    // The control run: the same changes, sent to a second appliance on the
    // same machine (unpinned, so on the housekeeping CPU) that receives no
    // records; the measured appliance never switches.
    let other = match elsewhere {
        true => {
            let d = dir.join("other");
            std::fs::create_dir_all(&d)?;
            match start_appliance(&d, "other.toml", false) {
                Ok(o) => Some(o),
                Err(e) => {
                    // SAFETY: kill(2) on our own child, not yet reaped.
                    unsafe { libc::kill(app.id() as i32, libc::SIGTERM) };
                    app.wait()?;
                    return Err(e);
                }
            }
        }
        false => None,
    };
    let (other, admin) = match other {
        Some((o, o_err, _, a)) => {
            // Its log is read (and dropped) so that it never blocks on a
            // full pipe.
            std::thread::spawn(move || o_err.lines().map_while(Result::ok).count());
            (Some(o), a)
        }
        None => (None, admin),
    };
    let log =
        std::thread::spawn(move || err.lines().map_while(Result::ok).collect::<Vec<String>>());
    let journal = dir.join("ticks");
    let lat = Command::new(sibling("mutlat")?)
        .arg(&journal)
        .args(["--follow", "--idle", "3s", "--hgrm"])
        .arg(dir.join("l1.hgrm"))
        .arg("--plot")
        .arg(dir.join("l1.svg"))
        .stdout(Stdio::piped())
        .spawn()?;
    // strace -c on the worker threads only (it slows every syscall it
    // sees, so a traced run's latency is not reported).
    let tracer = if strace {
        let mut cmd = Command::new("strace");
        cmd.args(["-qq", "-c", "-o"]).arg(dir.join("strace.txt"));
        for t in std::fs::read_dir(format!("/proc/{}/task", app.id()))?.flatten() {
            let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
            if comm.starts_with("mutstream-w") {
                cmd.arg("-p").arg(t.file_name());
            }
        }
        let c = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn();
        std::thread::sleep(Duration::from_millis(500));
        Some(c.context("strace")?)
    } else {
        None
    };
    // The sender on the last CPU, away from the worker (CPU 0).
    let last_cpu = std::thread::available_parallelism().map_or(1, |n| n.get()) - 1;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (g, mutations) = std::thread::scope(|s| {
        let m = (mutations_per_s > 0).then(|| {
            let admin = admin.clone().unwrap_or_default();
            let stop = &stop;
            s.spawn(move || mutate(admin, mutations_per_s, stop))
        });
        let g = Command::new(sibling("mutgen")?)
            .args(["--addr", &udp, "--udp", "--rate", &rate.to_string()])
            .args(["--pin", &last_cpu.to_string()])
            .args(["--duration", &format!("{secs}s"), "--batch", "1", "--quiet"])
            .arg("--sent-log")
            .arg(dir.join("sent.log"))
            .output();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let m = m.map(|h| h.join().unwrap_or_default());
        anyhow::Ok((g?, m))
    })?;
    let gen_out = String::from_utf8_lossy(&g.stdout).into_owned();
    if !g.status.success() {
        bail!("mutgen failed: {}", String::from_utf8_lossy(&g.stderr));
    }
    let syscalls = match tracer {
        Some(t) => {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(t.id() as i32, libc::SIGINT) };
            t.wait_with_output()?;
            Some(std::fs::read_to_string(dir.join("strace.txt"))?)
        }
        None => None,
    };
    let lat_out = lat.wait_with_output()?;
    let lat_text = String::from_utf8_lossy(&lat_out.stdout).into_owned();
    // Again over the finished journal, with when each tick actually left:
    // what the sender's own lateness adds to the latency from the
    // intended time.
    let sent_out = Command::new(sibling("mutlat")?)
        .arg(&journal)
        .arg("--sent-log")
        .arg(dir.join("sent.log"))
        .output()?;
    let sent_text = String::from_utf8_lossy(&sent_out.stdout).into_owned();
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(app.id() as i32, libc::SIGTERM) };
    app.wait()?;
    if let Some(mut o) = other {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(o.id() as i32, libc::SIGTERM) };
        o.wait()?;
    }
    let log = log.join().unwrap_or_default();
    // "source ticks-udp: N records, 0 bad, D kernel drops, ..."
    let (received, kernel_drops) = log
        .iter()
        .find_map(|l| {
            let rest = l.split("source ticks-udp: ").nth(1)?;
            let n = rest.split_whitespace().next()?.parse::<u64>().ok()?;
            let d = rest
                .split(", ")
                .find(|p| p.ends_with("kernel drops"))
                .and_then(|p| p.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            Some((n, d))
        })
        .context("no summary for ticks-udp")?;
    let sent: u64 = gen_out
        .split("sent ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .context("mutgen's report")?;
    let to_journal: u64 = gen_out
        .split(" routed to alerts, ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .context("mutgen's expected counts")?;
    let row = |name: &str| -> Vec<f64> {
        lat_text
            .lines()
            .find(|l| l.trim_start().starts_with(name))
            .map(|l| {
                l.trim_start()[name.len()..]
                    .split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let commit = row("commit_ns - ts");
    let tailer = row("tailer saw - ts");
    let inside = row("commit_ns - ingest_ns");
    let from_sent = sent_text
        .lines()
        .find(|l| l.trim_start().starts_with("commit_ns - sent"))
        .map(|l| {
            l.trim_start()["commit_ns - sent".len()..]
                .split_whitespace()
                .filter_map(|v| v.parse::<f64>().ok())
                .collect::<Vec<f64>>()
        })
        .unwrap_or_default();
    if commit.len() != 7 {
        bail!("mutlat's report:\n{lat_text}");
    }
    if received + kernel_drops != sent {
        bail!("UDP accounting: sent {sent}, received {received} + kernel drops {kernel_drops}");
    }
    Ok(L1 {
        rate,
        secs,
        sent,
        journaled: commit[0] as u64,
        // Which ticks the kernel dropped is unknown: exact only without drops.
        expected: (kernel_drops == 0 && mutations_per_s == 0).then_some(to_journal),
        kernel_drops,
        commit: commit[1..].to_vec(),
        tailer: tailer.get(1..).map(<[f64]>::to_vec).unwrap_or_default(),
        inside: inside.get(1..).map(<[f64]>::to_vec).unwrap_or_default(),
        from_sent: from_sent.get(1..).map(<[f64]>::to_vec).unwrap_or_default(),
        one_way: None,
        kept_schedule: gen_out.contains("kept its schedule"),
        sender_lag_ms: gen_out
            .split("fell behind its schedule by up to ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next()?.parse().ok()),
        mutations,
        syscalls,
    })
}
