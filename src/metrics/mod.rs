//! Counters and samples, written without locks by their one owner.
//!
//! Every counter has exactly one writer (its shard, or its sink thread), so
//! an increment is a Relaxed load and a Relaxed store — no read-modify-write
//! and no data race. Readers (the control thread) sum Relaxed loads; a value
//! read while a shard runs may be one batch behind (# Staleness).
//! Groups written by different threads sit on separate cache lines.

pub mod hgrm;
pub mod latency;
pub mod prom;

use crate::codec::Reason;
use crate::sync::CachePadded;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

/// A monotonic counter with a single writer.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }

    /// Adds `n`. Only the counter's owner calls this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Sets a gauge. Only the owner calls this.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// # Staleness
    /// May lag the writer by the updates of the batch in progress.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Per source, per shard.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Records decoded and handed to the pipeline.
    pub records: Counter,
    pub bytes: Counter,
    pub datagrams: Counter,
    /// Dropped records by reason.
    pub rejects: [Counter; Reason::COUNT],
    /// Records whose `ts` was set to the ingest time.
    pub ts_defaulted: Counter,
    /// Datagrams longer than the receive buffer (dropped).
    pub udp_truncated: Counter,
    /// Datagrams the kernel dropped on a full socket buffer (SO_RXQ_OVFL /
    /// SK_MEMINFO_DROPS). Counted in datagrams: a dropped datagram's
    /// records were never seen.
    pub kernel_drops: Counter,
    pub conns_accepted: Counter,
    pub conns_closed: Counter,
    /// Connections refused over `max_connections`.
    pub conns_rejected: Counter,
    /// Connections closed after `idle_timeout`.
    pub conns_timed_out: Counter,
    /// Connections closed because a length prefix exceeded `max_frame`.
    pub conns_bad_frame: Counter,
    /// Failed accepts (e.g. out of file descriptors).
    pub accept_errors: Counter,
}

impl SourceCounters {
    pub fn rejects_total(&self) -> u64 {
        self.rejects.iter().map(Counter::get).sum()
    }
}

/// Per sink, per shard: what the shard handed over.
#[derive(Debug, Default)]
pub struct SinkShardCounters {
    /// Records pushed into the sink's ring.
    pub emitted: Counter,
    /// Records dropped because the ring was full (`on_full = "drop"`).
    pub dropped_full: Counter,
    /// Records dropped because shutdown gave up waiting for the sink.
    pub dropped_shutdown: Counter,
    /// Time spent waiting for ring space (`on_full = "block"`).
    pub blocked_ns: Counter,
    /// Gauge: records handed to the sink thread and not yet given back,
    /// as of the last batch sent (at most `ring_capacity`; the shard takes
    /// finished batches back when it runs short, so this is an upper
    /// bound of what the ring holds, exact while the sink is behind).
    pub ring_records: Counter,
    /// Journal: frames and bytes appended, segments rolled.
    pub journal_frames: Counter,
    pub journal_bytes: Counter,
    pub journal_rolls: Counter,
    /// Journal: records dropped for want of a segment (`on_full = "drop"`
    /// on a full disk), and rows larger than a whole segment.
    pub dropped_disk_full: Counter,
    pub dropped_too_large: Counter,
    /// Journal: `fsync = "every_batch"` msyncs that failed.
    pub sync_errors: Counter,
}

/// `1234567` as `1,234,567`, for people reading figures.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Stages counted per shard; later stages of a longer pipeline are not.
pub const STAGES_MAX: usize = 64;

/// Records into and onward out of one stage (see [`ShardMetrics::stages`]).
#[derive(Debug, Default)]
pub struct StageCounters {
    pub records_in: Counter,
    pub records_out: Counter,
}

/// Everything one shard writes.
#[derive(Debug)]
pub struct ShardMetrics {
    pub sources: Box<[SourceCounters]>,
    pub sinks: Box<[SinkShardCounters]>,
    pub batches: Counter,
    /// Records that entered the chain.
    pub chain_in: Counter,
    /// Records removed by filter, dedup and sample stages.
    pub filtered: Counter,
    /// Records taken into windows.
    pub windowed: Counter,
    /// Records behind a window's watermark, dropped.
    pub late: Counter,
    /// Records a full state table (`max_state_keys`) could not hold.
    pub state_full: Counter,
    pub overflow: Counter,
    pub div_zero: Counter,
    /// The generation the shard runs.
    pub generation: Counter,
    pub generation_switches: Counter,
    /// CLOCK_MONOTONIC ns of the last switch, stored before the shard
    /// acknowledges it.
    pub switched_ns: Counter,
    /// Window, dedup and sample states handed to a new generation.
    pub states_carried: Counter,
    /// Records before the switch time of the `--at` generation that ran
    /// them: they arrived after the shard had switched.
    pub late_for_switch: Counter,
    /// Tapped rows the tap ring had no room for (nobody reading).
    pub tap_dropped: Counter,
    /// Per stage of the generation this shard runs (`generation`), by
    /// position: records in and onward out since the stage of that name
    /// first appeared (a stage kept by name across a mutation keeps
    /// counting; a new one starts at 0).
    pub stages: Box<[StageCounters]>,
    /// Kernel thread id of the worker (0 before it starts).
    pub tid: AtomicI32,
    pub samples: Samples,
}

impl ShardMetrics {
    pub fn new(sources: usize, sinks: usize) -> ShardMetrics {
        ShardMetrics {
            sources: (0..sources).map(|_| SourceCounters::default()).collect(),
            sinks: (0..sinks).map(|_| SinkShardCounters::default()).collect(),
            batches: Counter::new(),
            chain_in: Counter::new(),
            filtered: Counter::new(),
            windowed: Counter::new(),
            late: Counter::new(),
            state_full: Counter::new(),
            overflow: Counter::new(),
            div_zero: Counter::new(),
            generation: Counter::new(),
            generation_switches: Counter::new(),
            states_carried: Counter::new(),
            late_for_switch: Counter::new(),
            switched_ns: Counter::new(),
            tap_dropped: Counter::new(),
            stages: (0..STAGES_MAX).map(|_| StageCounters::default()).collect(),
            tid: AtomicI32::new(0),
            samples: Samples::default(),
        }
    }
}

/// Written by a sink thread.
#[derive(Debug, Default)]
pub struct SinkCounters {
    /// Kernel thread id of the sink thread (0 before it starts).
    pub tid: AtomicI32,
    pub records: Counter,
    pub bytes: Counter,
    pub batches: Counter,
    pub write_errors: Counter,
    /// Records lost to write errors.
    pub dropped_error: Counter,
    /// Journal thread: segments reserved ahead, reservations that failed
    /// (a full disk), syncs done and failed, segments removed by retention.
    pub segments_prepared: Counter,
    pub prepare_errors: Counter,
    pub fsyncs: Counter,
    pub sync_errors: Counter,
    pub segments_removed: Counter,
}

/// All counters of a running appliance.
#[derive(Debug)]
pub struct Metrics {
    pub shards: Box<[CachePadded<ShardMetrics>]>,
    pub sinks: Box<[CachePadded<SinkCounters>]>,
}

impl Metrics {
    pub fn new(shards: usize, sources: usize, sinks: usize) -> Metrics {
        Metrics {
            shards: (0..shards)
                .map(|_| CachePadded::new(ShardMetrics::new(sources, sinks)))
                .collect(),
            sinks: (0..sinks)
                .map(|_| CachePadded::new(SinkCounters::default()))
                .collect(),
        }
    }

    /// Sum of `f` over shards.
    pub fn sum(&self, f: impl Fn(&ShardMetrics) -> u64) -> u64 {
        self.shards.iter().map(|s| f(s)).sum()
    }
}

const SAMPLE_SLOTS: usize = 8;
const SAMPLE_WORDS: usize = 32;
/// Bytes of a bad record kept in a sample.
pub const SAMPLE_BYTES: usize = SAMPLE_WORDS * 8;

/// One sampled bad record, read back by the control thread.
#[derive(Clone, Debug, PartialEq)]
pub struct BadRecord {
    pub source: usize,
    pub reason: Reason,
    pub field: Option<u16>,
    /// The record's first bytes (at most [`SAMPLE_BYTES`]).
    pub bytes: Vec<u8>,
    /// Whether `bytes` was cut.
    pub truncated: bool,
    pub at_ns: u64,
}

#[derive(Debug, Default)]
struct Slot {
    /// Even: stable; odd: being written. Seqlock with atomic payload, so a
    /// torn read is detected, never undefined.
    seq: AtomicU64,
    meta: AtomicU64,
    at_ns: AtomicU64,
    words: [AtomicU64; SAMPLE_WORDS],
}

/// The last few bad records of a shard: a single-writer ring of seqlocked
/// slots.
#[derive(Debug, Default)]
pub struct Samples {
    slots: [Slot; SAMPLE_SLOTS],
    next: AtomicU64,
}

impl Samples {
    /// Records a sample. Only the owning shard calls this (cold path: bad
    /// records only).
    #[cold]
    pub fn put(&self, source: usize, reason: Reason, field: Option<u16>, bytes: &[u8], at_ns: u64) {
        let n = self.next.load(Ordering::Relaxed);
        self.next.store(n + 1, Ordering::Relaxed);
        let slot = &self.slots[(n as usize) % SAMPLE_SLOTS];
        let s = slot.seq.load(Ordering::Relaxed);
        slot.seq.store(s + 1, Ordering::Relaxed);
        // Orders the odd seq before the payload stores (pairs with the
        // reader's Acquire fence before its second seq load).
        std::sync::atomic::fence(Ordering::Release);
        let len = bytes.len().min(SAMPLE_BYTES);
        let meta = (source as u64 & 0xffff)
            | (reason as u64) << 16
            | (field.map_or(0xffff, |f| f as u64)) << 24
            | (len as u64) << 40
            | ((bytes.len() > SAMPLE_BYTES) as u64) << 56;
        slot.meta.store(meta, Ordering::Relaxed);
        slot.at_ns.store(at_ns, Ordering::Relaxed);
        for (i, w) in slot.words.iter().enumerate() {
            let mut b = [0u8; 8];
            let lo = (i * 8).min(len);
            let hi = (i * 8 + 8).min(len);
            b[..hi - lo].copy_from_slice(&bytes[lo..hi]);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        // Pairs with the reader's Acquire load of `seq`.
        slot.seq.store(s + 2, Ordering::Release);
    }

    /// Samples taken so far.
    pub fn count(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// The stable samples, newest first.
    pub fn read(&self) -> Vec<BadRecord> {
        let n = self.next.load(Ordering::Relaxed) as usize;
        let mut out = Vec::new();
        for k in 0..SAMPLE_SLOTS.min(n) {
            let slot = &self.slots[(n - 1 - k) % SAMPLE_SLOTS];
            for _ in 0..4 {
                let s1 = slot.seq.load(Ordering::Acquire); // pairs with put's Release
                if s1 % 2 == 1 {
                    std::hint::spin_loop();
                    continue;
                }
                let meta = slot.meta.load(Ordering::Relaxed);
                let at_ns = slot.at_ns.load(Ordering::Relaxed);
                let mut bytes = Vec::with_capacity(SAMPLE_BYTES);
                for w in &slot.words {
                    bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
                }
                std::sync::atomic::fence(Ordering::Acquire);
                if slot.seq.load(Ordering::Relaxed) != s1 {
                    continue;
                }
                let len = ((meta >> 40) & 0xffff) as usize;
                bytes.truncate(len);
                let field = ((meta >> 24) & 0xffff) as u16;
                out.push(BadRecord {
                    source: (meta & 0xffff) as usize,
                    reason: Reason::ALL[((meta >> 16) & 0xff) as usize],
                    field: (field != 0xffff).then_some(field),
                    bytes,
                    truncated: (meta >> 56) & 1 == 1,
                    at_ns,
                });
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_samples() {
        let m = Metrics::new(2, 1, 1);
        m.shards[0].sources[0].records.add(5);
        m.shards[1].sources[0].records.add(7);
        assert_eq!(m.sum(|s| s.sources[0].records.get()), 12);
        let s = &m.shards[0].samples;
        for i in 0..10u8 {
            s.put(
                0,
                Reason::TypeMismatch,
                Some(3),
                &[b'a' + i; 300],
                100 + i as u64,
            );
        }
        let got = s.read();
        assert_eq!(got.len(), 8);
        assert_eq!(got[0].bytes, vec![b'a' + 9; SAMPLE_BYTES]);
        assert!(got[0].truncated);
        assert_eq!(got[0].field, Some(3));
        assert_eq!(got[0].reason, Reason::TypeMismatch);
        assert_eq!(got[7].at_ns, 102);
    }
}
