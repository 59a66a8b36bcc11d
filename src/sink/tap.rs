//! `tap`: live records leaving a stage, copied off the hot path's way.
//!
//! The control thread says which stage to watch through a [`TapCtl`] (a
//! sequence lock: one writer, the control thread; readers, the workers,
//! check one word between batches). A worker watching a stage encodes at
//! most `limit` of the rows leaving it per `interval` into a pooled buffer
//! and pushes it into its own bounded side ring ([`TapPort`] → [`TapRx`]);
//! when nobody reads, the pool runs dry and the worker drops (counted)
//! instead of waiting or allocating. With no tap armed the only cost is a
//! compare per stage per batch.

use crate::pipeline::exec::Rows;
use crate::pipeline::kernels::Sel;
use crate::pipeline::program::{EmitSpec, OutSchema};
use crate::sink::row::{Scratch, encode};
use crate::sync::{AtomicU64, Ordering, fence};
use std::sync::Arc;

/// Longest stage name a tap can name (stage names are identifiers).
pub const NAME_MAX: usize = 64;
const WORDS: usize = NAME_MAX / 8;

/// What the control thread asks the workers to tap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TapWant {
    name: [u8; NAME_MAX],
    len: usize,
    /// Rows per interval per shard.
    pub limit: u32,
    pub interval_ns: u64,
}

impl TapWant {
    /// `None` when `stage` is longer than [`NAME_MAX`].
    pub fn new(stage: &str, limit: u32, interval_ns: u64) -> Option<TapWant> {
        if stage.len() > NAME_MAX {
            return None;
        }
        let mut name = [0u8; NAME_MAX];
        name[..stage.len()].copy_from_slice(stage.as_bytes());
        Some(TapWant {
            name,
            len: stage.len(),
            limit,
            interval_ns: interval_ns.max(1),
        })
    }

    /// No tap.
    pub const OFF: TapWant = TapWant {
        name: [0; NAME_MAX],
        len: 0,
        limit: 0,
        interval_ns: 1,
    };

    /// The stage's name; empty when off.
    pub fn stage(&self) -> &[u8] {
        &self.name[..self.len]
    }
}

/// The tap request, shared by the control thread (its only writer) and
/// the workers: a sequence lock over plain atomic words, so a reader never
/// blocks the writer and never sees half of one request and half of the
/// next (it retries at its next batch instead).
#[derive(Debug)]
pub struct TapCtl {
    /// Even: stable; odd: being written. Changes with every request.
    seq: AtomicU64,
    words: [AtomicU64; WORDS],
    /// len | limit << 16
    meta: AtomicU64,
    interval_ns: AtomicU64,
}

impl Default for TapCtl {
    fn default() -> TapCtl {
        TapCtl {
            seq: AtomicU64::new(0),
            words: std::array::from_fn(|_| AtomicU64::new(0)),
            meta: AtomicU64::new(0),
            interval_ns: AtomicU64::new(1),
        }
    }
}

impl TapCtl {
    /// Publishes `w`. Only the control thread calls this.
    pub fn set(&self, w: &TapWant) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s + 1, Ordering::Relaxed);
        // Orders the odd sequence before the field stores: a reader that
        // sees any new field also sees the sequence change.
        fence(Ordering::Release);
        for (i, word) in self.words.iter().enumerate() {
            let b: [u8; 8] = w.name[i * 8..i * 8 + 8].try_into().expect("8 bytes");
            word.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        self.meta
            .store(w.len as u64 | (w.limit as u64) << 16, Ordering::Relaxed);
        self.interval_ns.store(w.interval_ns, Ordering::Relaxed);
        self.seq.store(s + 2, Ordering::Release);
    }

    /// The sequence: a reader compares it with the one it last read, one
    /// load per batch.
    #[inline]
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// A consistent request and its sequence, or `None` while one is being
    /// written (try again at the next batch).
    pub fn read(&self) -> Option<(u64, TapWant)> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let mut name = [0u8; NAME_MAX];
        for (i, word) in self.words.iter().enumerate() {
            name[i * 8..i * 8 + 8].copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
        }
        let meta = self.meta.load(Ordering::Relaxed);
        let interval_ns = self.interval_ns.load(Ordering::Relaxed);
        // Orders the field loads before the second sequence load: if a
        // write overlapped them, the sequence has moved.
        fence(Ordering::Acquire);
        let s2 = self.seq.load(Ordering::Relaxed);
        if s1 != s2 {
            return None;
        }
        Some((
            s1,
            TapWant {
                name,
                len: (meta & 0xffff) as usize,
                limit: (meta >> 16) as u32,
                interval_ns: interval_ns.max(1),
            },
        ))
    }
}

/// Rows copied at one stage of one batch.
#[derive(Debug)]
pub struct TapBatch {
    pub generation: u64,
    pub shard: u16,
    pub schema: Arc<OutSchema>,
    pub rows: u32,
    /// Rows in the sink row format ([`crate::sink::row`]).
    pub bytes: Vec<u8>,
}

/// Buffers per shard, and the bytes each holds before a row is left out.
const POOL: usize = 16;
/// A buffer being filled is handed over after this long (ns), or when
/// full, or before the worker parks.
const HOLD_NS: u64 = 1_000_000;
const BUF_BYTES: usize = 64 << 10;

/// A worker's end of its tap ring.
pub struct TapPort {
    tx: rtrb::Producer<TapBatch>,
    free: rtrb::Consumer<TapBatch>,
    /// The buffer being filled: rows of consecutive batches of one
    /// generation and shape, handed over when full, after [`HOLD_NS`]
    /// ([`TapPort::flush_due`]) or before the worker parks
    /// ([`TapPort::flush`]), so small batches share buffers.
    cur: Option<TapBatch>,
    /// CLOCK_MONOTONIC ns when `cur` got its first row.
    cur_since_ns: u64,
    scratch: Scratch,
    /// Row indexes of a part of an unselected batch.
    idx: Vec<u32>,
    /// The current interval's start (ns) and rows taken in it.
    window_ns: u64,
    taken: u32,
    pub want: TapWant,
    /// Rows the pool had no room for (nobody reading).
    pub dropped: u64,
}

/// The control thread's end.
pub struct TapRx {
    rx: rtrb::Consumer<TapBatch>,
    back: rtrb::Producer<TapBatch>,
}

/// A tap ring with its buffers, allocated up front.
pub fn channel(shard: u16, batch_max: usize) -> (TapPort, TapRx) {
    let (tx, rx) = rtrb::RingBuffer::new(POOL);
    let (mut back, free) = rtrb::RingBuffer::new(POOL);
    let empty = Arc::new(OutSchema { fields: Vec::new() });
    for _ in 0..POOL {
        let _ = back.push(TapBatch {
            generation: 0,
            shard,
            schema: empty.clone(),
            rows: 0,
            bytes: Vec::with_capacity(BUF_BYTES),
        });
    }
    (
        TapPort {
            tx,
            free,
            cur: None,
            cur_since_ns: 0,
            scratch: Scratch::with_rows(batch_max),
            idx: Vec::with_capacity(batch_max),
            window_ns: 0,
            taken: 0,
            want: TapWant::OFF,
            dropped: 0,
        },
        TapRx { rx, back },
    )
}

impl TapPort {
    /// Copies up to this interval's remaining allowance of `rows` (the
    /// rows leaving the tapped stage, laid out as `spec`).
    pub fn copy(&mut self, spec: &EmitSpec, rows: &Rows<'_>, generation: u64, now_ns: u64) {
        if now_ns.wrapping_sub(self.window_ns) >= self.want.interval_ns {
            self.window_ns = now_ns;
            self.taken = 0;
        }
        let want = rows
            .sel
            .len()
            .min(self.want.limit.saturating_sub(self.taken) as usize);
        // Room is reckoned with text values of up to 64 bytes each.
        let per_row = spec.schema.row_bytes(64).max(1);
        let mut done = 0;
        while done < want {
            let fits = self.cur.as_ref().is_some_and(|c| {
                c.generation == generation
                    && Arc::ptr_eq(&c.schema, &spec.schema)
                    && c.bytes.len() + per_row <= BUF_BYTES
            });
            if !fits {
                self.flush();
                let Ok(mut b) = self.free.pop() else {
                    self.dropped += (want - done) as u64;
                    break;
                };
                b.bytes.clear();
                b.rows = 0;
                b.generation = generation;
                if !Arc::ptr_eq(&b.schema, &spec.schema) {
                    b.schema = spec.schema.clone();
                }
                self.cur = Some(b);
                self.cur_since_ns = crate::sys::mono_ns();
            }
            let TapPort {
                cur, scratch, idx, ..
            } = self;
            let c = cur.as_mut().expect("a buffer with room");
            let n = ((BUF_BYTES - c.bytes.len()) / per_row).clamp(1, want - done);
            let sel = match rows.sel {
                Sel::All(_) if done == 0 => Sel::All(n),
                Sel::All(_) => {
                    idx.clear();
                    idx.extend(done as u32..(done + n) as u32);
                    Sel::Idx(idx)
                }
                Sel::Idx(v) => Sel::Idx(&v[done..done + n]),
            };
            c.rows += encode(spec, &rows.with_sel(sel), &mut c.bytes, scratch);
            done += n;
        }
        // Rows within the limit count against it delivered or not, so an
        // unread tap stops trying after one attempt per interval.
        self.taken += want as u32;
    }

    /// Hands the buffer being filled over if it has waited 1 ms
    /// (`now_ns`: CLOCK_MONOTONIC).
    #[inline]
    pub fn flush_due(&mut self, now_ns: u64) {
        if self.cur.is_some() && now_ns.wrapping_sub(self.cur_since_ns) >= HOLD_NS {
            self.flush();
        }
    }

    /// Hands the buffer being filled to the control thread.
    #[inline]
    pub fn flush(&mut self) {
        if self.cur.as_ref().is_some_and(|c| c.rows > 0) {
            let b = self.cur.take().expect("checked");
            // Never full: the ring holds every buffer of the pool.
            if let Err(rtrb::PushError::Full(b)) = self.tx.push(b) {
                self.dropped += b.rows as u64;
                self.cur = Some(b);
                if let Some(c) = self.cur.as_mut() {
                    c.rows = 0;
                    c.bytes.clear();
                }
            }
        }
    }
}

impl TapRx {
    /// Hands each waiting batch to `f`, then returns its buffer.
    pub fn drain(&mut self, mut f: impl FnMut(&TapBatch)) {
        while let Ok(b) = self.rx.pop() {
            f(&b);
            let _ = self.back.push(b);
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back_whole() {
        let c = TapCtl::default();
        assert_eq!(c.read().map(|r| r.1), Some(TapWant::OFF));
        let w = TapWant::new("hot", 100, 500_000_000).unwrap();
        c.set(&w);
        let (s, got) = c.read().unwrap();
        assert_eq!(got, w);
        assert_eq!(got.stage(), b"hot");
        assert_eq!(s, c.seq());
        assert!(TapWant::new(&"x".repeat(NAME_MAX + 1), 1, 1).is_none());
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;

    /// A reader racing two requests sees the old one, a whole new one, or
    /// nothing (retry) — never a mix of the two names or limits.
    #[test]
    fn loom_tap_request_is_never_torn() {
        loom::model(|| {
            let c = crate::sync::Arc::new(TapCtl::default());
            let a = TapWant::new("alpha_stage_name", 10, 1_000).unwrap();
            let b = TapWant::new("b", 20, 2_000).unwrap();
            c.set(&a);
            let w = c.clone();
            let t = loom::thread::spawn(move || w.set(&b));
            if let Some((_, got)) = c.read() {
                assert!(got == a || got == b, "torn read: {got:?}");
            }
            t.join().unwrap();
            assert_eq!(c.read().map(|r| r.1), Some(b));
        });
    }
}
