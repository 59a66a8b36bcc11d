//! The partition writer: appends batch frames into the mapped segment on
//! the shard's own thread, rolls to the next segment, and recovers a
//! partition when it opens.

use super::format::{
    self, FRAME_HEADER, FrameHeader, KIND_DATA, KIND_FOOTER, KIND_SCHEMA, SEGMENT_HEADER,
    SegmentHeader, frame_len,
};
use super::segment::{SegmentMap, list_segments, segment_name};
use crate::config::Fsync;
use crate::pipeline::program::OutSchema;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// How a partition is written.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub segment_size: u64,
    pub fsync: Fsync,
}

/// What the writer and the journal thread share about one partition.
#[derive(Debug, Default)]
pub struct Shared {
    /// The committed end of the current segment (release-stored after
    /// every frame).
    pub pos: AtomicU64,
}

/// Where the next segment comes from.
pub enum Supply {
    /// Created on the writer's thread when it rolls (tests, benches,
    /// tools: nothing else to hand the work to).
    Inline,
    /// Prepared ahead by the journal thread (created here if it has none
    /// ready, so a lagging thread never costs records); the new current
    /// segment is announced to it, retired ones go back to it to be
    /// synced and unmapped off the hot path.
    Service {
        prepared: rtrb::Consumer<Arc<SegmentMap>>,
        activated: rtrb::Producer<Arc<SegmentMap>>,
        retired: rtrb::Producer<Arc<SegmentMap>>,
    },
}

/// What opening a partition found and did, for the log.
#[derive(Debug, Default)]
pub struct Recovery {
    pub segments: usize,
    /// Frames kept in the segment the writer continues or seals.
    pub frames_kept: usize,
    pub next_seq: u64,
    /// Bytes zeroed past the last valid frame (a torn or abandoned tail).
    pub cut_bytes: u64,
    /// A corrupt frame: segment, offset, why.
    pub corrupt: Option<(PathBuf, usize, &'static str)>,
    /// Segments that could not be used, and where they were moved.
    pub renamed_aside: Vec<(PathBuf, PathBuf, String)>,
    pub elapsed_ns: u64,
}

/// The writer is out of segments (disk full or the journal thread behind):
/// `done` rows (`done_bytes` bytes) of the call were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoSpace {
    pub done: u32,
    pub done_bytes: usize,
}

/// Counters a writer keeps (single writer; the port publishes them).
#[derive(Debug, Default, Clone, Copy)]
pub struct WriterStats {
    pub frames: u64,
    pub bytes: u64,
    pub rolls: u64,
    /// Rows larger than a whole segment, dropped.
    pub too_large: u64,
    pub sync_errors: u64,
}

/// Appends to one partition (one shard of one journal sink).
pub struct PartitionWriter {
    dir: PathBuf,
    shard: u32,
    opts: Options,
    cur: Option<Arc<SegmentMap>>,
    pos: usize,
    next_seq: u64,
    schemas: Vec<(Arc<OutSchema>, u32)>,
    /// Each schema id's schema frame payload (id `k` at `k - 1`), encoded
    /// once when the id is assigned.
    payloads: Vec<Vec<u8>>,
    /// Schema ids with a schema frame in the current segment.
    written: Vec<u32>,

    shared: Arc<Shared>,
    supply: Supply,
    /// A prepared segment kept after a failed rename.
    spare: Option<Arc<SegmentMap>>,
    prep_count: u64,
    pub stats: WriterStats,
}

/// Room kept in every segment for its footer.
const FOOTER: usize = frame_len(0);

impl PartitionWriter {
    /// Opens (creating if needed) the partition directory `dir`, recovers
    /// its last segment and positions the writer after its last valid
    /// frame, or at a new segment if it was sealed or unusable.
    ///
    /// # Errors
    /// The directory cannot be created or listed, or a first segment
    /// cannot be created (the caller reports it; exit code 74).
    pub fn open(
        dir: &Path,
        shard: u32,
        opts: Options,
        supply: Supply,
    ) -> io::Result<(PartitionWriter, Recovery)> {
        let t0 = crate::sys::mono_ns();
        std::fs::create_dir_all(dir)?;
        remove_stale_preps(dir);
        let mut rec = Recovery::default();
        let mut w = PartitionWriter {
            dir: dir.to_path_buf(),
            shard,
            opts,
            cur: None,
            pos: 0,
            next_seq: 0,
            schemas: Vec::new(),
            written: Vec::new(),
            payloads: Vec::new(),

            shared: Arc::new(Shared::default()),
            supply,
            spare: None,
            prep_count: 0,
            stats: WriterStats::default(),
        };
        let mut segs = list_segments(dir)?;
        rec.segments = segs.len();
        let mut sealed = true;
        while let Some((first, path)) = segs.pop() {
            // A segment is only a continuation if the one before it holds
            // every record up to its first: after a power loss the newer
            // file may have reached the disk while the older one's tail
            // did not. Then the newer one goes aside, so what remains is
            // always a prefix of what was written.
            if let Some((_, prev)) = segs.last()
                && let Some(end) = scanned_end(prev)
                && end != first
            {
                let aside = path.with_extension(format!("seg.unusable-{}", crate::sys::now_ns()));
                std::fs::rename(&path, &aside)?;
                let why = format!(
                    "follows {} whose valid frames end at sequence {end}, before this segment's first ({first})",
                    prev.display()
                );
                rec.renamed_aside.push((path, aside, why));
                continue;
            }
            match recover_segment(&path, shard, &mut rec) {
                Ok((map, scan)) => {
                    w.next_seq = scan.next_seq;
                    rec.frames_kept = scan.frames.len();
                    // A segment cut short (truncated by something else)
                    // may lack room for the footer: start a new one.
                    sealed = scan.sealed || map.len() - scan.end < 2 * FOOTER;
                    if !sealed {
                        w.pos = scan.end;
                        w.cur = Some(Arc::new(map));
                    }
                    break;
                }
                Err(why) => {
                    let aside =
                        path.with_extension(format!("seg.unusable-{}", crate::sys::now_ns()));
                    std::fs::rename(&path, &aside)?;
                    rec.renamed_aside.push((path, aside, why));
                    // Continue the sequence where this segment began.
                    w.next_seq = first;
                }
            }
        }
        if sealed || w.cur.is_none() {
            // A new segment now, at startup, so the first batch finds one.
            let map = w.create_segment()?;
            w.activate(Arc::new(map))?;
        }
        w.shared.pos.store(w.pos as u64, Ordering::Release);
        rec.next_seq = w.next_seq;
        rec.elapsed_ns = crate::sys::mono_ns() - t0;
        Ok((w, rec))
    }

    /// What the journal thread needs: the shared positions and the current
    /// segment.
    pub fn shared(&self) -> (Arc<Shared>, Option<Arc<SegmentMap>>) {
        (self.shared.clone(), self.cur.clone())
    }

    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `count` encoded rows (`rows`, the row format of
    /// [`crate::sink::row`]) of `schema` as one data frame, or several if
    /// they do not fit the current segment: one copy into the map, a CRC,
    /// one release store. No syscall unless the segment rolls (a rename)
    /// or `fsync = "every_batch"` (an msync).
    ///
    /// # Errors
    /// No segment to roll to; `done` rows were written.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &mut self,
        schema: &Arc<OutSchema>,
        generation: u64,
        ingest_ns: u64,
        commit_ns: u64,
        rows: &[u8],
        count: u32,
    ) -> Result<(), NoSpace> {
        let sid = self.schema_id(schema);
        let mut done = 0u32;
        let mut at = 0usize;
        while done < count {
            let rest = &rows[at..];
            let left = count - done;
            let schema_need = if self.written.contains(&sid) {
                0
            } else {
                self.schema_frame_len(sid)
            };
            let room = self
                .room()
                .saturating_sub(schema_need + FRAME_HEADER + FOOTER);
            // The common case: everything fits.
            let (n, bytes) = if frame_len(rest.len()) - FRAME_HEADER <= room {
                (left, rest.len())
            } else {
                fitting_rows(rest, left, room)
            };
            if n == 0 {
                let l = row_len(rest);
                let empty_room = (self.opts.segment_size as usize).saturating_sub(
                    SEGMENT_HEADER + self.schema_frame_len(sid) + FRAME_HEADER + FOOTER,
                );
                if frame_len(l) - FRAME_HEADER > empty_room {
                    // Not even an empty segment holds this row: drop it.
                    self.stats.too_large += 1;
                    done += 1;
                    at += l;
                    continue;
                }
                if self.roll().is_err() {
                    return Err(NoSpace {
                        done,
                        done_bytes: at,
                    });
                }
                continue;
            }
            if schema_need > 0 {
                self.write_schema(sid);
            }
            let h = FrameHeader {
                kind: KIND_DATA,
                schema_id: sid,
                generation,
                base_seq: self.next_seq,
                count: n,
                payload_len: bytes as u32,
                ingest_ns,
                commit_ns,
            };
            self.write_frame(h, &rest[..bytes]);
            self.next_seq += n as u64;
            done += n;
            at += bytes;
        }
        Ok(())
    }

    /// `msync` of everything committed in the current segment.
    ///
    /// # Errors
    /// The kernel's error.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(c) = &self.cur {
            c.sync(0, self.pos)?;
        }
        Ok(())
    }

    fn room(&self) -> usize {
        match &self.cur {
            Some(c) => c.len().saturating_sub(self.pos),
            None => 0,
        }
    }

    /// The id of `s`'s content. One entry per distinct content, however
    /// many generations compiled it: a pipeline change that keeps a
    /// sink's fields keeps its id, allocates nothing here and keeps no
    /// reference to the old generation's schema.
    fn schema_id(&mut self, s: &Arc<OutSchema>) -> u32 {
        if let Some(&(_, id)) = self
            .schemas
            .iter()
            .find(|(x, _)| Arc::ptr_eq(x, s) || **x == **s)
        {
            return id;
        }
        let mut payload = Vec::new();
        format::encode_schema(s, &mut payload);
        self.payloads.push(payload);
        let id = self.payloads.len() as u32;
        self.schemas.push((s.clone(), id));
        id
    }

    fn schema_frame_len(&self, sid: u32) -> usize {
        frame_len(self.payloads[sid as usize - 1].len())
    }

    fn write_schema(&mut self, sid: u32) {
        let buf = std::mem::take(&mut self.payloads[sid as usize - 1]);
        let h = FrameHeader {
            kind: KIND_SCHEMA,
            schema_id: sid,
            base_seq: self.next_seq,
            payload_len: buf.len() as u32,
            commit_ns: crate::sys::now_ns(),
            ..FrameHeader::default()
        };
        self.write_frame(h, &buf);
        self.payloads[sid as usize - 1] = buf;
        self.written.push(sid);
    }

    /// Writes one frame at `pos` and commits it.
    fn write_frame(&mut self, h: FrameHeader, payload: &[u8]) {
        let cur = self.cur.as_ref().expect("a segment to write");
        let len = frame_len(payload.len());
        // Callers keep this (room() and the footer reserve); a frame past
        // the mapping would be memory corruption, so it is checked always.
        assert!(self.pos + len <= cur.len(), "frame past the segment end");
        let mut head = [0u8; FRAME_HEADER];
        h.encode_tail(&mut head);
        let base = cur.ptr().wrapping_add(self.pos);
        // SAFETY: `[pos + 4, pos + len)` lies inside the mapping (callers
        // check `room()`), is written by this writer alone (one writer per
        // partition, enforced by the journal lock) and is not read by
        // anyone yet: readers touch a frame's bytes only after acquiring a
        // nonzero commit word at `pos`, stored last, below. The commit word
        // itself (`[pos, pos + 4)`) is outside this slice.
        let body = unsafe { std::slice::from_raw_parts_mut(base.wrapping_add(4), len - 4) };
        body[4..FRAME_HEADER - 4].copy_from_slice(&head[8..]);
        body[FRAME_HEADER - 4..FRAME_HEADER - 4 + payload.len()].copy_from_slice(payload);
        // Padding and the next commit word are already zero: segments are
        // created zeroed and recovery zeroes any tail.
        let crc = format::crc32c(&body[4..FRAME_HEADER - 4 + payload.len()]);
        body[..4].copy_from_slice(&crc.to_le_bytes());
        // SAFETY: `pos` is 8-aligned in a page-aligned mapping, so the
        // commit word is an aligned `u32` that lives as long as the map;
        // readers only load it.
        let commit = unsafe { AtomicU32::from_ptr(base.cast::<u32>()) };
        commit.store(len as u32, Ordering::Release);
        let start = self.pos;
        self.pos += len;
        self.shared.pos.store(self.pos as u64, Ordering::Release);
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        if self.opts.fsync == Fsync::EveryBatch && cur.sync(start, len).is_err() {
            self.stats.sync_errors += 1;
        }
    }

    /// Moves to the next segment: it gets its header and its name, then
    /// the current one gets its footer.
    fn roll(&mut self) -> Result<(), ()> {
        let next = match self.spare.take() {
            Some(s) => s,
            None => match &mut self.supply {
                Supply::Inline => match self.create_segment() {
                    Ok(m) => {
                        m.populate(0, m.len());
                        Arc::new(m)
                    }
                    Err(_) => return Err(()),
                },
                Supply::Service { prepared, .. } => match prepared.pop() {
                    Ok(m) => m,
                    // None ready: a full disk, or the journal thread is
                    // behind. Try here; only a full disk fails.
                    Err(_) => Arc::new(self.create_segment().map_err(|_| ())?),
                },
            },
        };
        let old = self.cur.take();
        let old_pos = self.pos;
        if let Err(e) = self.activate(next.clone()) {
            tracing::error!(dir = %self.dir.display(), "cannot name the next segment: {e}");
            self.cur = old;
            self.pos = old_pos;
            self.spare = Some(next);
            return Err(());
        }
        let new_pos = self.pos;
        if let Some(old) = old {
            // The footer: its base_seq is the new segment's first. (A
            // segment cut short by something else may have no room for
            // one; readers then move on by the new segment's name.)
            if old.len() - old_pos >= FOOTER {
                self.cur = Some(old.clone());
                self.pos = old_pos;
                let h = FrameHeader {
                    kind: KIND_FOOTER,
                    base_seq: self.next_seq,
                    commit_ns: crate::sys::now_ns(),
                    ..FrameHeader::default()
                };
                self.write_frame(h, &[]);
                self.cur = Some(next.clone());
                self.pos = new_pos;
            }
            match &mut self.supply {
                Supply::Inline => {
                    let end = (old_pos + FOOTER).min(old.len());
                    if self.opts.fsync != Fsync::Never && old.sync(0, end).is_err() {
                        self.stats.sync_errors += 1;
                    }
                }
                Supply::Service { retired, .. } => {
                    // The journal thread syncs and unmaps it; if its ring
                    // is full, dropping here unmaps on this thread.
                    let _ = retired.push(old);
                }
            }
        }
        if let Supply::Service { activated, .. } = &mut self.supply {
            let _ = activated.push(next);
        }
        self.shared.pos.store(self.pos as u64, Ordering::Release);

        self.stats.rolls += 1;
        Ok(())
    }

    /// Makes `map` the current segment at `next_seq`: header, then name.
    fn activate(&mut self, map: Arc<SegmentMap>) -> io::Result<()> {
        let h = SegmentHeader {
            shard: self.shard,
            first_seq: self.next_seq,
            segment_size: map.len() as u64,
            created_ns: crate::sys::now_ns(),
        }
        .encode();
        // SAFETY: a fresh segment, not yet named, so no reader can map it;
        // this writer is its only user; 64 bytes fit any segment (≥ 1 MiB).
        unsafe { std::ptr::copy_nonoverlapping(h.as_ptr(), map.ptr(), SEGMENT_HEADER) };
        let to = self.dir.join(segment_name(self.next_seq));
        if to.exists() {
            // A segment that began at this sequence and was left empty
            // (a crash right after a roll): the fresh one replaces it.
            let aside = to.with_extension(format!("seg.replaced-{}", crate::sys::now_ns()));
            std::fs::rename(&to, aside)?;
        }
        std::fs::rename(&map.path, &to)?;
        if self.opts.fsync == Fsync::EveryBatch {
            // The new name must survive a power loss before any frame in
            // it counts as committed. (`interval`: the journal thread
            // syncs the directory when it learns of the roll.)
            std::fs::File::open(&self.dir).and_then(|d| d.sync_all())?;
        }
        self.cur = Some(map);
        self.pos = SEGMENT_HEADER;
        self.written.clear();
        Ok(())
    }

    fn create_segment(&mut self) -> io::Result<SegmentMap> {
        self.prep_count += 1;
        let p = self
            .dir
            .join(format!(".prep-{}-{}", std::process::id(), self.prep_count));
        SegmentMap::create(&p, self.opts.segment_size)
    }
}

/// Rows from the start of `rows` (of `left`) whose bytes fit in `room`.
fn fitting_rows(rows: &[u8], left: u32, room: usize) -> (u32, usize) {
    let mut at = 0usize;
    let mut n = 0u32;
    while n < left {
        let l = row_len(&rows[at..]);
        if frame_len(at + l) - FRAME_HEADER > room {
            break;
        }
        at += l;
        n += 1;
    }
    (n, at)
}

fn row_len(rows: &[u8]) -> usize {
    u32::from_le_bytes(rows[..4].try_into().expect("a row's length")) as usize
}

fn remove_stale_preps(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name().to_string_lossy().starts_with(".prep-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The sequence after the valid frames of segment `path` (read only), or
/// `None` if its header is unusable.
fn scanned_end(path: &Path) -> Option<u64> {
    let f = std::fs::File::open(path).ok()?;
    // SAFETY: read-only map of a segment no writer has open (recovery runs
    // before the partition's writer exists); never truncated in place.
    let m = unsafe { memmap2::Mmap::map(&f) }.ok()?;
    format::scan(&m).ok().map(|(_, s)| s.next_seq)
}

/// Maps and scans a segment, zeroing a torn tail. `Err` means the segment
/// cannot be used (its header is bad or it cannot be mapped).
fn recover_segment(
    path: &Path,
    shard: u32,
    rec: &mut Recovery,
) -> Result<(SegmentMap, format::Scan), String> {
    let map = SegmentMap::open(path).map_err(|e| format!("cannot map: {e}"))?;
    if map.len() < SEGMENT_HEADER + FOOTER {
        return Err(format!("{} bytes, shorter than a segment", map.len()));
    }
    // SAFETY: recovery runs before this partition's writer exists and the
    // journal lock keeps other appliances out; readers never write.
    let bytes = unsafe { map.bytes() };
    let (h, scan) = format::scan(bytes).map_err(|e| e.to_string())?;
    if h.shard != shard {
        return Err(format!("belongs to shard {}", h.shard));
    }
    if let Some((off, why)) = scan.corrupt {
        rec.corrupt = Some((path.to_path_buf(), off, why));
    }
    if scan.dirty_tail {
        rec.cut_bytes = zero_tail(&map, scan.end) as u64;
    }
    Ok((map, scan))
}

/// Zeroes every nonzero 4 KiB block from `from` to the end (the file size
/// never changes); returns how many bytes were rewritten.
fn zero_tail(map: &SegmentMap, from: usize) -> usize {
    let len = map.len();
    let mut zeroed = 0;
    let mut at = from;
    while at < len {
        let end = ((at / 4096) + 1) * 4096;
        let end = end.min(len);
        // SAFETY: `[at, end)` is inside the mapping; recovery is the only
        // writer (see `recover_segment`); nothing is committed past `from`.
        let s = unsafe { std::slice::from_raw_parts_mut(map.ptr().wrapping_add(at), end - at) };
        if s.iter().any(|&b| b != 0) {
            s.fill(0);
            zeroed += end - at;
        }
        at = end;
    }
    if zeroed > 0 {
        let _ = map.sync(from, len - from);
    }
    zeroed
}
