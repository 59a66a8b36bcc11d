//! The compact row format records cross threads and land in the journal
//! in (as data frame payloads, docs/JOURNAL.md).
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

/// Scratch space for [`encode`], kept by the caller so that nothing is
/// allocated per batch once it has grown to `batch_max` rows.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Row start offsets (relative to where the batch's rows begin), one
    /// per row plus the end.
    starts: Vec<u32>,
    /// Per row: where its next text value goes.
    cursor: Vec<u32>,
}

impl Scratch {
    /// Scratch already at size for batches of up to `rows` rows.
    pub fn with_rows(rows: usize) -> Scratch {
        Scratch {
            starts: Vec::with_capacity(rows + 1),
            cursor: Vec::with_capacity(rows),
        }
    }
}

/// Appends the selected rows of `rows` for `spec` to `out`; returns how
/// many.
///
/// Column by column: the row layout is computed first (the fixed part,
/// plus each row's text bytes), then each field is written into every row
/// in one typed loop. NB: row by row with a type switch per value was 3x
/// slower; see benches/pipeline.rs `+encode`.
pub fn encode(spec: &EmitSpec, rows: &Rows<'_>, out: &mut Vec<u8>, scratch: &mut Scratch) -> u32 {
    let nf = spec.regs.len();
    let bitmap = nf.div_ceil(8);
    let fixed = 4 + bitmap + nf * 8;
    let sel: Sel<'_> = rows.sel;
    let n = sel.len();
    let Scratch { starts, cursor } = scratch;
    starts.clear();
    starts.resize(n + 1, 0);
    let is_text = |r| {
        matches!(
            rows.column(r).0.data,
            ColumnData::Sym(_) | ColumnData::Str(_)
        )
    };
    let has_text = spec.regs.iter().any(|&r| is_text(r));
    if has_text {
        // Each row's text bytes, then prefix sums.
        cursor.clear();
        cursor.resize(n, 0);
        for &r in &spec.regs {
            let (col, arena) = rows.column(r);
            let mut j = 0;
            match &col.data {
                ColumnData::Sym(v) => each!(sel, i, {
                    if col.valid.get(i) {
                        cursor[j] += rows.symbols.resolve(v[i]).len() as u32;
                    }
                    j += 1;
                }),
                ColumnData::Str(v) => each!(sel, i, {
                    if col.valid.get(i) {
                        cursor[j] += v[i].get(arena).len() as u32;
                    }
                    j += 1;
                }),
                _ => {}
            }
        }
        let mut acc = 0u32;
        for j in 0..n {
            starts[j] = acc;
            acc += fixed as u32 + cursor[j];
            cursor[j] = starts[j] + fixed as u32;
        }
        starts[n] = acc;
    } else {
        for (j, s) in starts.iter_mut().enumerate() {
            *s = (j * fixed) as u32;
        }
    }
    let base = out.len();
    out.resize(base + starts[n] as usize, 0);
    let buf = &mut out[base..];
    for j in 0..n {
        let at = starts[j] as usize;
        buf[at..at + 4].copy_from_slice(&(starts[j + 1] - starts[j]).to_le_bytes());
    }
    for (k, &r) in spec.regs.iter().enumerate() {
        let (col, arena) = rows.column(r);
        let (byte, bit) = (4 + k / 8, 1u8 << (k % 8));
        let slot = 4 + bitmap + k * 8;
        let mut j = 0usize;
        macro_rules! words {
            ($v:expr, |$x:ident| $w:expr) => {
                each!(sel, i, {
                    if col.valid.get(i) {
                        let at = starts[j] as usize;
                        buf[at + byte] |= bit;
                        let $x = $v[i];
                        let w: u64 = $w;
                        buf[at + slot..at + slot + 8].copy_from_slice(&w.to_le_bytes());
                    }
                    j += 1;
                })
            };
        }
        macro_rules! texts {
            ($get:expr) => {
                each!(sel, i, {
                    if col.valid.get(i) {
                        let at = starts[j] as usize;
                        buf[at + byte] |= bit;
                        let s: &[u8] = $get(i);
                        let c = cursor[j] as usize;
                        buf[c..c + s.len()].copy_from_slice(s);
                        cursor[j] += s.len() as u32;
                        let w = (c - at) as u64 | (s.len() as u64) << 32;
                        buf[at + slot..at + slot + 8].copy_from_slice(&w.to_le_bytes());
                    }
                    j += 1;
                })
            };
        }
        match &col.data {
            ColumnData::I64(v) => words!(v, |x| x as u64),
            ColumnData::U64(v) => words!(v, |x| x),
            ColumnData::F64(v) => words!(v, |x| x.to_bits()),
            ColumnData::Bool(v) => words!(v, |x| x as u64),
            ColumnData::Sym(v) => texts!(|i: usize| rows.symbols.resolve(v[i])),
            ColumnData::Str(v) => texts!(|i: usize| v[i].get(arena)),
        }
    }
    n as u32
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

/// Appends one row of `values` (in schema order) to `out`: the slow path
/// for tools and tests that build rows without a batch.
pub fn encode_values(values: &[RowValue<'_>], out: &mut Vec<u8>) {
    let nf = values.len();
    let bitmap = nf.div_ceil(8);
    let fixed = 4 + bitmap + nf * 8;
    let text: usize = values
        .iter()
        .map(|v| match v {
            RowValue::Text(s) => s.len(),
            _ => 0,
        })
        .sum();
    let at = out.len();
    out.resize(at + fixed + text, 0);
    let row = &mut out[at..];
    row[..4].copy_from_slice(&((fixed + text) as u32).to_le_bytes());
    let mut cursor = fixed;
    for (k, v) in values.iter().enumerate() {
        let w: u64 = match *v {
            RowValue::Null => continue,
            RowValue::I64(x) | RowValue::Ts(x) => x as u64,
            RowValue::U64(x) => x,
            RowValue::F64(x) => x.to_bits(),
            RowValue::Bool(x) => x as u64,
            RowValue::Text(s) => {
                row[cursor..cursor + s.len()].copy_from_slice(s);
                let w = cursor as u64 | (s.len() as u64) << 32;
                cursor += s.len();
                w
            }
        };
        row[4 + k / 8] |= 1 << (k % 8);
        let slot = 4 + bitmap + k * 8;
        row[slot..slot + 8].copy_from_slice(&w.to_le_bytes());
    }
}
