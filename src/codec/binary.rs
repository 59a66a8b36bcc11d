//! Fixed-layout binary records: each field at its `offset`, in the schema's
//! byte order, widened to its logical type.
//!
//! Records are decoded a run at a time, one column after another, so the
//! inner loop is a strided load and a store per record with no branch on
//! the field type.

use super::batch::{Batch, ColumnData};
use super::schema::{Schema, WireType};

#[derive(Clone, Debug)]
struct Slot {
    col: usize,
    wire: WireType,
    offset: usize,
}

/// Decoder for one binary schema.
#[derive(Clone, Debug)]
pub struct BinaryDecoder {
    slots: Vec<Slot>,
    size: usize,
    big_endian: bool,
}

macro_rules! load {
    ($t:ty, $data:expr, $at:expr, $be:expr) => {{
        let mut b = [0u8; std::mem::size_of::<$t>()];
        b.copy_from_slice(&$data[$at..$at + std::mem::size_of::<$t>()]);
        if $be {
            <$t>::from_be_bytes(b)
        } else {
            <$t>::from_le_bytes(b)
        }
    }};
}

impl BinaryDecoder {
    /// # Panics
    /// If the schema has no layout (`size`, offsets): validated in config.
    pub fn new(schema: &Schema) -> BinaryDecoder {
        let size = schema.size.expect("binary schemas have a size (config)") as usize;
        let slots = schema
            .fields
            .iter()
            .enumerate()
            .map(|(col, f)| {
                let offset = f.offset.expect("binary fields have offsets (config)") as usize;
                assert!(
                    offset + f.wire.width() as usize <= size,
                    "checked in config"
                );
                Slot {
                    col,
                    wire: f.wire,
                    offset,
                }
            })
            .collect();
        BinaryDecoder {
            slots,
            size,
            big_endian: schema.big_endian,
        }
    }

    /// Record size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Decodes whole records from the front of `data` (a multiple of the
    /// record size) into `out`, as many as fit; returns how many.
    pub fn decode_run(&self, data: &[u8], out: &mut Batch) -> usize {
        debug_assert_eq!(data.len() % self.size, 0);
        let n = (data.len() / self.size).min(out.remaining());
        let start = out.len();
        let size = self.size;
        let be = self.big_endian;
        for s in &self.slots {
            let col = &mut out.cols[s.col].data;
            let off = s.offset;
            match (s.wire, col) {
                (WireType::I64, ColumnData::I64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = load!(i64, data, i * size + off, be);
                    }
                }
                (WireType::I32, ColumnData::I64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = load!(i32, data, i * size + off, be) as i64;
                    }
                }
                (WireType::I16, ColumnData::I64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = load!(i16, data, i * size + off, be) as i64;
                    }
                }
                (WireType::I8, ColumnData::I64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = data[i * size + off] as i8 as i64;
                    }
                }
                (WireType::U64, ColumnData::U64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = load!(u64, data, i * size + off, be);
                    }
                }
                (WireType::U32, ColumnData::U64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = load!(u32, data, i * size + off, be) as u64;
                    }
                }
                (WireType::U16, ColumnData::U64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = load!(u16, data, i * size + off, be) as u64;
                    }
                }
                (WireType::U8, ColumnData::U64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = data[i * size + off] as u64;
                    }
                }
                (WireType::F64, ColumnData::F64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = f64::from_bits(load!(u64, data, i * size + off, be));
                    }
                }
                (WireType::F32, ColumnData::F64(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = f32::from_bits(load!(u32, data, i * size + off, be)) as f64;
                    }
                }
                (WireType::Bool, ColumnData::Bool(c)) => {
                    for (i, dst) in c[start..start + n].iter_mut().enumerate() {
                        *dst = data[i * size + off] != 0;
                    }
                }
                _ => unreachable!("binary layouts validated in config"),
            }
        }
        out.commit_dense(n);
        n
    }
}

/// Fuzz entry point: decodes `data` as runs of records of a schema using
/// every wire type, big- and little-endian; every decoded value must
/// re-encode to its source bytes where the type is exact.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use super::schema::{Field, parse_type};
    for big_endian in [false, true] {
        let f = |name: &str, ty: &str, offset: u32| {
            let (ty, wire) = parse_type(ty).expect("known type");
            Field {
                name: name.into(),
                ty,
                wire,
                offset: Some(offset),
                required: false,
            }
        };
        let schema = Schema::new(
            "fuzz",
            vec![
                f("a", "i8", 0),
                f("b", "u8", 1),
                f("c", "i16", 2),
                f("d", "u16", 4),
                f("e", "bool", 6),
                f("g", "i32", 8),
                f("h", "u32", 12),
                f("i", "f32", 16),
                f("ts", "timestamp", 24),
                f("k", "u64", 32),
                f("l", "f64", 40),
            ],
            Some(48),
            big_endian,
        );
        let d = BinaryDecoder::new(&schema);
        let whole = data.len() / 48 * 48;
        let mut run = &data[..whole];
        let mut b = Batch::new(&schema, 3);
        let mut row = 0usize;
        while !run.is_empty() {
            b.clear();
            let n = d.decode_run(run, &mut b);
            assert!(n > 0 && n <= 3);
            for i in 0..n {
                let rec = &run[i * 48..(i + 1) * 48];
                let ColumnData::U64(k) = &b.cols[9].data else {
                    unreachable!()
                };
                let want = if big_endian {
                    u64::from_be_bytes(rec[32..40].try_into().expect("8 bytes"))
                } else {
                    u64::from_le_bytes(rec[32..40].try_into().expect("8 bytes"))
                };
                assert_eq!(k[i], want);
                let ColumnData::Bool(e) = &b.cols[4].data else {
                    unreachable!()
                };
                assert_eq!(e[i], rec[6] != 0);
                row += 1;
            }
            run = &run[n * 48..];
        }
        assert_eq!(row, whole / 48);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::schema::{Field, parse_type};
    use crate::codec::{Interner, Value};

    pub(crate) fn tick_schema() -> Schema {
        let f = |name: &str, ty: &str, offset: u32| {
            let (ty, wire) = parse_type(ty).unwrap();
            Field {
                name: name.into(),
                ty,
                wire,
                offset: Some(offset),
                required: false,
            }
        };
        Schema::new(
            "tick",
            vec![
                f("ts", "timestamp", 0),
                f("seq", "u64", 8),
                f("symbol", "u32", 16),
                f("qty", "i32", 20),
                f("price", "f64", 24),
            ],
            Some(32),
            false,
        )
    }

    fn tick(ts: i64, seq: u64, sym: u32, qty: i32, price: f64) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..8].copy_from_slice(&ts.to_le_bytes());
        b[8..16].copy_from_slice(&seq.to_le_bytes());
        b[16..20].copy_from_slice(&sym.to_le_bytes());
        b[20..24].copy_from_slice(&qty.to_le_bytes());
        b[24..32].copy_from_slice(&price.to_le_bytes());
        b
    }

    #[test]
    fn decodes_and_widens() {
        let s = tick_schema();
        let d = BinaryDecoder::new(&s);
        let mut data = Vec::new();
        data.extend_from_slice(&tick(5, 1, 7, -3, 10.5));
        data.extend_from_slice(&tick(6, 2, 8, 4, 11.25));
        data.extend_from_slice(&tick(7, 3, 9, 5, 12.0));
        let mut b = Batch::new(&s, 2);
        assert_eq!(d.decode_run(&data, &mut b), 2, "bounded by capacity");
        let sym = Interner::new(1);
        assert_eq!(b.value(1, 0, &sym), Value::Ts(6));
        assert_eq!(b.value(0, 2, &sym), Value::U64(7));
        assert_eq!(b.value(0, 3, &sym), Value::I64(-3));
        assert_eq!(b.value(1, 4, &sym), Value::F64(11.25));
        b.clear();
        assert_eq!(d.decode_run(&data[64..], &mut b), 1);
        assert_eq!(b.value(0, 1, &sym), Value::U64(3));
    }
}
