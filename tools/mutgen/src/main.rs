//! `mutgen`: the seeded load generator of WORKLOADS.md.
//!
//! Every record has an intended send time from a fixed schedule
//! (`mutstream::loadgen::schedule`); a batch leaves when its last record is
//! due, or at once when the sender is behind. A tick carries its intended
//! time as `ts`, so `commit_ns − ts` measures everything between the
//! schedule and the journal, stalls included. The same seed and epoch give
//! the same bytes (`--out FILE` writes them instead of sending).

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use mutstream::loadgen::schedule::{Expect, Kind, Schedule, SentLog, Stream};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    /// 32-byte binary ticks (examples/ticks.toml layout).
    Binary,
    Lp,
    Json,
    Csv,
}

#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Where to send (an appliance source's listen address).
    #[arg(long, required_unless_present = "out")]
    addr: Option<SocketAddr>,
    /// UDP instead of TCP.
    #[arg(long)]
    udp: bool,
    #[arg(long, value_enum, default_value = "binary")]
    format: Format,
    /// Records per second over all connections, or `max`.
    #[arg(long, default_value = "max")]
    rate: String,
    #[arg(long, default_value_t = 1)]
    conns: u64,
    /// Records to send (default 1 000 000 unless --duration).
    #[arg(long, conflicts_with = "duration")]
    records: Option<u64>,
    /// Send for this long at --rate (`30s`, `2m`).
    #[arg(long)]
    duration: Option<String>,
    /// Records per datagram (UDP) or per write (TCP). Default: 1 at a fixed
    /// rate, 64 at max rate over TCP.
    #[arg(long)]
    batch: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// ns since the Unix epoch of record 0 (default: now, plus 100 ms at a
    /// fixed rate). The same seed and epoch give the same bytes.
    #[arg(long)]
    epoch: Option<u64>,
    /// Write the bytes of each connection, one after the other, to FILE
    /// instead of sending them (no pacing).
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Write when each record actually left to FILE (for `mutlat
    /// --sent-log`: latency from the actual send time beside the latency
    /// from the intended one).
    #[arg(long)]
    sent_log: Option<std::path::PathBuf>,
    /// SO_SNDBUF of each connection in bytes (small buffers make a stalled
    /// receiver hold the sender back at once).
    #[arg(long)]
    sndbuf: Option<u32>,
    /// Pin the sender threads to this CPU (keep them off the appliance's
    /// worker cores when both share a machine).
    #[arg(long)]
    pin: Option<usize>,
    /// No progress line.
    #[arg(long, short)]
    quiet: bool,
}

fn now_ns() -> u64 {
    mutstream::sys::now_ns()
}

/// Sleeps then spins until `t` (CLOCK_REALTIME ns).
fn wait_until(t: u64) {
    loop {
        let now = now_ns();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > 200_000 {
            std::thread::sleep(Duration::from_nanos(left - 100_000));
        } else {
            std::hint::spin_loop();
        }
    }
}

struct Shared {
    sent: AtomicU64,
    /// Largest delay of a send behind its intended time, ns.
    max_lag: AtomicU64,
    failed: AtomicBool,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mutgen: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run(a: Args) -> anyhow::Result<()> {
    let kind = match a.format {
        Format::Binary => Kind::Tick,
        Format::Lp => Kind::Lp,
        Format::Json => Kind::Json,
        Format::Csv => Kind::Csv,
    };
    if a.udp && matches!(kind, Kind::Csv) {
        bail!("--format csv goes over TCP only (the appliance frames CSV by newline)");
    }
    let rate = match a.rate.as_str() {
        "max" => None,
        r => Some(
            r.replace('_', "")
                .parse::<u64>()
                .ok()
                .filter(|&r| r > 0)
                .with_context(|| format!("--rate {r:?}: a positive number of records/s, or max"))?,
        ),
    };
    if a.conns == 0 {
        bail!("--conns must be at least 1");
    }
    let epoch = a.epoch.unwrap_or_else(|| {
        let now = now_ns();
        if rate.is_some() {
            now + 100_000_000
        } else {
            now
        }
    });
    let sched = Schedule {
        epoch_ns: epoch,
        rate,
        conns: a.conns,
    };
    let total = match (&a.duration, a.records) {
        (Some(d), _) => {
            let d = humantime::parse_duration(d).with_context(|| format!("--duration {d:?}"))?;
            if rate.is_none() {
                bail!("--duration needs a fixed --rate (at max rate, give --records)");
            }
            sched.records_within(d.as_nanos() as u64)
        }
        (None, Some(n)) => n,
        (None, None) => 1_000_000,
    };
    let batch = a
        .batch
        .unwrap_or(if rate.is_none() && !a.udp { 64 } else { 1 })
        .max(1);
    let what = format!(
        "{:?} over {} {} connection{}, batch {batch}, rate {}, seed {}, epoch {epoch}",
        a.format,
        a.conns,
        if a.udp { "udp" } else { "tcp" },
        if a.conns == 1 { "" } else { "s" },
        rate.map_or("max".to_string(), |r| format!("{r}/s")),
        a.seed
    );

    if let Some(path) = &a.out {
        let mut f = std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("{}", path.display()))?,
        );
        let mut e = Expect::default();
        let mut buf = Vec::new();
        for c in 0..a.conns {
            let mut s = Stream::new(kind, sched, a.seed, c);
            for _ in 0..sched.per_conn(c, total) {
                buf.clear();
                s.push(&mut buf, &mut e);
                f.write_all(&buf)?;
            }
        }
        f.flush()?;
        report(kind, &e, &what, None, None);
        return Ok(());
    }

    let addr = a.addr.expect("clap requires --addr without --out");
    let shared = Arc::new(Shared {
        sent: AtomicU64::new(0),
        max_lag: AtomicU64::new(0),
        failed: AtomicBool::new(false),
    });
    let t0 = Instant::now();
    let threads: Vec<_> = (0..a.conns)
        .map(|c| {
            let shared = shared.clone();
            let n = sched.per_conn(c, total);
            let udp = a.udp;
            let log = a.sent_log.is_some();
            let sndbuf = a.sndbuf;
            let pin = a.pin;
            std::thread::spawn(move || -> anyhow::Result<(Expect, Vec<u64>)> {
                if let Some(cpu) = pin {
                    core_affinity::set_for_current(core_affinity::CoreId { id: cpu });
                }
                let r = send_conn(
                    kind, sched, a.seed, c, n, batch, udp, addr, &shared, log, sndbuf,
                );
                if r.is_err() {
                    shared.failed.store(true, Ordering::Relaxed);
                }
                r
            })
        })
        .collect();
    let mut last = (Instant::now(), 0u64);
    while !threads.iter().all(|t| t.is_finished()) {
        std::thread::sleep(Duration::from_millis(50));
        if !a.quiet && last.0.elapsed() >= Duration::from_secs(1) {
            let sent = shared.sent.load(Ordering::Relaxed);
            let rate_now = (sent - last.1) as f64 / last.0.elapsed().as_secs_f64();
            eprint!(
                "\rmutgen: {sent} of {total} sent, {:.0} records/s, behind schedule by at most {:.2} ms   ",
                rate_now,
                shared.max_lag.load(Ordering::Relaxed) as f64 / 1e6
            );
            last = (Instant::now(), sent);
        }
    }
    if !a.quiet {
        eprintln!();
    }
    let mut e = Expect::default();
    let mut sent = vec![
        0u64;
        if a.sent_log.is_some() {
            total as usize
        } else {
            0
        }
    ];
    for (c, t) in threads.into_iter().enumerate() {
        let (x, times) = t.join().expect("sender thread")?;
        e.records += x.records;
        e.pass += x.pass;
        e.routed += x.routed;
        for (i, ns) in times.into_iter().enumerate() {
            sent[sched.global(c as u64, i as u64) as usize] = ns;
        }
    }
    if let Some(p) = &a.sent_log {
        let log = SentLog {
            schedule: sched,
            sent_ns: sent,
        };
        std::fs::write(p, log.encode()).with_context(|| format!("{}", p.display()))?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let lag = rate.map(|_| shared.max_lag.load(Ordering::Relaxed));
    report(kind, &e, &what, Some(secs), lag);
    Ok(())
}

/// One connection: builds each batch, waits until its last record is due,
/// sends it.
#[allow(clippy::too_many_arguments)]
fn send_conn(
    kind: Kind,
    sched: Schedule,
    seed: u64,
    c: u64,
    n: u64,
    batch: u64,
    udp: bool,
    addr: SocketAddr,
    shared: &Shared,
    log: bool,
    sndbuf: Option<u32>,
) -> anyhow::Result<(Expect, Vec<u64>)> {
    enum Sock {
        Tcp(TcpStream),
        Udp(UdpSocket),
    }
    let mut sock = if udp {
        let bind = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        };
        let s = UdpSocket::bind(bind)?;
        s.connect(addr)?;
        Sock::Udp(s)
    } else {
        let s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        s.set_nodelay(sched.rate.is_some())?;
        if let Some(b) = sndbuf {
            set_sndbuf(&s, b)?;
        }
        Sock::Tcp(s)
    };
    let mut s = Stream::new(kind, sched, seed, c);
    let mut e = Expect::default();
    let mut times = Vec::with_capacity(if log { n as usize } else { 0 });
    let mut buf = Vec::with_capacity((batch as usize) * 128);
    // At max rate over UDP, up to 32 datagrams per sendmmsg(2).
    let per_call = if udp && sched.rate.is_none() { 32 } else { 1 };
    let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(per_call);
    while s.next < n {
        if shared.failed.load(Ordering::Relaxed) {
            bail!("another connection failed");
        }
        buf.clear();
        bounds.clear();
        let first = s.next;
        while bounds.len() < per_call && s.next < n {
            let k = batch.min(n - s.next);
            let start = buf.len();
            for _ in 0..k {
                s.push(&mut buf, &mut e);
            }
            bounds.push((start, buf.len() - start));
        }
        let k = s.next - first;
        // The batch leaves when its last record is due.
        let due = sched.due(sched.global(c, s.next - 1));
        if sched.rate.is_some() {
            wait_until(due);
            let lag = now_ns().saturating_sub(due);
            if lag > shared.max_lag.load(Ordering::Relaxed) {
                shared.max_lag.fetch_max(lag, Ordering::Relaxed);
            }
        }
        match &mut sock {
            Sock::Tcp(t) => t.write_all(&buf).context("send")?,
            // A refused datagram (nothing listening yet) is not fatal: UDP
            // has no delivery; the appliance counts what it drops.
            Sock::Udp(u) if bounds.len() == 1 => {
                let _ = u.send(&buf);
            }
            Sock::Udp(u) => send_many(u, &buf, &bounds),
        }
        if log {
            // When the send returned: the records were in the kernel.
            let t = now_ns();
            times.extend(std::iter::repeat_n(t, k as usize));
        }
        shared.sent.fetch_add(k, Ordering::Relaxed);
    }
    Ok((e, times))
}

/// Sends each `(offset, len)` of `buf` as one datagram, as few
/// `sendmmsg(2)` calls as the kernel allows.
fn send_many(u: &UdpSocket, buf: &[u8], bounds: &[(usize, usize)]) {
    use std::os::fd::AsRawFd;
    let datagrams: Vec<&[u8]> = bounds.iter().map(|&(o, l)| &buf[o..o + l]).collect();
    let mut done = 0;
    while done < datagrams.len() {
        match mutstream::sys::sendmmsg(u.as_raw_fd(), &datagrams[done..]) {
            Ok(n) if n > 0 => done += n,
            // Refused or failed: counted as sent, like send().
            _ => return,
        }
    }
}

fn set_sndbuf(s: &TcpStream, bytes: u32) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: a valid socket and a pointer to a c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        bail!("SO_SNDBUF: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

fn report(kind: Kind, e: &Expect, what: &str, secs: Option<f64>, lag: Option<u64>) {
    match secs {
        Some(s) => println!(
            "mutgen: sent {} records in {s:.3} s ({:.0} records/s): {what}",
            e.records,
            e.records as f64 / s
        ),
        None => println!("mutgen: wrote {} records: {what}", e.records),
    }
    match kind {
        Kind::Tick => println!(
            "mutgen: expected with examples/ticks.mts: {} pass the filter, {} of them routed to alerts, {} to journal",
            e.pass,
            e.routed,
            e.pass - e.routed
        ),
        _ => println!(
            "mutgen: expected with P1 (filter temp > 25.0): {} pass",
            e.pass
        ),
    }
    if let Some(l) = lag {
        let ms = l as f64 / 1e6;
        if ms > 1.0 {
            println!(
                "mutgen: fell behind its schedule by up to {ms:.2} ms: it (or the machine) was a bottleneck at this rate; latencies measured from ts include that delay"
            );
        } else {
            println!("mutgen: kept its schedule (at most {ms:.3} ms behind)");
        }
    }
}
