//! The journal: segmented, memory-mapped, checksummed batch frames, one
//! partition per shard, appended by the shard's worker itself
//! (`docs/JOURNAL.md`).
//!
//! * [`format`](mod@format): the bytes, and the validation shared by recovery, readers
//!   and the fuzz target.
//! * [`writer`](mod@writer): appends frames on the worker; recovers a partition when
//!   it opens.
//! * [`tailer`](mod@tailer): follows a partition from another thread or process.
//! * This module: opening a journal sink (lock, partitions, recovery) and
//!   the journal thread, which does everything that may block so the
//!   workers never do: creating and reserving the next segment, faulting
//!   pages in ahead of the writer, `fsync = "interval"`, syncing and
//!   unmapping retired segments, retention.

pub mod format;
pub mod read;
pub mod segment;
pub mod tailer;
pub mod writer;

use crate::config::{Fsync, SinkDef};
use crate::metrics::SinkCounters;
use segment::{SegmentMap, list_segments, partition_dir};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use writer::{Options, PartitionWriter, Recovery, Shared, Supply};

/// How far ahead of the writer pages are faulted in.
const AHEAD: usize = 32 << 20;
/// Retired segments in flight to the journal thread, per partition.
const RETIRED: usize = 8;

/// The journal thread's view of one partition.
struct Part {
    dir: PathBuf,
    shared: Arc<Shared>,
    current: Option<Arc<SegmentMap>>,
    /// The last segment pushed to the writer (still queued while the
    /// ring is not empty).
    pending: Option<Arc<SegmentMap>>,
    prepared: rtrb::Producer<Arc<SegmentMap>>,
    activated: rtrb::Consumer<Arc<SegmentMap>>,
    retired: rtrb::Consumer<Arc<SegmentMap>>,
    touched: usize,
    synced: usize,
    prep_count: u64,
    retry_at: u64,
}

/// One journal sink's partitions, as the journal thread keeps them.
pub struct JournalService {
    pub name: String,
    pub dir: PathBuf,
    fsync: Fsync,
    fsync_interval: Duration,
    segment_size: u64,
    max_bytes: Option<u64>,
    max_age: Option<Duration>,
    parts: Vec<Part>,
    /// Held for the life of the appliance: one writer per journal.
    _lock: File,
}

/// Why a journal could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("journal {name:?} at {dir}: {msg}")]
pub struct OpenError {
    pub name: String,
    pub dir: String,
    pub msg: String,
}

/// Opens journal sink `def` for `shards` shards: takes its lock, recovers
/// every partition, and returns the writers (one per shard, for the
/// workers), the journal thread's side and what recovery did.
///
/// # Errors
/// The directory cannot be created or locked, or a partition cannot be
/// opened (exit code 74).
pub fn open(
    def: &SinkDef,
    shards: usize,
) -> Result<(Vec<PartitionWriter>, JournalService, Vec<Recovery>), OpenError> {
    let dir = def
        .path
        .clone()
        .expect("journal sinks have a path (config)");
    let err = |msg: String| OpenError {
        name: def.name.clone(),
        dir: dir.display().to_string(),
        msg,
    };
    std::fs::create_dir_all(&dir).map_err(|e| err(format!("cannot create: {e}")))?;
    let lock = lock(&dir).map_err(err)?;
    let opts = Options {
        segment_size: def.segment_size,
        fsync: def.fsync,
    };
    let mut writers = Vec::new();
    let mut parts = Vec::new();
    let mut recs = Vec::new();
    for k in 0..shards {
        let (ptx, prx) = rtrb::RingBuffer::new(1);
        let (atx, arx) = rtrb::RingBuffer::new(RETIRED);
        let (rtx, rrx) = rtrb::RingBuffer::new(RETIRED);
        let pdir = partition_dir(&dir, k as u32);
        let supply = Supply::Service {
            prepared: prx,
            activated: atx,
            retired: rtx,
        };
        let (w, rec) = PartitionWriter::open(&pdir, k as u32, opts, supply)
            .map_err(|e| err(format!("shard {k}: {e}")))?;
        let (shared, current) = w.shared();
        let pos = shared.pos.load(Ordering::Acquire) as usize;
        if let Some(c) = &current {
            c.populate(pos, AHEAD);
        }
        parts.push(Part {
            dir: pdir,
            shared,
            current,
            pending: None,
            prepared: ptx,
            activated: arx,
            retired: rrx,
            touched: pos + AHEAD,
            synced: pos,
            prep_count: 0,
            retry_at: 0,
        });
        writers.push(w);
        recs.push(rec);
    }
    let svc = JournalService {
        name: def.name.clone(),
        dir,
        fsync: def.fsync,
        fsync_interval: def.fsync_interval,
        segment_size: def.segment_size,
        max_bytes: def.max_bytes,
        max_age: def.max_age,
        parts,
        _lock: lock,
    };
    Ok((writers, svc, recs))
}

/// `flock(LOCK_EX | LOCK_NB)` on `<dir>/LOCK`.
fn lock(dir: &Path) -> Result<File, String> {
    let p = dir.join("LOCK");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
    // SAFETY: a valid descriptor; flock has no memory arguments.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        return Err("in use by another mutstream process (its LOCK is held)".into());
    }
    Ok(f)
}

impl JournalService {
    /// One round of housekeeping; returns whether anything was done.
    fn tick(&mut self, now_mono: u64, c: &SinkCounters, sync_due: bool) -> bool {
        let mut did = false;
        for p in &mut self.parts {
            while let Ok(a) = p.activated.pop() {
                p.current = Some(a);
                p.touched = 0;
                p.synced = 0;
                did = true;
                if self.fsync != Fsync::Never {
                    // The new segment's name, durable.
                    match File::open(&p.dir).and_then(|d| d.sync_all()) {
                        Ok(()) => c.fsyncs.add(1),
                        Err(_) => c.sync_errors.add(1),
                    }
                }
            }
            if p.pending.is_some() && p.prepared.slots() == 1 {
                p.pending = None; // the writer took it
            }
            while let Ok(old) = p.retired.pop() {
                if self.fsync != Fsync::Never {
                    // Everything in it is committed, footer included.
                    if old.sync_all().is_err() {
                        c.sync_errors.add(1);
                    } else {
                        c.fsyncs.add(1);
                    }
                }
                drop(old);
                did = true;
            }
            if p.pending.is_none() && now_mono >= p.retry_at {
                p.prep_count += 1;
                let path = p
                    .dir
                    .join(format!(".prep-{}-s{}", std::process::id(), p.prep_count));
                match SegmentMap::create(&path, self.segment_size) {
                    Ok(m) => {
                        m.populate(0, AHEAD);
                        let m = Arc::new(m);
                        if p.prepared.push(m.clone()).is_ok() {
                            p.pending = Some(m);
                            c.segments_prepared.add(1);
                        }
                        did = true;
                    }
                    Err(e) => {
                        c.prepare_errors.add(1);
                        if c.prepare_errors.get() == 1 || c.prepare_errors.get() % 100 == 0 {
                            tracing::error!(
                                sink = self.name,
                                "cannot reserve the next segment ({e}); the writer applies on_full when it needs it"
                            );
                        }
                        p.retry_at = now_mono + 50_000_000;
                    }
                }
            }
            if let Some(cur) = &p.current {
                let pos = p.shared.pos.load(Ordering::Acquire) as usize;
                if pos + AHEAD / 2 > p.touched && p.touched < cur.len() {
                    let to = (pos + AHEAD).min(cur.len());
                    cur.populate(p.touched, to - p.touched);
                    p.touched = to;
                    did = true;
                }
                if sync_due && pos > p.synced {
                    if cur.sync(p.synced, pos - p.synced).is_err() {
                        c.sync_errors.add(1);
                    } else {
                        c.fsyncs.add(1);
                    }
                    p.synced = pos;
                }
            }
        }
        did
    }

    /// Removes whole segments past `max_bytes` or `max_age`, oldest first,
    /// never a partition's newest.
    fn retain(&mut self, c: &SinkCounters) {
        if self.max_bytes.is_none() && self.max_age.is_none() {
            return;
        }
        let now = crate::sys::now_ns();
        // (created_ns of the next segment, i.e. when this one ended; path; size)
        let mut cands: Vec<(u64, PathBuf, u64)> = Vec::new();
        let mut total = 0u64;
        for p in &self.parts {
            let Ok(segs) = list_segments(&p.dir) else {
                continue;
            };
            let sizes: Vec<u64> = segs
                .iter()
                .map(|(_, path)| std::fs::metadata(path).map_or(0, |m| m.len()))
                .collect();
            total += sizes.iter().sum::<u64>();
            for i in 0..segs.len().saturating_sub(1) {
                let ended = segment::read_header(&segs[i + 1].1).map_or(now, |h| h.created_ns);
                cands.push((ended, segs[i].1.clone(), sizes[i]));
            }
        }
        cands.sort_unstable_by_key(|c| c.0);
        for (ended, path, size) in cands {
            let too_old = self
                .max_age
                .is_some_and(|a| now.saturating_sub(ended) > a.as_nanos() as u64);
            let too_big = self.max_bytes.is_some_and(|m| total > m);
            if !too_old && !too_big {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= size;
                c.segments_removed.add(1);
            }
        }
    }

    /// At shutdown: sync what was written, remove unused prepared files.
    fn finish(&mut self, c: &SinkCounters) {
        for p in &mut self.parts {
            while let Ok(old) = p.retired.pop() {
                if self.fsync != Fsync::Never && old.sync_all().is_err() {
                    c.sync_errors.add(1);
                }
            }
            while let Ok(a) = p.activated.pop() {
                p.current = Some(a);
            }
            if let Some(pend) = p.pending.take()
                && p.prepared.slots() == 0
            {
                // Never taken: not part of the journal.
                let _ = std::fs::remove_file(&pend.path);
            }
            if let Some(cur) = &p.current
                && self.fsync != Fsync::Never
            {
                let pos = p.shared.pos.load(Ordering::Acquire) as usize;
                if cur.sync(0, pos).is_err() {
                    c.sync_errors.add(1);
                }
            }
        }
    }
}

/// The journal thread: runs until every worker is done, then syncs.
pub fn run_service(
    mut journals: Vec<(JournalService, usize)>,
    metrics: &crate::metrics::Metrics,
    life: &crate::sink::Lifecycle,
) {
    crate::sys::block_control_signals();
    let mut last_sync = crate::sys::mono_ns();
    let mut last_retain = 0u64;
    let interval = journals
        .iter()
        .filter(|(j, _)| j.fsync == Fsync::Interval)
        .map(|(j, _)| j.fsync_interval.as_nanos() as u64)
        .min();
    loop {
        let done = life.workers_done.load(Ordering::Acquire);
        let now = crate::sys::mono_ns();
        let sync_due = interval.is_some_and(|i| now - last_sync >= i);
        if sync_due {
            last_sync = now;
        }
        let mut did = false;
        for (j, si) in &mut journals {
            let c = &metrics.sinks[*si];
            let due = sync_due && j.fsync == Fsync::Interval;
            did |= j.tick(now, c, due);
            if now - last_retain >= 1_000_000_000 {
                j.retain(c);
            }
        }
        if now - last_retain >= 1_000_000_000 {
            last_retain = now;
        }
        if done {
            break;
        }
        if !did {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    for (j, si) in &mut journals {
        j.finish(&metrics.sinks[*si]);
    }
}

#[cfg(test)]
mod tests;

/// The `journal_scan` fuzz target: a segment image from arbitrary bytes
/// goes through the scan, recovery (on a real file), appends after it and
/// a reader, which decodes every value of every row it accepts. None may
/// panic.
///
/// The first byte picks the image: the bytes as they are (mode 0), a valid
/// header then the bytes (1), or frames built from the bytes with correct
/// lengths and checksums (2: each chunk is `len u8 | kind u8 | payload`),
/// so that what only a valid CRC reaches — schema decoding, row checks —
/// is fuzzed too.
pub fn fuzz_one(data: &[u8]) {
    use format::{FRAME_HEADER, FrameHeader, SEGMENT_HEADER, SegmentHeader, crc32c, frame_len};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let header = SegmentHeader {
        shard: 0,
        first_seq: 0,
        segment_size: 1 << 20,
        created_ns: 1,
    }
    .encode();
    let mut img = Vec::new();
    match mode % 3 {
        0 => img.extend_from_slice(rest),
        1 => {
            img.extend_from_slice(&header);
            img.extend_from_slice(rest);
        }
        _ => {
            img.extend_from_slice(&header);
            let mut seq = 0u64;
            let mut r = rest;
            while r.len() >= 2 {
                let (n, kind) = (r[0] as usize, r[1]);
                let take = n.min(r.len() - 2);
                let payload = &r[2..2 + take];
                r = &r[2 + take..];
                let count = if kind % 4 == 1 { 1 + (n as u32 % 4) } else { 0 };
                let h = FrameHeader {
                    kind: kind % 4,
                    schema_id: 1,
                    base_seq: seq,
                    count,
                    payload_len: payload.len() as u32,
                    ..FrameHeader::default()
                };
                let at = img.len();
                img.resize(at + frame_len(payload.len()), 0);
                h.encode_tail(&mut img[at..]);
                img[at + FRAME_HEADER..at + FRAME_HEADER + payload.len()].copy_from_slice(payload);
                let crc = crc32c(&img[at + 8..at + FRAME_HEADER + payload.len()]);
                img[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
                let len = frame_len(payload.len()) as u32;
                img[at..at + 4].copy_from_slice(&len.to_le_bytes());
                seq += count as u64;
            }
        }
    }
    let _ = format::scan(&img);
    // Recovery and a reader on a real file, padded to a writable size.
    img.resize(img.len().max(SEGMENT_HEADER + 4096), 0);
    let dir = std::env::temp_dir().join(format!("mutstream-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::create_dir_all(&dir).is_err()
        || std::fs::write(dir.join(segment::segment_name(0)), &img).is_err()
    {
        return;
    }
    let opts = writer::Options {
        segment_size: 1 << 20,
        fsync: Fsync::Never,
    };
    if let Ok((mut w, _)) = PartitionWriter::open(&dir, 0, opts, Supply::Inline) {
        // Appending after recovery: rolls out of a segment of any length.
        let schema = std::sync::Arc::new(crate::pipeline::program::OutSchema {
            fields: vec![("s".into(), crate::codec::FieldType::Str)],
        });
        let text = vec![b'x'; 1500];
        let mut rows = Vec::new();
        crate::sink::row::encode_values(&[crate::sink::row::RowValue::Text(&text)], &mut rows);
        for _ in 0..4 {
            let _ = w.append(&schema, 1, 0, 0, &rows, 1);
        }
    }
    if let Ok(mut t) = tailer::Tailer::open(&dir, tailer::StartAt::Oldest) {
        while let Some(f) = t.next_frame() {
            for r in crate::sink::row::RowIter::new(f.rows, f.schema) {
                for (k, (_, ty)) in f.schema.fields.iter().enumerate() {
                    std::hint::black_box(r.get(k, *ty));
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loom model of the commit and roll protocol readers rely on
/// (`docs/JOURNAL.md`): payload before a release store of the commit word;
/// at a roll, the new segment named before the old one's footer; a reader
/// at a zero word that sees the new segment loads the word again before it
/// moves on. The model mirrors `writer.rs` and `tailer.rs` on loom's
/// atomics and cells, since the real code works on mapped memory.
#[cfg(all(test, loom))]
mod loom_model {
    use crate::sync::{Arc, AtomicBool, AtomicU32, Ordering, UnsafeCell};

    /// Frame slots of one segment: a commit word (0 empty, 1 data, 2
    /// footer) and a payload each.
    struct Seg {
        commit: [AtomicU32; 3],
        payload: [UnsafeCell<u64>; 3],
    }

    impl Seg {
        fn new() -> Seg {
            Seg {
                commit: [AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0)],
                payload: [UnsafeCell::new(0), UnsafeCell::new(0), UnsafeCell::new(0)],
            }
        }

        fn write(&self, slot: usize, v: u64, kind: u32) {
            // SAFETY: the writer alone touches an uncommitted slot.
            self.payload[slot].with_mut(|p| unsafe { *p = v });
            self.commit[slot].store(kind, Ordering::Release);
        }

        fn read(&self, slot: usize) -> u64 {
            // SAFETY: read only after acquiring a nonzero commit word; the
            // writer never writes a committed slot again.
            self.payload[slot].with(|p| unsafe { *p })
        }
    }

    struct Journal {
        a: Seg,
        b: Seg,
        /// The new segment's name is visible (the rename).
        b_named: AtomicBool,
    }

    #[test]
    fn loom_a_tailer_never_skips_a_frame_across_a_roll() {
        loom::model(|| {
            let j = Arc::new(Journal {
                a: Seg::new(),
                b: Seg::new(),
                b_named: AtomicBool::new(false),
            });
            j.a.write(0, 10, 1);
            let w = j.clone();
            let writer = loom::thread::spawn(move || {
                w.a.write(1, 11, 1); // the last frame of A
                w.b.write(0, 100, 1); // the first of B (header and frame)
                w.b_named.store(true, Ordering::Release); // rename
                w.a.write(2, 0, 2); // A's footer
            });
            let mut seen = Vec::new();
            let (mut in_b, mut pos) = (false, 0usize);
            while seen.last() != Some(&100) {
                let seg = if in_b { &j.b } else { &j.a };
                match seg.commit[pos].load(Ordering::Acquire) {
                    0 => {
                        if !in_b && j.b_named.load(Ordering::Acquire) {
                            // Frames committed while we looked: read them.
                            if seg.commit[pos].load(Ordering::Acquire) != 0 {
                                continue;
                            }
                            (in_b, pos) = (true, 0);
                            continue;
                        }
                        loom::thread::yield_now();
                    }
                    2 => (in_b, pos) = (true, 0),
                    _ => {
                        seen.push(seg.read(pos));
                        pos += 1;
                    }
                }
            }
            assert_eq!(seen, [10, 11, 100], "a frame skipped or read twice");
            writer.join().unwrap();
        });
    }
}
