//! Seeded workload data (WORKLOADS.md) for the load generator, the
//! benchmarks and the tests: the same seed gives the same bytes.
//!
//! The PRNG is **xoshiro256\*\*** (Blackman & Vigna, 2018), its state
//! expanded from a 64-bit seed with **SplitMix64**. Integer ranges are
//! closed, float ranges half-open, floats rounded to 2 decimals as
//! WORKLOADS.md specifies.

pub mod schedule;

/// xoshiro256** seeded through SplitMix64.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// A stream for one connection of a seeded run.
    pub fn for_stream(seed: u64, stream: u64) -> Rng {
        Rng::new(seed ^ stream.wrapping_mul(0xd134_2543_de82_ef95))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in `lo..=hi`.
    #[inline]
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + ((self.next_u64() as u128 * (hi - lo + 1) as u128) >> 64) as u64
    }

    /// Uniform in `[lo, hi)` with 2 decimals: `lo + k/100`.
    #[inline]
    pub fn cents(&mut self, lo: u64, hi: u64) -> f64 {
        let k = self.range(lo * 100, hi * 100 - 1);
        k as f64 / 100.0
    }
}

/// Nanoseconds: 2024-11-25T00:00:00Z, the sensor epoch of WORKLOADS.md.
pub const SENSOR_EPOCH_NS: i64 = 1_732_492_800_000_000_000;

/// A market tick (the 32-byte layout of examples/ticks.toml).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tick {
    pub ts: i64,
    pub seq: u64,
    pub symbol: u32,
    pub qty: i32,
    pub price: f64,
}

impl Tick {
    /// Draws the random fields: symbol in [1, 100], qty in [1, 1000],
    /// price in [1, 200) with 2 decimals.
    #[inline]
    pub fn draw(rng: &mut Rng, ts: i64, seq: u64) -> Tick {
        Tick {
            ts,
            seq,
            symbol: rng.range(1, 100) as u32,
            qty: rng.range(1, 1000) as i32,
            price: rng.cents(1, 200),
        }
    }

    /// The 32-byte little-endian record.
    #[inline]
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ts.to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.symbol.to_le_bytes());
        out.extend_from_slice(&self.qty.to_le_bytes());
        out.extend_from_slice(&self.price.to_le_bytes());
    }

    /// Whether `examples/ticks.mts`' filter keeps it (given the default
    /// params and watchlist).
    pub fn passes_example_filter(&self) -> bool {
        const WATCH: [u32; 10] = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89];
        self.price > 10.0 && WATCH.contains(&self.symbol)
    }
}

/// An IoT sensor reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sensor {
    pub ts: i64,
    /// 1..=1000, printed `d-0001`.
    pub device: u32,
    /// 1..=5, printed `plant-1`.
    pub site: u32,
    pub temp: f64,
    pub hum: f64,
    pub battery: i64,
}

impl Sensor {
    /// Record `i`: ts = epoch + i ms; the rest drawn from `rng`.
    #[inline]
    pub fn draw(rng: &mut Rng, i: u64) -> Sensor {
        Sensor {
            ts: SENSOR_EPOCH_NS + i as i64 * 1_000_000,
            device: rng.range(1, 1000) as u32,
            site: rng.range(1, 5) as u32,
            temp: rng.cents(15, 35),
            hum: rng.cents(20, 80),
            battery: rng.range(0, 100) as i64,
        }
    }

    /// `{"ts":...,"device":"d-0042","site":"plant-3","temp":21.53,"hum":40.21,"battery":87}\n`
    pub fn json(&self, out: &mut Vec<u8>) {
        let mut ib = itoa::Buffer::new();
        out.extend_from_slice(b"{\"ts\":");
        out.extend_from_slice(ib.format(self.ts).as_bytes());
        out.extend_from_slice(b",\"device\":\"d-");
        pad4(out, self.device);
        out.extend_from_slice(b"\",\"site\":\"plant-");
        out.extend_from_slice(ib.format(self.site).as_bytes());
        out.extend_from_slice(b"\",\"temp\":");
        cents(out, self.temp);
        out.extend_from_slice(b",\"hum\":");
        cents(out, self.hum);
        out.extend_from_slice(b",\"battery\":");
        out.extend_from_slice(ib.format(self.battery).as_bytes());
        out.extend_from_slice(b"}\n");
    }

    /// `sensors,device=d-0042,site=plant-3 temp=21.53,hum=40.21,battery=87i 1732492800000000000\n`
    pub fn lp(&self, out: &mut Vec<u8>) {
        let mut ib = itoa::Buffer::new();
        out.extend_from_slice(b"sensors,device=d-");
        pad4(out, self.device);
        out.extend_from_slice(b",site=plant-");
        out.extend_from_slice(ib.format(self.site).as_bytes());
        out.extend_from_slice(b" temp=");
        cents(out, self.temp);
        out.extend_from_slice(b",hum=");
        cents(out, self.hum);
        out.extend_from_slice(b",battery=");
        out.extend_from_slice(ib.format(self.battery).as_bytes());
        out.extend_from_slice(b"i ");
        out.extend_from_slice(ib.format(self.ts).as_bytes());
        out.push(b'\n');
    }

    /// `1732492800000000000,d-0042,plant-3,21.53,40.21,87\n` (columns ts,
    /// device, site, temp, hum, battery).
    pub fn csv(&self, out: &mut Vec<u8>) {
        let mut ib = itoa::Buffer::new();
        out.extend_from_slice(ib.format(self.ts).as_bytes());
        out.extend_from_slice(b",d-");
        pad4(out, self.device);
        out.extend_from_slice(b",plant-");
        out.extend_from_slice(ib.format(self.site).as_bytes());
        out.push(b',');
        cents(out, self.temp);
        out.push(b',');
        cents(out, self.hum);
        out.push(b',');
        out.extend_from_slice(ib.format(self.battery).as_bytes());
        out.push(b'\n');
    }

    /// Whether P1's `filter temp > 25.0` keeps it.
    pub fn passes_p1(&self) -> bool {
        self.temp > 25.0
    }
}

/// Appends `v` zero-padded to 4 digits.
fn pad4(out: &mut Vec<u8>, v: u32) {
    let v = v.min(9999);
    out.extend_from_slice(&[
        b'0' + (v / 1000) as u8,
        b'0' + (v / 100 % 10) as u8,
        b'0' + (v / 10 % 10) as u8,
        b'0' + (v % 10) as u8,
    ]);
}

/// Writes a 2-decimal value exactly as `{:.2}` would, without allocating.
fn cents(out: &mut Vec<u8>, v: f64) {
    let c = (v * 100.0).round() as i64;
    let mut ib = itoa::Buffer::new();
    if c < 0 {
        out.push(b'-');
    }
    let c = c.unsigned_abs();
    out.extend_from_slice(ib.format(c / 100).as_bytes());
    out.push(b'.');
    out.push(b'0' + (c / 10 % 10) as u8);
    out.push(b'0' + (c % 10) as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..1000 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        let mut r = Rng::new(7);
        for _ in 0..100_000 {
            let t = Tick::draw(&mut r, 0, 0);
            assert!((1..=100).contains(&t.symbol) && (1..=1000).contains(&t.qty));
            assert!((1.0..200.0).contains(&t.price));
            let s = Sensor::draw(&mut r, 0);
            assert!((15.0..35.0).contains(&s.temp) && (20.0..80.0).contains(&s.hum));
            assert!((0..=100).contains(&s.battery) && (1..=5).contains(&s.site));
        }
    }

    #[test]
    fn workload_lines_look_like_the_spec() {
        let s = Sensor {
            ts: SENSOR_EPOCH_NS,
            device: 42,
            site: 3,
            temp: 21.53,
            hum: 40.21,
            battery: 87,
        };
        let mut o = Vec::new();
        s.json(&mut o);
        assert_eq!(
            String::from_utf8_lossy(&o),
            "{\"ts\":1732492800000000000,\"device\":\"d-0042\",\"site\":\"plant-3\",\"temp\":21.53,\"hum\":40.21,\"battery\":87}\n"
        );
        o.clear();
        s.lp(&mut o);
        assert_eq!(
            String::from_utf8_lossy(&o),
            "sensors,device=d-0042,site=plant-3 temp=21.53,hum=40.21,battery=87i 1732492800000000000\n"
        );
        o.clear();
        s.csv(&mut o);
        assert_eq!(
            String::from_utf8_lossy(&o),
            "1732492800000000000,d-0042,plant-3,21.53,40.21,87\n"
        );
    }
}
