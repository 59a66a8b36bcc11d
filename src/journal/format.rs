//! The journal's bytes: segment header, frame header, schema and footer
//! payloads, and the validation every reader and recovery relies on.
//! `docs/JOURNAL.md` is the reference for the layout; this file is its
//! only implementation.
//!
//! ```text
//! segment = header (64 B) | frame* | zeros
//! header  = magic "MUTSJRN1" | version u32 | shard u32 | first_seq u64
//!         | segment_size u64 | created_ns u64 | crc u32 (of bytes 0..40) | zeros
//! frame   = len u32 (the commit word) | crc u32 | kind u8 | version u8 | 0 u16
//!         | schema_id u32 | generation u64 | base_seq u64 | count u32
//!         | payload_len u32 | ingest_ns u64 | commit_ns u64 | payload | zero pad to 8
//! ```
//! All integers little-endian. `len` is the whole frame, a multiple of 8;
//! the CRC32C covers bytes 8..56+payload_len (the header after the CRC,
//! then the payload), and `len` must equal `align8(56 + payload_len)`, so
//! the commit word is checked too.

use crate::codec::FieldType;
use crate::pipeline::program::OutSchema;

pub const MAGIC: [u8; 8] = *b"MUTSJRN1";
pub const VERSION: u8 = 1;
pub const SEGMENT_HEADER: usize = 64;
pub const FRAME_HEADER: usize = 56;
/// Frames start and end on this boundary (the commit word is a `u32`
/// loaded atomically; 8 keeps every header field naturally aligned).
pub const ALIGN: usize = 8;
/// Footer payload: nothing; its `base_seq` is the next segment's first.
pub const KIND_DATA: u8 = 1;
pub const KIND_SCHEMA: u8 = 2;
pub const KIND_FOOTER: u8 = 3;

/// CRC32C (Castagnoli), the checksum of every frame and segment header.
#[inline]
pub fn crc32c(b: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, b) as u32
}

#[inline]
pub const fn align8(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

/// The frame length for a payload of `payload` bytes.
#[inline]
pub const fn frame_len(payload: usize) -> usize {
    align8(FRAME_HEADER + payload)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A segment's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub shard: u32,
    pub first_seq: u64,
    pub segment_size: u64,
    pub created_ns: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER] {
        let mut b = [0u8; SEGMENT_HEADER];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&(VERSION as u32).to_le_bytes());
        b[12..16].copy_from_slice(&self.shard.to_le_bytes());
        b[16..24].copy_from_slice(&self.first_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.segment_size.to_le_bytes());
        b[32..40].copy_from_slice(&self.created_ns.to_le_bytes());
        let crc = crc32c(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// # Errors
    /// What is wrong with the header, for the report.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, &'static str> {
        if b.len() < SEGMENT_HEADER {
            return Err("shorter than a segment header");
        }
        if b[0..8] != MAGIC {
            return Err("bad magic");
        }
        if u32_at(b, 40) != crc32c(&b[0..40]) {
            return Err("header checksum mismatch");
        }
        if u32_at(b, 8) != VERSION as u32 {
            return Err("unknown version");
        }
        Ok(SegmentHeader {
            shard: u32_at(b, 12),
            first_seq: u64_at(b, 16),
            segment_size: u64_at(b, 24),
            created_ns: u64_at(b, 32),
        })
    }
}

/// A frame's header fields (everything but `len` and `crc`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    pub schema_id: u32,
    pub generation: u64,
    pub base_seq: u64,
    pub count: u32,
    pub payload_len: u32,
    pub ingest_ns: u64,
    pub commit_ns: u64,
}

impl FrameHeader {
    /// Writes header bytes 8..56 (everything after the CRC) into `b`.
    pub fn encode_tail(&self, b: &mut [u8]) {
        b[8] = self.kind;
        b[9] = VERSION;
        b[10..12].copy_from_slice(&[0, 0]);
        b[12..16].copy_from_slice(&self.schema_id.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.base_seq.to_le_bytes());
        b[32..36].copy_from_slice(&self.count.to_le_bytes());
        b[36..40].copy_from_slice(&self.payload_len.to_le_bytes());
        b[40..48].copy_from_slice(&self.ingest_ns.to_le_bytes());
        b[48..56].copy_from_slice(&self.commit_ns.to_le_bytes());
    }

    fn decode_tail(b: &[u8]) -> FrameHeader {
        FrameHeader {
            kind: b[8],
            schema_id: u32_at(b, 12),
            generation: u64_at(b, 16),
            base_seq: u64_at(b, 24),
            count: u32_at(b, 32),
            payload_len: u32_at(b, 36),
            ingest_ns: u64_at(b, 40),
            commit_ns: u64_at(b, 48),
        }
    }
}

/// Why a frame is not valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The commit word is 0: nothing written here (yet).
    Empty,
    /// Length, checksum, kind, version, padding or payload do not hold.
    Corrupt(&'static str),
}

/// Validates the frame at the start of `b` (which runs to the end of the
/// segment) given its commit word `len`; returns its header and payload.
///
/// # Errors
/// [`FrameError::Empty`] for a zero commit word, else what is corrupt.
pub fn check_frame(b: &[u8], len: u32) -> Result<(FrameHeader, &[u8]), FrameError> {
    if len == 0 {
        return Err(FrameError::Empty);
    }
    let len = len as usize;
    if len < FRAME_HEADER || len % ALIGN != 0 {
        return Err(FrameError::Corrupt("bad length"));
    }
    if len > b.len() {
        return Err(FrameError::Corrupt("length past the segment end"));
    }
    let h = FrameHeader::decode_tail(b);
    if frame_len(h.payload_len as usize) != len {
        return Err(FrameError::Corrupt("length does not match the payload"));
    }
    let end = FRAME_HEADER + h.payload_len as usize;
    if u32_at(b, 4) != crc32c(&b[8..end]) {
        return Err(FrameError::Corrupt("checksum mismatch"));
    }
    if b[9] != VERSION || b[10] != 0 || b[11] != 0 {
        return Err(FrameError::Corrupt("unknown version"));
    }
    if b[end..len].iter().any(|&x| x != 0) {
        return Err(FrameError::Corrupt("nonzero padding"));
    }
    let payload = &b[FRAME_HEADER..end];
    match h.kind {
        KIND_DATA if h.count > 0 => {}
        KIND_SCHEMA if h.count == 0 && h.schema_id > 0 => {}
        KIND_FOOTER if h.count == 0 && payload.is_empty() => {}
        KIND_DATA | KIND_SCHEMA | KIND_FOOTER => {
            return Err(FrameError::Corrupt("bad count for its kind"));
        }
        _ => return Err(FrameError::Corrupt("unknown kind")),
    }
    Ok((h, payload))
}

/// One valid frame found by [`scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub offset: usize,
    pub len: usize,
    pub header: FrameHeader,
}

/// What walking a segment's bytes found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The valid frames from the start, in order, each continuing the
    /// sequence of the one before.
    pub frames: Vec<Found>,
    /// Where the valid prefix ends (the first byte after its last frame).
    pub end: usize,
    /// The next sequence after the valid prefix.
    pub next_seq: u64,
    /// The prefix ends with a footer.
    pub sealed: bool,
    /// Why the walk stopped before the end of the segment, if not at a
    /// zero commit word: the offset and the reason.
    pub corrupt: Option<(usize, &'static str)>,
    /// Nonzero bytes past `end` (a torn or abandoned write to cut).
    pub dirty_tail: bool,
}

/// Walks the frames of a segment image (header included), keeping every
/// frame whose length and checksum hold and whose sequence follows. Pure:
/// recovery, readers and the fuzz target share it.
///
/// # Errors
/// The segment header is not valid.
pub fn scan(b: &[u8]) -> Result<(SegmentHeader, Scan), &'static str> {
    let h = SegmentHeader::decode(b)?;
    let mut s = Scan {
        end: SEGMENT_HEADER,
        next_seq: h.first_seq,
        ..Scan::default()
    };
    let mut at = SEGMENT_HEADER;
    while at + 4 <= b.len() {
        let len = u32_at(b, at);
        match check_frame(&b[at..], len) {
            Err(FrameError::Empty) => break,
            Err(FrameError::Corrupt(why)) => {
                s.corrupt = Some((at, why));
                break;
            }
            Ok((fh, payload)) => {
                if fh.base_seq != s.next_seq {
                    s.corrupt = Some((at, "sequence does not follow"));
                    break;
                }
                if fh.kind == KIND_DATA && !rows_hold(payload, fh.count) {
                    s.corrupt = Some((at, "rows do not hold"));
                    break;
                }
                s.frames.push(Found {
                    offset: at,
                    len: len as usize,
                    header: fh,
                });
                at += len as usize;
                s.end = at;
                s.next_seq = fh.base_seq + fh.count as u64;
                if fh.kind == KIND_FOOTER {
                    s.sealed = true;
                    break;
                }
            }
        }
    }
    s.dirty_tail = b[s.end.min(b.len())..].iter().any(|&x| x != 0);
    Ok((h, s))
}

/// Whether `payload` is exactly `count` rows whose lengths fit (the row
/// format's `len` prefixes; fields are checked when read).
pub fn rows_hold(payload: &[u8], count: u32) -> bool {
    let mut at = 0usize;
    for _ in 0..count {
        if at + 4 > payload.len() {
            return false;
        }
        let l = u32_at(payload, at) as usize;
        if l < 4 || at + l > payload.len() {
            return false;
        }
        at += l;
    }
    at == payload.len()
}

/// Whether `payload` is exactly `count` well-formed rows of `schema`:
/// each row long enough for its bitmap and fixed part, every text value
/// inside its row. Readers check this once per frame, so decoding a row
/// afterwards cannot fail.
pub fn rows_valid(payload: &[u8], count: u32, schema: &OutSchema) -> bool {
    let nf = schema.fields.len();
    let bitmap = nf.div_ceil(8);
    let fixed = 4 + bitmap + nf * 8;
    let mut at = 0usize;
    for _ in 0..count {
        if at + 4 > payload.len() {
            return false;
        }
        let l = u32_at(payload, at) as usize;
        if l < fixed || at + l > payload.len() {
            return false;
        }
        let row = &payload[at..at + l];
        for (k, (_, ty)) in schema.fields.iter().enumerate() {
            if matches!(ty, FieldType::Symbol | FieldType::Str)
                && row[4 + k / 8] >> (k % 8) & 1 == 1
            {
                let w = u64_at(row, 4 + bitmap + k * 8);
                let (off, len) = ((w & 0xffff_ffff) as usize, (w >> 32) as usize);
                if off < fixed || off + len > l {
                    return false;
                }
            }
        }
        at += l;
    }
    at == payload.len()
}

const TYPE_CODES: [(FieldType, u8); 7] = [
    (FieldType::I64, 1),
    (FieldType::U64, 2),
    (FieldType::F64, 3),
    (FieldType::Bool, 4),
    (FieldType::Symbol, 5),
    (FieldType::Str, 6),
    (FieldType::Timestamp, 7),
];

/// A schema frame's payload: `n u16 | (type u8 | 0 u8 | name_len u16 | name)*`.
pub fn encode_schema(s: &OutSchema, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.fields.len() as u16).to_le_bytes());
    for (name, ty) in &s.fields {
        let code = TYPE_CODES
            .iter()
            .find(|(t, _)| t == ty)
            .map(|&(_, c)| c)
            .expect("every type has a code");
        out.push(code);
        out.push(0);
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
    }
}

/// # Errors
/// The payload is not a schema.
pub fn decode_schema(mut b: &[u8]) -> Result<OutSchema, &'static str> {
    if b.len() < 2 {
        return Err("short schema");
    }
    let n = u16::from_le_bytes([b[0], b[1]]) as usize;
    b = &b[2..];
    let mut fields = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        if b.len() < 4 {
            return Err("short schema field");
        }
        let ty = TYPE_CODES
            .iter()
            .find(|&&(_, c)| c == b[0])
            .map(|&(t, _)| t)
            .ok_or("unknown field type")?;
        let l = u16::from_le_bytes([b[2], b[3]]) as usize;
        if b.len() < 4 + l {
            return Err("short field name");
        }
        let name = std::str::from_utf8(&b[4..4 + l]).map_err(|_| "field name not UTF-8")?;
        fields.push((name.to_string(), ty));
        b = &b[4 + l..];
    }
    if !b.is_empty() {
        return Err("bytes after the schema");
    }
    Ok(OutSchema { fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_is_castagnoli() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(crc32c(&data), ::crc32c::crc32c(&data));
    }

    fn frame(h: FrameHeader, payload: &[u8]) -> Vec<u8> {
        let len = frame_len(payload.len());
        let mut b = vec![0u8; len];
        let mut h = h;
        h.payload_len = payload.len() as u32;
        h.encode_tail(&mut b);
        b[FRAME_HEADER..FRAME_HEADER + payload.len()].copy_from_slice(payload);
        let crc = crc32c(&b[8..FRAME_HEADER + payload.len()]);
        b[4..8].copy_from_slice(&crc.to_le_bytes());
        b[0..4].copy_from_slice(&(len as u32).to_le_bytes());
        b
    }

    #[test]
    fn frames_check_and_every_single_bit_flip_is_caught() {
        let payload = [5u8, 0, 0, 0, 9, 6, 0, 0, 0, 1, 2];
        let f = frame(
            FrameHeader {
                kind: KIND_DATA,
                schema_id: 1,
                generation: 3,
                base_seq: 10,
                count: 2,
                ingest_ns: 1,
                commit_ns: 2,
                ..Default::default()
            },
            &payload,
        );
        let (h, p) = check_frame(&f, u32_at(&f, 0)).unwrap();
        assert_eq!((h.base_seq, h.count, p), (10, 2, &payload[..]));
        assert!(rows_hold(p, 2));
        for bit in 0..f.len() * 8 {
            let mut g = f.clone();
            g[bit / 8] ^= 1 << (bit % 8);
            let r = check_frame(&g, u32_at(&g, 0));
            assert!(r.is_err(), "bit {bit} flipped and still valid");
        }
    }

    #[test]
    fn schema_round_trips() {
        let s = OutSchema {
            fields: vec![
                ("ts".into(), FieldType::Timestamp),
                ("sym".into(), FieldType::Symbol),
                ("x".into(), FieldType::F64),
            ],
        };
        let mut b = Vec::new();
        encode_schema(&s, &mut b);
        assert_eq!(decode_schema(&b).unwrap(), s);
        assert!(decode_schema(&b[..b.len() - 1]).is_err());
    }

    #[test]
    fn segment_header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            shard: 1,
            first_seq: 77,
            segment_size: 1 << 20,
            created_ns: 5,
        };
        let b = h.encode();
        assert_eq!(SegmentHeader::decode(&b).unwrap(), h);
        let mut c = b;
        c[17] ^= 4;
        assert!(SegmentHeader::decode(&c).is_err());
    }
}
