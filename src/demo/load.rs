//! The demo's load generator: market ticks over UDP and TCP at a fixed
//! rate, each stamped with its intended send time (`ts`), so the latency
//! the demo shows includes any delay of the sender or of the appliance
//! instead of hiding it (coordinated omission).
//!
//! One thread drives both sockets from two schedules (half the rate each).
//! UDP datagrams hold a fixed number of records, so a datagram the kernel
//! drops is an exact number of records in the summary's accounting.

use crate::loadgen::schedule::{Expect, Kind, Schedule, Stream};
use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the generator has sent, read by the demo while it runs.
#[derive(Debug, Default)]
pub struct Sent {
    pub udp_records: AtomicU64,
    pub udp_datagrams: AtomicU64,
    pub tcp_records: AtomicU64,
    /// Datagrams `send` refused (not counted as sent).
    pub udp_send_errors: AtomicU64,
    /// Largest delay of a send behind its intended time, ns.
    pub max_lag_ns: AtomicU64,
}

impl Sent {
    pub fn records(&self) -> u64 {
        self.udp_records.load(Ordering::Relaxed) + self.tcp_records.load(Ordering::Relaxed)
    }
}

/// Where and how fast to send.
#[derive(Clone, Copy, Debug)]
pub struct LoadSpec {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    /// Records per second over both transports.
    pub rate: u64,
    pub seed: u64,
}

impl LoadSpec {
    /// Records per UDP datagram: one at low rates (no batching delay),
    /// up to 16 at high ones (fewer syscalls on both sides).
    pub fn per_datagram(&self) -> u64 {
        (self.rate / 2 / 50_000).clamp(1, 16)
    }
}

/// Starts sending; stops (closing the TCP connection, so the appliance sees
/// its end) when `stop` is set. The error is the reason sending stopped
/// early.
pub fn spawn(
    spec: LoadSpec,
    sent: Arc<Sent>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<std::io::Result<()>>> {
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    udp.connect(spec.udp)?;
    let tcp = TcpStream::connect(spec.tcp)?;
    tcp.set_nodelay(true)?;
    std::thread::Builder::new()
        .name("demo-load".into())
        .spawn(move || send(spec, &udp, tcp, &sent, &stop))
}

fn send(
    spec: LoadSpec,
    udp: &UdpSocket,
    mut tcp: TcpStream,
    sent: &Sent,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    // Timer slack 1 ns: sleeps end when asked, not up to 50 µs later, so
    // the sender keeps its schedule without spinning a core.
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only
    // this thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let k = spec.per_datagram();
    let epoch = crate::sys::now_ns() + 1_000_000;
    let udp_rate = (spec.rate / 2).max(1);
    let tcp_rate = (spec.rate - spec.rate / 2).max(1);
    let su = Schedule {
        epoch_ns: epoch,
        rate: Some(udp_rate),
        conns: 1,
    };
    let st = Schedule {
        epoch_ns: epoch,
        rate: Some(tcp_rate),
        conns: 1,
    };
    let mut us = Stream::new(Kind::Tick, su, spec.seed, 0);
    let mut ts = Stream::new(Kind::Tick, st, spec.seed ^ 0x9e37_79b9_7f4a_7c15, 0);
    let mut e = Expect::default();
    let mut dgram = Vec::with_capacity(32 * k as usize);
    let mut tbuf = Vec::with_capacity(32 * 256);
    let mut lag = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let now = crate::sys::now_ns();
        // A datagram is due when its last record is; at most 64 per round
        // so a sender behind schedule still serves TCP.
        for _ in 0..64 {
            let due = su.due(us.next + k - 1);
            if due > now {
                break;
            }
            lag = lag.max(now - due);
            dgram.clear();
            for _ in 0..k {
                us.push(&mut dgram, &mut e);
            }
            match udp.send(&dgram) {
                Ok(_) => {
                    sent.udp_records.fetch_add(k, Ordering::Relaxed);
                    sent.udp_datagrams.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    sent.udp_send_errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tbuf.clear();
        while tbuf.len() < tbuf.capacity() && ts.next_due() <= now {
            lag = lag.max(now - ts.next_due());
            ts.push(&mut tbuf, &mut e);
        }
        if !tbuf.is_empty() {
            tcp.write_all(&tbuf)?;
            sent.tcp_records
                .fetch_add(tbuf.len() as u64 / 32, Ordering::Relaxed);
        }
        sent.max_lag_ns.fetch_max(lag, Ordering::Relaxed);
        let next = su.due(us.next + k - 1).min(ts.next_due());
        let now = crate::sys::now_ns();
        if next > now {
            // Wake at most every 50 ms to see `stop`.
            std::thread::sleep(Duration::from_nanos((next - now).min(50_000_000)));
        }
    }
    tcp.flush()?;
    tcp.shutdown(std::net::Shutdown::Write)?;
    Ok(())
}

/// Parses a rate: `100000`, `100k`, `1.5M`, optionally followed by `/s`.
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('m' | 'M') => (&t[..t.len() - 1], 1e6),
        _ => (t, 1.0),
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("--rate {s:?}: a number of records/s such as 50000, 100k or 1M"))?;
    let r = (v * mult).round();
    if !(2.0..=20e6).contains(&r) {
        return Err(format!("--rate {s:?}: must be between 2 and 20M records/s"));
    }
    Ok(r as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("100k"), Ok(100_000));
        assert_eq!(parse_rate("1.5M/s"), Ok(1_500_000));
        assert_eq!(parse_rate("50000"), Ok(50_000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("100M").is_err());
    }

    #[test]
    fn datagrams_hold_one_record_at_low_rates() {
        let spec = |rate| LoadSpec {
            udp: "127.0.0.1:1".parse().unwrap(),
            tcp: "127.0.0.1:1".parse().unwrap(),
            rate,
            seed: 1,
        };
        assert_eq!(spec(20_000).per_datagram(), 1);
        assert_eq!(spec(400_000).per_datagram(), 4);
        assert_eq!(spec(20_000_000).per_datagram(), 16);
    }
}
