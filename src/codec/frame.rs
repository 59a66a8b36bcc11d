//! Framing: where one record ends and the next begins.
//!
//! [`StreamFramer`] cuts a TCP byte stream; it is fed whatever a receive
//! produced and calls back once per complete record. A frame cut by the end
//! of a receive is copied into the framer's own `carry` buffer (at most
//! `max_frame` bytes), so the receive buffer can go back to the kernel at
//! once: no client can hold a shared buffer by sending slowly.
//!
//! [`split_datagram`] does the same for one UDP datagram, which always ends
//! its last record.
//!
//! Newline framing is format-aware ([`LineScan`]): in line protocol a
//! newline preceded by a backslash or inside a quoted string field does not
//! end the line; in CSV a newline inside a quoted cell does not. A trailing
//! `\r` is removed from every line.

use super::{Format, Reason};
use memchr::{memchr, memchr2};

/// What the framer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// One text record, without its line terminator.
    Line(&'a [u8]),
    /// One or more whole binary records, back to back.
    Records(&'a [u8]),
    /// Bytes dropped, with the reason (counted by the caller).
    Reject(Reason),
}

/// Whether the stream may continue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Open,
    /// The stream cannot be resynchronised; the connection must be closed.
    Close(Reason),
}

/// The format-aware end-of-line scanner, resumable across receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineScan {
    /// A newline always ends the line (JSON: raw newlines cannot appear
    /// inside JSON strings).
    Plain,
    Lp(LpScan),
    Csv(CsvScan),
}

/// CSV scanner state (RFC 4180): a `"` opens a quoted cell only at the
/// start of a cell; inside one, `""` is a quote and newlines are data. A
/// stray quote elsewhere is the decoder's to reject, not a reason to run
/// on past the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvScan {
    CellStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted cell: the next byte says whether it closed it.
    QuoteInQuoted,
}

impl CsvScan {
    fn scan(&mut self, data: &[u8]) -> Option<usize> {
        use CsvScan::*;
        for (i, &c) in data.iter().enumerate() {
            *self = match (*self, c) {
                (Quoted, b'"') => QuoteInQuoted,
                (Quoted, _) => Quoted,
                (QuoteInQuoted, b'"') => Quoted,
                (CellStart, b'"') => Quoted,
                (_, b'\n') => return Some(i),
                (_, b',') => CellStart,
                _ => Unquoted,
            };
        }
        None
    }
}

/// Line protocol scanner state. The line is read section by section so a
/// `"` is only taken as a quote where a string field value may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LpScan {
    section: LpSection,
    escaped: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LpSection {
    /// Leading whitespace of a line.
    Start,
    /// A `#` comment: ends at the first newline.
    Comment,
    /// Measurement and tag set.
    Key,
    /// A field key.
    FieldKey,
    /// Just after a field's `=`.
    FieldValueStart,
    /// An unquoted field value.
    FieldValue,
    /// Inside a quoted string field value.
    InString,
    /// After the field set.
    Timestamp,
}

impl LpScan {
    const FRESH: LpScan = LpScan {
        section: LpSection::Start,
        escaped: false,
    };

    /// Advances over `data`; returns the index of the newline ending the
    /// line, if any.
    fn scan(&mut self, data: &[u8]) -> Option<usize> {
        use LpSection::*;
        for (i, &c) in data.iter().enumerate() {
            if self.escaped {
                self.escaped = false;
                if self.section == Start {
                    self.section = Key;
                }
                continue;
            }
            match (self.section, c) {
                (Comment, b'\n') => return Some(i),
                (Comment, _) => {}
                (InString, b'\\') => self.escaped = true,
                (InString, b'"') => self.section = FieldValue,
                (InString, _) => {}
                (_, b'\n') => return Some(i),
                (_, b'\\') => self.escaped = true,
                (Start, b' ' | b'\t' | b'\r') => {}
                (Start, b'#') => self.section = Comment,
                (Start, _) => self.section = Key,
                (Key, b' ') => self.section = FieldKey,
                (Key, _) => {}
                (FieldKey, b'=') => self.section = FieldValueStart,
                (FieldKey, _) => {}
                (FieldValueStart, b'"') => self.section = InString,
                (FieldValueStart | FieldValue, b',') => self.section = FieldKey,
                (FieldValueStart | FieldValue, b' ') => self.section = Timestamp,
                (FieldValueStart | FieldValue, _) => self.section = FieldValue,
                (Timestamp, _) => {}
            }
        }
        None
    }
}

impl LineScan {
    /// The scanner for a text format.
    pub fn for_format(format: Format) -> LineScan {
        match format {
            Format::Lp => LineScan::Lp(LpScan::FRESH),
            Format::Csv => LineScan::Csv(CsvScan::CellStart),
            Format::Json | Format::Binary => LineScan::Plain,
        }
    }

    /// Forgets the line in progress.
    #[inline]
    pub fn reset(&mut self) {
        match self {
            LineScan::Plain => {}
            LineScan::Lp(s) => *s = LpScan::FRESH,
            LineScan::Csv(s) => *s = CsvScan::CellStart,
        }
    }

    /// Index of the newline that ends the current line within `data`,
    /// continuing from the state left by earlier calls.
    #[inline]
    pub fn find(&mut self, data: &[u8]) -> Option<usize> {
        match self {
            LineScan::Plain => memchr(b'\n', data),
            LineScan::Lp(s) => {
                // NB: most lines have neither escapes nor quotes; one memchr
                // for the newline and one for the two specials then decide.
                if *s == LpScan::FRESH
                    && let Some(p) = memchr(b'\n', data)
                    && memchr2(b'\\', b'"', &data[..p]).is_none()
                {
                    return Some(p);
                }
                s.scan(data)
            }
            LineScan::Csv(s) => {
                if *s == CsvScan::CellStart
                    && let Some(p) = memchr(b'\n', data)
                    && memchr(b'"', &data[..p]).is_none()
                {
                    return Some(p);
                }
                s.scan(data)
            }
        }
    }
}

#[inline]
fn trim_cr(line: &[u8]) -> &[u8] {
    match line.split_last() {
        Some((b'\r', rest)) => rest,
        _ => line,
    }
}

/// How a stream is cut.
#[derive(Clone, Copy, Debug)]
pub enum StreamKind {
    Newline(LineScan),
    /// Back-to-back records of `size` bytes.
    Fixed {
        size: usize,
    },
    /// A 2-byte big-endian length, then that many payload bytes.
    Len16Be {
        size: usize,
    },
    /// A 4-byte little-endian length, then that many payload bytes.
    Len32Le {
        size: usize,
    },
}

/// Per-connection framing state.
#[derive(Debug)]
pub struct StreamFramer {
    kind: StreamKind,
    max_frame: usize,
    /// The partial frame cut by the end of the last receive (for length
    /// framings, the prefix too).
    carry: Vec<u8>,
    /// Dropping an over-long line up to its end.
    discarding: bool,
}

/// The carry is allocated when the connection is accepted, at the size
/// a frame cut by a receive usually needs: a whole record for fixed
/// framing, else up to 64 KiB (a longer frame grows it once). Where a
/// receive happens to cut the stream depends on timing; sizing up front
/// keeps that timing out of the allocator on the worker.
const CARRY_INITIAL_MAX: usize = 64 << 10;

fn carry_capacity(kind: StreamKind, max_frame: usize) -> usize {
    match kind {
        StreamKind::Fixed { size } => size,
        _ => max_frame.min(CARRY_INITIAL_MAX) + 4,
    }
}

impl StreamFramer {
    pub fn new(kind: StreamKind, max_frame: usize) -> StreamFramer {
        assert!(max_frame > 0, "max_frame validated in config");
        StreamFramer {
            kind,
            max_frame,
            carry: Vec::with_capacity(carry_capacity(kind, max_frame)),
            discarding: false,
        }
    }

    /// Resets for a new connection, keeping the carry allocation.
    pub fn reset(&mut self, kind: StreamKind, max_frame: usize) {
        self.kind = kind;
        self.max_frame = max_frame;
        self.carry.clear();
        self.carry.reserve(carry_capacity(kind, max_frame));
        self.discarding = false;
    }

    /// Bytes held for a frame not yet complete.
    pub fn pending(&self) -> usize {
        self.carry.len()
    }

    /// Frames `data`, calling `on` for each record or rejected frame.
    pub fn feed(&mut self, data: &[u8], on: &mut impl FnMut(Event<'_>)) -> Status {
        match self.kind {
            StreamKind::Newline(_) => {
                self.feed_lines(data, on);
                Status::Open
            }
            StreamKind::Fixed { size } => {
                self.feed_fixed(data, size, on);
                Status::Open
            }
            StreamKind::Len16Be { size } => self.feed_len(data, 2, size, on),
            StreamKind::Len32Le { size } => self.feed_len(data, 4, size, on),
        }
    }

    /// The stream ended: a final line without a newline is still a record;
    /// a partial binary frame is `Truncated`.
    pub fn finish(&mut self, on: &mut impl FnMut(Event<'_>)) {
        if self.carry.is_empty() || self.discarding {
            self.carry.clear();
            return;
        }
        match self.kind {
            StreamKind::Newline(_) => on(Event::Line(trim_cr(&self.carry))),
            _ => on(Event::Reject(Reason::Truncated)),
        }
        self.carry.clear();
    }

    fn feed_lines(&mut self, mut data: &[u8], on: &mut impl FnMut(Event<'_>)) {
        let StreamKind::Newline(scan) = &mut self.kind else {
            unreachable!()
        };
        while !data.is_empty() {
            match scan.find(data) {
                Some(p) => {
                    scan.reset();
                    if self.discarding {
                        self.discarding = false;
                    } else if self.carry.is_empty() {
                        if p > self.max_frame {
                            on(Event::Reject(Reason::FrameTooLong));
                        } else {
                            on(Event::Line(trim_cr(&data[..p])));
                        }
                    } else if self.carry.len() + p > self.max_frame {
                        self.carry.clear();
                        on(Event::Reject(Reason::FrameTooLong));
                    } else {
                        self.carry.extend_from_slice(&data[..p]);
                        on(Event::Line(trim_cr(&self.carry)));
                        self.carry.clear();
                    }
                    data = &data[p + 1..];
                }
                None => {
                    if self.discarding {
                        return;
                    }
                    if self.carry.len() + data.len() > self.max_frame {
                        // Counted once, when the line first goes over.
                        self.carry.clear();
                        self.discarding = true;
                        on(Event::Reject(Reason::FrameTooLong));
                    } else {
                        self.carry.extend_from_slice(data);
                    }
                    return;
                }
            }
        }
    }

    fn feed_fixed(&mut self, mut data: &[u8], size: usize, on: &mut impl FnMut(Event<'_>)) {
        if !self.carry.is_empty() {
            let take = (size - self.carry.len()).min(data.len());
            self.carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.carry.len() < size {
                return;
            }
            on(Event::Records(&self.carry));
            self.carry.clear();
        }
        let whole = data.len() / size * size;
        if whole > 0 {
            on(Event::Records(&data[..whole]));
        }
        self.carry.extend_from_slice(&data[whole..]);
    }

    fn feed_len(
        &mut self,
        mut data: &[u8],
        prefix: usize,
        size: usize,
        on: &mut impl FnMut(Event<'_>),
    ) -> Status {
        loop {
            // Complete the prefix (in carry) if one is pending.
            let mut len = None;
            if self.carry.len() >= prefix {
                len = Some(read_len(&self.carry[..prefix]));
            } else if !self.carry.is_empty() {
                let take = (prefix - self.carry.len()).min(data.len());
                self.carry.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.carry.len() < prefix {
                    return Status::Open;
                }
                len = Some(read_len(&self.carry[..prefix]));
            }
            match len {
                Some(len) => {
                    if len > self.max_frame {
                        self.carry.clear();
                        return Status::Close(Reason::FrameTooLong);
                    }
                    let have = self.carry.len() - prefix;
                    let take = (len - have).min(data.len());
                    self.carry.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.carry.len() - prefix < len {
                        return Status::Open;
                    }
                    emit_payload(&self.carry[prefix..], size, on);
                    self.carry.clear();
                }
                None => {
                    // Nothing carried: frame straight from `data`.
                    if data.len() < prefix {
                        self.carry.extend_from_slice(data);
                        return Status::Open;
                    }
                    let len = read_len(&data[..prefix]);
                    if len > self.max_frame {
                        return Status::Close(Reason::FrameTooLong);
                    }
                    if data.len() - prefix < len {
                        self.carry.extend_from_slice(data);
                        return Status::Open;
                    }
                    emit_payload(&data[prefix..prefix + len], size, on);
                    data = &data[prefix + len..];
                }
            }
            if data.is_empty() {
                return Status::Open;
            }
        }
    }
}

#[inline]
fn read_len(prefix: &[u8]) -> usize {
    match *prefix {
        [a, b] => u16::from_be_bytes([a, b]) as usize,
        [a, b, c, d] => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => unreachable!("prefix is 2 or 4 bytes"),
    }
}

/// A payload holds whole binary records; a trailing partial one is bad.
#[inline]
fn emit_payload(payload: &[u8], size: usize, on: &mut impl FnMut(Event<'_>)) {
    let whole = payload.len() / size * size;
    if whole > 0 {
        on(Event::Records(&payload[..whole]));
    }
    if whole != payload.len() {
        on(Event::Reject(Reason::Truncated));
    }
}

/// Cuts one datagram into records: binary records of `size` bytes (a
/// trailing partial record is `Truncated`), or lines for text formats (the
/// datagram's end ends its last line).
pub fn split_datagram(
    data: &[u8],
    format: Format,
    size: usize,
    max_frame: usize,
    on: &mut impl FnMut(Event<'_>),
) {
    if format == Format::Binary {
        emit_payload(data, size, on);
        return;
    }
    let mut scan = LineScan::for_format(format);
    let mut rest = data;
    while !rest.is_empty() {
        let (line, next) = match scan.find(rest) {
            Some(p) => (&rest[..p], &rest[p + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        scan.reset();
        if line.len() > max_frame {
            on(Event::Reject(Reason::FrameTooLong));
        } else {
            on(Event::Line(trim_cr(line)));
        }
        rest = next;
    }
}

/// Fuzz entry point for the framers: the first byte picks the framing,
/// the format and where the input is cut into receives; the rest is the
/// stream. Checks that no record exceeds `max_frame`, that binary runs are
/// whole records, that the carry stays bounded, and that cutting the same
/// bytes differently yields the same records.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    const MAX: usize = 64;
    const SIZE: usize = 4;
    let format = [Format::Lp, Format::Csv, Format::Json][(sel as usize >> 2) % 3];
    let kind = match sel & 3 {
        0 => StreamKind::Newline(LineScan::for_format(format)),
        1 => StreamKind::Fixed { size: SIZE },
        2 => StreamKind::Len16Be { size: SIZE },
        _ => StreamKind::Len32Le { size: SIZE },
    };
    let run = |cuts: &mut dyn Iterator<Item = usize>| -> Vec<(u8, Vec<u8>)> {
        let mut f = StreamFramer::new(kind, MAX);
        let mut out = Vec::new();
        let mut rest = stream;
        let mut closed = false;
        let mut on = |e: Event<'_>| match e {
            Event::Line(l) => {
                assert!(l.len() <= MAX, "line over max_frame");
                out.push((b'L', l.to_vec()));
            }
            Event::Records(r) => {
                assert!(
                    !r.is_empty() && r.len() % SIZE == 0,
                    "binary runs are whole records"
                );
                // Runs may be split differently; compare record by record.
                for rec in r.chunks(SIZE) {
                    out.push((b'R', rec.to_vec()));
                }
            }
            Event::Reject(r) => out.push((b'X', r.name().as_bytes().to_vec())),
        };
        while !rest.is_empty() && !closed {
            let n = cuts.next().unwrap_or(rest.len()).clamp(1, rest.len());
            let (now, later) = rest.split_at(n);
            if let Status::Close(_) = f.feed(now, &mut on) {
                closed = true;
            }
            assert!(f.pending() <= MAX + 4, "carry bounded by max_frame");
            rest = later;
        }
        if !closed {
            f.finish(&mut on);
        }
        out
    };
    let whole = run(&mut std::iter::empty());
    let mut step = (sel as usize % 7) + 1;
    let mut cuts = std::iter::from_fn(move || {
        step = step * 5 % 13 + 1;
        Some(step)
    });
    let pieces = run(&mut cuts);
    let mut bytes = std::iter::repeat(1usize);
    let single = run(&mut bytes);
    assert_eq!(whole, pieces, "framing depends on where receives end");
    assert_eq!(whole, single, "framing depends on where receives end");
    let mut on = |e: Event<'_>| {
        if let Event::Records(r) = e {
            assert_eq!(r.len() % SIZE, 0);
        }
    };
    split_datagram(stream, format, SIZE, MAX, &mut on);
    split_datagram(stream, Format::Binary, SIZE, MAX, &mut on);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(f: &mut StreamFramer, chunks: &[&[u8]]) -> (Vec<String>, Vec<Status>) {
        let mut out = Vec::new();
        let mut st = Vec::new();
        for c in chunks {
            st.push(f.feed(c, &mut |e| out.push(render(e))));
        }
        f.finish(&mut |e| out.push(render(e)));
        (out, st)
    }

    fn render(e: Event<'_>) -> String {
        match e {
            Event::Line(l) => format!("L:{}", String::from_utf8_lossy(l)),
            Event::Records(r) => format!("R:{}", String::from_utf8_lossy(r)),
            Event::Reject(r) => format!("X:{r}"),
        }
    }

    fn lines(format: Format, max: usize) -> StreamFramer {
        StreamFramer::new(StreamKind::Newline(LineScan::for_format(format)), max)
    }

    #[test]
    fn newline_every_cut() {
        let input = b"a=1\r\nbb=2\nccc=3\n";
        for cut in 0..=input.len() {
            let mut f = lines(Format::Json, 64);
            let (out, _) = collect(&mut f, &[&input[..cut], &input[cut..]]);
            assert_eq!(out, ["L:a=1", "L:bb=2", "L:ccc=3"], "cut at {cut}");
        }
    }

    #[test]
    fn final_line_without_newline_is_a_record() {
        let mut f = lines(Format::Json, 64);
        let (out, _) = collect(&mut f, &[b"x\ny"]);
        assert_eq!(out, ["L:x", "L:y"]);
    }

    #[test]
    fn too_long_line_dropped_to_next_newline() {
        let mut f = lines(Format::Json, 4);
        let (out, _) = collect(&mut f, &[b"ok\n123", b"456", b"789\nfine\n"]);
        assert_eq!(out, ["L:ok", "X:frame_too_long", "L:fine"]);
        let mut f = lines(Format::Json, 4);
        let (out, _) = collect(&mut f, &[b"12345678\nab\n"]);
        assert_eq!(out, ["X:frame_too_long", "L:ab"]);
    }

    #[test]
    fn lp_escaped_and_quoted_newlines() {
        let input: &[u8] = b"m,t=a\\\nb f=\"x\ny\\\"\nz\" 1\n# c \"\nm f=1\n";
        for cut in 0..=input.len() {
            let mut f = lines(Format::Lp, 128);
            let (out, _) = collect(&mut f, &[&input[..cut], &input[cut..]]);
            assert_eq!(
                out,
                ["L:m,t=a\\\nb f=\"x\ny\\\"\nz\" 1", "L:# c \"", "L:m f=1"],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn lp_quote_in_tag_is_literal() {
        let mut f = lines(Format::Lp, 128);
        let (out, _) = collect(&mut f, &[b"m,t=a\"b f=1\nm f=2\n"]);
        assert_eq!(out, ["L:m,t=a\"b f=1", "L:m f=2"]);
    }

    #[test]
    fn csv_quoted_newline() {
        let input: &[u8] = b"1,\"a\nb\",\"c\"\"\"\n2,x\n";
        for cut in 0..=input.len() {
            let mut f = lines(Format::Csv, 128);
            let (out, _) = collect(&mut f, &[&input[..cut], &input[cut..]]);
            assert_eq!(out, ["L:1,\"a\nb\",\"c\"\"\"", "L:2,x"], "cut {cut}");
        }
    }

    #[test]
    fn csv_stray_quote_does_not_swallow_lines() {
        let mut f = lines(Format::Csv, 128);
        let (out, _) = collect(&mut f, &[b"1,a\"b,2\n3,\"x\"y,4\n5,6\n"]);
        assert_eq!(out, ["L:1,a\"b,2", "L:3,\"x\"y,4", "L:5,6"]);
    }

    #[test]
    fn fixed_every_cut() {
        let input = b"aaaabbbbcccc";
        for cut in 0..=input.len() {
            let mut f = StreamFramer::new(StreamKind::Fixed { size: 4 }, 64);
            let mut got = Vec::new();
            for c in [&input[..cut], &input[cut..]] {
                f.feed(c, &mut |e| {
                    if let Event::Records(r) = e {
                        got.extend_from_slice(r)
                    }
                });
            }
            assert_eq!(got, input, "cut {cut}");
            assert_eq!(f.pending(), 0);
        }
        let mut f = StreamFramer::new(StreamKind::Fixed { size: 4 }, 64);
        let (out, _) = collect(&mut f, &[b"aaaab"]);
        assert_eq!(out, ["R:aaaa", "X:truncated"]);
    }

    #[test]
    fn len_prefixed_every_cut() {
        let mut input = Vec::new();
        for p in [&b"aaaa"[..], b"bbbbcccc", b"", b"ddddx"] {
            input.extend_from_slice(&(p.len() as u32).to_le_bytes());
            input.extend_from_slice(p);
        }
        for cut in 0..=input.len() {
            let mut f = StreamFramer::new(StreamKind::Len32Le { size: 4 }, 64);
            let (out, st) = collect(&mut f, &[&input[..cut], &input[cut..]]);
            assert_eq!(
                out,
                ["R:aaaa", "R:bbbbcccc", "R:dddd", "X:truncated"],
                "cut {cut}"
            );
            assert!(st.iter().all(|s| *s == Status::Open));
        }
        let mut input = Vec::new();
        input.extend_from_slice(&4u16.to_be_bytes());
        input.extend_from_slice(b"wxyz");
        for cut in 0..=input.len() {
            let mut f = StreamFramer::new(StreamKind::Len16Be { size: 2 }, 64);
            let mut out = Vec::new();
            for c in [&input[..cut], &input[cut..]] {
                f.feed(c, &mut |e| out.push(render(e)));
            }
            assert_eq!(out, ["R:wxyz"], "cut {cut}");
        }
    }

    #[test]
    fn huge_length_prefix_closes() {
        let mut f = StreamFramer::new(StreamKind::Len32Le { size: 4 }, 1 << 16);
        let st = f.feed(&u32::MAX.to_le_bytes(), &mut |_| panic!("no event"));
        assert_eq!(st, Status::Close(Reason::FrameTooLong));
        let mut f = StreamFramer::new(StreamKind::Len32Le { size: 4 }, 1 << 16);
        assert_eq!(f.feed(&[0xff, 0xff], &mut |_| {}), Status::Open);
        assert_eq!(
            f.feed(&[0xff, 0xff], &mut |_| {}),
            Status::Close(Reason::FrameTooLong)
        );
    }

    #[test]
    fn datagram_split() {
        let mut out = Vec::new();
        split_datagram(b"a\nb\r\n\nc", Format::Lp, 0, 64, &mut |e| {
            out.push(render(e))
        });
        assert_eq!(out, ["L:a", "L:b", "L:", "L:c"]);
        let mut out = Vec::new();
        split_datagram(b"aaaabb", Format::Binary, 4, 64, &mut |e| {
            out.push(render(e))
        });
        assert_eq!(out, ["R:aaaa", "X:truncated"]);
    }
}
