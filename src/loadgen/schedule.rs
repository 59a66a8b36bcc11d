//! The load generator's schedule and record streams: what `mutgen` sends,
//! when, and what it expects to come out, as pure functions of the seed,
//! the epoch and the rate (so tests check them without a clock).
//!
//! Connection `c` of `n` sends its record `i` as global record
//! `g = i × n + c`. At a fixed rate `R` records/s, `g` is due at
//! `epoch + g × 10⁹ / R` ns (integer arithmetic, no drift); at the maximum
//! rate at `epoch + g`. A tick's `ts` is that intended time, so a stall of
//! the sender or of the appliance shows in `commit_ns − ts` instead of
//! being hidden (coordinated omission). A sensor's `ts` is WORKLOADS.md's
//! synthetic event time of record `g`.

use super::{Rng, Sensor, Tick};

/// What a generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// 32-byte binary ticks (W3, W4, L1).
    Tick,
    /// Sensor JSON lines (W1).
    Json,
    /// Sensor line protocol (W2).
    Lp,
    /// Sensor CSV rows (`ts,device,site,temp,hum,battery`).
    Csv,
}

/// When each record is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// ns since the Unix epoch of global record 0.
    pub epoch_ns: u64,
    /// Records per second over all connections; `None` = as fast as
    /// possible.
    pub rate: Option<u64>,
    pub conns: u64,
}

impl Schedule {
    /// The intended send time of global record `g`.
    #[inline]
    pub fn due(&self, g: u64) -> u64 {
        match self.rate {
            Some(r) => self.epoch_ns + (g as u128 * 1_000_000_000 / r.max(1) as u128) as u64,
            None => self.epoch_ns + g,
        }
    }

    /// Global index of connection `c`'s record `i`.
    #[inline]
    pub fn global(&self, c: u64, i: u64) -> u64 {
        i * self.conns + c
    }

    /// How many records are due before `epoch + d` (for `--duration`).
    pub fn records_within(&self, d_ns: u64) -> u64 {
        match self.rate {
            // g is due before epoch + d iff g × 10⁹ / R < d, i.e.
            // g < ceil(d × R / 10⁹).
            Some(r) => (d_ns as u128 * r as u128).div_ceil(1_000_000_000) as u64,
            None => u64::MAX,
        }
    }

    /// Records connection `c` sends out of `total`.
    pub fn per_conn(&self, c: u64, total: u64) -> u64 {
        total / self.conns + u64::from(c < total % self.conns)
    }
}

/// One connection's record stream.
pub struct Stream {
    kind: Kind,
    sched: Schedule,
    conn: u64,
    rng: Rng,
    /// The connection's next record index.
    pub next: u64,
}

/// Counts of what a stream's records should produce downstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    pub records: u64,
    /// Ticks passing `examples/ticks.mts`' filter; sensors passing P1.
    pub pass: u64,
    /// Ticks routed to `alerts` by `examples/ticks.mts`.
    pub routed: u64,
}

impl Stream {
    pub fn new(kind: Kind, sched: Schedule, seed: u64, conn: u64) -> Stream {
        Stream {
            kind,
            sched,
            conn,
            rng: Rng::for_stream(seed, conn),
            next: 0,
        }
    }

    /// The intended send time of the next record.
    #[inline]
    pub fn next_due(&self) -> u64 {
        self.sched.due(self.sched.global(self.conn, self.next))
    }

    /// Appends the next record to `out`, counting it in `e`.
    #[inline]
    pub fn push(&mut self, out: &mut Vec<u8>, e: &mut Expect) {
        let g = self.sched.global(self.conn, self.next);
        match self.kind {
            Kind::Tick => {
                let t = Tick::draw(&mut self.rng, self.sched.due(g) as i64, self.next);
                t.encode(out);
                if t.passes_example_filter() {
                    e.pass += 1;
                    if t.price * t.qty as f64 > 150_000.0 {
                        e.routed += 1;
                    }
                }
            }
            k => {
                let s = Sensor::draw(&mut self.rng, g);
                match k {
                    Kind::Json => s.json(out),
                    Kind::Lp => s.lp(out),
                    _ => s.csv(out),
                }
                e.pass += u64::from(s.passes_p1());
            }
        }
        e.records += 1;
        self.next += 1;
    }
}

impl Schedule {
    /// The global index whose intended time is `ts`, if one is.
    pub fn index_of(&self, ts: u64) -> Option<u64> {
        let d = ts.checked_sub(self.epoch_ns)?;
        let g = match self.rate {
            // due(g) = floor(g × 10⁹ / R) is strictly increasing for
            // R ≤ 10⁹: the inverse is the smallest g reaching d.
            Some(r) => (d as u128 * r as u128).div_ceil(1_000_000_000) as u64,
            None => d,
        };
        (self.due(g) == ts).then_some(g)
    }
}

/// When each record actually left (`mutgen --sent-log`): beside the
/// intended times in the records, it shows what a measurement from the
/// actual send time would have hidden.
///
/// ```text
/// "MUTGENSL" | epoch u64 | rate u64 (0 = max) | conns u64 | n u64 | n × sent_ns u64
/// ```
/// (little-endian; entry `g` is global record `g`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentLog {
    pub schedule: Schedule,
    pub sent_ns: Vec<u64>,
}

impl SentLog {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(40 + self.sent_ns.len() * 8);
        b.extend_from_slice(b"MUTGENSL");
        for v in [
            self.schedule.epoch_ns,
            self.schedule.rate.unwrap_or(0),
            self.schedule.conns,
            self.sent_ns.len() as u64,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for t in &self.sent_ns {
            b.extend_from_slice(&t.to_le_bytes());
        }
        b
    }

    /// # Errors
    /// Not a sent log, or cut short.
    pub fn decode(b: &[u8]) -> Result<SentLog, &'static str> {
        if b.len() < 40 || &b[..8] != b"MUTGENSL" {
            return Err("not a mutgen sent log");
        }
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let n = u(32) as usize;
        if b.len() != 40 + n * 8 {
            return Err("sent log cut short");
        }
        Ok(SentLog {
            schedule: Schedule {
                epoch_ns: u(8),
                rate: Some(u(16)).filter(|&r| r > 0),
                conns: u(24),
            },
            sent_ns: (0..n).map(|i| u(40 + i * 8)).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_seconds_at_100k_is_exactly_a_million_sends() {
        let s = Schedule {
            epoch_ns: 1_000,
            rate: Some(100_000),
            conns: 4,
        };
        let n = s.records_within(10_000_000_000);
        assert_eq!(n, 1_000_000);
        // Every one of them is due inside the 10 s, the next one is not.
        assert!(s.due(n - 1) < 1_000 + 10_000_000_000);
        assert_eq!(s.due(n), 1_000 + 10_000_000_000);
        // Spread over the connections without loss.
        let per: u64 = (0..4).map(|c| s.per_conn(c, n)).sum();
        assert_eq!(per, n);
        // Connection schedules interleave into the global one.
        let mut all: Vec<u64> = (0..4)
            .flat_map(|c| (0..s.per_conn(c, n)).map(move |i| s.global(c, i)))
            .collect();
        all.sort_unstable();
        assert!(all.iter().copied().eq(0..n));
        assert_eq!(s.due(1) - s.due(0), 10_000, "10 µs apart");
    }

    #[test]
    fn intended_times_map_back_to_their_index() {
        for rate in [Some(1), Some(3), Some(100_000), Some(7_777_777), None] {
            let s = Schedule {
                epoch_ns: 5_000,
                rate,
                conns: 3,
            };
            for g in (0..100_000).step_by(7) {
                assert_eq!(s.index_of(s.due(g)), Some(g), "{rate:?}");
            }
        }
        let log = SentLog {
            schedule: Schedule {
                epoch_ns: 9,
                rate: Some(10),
                conns: 2,
            },
            sent_ns: vec![1, 2, 3],
        };
        assert_eq!(SentLog::decode(&log.encode()).unwrap(), log);
        assert!(SentLog::decode(&log.encode()[..45]).is_err());
    }

    #[test]
    fn same_seed_and_epoch_same_bytes() {
        let s = Schedule {
            epoch_ns: 42,
            rate: Some(1_000),
            conns: 2,
        };
        for kind in [Kind::Tick, Kind::Json, Kind::Lp, Kind::Csv] {
            let bytes = |seed| {
                let mut out = Vec::new();
                let mut e = Expect::default();
                for c in 0..2 {
                    let mut st = Stream::new(kind, s, seed, c);
                    for _ in 0..1000 {
                        st.push(&mut out, &mut e);
                    }
                }
                (out, e)
            };
            assert_eq!(bytes(7), bytes(7), "{kind:?}");
            assert_ne!(bytes(7).0, bytes(8).0, "{kind:?}");
        }
    }
}
