//! Latency inside the appliance, per generation: HdrHistograms filled by
//! each shard's worker and merged on the control thread.
//!
//! Two figures per record, weighted by records:
//! * `pipeline`: from the moment the worker read the first byte of a
//!   batch off its socket (`ingest_ns`) to the moment the chain has run
//!   over it and handed its records to the sinks — a journal sink's
//!   records are committed by then, on the worker;
//! * `kernel`: UDP only, from the kernel's receive timestamp of a datagram
//!   (`SO_TIMESTAMPNS`) to the worker reading it: time queued in the
//!   socket buffer and io_uring.
//!
//! A worker owns its histograms (no sharing, no atomics per record). It
//! hands them over through its own SPSC ring once a second and whenever
//! the generation changes, taking empty ones back from a pool allocated at
//! start (8 pairs; the control thread returns them every 20 ms or sooner).
//! Should the pool run dry (more than 7 generations within one return),
//! the worker keeps adding to the pair it has: nothing is lost or
//! allocated, but those records are counted under the newest generation.

use hdrhistogram::Histogram;

/// ns, 1 ns to 100 s, 2 significant digits (about 15 KB per histogram).
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000_000, 2).expect("valid bounds")
}

/// One shard's figures for one generation over one interval.
#[derive(Debug)]
pub struct LatencyBatch {
    pub generation: u64,
    pub shard: u16,
    pub pipeline: Histogram<u64>,
    pub kernel: Histogram<u64>,
}

impl LatencyBatch {
    fn new(shard: u16) -> LatencyBatch {
        LatencyBatch {
            generation: 0,
            shard,
            pipeline: histogram(),
            kernel: histogram(),
        }
    }

    fn is_empty(&self) -> bool {
        self.pipeline.is_empty() && self.kernel.is_empty()
    }
}

const POOL: usize = 8;

/// A worker's end.
pub struct LatencyPort {
    tx: rtrb::Producer<LatencyBatch>,
    free: rtrb::Consumer<LatencyBatch>,
    cur: LatencyBatch,
}

/// The control thread's end.
pub struct LatencyRx {
    rx: rtrb::Consumer<LatencyBatch>,
    back: rtrb::Producer<LatencyBatch>,
}

/// A shard's latency ring with its histograms, allocated up front.
pub fn channel(shard: u16) -> (LatencyPort, LatencyRx) {
    let (tx, rx) = rtrb::RingBuffer::new(POOL);
    let (mut back, free) = rtrb::RingBuffer::new(POOL);
    for _ in 0..POOL - 1 {
        let _ = back.push(LatencyBatch::new(shard));
    }
    (
        LatencyPort {
            tx,
            free,
            cur: LatencyBatch::new(shard),
        },
        LatencyRx { rx, back },
    )
}

impl LatencyPort {
    /// `n` records of `generation` took `ns` through the pipeline.
    #[inline]
    pub fn pipeline(&mut self, generation: u64, n: u64, ns: u64) {
        self.follow(generation);
        self.cur.pipeline.saturating_record_n(ns.max(1), n);
    }

    /// `n` records of a datagram waited `ns` between the kernel's receive
    /// timestamp and the worker.
    #[inline]
    pub fn kernel(&mut self, generation: u64, n: u64, ns: u64) {
        self.follow(generation);
        self.cur.kernel.saturating_record_n(ns.max(1), n);
    }

    #[inline]
    fn follow(&mut self, generation: u64) {
        if self.cur.generation != generation {
            self.hand_over();
            self.cur.generation = generation;
        }
    }

    /// Hands what was recorded to the control thread, if anything and if
    /// an empty pair is there to take its place.
    pub fn hand_over(&mut self) {
        if self.cur.is_empty() {
            return;
        }
        let Ok(mut next) = self.free.pop() else {
            return; // keep adding to these; the control thread is behind
        };
        next.generation = self.cur.generation;
        let full = std::mem::replace(&mut self.cur, next);
        // Never full: the ring holds every histogram of the pool.
        let _ = self.tx.push(full);
    }
}

impl LatencyRx {
    /// Hands each waiting batch to `f`, then empties it and returns it.
    pub fn drain(&mut self, mut f: impl FnMut(&LatencyBatch)) {
        while let Ok(mut b) = self.rx.pop() {
            f(&b);
            b.pipeline.reset();
            b.kernel.reset();
            let _ = self.back.push(b);
        }
    }
}

/// What the control thread keeps: per generation (the latest
/// [`ByGeneration::KEEP`]) and over the whole run.
#[derive(Debug)]
pub struct ByGeneration {
    pub gens: std::collections::BTreeMap<u64, (Histogram<u64>, Histogram<u64>)>,
    pub all_pipeline: Histogram<u64>,
    pub all_kernel: Histogram<u64>,
}

impl Default for ByGeneration {
    fn default() -> ByGeneration {
        ByGeneration {
            gens: Default::default(),
            all_pipeline: histogram(),
            all_kernel: histogram(),
        }
    }
}

impl ByGeneration {
    pub const KEEP: usize = 32;

    /// Merges one shard's batch.
    pub fn add(&mut self, b: &LatencyBatch) {
        let (p, k) = self
            .gens
            .entry(b.generation)
            .or_insert_with(|| (histogram(), histogram()));
        let _ = p.add(&b.pipeline);
        let _ = k.add(&b.kernel);
        let _ = self.all_pipeline.add(&b.pipeline);
        let _ = self.all_kernel.add(&b.kernel);
        while self.gens.len() > Self::KEEP {
            self.gens.pop_first();
        }
    }
}

/// Percentiles of `h` as JSON (µs), or null when empty.
pub fn summary_json(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::Value::Null;
    }
    let us = |v: u64| (v as f64 / 10.0).round() / 100.0;
    serde_json::json!({
        "records": h.len(),
        "p50_us": us(h.value_at_quantile(0.5)),
        "p99_us": us(h.value_at_quantile(0.99)),
        "p999_us": us(h.value_at_quantile(0.999)),
        "max_us": us(h.max()),
    })
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn batches_follow_generations_and_come_back_empty() {
        let (mut port, mut rx) = channel(3);
        port.pipeline(1, 10, 5_000);
        port.kernel(1, 10, 2_000);
        port.pipeline(2, 5, 7_000); // a switch hands generation 1 over
        port.hand_over();
        let mut by = ByGeneration::default();
        let mut seen = Vec::new();
        rx.drain(|b| {
            seen.push((b.generation, b.shard, b.pipeline.len(), b.kernel.len()));
            by.add(b);
        });
        assert_eq!(seen, vec![(1, 3, 10, 10), (2, 3, 5, 0)]);
        assert_eq!(by.gens[&1].0.len(), 10);
        assert_eq!(by.all_pipeline.len(), 15);
        // The pool never runs out over many hand-overs with a reader.
        for g in 3..100 {
            port.pipeline(g, 1, 1_000);
            rx.drain(|b| by.add(b));
        }
        assert_eq!(by.gens.len(), ByGeneration::KEEP);
        let s = summary_json(&by.all_pipeline);
        assert_eq!(s["records"], 15 + 96);
    }

    #[test]
    fn without_a_reader_nothing_is_lost_or_allocated() {
        let (mut port, mut rx) = channel(0);
        for g in 1..=20 {
            port.pipeline(g, 1, 1_000);
        }
        port.hand_over();
        let mut n = 0;
        rx.drain(|b| n += b.pipeline.len());
        // The pool held POOL - 1 spare histograms: later generations were
        // added to the last one taken.
        assert_eq!(n + port.cur.pipeline.len(), 20);
    }
}
