//! Record schemas: the typed field lists that sources decode into.
//!
//! A [`Schema`] is validated once by `config` and shared read-only by every
//! shard. Field order is the column order of a [`crate::codec::Batch`] and the
//! key order of every JSON encoding.

use std::fmt;

/// Maximum fields per schema. Row presence is tracked in one `u64` per record
/// on the decode path, so this is a hard limit checked by `config`.
pub const FIELDS_MAX: usize = 64;

/// The logical type of a field, a column or an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    I64,
    U64,
    F64,
    Bool,
    /// An interned string: per-shard `u32` ids in columns, the string on output.
    Symbol,
    /// A string stored by value.
    Str,
    /// Nanoseconds since the Unix epoch, stored as `i64`.
    Timestamp,
}

impl FieldType {
    /// The name used in configs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::I64 => "i64",
            FieldType::U64 => "u64",
            FieldType::F64 => "f64",
            FieldType::Bool => "bool",
            FieldType::Symbol => "symbol",
            FieldType::Str => "string",
            FieldType::Timestamp => "timestamp",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::I64 | FieldType::U64 | FieldType::F64)
    }

    pub fn is_integer(self) -> bool {
        matches!(self, FieldType::I64 | FieldType::U64)
    }

    pub fn is_text(self) -> bool {
        matches!(self, FieldType::Symbol | FieldType::Str)
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a field is laid out in a binary record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireType {
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    F32,
    F64,
    /// One byte: zero is false, anything else true.
    Bool,
    /// Not representable in a fixed layout (symbol, string).
    Variable,
}

impl WireType {
    /// Bytes the field occupies in a binary record (0 for `Variable`).
    pub fn width(self) -> u32 {
        match self {
            WireType::I8 | WireType::U8 | WireType::Bool => 1,
            WireType::I16 | WireType::U16 => 2,
            WireType::I32 | WireType::U32 | WireType::F32 => 4,
            WireType::I64 | WireType::U64 | WireType::F64 => 8,
            WireType::Variable => 0,
        }
    }
}

/// Parses a declared type name (`"u32"`, `"timestamp"`, ...) into the logical
/// type it widens to and its binary layout.
pub fn parse_type(name: &str) -> Option<(FieldType, WireType)> {
    Some(match name {
        "i8" => (FieldType::I64, WireType::I8),
        "i16" => (FieldType::I64, WireType::I16),
        "i32" => (FieldType::I64, WireType::I32),
        "i64" => (FieldType::I64, WireType::I64),
        "u8" => (FieldType::U64, WireType::U8),
        "u16" => (FieldType::U64, WireType::U16),
        "u32" => (FieldType::U64, WireType::U32),
        "u64" => (FieldType::U64, WireType::U64),
        "f32" => (FieldType::F64, WireType::F32),
        "f64" => (FieldType::F64, WireType::F64),
        "bool" => (FieldType::Bool, WireType::Bool),
        "timestamp" => (FieldType::Timestamp, WireType::I64),
        "symbol" => (FieldType::Symbol, WireType::Variable),
        "string" => (FieldType::Str, WireType::Variable),
        _ => return None,
    })
}

/// Every type name `parse_type` accepts, for error messages.
pub const TYPE_NAMES: &str =
    "i8, i16, i32, i64, u8, u16, u32, u64, f32, f64, bool, timestamp, symbol, string";

/// One field of a schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub wire: WireType,
    /// Byte offset in a binary record; `None` for schemas without a layout.
    pub offset: Option<u32>,
    pub required: bool,
}

/// A named, ordered list of fields.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    pub name: String,
    pub fields: Vec<Field>,
    /// Binary record size in bytes, when the schema has a layout.
    pub size: Option<u32>,
    pub big_endian: bool,
    /// Index of the `ts` field (type `timestamp`), the event time.
    pub ts_index: Option<usize>,
    /// Bit `i` set when field `i` is `required`.
    pub required_mask: u64,
}

impl Schema {
    /// Builds a schema, computing the derived masks. `fields.len()` must not
    /// exceed [`FIELDS_MAX`] (checked by `config`).
    pub fn new(name: &str, fields: Vec<Field>, size: Option<u32>, big_endian: bool) -> Schema {
        assert!(
            fields.len() <= FIELDS_MAX,
            "field count validated in config"
        );
        let ts_index = fields
            .iter()
            .position(|f| f.name == "ts" && f.ty == FieldType::Timestamp);
        let required_mask = fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.required)
            .fold(0u64, |m, (i, _)| m | (1 << i));
        Schema {
            name: name.to_string(),
            fields,
            size,
            big_endian,
            ts_index,
            required_mask,
        }
    }

    /// Index of the field called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// Index of the field whose name equals `name` as bytes.
    #[inline]
    pub fn index_of_bytes(&self, name: &[u8]) -> Option<usize> {
        self.fields.iter().position(|f| f.name.as_bytes() == name)
    }

    /// A one-line rendering: `ts:timestamp, seq:u64, ...`.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&f.name);
            s.push(':');
            s.push_str(f.ty.name());
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn masks_and_ts() {
        let s = Schema::new(
            "s",
            vec![
                field("a", "i32", true),
                field("ts", "timestamp", false),
                field("c", "symbol", true),
            ],
            None,
            false,
        );
        assert_eq!(s.ts_index, Some(1));
        assert_eq!(s.required_mask, 0b101);
        assert_eq!(s.fields[0].ty, FieldType::I64);
        assert_eq!(s.fields[0].wire.width(), 4);
        assert_eq!(s.describe(), "a:i64, ts:timestamp, c:symbol");
    }

    #[test]
    fn ts_must_be_timestamp_to_count() {
        let s = Schema::new("s", vec![field("ts", "i64", false)], None, false);
        assert_eq!(s.ts_index, None);
    }
}
