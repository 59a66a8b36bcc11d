//! JSON lines: one flat object per line into one schema row.
//!
//! A hand-written scanner instead of serde_json on the hot path: the schema
//! tells which keys matter, so values under other keys are only validated,
//! never built (ECOSYSTEM.md §1: ~9.5 M lines/s vs 4.2 M for serde_json).
//!
//! Contract:
//! * Syntax is exactly serde_json's for one top-level value that is an
//!   object: whatever `serde_json::from_slice::<Value>` rejects is
//!   `Malformed` (or `InvalidUtf8` for raw non-UTF-8 bytes in a string), and
//!   so is a valid top-level value that is not an object. This includes
//!   serde_json's nesting limit (127 open containers) and its refusal of
//!   numbers that overflow `f64`. `fuzz_one` checks it differentially.
//! * Syntax errors win over value errors: a line is scanned to its end
//!   before a type error is reported, so a broken line is always
//!   `Malformed`, whatever its values. Value errors are kept per field, so
//!   with duplicate keys the last value decides (as in serde_json's `Map`);
//!   the lowest failing field index is reported.
//! * Symbols are interned only once the whole record is known to be good,
//!   so bad records never spend `max_symbols`.
//! * No allocation per record once the scratch buffers have grown to the
//!   longest escaped string seen; no recursion (nested values are skipped
//!   with a 128-bit stack).

use super::batch::{Batch, Reject, RowWriter, StrRef};
use super::num::{NumError, parse_f64, parse_i64, parse_u64};
use super::schema::{FIELDS_MAX, FieldType, Schema};
use super::time::parse_rfc3339;
use super::{DecodeCx, Interner, Reason};
use memchr::memchr;

/// Open containers allowed, the top-level object included: serde_json's
/// recursion limit of 128 rejects the 128th.
const DEPTH_MAX: u32 = 127;

/// Decoder for one JSON schema; holds only reusable scratch state.
pub struct JsonDecoder {
    /// Field names by schema index.
    names: Vec<Name>,
    tys: Vec<FieldType>,
    /// The field tried first for the next key: keys usually arrive in the
    /// same order on every line, so one comparison finds most of them.
    hint: usize,
    /// An unescaped key (keys with a backslash only).
    key: Vec<u8>,
    /// Unescaped symbols awaiting interning, and unescaped timestamps.
    scratch: Vec<u8>,
    defer: Deferred,
}

impl JsonDecoder {
    pub fn new(schema: &Schema) -> JsonDecoder {
        JsonDecoder {
            names: schema.fields.iter().map(|f| Name::new(&f.name)).collect(),
            tys: schema.fields.iter().map(|f| f.ty).collect(),
            hint: 0,
            key: Vec::new(),
            scratch: Vec::new(),
            defer: Deferred::new(),
        }
    }

    /// Decodes one line into a new row of `out`. `Ok(false)`: the line is
    /// blank (JSON whitespace only).
    ///
    /// # Errors
    /// The record is dropped with the [`Reject`]; `out` is left as it was.
    ///
    /// # Panics
    /// If `out` is full (callers flush first).
    pub fn decode(
        &mut self,
        line: &[u8],
        out: &mut Batch,
        cx: &mut DecodeCx<'_>,
    ) -> Result<bool, Reject> {
        let s = line;
        let mut i = ws(s, 0);
        match s.get(i) {
            None => return Ok(false),
            Some(b'{') => i = ws(s, i + 1),
            Some(_) => return Err(malformed()),
        }
        self.scratch.clear();
        self.defer.reset();
        let mut row = out.row();
        if s.get(i) == Some(&b'}') {
            i += 1;
        } else {
            loop {
                let field = match self.names.get(self.hint).and_then(|n| n.prefix(s, i)) {
                    // NB: keys usually come in schema order and compact:
                    // one 16-byte compare reads `"name":`.
                    Some(end) => {
                        let f = self.hint;
                        self.hint = next_hint(f, self.names.len());
                        i = end;
                        Some(f)
                    }
                    None => {
                        let (f, end) = self.key(s, i)?;
                        i = end;
                        f
                    }
                };
                i = ws(s, i);
                i = match field {
                    Some(f) => self.value(s, i, f, &mut row)?,
                    None => skip_value(s, i)?,
                };
                i = ws(s, i);
                match s.get(i) {
                    Some(b',') => i = ws(s, i + 1),
                    Some(b'}') => {
                        i += 1;
                        break;
                    }
                    _ => return Err(malformed()),
                }
            }
        }
        if ws(s, i) != s.len() {
            return Err(malformed());
        }
        self.defer.finish(
            &mut row,
            s,
            &self.scratch,
            cx.schema.required_mask,
            cx.symbols,
        )?;
        row.commit(cx.schema, cx.now_ns)?;
        Ok(true)
    }

    /// Reads the key at `i` and the colon after it: the field it names,
    /// and the index after the colon.
    #[inline(never)]
    fn key(&mut self, s: &[u8], i: usize) -> Result<(Option<usize>, usize), Reject> {
        if s.get(i) != Some(&b'"') {
            return Err(malformed());
        }
        let (end, flags) = scan_string(s, i + 1)?;
        let raw = &s[i + 1..end];
        let field = if flags & ESCAPED == 0 {
            match words(s, i + 1, raw.len()) {
                Some(w) => lookup_words(&self.names, &mut self.hint, raw.len(), w),
                None => lookup(&self.names, &mut self.hint, raw),
            }
        } else {
            self.key.clear();
            unescape(raw, &mut self.key);
            lookup(&self.names, &mut self.hint, &self.key)
        };
        let i = ws(s, end + 1);
        if s.get(i) != Some(&b':') {
            return Err(malformed());
        }
        Ok((field, i + 1))
    }

    /// Reads the value at `i` into field `f`; returns the index after it.
    /// Only syntax errors return early; value errors are deferred.
    #[inline]
    fn value(
        &mut self,
        s: &[u8],
        i: usize,
        f: usize,
        row: &mut RowWriter<'_>,
    ) -> Result<usize, Reject> {
        let ty = self.tys[f];
        self.defer.clear(f);
        match s.get(i) {
            Some(b'"') => {
                let (end, flags) = scan_string(s, i + 1).map_err(|r| blame(r, f))?;
                self.string(s, i + 1, end, flags, f, ty, row);
                Ok(end + 1)
            }
            Some(b'-' | b'0'..=b'9') => {
                let n = scan_number(s, i)?;
                number(&s[i..n.end], &n, f, ty, row, &mut self.defer);
                Ok(n.end)
            }
            Some(b't') => {
                let end = literal(s, i, b"true")?;
                set_bool(true, f, ty, row, &mut self.defer);
                Ok(end)
            }
            Some(b'f') => {
                let end = literal(s, i, b"false")?;
                set_bool(false, f, ty, row, &mut self.defer);
                Ok(end)
            }
            Some(b'n') => {
                let end = literal(s, i, b"null")?;
                row.set_null(f);
                Ok(end)
            }
            Some(b'{' | b'[') => {
                let end = skip_value(s, i)?;
                self.defer.fail(f, Reason::TypeMismatch);
                Ok(end)
            }
            _ => Err(malformed()),
        }
    }

    /// Stores the string `s[a..b]` (validated by `scan_string`) in field `f`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn string(
        &mut self,
        s: &[u8],
        a: usize,
        b: usize,
        flags: u8,
        f: usize,
        ty: FieldType,
        row: &mut RowWriter<'_>,
    ) {
        let raw = &s[a..b];
        let escaped = flags & ESCAPED != 0;
        match ty {
            FieldType::Str if !escaped => row.set_str(f, raw),
            FieldType::Str => {
                let arena = row.arena();
                let off = arena.len();
                unescape(raw, arena);
                let len = arena.len() - off;
                row.set_str_ref(
                    f,
                    StrRef {
                        off: off as u32,
                        len: len as u32,
                    },
                );
            }
            FieldType::Symbol if !escaped => self.defer.symbol(f, Src::Line, a, raw.len()),
            FieldType::Symbol => {
                let off = self.scratch.len();
                unescape(raw, &mut self.scratch);
                let len = self.scratch.len() - off;
                self.defer.symbol(f, Src::Scratch, off, len);
            }
            FieldType::Timestamp | FieldType::F64 => {
                let mark = self.scratch.len();
                let text = if escaped {
                    unescape(raw, &mut self.scratch);
                    &self.scratch[mark..]
                } else {
                    raw
                };
                if ty == FieldType::Timestamp {
                    match parse_rfc3339(text) {
                        Some(ns) => row.set_i64(f, ns),
                        None => self.defer.fail(f, Reason::BadTimestamp),
                    }
                } else {
                    match special_f64(text) {
                        Some(v) => row.set_f64(f, v),
                        None => self.defer.fail(f, Reason::TypeMismatch),
                    }
                }
                self.scratch.truncate(mark);
            }
            FieldType::I64 | FieldType::U64 | FieldType::Bool => {
                self.defer.fail(f, Reason::TypeMismatch)
            }
        }
    }
}

/// The non-finite floats as mutstream's own JSON output spells them.
#[inline]
pub(super) fn special_f64(text: &[u8]) -> Option<f64> {
    match text {
        b"NaN" => Some(f64::NAN),
        b"Infinity" => Some(f64::INFINITY),
        b"-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Stores the number `text` (scanned as `n`) in field `f`.
#[inline]
fn number(
    text: &[u8],
    n: &Num,
    f: usize,
    ty: FieldType,
    row: &mut RowWriter<'_>,
    defer: &mut Deferred,
) {
    match ty {
        FieldType::F64 => match num_f64(text, n) {
            Some(v) => row.set_f64(f, v),
            None => defer.fail(f, Reason::TypeMismatch),
        },
        _ if n.float => defer.fail(f, Reason::TypeMismatch),
        FieldType::I64 => match num_i64(text, n) {
            Ok(v) => row.set_i64(f, v),
            Err(NumError::Range) => defer.fail(f, Reason::OutOfRange),
            Err(NumError::Syntax) => defer.fail(f, Reason::TypeMismatch),
        },
        FieldType::U64 => match num_u64(text, n) {
            Ok(v) => row.set_u64(f, v),
            Err(NumError::Range) => defer.fail(f, Reason::OutOfRange),
            Err(NumError::Syntax) => defer.fail(f, Reason::TypeMismatch),
        },
        FieldType::Timestamp => match num_i64(text, n) {
            Ok(v) => row.set_i64(f, v),
            Err(_) => defer.fail(f, Reason::BadTimestamp),
        },
        FieldType::Bool | FieldType::Symbol | FieldType::Str => defer.fail(f, Reason::TypeMismatch),
    }
}

#[inline]
fn set_bool(v: bool, f: usize, ty: FieldType, row: &mut RowWriter<'_>, defer: &mut Deferred) {
    if ty == FieldType::Bool {
        row.set_bool(f, v);
    } else {
        defer.fail(f, Reason::TypeMismatch);
    }
}

/// A field name, with its first 16 bytes as two words (zero-padded) so
/// that most keys are matched with two compares instead of a `memcmp`.
struct Name {
    bytes: Box<[u8]>,
    words: [u64; 2],
    /// `"name":` as two words and its length, when it fits in 16 bytes
    /// and the name needs no escaping (0 otherwise).
    colon: [u64; 2],
    colon_len: usize,
}

impl Name {
    fn new(name: &str) -> Name {
        let b = name.as_bytes();
        let mut pad = [0u8; 16];
        let n = b.len().min(16);
        pad[..n].copy_from_slice(&b[..n]);
        let name_words = words(&pad, 0, n).unwrap_or([u64::MAX; 2]);
        let plain = b.iter().all(|&c| c >= 0x20 && c != b'"' && c != b'\\');
        let (colon, colon_len) = if plain && b.len() + 3 <= 16 {
            let mut pad = [0u8; 16];
            pad[0] = b'"';
            pad[1..=b.len()].copy_from_slice(b);
            pad[b.len() + 1] = b'"';
            pad[b.len() + 2] = b':';
            (words(&pad, 0, b.len() + 3).unwrap_or([0; 2]), b.len() + 3)
        } else {
            ([0; 2], 0)
        };
        Name {
            bytes: b.into(),
            words: name_words,
            colon,
            colon_len,
        }
    }

    /// The index after `"name":` if the line has exactly that at `i`.
    #[inline(always)]
    fn prefix(&self, s: &[u8], i: usize) -> Option<usize> {
        (self.colon_len > 0 && words(s, i, self.colon_len)? == self.colon)
            .then_some(i + self.colon_len)
    }
}

/// `MASKS[n]` keeps the low `n` bytes of a word.
const MASKS: [u64; 9] = {
    let mut m = [0u64; 9];
    let mut n = 1;
    while n <= 8 {
        m[n] = u64::MAX >> (64 - 8 * n);
        n += 1;
    }
    m
};

/// The `len <= 16` bytes at `s[start..]` as two zero-padded words.
#[inline]
fn words(s: &[u8], start: usize, len: usize) -> Option<[u64; 2]> {
    if len > 16 {
        return None;
    }
    let rest = s.get(start..)?;
    let c = match rest.first_chunk::<16>() {
        Some(c) => *c,
        None if len <= rest.len() => {
            // Near the end of the line: copy what is there.
            let mut pad = [0u8; 16];
            pad[..rest.len()].copy_from_slice(rest);
            pad
        }
        None => return None,
    };
    let (a, b) = c.split_at(8);
    let a = u64::from_le_bytes(a.try_into().ok()?);
    let b = u64::from_le_bytes(b.try_into().ok()?);
    Some([a & MASKS[len.min(8)], b & MASKS[len.saturating_sub(8)]])
}

/// The field whose name is the `len <= 16` bytes held in `w`, trying the
/// hinted one first.
#[inline]
fn lookup_words(names: &[Name], hint: &mut usize, len: usize, w: [u64; 2]) -> Option<usize> {
    let h = *hint;
    let hit = |n: &Name| n.bytes.len() == len && n.words == w;
    if let Some(n) = names.get(h)
        && hit(n)
    {
        *hint = next_hint(h, names.len());
        return Some(h);
    }
    let f = names.iter().position(hit)?;
    *hint = next_hint(f, names.len());
    Some(f)
}

/// The field expected after field `f`: the next, or the first after the
/// last.
#[inline(always)]
fn next_hint(f: usize, n: usize) -> usize {
    if f + 1 == n { 0 } else { f + 1 }
}

/// The field called `key`, trying the hinted one first.
#[inline]
fn lookup(names: &[Name], hint: &mut usize, key: &[u8]) -> Option<usize> {
    let h = *hint;
    if let Some(n) = names.get(h)
        && *n.bytes == *key
    {
        *hint = next_hint(h, names.len());
        return Some(h);
    }
    let f = names.iter().position(|n| *n.bytes == *key)?;
    *hint = next_hint(f, names.len());
    Some(f)
}

#[cold]
#[inline(never)]
fn malformed() -> Reject {
    Reject::new(Reason::Malformed)
}

/// Attaches field `f` to a reject that has none.
#[cold]
fn blame(r: Reject, f: usize) -> Reject {
    Reject::at(r.reason, f)
}

/// Skips JSON whitespace.
#[inline(always)]
fn ws(s: &[u8], i: usize) -> usize {
    // NB: compact JSON has none; one compare says so.
    match s.get(i) {
        Some(&c) if c > b' ' => i,
        _ => ws_slow(s, i),
    }
}

#[inline(never)]
fn ws_slow(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(i) {
        i += 1;
    }
    i
}

#[inline]
fn literal(s: &[u8], i: usize, word: &[u8]) -> Result<usize, Reject> {
    if s.get(i..i + word.len()) == Some(word) {
        Ok(i + word.len())
    } else {
        Err(malformed())
    }
}

/// A string held a backslash escape.
const ESCAPED: u8 = 1;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit set in each byte of `w` that is `"`, `\` or a control
/// character; exact up to the lowest flagged byte (a borrow can only flag
/// bytes above a true match), which is all the scanner uses.
#[inline]
fn specials(w: u64) -> u64 {
    let q = w ^ (LO * b'"' as u64);
    let b = w ^ (LO * b'\\' as u64);
    let zq = q.wrapping_sub(LO) & !q;
    let zb = b.wrapping_sub(LO) & !b;
    let ctl = w.wrapping_sub(LO * 0x20) & !w;
    (zq | zb | ctl) & HI
}

/// Validates the string whose contents start at `i` (after the opening
/// quote): escapes (surrogates paired), no control characters, UTF-8.
/// Returns the index of the closing quote and [`ESCAPED`] if it had escapes.
#[inline(always)]
fn scan_string(s: &[u8], i: usize) -> Result<(usize, u8), Reject> {
    // NB: the common case (short ASCII without escapes, the closing quote
    // within 8 bytes) is one word test, inlined; the rest is out of line.
    if let Some(chunk) = s.get(i..).and_then(|t| t.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*chunk);
        let m = specials(w) | (w & HI);
        if m != 0 {
            let k = i + (m.trailing_zeros() / 8) as usize;
            if s.get(k) == Some(&b'"') {
                return Ok((k, 0));
            }
        }
    }
    scan_string_slow(s, i)
}

/// [`scan_string`] for any string.
#[inline(never)]
fn scan_string_slow(s: &[u8], mut i: usize) -> Result<(usize, u8), Reject> {
    let start = i;
    let mut flags = 0u8;
    let mut high = 0u64;
    loop {
        // Eight bytes at a time up to the next special byte.
        if let Some(chunk) = s.get(i..).and_then(|t| t.first_chunk::<8>()) {
            let w = u64::from_le_bytes(*chunk);
            let m = specials(w);
            if m == 0 {
                high |= w;
                i += 8;
                continue;
            }
            let k = m.trailing_zeros() / 8;
            high |= w & ((1u64 << (k * 8)) - 1);
            i += k as usize;
        }
        match s.get(i) {
            None => return Err(malformed()),
            Some(b'"') => break,
            Some(b'\\') => {
                flags |= ESCAPED;
                i = check_escape(s, i + 1)?;
            }
            Some(&c) if c < 0x20 => return Err(malformed()),
            Some(&c) => {
                high |= c as u64;
                i += 1;
            }
        }
    }
    if high & HI != 0 && std::str::from_utf8(&s[start..i]).is_err() {
        return Err(Reject::new(Reason::InvalidUtf8));
    }
    Ok((i, flags))
}

/// Four hex digits at `i`.
#[inline]
fn hex4(s: &[u8], i: usize) -> Option<u32> {
    let mut n = 0u32;
    for &c in s.get(i..i + 4)? {
        let d = (c as char).to_digit(16)?;
        n = (n << 4) | d;
    }
    Some(n)
}

/// Validates the escape after a backslash at `i - 1`; returns the index
/// after it. A `\u` surrogate must be a leading one followed by a trailing
/// one, as serde_json requires for UTF-8 strings.
#[cold]
fn check_escape(s: &[u8], i: usize) -> Result<usize, Reject> {
    match s.get(i) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 1),
        Some(b'u') => {
            let n = hex4(s, i + 1).ok_or_else(malformed)?;
            let i = i + 5;
            match n {
                0xDC00..=0xDFFF => Err(malformed()),
                0xD800..=0xDBFF => {
                    if s.get(i..i + 2) != Some(b"\\u") {
                        return Err(malformed());
                    }
                    match hex4(s, i + 2) {
                        Some(0xDC00..=0xDFFF) => Ok(i + 6),
                        _ => Err(malformed()),
                    }
                }
                _ => Ok(i),
            }
        }
        _ => Err(malformed()),
    }
}

/// Appends the unescaped contents of a string validated by `scan_string`.
#[cold]
fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while let Some(p) = memchr(b'\\', &raw[i..]) {
        out.extend_from_slice(&raw[i..i + p]);
        i += p + 1;
        match raw.get(i) {
            Some(b'u') => {
                let n = hex4(raw, i + 1).unwrap_or(0xFFFD);
                i += 5;
                let cp = if (0xD800..=0xDBFF).contains(&n) {
                    let lo = hex4(raw, i + 2).unwrap_or(0xDC00);
                    i += 6;
                    0x1_0000 + (((n - 0xD800) << 10) | (lo.wrapping_sub(0xDC00) & 0x3FF))
                } else {
                    n
                };
                let c = char::from_u32(cp).unwrap_or('\u{FFFD}');
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
            }
            Some(&c) => {
                out.push(match c {
                    b'b' => 0x08,
                    b'f' => 0x0C,
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    other => other,
                });
                i += 1;
            }
            None => return,
        }
    }
    out.extend_from_slice(&raw[i..]);
}

/// A number validated by [`scan_number`].
#[derive(Clone, Copy, Debug)]
pub(super) struct Num {
    /// Index after the number.
    pub(super) end: usize,
    neg: bool,
    /// Has a fraction or an exponent.
    pub(super) float: bool,
    /// The digits of the integer and fraction parts as one integer; exact
    /// when `digits <= 19`, wrapped otherwise.
    mant: u64,
    digits: u32,
    /// Power of ten that `mant` is scaled by (exponent minus fraction
    /// digits), saturated.
    exp10: i64,
}

/// Validates the number at `i`: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
#[inline(always)]
pub(super) fn scan_number(s: &[u8], mut i: usize) -> Result<Num, Reject> {
    let start = i;
    let neg = s.get(i) == Some(&b'-');
    if neg {
        i += 1;
    }
    let int_start = i;
    let mut mant = 0u64;
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(s, i, &mut mant),
        _ => return Err(malformed()),
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        let d = i + 1;
        i = digits(s, d, &mut mant);
        frac_digits = i - d;
        if frac_digits == 0 {
            return Err(malformed());
        }
    }
    let mut exp: i64 = 0;
    let mut has_exp = false;
    if let Some(b'e' | b'E') = s.get(i) {
        has_exp = true;
        i += 1;
        let exp_neg = match s.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let d = i;
        while let Some(&c @ b'0'..=b'9') = s.get(i) {
            exp = (exp * 10 + (c - b'0') as i64).min(1 << 20);
            i += 1;
        }
        if i == d {
            return Err(malformed());
        }
        if exp_neg {
            exp = -exp;
        }
    }
    // The value is below 10^(int_digits + exp): only numbers this large can
    // overflow f64, and for those serde_json's own (approximate) arithmetic
    // decides, so that both accept exactly the same documents.
    if int_digits as i64 + exp > 300 && serde_f64(&s[start..i]).is_none() {
        return Err(malformed());
    }
    Ok(Num {
        end: i,
        neg,
        float: frac_digits > 0 || has_exp,
        mant,
        digits: (int_digits + frac_digits).min(u32::MAX as usize) as u32,
        exp10: exp - frac_digits as i64,
    })
}

/// Skips the digits at `i`, accumulating them into `mant` (wrapping);
/// returns the index after them.
#[inline]
fn digits(s: &[u8], mut i: usize, mant: &mut u64) -> usize {
    let mut m = *mant;
    // NB: eight bytes at a time as in fast_float, a run of up to eight
    // digits per step: a 19-digit `ts` is three steps, `21.53` two.
    while let Some(chunk) = s.get(i..).and_then(|t| t.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*chunk);
        let d = w.wrapping_sub(0x3030_3030_3030_3030);
        // High bit set for each byte that is not a digit; exact up to the
        // lowest one (borrows and carries only spread upwards).
        let non = (d.wrapping_add(0x7676_7676_7676_7676) | d) & HI;
        let n = if non == 0 {
            8
        } else {
            (non.trailing_zeros() / 8) as usize
        };
        if n == 0 {
            *mant = m;
            return i;
        }
        m = m
            .wrapping_mul(POW10_U64[n])
            .wrapping_add(eight_digits(d << (8 * (8 - n))));
        i += n;
        if n < 8 {
            *mant = m;
            return i;
        }
    }
    while let Some(&c @ b'0'..=b'9') = s.get(i) {
        m = m.wrapping_mul(10).wrapping_add((c - b'0') as u64);
        i += 1;
    }
    *mant = m;
    i
}

/// `10^n` for a run of `n <= 8` digits.
const POW10_U64: [u64; 9] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
];

/// The value of eight digits (each byte 0 to 9, the first the most
/// significant, in little-endian order), as in fast_float.
#[inline]
fn eight_digits(v: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let v = v.wrapping_mul(10).wrapping_add(v >> 8);
    let v1 = (v & MASK).wrapping_mul(MUL1);
    let v2 = ((v >> 16) & MASK).wrapping_mul(MUL2);
    (v1.wrapping_add(v2) >> 32) as u32 as u64
}

/// Powers of ten exactly representable in f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The f64 nearest to the number `text` scanned as `n`.
#[inline]
pub(super) fn num_f64(text: &[u8], n: &Num) -> Option<f64> {
    // Clinger's fast path: an exact mantissa times or over an exact power
    // of ten is one correctly rounded operation.
    if n.digits <= 19 && n.mant <= 1 << 53 && (-22..=22).contains(&n.exp10) {
        let m = n.mant as f64;
        let v = if n.exp10 >= 0 {
            m * POW10[n.exp10 as usize]
        } else {
            m / POW10[(-n.exp10) as usize]
        };
        return Some(if n.neg { -v } else { v });
    }
    match parse_f64(text) {
        Some(v) if v.is_finite() => Some(v),
        _ => serde_f64(text),
    }
}

/// The integer literal scanned as `n` as an i64.
#[inline]
pub(super) fn num_i64(text: &[u8], n: &Num) -> Result<i64, NumError> {
    if n.digits > 19 {
        return parse_i64(text);
    }
    if n.neg {
        if n.mant <= 1 << 63 {
            Ok((n.mant as i64).wrapping_neg())
        } else {
            Err(NumError::Range)
        }
    } else {
        i64::try_from(n.mant).map_err(|_| NumError::Range)
    }
}

#[inline]
pub(super) fn num_u64(text: &[u8], n: &Num) -> Result<u64, NumError> {
    if n.digits > 19 {
        parse_u64(text)
    } else if n.neg && n.mant != 0 {
        Err(NumError::Range)
    } else {
        Ok(n.mant)
    }
}

/// serde_json's verdict on a number near or beyond `f64::MAX` (it rejects
/// some that round to `f64::MAX`, e.g. `1.7976931348623158e308`).
#[cold]
#[inline(never)]
fn serde_f64(text: &[u8]) -> Option<f64> {
    serde_json::from_slice::<serde_json::Value>(text)
        .ok()?
        .as_f64()
}

/// Validates the value at `i` (whitespace already skipped) without storing
/// it; returns the index after it. Iterative, with at most `DEPTH_MAX`
/// containers open counting the top-level object.
fn skip_value(s: &[u8], mut i: usize) -> Result<usize, Reject> {
    // Bit k set: the k-th container opened here is an object.
    let mut stack: u128 = 0;
    let mut open: u32 = 0;
    'value: loop {
        match s.get(i) {
            Some(&c @ (b'{' | b'[')) => {
                if open + 2 > DEPTH_MAX {
                    return Err(malformed());
                }
                let obj = c == b'{';
                if obj {
                    stack |= 1 << open;
                } else {
                    stack &= !(1 << open);
                }
                open += 1;
                i = ws(s, i + 1);
                let close = if obj { b'}' } else { b']' };
                if s.get(i) == Some(&close) {
                    open -= 1;
                    i += 1;
                } else {
                    if obj {
                        i = skip_key(s, i)?;
                    }
                    continue 'value;
                }
            }
            Some(b'"') => i = scan_string(s, i + 1)?.0 + 1,
            Some(b'-' | b'0'..=b'9') => i = scan_number(s, i)?.end,
            Some(b't') => i = literal(s, i, b"true")?,
            Some(b'f') => i = literal(s, i, b"false")?,
            Some(b'n') => i = literal(s, i, b"null")?,
            _ => return Err(malformed()),
        }
        // After a complete value: close containers or go on to the next.
        while open > 0 {
            i = ws(s, i);
            let obj = (stack >> (open - 1)) & 1 == 1;
            match s.get(i) {
                Some(b',') => {
                    i = ws(s, i + 1);
                    if obj {
                        i = skip_key(s, i)?;
                    }
                    continue 'value;
                }
                Some(b'}') if obj => {
                    open -= 1;
                    i += 1;
                }
                Some(b']') if !obj => {
                    open -= 1;
                    i += 1;
                }
                _ => return Err(malformed()),
            }
        }
        return Ok(i);
    }
}

/// Skips `"key" :` and the whitespace after it.
fn skip_key(s: &[u8], i: usize) -> Result<usize, Reject> {
    if s.get(i) != Some(&b'"') {
        return Err(malformed());
    }
    let i = ws(s, scan_string(s, i + 1)?.0 + 1);
    if s.get(i) != Some(&b':') {
        return Err(malformed());
    }
    Ok(ws(s, i + 1))
}

/// Where a deferred symbol's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Src {
    /// The input line.
    Line,
    /// The decoder's scratch buffer (unescaped text).
    Scratch,
}

/// What a record's fields still owe once the whole record is read: value
/// errors (reported only if the syntax is good) and symbols (interned only
/// if the record is good). Shared with the CSV decoder.
pub(super) struct Deferred {
    /// Fields with a value error.
    err: u64,
    reasons: Box<[Reason; FIELDS_MAX]>,
    /// Fields with a symbol to intern.
    sym: u64,
    spans: Box<[(Src, u32, u32); FIELDS_MAX]>,
}

impl Deferred {
    pub(super) fn new() -> Deferred {
        Deferred {
            err: 0,
            reasons: Box::new([Reason::Malformed; FIELDS_MAX]),
            sym: 0,
            spans: Box::new([(Src::Line, 0, 0); FIELDS_MAX]),
        }
    }

    #[inline]
    pub(super) fn reset(&mut self) {
        self.err = 0;
        self.sym = 0;
    }

    /// Forgets what an earlier value of field `f` owed (last value wins).
    #[inline]
    pub(super) fn clear(&mut self, f: usize) {
        let bit = 1 << f;
        if (self.err | self.sym) & bit != 0 {
            self.err &= !bit;
            self.sym &= !bit;
        }
    }

    #[inline]
    pub(super) fn fail(&mut self, f: usize, reason: Reason) {
        self.err |= 1 << f;
        self.reasons[f] = reason;
    }

    #[inline]
    pub(super) fn symbol(&mut self, f: usize, src: Src, off: usize, len: usize) {
        self.sym |= 1 << f;
        self.spans[f] = (src, off as u32, len as u32);
    }

    /// Reports the first value error or missing required field, else
    /// interns the symbols into the row.
    #[inline]
    pub(super) fn finish(
        &self,
        row: &mut RowWriter<'_>,
        line: &[u8],
        scratch: &[u8],
        required: u64,
        symbols: &mut Interner,
    ) -> Result<(), Reject> {
        if self.err != 0 {
            let f = self.err.trailing_zeros() as usize;
            return Err(Reject::at(self.reasons[f], f));
        }
        // Checked here as well as in `commit` so that a record missing a
        // field interns nothing.
        let mut m = required & !self.sym;
        while m != 0 {
            let f = m.trailing_zeros() as usize;
            m &= m - 1;
            if !row.has(f) {
                return Err(Reject::at(Reason::MissingField, f));
            }
        }
        let mut m = self.sym;
        while m != 0 {
            let f = m.trailing_zeros() as usize;
            m &= m - 1;
            let (src, off, len) = self.spans[f];
            let (off, len) = (off as usize, len as usize);
            let bytes = match src {
                Src::Line => &line[off..off + len],
                Src::Scratch => &scratch[off..off + len],
            };
            let id = symbols
                .intern(bytes)
                .ok_or(Reject::at(Reason::SymbolLimit, f))?;
            row.set_sym(f, id);
        }
        Ok(())
    }
}

/// JSON whitespace only (a blank line).
fn blank(line: &[u8]) -> bool {
    ws(line, 0) == line.len()
}

/// The fixed schema `fuzz_one` decodes into: one field of every type.
#[doc(hidden)]
pub fn fuzz_schema() -> Schema {
    use super::schema::{Field, parse_type};
    let f = |name: &str, ty: &str| {
        let (ty, wire) = parse_type(ty).expect("known type names");
        Field {
            name: name.into(),
            ty,
            wire,
            offset: None,
            required: false,
        }
    };
    Schema::new(
        "fuzz",
        vec![
            f("ts", "timestamp"),
            f("sym", "symbol"),
            f("s", "string"),
            f("f", "f64"),
            f("i", "i64"),
            f("u", "u64"),
            f("b", "bool"),
        ],
        None,
        false,
    )
}

/// Fuzz entry point: decodes each `\n`-separated line of `data` with the
/// [`fuzz_schema`] and checks it against serde_json (see [`check_line`]).
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let schema = fuzz_schema();
    let mut dec = JsonDecoder::new(&schema);
    let mut batch = Batch::new(&schema, 8);
    let mut symbols = Interner::new(1 << 20);
    for line in data.split(|&b| b == b'\n') {
        if batch.is_full() {
            batch.clear();
        }
        let before = (batch.len(), batch.arena.len());
        let mut cx = DecodeCx {
            schema: &schema,
            symbols: &mut symbols,
            now_ns: 7,
        };
        let got = dec.decode(line, &mut batch, &mut cx);
        check_line(&schema, line, got, &batch, before, &symbols, None);
    }
}

/// What serde_json's reading of a value implies for one field.
#[derive(Debug)]
enum Expect {
    Null,
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(String),
    Ts(i64),
    /// A reject with one of these reasons.
    Err(&'static [Reason]),
    /// The literal behind an f64 cannot be told (`-0`, integers beyond 64
    /// bits read as f64 by serde_json): anything goes.
    Any,
}

fn expect(ty: FieldType, v: Option<&serde_json::Value>) -> Expect {
    use serde_json::Value as J;
    const TM: &[Reason] = &[Reason::TypeMismatch];
    let Some(v) = v else { return Expect::Null };
    // An f64 from serde_json in an integer field: a float literal (type
    // mismatch) or an integer literal too big for 64 bits (out of range).
    let float_int = |x: f64, range: Reason| -> Expect {
        if x == 0.0 && x.is_sign_negative() {
            Expect::Any
        } else if x.fract() == 0.0 && x.abs() >= 9.2e18 {
            if range == Reason::OutOfRange {
                Expect::Err(&[Reason::TypeMismatch, Reason::OutOfRange])
            } else {
                Expect::Err(&[Reason::TypeMismatch, Reason::BadTimestamp])
            }
        } else {
            Expect::Err(TM)
        }
    };
    match (v, ty) {
        (J::Null, _) => Expect::Null,
        (J::Array(_) | J::Object(_), _) => Expect::Err(TM),
        (J::Bool(b), FieldType::Bool) => Expect::Bool(*b),
        (J::Bool(_), _) => Expect::Err(TM),
        (J::String(s), FieldType::Symbol | FieldType::Str) => Expect::Str(s.clone()),
        (J::String(s), FieldType::Timestamp) => match parse_rfc3339(s.as_bytes()) {
            Some(ns) => Expect::Ts(ns),
            None => Expect::Err(&[Reason::BadTimestamp]),
        },
        (J::String(s), FieldType::F64) => match special_f64(s.as_bytes()) {
            Some(x) => Expect::F64(x),
            None => Expect::Err(TM),
        },
        (J::String(_), _) => Expect::Err(TM),
        (J::Number(n), FieldType::F64) => Expect::F64(n.as_f64().unwrap_or(f64::NAN)),
        (J::Number(n), FieldType::I64) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(x), _, _) => Expect::I64(x),
            (None, Some(_), _) => Expect::Err(&[Reason::OutOfRange]),
            (_, _, x) => float_int(x.unwrap_or(0.5), Reason::OutOfRange),
        },
        (J::Number(n), FieldType::U64) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(x), _, _) => Expect::U64(x),
            (None, Some(_), _) => Expect::Err(&[Reason::OutOfRange]),
            (_, _, x) => float_int(x.unwrap_or(0.5), Reason::OutOfRange),
        },
        (J::Number(n), FieldType::Timestamp) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(x), _, _) => Expect::Ts(x),
            (None, Some(_), _) => Expect::Err(&[Reason::BadTimestamp]),
            (_, _, x) => float_int(x.unwrap_or(0.5), Reason::BadTimestamp),
        },
        (J::Number(_), _) => Expect::Err(TM),
    }
}

/// Floats equal as serde_json reads them: its default parser is not
/// correctly rounded (ours is), so allow a few ulps, and NaN equals NaN.
fn close(a: f64, b: f64, exact: bool) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    !exact && ((a - b).abs() <= 1e-300 || (a - b).abs() <= 1e-14 * a.abs().max(b.abs()))
}

/// Checks one decoded line against serde_json:
/// * a reject leaves the batch as it was; `Ok(false)` only for blank lines;
/// * `Malformed`/`InvalidUtf8` iff serde_json rejects the line or reads a
///   value other than an object;
/// * otherwise each schema field is what serde_json's value implies (from
///   `truth`, the value the line was printed from, when known: then floats
///   must match exactly), and a value reject names the lowest bad field.
///
/// # Panics
/// On any mismatch: this is a test oracle.
#[doc(hidden)]
pub fn check_line(
    schema: &Schema,
    line: &[u8],
    got: Result<bool, Reject>,
    batch: &Batch,
    before: (usize, usize),
    symbols: &Interner,
    truth: Option<&serde_json::Value>,
) {
    use super::batch::Value as V;
    let show = String::from_utf8_lossy(line);
    match got {
        Ok(true) => assert_eq!(batch.len(), before.0 + 1, "{show}"),
        Ok(false) => {
            assert!(blank(line), "Ok(false) for a non-blank line: {show}");
            assert_eq!((batch.len(), batch.arena.len()), before);
            return;
        }
        Err(_) => assert_eq!(
            (batch.len(), batch.arena.len()),
            before,
            "a reject leaves no trace: {show}"
        ),
    }
    assert!(!blank(line), "blank line decoded as {got:?}: {show}");
    let oracle = serde_json::from_slice::<serde_json::Value>(line);
    let syntax_bad = !matches!(oracle, Ok(serde_json::Value::Object(_)));
    let ours_bad =
        matches!(got, Err(r) if matches!(r.reason, Reason::Malformed | Reason::InvalidUtf8));
    assert_eq!(
        ours_bad, syntax_bad,
        "syntax verdicts differ: ours {got:?}, serde_json {oracle:?}: {show}"
    );
    let Ok(parsed) = &oracle else { return };
    let (obj, exact) = match truth {
        Some(serde_json::Value::Object(t)) => (t, true),
        _ => match parsed {
            serde_json::Value::Object(o) => (o, false),
            _ => return,
        },
    };
    if ours_bad {
        return;
    }
    let expects: Vec<Expect> = schema
        .fields
        .iter()
        .map(|fd| expect(fd.ty, obj.get(&fd.name)))
        .collect();
    match got {
        Ok(true) => {
            let row = batch.len() - 1;
            for (i, e) in expects.iter().enumerate() {
                let v = batch.value(row, i, symbols);
                let ok = match (e, v) {
                    (Expect::Any, _) => true,
                    (Expect::Null, V::Null) => true,
                    (Expect::Null, V::Ts(t)) => Some(i) == schema.ts_index && t == 7,
                    (Expect::I64(a), V::I64(b)) => *a == b,
                    (Expect::U64(a), V::U64(b)) => *a == b,
                    (Expect::F64(a), V::F64(b)) => close(*a, b, exact),
                    (Expect::Bool(a), V::Bool(b)) => *a == b,
                    (Expect::Str(a), V::Str(b)) => a.as_bytes() == b,
                    (Expect::Ts(a), V::Ts(b)) => *a == b,
                    _ => false,
                };
                assert!(ok, "field {i}: expected {e:?}, decoded {v:?}: {show}");
            }
        }
        Err(r) => {
            if r.reason == Reason::SymbolLimit {
                return;
            }
            let f = r.field.expect("value rejects name their field") as usize;
            for (i, e) in expects.iter().enumerate().take(f) {
                assert!(
                    !matches!(e, Expect::Err(_)),
                    "field {i} should have been blamed ({e:?}), not {r:?}: {show}"
                );
            }
            match &expects[f] {
                Expect::Any => {}
                Expect::Err(rs) => assert!(
                    rs.contains(&r.reason),
                    "field {f}: expected {rs:?}, got {r:?}: {show}"
                ),
                e => panic!("field {f}: expected {e:?}, got {r:?}: {show}"),
            }
        }
        Ok(false) => unreachable!("handled above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Value;
    use crate::codec::schema::{Field, parse_type};
    use proptest::prelude::*;
    use serde_json::{Map, Number, Value as J, json};

    fn field(name: &str, ty: &str, required: bool) -> Field {
        let (ty, wire) = parse_type(ty).unwrap();
        Field {
            name: name.into(),
            ty,
            wire,
            offset: None,
            required,
        }
    }

    fn workload_schema() -> Schema {
        Schema::new(
            "w",
            vec![
                field("ts", "timestamp", false),
                field("device", "symbol", false),
                field("site", "symbol", false),
                field("temp", "f64", false),
                field("hum", "f64", false),
                field("battery", "i64", false),
            ],
            None,
            false,
        )
    }

    const WORKLOAD: &[u8] = br#"{"ts":1732492800000000000,"device":"d-0042","site":"plant-3","temp":21.53,"hum":40.21,"battery":87}"#;

    /// Decodes `lines` with `schema`; returns each result and the batch.
    fn run(schema: &Schema, lines: &[&[u8]]) -> (Vec<Result<bool, Reject>>, Batch, Interner) {
        let mut d = JsonDecoder::new(schema);
        let mut b = Batch::new(schema, 64);
        let mut sym = Interner::new(1000);
        let mut res = Vec::new();
        for l in lines {
            let mut cx = DecodeCx {
                schema,
                symbols: &mut sym,
                now_ns: 99,
            };
            res.push(d.decode(l, &mut b, &mut cx));
        }
        (res, b, sym)
    }

    fn one(line: &str) -> Result<bool, Reject> {
        run(&fuzz_schema(), &[line.as_bytes()]).0[0]
    }

    fn reason(line: &str) -> Reason {
        one(line).unwrap_err().reason
    }

    /// Decodes one good line into the fuzz schema and returns field values.
    fn vals(line: &str) -> Vec<String> {
        let s = fuzz_schema();
        let (r, b, sym) = run(&s, &[line.as_bytes()]);
        assert_eq!(r[0], Ok(true), "{line}");
        (0..s.fields.len())
            .map(|c| match b.value(0, c, &sym) {
                Value::Str(x) => format!("Str({})", String::from_utf8_lossy(x)),
                v => format!("{v:?}"),
            })
            .collect()
    }

    #[test]
    fn workload_line() {
        let s = workload_schema();
        let (r, b, sym) = run(&s, &[WORKLOAD, WORKLOAD]);
        assert_eq!(r, vec![Ok(true), Ok(true)]);
        assert_eq!(b.value(1, 0, &sym), Value::Ts(1_732_492_800_000_000_000));
        assert_eq!(b.value(1, 1, &sym), Value::Str(b"d-0042"));
        assert_eq!(b.value(1, 2, &sym), Value::Str(b"plant-3"));
        assert_eq!(b.value(1, 3, &sym), Value::F64(21.53));
        assert_eq!(b.value(1, 4, &sym), Value::F64(40.21));
        assert_eq!(b.value(1, 5, &sym), Value::I64(87));
        assert_eq!(b.ts_defaulted, 0);
    }

    #[test]
    fn blank_and_empty() {
        assert_eq!(one(""), Ok(false));
        assert_eq!(one(" \t\r"), Ok(false));
        let v = vals(" { } ");
        assert_eq!(v[0], "Ts(99)", "ts defaults to now");
        assert!(v[1..].iter().all(|x| x == "Null"));
    }

    #[test]
    fn syntax_is_malformed() {
        for bad in [
            "{",
            "}",
            "[]",
            "[1]",
            "1",
            "\"x\"",
            "null",
            "{\"i\":1,}",
            "{,}",
            "{\"i\":1 \"u\":2}",
            "{'i':1}",
            "{\"i\":NaN}",
            "{\"f\":Infinity}",
            "{\"f\":-Infinity}",
            "{\"i\":01}",
            "{\"i\":-}",
            "{\"i\":1.}",
            "{\"i\":.5}",
            "{\"i\":1e}",
            "{\"i\":+1}",
            "{\"s\":\"a\tb\"}",
            "{\"s\":\"a\u{1}b\"}",
            "{\"s\":\"\\x\"}",
            "{\"s\":\"\\u12\"}",
            "{\"s\":\"\\ud800\"}",
            "{\"s\":\"\\udc00\"}",
            "{\"s\":\"\\ud800\\u0041\"}",
            "{\"zz\":\"\\ud800x\"}",
            "{\"i\":1} x",
            "{\"i\":1}{}",
            "{\"i\":tru}",
            "{\"i\":nul}",
            "{\"i\":truex}",
            "{\"s\":\"abc}",
            "{\"i\" 1}",
            "{i:1}",
            "{\"zz\":[1,]}",
            "{\"zz\":{\"a\":1,}}",
            "{\"zz\":[1 2]}",
            "{\"zz\":{\"a\"}}",
            "{\"zz\":{1:2}}",
            "{\"zz\":[}",
            "{\"f\":1e400}",
            "{\"zz\":-1e309}",
        ] {
            assert_eq!(reason(bad), Reason::Malformed, "{bad}");
            assert!(
                serde_json::from_str::<Map<String, J>>(bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn invalid_utf8_in_strings() {
        for bad in [
            &b"{\"s\":\"\xff\"}"[..],
            b"{\"zz\":\"a\xc3\"}",
            b"{\"\xe2\x82\":1}",
            b"{\"zz\":[\"\xed\xa0\x80\"]}",
        ] {
            let r = run(&fuzz_schema(), &[bad]).0[0];
            assert_eq!(r.unwrap_err().reason, Reason::InvalidUtf8);
            assert!(serde_json::from_slice::<J>(bad).is_err());
        }
        // Raw non-ASCII outside a string is a syntax error.
        assert_eq!(
            run(&fuzz_schema(), &[b"{\"i\":1}\xff"]).0[0]
                .unwrap_err()
                .reason,
            Reason::Malformed
        );
    }

    #[test]
    fn depth_limit_matches_serde_json() {
        for depth in [1usize, 2, 126, 127, 128, 129, 300] {
            for (open, close) in [("[", "]"), ("{\"k\":", "}")] {
                for key in ["zz", "s"] {
                    let mut l = format!("{{\"{key}\":");
                    for _ in 1..depth {
                        l.push_str(open);
                    }
                    l.push('1');
                    for _ in 1..depth {
                        l.push_str(close);
                    }
                    l.push('}');
                    let serde_ok = serde_json::from_str::<J>(&l).is_ok();
                    let r = one(&l);
                    assert_eq!(
                        serde_ok,
                        depth <= DEPTH_MAX as usize,
                        "serde_json's limit moved"
                    );
                    let ours_ok = !matches!(
                        r,
                        Err(Reject {
                            reason: Reason::Malformed,
                            ..
                        })
                    );
                    assert_eq!(ours_ok, serde_ok, "{depth} {key} {open}: {r:?}");
                }
            }
        }
    }

    #[test]
    fn numbers_into_fields() {
        let v = vals(r#"{"i":-9223372036854775808,"u":18446744073709551615,"f":87,"ts":-5}"#);
        assert_eq!(v[4], "I64(-9223372036854775808)");
        assert_eq!(v[5], "U64(18446744073709551615)");
        assert_eq!(v[3], "F64(87.0)");
        assert_eq!(v[0], "Ts(-5)");
        let v = vals(r#"{"f":-0.0,"i":-0,"u":-0,"ts":0}"#);
        assert_eq!(v[3], "F64(-0.0)");
        assert_eq!(v[4], "I64(0)");
        assert_eq!(v[5], "U64(0)");
        let v = vals(r#"{"f":1e-400,"zz":1e308,"zzz":0e99999999999}"#);
        assert_eq!(v[3], "F64(0.0)");
        let v = vals(r#"{"f":100000000000000000000000}"#);
        assert_eq!(v[3], "F64(1e23)");
        let v = vals(r#"{"f":1.7976931348623157e308}"#);
        assert_eq!(v[3], format!("F64({:?})", f64::MAX));
        for (line, r, f) in [
            (r#"{"i":9223372036854775808}"#, Reason::OutOfRange, 4),
            (r#"{"i":-9223372036854775809}"#, Reason::OutOfRange, 4),
            (r#"{"u":18446744073709551616}"#, Reason::OutOfRange, 5),
            (r#"{"u":-1}"#, Reason::OutOfRange, 5),
            (r#"{"ts":9223372036854775808}"#, Reason::BadTimestamp, 0),
            (r#"{"i":1.0}"#, Reason::TypeMismatch, 4),
            (r#"{"i":1e2}"#, Reason::TypeMismatch, 4),
            (r#"{"u":2E0}"#, Reason::TypeMismatch, 5),
            (r#"{"ts":1.5e18}"#, Reason::TypeMismatch, 0),
            (r#"{"b":1}"#, Reason::TypeMismatch, 6),
            (r#"{"s":1}"#, Reason::TypeMismatch, 2),
            (r#"{"sym":1.5}"#, Reason::TypeMismatch, 1),
        ] {
            assert_eq!(one(line), Err(Reject::at(r, f)), "{line}");
        }
    }

    #[test]
    fn strings_into_fields() {
        let v = vals(
            r#"{"s":"a\"b\\c\/\b\f\n\r\t\u00e9\ud83d\ude00","sym":"x\u0041","ts":"2024-11-25T00:00:00Z","f":"NaN"}"#,
        );
        assert_eq!(v[2], "Str(a\"b\\c/\u{8}\u{c}\n\r\té😀)");
        assert_eq!(v[1], "Str(xA)");
        assert_eq!(v[0], "Ts(1732492800000000000)");
        assert_eq!(v[3], "F64(NaN)");
        assert_eq!(vals(r#"{"f":"Infinity"}"#)[3], "F64(inf)");
        assert_eq!(vals(r#"{"f":"-Infinity"}"#)[3], "F64(-inf)");
        assert_eq!(vals(r#"{"f":"\u004eaN"}"#)[3], "F64(NaN)");
        assert_eq!(
            vals(r#"{"ts":"2024-11-25T01:00:00.5\u002b01:00"}"#)[0],
            "Ts(1732492800500000000)"
        );
        assert_eq!(vals("{\"s\":\"\",\"sym\":\"é\"}")[2], "Str()");
        for (line, r, f) in [
            (r#"{"ts":"2024-02-30T00:00:00Z"}"#, Reason::BadTimestamp, 0),
            (r#"{"ts":"1732492800000000000"}"#, Reason::BadTimestamp, 0),
            (r#"{"f":"nan"}"#, Reason::TypeMismatch, 3),
            (r#"{"f":"1.5"}"#, Reason::TypeMismatch, 3),
            (r#"{"i":"1"}"#, Reason::TypeMismatch, 4),
            (r#"{"b":"true"}"#, Reason::TypeMismatch, 6),
        ] {
            assert_eq!(one(line), Err(Reject::at(r, f)), "{line}");
        }
    }

    #[test]
    fn literals_and_containers() {
        let v = vals(r#"{"b":true,"i":null,"s":null}"#);
        assert_eq!(v[6], "Bool(true)");
        assert_eq!(v[4], "Null");
        assert_eq!(vals(r#"{"b":false}"#)[6], "Bool(false)");
        for (line, f) in [
            (r#"{"i":true}"#, 4),
            (r#"{"s":false}"#, 2),
            (r#"{"i":[1]}"#, 4),
            (r#"{"s":{"a":"b"}}"#, 2),
            (r#"{"b":[]}"#, 6),
            (r#"{"f":{}}"#, 3),
        ] {
            assert_eq!(
                one(line),
                Err(Reject::at(Reason::TypeMismatch, f)),
                "{line}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_skipped_nested_or_not() {
        let v = vals(
            r#" { "zz" : {"a":[1,{"b":null},"\u00e9",-2.5e-3,true,false,[]],"c":{}} , "i" : 5 , "q":"\"}" } "#,
        );
        assert_eq!(v[4], "I64(5)");
    }

    #[test]
    fn keys_compare_unescaped() {
        let v = vals(r#"{"\u0069":1,"\u0073ym":"a","s\u0000":2}"#);
        assert_eq!(v[4], "I64(1)");
        assert_eq!(v[1], "Str(a)");
    }

    #[test]
    fn long_keys_and_keys_at_the_end_of_the_line() {
        let s = Schema::new(
            "k",
            vec![
                field("a_rather_long_field_name", "i64", false),
                field("exactly_16_bytes", "i64", false),
                field("z", "i64", false),
            ],
            None,
            false,
        );
        let line = r#"{"a_rather_long_field_name":1,"exactly_16_bytes":2,"exactly_16_byte":0,"exactly_16_bytesx":0,"a_rather_long_field_nam":0,"z":3}"#;
        let (r, b, sym) = run(
            &s,
            &[
                line.as_bytes(),
                br#"{"z":4}"#,
                br#"{"z":5,"a_rather_long_field_name":6}"#,
            ],
        );
        assert_eq!(r, vec![Ok(true); 3]);
        assert_eq!(b.value(0, 0, &sym), Value::I64(1));
        assert_eq!(b.value(0, 1, &sym), Value::I64(2));
        assert_eq!(b.value(0, 2, &sym), Value::I64(3));
        assert_eq!(b.value(1, 2, &sym), Value::I64(4));
        assert_eq!(b.value(2, 0, &sym), Value::I64(6));
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let v = vals(r#"{"i":"x","i":2,"s":"a","s":null,"sym":"a","sym":"b"}"#);
        assert_eq!(v[4], "I64(2)", "an earlier type error is superseded");
        assert_eq!(v[2], "Null");
        assert_eq!(v[1], "Str(b)");
        assert_eq!(
            one(r#"{"i":2,"i":"x"}"#),
            Err(Reject::at(Reason::TypeMismatch, 4))
        );
    }

    #[test]
    fn syntax_errors_win_over_value_errors() {
        assert_eq!(reason(r#"{"i":"x","u":-1,"b":1"#), Reason::Malformed);
        assert_eq!(reason(r#"{"i":"x"} ,"#), Reason::Malformed);
        // The lowest field index is reported when several are bad.
        assert_eq!(
            one(r#"{"b":1,"i":"x"}"#),
            Err(Reject::at(Reason::TypeMismatch, 4))
        );
    }

    #[test]
    fn required_and_symbol_limit() {
        let s = Schema::new(
            "r",
            vec![
                field("ts", "timestamp", false),
                field("a", "symbol", false),
                field("n", "i64", true),
            ],
            None,
            false,
        );
        let mut d = JsonDecoder::new(&s);
        let mut b = Batch::new(&s, 8);
        let mut sym = Interner::new(1);
        let mut dec = |l: &str, sym: &mut Interner, b: &mut Batch| {
            let mut cx = DecodeCx {
                schema: &s,
                symbols: sym,
                now_ns: 1,
            };
            d.decode(l.as_bytes(), b, &mut cx)
        };
        assert_eq!(
            dec(r#"{"a":"x"}"#, &mut sym, &mut b),
            Err(Reject::at(Reason::MissingField, 2))
        );
        assert_eq!(
            dec(r#"{"a":"x","n":null}"#, &mut sym, &mut b)
                .unwrap_err()
                .reason,
            Reason::MissingField
        );
        assert_eq!(
            dec(r#"{"a":"y","n":1,"zz":]"#, &mut sym, &mut b)
                .unwrap_err()
                .reason,
            Reason::Malformed
        );
        assert!(sym.is_empty(), "bad records intern nothing");
        assert_eq!(dec(r#"{"a":"x","n":1}"#, &mut sym, &mut b), Ok(true));
        assert_eq!(
            dec(r#"{"a":"y","n":1}"#, &mut sym, &mut b),
            Err(Reject::at(Reason::SymbolLimit, 1))
        );
        assert_eq!(dec(r#"{"a":"x","n":2}"#, &mut sym, &mut b), Ok(true));
        assert_eq!(b.len(), 2);
        assert_eq!(b.ts_defaulted, 2);
    }

    #[test]
    fn rejected_rows_leave_no_arena_bytes() {
        let s = fuzz_schema();
        let (r, b, _) = run(
            &s,
            &[
                br#"{"s":"keep"}"#,
                br#"{"s":"drop\n","i":"x"}"#,
                br#"{"s":"drop","x":]"#,
            ],
        );
        assert_eq!(r[0], Ok(true));
        assert!(r[1].is_err() && r[2].is_err());
        assert_eq!(b.arena, b"keep");
    }

    #[test]
    fn pretty_printed_whitespace() {
        let v = json!({"i": 1, "zz": [1, {"a": 2}], "s": "x"});
        let line = serde_json::to_string_pretty(&v).unwrap();
        let vs = vals(&line);
        assert_eq!(vs[4], "I64(1)");
        assert_eq!(vs[2], "Str(x)");
    }

    // ---- differential tests against serde_json ----

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec!["ts", "sym", "s", "f", "i", "u", "b"]).prop_map(String::from),
            1 => "[a-z]{0,3}",
            1 => any::<String>(),
            1 => "[\"\\\\/\u{0}-\u{1f}\u{7f}é😀]{0,4}",
        ]
    }

    fn arb_str() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[a-z\"\\\\\u{0}-\u{1f}é😀\u{2028}]{0,8}",
            Just("NaN".to_string()),
            Just("Infinity".to_string()),
            Just("-Infinity".to_string()),
            (-9_000_000_000_000_000_000i64..9_000_000_000_000_000_000)
                .prop_map(crate::codec::time::format_rfc3339),
        ]
    }

    fn arb_num() -> impl Strategy<Value = J> {
        prop_oneof![
            any::<i64>().prop_map(J::from),
            any::<u64>().prop_map(J::from),
            prop::sample::select(vec![
                i64::MIN as i128,
                i64::MIN as i128 + 1,
                -1,
                0,
                i64::MAX as i128,
                i64::MAX as i128 + 1,
                u64::MAX as i128,
            ])
            .prop_map(|x| if x < 0 {
                J::from(x as i64)
            } else {
                J::from(x as u64)
            }),
            any::<f64>().prop_filter_map("finite", |x| Number::from_f64(x).map(J::Number)),
            (-1e6f64..1e6).prop_filter_map("finite", |x| Number::from_f64(x).map(J::Number)),
        ]
    }

    fn arb_scalar() -> impl Strategy<Value = J> {
        prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            arb_num(),
            arb_str().prop_map(J::String),
        ]
    }

    fn arb_value() -> impl Strategy<Value = J> {
        arb_scalar().prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(J::Array),
                prop::collection::vec((arb_key(), inner), 0..4)
                    .prop_map(|kv| J::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn arb_object() -> impl Strategy<Value = J> {
        prop::collection::vec(
            (arb_key(), prop_oneof![4 => arb_scalar(), 1 => arb_value()]),
            0..10,
        )
        .prop_map(|kv| J::Object(kv.into_iter().collect()))
    }

    fn decode_check(line: &[u8], truth: Option<&J>) -> Result<bool, Reject> {
        let s = fuzz_schema();
        let mut d = JsonDecoder::new(&s);
        let mut b = Batch::new(&s, 4);
        let mut sym = Interner::new(1000);
        // A good row first, so that "leaves no trace" is checked on a
        // non-empty batch.
        let mut cx = DecodeCx {
            schema: &s,
            symbols: &mut sym,
            now_ns: 7,
        };
        assert_eq!(d.decode(br#"{"s":"x"}"#, &mut b, &mut cx), Ok(true));
        let before = (b.len(), b.arena.len());
        let got = d.decode(line, &mut b, &mut cx);
        check_line(&s, line, got, &b, before, &sym, truth);
        got
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]

        /// (a) Objects printed by serde_json decode to the fields serde_json
        /// holds, floats bit-exact.
        #[test]
        fn prop_serde_printed_objects(v in arb_object(), pretty in any::<bool>()) {
            let line = if pretty {
                serde_json::to_vec_pretty(&v).unwrap()
            } else {
                serde_json::to_vec(&v).unwrap()
            };
            let _ = decode_check(&line, Some(&v));
        }

        /// Any bytes at all, several lines of them.
        #[test]
        fn prop_any_bytes(data in prop::collection::vec(any::<u8>(), 0..96)) {
            fuzz_one(&data);
        }

        /// (b) Mutated lines: Malformed/InvalidUtf8 iff serde_json rejects;
        /// otherwise fields as serde_json reads them.
        #[test]
        fn prop_mutated_lines(
            v in arb_object(),
            edits in prop::collection::vec(
                (any::<prop::sample::Index>(), 0u8..7, prop_oneof![
                    prop::sample::select(b"{}[],:\"\\ -+.0123456789eEtrufalsn/\tx".to_vec()),
                    any::<u8>(),
                ]),
                1..4,
            ),
        ) {
            let mut line = serde_json::to_vec(&v).unwrap();
            for (at, op, byte) in edits {
                let n = line.len();
                match op {
                    0 | 1 => line.insert(at.index(n + 1), byte),
                    2 | 3 if n > 0 => { line.remove(at.index(n)); }
                    4 | 5 if n > 0 => line[at.index(n)] = byte,
                    6 if n > 0 => line.truncate(at.index(n)),
                    _ => {}
                }
            }
            let _ = decode_check(&line, None);
        }
    }

    #[test]
    fn fuzz_corpus_replays() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode_json");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut n = 0;
        for e in entries {
            let p = e.unwrap().path();
            fuzz_one(&std::fs::read(&p).unwrap());
            n += 1;
        }
        assert!(n > 0, "{} is empty", dir.display());
    }

    /// `cargo test --release --lib codec::json::tests::speed -- --ignored --nocapture`
    /// (`SPEED_LINES=102400` for a run under callgrind). Also times
    /// serde_json into a borrowed struct, for a ratio that survives a busy
    /// machine.
    #[test]
    #[ignore = "timing: run by hand in release mode"]
    fn speed() {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        struct Rec<'a> {
            ts: i64,
            device: &'a str,
            site: &'a str,
            temp: f64,
            hum: f64,
            battery: i64,
        }
        let s = workload_schema();
        let mut d = JsonDecoder::new(&s);
        let mut b = Batch::new(&s, 1024);
        let mut sym = Interner::new(1000);
        let n: usize = std::env::var("SPEED_LINES").map_or(4_000_000, |v| v.parse().unwrap());
        let (mut best, mut serde_best) = (f64::MAX, f64::MAX);
        let per_line =
            |t: std::time::Instant| t.elapsed().as_nanos() as f64 / (n / 1024 * 1024) as f64;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            for _ in 0..n / 1024 {
                b.clear();
                for _ in 0..1024 {
                    let mut cx = DecodeCx {
                        schema: &s,
                        symbols: &mut sym,
                        now_ns: 1,
                    };
                    let r = d.decode(std::hint::black_box(WORKLOAD), &mut b, &mut cx);
                    debug_assert_eq!(r, Ok(true));
                }
            }
            best = best.min(per_line(t));
            let t = std::time::Instant::now();
            for _ in 0..n / 1024 * 1024 {
                let r: Rec<'_> = serde_json::from_slice(std::hint::black_box(WORKLOAD)).unwrap();
                std::hint::black_box(&r);
            }
            serde_best = serde_best.min(per_line(t));
        }
        println!(
            "json workload: {best:.1} ns/line (best of 5); serde_json into a struct: {serde_best:.1}"
        );
    }
}
