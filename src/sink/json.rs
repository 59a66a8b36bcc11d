//! The JSON record encoding of SPEC §3: one object per line, keys in
//! schema order, then meta fields; integers exact to 64 bits; floats in
//! the shortest round-trip form with a `.` or an exponent; NaN and the
//! infinities as strings; null fields omitted.

use super::row::{RowValue, RowView};
use crate::pipeline::program::OutSchema;

/// Appends `s` as a JSON string literal.
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &c) in s.iter().enumerate() {
        let esc: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => {
                out.extend_from_slice(&s[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(b"0123456789abcdef"[(c >> 4) as usize]);
                out.push(b"0123456789abcdef"[(c & 15) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&s[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&s[start..]);
    out.push(b'"');
}

/// Appends a float: shortest round trip, always with `.` or an exponent;
/// non-finite values as strings.
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"\"NaN\"");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 {
            b"\"Infinity\""
        } else {
            b"\"-Infinity\""
        });
    } else {
        let mut b = ryu::Buffer::new();
        out.extend_from_slice(b.format_finite(v).as_bytes());
    }
}

/// Appends one record and a newline: the fields of `schema` from `row`,
/// then `_gen`.
pub fn write_record(out: &mut Vec<u8>, schema: &OutSchema, row: &RowView<'_>, gen_id: u64) {
    write_record_meta(out, schema, row, &[("_gen", gen_id)]);
}

/// Appends one record and a newline: the fields of `schema` from `row`,
/// then the meta fields `meta` in order (`read`: `_gen`, `_shard`,
/// `_seq`, `_ingest_ns`, `_commit_ns`).
pub fn write_record_meta(
    out: &mut Vec<u8>,
    schema: &OutSchema,
    row: &RowView<'_>,
    meta: &[(&str, u64)],
) {
    let mut ib = itoa::Buffer::new();
    out.push(b'{');
    let mut first = true;
    for (k, (name, ty)) in schema.fields.iter().enumerate() {
        let v = row.get(k, *ty);
        if v == RowValue::Null {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, name.as_bytes());
        out.push(b':');
        match v {
            RowValue::Null => unreachable!(),
            RowValue::I64(x) | RowValue::Ts(x) => out.extend_from_slice(ib.format(x).as_bytes()),
            RowValue::U64(x) => out.extend_from_slice(ib.format(x).as_bytes()),
            RowValue::F64(x) => write_f64(out, x),
            RowValue::Bool(x) => out.extend_from_slice(if x { b"true" } else { b"false" }),
            RowValue::Text(s) => write_str(out, s),
        }
    }
    for (name, v) in meta {
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
        out.extend_from_slice(ib.format(*v).as_bytes());
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: f64) -> String {
        let mut o = Vec::new();
        write_f64(&mut o, v);
        String::from_utf8(o).unwrap()
    }

    #[test]
    fn floats_always_look_like_floats() {
        assert_eq!(f(12150.0), "12150.0");
        assert_eq!(f(101.25), "101.25");
        assert_eq!(f(1e16), "1e16");
        assert_eq!(f(1.5e-7), "1.5e-7");
        assert_eq!(f(-0.0), "-0.0");
        assert_eq!(f(f64::NAN), "\"NaN\"");
        assert_eq!(f(f64::NEG_INFINITY), "\"-Infinity\"");
        for v in [0.1, 1.0 / 3.0, 123456789.123, f64::MAX, f64::MIN_POSITIVE] {
            let s = f(v);
            assert_eq!(s.parse::<f64>().unwrap(), v);
            assert!(s.contains('.') || s.contains('e'), "{s}");
        }
    }

    #[test]
    fn strings_escape_controls() {
        let mut o = Vec::new();
        write_str(&mut o, "a\"b\\c\nd\u{1}é".as_bytes());
        assert_eq!(String::from_utf8(o).unwrap(), "\"a\\\"b\\\\c\\nd\\u0001é\"");
    }
}
