//! Readers: follow one partition from its start, a sequence or a time,
//! without locks, in this process or another. A reader maps segments read
//! only and never writes anything the writer reads, so it cannot slow it.

use super::format::{
    self, FRAME_HEADER, FrameError, FrameHeader, KIND_DATA, KIND_FOOTER, KIND_SCHEMA,
    SEGMENT_HEADER, SegmentHeader,
};
use super::segment::{list_segments, read_header};
use crate::pipeline::program::OutSchema;
use memmap2::Mmap;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

/// Where a tailer starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record kept.
    Oldest,
    /// The record with this sequence (or the oldest after it).
    Seq(u64),
    /// The first record committed at or after this time (ns since epoch).
    Time(u64),
}

/// Something a reader should report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Records `[from, to)` are gone (retention, or a segment set aside).
    Gap { from: u64, to: u64 },
    /// A frame that fails its checks; the reader moves to the next segment.
    Corrupt {
        segment: PathBuf,
        offset: usize,
        why: &'static str,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Gap { from, to } => write!(
                f,
                "records {from}..{to} are no longer in the journal; resuming at {to}"
            ),
            Event::Corrupt {
                segment,
                offset,
                why,
            } => write!(
                f,
                "corrupt frame in {} at offset {offset}: {why}; skipping to the next segment",
                segment.display()
            ),
        }
    }
}

/// A data frame: its header, the schema of its rows and the rows.
pub struct Frame<'a> {
    pub header: FrameHeader,
    pub schema: &'a Arc<OutSchema>,
    pub rows: &'a [u8],
    /// Rows at the start to skip (before the requested start).
    pub skip: u32,
}

struct Seg {
    /// `None` for a segment whose header is unusable (the tailer is stuck
    /// on it until a later one appears).
    map: Option<Mmap>,
    path: PathBuf,
    first_seq: u64,
}

/// Follows one partition directory.
pub struct Tailer {
    dir: PathBuf,
    seg: Option<Seg>,
    pos: usize,
    next_seq: u64,
    start: StartAt,
    /// Schemas by id, from the schema frames of the current segment.
    schemas: HashMap<u32, Arc<OutSchema>>,
    /// The current segment cannot be read further (corrupt or unusable).
    stuck: bool,
    /// When the directory was last listed for a successor (mono ns).
    listed_ns: u64,
    events: Vec<Event>,
}

impl Tailer {
    /// A tailer of partition directory `dir`.
    ///
    /// # Errors
    /// The directory cannot be listed.
    pub fn open(dir: &Path, start: StartAt) -> io::Result<Tailer> {
        let mut t = Tailer {
            dir: dir.to_path_buf(),
            seg: None,
            pos: 0,
            next_seq: 0,
            start,
            schemas: HashMap::new(),
            stuck: false,
            listed_ns: 0,
            events: Vec::new(),
        };
        t.first_segment()?;
        Ok(t)
    }

    /// The sequence of the next record.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Gaps and corrupt frames met since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    fn first_segment(&mut self) -> io::Result<()> {
        let segs = list_segments(&self.dir)?;
        let pick = match self.start {
            StartAt::Oldest => segs.first(),
            StartAt::Seq(s) => segs.iter().rev().find(|(f, _)| *f <= s).or(segs.first()),
            StartAt::Time(t) => {
                // The last segment created at or before t.
                let mut best = segs.first();
                for s in &segs {
                    if let Some(h) = read_header(&s.1)
                        && h.created_ns <= t
                    {
                        best = Some(s);
                    }
                }
                best
            }
        };
        if let Some((first, path)) = pick.cloned() {
            if let StartAt::Seq(s) = self.start
                && first > s
            {
                self.events.push(Event::Gap { from: s, to: first });
            }
            self.enter(first, path);
        }
        Ok(())
    }

    /// Maps segment `path` and positions at its first frame.
    fn enter(&mut self, first: u64, path: PathBuf) {
        self.schemas.clear();
        self.next_seq = first;
        self.stuck = false;
        self.pos = SEGMENT_HEADER;
        let m = std::fs::File::open(&path).and_then(|f| {
            // SAFETY: segments are never truncated or shrunk in place
            // (SPEC §6); the writer only appends past committed frames,
            // which this reader does not read until their commit word is
            // set (acquire); every access is bounds-checked against len.
            unsafe { Mmap::map(&f) }
        });
        match m {
            Ok(map) if SegmentHeader::decode(&map).is_ok() => {
                self.seg = Some(Seg {
                    map: Some(map),
                    path,
                    first_seq: first,
                });
            }
            Ok(_) | Err(_) => {
                self.events.push(Event::Corrupt {
                    segment: path.clone(),
                    offset: 0,
                    why: "segment header unusable",
                });
                self.seg = Some(Seg {
                    map: None,
                    path,
                    first_seq: first,
                });
                self.stuck = true;
            }
        }
    }

    /// Moves to the segment after the current one, if it exists: the one
    /// starting at `next_seq`, or the oldest later one (a gap).
    fn advance(&mut self) -> bool {
        let Ok(segs) = list_segments(&self.dir) else {
            return false;
        };
        let cur_first = self.seg.as_ref().map(|s| s.first_seq);
        let cand = segs
            .iter()
            .find(|(f, _)| *f >= self.next_seq && Some(*f) != cur_first)
            .cloned();
        match cand {
            Some((f, path)) => {
                if f > self.next_seq {
                    self.events.push(Event::Gap {
                        from: self.next_seq,
                        to: f,
                    });
                }
                self.enter(f, path);
                true
            }
            None => false,
        }
    }

    /// The next data frame, or `None` when there is nothing more yet.
    pub fn next_frame(&mut self) -> Option<Frame<'_>> {
        let mut checked_successor = false;
        loop {
            if self.seg.is_none() {
                self.first_segment().ok()?;
                self.seg.as_ref()?;
            }
            if self.stuck {
                if !self.advance() {
                    return None;
                }
                continue;
            }
            let seg = self.seg.as_ref().expect("checked");
            let map = seg.map.as_ref().expect("only a stuck tailer has no map");
            let len_total = map.len();
            if self.pos + FRAME_HEADER > len_total {
                self.stuck = true;
                continue;
            }
            let at_ptr = map.as_ptr().wrapping_add(self.pos);
            // SAFETY: `pos` is 8-aligned inside the mapping (frames are
            // multiples of 8 from the 64-byte header) and the mapping
            // outlives the reference; it is only loaded from, never
            // written through.
            let commit = unsafe { AtomicU32::from_ptr(at_ptr.cast::<u32>().cast_mut()) };
            let word = commit.load(Ordering::Acquire);
            if word == 0 {
                // Nothing committed here yet. If the writer moved to a new
                // segment without a footer here (a roll in progress, or a
                // restart), or retention cut us off, move on; look at most
                // once a millisecond.
                let now = crate::sys::mono_ns();
                if !checked_successor && now - self.listed_ns >= 1_000_000 {
                    checked_successor = true;
                    self.listed_ns = now;
                    if self.successor_exists() {
                        // The writer names a new segment only once it has
                        // committed its last frame here; frames committed
                        // while we listed must still be read. So look
                        // again, now that the new segment is known to exist.
                        if commit.load(Ordering::Acquire) != 0 {
                            continue;
                        }
                        if self.advance() {
                            continue;
                        }
                    }
                }
                return None;
            }
            let len = word as usize;
            let avail = len_total - self.pos;
            let flen = len.min(avail);
            // SAFETY: `[pos, pos + flen)` is inside the mapping and was
            // published by the writer's release store of `word`, acquired
            // above; the writer never writes it again.
            let b = unsafe { std::slice::from_raw_parts(at_ptr, flen) };
            let checked = if len > avail {
                Err(FrameError::Corrupt("length past the segment end"))
            } else {
                format::check_frame(b, word)
            };
            let (h, payload) = match checked {
                Ok(x) => x,
                Err(FrameError::Empty) => unreachable!("word is nonzero"),
                Err(FrameError::Corrupt(why)) => {
                    let e = Event::Corrupt {
                        segment: seg.path.clone(),
                        offset: self.pos,
                        why,
                    };
                    self.events.push(e);
                    self.stuck = true;
                    continue;
                }
            };
            if h.base_seq != self.next_seq {
                let e = Event::Corrupt {
                    segment: seg.path.clone(),
                    offset: self.pos,
                    why: "sequence does not follow",
                };
                self.events.push(e);
                self.stuck = true;
                continue;
            }
            let at = self.pos;
            match h.kind {
                KIND_SCHEMA => {
                    self.pos += len;
                    match format::decode_schema(payload) {
                        Ok(s) => {
                            self.schemas.insert(h.schema_id, Arc::new(s));
                        }
                        Err(_) => {
                            self.events.push(Event::Corrupt {
                                segment: seg.path.clone(),
                                offset: at,
                                why: "schema frame does not decode",
                            });
                            self.stuck = true;
                        }
                    }
                    continue;
                }
                KIND_FOOTER => {
                    self.next_seq = h.base_seq;
                    self.pos += len;
                    self.stuck = true;
                    continue;
                }
                KIND_DATA => {}
                _ => unreachable!("check_frame accepts known kinds only"),
            }
            let schema_ok = self
                .schemas
                .get(&h.schema_id)
                .is_some_and(|s| format::rows_valid(payload, h.count, s));
            if !schema_ok {
                self.events.push(Event::Corrupt {
                    segment: seg.path.clone(),
                    offset: at,
                    why: "rows do not match their schema",
                });
                self.stuck = true;
                continue;
            }
            self.pos += len;
            self.next_seq = h.base_seq + h.count as u64;
            let skip = match self.start {
                StartAt::Oldest => 0,
                StartAt::Seq(s) => s.saturating_sub(h.base_seq).min(h.count as u64) as u32,
                StartAt::Time(t) => {
                    if h.commit_ns < t {
                        h.count
                    } else {
                        0
                    }
                }
            };
            if skip == h.count {
                continue;
            }
            self.start = StartAt::Oldest;
            let seg = self.seg.as_ref().expect("checked");
            let map = seg.map.as_ref().expect("read from this map above");
            let p = map.as_ptr().wrapping_add(at + FRAME_HEADER);
            // SAFETY: as above: committed, in bounds, never rewritten.
            let rows = unsafe { std::slice::from_raw_parts(p, h.payload_len as usize) };
            return Some(Frame {
                header: h,
                schema: self.schemas.get(&h.schema_id).expect("checked"),
                rows,
                skip,
            });
        }
    }

    /// Whether a segment newer than the current one starts at or after
    /// `next_seq`.
    fn successor_exists(&self) -> bool {
        let cur = self.seg.as_ref().map_or(0, |s| s.first_seq);
        list_segments(&self.dir).is_ok_and(|v| {
            v.iter()
                .any(|(f, _)| *f > cur && *f >= self.next_seq || *f == self.next_seq && *f != cur)
        })
    }
}
