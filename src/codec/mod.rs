//! Framing and decoding: bytes from a socket become rows of a [`Batch`].
//!
//! No I/O and no clock here: the runtime hands in bytes and `now_ns`, so the
//! same code runs in the shard worker, in unit tests, in benches and under
//! the fuzzers. A record that cannot be decoded is a [`Reject`] with a
//! [`Reason`], never an error that stops the stream: the good records on
//! either side are always kept.
//!
//! * [`frame`] cuts a TCP byte stream (newline, fixed, len16be, len32le) or a
//!   datagram into records, carrying a partial frame in a per-connection
//!   buffer of at most `max_frame` bytes.
//! * [`binary`], [`lp`], [`json`] and [`csv`] decode one record into a row.

pub mod batch;
pub mod binary;
pub mod csv;
pub mod frame;
pub mod intern;
pub mod json;
pub mod lp;
pub mod num;
pub mod schema;
pub mod time;

pub use batch::{Batch, Bitmap, Column, ColumnData, Reject, StrRef, Value};
pub use intern::Interner;
pub use schema::{Field, FieldType, Schema, WireType};

use std::fmt;

/// Why a record (or a frame, or a connection) was dropped. Every reason is a
/// counter per source; the `name` is its label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Reason {
    /// A `required` field is absent or null.
    MissingField,
    /// A value of the wrong type for its field.
    TypeMismatch,
    /// A number that does not fit its field's type.
    OutOfRange,
    /// The record does not follow its format's syntax.
    Malformed,
    /// A string or symbol that is not UTF-8.
    InvalidUtf8,
    /// A line or frame longer than `max_frame`.
    FrameTooLong,
    /// A partial binary record: a frame or datagram not a multiple of the
    /// record size, or a stream that ended mid-record.
    Truncated,
    /// The shard's symbol table is full (`max_symbols`).
    SymbolLimit,
    /// A timestamp that cannot be parsed or does not fit in i64 ns.
    BadTimestamp,
    /// A CSV record with more or fewer cells than `columns`.
    ColumnCount,
    /// A line protocol record of another measurement (`measurement`).
    Skipped,
}

impl Reason {
    /// Every reason, in counter order.
    pub const ALL: [Reason; 11] = [
        Reason::MissingField,
        Reason::TypeMismatch,
        Reason::OutOfRange,
        Reason::Malformed,
        Reason::InvalidUtf8,
        Reason::FrameTooLong,
        Reason::Truncated,
        Reason::SymbolLimit,
        Reason::BadTimestamp,
        Reason::ColumnCount,
        Reason::Skipped,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The counter label.
    pub fn name(self) -> &'static str {
        match self {
            Reason::MissingField => "missing_field",
            Reason::TypeMismatch => "type_mismatch",
            Reason::OutOfRange => "out_of_range",
            Reason::Malformed => "malformed",
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::FrameTooLong => "frame_too_long",
            Reason::Truncated => "truncated",
            Reason::SymbolLimit => "symbol_limit",
            Reason::BadTimestamp => "bad_timestamp",
            Reason::ColumnCount => "column_count",
            Reason::Skipped => "skipped",
        }
    }

    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Wire format of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Binary,
    Lp,
    Json,
    Csv,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Binary => "binary",
            Format::Lp => "lp",
            Format::Json => "json",
            Format::Csv => "csv",
        }
    }
}

/// How records are delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Datagram,
    Newline,
    Fixed,
    Len16Be,
    Len32Le,
}

impl Framing {
    pub fn name(self) -> &'static str {
        match self {
            Framing::Datagram => "datagram",
            Framing::Newline => "newline",
            Framing::Fixed => "fixed",
            Framing::Len16Be => "len16be",
            Framing::Len32Le => "len32le",
        }
    }
}

/// Line protocol timestamp unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    /// Nanoseconds per unit.
    pub fn ns(self) -> i64 {
        match self {
            Precision::Ns => 1,
            Precision::Us => 1_000,
            Precision::Ms => 1_000_000,
            Precision::S => 1_000_000_000,
        }
    }
}

/// What a decoder needs besides the bytes: the schema, the shard's symbol
/// table and the time to give records without `ts`.
pub struct DecodeCx<'a> {
    pub schema: &'a Schema,
    pub symbols: &'a mut Interner,
    pub now_ns: u64,
}

/// Per-source decoder settings, built once from the config.
#[derive(Clone, Debug)]
pub struct DecoderSpec {
    pub format: Format,
    /// `measurement` for line protocol: other measurements are `Skipped`.
    pub measurement: Option<String>,
    pub precision: Precision,
    /// CSV column names in order.
    pub columns: Vec<String>,
}

/// A record decoder for one source; holds only reusable scratch state.
pub enum Decoder {
    Binary(binary::BinaryDecoder),
    Lp(lp::LpDecoder),
    Json(json::JsonDecoder),
    Csv(csv::CsvDecoder),
}

impl Decoder {
    pub fn new(spec: &DecoderSpec, schema: &Schema) -> Decoder {
        match spec.format {
            Format::Binary => Decoder::Binary(binary::BinaryDecoder::new(schema)),
            Format::Lp => Decoder::Lp(lp::LpDecoder::new(
                schema,
                spec.measurement.as_deref(),
                spec.precision,
            )),
            Format::Json => Decoder::Json(json::JsonDecoder::new(schema)),
            Format::Csv => Decoder::Csv(csv::CsvDecoder::new(schema, &spec.columns)),
        }
    }

    /// Decodes one text record (a line without its terminator) into a new
    /// row of `out`. `Ok(false)`: nothing to decode (blank or comment line).
    ///
    /// # Panics
    /// If `out` is full (callers flush first) or if this is a binary decoder.
    #[inline]
    pub fn decode_line(
        &mut self,
        line: &[u8],
        out: &mut Batch,
        cx: &mut DecodeCx<'_>,
    ) -> Result<bool, Reject> {
        match self {
            Decoder::Lp(d) => d.decode(line, out, cx),
            Decoder::Json(d) => d.decode(line, out, cx),
            Decoder::Csv(d) => d.decode(line, out, cx),
            Decoder::Binary(_) => unreachable!("binary records arrive as runs"),
        }
    }
}
