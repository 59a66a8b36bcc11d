//! InfluxDB line protocol: one line becomes one row.
//!
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`, as
//! in InfluxDB's public line protocol reference. The framer has already cut
//! the line and removed its terminator; a line may still hold raw newlines
//! that were escaped with a backslash or sit inside a quoted string.
//!
//! * Tags become `symbol` (interned) or `string` fields of the same name;
//!   fields are typed by the schema: `1.5`/`1` float, `1i` signed, `1u`
//!   unsigned, bools in all ten spellings, `"..."` strings, plus `NaN`,
//!   `Infinity`, `+Infinity` and `-Infinity` as floats. Integers widen to
//!   `f64`; `i`/`u` cross over when in range; a float never goes into an
//!   integer field. A `timestamp` field takes integer ns or an RFC 3339
//!   string. Keys the schema does not name are skipped, but their values
//!   must still be well formed.
//! * The trailing timestamp is in the source's `precision`, goes to `ts`,
//!   and defaults (in [`RowWriter::commit`]) to the ingest time.
//! * Escapes: in the measurement, tag keys, tag values and field keys a
//!   backslash before `,` `=` space `\` or a raw newline stands for that
//!   byte; in quoted strings before `"` `\` or a raw newline. Any other
//!   backslash is literal. Keys and the measurement are compared as bytes;
//!   UTF-8 is checked only where bytes become a symbol or string value.
//! * The last value of a repeated key wins.
//! * With a `measurement` filter, a line of another measurement is
//!   `Skipped` as soon as its measurement is read, before the rest is
//!   checked (a line with no field set at all is `Malformed` first).
//!
//! Hot path (`tests::bench_workload_ns_per_line`): one `memchr` decides
//! whether the line has a backslash at all. If not (nearly every line),
//! names are borrowed straight from the line and each delimiter is found
//! by `find_delim` (SWAR over the first 16 bytes, `memchr3` beyond);
//! otherwise a byte loop skips escapes and names are unescaped into one
//! reusable scratch buffer (string fields straight into the batch arena).
//! A key's schema index is predicted from the key at the same position in
//! the previous line and confirmed with two integer compares. Integers and
//! short decimals have exact inline fast paths; everything else goes to
//! [`super::num`]. Nothing is allocated per record once the scratch buffer
//! and the interner have warmed up; no input can panic the decoder (see
//! [`fuzz_one`]).

use memchr::{memchr, memchr2, memchr3};

use super::Precision;
use super::batch::{Batch, Reject, RowWriter, StrRef};
use super::intern::Interner;
use super::num::{NumError, parse_f64, parse_i64, parse_u64};
use super::schema::{FieldType, Schema};
use super::time::parse_rfc3339;
use super::{DecodeCx, Reason};

/// Keys per line (tags and fields, in line order) whose schema index is
/// remembered from the previous line.
const PREDICTED_KEYS: usize = 32;
/// A `predicted` slot with nothing remembered (schemas have at most 64 fields).
const UNPREDICTED: u8 = u8::MAX;

/// A name (schema field or measurement) as lookups compare it.
struct Name {
    /// The first 8 bytes, little-endian, zero-padded: with `len` this
    /// decides every name of up to 8 bytes without a `memcmp`.
    prefix: u64,
    len: usize,
    bytes: Box<[u8]>,
}

impl Name {
    fn new(s: &str) -> Name {
        Name {
            prefix: prefix8(s.as_bytes()),
            len: s.len(),
            bytes: s.as_bytes().into(),
        }
    }

    /// Whether `key`, whose [`prefix8`] is `prefix`, is this name.
    #[inline]
    fn matches(&self, prefix: u64, key: &[u8]) -> bool {
        self.prefix == prefix && self.len == key.len() && (key.len() <= 8 || *self.bytes == *key)
    }
}

/// Decodes line protocol records for one source; holds only settings and
/// reusable scratch state.
pub struct LpDecoder {
    /// Schema field names and types, by field index.
    keys: Vec<Name>,
    types: Vec<FieldType>,
    ts_index: Option<usize>,
    /// Lines of any other measurement are `Skipped`.
    measurement: Option<Name>,
    /// Nanoseconds per unit of the line timestamp.
    unit_ns: i64,
    /// Unescaped names and strings, one at a time; cleared before each use.
    scratch: Vec<u8>,
    /// Schema index of the k-th key of the last line that had one there.
    predicted: [u8; PREDICTED_KEYS],
}

impl LpDecoder {
    /// A decoder for `schema`, keeping only `measurement` when given, with
    /// line timestamps in `precision` units.
    pub fn new(schema: &Schema, measurement: Option<&str>, precision: Precision) -> LpDecoder {
        LpDecoder {
            keys: schema.fields.iter().map(|f| Name::new(&f.name)).collect(),
            types: schema.fields.iter().map(|f| f.ty).collect(),
            ts_index: schema.ts_index,
            measurement: measurement.map(Name::new),
            unit_ns: precision.ns(),
            scratch: Vec::with_capacity(256),
            predicted: [UNPREDICTED; PREDICTED_KEYS],
        }
    }

    /// Decodes one line into a new row of `out`.
    ///
    /// `Ok(true)`: one row appended; `Ok(false)`: a blank or `#` comment
    /// line, nothing appended.
    ///
    /// # Errors
    /// The record is dropped with the [`Reject`]'s reason (the field at
    /// fault where there is one); `out` is left exactly as it was.
    ///
    /// # Panics
    /// If `out` is full (callers flush first).
    pub fn decode(
        &mut self,
        line: &[u8],
        out: &mut Batch,
        cx: &mut DecodeCx<'_>,
    ) -> Result<bool, Reject> {
        let line = trim(line);
        match line.first() {
            None | Some(b'#') => return Ok(false),
            Some(_) => {}
        }
        debug_assert_eq!(
            self.keys.len(),
            cx.schema.fields.len(),
            "decoder built for this schema"
        );
        let len = line.len();
        // NB: nearly every line has no backslash; then no name needs
        // unescaping and delimiters are found without minding escapes.
        let esc = memchr(b'\\', line).is_some();

        // Measurement: up to the first unescaped `,` (tags) or space (fields).
        let m_end = if esc {
            scan_escaped(line, 0, false)
        } else {
            find_delim(line, b',', b' ', b',').unwrap_or(len)
        };
        if m_end == 0 || m_end == len {
            return Err(malformed());
        }
        if let Some(want) = &self.measurement {
            let got = unescape_name(&line[..m_end], esc, &mut self.scratch);
            if !want.matches(key_prefix(line, 0, got, esc), got) {
                return Err(Reject::new(Reason::Skipped));
            }
        }

        let mut row = out.row();
        let mut pos = m_end;
        let mut k = 0;

        // Tag set. Invariant at the loop head: `pos < len`.
        while line[pos] == b',' {
            pos += 1;
            let key_end = name_end(line, pos, esc);
            if key_end == pos || key_end == len || line[key_end] != b'=' {
                return Err(malformed());
            }
            let field = self.lookup(k, line, pos, key_end, esc);
            k += 1;
            pos = key_end + 1;
            let val_end = name_end(line, pos, esc);
            // Empty, unterminated (no field set) or an unescaped `=`.
            if val_end == pos || val_end == len || line[val_end] == b'=' {
                return Err(malformed());
            }
            if let Some(f) = field {
                let ty = self.types[f];
                let v = unescape_name(&line[pos..val_end], esc, &mut self.scratch);
                put_tag(&mut row, f, ty, v, cx.symbols)?;
            }
            pos = val_end;
        }

        // Field set: at least one `key=value`.
        while pos < len && line[pos] == b' ' {
            pos += 1;
        }
        loop {
            let key_end = name_end(line, pos, esc);
            if key_end == pos || key_end == len || line[key_end] != b'=' {
                return Err(malformed());
            }
            let field = self.lookup(k, line, pos, key_end, esc);
            k += 1;
            pos = key_end + 1;
            match line.get(pos) {
                None => return Err(malformed()),
                Some(b'"') => {
                    let (close, has_bs) =
                        closing_quote(line, pos + 1, esc).ok_or_else(malformed)?;
                    if let Some(f) = field {
                        let ty = self.types[f];
                        let raw = &line[pos + 1..close];
                        put_string(&mut row, f, ty, raw, has_bs, &mut self.scratch, cx.symbols)?;
                    }
                    pos = close + 1;
                }
                Some(_) => {
                    // Unquoted values have no escapes: a backslash in one
                    // makes it invalid whatever follows.
                    let end = find_delim(&line[pos..], b',', b' ', b',').map_or(len, |p| pos + p);
                    let v = &line[pos..end];
                    match field {
                        Some(f) => put_value(&mut row, f, self.types[f], v)?,
                        None => {
                            classify(v).map_err(Reject::new)?;
                        }
                    }
                    pos = end;
                }
            }
            match line.get(pos) {
                None => break,
                Some(b',') => pos += 1,
                Some(b' ') => {
                    self.timestamp(&line[pos..], &mut row)?;
                    break;
                }
                // Bytes right after a closing quote.
                Some(_) => return Err(malformed()),
            }
        }
        row.commit(cx.schema, cx.now_ns)?;
        Ok(true)
    }

    /// The schema index of the key at `line[start..end]`, the `k`-th key
    /// of its line.
    #[inline(always)]
    fn lookup(
        &mut self,
        k: usize,
        line: &[u8],
        start: usize,
        end: usize,
        esc: bool,
    ) -> Option<usize> {
        let key = unescape_name(&line[start..end], esc, &mut self.scratch);
        let prefix = key_prefix(line, start, key, esc);
        if let Some(&guess) = self.predicted.get(k)
            && let Some(e) = self.keys.get(guess as usize)
            && e.matches(prefix, key)
        {
            return Some(guess as usize);
        }
        let i = self.keys.iter().position(|e| e.matches(prefix, key))?;
        if let Some(slot) = self.predicted.get_mut(k) {
            *slot = i as u8;
        }
        Some(i)
    }

    /// Parses the optional timestamp section (`rest` starts at the space
    /// after the field set; the line has no trailing whitespace).
    #[inline]
    fn timestamp(&self, rest: &[u8], row: &mut RowWriter<'_>) -> Result<(), Reject> {
        let start = rest.iter().position(|&c| c != b' ').unwrap_or(rest.len());
        let tok = &rest[start..];
        if tok.is_empty() {
            return Ok(());
        }
        let Some(ns) = int(tok).ok().and_then(|t| t.checked_mul(self.unit_ns)) else {
            return Err(self.bad_timestamp(tok));
        };
        if let Some(ts) = self.ts_index {
            row.set_i64(ts, ns);
        }
        Ok(())
    }

    /// Why timestamp token `tok` did not parse: another section after it
    /// is junk, anything else a bad timestamp.
    #[cold]
    fn bad_timestamp(&self, tok: &[u8]) -> Reject {
        if memchr2(b' ', b'\t', tok).is_some() {
            return malformed();
        }
        match self.ts_index {
            Some(ts) => Reject::at(Reason::BadTimestamp, ts),
            None => Reject::new(Reason::BadTimestamp),
        }
    }
}

#[cold]
fn malformed() -> Reject {
    Reject::new(Reason::Malformed)
}

/// `parse_i64`, with a fast path for the common case of at most 19 digits
/// (ns timestamps have 19): those cannot overflow a `u64`, so there are no
/// overflow checks, and runs of 8 digits are converted a word at a time.
#[inline]
fn int(s: &[u8]) -> Result<i64, NumError> {
    let (neg, mut digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', _)) => return int_slow(s),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return int_slow(s);
    }
    let mut v: u64 = 0;
    while let Some((w, rest)) = digits.split_first_chunk::<8>() {
        v = v * 100_000_000 + digits8(u64::from_le_bytes(*w)).ok_or(NumError::Syntax)?;
        digits = rest;
    }
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(NumError::Syntax);
        }
        v = v * 10 + d as u64;
    }
    if neg {
        // -2^63 is the one negative value whose magnitude is not an i64.
        if v <= 1 << 63 {
            Ok((v as i64).wrapping_neg())
        } else {
            Err(NumError::Range)
        }
    } else {
        i64::try_from(v).map_err(|_| NumError::Range)
    }
}

/// Whitespace a line may start or end with (the framer skips the same
/// bytes before a line's first character).
#[inline]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r')
}

/// `line` without leading and trailing whitespace. Trimming the end cannot
/// eat an escaped space that matters: a valid line ends in a value or a
/// timestamp, neither of which ends in an escape.
#[inline]
fn trim(line: &[u8]) -> &[u8] {
    let mut start = 0;
    while start < line.len() && is_ws(line[start]) {
        start += 1;
    }
    let mut end = line.len();
    while end > start && is_ws(line[end - 1]) {
        end -= 1;
    }
    &line[start..end]
}

/// [`parse_i64`] out of line, so that the fast path stays small.
#[inline(never)]
fn int_slow(s: &[u8]) -> Result<i64, NumError> {
    parse_i64(s)
}

/// [`parse_u64`] out of line: unsigned fields are rare.
#[inline(never)]
fn uint(s: &[u8]) -> Result<u64, NumError> {
    parse_u64(s)
}

/// The value of 8 ASCII digits loaded little-endian (first digit in the
/// low byte), or `None` if any byte is not a digit. The usual SWAR form
/// (as in fast_float's `parse_eight_digits`).
#[inline]
fn digits8(w: u64) -> Option<u64> {
    const F0: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    // Digits are 0x30..=0x39: high nibble 3, and adding 6 keeps it 3.
    if (w & F0) | ((w.wrapping_add(0x0606_0606_0606_0606) & F0) >> 4) != 0x3333_3333_3333_3333 {
        return None;
    }
    let v = (w & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let v = (v & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;
    Some((v & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32)
}

/// Exact powers of ten up to the largest the fast decimal path divides by.
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// A plain decimal `[+-]?d*[.d*]` of at most 15 digits (at least one), or
/// `None` to let [`parse_f64`] decide. Exact (Clinger's fast path): the
/// digits as an integer are below 2^53 and the power of ten is exact, so
/// the one division rounds correctly. Accepts a subset of what `parse_f64`
/// accepts, with the same value.
///
/// NB: sensor values are short decimals; this is ~4x fewer instructions
/// than the general parser (callgrind, `tests::bench_workload_ns_per_line`).
#[inline]
fn decimal(v: &[u8]) -> Option<f64> {
    let (neg, body) = match v.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, v),
    };
    if body.is_empty() || body.len() > 16 {
        return None;
    }
    let (mut m, mut n, mut frac, mut dot) = (0u64, 0usize, 0usize, false);
    for &c in body {
        let d = c.wrapping_sub(b'0');
        if d <= 9 {
            m = m * 10 + d as u64;
            n += 1;
            frac += dot as usize;
        } else if c == b'.' && !dot {
            dot = true;
        } else {
            return None;
        }
    }
    if n == 0 || n > 15 {
        return None;
    }
    let x = m as f64 / POW10[frac];
    Some(if neg { -x } else { x })
}

/// Keeps the low `n` bytes of a little-endian word (all 8 for `n >= 8`).
#[inline]
fn len_mask(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of the lowest zero byte of `w` is set, and no bit below it
/// (bits above may be false positives, so callers take `trailing_zeros`).
#[inline(always)]
fn zero_byte(w: u64) -> u64 {
    w.wrapping_sub(LO) & !w & HI
}

/// The index of the first `a`, `b` or `c` in `hay`.
///
/// NB: names and values are nearly always shorter than 16 bytes, where a
/// `memchr3` call costs more in dispatch and setup than the search; two
/// 8-byte SWAR words cover them, `memchr3` the rest. Measured with
/// `tests::bench_workload_ns_per_line`.
#[inline(always)]
fn find_delim(hay: &[u8], a: u8, b: u8, c: u8) -> Option<usize> {
    let mut i = 0;
    while i < 16 {
        let Some(w) = hay.get(i..).and_then(|s| s.first_chunk::<8>()) else {
            return hay[i..]
                .iter()
                .position(|&x| x == a || x == b || x == c)
                .map(|p| i + p);
        };
        let w = u64::from_le_bytes(*w);
        let m = zero_byte(w ^ (a as u64 * LO))
            | zero_byte(w ^ (b as u64 * LO))
            | zero_byte(w ^ (c as u64 * LO));
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    memchr3(a, b, c, &hay[i..]).map(|p| i + p)
}

/// [`prefix8`] of `key`, the name at `line[start..]` after unescaping.
/// NB: without escapes that is one load from the line (a delimiter and
/// more always follow a name), masked to the key length.
#[inline(always)]
fn key_prefix(line: &[u8], start: usize, key: &[u8], esc: bool) -> u64 {
    match line.get(start..).and_then(|s| s.first_chunk::<8>()) {
        Some(w) if !esc => u64::from_le_bytes(*w) & len_mask(key.len()),
        _ => prefix8(key),
    }
}

/// The first 8 bytes of `s`, little-endian, zero-padded.
#[inline]
fn prefix8(s: &[u8]) -> u64 {
    match s.first_chunk::<8>() {
        Some(b) => u64::from_le_bytes(*b),
        None => s
            .iter()
            .enumerate()
            .fold(0, |v, (i, &c)| v | ((c as u64) << (8 * i))),
    }
}

/// The end of a tag key, tag value or field key starting at `pos`: the
/// first unescaped `=`, `,` or space, or `line.len()`.
#[inline(always)]
fn name_end(line: &[u8], pos: usize, esc: bool) -> usize {
    if esc {
        scan_escaped(line, pos, true)
    } else {
        find_delim(&line[pos..], b'=', b',', b' ').map_or(line.len(), |p| pos + p)
    }
}

/// The first unescaped `,` or space (and `=` when `stop_eq`) at or after
/// `i`, or `line.len()`. Skipping the byte after every backslash is exact:
/// each stop byte is escapable, and a backslash before anything else is
/// literal but followed by a byte that is not a stop either.
fn scan_escaped(line: &[u8], mut i: usize, stop_eq: bool) -> usize {
    while i < line.len() {
        match line[i] {
            b'\\' => i += 2,
            b',' | b' ' => return i,
            b'=' if stop_eq => return i,
            _ => i += 1,
        }
    }
    line.len()
}

/// The index of the quote closing a string that starts at `i` (just after
/// its opening quote) and whether the string holds a backslash; `None` if
/// the line ends first.
#[inline]
fn closing_quote(line: &[u8], mut i: usize, esc: bool) -> Option<(usize, bool)> {
    if !esc {
        return memchr(b'"', line.get(i..)?).map(|p| (i + p, false));
    }
    let mut has_bs = false;
    loop {
        let p = i + memchr2(b'"', b'\\', line.get(i..)?)?;
        if line[p] == b'"' {
            return Some((p, has_bs));
        }
        has_bs = true;
        i = p + 2;
    }
}

/// Appends `src` to `dst`, replacing a backslash followed by a byte for
/// which `escapable` holds by that byte.
fn unescape(src: &[u8], dst: &mut Vec<u8>, escapable: impl Fn(u8) -> bool) {
    let mut i = 0;
    while let Some(p) = memchr(b'\\', &src[i..]) {
        let p = i + p;
        dst.extend_from_slice(&src[i..p]);
        match src.get(p + 1) {
            Some(&c) if escapable(c) => {
                dst.push(c);
                i = p + 2;
            }
            _ => {
                dst.push(b'\\');
                i = p + 1;
            }
        }
    }
    dst.extend_from_slice(&src[i..]);
}

/// NB: QuestDB clients also put a backslash before `\r` (and older ones
/// before `"`) in names; by the rule above those keep their backslash, as
/// InfluxDB keeps it.
#[inline]
fn name_escapable(c: u8) -> bool {
    matches!(c, b',' | b'=' | b' ' | b'\\' | b'\n')
}

#[inline]
fn string_escapable(c: u8) -> bool {
    matches!(c, b'"' | b'\\' | b'\n')
}

/// A measurement or key or tag value with its escapes resolved: `raw`
/// itself when the line has no backslash (`esc`), else see
/// [`unescape_name_slow`].
#[inline(always)]
fn unescape_name<'a>(raw: &'a [u8], esc: bool, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if esc {
        unescape_name_slow(raw, scratch)
    } else {
        raw
    }
}

/// `raw` itself when it has no backslash, else its unescaped copy in
/// `scratch`.
#[inline(never)]
fn unescape_name_slow<'a>(raw: &'a [u8], scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if memchr(b'\\', raw).is_none() {
        return raw;
    }
    scratch.clear();
    unescape(raw, scratch, name_escapable);
    scratch
}

#[inline]
fn check_utf8(bytes: &[u8], field: usize) -> Result<(), Reject> {
    // NB: tags and symbols are nearly always ASCII; `is_ascii` is inlined
    // and word-at-a-time, `from_utf8` a call.
    if bytes.is_ascii() || std::str::from_utf8(bytes).is_ok() {
        Ok(())
    } else {
        Err(Reject::at(Reason::InvalidUtf8, field))
    }
}

/// Stores tag value `v` (unescaped) in field `f` of type `ty`.
#[inline]
fn put_tag(
    row: &mut RowWriter<'_>,
    f: usize,
    ty: FieldType,
    v: &[u8],
    symbols: &mut Interner,
) -> Result<(), Reject> {
    match ty {
        FieldType::Symbol => {
            check_utf8(v, f)?;
            let id = symbols
                .intern(v)
                .ok_or(Reject::at(Reason::SymbolLimit, f))?;
            row.set_sym(f, id);
        }
        FieldType::Str => {
            check_utf8(v, f)?;
            row.set_str(f, v);
        }
        _ => return Err(Reject::at(Reason::TypeMismatch, f)),
    }
    Ok(())
}

/// Stores quoted string field `raw` (between the quotes, escapes not yet
/// resolved; `has_bs` when it holds a backslash) in field `f`.
fn put_string(
    row: &mut RowWriter<'_>,
    f: usize,
    ty: FieldType,
    raw: &[u8],
    has_bs: bool,
    scratch: &mut Vec<u8>,
    symbols: &mut Interner,
) -> Result<(), Reject> {
    if ty == FieldType::Str {
        // Straight into the arena: an error drops the row, which truncates
        // the arena back to where the row began.
        let arena = row.arena();
        let off = arena.len();
        if has_bs {
            unescape(raw, arena, string_escapable);
        } else {
            arena.extend_from_slice(raw);
        }
        check_utf8(&arena[off..], f)?;
        let len = arena.len() - off;
        // Arena offsets fit u32: a batch holds at most batch_max lines of at
        // most max_frame bytes, both bounded in config.
        row.set_str_ref(
            f,
            StrRef {
                off: off as u32,
                len: len as u32,
            },
        );
        return Ok(());
    }
    let s = if has_bs {
        scratch.clear();
        unescape(raw, scratch, string_escapable);
        &scratch[..]
    } else {
        raw
    };
    match ty {
        FieldType::Symbol => {
            check_utf8(s, f)?;
            let id = symbols
                .intern(s)
                .ok_or(Reject::at(Reason::SymbolLimit, f))?;
            row.set_sym(f, id);
        }
        FieldType::Timestamp => {
            let ns = parse_rfc3339(s).ok_or(Reject::at(Reason::BadTimestamp, f))?;
            row.set_i64(f, ns);
        }
        _ => return Err(Reject::at(Reason::TypeMismatch, f)),
    }
    Ok(())
}

/// An unquoted field value, classified by its syntax alone.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Lit {
    Float(f64),
    Int(i64),
    Uint(u64),
    Bool(bool),
    /// A well-formed number outside the range of its own kind (`i` beyond
    /// i64, `u` beyond u64 or negative, a decimal beyond f64).
    Overflow,
}

/// Classifies an unquoted field value; `Err(Malformed)` when it is no value
/// at all.
///
/// NB: integers and short decimals are decided inline; everything else
/// (the general float parser with its large stack frame, bools, `NaN`) is
/// out of line in [`classify_other`] so the common case pays no frame setup.
#[inline(always)]
fn classify(v: &[u8]) -> Result<Lit, Reason> {
    let int_lit = |r: Result<Lit, NumError>| match r {
        Ok(l) => Ok(l),
        Err(NumError::Range) => Ok(Lit::Overflow),
        Err(NumError::Syntax) => Err(Reason::Malformed),
    };
    match v.split_last() {
        None => return Err(Reason::Malformed),
        Some((b'i', digits)) => return int_lit(int(digits).map(Lit::Int)),
        Some((b'u', digits)) => return int_lit(uint(digits).map(Lit::Uint)),
        Some(_) => {}
    }
    match decimal(v) {
        Some(x) => Ok(Lit::Float(x)),
        None => classify_other(v),
    }
}

/// [`classify`] for values that are neither integers nor short decimals.
#[inline(never)]
fn classify_other(v: &[u8]) -> Result<Lit, Reason> {
    if let Some(x) = parse_f64(v) {
        // Go's ParseFloat, behind InfluxDB, calls `1e400` out of range too.
        return Ok(if x.is_finite() {
            Lit::Float(x)
        } else {
            Lit::Overflow
        });
    }
    Ok(match v {
        b"t" | b"T" | b"true" | b"True" | b"TRUE" => Lit::Bool(true),
        b"f" | b"F" | b"false" | b"False" | b"FALSE" => Lit::Bool(false),
        b"NaN" => Lit::Float(f64::NAN),
        b"Infinity" | b"+Infinity" => Lit::Float(f64::INFINITY),
        b"-Infinity" => Lit::Float(f64::NEG_INFINITY),
        _ => return Err(Reason::Malformed),
    })
}

/// Stores unquoted field value `v` in field `f` of type `ty`.
#[inline]
fn put_value(row: &mut RowWriter<'_>, f: usize, ty: FieldType, v: &[u8]) -> Result<(), Reject> {
    let lit = classify(v).map_err(|r| Reject::at(r, f))?;
    let err = |r| Err(Reject::at(r, f));
    match (ty, lit) {
        (FieldType::F64, Lit::Float(x)) => row.set_f64(f, x),
        (FieldType::F64, Lit::Int(x)) => row.set_f64(f, x as f64),
        (FieldType::F64, Lit::Uint(x)) => row.set_f64(f, x as f64),
        (FieldType::I64, Lit::Int(x)) => row.set_i64(f, x),
        (FieldType::I64, Lit::Uint(x)) => match i64::try_from(x) {
            Ok(x) => row.set_i64(f, x),
            Err(_) => return err(Reason::OutOfRange),
        },
        (FieldType::U64, Lit::Uint(x)) => row.set_u64(f, x),
        (FieldType::U64, Lit::Int(x)) => match u64::try_from(x) {
            Ok(x) => row.set_u64(f, x),
            Err(_) => return err(Reason::OutOfRange),
        },
        (FieldType::F64 | FieldType::I64 | FieldType::U64, Lit::Overflow) => {
            return err(Reason::OutOfRange);
        }
        (FieldType::Timestamp, Lit::Int(x)) => row.set_i64(f, x),
        (FieldType::Timestamp, Lit::Uint(x)) => match i64::try_from(x) {
            Ok(x) => row.set_i64(f, x),
            Err(_) => return err(Reason::BadTimestamp),
        },
        (FieldType::Timestamp, Lit::Overflow) => return err(Reason::BadTimestamp),
        (FieldType::Bool, Lit::Bool(b)) => row.set_bool(f, b),
        _ => return err(Reason::TypeMismatch),
    }
    Ok(())
}

/// Feeds `data`, split on `\n`, to a decoder for a fixed schema covering
/// every field type and checks the invariants: no panic, a rejected or
/// blank line leaves the batch as it was, every accepted line is exactly
/// one row, every row reads back with valid UTF-8 text and a `ts`. The
/// first byte also picks the precision and whether a `measurement` filter
/// (`m`) is set. Used by cargo-fuzz and the corpus replay test.
///
/// # Panics
/// When an invariant does not hold (that is the point).
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use super::schema::{Field, parse_type};
    use super::{Interner, Value};

    let field = |name: &str, ty: &str| {
        let (ty, wire) = parse_type(ty).expect("fixed type names");
        Field {
            name: name.into(),
            ty,
            wire,
            offset: None,
            required: false,
        }
    };
    let schema = Schema::new(
        "fuzz",
        vec![
            field("ts", "timestamp"),
            field("host", "symbol"),
            field("region", "string"),
            field("f", "f64"),
            field("i", "i64"),
            field("u", "u64"),
            field("b", "bool"),
            field("s", "string"),
            field("sym", "symbol"),
            field("at", "timestamp"),
            field("x y,z=w", "f64"),
            field("long_field_name", "i64"),
        ],
        None,
        false,
    );
    let cfg = data.first().copied().unwrap_or(0);
    let precision = [Precision::Ns, Precision::Us, Precision::Ms, Precision::S][cfg as usize & 3];
    let measurement = (cfg & 4 != 0).then_some("m");
    let mut decoder = LpDecoder::new(&schema, measurement, precision);
    // Small limits so the full-batch and symbol-limit paths are reached.
    let mut symbols = Interner::new(8);
    let mut batch = Batch::new(&schema, 4);

    let check = |batch: &Batch, symbols: &Interner| {
        for r in 0..batch.len() {
            for c in 0..schema.fields.len() {
                if let Value::Str(s) = batch.value(r, c, symbols) {
                    assert!(std::str::from_utf8(s).is_ok(), "text is UTF-8");
                }
            }
            let ts = schema.ts_index.expect("fuzz schema has ts");
            assert!(matches!(batch.value(r, ts, symbols), Value::Ts(_)));
        }
    };
    let (mut accepted, mut rows) = (0usize, 0usize);
    for line in data.split(|&c| c == b'\n') {
        if batch.is_full() {
            check(&batch, &symbols);
            rows += batch.len();
            batch.clear();
        }
        let before = (batch.len(), batch.arena.len(), batch.ts_defaulted);
        let mut cx = DecodeCx {
            schema: &schema,
            symbols: &mut symbols,
            now_ns: 7,
        };
        match decoder.decode(line, &mut batch, &mut cx) {
            Ok(true) => {
                accepted += 1;
                assert_eq!(batch.len(), before.0 + 1);
            }
            Ok(false) | Err(_) => {
                let after = (batch.len(), batch.arena.len(), batch.ts_defaulted);
                assert_eq!(after, before, "a dropped line leaves no trace");
            }
        }
    }
    check(&batch, &symbols);
    rows += batch.len();
    assert_eq!(rows, accepted, "one row per accepted line");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::frame::LineScan;
    use crate::codec::schema::{Field, parse_type};
    use crate::codec::{Decoder, DecoderSpec, Format, Value};
    use proptest::prelude::*;

    fn schema(fields: &[(&str, &str, bool)]) -> Schema {
        Schema::new(
            "t",
            fields
                .iter()
                .map(|&(name, ty, required)| {
                    let (ty, wire) = parse_type(ty).unwrap();
                    Field {
                        name: name.into(),
                        ty,
                        wire,
                        offset: None,
                        required,
                    }
                })
                .collect(),
            None,
            false,
        )
    }

    const WORKLOAD: &[u8] =
        b"sensors,device=d-0042,site=plant-3 temp=21.53,hum=40.21,battery=87i 1732492800000000000";
    const NOW: u64 = 1_000;

    fn sensor_schema() -> Schema {
        schema(&[
            ("ts", "timestamp", false),
            ("device", "symbol", false),
            ("site", "symbol", false),
            ("temp", "f64", false),
            ("hum", "f64", false),
            ("battery", "i64", false),
        ])
    }

    /// Every numeric and text type, for value tests.
    fn all_types() -> Schema {
        schema(&[
            ("ts", "timestamp", false),
            ("f", "f64", false),
            ("i", "i64", false),
            ("u", "u64", false),
            ("b", "bool", false),
            ("s", "string", false),
            ("y", "symbol", false),
            ("at", "timestamp", false),
        ])
    }

    /// A decoder, a batch and a symbol table for one schema.
    struct H {
        s: Schema,
        d: LpDecoder,
        b: Batch,
        sym: Interner,
    }

    impl H {
        fn new(s: Schema) -> H {
            H::with(s, None, Precision::Ns)
        }

        fn with(s: Schema, measurement: Option<&str>, p: Precision) -> H {
            let d = LpDecoder::new(&s, measurement, p);
            let b = Batch::new(&s, 8);
            H {
                s,
                d,
                b,
                sym: Interner::new(1024),
            }
        }

        fn decode(&mut self, line: &[u8]) -> Result<bool, Reject> {
            self.b.clear();
            let mut cx = DecodeCx {
                schema: &self.s,
                symbols: &mut self.sym,
                now_ns: NOW,
            };
            self.d.decode(line, &mut self.b, &mut cx)
        }

        /// Decodes `line`, which must give one row.
        #[track_caller]
        fn ok(&mut self, line: &[u8]) -> &mut H {
            let r = self.decode(line);
            assert_eq!(r, Ok(true), "{}", String::from_utf8_lossy(line));
            assert_eq!(self.b.len(), 1);
            self
        }

        /// Decodes `line`, which must be rejected without a trace.
        #[track_caller]
        fn err(&mut self, line: &[u8]) -> Reject {
            let r = self.decode(line);
            let e = r.expect_err(&String::from_utf8_lossy(line));
            assert_eq!(self.b.len(), 0);
            assert!(self.b.arena.is_empty());
            e
        }

        #[track_caller]
        fn reason(&mut self, line: &[u8]) -> Reason {
            self.err(line).reason
        }

        /// Field `name` of the only row.
        fn get(&self, name: &str) -> Value<'_> {
            let c = self.s.index_of(name).expect("field in schema");
            self.b.value(0, c, &self.sym)
        }

        fn idx(&self, name: &str) -> Option<u16> {
            self.s.index_of(name).map(|i| i as u16)
        }
    }

    #[test]
    fn workload_line() {
        let mut h = H::new(sensor_schema());
        h.ok(WORKLOAD);
        assert_eq!(h.get("ts"), Value::Ts(1_732_492_800_000_000_000));
        assert_eq!(h.get("device"), Value::Str(b"d-0042"));
        assert_eq!(h.get("site"), Value::Str(b"plant-3"));
        assert_eq!(h.get("temp"), Value::F64(21.53));
        assert_eq!(h.get("hum"), Value::F64(40.21));
        assert_eq!(h.get("battery"), Value::I64(87));
        assert_eq!(h.b.ts_defaulted, 0);
        // Same again (predicted key positions), then another order.
        h.ok(WORKLOAD);
        assert_eq!(h.get("battery"), Value::I64(87));
        h.ok(b"sensors,site=plant-1,device=d-0001 battery=1i,hum=2,temp=3");
        assert_eq!(h.get("device"), Value::Str(b"d-0001"));
        assert_eq!(h.get("site"), Value::Str(b"plant-1"));
        assert_eq!(h.get("temp"), Value::F64(3.0));
        assert_eq!(h.get("battery"), Value::I64(1));
        assert_eq!(h.get("ts"), Value::Ts(NOW as i64), "defaulted");
        assert_eq!(h.b.ts_defaulted, 1);
    }

    #[test]
    fn several_rows_in_one_batch() {
        let s = sensor_schema();
        let mut d = LpDecoder::new(&s, None, Precision::Ns);
        let mut b = Batch::new(&s, 4);
        let mut sym = Interner::new(16);
        let mut cx = DecodeCx {
            schema: &s,
            symbols: &mut sym,
            now_ns: 0,
        };
        assert_eq!(d.decode(WORKLOAD, &mut b, &mut cx), Ok(true));
        assert!(d.decode(b"sensors temp=x", &mut b, &mut cx).is_err());
        assert_eq!(d.decode(b"# comment", &mut b, &mut cx), Ok(false));
        assert_eq!(d.decode(b"sensors temp=2", &mut b, &mut cx), Ok(true));
        assert_eq!(b.len(), 2);
        assert_eq!(b.value(1, 3, &sym), Value::F64(2.0));
        assert_eq!(b.value(1, 1, &sym), Value::Null);
    }

    #[test]
    fn blank_and_comment_lines() {
        let mut h = H::new(sensor_schema());
        for line in [
            &b""[..],
            b"   ",
            b"\t \r",
            b"#",
            b"# sensors temp=1",
            b"  \t# x",
        ] {
            assert_eq!(h.decode(line), Ok(false), "{line:?}");
            assert_eq!(h.b.len(), 0);
        }
        // Leading and trailing whitespace around a record.
        h.ok(b"  \tsensors temp=1.5 \t\r");
        assert_eq!(h.get("temp"), Value::F64(1.5));
        h.ok(b"sensors temp=1.5 123  ");
        assert_eq!(h.get("ts"), Value::Ts(123));
        // Several spaces between sections.
        h.ok(b"sensors,site=a   temp=2    7");
        assert_eq!(h.get("ts"), Value::Ts(7));
        assert_eq!(h.get("site"), Value::Str(b"a"));
    }

    #[test]
    fn bools_all_spellings() {
        let mut h = H::new(all_types());
        for t in ["t", "T", "true", "True", "TRUE"] {
            h.ok(format!("m b={t}").as_bytes());
            assert_eq!(h.get("b"), Value::Bool(true), "{t}");
        }
        for f in ["f", "F", "false", "False", "FALSE"] {
            h.ok(format!("m b={f}").as_bytes());
            assert_eq!(h.get("b"), Value::Bool(false), "{f}");
        }
        for bad in ["tRUE", "yes", "1b", "truee", "fa"] {
            assert_eq!(h.reason(format!("m b={bad}").as_bytes()), Reason::Malformed);
        }
        // Numbers are not bools, bools are not numbers or strings.
        let e = h.err(b"m b=1i");
        assert_eq!((e.reason, e.field), (Reason::TypeMismatch, h.idx("b")));
        assert_eq!(h.reason(b"m b=1"), Reason::TypeMismatch);
        assert_eq!(h.reason(b"m b=\"true\""), Reason::TypeMismatch);
        assert_eq!(h.reason(b"m f=true"), Reason::TypeMismatch);
        assert_eq!(h.reason(b"m i=t"), Reason::TypeMismatch);
        assert_eq!(h.reason(b"m s=t"), Reason::TypeMismatch);
    }

    #[test]
    fn into_f64() {
        let mut h = H::new(all_types());
        for (v, want) in [
            ("1", 1.0),
            ("-1.5", -1.5),
            ("1e3", 1000.0),
            ("2E-2", 0.02),
            (".5", 0.5),
            ("+3.25", 3.25),
            ("-0.0", -0.0),
            ("1.7976931348623157e308", f64::MAX),
            ("5e-324", 5e-324),
            ("12i", 12.0),
            ("-9223372036854775808i", i64::MIN as f64),
            ("18446744073709551615u", u64::MAX as f64),
            ("Infinity", f64::INFINITY),
            ("+Infinity", f64::INFINITY),
            ("-Infinity", f64::NEG_INFINITY),
        ] {
            h.ok(format!("m f={v}").as_bytes());
            match h.get("f") {
                Value::F64(x) => assert_eq!(x.to_bits(), want.to_bits(), "{v}"),
                other => panic!("{v}: {other:?}"),
            }
        }
        h.ok(b"m f=NaN");
        assert!(matches!(h.get("f"), Value::F64(x) if x.is_nan()));
        for v in [
            "1e400",
            "-1e400",
            "9223372036854775808i",
            "18446744073709551616u",
        ] {
            let e = h.err(format!("m f={v}").as_bytes());
            assert_eq!((e.reason, e.field), (Reason::OutOfRange, h.idx("f")), "{v}");
        }
        for v in [
            "nan", "inf", "-inf", "infinity", "-NaN", "1.2.3", "0x10", "1_0", "1e", "--1",
        ] {
            let e = h.err(format!("m f={v}").as_bytes());
            assert_eq!((e.reason, e.field), (Reason::Malformed, h.idx("f")), "{v}");
        }
    }

    #[test]
    fn into_i64() {
        let mut h = H::new(all_types());
        for (v, want) in [
            ("0i", 0),
            ("-5i", -5),
            ("+5i", 5),
            ("9223372036854775807i", i64::MAX),
            ("-9223372036854775808i", i64::MIN),
            ("7u", 7),
            ("9223372036854775807u", i64::MAX),
        ] {
            h.ok(format!("m i={v}").as_bytes());
            assert_eq!(h.get("i"), Value::I64(want), "{v}");
        }
        for v in [
            "9223372036854775808i",
            "-9223372036854775809i",
            "99999999999999999999999i",
            "9223372036854775808u",
            "18446744073709551615u",
            "-1u",
        ] {
            let e = h.err(format!("m i={v}").as_bytes());
            assert_eq!((e.reason, e.field), (Reason::OutOfRange, h.idx("i")), "{v}");
        }
        // Strict like InfluxDB's schema: a float is not an integer.
        for v in ["1", "1.0", "NaN", "-Infinity"] {
            let e = h.err(format!("m i={v}").as_bytes());
            assert_eq!(
                (e.reason, e.field),
                (Reason::TypeMismatch, h.idx("i")),
                "{v}"
            );
        }
        for v in ["i", "-i", "1.5i", "1e3i", "0x1i", "1ii", " 1i"] {
            assert_eq!(
                h.reason(format!("m i={v}").as_bytes()),
                Reason::Malformed,
                "{v}"
            );
        }
    }

    #[test]
    fn into_u64() {
        let mut h = H::new(all_types());
        for (v, want) in [
            ("0u", 0),
            ("18446744073709551615u", u64::MAX),
            ("-0u", 0),
            ("5i", 5),
            ("9223372036854775807i", i64::MAX as u64),
        ] {
            h.ok(format!("m u={v}").as_bytes());
            assert_eq!(h.get("u"), Value::U64(want), "{v}");
        }
        for v in [
            "18446744073709551616u",
            "-1u",
            "-1i",
            "-9223372036854775808i",
        ] {
            let e = h.err(format!("m u={v}").as_bytes());
            assert_eq!((e.reason, e.field), (Reason::OutOfRange, h.idx("u")), "{v}");
        }
        assert_eq!(h.reason(b"m u=1"), Reason::TypeMismatch);
        assert_eq!(h.reason(b"m u=\"1\""), Reason::TypeMismatch);
        assert_eq!(h.reason(b"m u=u"), Reason::Malformed);
        assert_eq!(h.reason(b"m u=1.5u"), Reason::Malformed);
    }

    #[test]
    fn strings_and_symbols() {
        let mut h = H::new(all_types());
        h.ok(br#"m s="hello world, a=b",y="sym bol""#);
        assert_eq!(h.get("s"), Value::Str(b"hello world, a=b"));
        assert_eq!(h.get("y"), Value::Str(b"sym bol"));
        h.ok(br#"m s="""#);
        assert_eq!(h.get("s"), Value::Str(b""));
        h.ok("m s=\"h\u{e9}\u{1f600}\"".as_bytes());
        assert_eq!(h.get("s"), Value::Str("h\u{e9}\u{1f600}".as_bytes()));
        // Escapes: \" and \\ resolve, other backslashes are literal.
        h.ok(br#"m s="a\"b\\c\d\,e\ f\=""#);
        assert_eq!(h.get("s"), Value::Str(br#"a"b\c\d\,e\ f\="#));
        h.ok(br#"m y="q\"q""#);
        assert_eq!(h.get("y"), Value::Str(b"q\"q"));
        // A string may end in an escaped backslash.
        h.ok(br#"m s="x\\",i=1i"#);
        assert_eq!(h.get("s"), Value::Str(b"x\\"));
        assert_eq!(h.get("i"), Value::I64(1));
        // Quoted newlines, raw and escaped, as clients send them.
        h.ok(b"m s=\"line1\nline2\\\nline3\" 5");
        assert_eq!(h.get("s"), Value::Str(b"line1\nline2\nline3"));
        assert_eq!(h.get("ts"), Value::Ts(5));
        // Quote-free strings do not unescape (the line has a backslash
        // elsewhere here, so the slow path runs too).
        h.ok(br#"m\,x s="plain""#);
        assert_eq!(h.get("s"), Value::Str(b"plain"));
        // Not UTF-8.
        let e = h.err(b"m s=\"\xff\"");
        assert_eq!((e.reason, e.field), (Reason::InvalidUtf8, h.idx("s")));
        let e = h.err(b"m y=\"\xc3\"");
        assert_eq!((e.reason, e.field), (Reason::InvalidUtf8, h.idx("y")));
        // A bad string after a good one leaves nothing in the arena.
        let e = h.err(b"m s=\"good\",f=x");
        assert_eq!(e.reason, Reason::Malformed);
        // Strings go only into text and timestamp fields.
        let e = h.err(br#"m f="1.5""#);
        assert_eq!((e.reason, e.field), (Reason::TypeMismatch, h.idx("f")));
        assert_eq!(h.reason(br#"m b="t""#), Reason::TypeMismatch);
        // Unquoted values do not go into text fields.
        assert_eq!(h.reason(b"m s=1i"), Reason::TypeMismatch);
        assert_eq!(h.reason(b"m y=1.5"), Reason::TypeMismatch);
        assert_eq!(h.reason(b"m s=abc"), Reason::Malformed);
    }

    #[test]
    fn timestamp_fields() {
        let mut h = H::new(all_types());
        h.ok(br#"m at="2024-11-25T00:00:00Z""#);
        assert_eq!(h.get("at"), Value::Ts(1_732_492_800_000_000_000));
        h.ok(b"m at=-5i");
        assert_eq!(h.get("at"), Value::Ts(-5));
        h.ok(b"m at=9223372036854775807u");
        assert_eq!(h.get("at"), Value::Ts(i64::MAX));
        for v in [
            &br#""2024-13-01T00:00:00Z""#[..],
            br#""yesterday""#,
            b"9223372036854775808u",
            b"9223372036854775808i",
        ] {
            let mut line = b"m at=".to_vec();
            line.extend_from_slice(v);
            let e = h.err(&line);
            assert_eq!((e.reason, e.field), (Reason::BadTimestamp, h.idx("at")));
        }
        assert_eq!(h.reason(b"m at=1.5"), Reason::TypeMismatch);
        assert_eq!(h.reason(b"m at=t"), Reason::TypeMismatch);
        // `ts` named as a field; the line timestamp, coming last, wins.
        h.ok(b"m ts=5i");
        assert_eq!(h.get("ts"), Value::Ts(5));
        assert_eq!(h.b.ts_defaulted, 0);
        h.ok(b"m ts=5i 6");
        assert_eq!(h.get("ts"), Value::Ts(6));
    }

    #[test]
    fn tags_into_text_fields_only() {
        let mut h = H::new(all_types());
        h.ok(b"m,y=sym,s=str b=t");
        assert_eq!(h.get("y"), Value::Str(b"sym"));
        assert_eq!(h.get("s"), Value::Str(b"str"));
        for tag in ["f", "i", "u", "b", "ts", "at"] {
            let e = h.err(format!("m,{tag}=1 b=t").as_bytes());
            assert_eq!((e.reason, e.field), (Reason::TypeMismatch, h.idx(tag)));
        }
        let e = h.err(b"m,y=\xfe b=t");
        assert_eq!((e.reason, e.field), (Reason::InvalidUtf8, h.idx("y")));
        let e = h.err(b"m,s=a\xfe b=t");
        assert_eq!((e.reason, e.field), (Reason::InvalidUtf8, h.idx("s")));
        // Unknown keys and bytes in them are not checked.
        h.ok(b"m\xff,other=\xff b=t");
        assert_eq!(h.get("b"), Value::Bool(true));
    }

    #[test]
    fn symbol_limit() {
        let s = sensor_schema();
        let mut h = H::new(s);
        h.sym = Interner::new(2);
        h.ok(b"sensors,device=a temp=1");
        h.ok(b"sensors,device=b temp=1");
        let e = h.err(b"sensors,device=c temp=1");
        assert_eq!((e.reason, e.field), (Reason::SymbolLimit, h.idx("device")));
        h.ok(b"sensors,device=a temp=1");
        let e = h.err(br#"sensors temp=1,device="z""#);
        assert_eq!(e.reason, Reason::SymbolLimit);
    }

    #[test]
    fn escapes_in_names() {
        let s = schema(&[
            ("ts", "timestamp", false),
            ("tag key", "symbol", false),
            ("t,=\\", "string", false),
            ("field key", "f64", false),
            ("f,=\\\n", "i64", false),
            ("v", "symbol", false),
        ]);
        let mut h = H::with(s, Some("my meas,ure=ment\\"), Precision::Ns);
        h.ok(
            b"my\\ meas\\,ure=ment\\\\,tag\\ key=a\\ b\\,c\\=d\\\\e,t\\,\\=\\\\=x\\ny\\\nz \
              field\\ key=1.5,f\\,\\=\\\\\\\n=2i 9",
        );
        assert_eq!(h.get("tag key"), Value::Str(b"a b,c=d\\e"));
        assert_eq!(h.get("t,=\\"), Value::Str(b"x\\ny\nz"));
        assert_eq!(h.get("field key"), Value::F64(1.5));
        assert_eq!(h.get("f,=\\\n"), Value::I64(2));
        assert_eq!(h.get("ts"), Value::Ts(9));
        // Escaped `=` optional in the measurement; a backslash before any
        // other byte is literal, in names and values alike.
        h.ok(b"my\\ meas\\,ure\\=ment\\\\ field\\ key=1");
        h.ok(b"my\\ meas\\,ure=ment\\\\,v=\\a\\b field\\ key=1");
        assert_eq!(h.get("v"), Value::Str(b"\\a\\b"));
        // An escaped newline in a tag value (the framer kept the line whole).
        h.ok(b"my\\ meas\\,ure=ment\\\\,v=one\\\ntwo field\\ key=1");
        assert_eq!(h.get("v"), Value::Str(b"one\ntwo"));
        // Other measurements, escaped or not, are skipped.
        for other in [&b"my meas,ure=ment\\ f=1"[..], b"my\\ meas f=1", b"x f=1"] {
            assert_eq!(h.reason(other), Reason::Skipped);
        }
    }

    #[test]
    fn escaped_newline_in_measurement() {
        let s = schema(&[("f", "f64", false)]);
        let mut h = H::with(s, Some("a\nb,c"), Precision::Ns);
        h.ok(b"a\\\nb\\,c f=1");
        assert_eq!(
            h.reason(b"a\\nb\\,c f=1"),
            Reason::Skipped,
            "literal backslash-n"
        );
    }

    #[test]
    fn wired_into_codec_decoder() {
        let s = sensor_schema();
        let spec = DecoderSpec {
            format: Format::Lp,
            measurement: Some("sensors".into()),
            precision: Precision::Ms,
            columns: vec![],
        };
        let mut d = Decoder::new(&spec, &s);
        let mut b = Batch::new(&s, 4);
        let mut sym = Interner::new(16);
        let mut cx = DecodeCx {
            schema: &s,
            symbols: &mut sym,
            now_ns: 0,
        };
        assert_eq!(
            d.decode_line(b"sensors temp=1 5", &mut b, &mut cx),
            Ok(true)
        );
        assert_eq!(
            d.decode_line(b"other temp=1", &mut b, &mut cx),
            Err(Reject::new(Reason::Skipped))
        );
        assert_eq!(b.value(0, 0, &sym), Value::Ts(5_000_000));
    }

    #[test]
    fn escaped_delimiters_do_not_split() {
        let s = schema(&[("a", "string", false), ("b", "f64", false)]);
        let mut h = H::new(s);
        h.ok(b"m\\ x\\,y,a=p\\,q\\ r b=1");
        assert_eq!(h.get("a"), Value::Str(b"p,q r"));
        assert_eq!(h.get("b"), Value::F64(1.0));
        // A trailing backslash in a tag value escapes the space after it,
        // so the tag set never ends.
        assert_eq!(h.reason(b"m,a=x\\ b=1"), Reason::Malformed);
        // An escaped quote in the measurement or a key is just a quote.
        h.ok(b"m\"\\\",a=\"q\" b=2");
        assert_eq!(h.get("a"), Value::Str(b"\"q\""));
        // A key ending in a literal backslash.
        let s = schema(&[("k\\", "f64", false)]);
        let mut h = H::new(s);
        h.ok(b"m k\\\\=1");
        assert_eq!(h.get("k\\"), Value::F64(1.0));
    }

    #[test]
    fn measurement_filter() {
        let mut h = H::with(sensor_schema(), Some("sensors"), Precision::Ns);
        h.ok(WORKLOAD);
        for line in [
            &b"sensor temp=1"[..],
            b"sensorsx temp=1",
            b"Sensors temp=1",
            b"other,device=x temp=1",
        ] {
            let e = h.err(line);
            assert_eq!((e.reason, e.field), (Reason::Skipped, None));
        }
        // A line that is no record at all is malformed, whatever its name.
        assert_eq!(h.reason(b"other"), Reason::Malformed);
        // Comments and blanks are not records of another measurement.
        assert_eq!(h.decode(b"# other f=1"), Ok(false));
    }

    #[test]
    fn precision() {
        let cases = [
            (
                Precision::Ns,
                1_732_492_800_000_000_000i64,
                1_732_492_800_000_000_000i64,
            ),
            (
                Precision::Us,
                1_732_492_800_000_000,
                1_732_492_800_000_000_000,
            ),
            (Precision::Ms, 1_732_492_800_000, 1_732_492_800_000_000_000),
            (Precision::S, 1_732_492_800, 1_732_492_800_000_000_000),
            (Precision::S, -1, -1_000_000_000),
            (Precision::Ns, i64::MIN, i64::MIN),
            (Precision::Ns, i64::MAX, i64::MAX),
            (
                Precision::S,
                i64::MAX / 1_000_000_000,
                i64::MAX / 1_000_000_000 * 1_000_000_000,
            ),
            (
                Precision::Ms,
                i64::MIN / 1_000_000,
                i64::MIN / 1_000_000 * 1_000_000,
            ),
        ];
        for (p, t, want) in cases {
            let mut h = H::with(sensor_schema(), None, p);
            h.ok(format!("sensors temp=1 {t}").as_bytes());
            assert_eq!(h.get("ts"), Value::Ts(want), "{p:?} {t}");
        }
        for (p, t) in [
            (Precision::S, (i64::MAX / 1_000_000_000 + 1).to_string()),
            (Precision::S, (i64::MIN / 1_000_000_000 - 1).to_string()),
            (Precision::Ms, (i64::MAX / 1_000_000 + 1).to_string()),
            (Precision::Us, (i64::MIN / 1_000 - 1).to_string()),
            (Precision::Ns, "9223372036854775808".to_string()),
            (Precision::Ns, "-9223372036854775809".to_string()),
            (Precision::Ns, "1.5".to_string()),
            (Precision::Ns, "1i".to_string()),
            (Precision::Ns, "12a".to_string()),
            (Precision::Ns, "-".to_string()),
            (Precision::Ns, "2024-11-25T00:00:00Z".to_string()),
        ] {
            let mut h = H::with(sensor_schema(), None, p);
            let e = h.err(format!("sensors temp=1 {t}").as_bytes());
            assert_eq!(
                (e.reason, e.field),
                (Reason::BadTimestamp, h.idx("ts")),
                "{t}"
            );
        }
        // A second field set is no timestamp.
        let mut h = H::with(sensor_schema(), None, Precision::Ns);
        assert_eq!(h.reason(b"sensors temp=1 hum=1"), Reason::BadTimestamp);
        // Without a `ts` field the timestamp is still checked, then dropped.
        let mut h = H::new(schema(&[("f", "f64", false)]));
        h.ok(b"m f=1 123");
        assert_eq!(h.reason(b"m f=1 x"), Reason::BadTimestamp);
    }

    #[test]
    fn required_fields() {
        let s = schema(&[
            ("ts", "timestamp", false),
            ("device", "symbol", true),
            ("temp", "f64", true),
            ("note", "string", false),
        ]);
        let mut h = H::new(s);
        h.ok(b"m,device=d temp=1");
        let e = h.err(b"m temp=1");
        assert_eq!((e.reason, e.field), (Reason::MissingField, h.idx("device")));
        let e = h.err(b"m,device=d note=\"x\"");
        assert_eq!((e.reason, e.field), (Reason::MissingField, h.idx("temp")));
        // Arena bytes of the rejected row are given back.
        let e = h.err(b"m,device=d note=\"long note\",other=1");
        assert_eq!(e.reason, Reason::MissingField);
    }

    #[test]
    fn unknown_keys_skipped_but_checked() {
        let mut h = H::new(sensor_schema());
        h.ok(b"sensors,region=eu,device=d1 a=1,b=\"str\",c=t,d=1i,e=2u,temp=5,f=NaN 1");
        assert_eq!(h.get("device"), Value::Str(b"d1"));
        assert_eq!(h.get("temp"), Value::F64(5.0));
        assert_eq!(h.get("hum"), Value::Null);
        assert_eq!(h.get("site"), Value::Null);
        // Only unknown fields: a row of nulls with a defaulted ts.
        h.ok(b"sensors x=1");
        assert_eq!(h.get("temp"), Value::Null);
        assert_eq!(h.get("ts"), Value::Ts(NOW as i64));
        // Out of range is about a field's type; unknown fields have none.
        h.ok(b"sensors x=99999999999999999999i,y=-1u,z=1e999");
        // Bad syntax is bad wherever it is.
        assert_eq!(h.reason(b"sensors x=abc"), Reason::Malformed);
        assert_eq!(h.reason(b"sensors x=\"open"), Reason::Malformed);
        // Bad bytes in unknown values are not looked at.
        h.ok(b"sensors,x=\xff y=\"\xff\"");
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let mut h = H::new(all_types());
        h.ok(b"m,y=a,y=b f=1,f=2,s=\"first\",s=\"second\"");
        assert_eq!(h.get("y"), Value::Str(b"b"));
        assert_eq!(h.get("f"), Value::F64(2.0));
        assert_eq!(h.get("s"), Value::Str(b"second"));
        h.ok(b"m,s=tag s=\"field\"");
        assert_eq!(h.get("s"), Value::Str(b"field"));
        // A later bad duplicate still rejects the record.
        assert_eq!(h.reason(b"m f=1,f=x"), Reason::Malformed);
    }

    #[test]
    fn malformed_lines() {
        let mut h = H::new(all_types());
        for line in [
            &b"m"[..],         // no field set
            b"m,y=a",          // no field set after tags
            b"m ",             // trailing space only
            b",y=a f=1",       // no measurement
            b" ,y=a f=1",      // no measurement after whitespace
            b"m f",            // missing =
            b"m f=",           // key= without value
            b"m f= 1",         // empty value before timestamp
            b"m f=,i=1i",      // empty value before next field
            b"m =1",           // empty field key
            b"m f=1,",         // trailing comma
            b"m f=1, 5",       // trailing comma before timestamp
            b"m f=1,,i=1i",    // empty field
            b"m f=1 5 6",      // junk after the timestamp
            b"m f=1 5\t6",     // junk after the timestamp, tab
            b"m,=a f=1",       // empty tag key
            b"m,y= f=1",       // empty tag value
            b"m,y=,s=a f=1",   // empty tag value before next tag
            b"m,y f=1",        // tag without =
            b"m,y=a=b f=1",    // unescaped = in a tag value
            b"m,y=a, f=1",     // trailing comma in tag set
            b"m,,y=a f=1",     // empty tag
            b"m f=\"open",     // unterminated string
            b"m f=\"open\\\"", // escaped closing quote
            b"m s=\"a\"b",     // junk after a string
            b"m s=\"a\"\"b\"", // two strings
            b"m f=1\"",        // stray quote
            b"m f=1\\ 2",      // backslash in an unquoted value
            b"m f=1.0.0",      // not a number
            b"m\\ ",           // escaped space then end
            b"m s=\"abc\\",    // backslash at end of string
        ] {
            let e = h.err(line);
            assert_eq!(
                e.reason,
                Reason::Malformed,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn no_allocation_after_warm_up() {
        // The decoder's only buffer keeps its capacity across lines.
        let mut h = H::new(all_types());
        h.ok(b"m\\ x,y=a\\ b s=\"a\\\"b\"");
        let cap = h.d.scratch.capacity();
        for _ in 0..100 {
            h.ok(b"m\\ x,y=a\\ b s=\"a\\\"b\",y=\"c\\\\d\"");
        }
        assert_eq!(h.d.scratch.capacity(), cap);
    }

    #[test]
    fn prediction_tolerates_reordering_and_many_keys() {
        let names: Vec<String> = (0..64).map(|i| format!("field_number_{i}")).collect();
        let fields: Vec<(&str, &str, bool)> =
            names.iter().map(|n| (n.as_str(), "i64", false)).collect();
        let mut h = H::new(schema(&fields));
        let mut fwd = String::from("m ");
        let mut rev = String::from("m ");
        for i in 0..64 {
            fwd.push_str(&format!("field_number_{i}={i}i,"));
            rev.push_str(&format!("field_number_{}={}i,", 63 - i, 63 - i));
        }
        fwd.pop();
        rev.pop();
        for line in [&fwd, &rev, &fwd] {
            h.ok(line.as_bytes());
            for (i, n) in names.iter().enumerate() {
                assert_eq!(h.get(n), Value::I64(i as i64));
            }
        }
    }

    // ---- property: encode random records, decode them back exactly ----

    #[derive(Clone, Debug)]
    enum Val {
        F(f64),
        I(i64),
        U(u64),
        B(bool, usize),
        S(String, bool),
        Rfc(i64),
    }

    #[derive(Clone, Debug)]
    struct Record {
        measurement: String,
        /// (schema field or unknown key, value)
        tags: Vec<(String, String)>,
        fields: Vec<(String, Val)>,
        ts: Option<i64>,
        precision: usize,
    }

    const PRECISIONS: [Precision; 4] = [Precision::Ns, Precision::Us, Precision::Ms, Precision::S];

    fn prop_schema() -> Schema {
        schema(&[
            ("ts", "timestamp", false),
            ("host", "symbol", false),
            ("r,e=g i\\on", "symbol", false),
            ("note", "string", false),
            ("f", "f64", false),
            ("n i", "i64", false),
            ("u", "u64", false),
            ("b", "bool", false),
            ("s,=", "string", false),
            ("sym", "symbol", false),
            ("when", "timestamp", false),
        ])
    }

    fn text() -> impl Strategy<Value = String> {
        "[a-z0-9 ,=\\\\\"\n\r#\u{e9}\u{1f600}]{0,8}"
    }

    fn escape_name(s: &str, escape_eq: bool, out: &mut String) {
        for c in s.chars() {
            if matches!(c, ',' | ' ' | '\\' | '\n') || (c == '=' && escape_eq) {
                out.push('\\');
            }
            out.push(c);
        }
    }

    const BOOLS: [(&str, bool); 10] = [
        ("t", true),
        ("T", true),
        ("true", true),
        ("True", true),
        ("TRUE", true),
        ("f", false),
        ("F", false),
        ("false", false),
        ("False", false),
        ("FALSE", false),
    ];

    fn encode(r: &Record) -> String {
        let mut line = String::new();
        escape_name(&r.measurement, r.measurement.len() % 2 == 0, &mut line);
        for (k, v) in &r.tags {
            line.push(',');
            escape_name(k, true, &mut line);
            line.push('=');
            escape_name(v, true, &mut line);
        }
        line.push(' ');
        for (i, (k, v)) in r.fields.iter().enumerate() {
            if i > 0 {
                line.push(',');
            }
            escape_name(k, true, &mut line);
            line.push('=');
            match v {
                Val::F(x) if x.is_nan() => line.push_str("NaN"),
                Val::F(x) if x.is_infinite() => {
                    line.push_str(if *x > 0.0 { "Infinity" } else { "-Infinity" })
                }
                // Both renderings: `{}` prints integral values without a
                // point (`1` is a float in line protocol), `{:?}` exponents.
                Val::F(x) if x.to_bits() % 2 == 0 => line.push_str(&format!("{x}")),
                Val::F(x) => line.push_str(&format!("{x:?}")),
                Val::I(x) => line.push_str(&format!("{x}i")),
                Val::U(x) => line.push_str(&format!("{x}u")),
                Val::B(_, spelling) => line.push_str(BOOLS[*spelling].0),
                Val::S(s, escape_newlines) => {
                    line.push('"');
                    for c in s.chars() {
                        if matches!(c, '"' | '\\') || (c == '\n' && *escape_newlines) {
                            line.push('\\');
                        }
                        line.push(c);
                    }
                    line.push('"');
                }
                Val::Rfc(ns) => {
                    line.push('"');
                    line.push_str(&crate::codec::time::format_rfc3339(*ns));
                    line.push('"');
                }
            }
        }
        if let Some(ts) = r.ts {
            line.push(' ');
            line.push_str(&ts.to_string());
        }
        line
    }

    fn record() -> impl Strategy<Value = Record> {
        let measurement = text().prop_map(|m| {
            // A leading `#` would make a comment, a leading CR would be
            // trimmed as whitespace, an empty one is no record.
            if m.is_empty() || m.starts_with(['#', '\r']) {
                format!("m{m}")
            } else {
                m
            }
        });
        let tag_names = prop_oneof![
            Just("host".to_string()),
            Just("r,e=g i\\on".to_string()),
            Just("note".to_string()),
            text().prop_map(|s| format!("x{s}")),
        ];
        let tags = prop::collection::vec((tag_names, text().prop_map(|v| format!("{v}v"))), 0..4);
        let float = prop_oneof![
            any::<f64>(),
            -1e6..1e6f64,
            (-1000i64..1000).prop_map(|x| x as f64),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
        ];
        let field = prop_oneof![
            float.prop_map(|x| ("f".to_string(), Val::F(x))),
            any::<i64>().prop_map(|x| ("n i".to_string(), Val::I(x))),
            any::<u64>().prop_map(|x| ("u".to_string(), Val::U(x))),
            (any::<bool>(), 0..5usize).prop_map(|(b, s)| {
                let spelling = if b { s } else { s + 5 };
                ("b".to_string(), Val::B(b, spelling))
            }),
            (text(), any::<bool>()).prop_map(|(s, e)| ("s,=".to_string(), Val::S(s, e))),
            (text(), any::<bool>()).prop_map(|(s, e)| ("sym".to_string(), Val::S(s, e))),
            any::<i64>().prop_map(|x| ("when".to_string(), Val::I(x))),
            (-5_000_000_000_000_000_000i64..5_000_000_000_000_000_000)
                .prop_map(|x| ("when".to_string(), Val::Rfc(x))),
            (text(), any::<bool>()).prop_map(|(k, e)| (format!("x{k}"), Val::S(k, e))),
            (text(), any::<i64>()).prop_map(|(k, x)| (format!("x{k}"), Val::I(x))),
        ];
        let fields = prop::collection::vec(field, 1..6);
        (measurement, tags, fields, 0..4usize, any::<Option<i64>>()).prop_map(
            |(measurement, tags, fields, precision, ts)| {
                let unit = PRECISIONS[precision].ns();
                let ts = ts.map(|t| t / unit);
                Record {
                    measurement,
                    tags,
                    fields,
                    ts,
                    precision,
                }
            },
        )
    }

    fn expect_value(h: &H, name: &str, want: &Val) {
        let got = h.get(name);
        match (want, got) {
            (Val::F(w), Value::F64(g)) if w.is_nan() => assert!(g.is_nan()),
            (Val::F(w), Value::F64(g)) => assert_eq!(w.to_bits(), g.to_bits(), "{name}"),
            (Val::I(w), Value::I64(g)) => assert_eq!(*w, g, "{name}"),
            (Val::I(w), Value::Ts(g)) => assert_eq!(*w, g, "{name}"),
            (Val::Rfc(w), Value::Ts(g)) => assert_eq!(*w, g, "{name}"),
            (Val::U(w), Value::U64(g)) => assert_eq!(*w, g, "{name}"),
            (Val::B(w, _), Value::Bool(g)) => assert_eq!(*w, g, "{name}"),
            (Val::S(w, _), Value::Str(g)) => assert_eq!(w.as_bytes(), g, "{name}"),
            (w, g) => panic!("{name}: want {w:?}, got {g:?}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn encoded_records_round_trip(r in record()) {
            let line = encode(&r);
            // The framer ends the line exactly where it ends, escaped and
            // quoted newlines notwithstanding.
            let mut framed = line.clone().into_bytes();
            framed.extend_from_slice(b"\nnext f=1\n");
            let mut scan = LineScan::for_format(Format::Lp);
            prop_assert_eq!(scan.find(&framed), Some(line.len()), "{:?}", line);

            let s = prop_schema();
            let mut h = H::with(s, Some(&r.measurement), PRECISIONS[r.precision]);
            prop_assert_eq!(h.decode(line.as_bytes()), Ok(true), "{:?}", line);
            prop_assert_eq!(h.b.len(), 1);

            // Expected: the last value of each schema field wins; fields
            // come after tags, the line timestamp after both.
            let names: Vec<String> = h.s.fields.iter().map(|f| f.name.clone()).collect();
            for f in &names {
                let tag = r.tags.iter().rev().find(|(k, _)| k == f);
                let field = r.fields.iter().rev().find(|(k, _)| k == f);
                match (field, tag) {
                    _ if f == "ts" => {
                        let want = r.ts.map_or(NOW as i64, |t| t * PRECISIONS[r.precision].ns());
                        prop_assert_eq!(h.get("ts"), Value::Ts(want));
                    }
                    (Some((_, v)), _) => expect_value(&h, f, v),
                    (None, Some((_, v))) => {
                        prop_assert_eq!(h.get(f), Value::Str(v.as_bytes()), "{:?}", line)
                    }
                    (None, None) => prop_assert_eq!(h.get(f), Value::Null, "{}", f),
                }
            }

            // Another measurement is skipped.
            let mut other = r.clone();
            other.measurement.push('x');
            prop_assert_eq!(h.decode(encode(&other).as_bytes()), Err(Reject::new(Reason::Skipped)));
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in prop::collection::vec(
            prop_oneof![
                Just(b' '), Just(b','), Just(b'='), Just(b'"'), Just(b'\\'), Just(b'\n'),
                Just(b'#'), Just(b'i'), Just(b'u'), Just(b't'), Just(b'1'), Just(b'.'),
                Just(b'm'), Just(b'f'), Just(b's'), any::<u8>(),
            ],
            0..64,
        )) {
            fuzz_one(&data);
        }
    }

    // ---- the hot-path helpers agree with their references ----

    fn bytes_from(alphabet: &'static [u8], max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(alphabet),
                1 => any::<u8>(),
            ],
            0..max,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        #[test]
        fn find_delim_is_memchr3(hay in bytes_from(b"ab=, \\", 40)) {
            prop_assert_eq!(find_delim(&hay, b'=', b',', b' '), memchr3(b'=', b',', b' ', &hay));
            prop_assert_eq!(find_delim(&hay, b',', b' ', b','), memchr2(b',', b' ', &hay));
        }

        #[test]
        fn int_is_parse_i64(s in bytes_from(b"0123456789-+", 24)) {
            prop_assert_eq!(int(&s), parse_i64(&s));
        }

        #[test]
        fn int_round_trips(x in any::<i64>()) {
            prop_assert_eq!(int(x.to_string().as_bytes()), Ok(x));
        }

        #[test]
        fn decimal_agrees_with_parse_f64(s in bytes_from(b"0123456789.-+", 20)) {
            if let Some(x) = decimal(&s) {
                let y = parse_f64(&s);
                prop_assert_eq!(Some(x.to_bits()), y.map(f64::to_bits), "{:?}", s);
            }
        }

        #[test]
        fn decimal_is_exact(m in 0u64..1_000_000_000_000_000, frac in 0usize..16, neg in any::<bool>()) {
            let digits = m.to_string();
            let s = if frac == 0 || frac > digits.len() {
                digits
            } else {
                format!("{}.{}", &digits[..digits.len() - frac], &digits[digits.len() - frac..])
            };
            let s = if neg { format!("-{s}") } else { s };
            prop_assert_eq!(
                decimal(s.as_bytes()).map(f64::to_bits),
                parse_f64(s.as_bytes()).map(f64::to_bits),
                "{}", s
            );
        }
    }

    #[test]
    fn digits8_edges() {
        for s in [
            b"00000000",
            b"99999999",
            b"12345678",
            b"00000001",
            b"10000000",
        ] {
            let want = std::str::from_utf8(s).unwrap().parse::<u64>().unwrap();
            assert_eq!(digits8(u64::from_le_bytes(*s)), Some(want));
        }
        for s in [
            b"1234567/",
            b"1234567:",
            b"a2345678",
            b"1234 678",
            b"\xff2345678",
        ] {
            let w = u64::from_le_bytes(s[..8].try_into().unwrap());
            assert_eq!(digits8(w), None, "{s:?}");
        }
    }

    #[test]
    fn fuzz_corpus_replays() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_lp");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_file() {
                fuzz_one(&std::fs::read(&path).unwrap());
            }
        }
    }

    /// `cargo test --release --lib codec::lp::tests::bench -- --ignored --nocapture`.
    /// Workload lines are decoded through a `measurement` filter, the usual
    /// source configuration.
    #[test]
    #[ignore = "timing, not a check: run in release by hand"]
    fn bench_workload_ns_per_line() {
        let s = sensor_schema();
        // The sensor workload: 1000 devices, 5 sites, varying values.
        let lines: Vec<Vec<u8>> = (0..4096u64)
            .map(|i| {
                format!(
                    "sensors,device=d-{:04},site=plant-{} temp={}.{:02},hum={}.{:02},battery={}i {}",
                    i * 7919 % 1000 + 1,
                    i % 5 + 1,
                    15 + i % 20,
                    i * 31 % 100,
                    20 + i % 60,
                    i * 17 % 100,
                    i % 101,
                    1_732_492_800_000_000_000u64 + i * 1_000_000,
                )
                .into_bytes()
            })
            .collect();
        let avg = lines.iter().map(Vec::len).sum::<usize>() as f64 / lines.len() as f64;
        for (name, set) in [("fixed", vec![WORKLOAD.to_vec()]), ("sensor", lines)] {
            let mut d = LpDecoder::new(&s, Some("sensors"), Precision::Ns);
            let mut b = Batch::new(&s, 1024);
            let mut sym = Interner::new(1 << 20);
            // LP_BENCH_LINES=20000 under callgrind gives instruction counts,
            // which a busy 2-core VM cannot disturb.
            let n: usize = std::env::var("LP_BENCH_LINES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(5_000_000);
            let mut best = f64::MAX;
            for _round in 0..5 {
                let t = std::time::Instant::now();
                // A wrapping index, not `i % len`: a division per line would
                // be a tenth of what is measured.
                let mut j = 0;
                for _ in 0..n {
                    if b.is_full() {
                        b.clear();
                    }
                    let mut cx = DecodeCx {
                        schema: &s,
                        symbols: &mut sym,
                        now_ns: 0,
                    };
                    let line = std::hint::black_box(&set[j]);
                    j += 1;
                    if j == set.len() {
                        j = 0;
                    }
                    let r = d.decode(line, &mut b, &mut cx);
                    debug_assert_eq!(r, Ok(true));
                    let _ = std::hint::black_box(r);
                }
                best = best.min(t.elapsed().as_nanos() as f64 / n as f64);
            }
            println!("lp decode {name}: {best:.1} ns/line (best of 5 x {n}; avg line {avg:.0} B)");
        }
    }
}
