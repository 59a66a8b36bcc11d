//! Per-shard state of the stateful stages: windows, dedup and sample.
//!
//! Each state belongs to one stage of one shard's [`super::exec::Exec`] and
//! is touched only by that shard's worker. Keys are the canonical bytes of
//! the key fields ([`KeyBuf`]); symbols enter keys as this shard's ids,
//! which stay valid as long as the shard lives (across generations too).
//! Every table is bounded by `max_state_keys`: a record that would need one
//! more key is counted (`state_full`) instead.
//!
//! Determinism: a window's output does not depend on arrival order within
//! the window — records are emitted sorted by window start, then key, and
//! `first`/`last` pick by event time (ties: earliest/latest arrival).

use super::program::{AggKind, AggSpec, Reg, WindowShape, WindowSpec};
use crate::codec::batch::{Batch, Column, ColumnData};
use crate::codec::{FieldType, Interner};
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::sync::Arc;

const HASH_SEED: u64 = 0x7374_6174;

/// Canonical bytes of a record's key fields: per field a tag (0 null, 1
/// value), then 8 bytes for numbers, bools and timestamps — big-endian and
/// order-preserving (sign bit flipped for integers, the total order for
/// floats), so comparing keys compares values — 4 bytes for symbol ids, or
/// a 4-byte length and the bytes for strings.
pub struct KeyBuf(pub Vec<u8>);

/// Order-preserving bits of an f64 (-0.0 folded into 0.0, NaNs into one).
fn f64_key(x: f64) -> u64 {
    let x = if x == 0.0 {
        0.0
    } else if x.is_nan() {
        f64::NAN
    } else {
        x
    };
    let b = x.to_bits();
    if b >> 63 == 1 { !b } else { b | 1 << 63 }
}

fn f64_unkey(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

impl KeyBuf {
    /// Appends field `col` of row `i`.
    #[inline]
    pub fn push(&mut self, col: &Column, arena: &[u8], i: usize) {
        let b = &mut self.0;
        if !col.valid.get(i) {
            b.push(0);
            return;
        }
        b.push(1);
        match &col.data {
            ColumnData::I64(v) => b.extend_from_slice(&((v[i] as u64) ^ (1 << 63)).to_be_bytes()),
            ColumnData::U64(v) => b.extend_from_slice(&v[i].to_be_bytes()),
            ColumnData::F64(v) => b.extend_from_slice(&f64_key(v[i]).to_be_bytes()),
            ColumnData::Bool(v) => b.extend_from_slice(&(v[i] as u64).to_be_bytes()),
            ColumnData::Sym(v) => b.extend_from_slice(&v[i].to_be_bytes()),
            ColumnData::Str(v) => {
                let s = v[i].get(arena);
                b.extend_from_slice(&(s.len() as u32).to_be_bytes());
                b.extend_from_slice(s);
            }
        }
    }
}

/// Compares two keys of `types` field by field: values in their order,
/// symbols by their bytes (not their ids, which depend on arrival).
fn cmp_keys(
    a: &[u8],
    b: &[u8],
    types: &[(Reg, FieldType)],
    symbols: &Interner,
) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut i, mut j) = (0, 0);
    for &(_, ty) in types {
        let (ta, tb) = (a[i], b[j]);
        i += 1;
        j += 1;
        match (ta, tb) {
            (0, 0) => continue,
            (0, _) => return Ordering::Less,
            (_, 0) => return Ordering::Greater,
            _ => {}
        }
        let o = match ty {
            FieldType::Symbol => {
                let ia = u32::from_be_bytes(a[i..i + 4].try_into().expect("4 bytes"));
                let ib = u32::from_be_bytes(b[j..j + 4].try_into().expect("4 bytes"));
                i += 4;
                j += 4;
                symbols.resolve(ia).cmp(symbols.resolve(ib))
            }
            FieldType::Str => {
                let na = u32::from_be_bytes(a[i..i + 4].try_into().expect("4 bytes")) as usize;
                let nb = u32::from_be_bytes(b[j..j + 4].try_into().expect("4 bytes")) as usize;
                let o = a[i + 4..i + 4 + na].cmp(&b[j + 4..j + 4 + nb]);
                i += 4 + na;
                j += 4 + nb;
                o
            }
            _ => {
                let o = a[i..i + 8].cmp(&b[j..j + 8]);
                i += 8;
                j += 8;
                o
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Decodes a key's field of type `ty` at `*at`, advancing it; writes it to
/// field `f` of `row`.
fn write_key_field(
    key: &[u8],
    at: &mut usize,
    ty: FieldType,
    f: usize,
    row: &mut crate::codec::batch::RowWriter<'_>,
) {
    let tag = key[*at];
    *at += 1;
    if tag == 0 {
        row.set_null(f);
        return;
    }
    let word = |at: &mut usize| {
        let v = u64::from_be_bytes(key[*at..*at + 8].try_into().expect("8 bytes"));
        *at += 8;
        v
    };
    match ty {
        FieldType::I64 | FieldType::Timestamp => row.set_i64(f, (word(at) ^ (1 << 63)) as i64),
        FieldType::U64 => row.set_u64(f, word(at)),
        FieldType::F64 => row.set_f64(f, f64_unkey(word(at))),
        FieldType::Bool => row.set_bool(f, word(at) != 0),
        FieldType::Symbol => {
            let id = u32::from_be_bytes(key[*at..*at + 4].try_into().expect("4 bytes"));
            *at += 4;
            row.set_sym(f, id);
        }
        FieldType::Str => {
            let n = u32::from_be_bytes(key[*at..*at + 4].try_into().expect("4 bytes")) as usize;
            *at += 4;
            row.set_str(f, &key[*at..*at + n]);
            *at += n;
        }
    }
}

/// An arena of byte strings with dead space, compacted when mostly dead.
#[derive(Default)]
struct Arena {
    bytes: Vec<u8>,
    dead: usize,
}

impl Arena {
    fn push(&mut self, s: &[u8]) -> (u32, u32) {
        let off = self.bytes.len() as u32;
        self.bytes.extend_from_slice(s);
        (off, s.len() as u32)
    }

    fn get(&self, (off, len): (u32, u32)) -> &[u8] {
        &self.bytes[off as usize..(off + len) as usize]
    }

    fn needs_compaction(&self) -> bool {
        self.dead > 64 * 1024 && self.dead * 2 > self.bytes.len()
    }
}

/// A scalar an accumulator holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scalar {
    I(i64),
    U(u64),
    F(f64),
    B(bool),
    Sym(u32),
    /// In the window's text arena.
    Text(u32, u32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Acc {
    /// No value yet: the result is null (count is 0).
    Empty,
    Count(i64),
    Value(Scalar),
    /// An integer sum overflowed: the result is null.
    Overflow,
    Avg(f64, u64),
    /// first/last: the value and the `ts` it came with.
    Timed(i64, Scalar),
}

struct Entry {
    start: i64,
    hash: u64,
    key: (u32, u32),
    live: bool,
}

/// Where a window stands after a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowCounts {
    /// Records added to at least one window.
    pub added: u64,
    /// Records behind the watermark (or without `ts`), dropped.
    pub late: u64,
    /// Records refused for want of a new key (`max_state_keys`).
    pub state_full: u64,
    /// Integer sums that overflowed (their result is null).
    pub overflow: u64,
}

/// Which windows to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseMode {
    /// Those whose end the watermark has reached.
    Watermark,
    /// All, if no record arrived for `size + lateness` of wall time.
    Idle { now_wall_ns: u64 },
    /// All (shutdown, end of a test's input).
    All,
}

/// One shard's state of one window stage.
pub struct WindowState {
    spec: Arc<WindowSpec>,
    table: HashTable<u32>,
    entries: Vec<Entry>,
    free: Vec<u32>,
    live: usize,
    keys: Arena,
    texts: Arena,
    accs: Vec<Acc>,
    /// The largest `ts` seen (`i64::MIN`: none yet).
    max_ts: i64,
    last_wall_ns: u64,
    max_keys: u64,
    /// Entries being closed, sorted, and how far emitting has got.
    closing: Vec<u32>,
    close_pos: usize,
    key_buf: KeyBuf,
    hasher: foldhash::fast::FixedState,
}

impl WindowState {
    pub fn new(spec: Arc<WindowSpec>, max_keys: u64) -> WindowState {
        WindowState {
            spec,
            table: HashTable::new(),
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
            keys: Arena::default(),
            texts: Arena::default(),
            accs: Vec::new(),
            max_ts: i64::MIN,
            last_wall_ns: 0,
            max_keys,
            closing: Vec::new(),
            close_pos: 0,
            key_buf: KeyBuf(Vec::with_capacity(64)),
            hasher: foldhash::fast::FixedState::with_seed(HASH_SEED),
        }
    }

    pub fn spec(&self) -> &Arc<WindowSpec> {
        &self.spec
    }

    /// Exchanges the specs of two states (a state handed to the next
    /// generation reads that generation's registers from then on).
    pub fn swap_spec(&mut self, other: &mut WindowState) {
        std::mem::swap(&mut self.spec, &mut other.spec);
    }

    /// Open (window, key) groups.
    pub fn live(&self) -> usize {
        self.live
    }

    fn watermark(&self) -> i64 {
        if self.max_ts == i64::MIN {
            i64::MIN
        } else {
            self.max_ts.saturating_sub(self.spec.lateness_ns)
        }
    }

    /// Adds the rows `rows` (ascending) of a batch. `col(r)` gives register
    /// `r`'s column and arena.
    pub fn add<'a>(
        &mut self,
        rows: &mut dyn Iterator<Item = usize>,
        col: &dyn Fn(Reg) -> (&'a Column, &'a [u8]),
        symbols: &Interner,
        now_wall_ns: u64,
    ) -> WindowCounts {
        let spec = self.spec.clone();
        let n_aggs = spec.aggs.len();
        let (ts_col, _) = col(spec.ts);
        let ColumnData::I64(ts_v) = &ts_col.data else {
            unreachable!("ts is a timestamp (type checked)")
        };
        let mut counts = WindowCounts::default();
        self.last_wall_ns = now_wall_ns;
        for i in rows {
            if !ts_col.valid.get(i) {
                counts.late += 1;
                continue;
            }
            let ts = ts_v[i];
            if ts < self.watermark() {
                counts.late += 1;
                continue;
            }
            self.max_ts = self.max_ts.max(ts);
            self.key_buf.0.clear();
            for &(r, _) in &spec.by {
                let (c, arena) = col(r);
                self.key_buf.push(c, arena, i);
            }
            let (first, count) = match spec.shape {
                WindowShape::Tumbling => (ts.div_euclid(spec.size_ns) * spec.size_ns, 1),
                WindowShape::Sliding { every_ns } => {
                    let last = ts.div_euclid(every_ns) * every_ns;
                    let n = spec.size_ns / every_ns;
                    (last - (n - 1) * every_ns, n)
                }
            };
            let step = match spec.shape {
                WindowShape::Tumbling => 0,
                WindowShape::Sliding { every_ns } => every_ns,
            };
            let mut added = false;
            for w in 0..count {
                let start = first + w * step;
                let Some(e) = self.entry(start) else {
                    counts.state_full += 1;
                    continue;
                };
                added = true;
                for (j, a) in spec.aggs.iter().enumerate() {
                    let acc = &mut self.accs[e as usize * n_aggs + j];
                    if update(acc, a, a.arg.map(col), i, ts, symbols, &mut self.texts) {
                        counts.overflow += 1;
                    }
                }
            }
            counts.added += u64::from(added);
        }
        if self.keys.needs_compaction() {
            self.compact_keys();
        }
        if self.texts.needs_compaction() {
            self.compact_texts();
        }
        counts
    }

    /// The entry for (start, current key), created if new; `None` when the
    /// state is full.
    fn entry(&mut self, start: i64) -> Option<u32> {
        let key = &self.key_buf.0;
        let h = {
            let mut st = self.hasher.build_hasher();
            std::hash::Hash::hash(&start, &mut st);
            std::hash::Hash::hash(key.as_slice(), &mut st);
            std::hash::Hasher::finish(&st)
        };
        let (entries, keys) = (&self.entries, &self.keys);
        if let Some(&e) = self.table.find(h, |&e| {
            let en = &entries[e as usize];
            en.start == start && keys.get(en.key) == key.as_slice()
        }) {
            return Some(e);
        }
        if self.live as u64 >= self.max_keys {
            return None;
        }
        let k = self.keys.push(key);
        let n_aggs = self.spec.aggs.len();
        let e = match self.free.pop() {
            Some(e) => {
                self.entries[e as usize] = Entry {
                    start,
                    hash: h,
                    key: k,
                    live: true,
                };
                e
            }
            None => {
                self.entries.push(Entry {
                    start,
                    hash: h,
                    key: k,
                    live: true,
                });
                self.accs.resize(self.entries.len() * n_aggs, Acc::Empty);
                (self.entries.len() - 1) as u32
            }
        };
        for (j, a) in self.spec.aggs.iter().enumerate() {
            self.accs[e as usize * n_aggs + j] = match a.kind {
                AggKind::CountAll | AggKind::Count => Acc::Count(0),
                AggKind::Avg => Acc::Avg(0.0, 0),
                _ => Acc::Empty,
            };
        }
        let entries = &self.entries;
        self.table
            .insert_unique(h, e, |&x| entries[x as usize].hash);
        self.live += 1;
        Some(e)
    }

    /// Chooses the windows to close (sorted by start, then key). Returns
    /// how many.
    pub fn begin_close(&mut self, mode: CloseMode, symbols: &Interner) -> usize {
        self.closing.clear();
        self.close_pos = 0;
        let all = match mode {
            CloseMode::All => true,
            CloseMode::Idle { now_wall_ns } => {
                let idle = (self.spec.size_ns + self.spec.lateness_ns).max(0) as u64;
                self.live > 0 && now_wall_ns.saturating_sub(self.last_wall_ns) >= idle
            }
            CloseMode::Watermark => false,
        };
        if !all && mode != CloseMode::Watermark {
            return 0;
        }
        let wm = self.watermark();
        for (i, e) in self.entries.iter().enumerate() {
            if e.live && (all || e.start.saturating_add(self.spec.size_ns) <= wm) {
                self.closing.push(i as u32);
            }
        }
        let (entries, keys, by) = (&self.entries, &self.keys, &self.spec.by);
        self.closing.sort_unstable_by(|&a, &b| {
            let (x, y) = (&entries[a as usize], &entries[b as usize]);
            x.start
                .cmp(&y.start)
                .then_with(|| cmp_keys(keys.get(x.key), keys.get(y.key), by, symbols))
        });
        self.closing.len()
    }

    /// Writes closing windows into `out` (the window's output schema)
    /// until it is full; returns whether more remain. `now_ns` stamps rows
    /// without `ts` (never: every window row has one).
    pub fn emit(&mut self, out: &mut Batch, symbols: &Interner) -> bool {
        let spec = self.spec.clone();
        let n_aggs = spec.aggs.len();
        while self.close_pos < self.closing.len() && !out.is_full() {
            let e = self.closing[self.close_pos] as usize;
            self.close_pos += 1;
            let entry = &self.entries[e];
            let mut row = out.row();
            row.set_i64(0, entry.start.saturating_add(spec.size_ns));
            row.set_i64(1, entry.start);
            let key = self.keys.get(entry.key);
            let mut at = 0;
            for (f, &(_, ty)) in spec.by.iter().enumerate() {
                write_key_field(key, &mut at, ty, 2 + f, &mut row);
            }
            let base = 2 + spec.by.len();
            for (j, a) in spec.aggs.iter().enumerate() {
                finish(
                    &self.accs[e * n_aggs + j],
                    a,
                    base + j,
                    &mut row,
                    &self.texts,
                    symbols,
                );
            }
            row.commit(&spec.output, 0)
                .expect("window rows have every required field");
        }
        if self.close_pos < self.closing.len() {
            return true;
        }
        // Everything emitted: free the closed entries.
        for &e in &self.closing {
            let entry = &mut self.entries[e as usize];
            entry.live = false;
            self.keys.dead += entry.key.1 as usize;
            let h = entry.hash;
            if let Ok(slot) = self.table.find_entry(h, |&x| x == e) {
                slot.remove();
            }
            self.free.push(e);
            self.live -= 1;
            for j in 0..n_aggs {
                if let Acc::Value(Scalar::Text(_, l)) | Acc::Timed(_, Scalar::Text(_, l)) =
                    self.accs[e as usize * n_aggs + j]
                {
                    self.texts.dead += l as usize;
                }
            }
        }
        self.closing.clear();
        self.close_pos = 0;
        false
    }

    fn compact_keys(&mut self) {
        let mut fresh = Arena::default();
        for e in self.entries.iter_mut().filter(|e| e.live) {
            e.key = fresh.push(self.keys.get(e.key));
        }
        self.keys = fresh;
    }

    fn compact_texts(&mut self) {
        let mut fresh = Arena::default();
        for (e, entry) in self.entries.iter().enumerate() {
            if !entry.live {
                continue;
            }
            let n = self.spec.aggs.len();
            for acc in &mut self.accs[e * n..(e + 1) * n] {
                match acc {
                    Acc::Value(Scalar::Text(o, l)) | Acc::Timed(_, Scalar::Text(o, l)) => {
                        let (no, nl) = fresh.push(self.texts.get((*o, *l)));
                        *o = no;
                        *l = nl;
                    }
                    _ => {}
                }
            }
        }
        self.texts = fresh;
    }
}

/// The scalar at row `i` of a column (assumed valid).
fn scalar(c: &Column, arena: &[u8], i: usize, texts: &mut Arena, keep_text: bool) -> Scalar {
    match &c.data {
        ColumnData::I64(v) => Scalar::I(v[i]),
        ColumnData::U64(v) => Scalar::U(v[i]),
        ColumnData::F64(v) => Scalar::F(v[i]),
        ColumnData::Bool(v) => Scalar::B(v[i]),
        ColumnData::Sym(v) => Scalar::Sym(v[i]),
        ColumnData::Str(v) => {
            if keep_text {
                let (o, l) = texts.push(v[i].get(arena));
                Scalar::Text(o, l)
            } else {
                Scalar::Text(0, 0)
            }
        }
    }
}

fn text_of<'a>(s: Scalar, texts: &'a Arena, symbols: &'a Interner) -> &'a [u8] {
    match s {
        Scalar::Sym(id) => symbols.resolve(id),
        Scalar::Text(o, l) => texts.get((o, l)),
        _ => &[],
    }
}

/// Whether `new` should replace `old` for min (`max == false`) or max.
fn better(
    new: &Column,
    arena: &[u8],
    i: usize,
    old: Scalar,
    max: bool,
    texts: &Arena,
    symbols: &Interner,
) -> bool {
    use std::cmp::Ordering::*;
    let ord = match (&new.data, old) {
        (ColumnData::I64(v), Scalar::I(o)) => v[i].cmp(&o),
        (ColumnData::U64(v), Scalar::U(o)) => v[i].cmp(&o),
        (ColumnData::F64(v), Scalar::F(o)) => {
            // NaN never wins, and a NaN held so far always loses.
            if v[i].is_nan() {
                return false;
            }
            if o.is_nan() {
                return true;
            }
            v[i].partial_cmp(&o).unwrap_or(Equal)
        }
        (ColumnData::Sym(v), o) => symbols.resolve(v[i]).cmp(text_of(o, texts, symbols)),
        (ColumnData::Str(v), o) => v[i].get(arena).cmp(text_of(o, texts, symbols)),
        _ => Equal,
    };
    if max { ord == Greater } else { ord == Less }
}

/// Folds row `i` into `acc`; returns true when an integer sum overflows
/// (first time only).
fn update(
    acc: &mut Acc,
    a: &AggSpec,
    arg: Option<(&Column, &[u8])>,
    i: usize,
    ts: i64,
    symbols: &Interner,
    texts: &mut Arena,
) -> bool {
    if a.kind == AggKind::CountAll {
        if let Acc::Count(n) = acc {
            *n += 1;
        }
        return false;
    }
    let (c, arena) = arg.expect("aggregates other than count() have an argument");
    if !c.valid.get(i) {
        return false;
    }
    match a.kind {
        AggKind::CountAll => unreachable!(),
        AggKind::Count => {
            if let Acc::Count(n) = acc {
                *n += 1;
            }
        }
        AggKind::Sum => match (*acc, &c.data) {
            (Acc::Overflow, _) => {}
            (Acc::Empty, ColumnData::I64(v)) => *acc = Acc::Value(Scalar::I(v[i])),
            (Acc::Empty, ColumnData::U64(v)) => *acc = Acc::Value(Scalar::U(v[i])),
            (Acc::Empty, ColumnData::F64(v)) => *acc = Acc::Value(Scalar::F(v[i])),
            (Acc::Value(Scalar::I(s)), ColumnData::I64(v)) => match s.checked_add(v[i]) {
                Some(x) => *acc = Acc::Value(Scalar::I(x)),
                None => {
                    *acc = Acc::Overflow;
                    return true;
                }
            },
            (Acc::Value(Scalar::U(s)), ColumnData::U64(v)) => match s.checked_add(v[i]) {
                Some(x) => *acc = Acc::Value(Scalar::U(x)),
                None => {
                    *acc = Acc::Overflow;
                    return true;
                }
            },
            (Acc::Value(Scalar::F(s)), ColumnData::F64(v)) => {
                *acc = Acc::Value(Scalar::F(s + v[i]))
            }
            _ => {}
        },
        AggKind::Avg => {
            if let Acc::Avg(s, n) = acc {
                *s += match &c.data {
                    ColumnData::I64(v) => v[i] as f64,
                    ColumnData::U64(v) => v[i] as f64,
                    ColumnData::F64(v) => v[i],
                    _ => 0.0,
                };
                *n += 1;
            }
        }
        AggKind::Min | AggKind::Max => {
            let max = a.kind == AggKind::Max;
            match *acc {
                Acc::Empty => {
                    if let ColumnData::F64(v) = &c.data
                        && v[i].is_nan()
                    {
                        return false;
                    }
                    *acc = Acc::Value(scalar(c, arena, i, texts, true));
                }
                Acc::Value(old) if better(c, arena, i, old, max, texts, symbols) => {
                    if let Scalar::Text(_, l) = old {
                        texts.dead += l as usize;
                    }
                    *acc = Acc::Value(scalar(c, arena, i, texts, true));
                }
                _ => {}
            }
        }
        AggKind::First | AggKind::Last => {
            let replace = match *acc {
                Acc::Empty => true,
                Acc::Timed(t, _) => {
                    if a.kind == AggKind::First {
                        ts < t
                    } else {
                        ts >= t
                    }
                }
                _ => false,
            };
            if replace {
                if let Acc::Timed(_, Scalar::Text(_, l)) = *acc {
                    texts.dead += l as usize;
                }
                *acc = Acc::Timed(ts, scalar(c, arena, i, texts, true));
            }
        }
    }
    false
}

/// Writes an accumulator's result to field `f`.
fn finish(
    acc: &Acc,
    a: &AggSpec,
    f: usize,
    row: &mut crate::codec::batch::RowWriter<'_>,
    texts: &Arena,
    _symbols: &Interner,
) {
    let put = |row: &mut crate::codec::batch::RowWriter<'_>, s: Scalar| match (s, a.out_ty) {
        (Scalar::I(v), _) => row.set_i64(f, v),
        (Scalar::U(v), _) => row.set_u64(f, v),
        (Scalar::F(v), _) => row.set_f64(f, v),
        (Scalar::B(v), _) => row.set_bool(f, v),
        (Scalar::Sym(id), _) => row.set_sym(f, id),
        (Scalar::Text(o, l), _) => row.set_str(f, texts.get((o, l))),
    };
    match *acc {
        Acc::Empty | Acc::Overflow => row.set_null(f),
        Acc::Count(n) => row.set_i64(f, n),
        Acc::Value(s) | Acc::Timed(_, s) => put(row, s),
        Acc::Avg(s, n) => {
            if n == 0 {
                row.set_null(f)
            } else {
                row.set_f64(f, s / n as f64)
            }
        }
    }
}

/// One shard's dedup state: the last accepted event time per key.
pub struct DedupState {
    table: HashTable<u32>,
    entries: Vec<(u64, (u32, u32), i64, bool)>,
    free: Vec<u32>,
    live: usize,
    keys: Arena,
    max_ts: i64,
    max_keys: u64,
    pub key_buf: KeyBuf,
    hasher: foldhash::fast::FixedState,
}

impl DedupState {
    pub fn new(max_keys: u64) -> DedupState {
        DedupState {
            table: HashTable::new(),
            entries: Vec::new(),
            free: Vec::new(),
            live: 0,
            keys: Arena::default(),
            max_ts: i64::MIN,
            max_keys,
            key_buf: KeyBuf(Vec::with_capacity(64)),
            hasher: foldhash::fast::FixedState::with_seed(HASH_SEED),
        }
    }

    /// Whether the record with key `key_buf` at `ts` is kept; also false
    /// for the second of `state_full`... see [`DedupOutcome`].
    pub fn check(&mut self, ts: i64, within_ns: i64) -> DedupOutcome {
        self.max_ts = self.max_ts.max(ts);
        let key = &self.key_buf.0;
        let h = self.hasher.hash_one(key.as_slice());
        let (entries, keys) = (&self.entries, &self.keys);
        if let Some(&e) = self
            .table
            .find(h, |&e| keys.get(entries[e as usize].1) == key.as_slice())
        {
            let last = &mut self.entries[e as usize].2;
            if ts.abs_diff(*last) < within_ns as u64 {
                return DedupOutcome::Duplicate;
            }
            *last = ts;
            return DedupOutcome::Kept;
        }
        if self.live as u64 >= self.max_keys {
            self.purge(within_ns);
            if self.live as u64 >= self.max_keys {
                return DedupOutcome::Untracked;
            }
        }
        let k = self.keys.push(&self.key_buf.0);
        let e = match self.free.pop() {
            Some(e) => {
                self.entries[e as usize] = (h, k, ts, true);
                e
            }
            None => {
                self.entries.push((h, k, ts, true));
                (self.entries.len() - 1) as u32
            }
        };
        let entries = &self.entries;
        self.table.insert_unique(h, e, |&x| entries[x as usize].0);
        self.live += 1;
        DedupOutcome::Kept
    }

    /// Forgets keys last seen more than `within_ns` before the newest ts.
    #[cold]
    fn purge(&mut self, within_ns: i64) {
        let horizon = self.max_ts.saturating_sub(within_ns);
        for (i, e) in self.entries.iter_mut().enumerate() {
            if e.3 && e.2 <= horizon {
                e.3 = false;
                self.keys.dead += e.1.1 as usize;
                if let Ok(slot) = self.table.find_entry(e.0, |&x| x == i as u32) {
                    slot.remove();
                }
                self.free.push(i as u32);
                self.live -= 1;
            }
        }
        if self.keys.needs_compaction() {
            let mut fresh = Arena::default();
            for e in self.entries.iter_mut().filter(|e| e.3) {
                e.1 = fresh.push(self.keys.get(e.1));
            }
            self.keys = fresh;
        }
    }

    pub fn live(&self) -> usize {
        self.live
    }
}

/// What dedup decided for a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DedupOutcome {
    Kept,
    Duplicate,
    /// Kept, but its key could not be remembered (`max_state_keys`).
    Untracked,
}

/// The state of one stateful step.
pub enum StepState {
    Dedup(Box<DedupState>),
    /// `sample 1 in N`: records seen.
    Every(u64),
    /// `sample N per D`: the current interval and records kept in it.
    Rate {
        interval: i64,
        kept: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_bytes_order_like_values() {
        let enc_i = |v: i64| ((v as u64) ^ (1 << 63)).to_be_bytes();
        let mut xs = [-5i64, i64::MIN, 3, 0, -1, i64::MAX, 256, 2];
        let mut by_bytes = xs;
        by_bytes.sort_by_key(|&v| enc_i(v));
        xs.sort();
        assert_eq!(xs, by_bytes);
        let mut fs = [
            1.5,
            -0.5,
            f64::NEG_INFINITY,
            0.0,
            1e300,
            -1e-300,
            f64::INFINITY,
        ];
        let mut fb = fs;
        fb.sort_by_key(|&v| f64_key(v));
        fs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        assert_eq!(fs, fb);
        for v in fs {
            assert_eq!(f64_unkey(f64_key(v)), v);
        }
        assert_eq!(f64_key(-0.0), f64_key(0.0));
    }
}
