//! The compact row format records cross threads (and, later, land in the
//! journal) in.
//!
//! ```text
//! row   = len:u32 | bitmap: ceil(n/8) bytes | fixed: n × 8 bytes | var bytes
//! fixed = i64 / u64 / f64 bits / bool (0|1) / timestamp, little-endian;
//!         for symbol and string: offset:u32 (from the row start) | len:u32
//! ```
//! Bit `k` of the bitmap is set when field `k` is present. `len` counts
//! the whole row, so a reader can skip rows. Symbols are written as their
//! bytes: interned ids mean nothing outside their shard.

use crate::codec::FieldType;
use crate::codec::batch::ColumnData;
use crate::pipeline::exec::Rows;
use crate::pipeline::kernels::{Sel, each};
use crate::pipeline::program::{EmitSpec, OutSchema};

/// Appends the selected rows of `rows` for `spec` to `out`; returns how
/// many.
pub fn encode(spec: &EmitSpec, rows: &Rows<'_>, out: &mut Vec<u8>) -> u32 {
    let nf = spec.regs.len();
    let bitmap = nf.div_ceil(8);
    let fixed = nf * 8;
    let mut count = 0u32;
    let sel: Sel<'_> = rows.sel;
    each!(sel, i, {
        let start = out.len();
        out.resize(start + 4 + bitmap + fixed, 0);
        for (k, &r) in spec.regs.iter().enumerate() {
            let (col, arena) = rows.column(r);
            if !col.valid.get(i) {
                continue;
            }
            out[start + 4 + k / 8] |= 1 << (k % 8);
            let at = start + 4 + bitmap + k * 8;
            let word: u64 = match &col.data {
                ColumnData::I64(v) => v[i] as u64,
                ColumnData::U64(v) => v[i],
                ColumnData::F64(v) => v[i].to_bits(),
                ColumnData::Bool(v) => v[i] as u64,
                ColumnData::Sym(v) => {
                    let s = rows.symbols.resolve(v[i]);
                    text_slot(out, start, s)
                }
                ColumnData::Str(v) => {
                    let s = v[i].get(arena);
                    text_slot(out, start, s)
                }
            };
            out[at..at + 8].copy_from_slice(&word.to_le_bytes());
        }
        let len = (out.len() - start) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        count += 1;
    });
    count
}

#[inline]
fn text_slot(out: &mut Vec<u8>, row_start: usize, s: &[u8]) -> u64 {
    let off = (out.len() - row_start) as u64;
    out.extend_from_slice(s);
    off | (s.len() as u64) << 32
}

/// A decoded value of one field.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowValue<'a> {
    Null,
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Text(&'a [u8]),
    Ts(i64),
}

/// One encoded row.
#[derive(Clone, Copy, Debug)]
pub struct RowView<'a> {
    bytes: &'a [u8],
    nf: usize,
}

impl<'a> RowView<'a> {
    /// Field `k` interpreted as `ty`.
    ///
    /// # Panics
    /// If the row is malformed (rows are produced by [`encode`] only).
    pub fn get(&self, k: usize, ty: FieldType) -> RowValue<'a> {
        let bitmap = self.nf.div_ceil(8);
        if self.bytes[4 + k / 8] >> (k % 8) & 1 == 0 {
            return RowValue::Null;
        }
        let at = 4 + bitmap + k * 8;
        let w = u64::from_le_bytes(self.bytes[at..at + 8].try_into().expect("8 bytes"));
        match ty {
            FieldType::I64 => RowValue::I64(w as i64),
            FieldType::Timestamp => RowValue::Ts(w as i64),
            FieldType::U64 => RowValue::U64(w),
            FieldType::F64 => RowValue::F64(f64::from_bits(w)),
            FieldType::Bool => RowValue::Bool(w != 0),
            FieldType::Symbol | FieldType::Str => {
                let off = (w & 0xffff_ffff) as usize;
                let len = (w >> 32) as usize;
                RowValue::Text(&self.bytes[off..off + len])
            }
        }
    }
}

/// Iterates the rows of an encoded buffer.
pub struct RowIter<'a> {
    rest: &'a [u8],
    nf: usize,
}

impl<'a> RowIter<'a> {
    pub fn new(bytes: &'a [u8], schema: &OutSchema) -> RowIter<'a> {
        RowIter {
            rest: bytes,
            nf: schema.fields.len(),
        }
    }
}

impl<'a> Iterator for RowIter<'a> {
    type Item = RowView<'a>;

    fn next(&mut self) -> Option<RowView<'a>> {
        if self.rest.len() < 4 {
            return None;
        }
        let len = u32::from_le_bytes(self.rest[..4].try_into().expect("4 bytes")) as usize;
        let (row, rest) = self.rest.split_at(len);
        self.rest = rest;
        Some(RowView {
            bytes: row,
            nf: self.nf,
        })
    }
}
