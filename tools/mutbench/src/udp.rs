//! W3 (WORKLOADS.md): ticks over UDP, 32 per 1024-byte datagram, at the
//! sender's maximum rate. SPEC §9: the appliance is never the bottleneck —
//! it receives at least 95 % of the datagrams/s a do-nothing receiver gets
//! from the same sender in the same run, and counts what the kernel drops.
//!
//! The sender (one thread on the last CPU, `sendmmsg` of 32 datagrams)
//! sends the same seeded datagrams to a plain socket that only counts
//! (`recv` in a loop, same receive buffer), then to the appliance
//! (`examples/ticks.mts` into journals, 1 shard). Rate is datagrams
//! received per second, from the first send until the last datagram is
//! in, either read or counted as a kernel drop.

use anyhow::{Context, bail};
use mutstream::config::Config;
use mutstream::loadgen::schedule::{Expect, Kind, Schedule, Stream};
use mutstream::runtime::Appliance;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PER_DATAGRAM: usize = 32;
const RCVBUF: u64 = 8 << 20;

/// `n` seeded datagrams of 32 ticks.
pub fn datagrams(n: usize) -> Vec<u8> {
    let sched = Schedule {
        epoch_ns: 1_700_000_000_000_000_000,
        rate: None,
        conns: 1,
    };
    let mut s = Stream::new(Kind::Tick, sched, 3, 0);
    let mut e = Expect::default();
    let mut out = Vec::with_capacity(n * PER_DATAGRAM * 32);
    for _ in 0..n * PER_DATAGRAM {
        s.push(&mut out, &mut e);
    }
    out
}

/// Sends `total` datagrams to `addr`, cycling over `block`; returns when
/// the last has left.
fn blast(addr: SocketAddr, block: &[u8], total: u64) -> anyhow::Result<()> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    if let Some(c) = cores.last() {
        core_affinity::set_for_current(*c);
    }
    let s = UdpSocket::bind("127.0.0.1:0")?;
    s.connect(addr)?;
    let datagrams: Vec<&[u8]> = block.chunks_exact(PER_DATAGRAM * 32).collect();
    let mut sent = 0u64;
    let mut at = 0usize;
    while sent < total {
        let k = (total - sent).min(32).min((datagrams.len() - at) as u64) as usize;
        match mutstream::sys::sendmmsg(s.as_raw_fd(), &datagrams[at..at + k]) {
            Ok(n) => {
                sent += n as u64;
                at = (at + n) % datagrams.len();
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => {}
            Err(e) => bail!("sendmmsg: {e}"),
        }
    }
    Ok(())
}

/// One side's figures.
pub struct Side {
    pub received: u64,
    /// Sent but never read.
    pub dropped: u64,
    /// Drops the appliance counted (SO_RXQ_OVFL, reported with the next
    /// datagram read, so the last ones may be missing).
    pub counted: Option<u64>,
    pub secs: f64,
}

impl Side {
    pub fn rate(&self) -> f64 {
        self.received as f64 / self.secs
    }
}

/// A plain socket that only counts, with the appliance's receive buffer.
pub fn baseline(block: &[u8], total: u64) -> anyhow::Result<Side> {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let s = UdpSocket::from(mutstream::sys::udp_socket(&any, RCVBUF)?);
    s.set_read_timeout(Some(Duration::from_millis(300)))?;
    let addr = s.local_addr()?;
    let got = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let last = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let rx = {
        let (got, done, last) = (got.clone(), done.clone(), last.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            loop {
                match s.recv(&mut buf) {
                    Ok(_) => {
                        got.fetch_add(1, Ordering::Relaxed);
                        last.store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
                    }
                    Err(_) if done.load(Ordering::Relaxed) => break,
                    Err(_) => {}
                }
            }
        })
    };
    blast(addr, block, total)?;
    done.store(true, Ordering::Relaxed);
    rx.join().expect("receiver");
    let received = got.load(Ordering::Relaxed);
    Ok(Side {
        received,
        dropped: total - received,
        counted: None,
        secs: last.load(Ordering::Relaxed) as f64 / 1e9,
    })
}

/// The appliance on W3's config, journals under `dir`.
pub fn appliance(block: &[u8], total: u64, dir: &std::path::Path) -> anyhow::Result<Side> {
    let text = mutstream::config::EMBEDDED
        .replace("127.0.0.1:9000", "127.0.0.1:0")
        .replace("127.0.0.1:9001", "127.0.0.1:0")
        .replace("./mutstream-data/", &format!("{}/", dir.display()));
    let cfg = Config::parse(&text, "w3", std::path::Path::new("."))?;
    let app = Appliance::start(cfg)?;
    let addr = app.local_addr("ticks-udp").context("bound")?;
    let m = app.metrics().clone();
    let t0 = Instant::now();
    blast(addr, block, total)?;
    let src = |f: fn(&mutstream::metrics::SourceCounters) -> u64| m.sum(|s| f(&s.sources[0]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (0u64, Instant::now());
    loop {
        let dgrams = src(|s| s.datagrams.get());
        let drops = src(|s| s.kernel_drops.get());
        if dgrams + drops >= total {
            break;
        }
        if dgrams != last.0 {
            last = (dgrams, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break; // the kernel counts drops when the next datagram lands
        }
        if Instant::now() > deadline {
            bail!("W3: {dgrams} datagrams + {drops} drops of {total} after 60 s");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let secs = last.1.duration_since(t0).as_secs_f64();
    let received = src(|s| s.datagrams.get());
    let counted = src(|s| s.kernel_drops.get());
    let summary = app.shutdown(Duration::from_secs(30));
    let decoded = summary.sources[0].records;
    if decoded != received * PER_DATAGRAM as u64 {
        bail!("W3: {received} datagrams but {decoded} records decoded");
    }
    Ok(Side {
        received,
        dropped: total - received,
        counted: Some(counted),
        secs,
    })
}
