//! The columnar batch decoders write into and the pipeline reads.
//!
//! One column per schema field, each a typed vector plus a validity bitmap
//! (bit set = present). Columns are allocated once at `batch_max` rows and
//! reused: decoding a record is a handful of indexed stores, never a push
//! that could reallocate. String bytes of all string columns live in one
//! arena owned by the batch; symbol columns hold per-shard interned ids.
//!
//! Invariants:
//! * `len <= capacity`; every column vector has exactly `capacity` slots.
//! * Rows `0..len` are committed: every field either valid or null.
//! * A row being written is at index `len`; abandoning it (a bad record)
//!   restores the arena, so a bad record leaves no trace.

use super::schema::{FieldType, Schema};

/// A fixed-size bitmap, one bit per row.
#[derive(Clone, Debug, Default)]
pub struct Bitmap {
    words: Vec<u64>,
}

impl Bitmap {
    pub fn new(bits: usize) -> Bitmap {
        Bitmap {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    #[inline]
    pub fn get(&self, i: usize) -> bool {
        (self.words[i >> 6] >> (i & 63)) & 1 == 1
    }

    #[inline]
    pub fn set(&mut self, i: usize, v: bool) {
        let w = &mut self.words[i >> 6];
        let m = 1u64 << (i & 63);
        if v {
            *w |= m;
        } else {
            *w &= !m;
        }
    }

    /// Marks bits `0..n` valid.
    pub fn set_all(&mut self, n: usize) {
        let full = n / 64;
        for w in &mut self.words[..full] {
            *w = u64::MAX;
        }
        if n % 64 != 0 {
            self.words[full] |= (1u64 << (n % 64)) - 1;
        }
    }

    /// Marks bits `start..start + n` valid.
    pub fn set_range(&mut self, start: usize, n: usize) {
        let end = start + n;
        let mut i = start;
        while i < end {
            let w = i >> 6;
            let lo = i & 63;
            let hi = (end - (w << 6)).min(64);
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            self.words[w] |= mask;
            i = (w << 6) + hi;
        }
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn words_mut(&mut self) -> &mut [u64] {
        &mut self.words
    }

    pub fn bits(&self) -> usize {
        self.words.len() * 64
    }
}

/// A string's place in an arena.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StrRef {
    pub off: u32,
    pub len: u32,
}

impl StrRef {
    #[inline]
    pub fn get(self, arena: &[u8]) -> &[u8] {
        &arena[self.off as usize..self.off as usize + self.len as usize]
    }
}

/// The values of one column. Timestamps are `I64`.
#[derive(Clone, Debug)]
pub enum ColumnData {
    I64(Vec<i64>),
    U64(Vec<u64>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    Sym(Vec<u32>),
    Str(Vec<StrRef>),
}

impl ColumnData {
    /// A zeroed column of `rows` slots for values of type `ty`.
    pub fn new(ty: FieldType, rows: usize) -> ColumnData {
        match ty {
            FieldType::I64 | FieldType::Timestamp => ColumnData::I64(vec![0; rows]),
            FieldType::U64 => ColumnData::U64(vec![0; rows]),
            FieldType::F64 => ColumnData::F64(vec![0.0; rows]),
            FieldType::Bool => ColumnData::Bool(vec![false; rows]),
            FieldType::Symbol => ColumnData::Sym(vec![0; rows]),
            FieldType::Str => ColumnData::Str(vec![StrRef::default(); rows]),
        }
    }
}

/// A typed column with its validity bitmap.
#[derive(Clone, Debug)]
pub struct Column {
    pub ty: FieldType,
    pub data: ColumnData,
    pub valid: Bitmap,
}

impl Column {
    pub fn new(ty: FieldType, rows: usize) -> Column {
        Column {
            ty,
            data: ColumnData::new(ty, rows),
            valid: Bitmap::new(rows),
        }
    }
}

/// A value read back from a batch (tests, sinks and the reference paths).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Null,
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    /// A symbol or string, as bytes.
    Str(&'a [u8]),
    Ts(i64),
}

/// Why a record was rejected, by field where one is to blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    pub reason: super::Reason,
    /// The schema field at fault, if any.
    pub field: Option<u16>,
}

impl Reject {
    pub fn new(reason: super::Reason) -> Reject {
        Reject {
            reason,
            field: None,
        }
    }

    pub fn at(reason: super::Reason, field: usize) -> Reject {
        Reject {
            reason,
            field: Some(field as u16),
        }
    }
}

/// A batch of decoded records in columns.
#[derive(Debug)]
pub struct Batch {
    len: usize,
    capacity: usize,
    pub cols: Vec<Column>,
    /// String bytes of all `Str` columns.
    pub arena: Vec<u8>,
    /// When the first byte of the batch's first record left the socket.
    pub ingest_ns: u64,
    /// Records in this batch whose `ts` was defaulted to the ingest time.
    pub ts_defaulted: u32,
}

impl Batch {
    /// A batch for `schema` holding at most `capacity` records.
    pub fn new(schema: &Schema, capacity: usize) -> Batch {
        assert!(capacity > 0, "batch_max validated in config");
        Batch {
            len: 0,
            capacity,
            cols: schema
                .fields
                .iter()
                .map(|f| Column::new(f.ty, capacity))
                .collect(),
            arena: Vec::with_capacity(capacity * 16),
            ingest_ns: 0,
            ts_defaulted: 0,
        }
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    #[inline]
    pub fn is_full(&self) -> bool {
        self.len == self.capacity
    }

    /// Rows that can still be appended.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.capacity - self.len
    }

    /// Empties the batch for reuse; allocations are kept.
    pub fn clear(&mut self) {
        self.len = 0;
        self.arena.clear();
        self.ts_defaulted = 0;
    }

    /// Starts writing the record at index `len()`.
    ///
    /// # Panics
    /// When the batch is full: callers flush before writing.
    #[inline]
    pub fn row(&mut self) -> RowWriter<'_> {
        assert!(
            self.len < self.capacity,
            "caller flushes a full batch first"
        );
        let arena_mark = self.arena.len();
        RowWriter {
            batch: self,
            present: 0,
            arena_mark,
            done: false,
        }
    }

    /// Marks `n` rows appended directly into the columns (the binary fast
    /// path), with every field valid in rows `len..len+n`.
    ///
    /// # Panics
    /// If `n` exceeds [`Batch::remaining`].
    pub fn commit_dense(&mut self, n: usize) {
        assert!(
            n <= self.remaining(),
            "binary decoder bounds runs by remaining()"
        );
        let start = self.len;
        for c in &mut self.cols {
            c.valid.set_range(start, n);
        }
        self.len += n;
    }

    /// Moves rows `at..len()` into `tail` (emptied first; same schema and
    /// capacity), leaving rows `0..at` here. Strings are copied into the
    /// tail's arena. For the rare batch split at a timed generation switch.
    ///
    /// # Panics
    /// If `at > len()` or `tail` has other columns or a smaller capacity.
    pub fn split_off_into(&mut self, at: usize, tail: &mut Batch) {
        assert!(at <= self.len, "split point within the batch");
        assert!(
            tail.cols.len() == self.cols.len() && tail.capacity >= self.len - at,
            "tail batch of the same schema"
        );
        tail.clear();
        let n = self.len - at;
        for (src, dst) in self.cols.iter().zip(tail.cols.iter_mut()) {
            for i in 0..n {
                dst.valid.set(i, src.valid.get(at + i));
            }
            match (&src.data, &mut dst.data) {
                (ColumnData::I64(a), ColumnData::I64(b)) => b[..n].copy_from_slice(&a[at..at + n]),
                (ColumnData::U64(a), ColumnData::U64(b)) => b[..n].copy_from_slice(&a[at..at + n]),
                (ColumnData::F64(a), ColumnData::F64(b)) => b[..n].copy_from_slice(&a[at..at + n]),
                (ColumnData::Bool(a), ColumnData::Bool(b)) => {
                    b[..n].copy_from_slice(&a[at..at + n])
                }
                (ColumnData::Sym(a), ColumnData::Sym(b)) => b[..n].copy_from_slice(&a[at..at + n]),
                (ColumnData::Str(a), ColumnData::Str(b)) => {
                    for i in 0..n {
                        let r = a[at + i];
                        let off = tail.arena.len() as u32;
                        tail.arena.extend_from_slice(r.get(&self.arena));
                        b[i] = StrRef { off, len: r.len };
                    }
                }
                _ => unreachable!("columns of one schema have one type"),
            }
        }
        tail.len = n;
        tail.ingest_ns = self.ingest_ns;
        self.len = at;
    }

    /// Row `row` of column `col` as a [`Value`]; symbols are resolved through
    /// `symbols`.
    pub fn value<'a>(&'a self, row: usize, col: usize, symbols: &'a super::Interner) -> Value<'a> {
        assert!(row < self.len);
        let c = &self.cols[col];
        if !c.valid.get(row) {
            return Value::Null;
        }
        match (&c.data, c.ty) {
            (ColumnData::I64(v), FieldType::Timestamp) => Value::Ts(v[row]),
            (ColumnData::I64(v), _) => Value::I64(v[row]),
            (ColumnData::U64(v), _) => Value::U64(v[row]),
            (ColumnData::F64(v), _) => Value::F64(v[row]),
            (ColumnData::Bool(v), _) => Value::Bool(v[row]),
            (ColumnData::Sym(v), _) => Value::Str(symbols.resolve(v[row])),
            (ColumnData::Str(v), _) => Value::Str(v[row].get(&self.arena)),
        }
    }
}

/// Writes one record; dropped without [`RowWriter::commit`], it leaves the
/// batch as it was.
pub struct RowWriter<'b> {
    batch: &'b mut Batch,
    present: u64,
    arena_mark: usize,
    done: bool,
}

macro_rules! setter {
    ($name:ident, $variant:ident, $t:ty) => {
        #[inline]
        pub fn $name(&mut self, field: usize, v: $t) {
            let row = self.batch.len;
            if let ColumnData::$variant(col) = &mut self.batch.cols[field].data {
                col[row] = v;
                self.present |= 1 << field;
            } else {
                debug_assert!(false, "decoder dispatches on the schema type");
            }
        }
    };
}

impl RowWriter<'_> {
    setter!(set_i64, I64, i64);
    setter!(set_u64, U64, u64);
    setter!(set_f64, F64, f64);
    setter!(set_bool, Bool, bool);
    setter!(set_sym, Sym, u32);

    /// Stores `bytes` (already validated UTF-8) for string field `field`.
    #[inline]
    pub fn set_str(&mut self, field: usize, bytes: &[u8]) {
        let off = self.batch.arena.len() as u32;
        self.batch.arena.extend_from_slice(bytes);
        self.set_str_ref(
            field,
            StrRef {
                off,
                len: bytes.len() as u32,
            },
        );
    }

    /// Reserves `len` arena bytes for the caller to fill (unescaping
    /// decoders write straight into the arena).
    #[inline]
    pub fn arena(&mut self) -> &mut Vec<u8> {
        &mut self.batch.arena
    }

    /// Points string field `field` at arena bytes written through
    /// [`RowWriter::arena`].
    #[inline]
    pub fn set_str_ref(&mut self, field: usize, r: StrRef) {
        let row = self.batch.len;
        if let ColumnData::Str(col) = &mut self.batch.cols[field].data {
            col[row] = r;
            self.present |= 1 << field;
        } else {
            debug_assert!(false, "decoder dispatches on the schema type");
        }
    }

    /// Marks `field` explicitly null (e.g. JSON `null`, an empty CSV cell).
    #[inline]
    pub fn set_null(&mut self, field: usize) {
        self.present &= !(1 << field);
    }

    /// Whether `field` has been given a value in this record.
    #[inline]
    pub fn has(&self, field: usize) -> bool {
        self.present >> field & 1 == 1
    }

    /// Completes the record: absent fields are null, a missing required
    /// field rejects it, a missing `ts` takes `now_ns`.
    #[inline]
    pub fn commit(mut self, schema: &Schema, now_ns: u64) -> Result<(), Reject> {
        let missing = schema.required_mask & !self.present;
        if missing != 0 {
            return Err(Reject::at(
                super::Reason::MissingField,
                missing.trailing_zeros() as usize,
            ));
        }
        let row = self.batch.len;
        if let Some(ts) = schema.ts_index
            && self.present >> ts & 1 == 0
        {
            if let ColumnData::I64(col) = &mut self.batch.cols[ts].data {
                col[row] = now_ns as i64;
            }
            self.present |= 1 << ts;
            self.batch.ts_defaulted += 1;
        }
        let present = self.present;
        for (i, c) in self.batch.cols.iter_mut().enumerate() {
            c.valid.set(row, present >> i & 1 == 1);
        }
        self.batch.len += 1;
        self.done = true;
        Ok(())
    }
}

impl Drop for RowWriter<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.batch.arena.truncate(self.arena_mark);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::schema::{Field, parse_type};
    use crate::codec::{Interner, Reason};

    fn schema() -> Schema {
        let f = |name: &str, ty: &str, required: bool| {
            let (ty, wire) = parse_type(ty).unwrap();
            Field {
                name: name.into(),
                ty,
                wire,
                offset: None,
                required,
            }
        };
        Schema::new(
            "t",
            vec![
                f("ts", "timestamp", false),
                f("name", "string", false),
                f("n", "i64", true),
            ],
            None,
            false,
        )
    }

    #[test]
    fn commit_defaults_ts_and_nulls() {
        let s = schema();
        let mut b = Batch::new(&s, 4);
        let mut r = b.row();
        r.set_i64(2, 7);
        r.commit(&s, 99).unwrap();
        let sym = Interner::new(16);
        assert_eq!(b.len(), 1);
        assert_eq!(b.value(0, 0, &sym), Value::Ts(99));
        assert_eq!(b.value(0, 1, &sym), Value::Null);
        assert_eq!(b.value(0, 2, &sym), Value::I64(7));
        assert_eq!(b.ts_defaulted, 1);
    }

    #[test]
    fn split_moves_the_tail_with_its_strings_and_nulls() {
        let s = schema();
        let mut b = Batch::new(&s, 4);
        for (ts, name) in [(1, Some("a")), (2, None), (3, Some("ccc")), (4, Some("dd"))] {
            let mut r = b.row();
            r.set_i64(0, ts);
            if let Some(n) = name {
                r.set_str(1, n.as_bytes());
            }
            r.set_i64(2, ts * 10);
            r.commit(&s, 0).unwrap();
        }
        let mut tail = Batch::new(&s, 4);
        tail.row().commit(&s, 0).unwrap_err();
        b.split_off_into(1, &mut tail);
        let sym = Interner::new(16);
        fn rows<'a>(b: &'a Batch, sym: &'a Interner) -> Vec<Vec<Value<'a>>> {
            (0..b.len())
                .map(|i| (0..3).map(|c| b.value(i, c, sym)).collect())
                .collect()
        }
        assert_eq!(
            rows(&b, &sym),
            [vec![Value::Ts(1), Value::Str(b"a"), Value::I64(10)]]
        );
        assert_eq!(
            rows(&tail, &sym),
            [
                vec![Value::Ts(2), Value::Null, Value::I64(20)],
                vec![Value::Ts(3), Value::Str(b"ccc"), Value::I64(30)],
                vec![Value::Ts(4), Value::Str(b"dd"), Value::I64(40)],
            ]
        );
        assert_eq!(
            tail.arena, b"cccdd",
            "the tail's arena holds only its strings"
        );
    }

    #[test]
    fn rejected_row_leaves_no_trace() {
        let s = schema();
        let mut b = Batch::new(&s, 4);
        let mut r = b.row();
        r.set_str(1, b"hello");
        let e = r.commit(&s, 0).unwrap_err();
        assert_eq!(e.reason, Reason::MissingField);
        assert_eq!(e.field, Some(2));
        assert_eq!(b.len(), 0);
        assert!(b.arena.is_empty());

        let mut r = b.row();
        r.set_str(1, b"ok");
        r.set_i64(2, 1);
        r.commit(&s, 0).unwrap();
        let sym = Interner::new(16);
        assert_eq!(b.value(0, 1, &sym), Value::Str(b"ok"));
    }

    #[test]
    fn bitmap_set_range() {
        for start in [0usize, 1, 63, 64, 65, 100] {
            for n in [0usize, 1, 2, 63, 64, 65, 129] {
                let mut m = Bitmap::new(512);
                m.set_range(start, n);
                for i in 0..512 {
                    assert_eq!(m.get(i), i >= start && i < start + n, "{start} {n} {i}");
                }
            }
        }
    }

    #[test]
    fn bitmap_set_all() {
        let mut m = Bitmap::new(130);
        m.set_all(70);
        assert!(m.get(0) && m.get(63) && m.get(69));
        assert!(!m.get(70));
    }
}
