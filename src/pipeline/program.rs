//! The compiled form of a pipeline: a [`Chain`] of steps over registers.
//!
//! Registers `0..n_inputs` are the batch's decoded columns; the rest are
//! temporaries owned by each shard's [`super::exec::Exec`]. Every
//! instruction writes a fresh register (single assignment), so an operand is
//! never overwritten while it is read and `eval` can alias a field to an
//! existing register without a copy.

use super::table::Table;
use crate::codec::{FieldType, Schema};
use std::sync::Arc;

pub type Reg = u16;

/// A constant operand. `Str` holds UTF-8 bytes.
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    Null,
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(Box<[u8]>),
}

impl Const {
    pub fn i64(&self) -> Option<i64> {
        match *self {
            Const::I64(v) => Some(v),
            _ => None,
        }
    }
    pub fn u64(&self) -> Option<u64> {
        match *self {
            Const::U64(v) => Some(v),
            _ => None,
        }
    }
    pub fn f64(&self) -> Option<f64> {
        match *self {
            Const::F64(v) => Some(v),
            _ => None,
        }
    }
    pub fn bool(&self) -> Option<bool> {
        match *self {
            Const::Bool(v) => Some(v),
            _ => None,
        }
    }
    pub fn text(&self) -> Option<&[u8]> {
        match self {
            Const::Str(v) => Some(v),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Opnd {
    Reg(Reg),
    Const(Const),
}

/// Numeric representation an arithmetic instruction works in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumTy {
    I64,
    U64,
    F64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// How two operands are compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpKind {
    I64,
    U64,
    F64,
    /// `a` is i64, `b` is u64: compared exactly.
    I64U64,
    /// `a` is u64, `b` is i64.
    U64I64,
    Bool,
    /// Symbols and strings, by bytes.
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CastOp {
    I64ToF64,
    U64ToF64,
    /// Checked: values above i64::MAX are null (overflow).
    U64ToI64,
    /// Checked: negative values are null (overflow).
    I64ToU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoundOp {
    Round,
    Floor,
    Ceil,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Instr {
    Arith {
        op: ArithOp,
        ty: NumTy,
        a: Opnd,
        b: Opnd,
        dst: Reg,
    },
    Neg {
        ty: NumTy,
        a: Opnd,
        dst: Reg,
    },
    Cast {
        op: CastOp,
        a: Opnd,
        dst: Reg,
    },
    Cmp {
        op: CmpOp,
        kind: CmpKind,
        a: Opnd,
        b: Opnd,
        dst: Reg,
    },
    /// `a != null` (or `a == null` when `negate`).
    Present {
        a: Opnd,
        negate: bool,
        dst: Reg,
    },
    And {
        a: Opnd,
        b: Opnd,
        dst: Reg,
    },
    Or {
        a: Opnd,
        b: Opnd,
        dst: Reg,
    },
    Not {
        a: Opnd,
        dst: Reg,
    },
    Abs {
        ty: NumTy,
        a: Opnd,
        dst: Reg,
    },
    Round {
        op: RoundOp,
        a: Opnd,
        dst: Reg,
    },
    MinMax {
        max: bool,
        ty: NumTy,
        args: Vec<Opnd>,
        dst: Reg,
    },
    Len {
        a: Opnd,
        dst: Reg,
    },
    Case {
        upper: bool,
        a: Opnd,
        dst: Reg,
    },
    StartsWith {
        a: Opnd,
        b: Opnd,
        dst: Reg,
    },
    Contains {
        a: Opnd,
        b: Opnd,
        dst: Reg,
    },
    If {
        c: Opnd,
        a: Opnd,
        b: Opnd,
        dst: Reg,
    },
    Hash {
        args: Vec<(Opnd, FieldType)>,
        dst: Reg,
    },
    Now {
        dst: Reg,
    },
    /// `a in [items]`, items already of `a`'s comparison kind.
    InList {
        a: Opnd,
        items: ListItems,
        dst: Reg,
    },
    /// `dst = a` (materialises a constant; copies a register).
    Copy {
        a: Opnd,
        dst: Reg,
    },
    /// `dst` = the row of `a` in `table` (u64; null on a miss or a null
    /// key). Symbol keys are memoised per shard in memo slot `memo`.
    Lookup {
        a: Opnd,
        a_ty: FieldType,
        table: Arc<Table>,
        memo: u16,
        dst: Reg,
    },
    /// `dst` = column `col` of `table` at row `row` (null where `row` is).
    /// A symbol column is interned into the shard's table once per row,
    /// memoised in slot `memo`.
    TableCol {
        row: Reg,
        table: Arc<Table>,
        col: usize,
        memo: u16,
        dst: Reg,
    },
}

/// The items of an `in [...]` list, typed once at compile time so the
/// kernel compares without converting (or allocating) per batch.
#[derive(Clone, Debug, PartialEq)]
pub enum ListItems {
    I64(Vec<i64>),
    U64(Vec<u64>),
    F64(Vec<f64>),
    Bool(Vec<bool>),
    Text(Vec<Box<[u8]>>),
}

impl ListItems {
    /// Sorts the list of `kind`'s items out of `consts`.
    pub fn new(kind: CmpKind, consts: &[Const]) -> ListItems {
        match kind {
            CmpKind::I64 => ListItems::I64(consts.iter().filter_map(Const::i64).collect()),
            CmpKind::U64 => ListItems::U64(consts.iter().filter_map(Const::u64).collect()),
            CmpKind::F64 => ListItems::F64(consts.iter().filter_map(Const::f64).collect()),
            CmpKind::Bool => ListItems::Bool(consts.iter().filter_map(Const::bool).collect()),
            _ => ListItems::Text(
                consts
                    .iter()
                    .filter_map(|c| c.text().map(Box::from))
                    .collect(),
            ),
        }
    }
}

/// Field names and types of what a stage passes on or a sink receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutSchema {
    pub fields: Vec<(String, FieldType)>,
}

impl OutSchema {
    /// Bytes of one encoded row ([`crate::sink::row`]) with text values of
    /// `text` bytes each: the length word, the null bitmap, a word per
    /// field, then the text.
    pub fn row_bytes(&self, text: usize) -> usize {
        let n = self.fields.len();
        let texts = (self.fields.iter())
            .filter(|(_, t)| matches!(t, FieldType::Symbol | FieldType::Str))
            .count();
        4 + n.div_ceil(8) + n * 8 + texts * text
    }

    pub fn describe(&self) -> String {
        self.fields
            .iter()
            .map(|(n, t)| format!("{n}:{t}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Records leaving the chain for one sink, with the registers to encode.
#[derive(Clone, Debug)]
pub struct EmitSpec {
    /// Index into the config's sinks.
    pub sink: usize,
    pub schema: Arc<OutSchema>,
    pub regs: Vec<Reg>,
}

/// Aggregate functions of a window's `emit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggKind {
    /// `count()`: records.
    CountAll,
    /// `count(e)`: non-null values.
    Count,
    Sum,
    Min,
    Max,
    Avg,
    First,
    Last,
}

/// One aggregate of a window: its kind, its per-record argument register
/// (computed in the segment before the window) and types.
#[derive(Clone, Debug)]
pub struct AggSpec {
    pub kind: AggKind,
    pub arg: Option<Reg>,
    /// Type of the argument (`I64` for `count()`).
    pub arg_ty: FieldType,
    /// Type of the result column.
    pub out_ty: FieldType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowShape {
    Tumbling,
    Sliding { every_ns: i64 },
}

/// A window stage: how records are grouped and what each group keeps.
#[derive(Clone, Debug)]
pub struct WindowSpec {
    pub shape: WindowShape,
    pub size_ns: i64,
    pub lateness_ns: i64,
    /// The `ts` register of the input.
    pub ts: Reg,
    /// `by` fields: register and type.
    pub by: Vec<(Reg, FieldType)>,
    pub aggs: Vec<AggSpec>,
    /// The schema of the records the window emits to the next segment:
    /// ts, window_start, the by fields, then one `__aN` per aggregate.
    pub output: Arc<Schema>,
}

impl WindowSpec {
    /// Whether a state built under `other` means the same under `self`:
    /// the same windows (shape, size, lateness), the same key types and the
    /// same accumulators. Registers may differ: they are read afresh from
    /// `self` for every later record.
    pub fn holds_same_state(&self, other: &WindowSpec) -> bool {
        self.shape == other.shape
            && self.size_ns == other.size_ns
            && self.lateness_ns == other.lateness_ns
            && self.by.len() == other.by.len()
            && self.by.iter().zip(&other.by).all(|(a, b)| a.1 == b.1)
            && self.aggs.len() == other.aggs.len()
            && self
                .aggs
                .iter()
                .zip(&other.aggs)
                .all(|(a, b)| a.kind == b.kind && a.arg_ty == b.arg_ty && a.out_ty == b.out_ty)
            && self.output == other.output
    }
}

#[derive(Clone, Debug)]
pub enum Action {
    /// Compute registers only (`eval`, and shape-only stages which need no
    /// work at all).
    None,
    /// Keep the selected rows where `pred` is true.
    Filter { pred: Opnd },
    /// Emit the selected rows where `pred` is true and remove them.
    Route { pred: Opnd, emit: EmitSpec },
    /// Emit a copy of every selected row.
    Tee { emit: EmitSpec },
    /// Emit every selected row to each sink: the end.
    To { emits: Vec<EmitSpec> },
    /// Drop a record whose key was seen within `within_ns` of event time.
    Dedup {
        keys: Vec<(Reg, FieldType)>,
        ts: Reg,
        within_ns: i64,
        state: u16,
    },
    /// Keep every `n`-th record (per shard), or with `by`, the records
    /// whose `hash(by...) % n == 0`.
    SampleEvery {
        n: u64,
        by: Vec<(Reg, FieldType)>,
        state: u16,
    },
    /// At most `n` records per event-time interval of `per_ns`.
    SampleRate {
        n: u64,
        per_ns: i64,
        ts: Reg,
        state: u16,
    },
    /// Group the selected rows into windows; closed windows feed segment
    /// `next`. Ends its segment.
    Window { spec: Arc<WindowSpec>, next: usize },
}

/// One stage: instructions computing registers, then an action.
#[derive(Clone, Debug)]
pub struct Step {
    pub stage: usize,
    pub instrs: Vec<Instr>,
    pub action: Action,
}

/// What `check` prints for a stage.
#[derive(Clone, Debug)]
pub struct StagePlan {
    pub name: String,
    pub word: &'static str,
    pub text: String,
    pub input: Arc<OutSchema>,
    pub output: Arc<OutSchema>,
    /// Sinks this stage sends records to.
    pub sinks: Vec<String>,
}

/// What a memo slot caches, for carrying it to the next generation: the
/// slot stays valid as long as the table is the same one (the control
/// plane hands an unchanged table to the new generation as the same
/// `Arc`, see [`Table::same_content`](super::table::Table::same_content)).
#[derive(Clone, Debug)]
pub struct MemoKey {
    pub table: Arc<Table>,
    /// `None`: a key's row (`Lookup`); `Some(c)`: column `c` of a row,
    /// interned (`TableCol`).
    pub col: Option<usize>,
}

impl MemoKey {
    /// Whether a memo filled for `self` is valid for `other`.
    pub fn same(&self, other: &MemoKey) -> bool {
        Arc::ptr_eq(&self.table, &other.table) && self.col == other.col
    }
}

/// A run of steps over one input schema: the source's, or a window's
/// output. Registers `0..n_inputs` are that input's columns.
#[derive(Clone, Debug)]
pub struct Segment {
    pub input: Arc<Schema>,
    pub n_inputs: usize,
    /// Types of registers `n_inputs..`.
    pub temps: Vec<FieldType>,
    pub steps: Vec<Step>,
    /// Per-shard memo slots (symbol lookups into tables), by slot: what
    /// each one caches.
    pub memos: Vec<MemoKey>,
    /// Per-shard state slots (dedup, sample).
    pub n_states: usize,
}

impl Segment {
    /// The type of any register.
    pub fn reg_type(&self, r: Reg) -> FieldType {
        let r = r as usize;
        if r < self.n_inputs {
            self.input.fields[r].ty
        } else {
            self.temps[r - self.n_inputs]
        }
    }
}

/// A pipeline compiled for one source schema: segment 0 reads the
/// source's batches; each window starts the next segment.
#[derive(Clone, Debug)]
pub struct Chain {
    pub segments: Vec<Segment>,
    pub stages: Vec<StagePlan>,
    /// Per stage: where its output is complete, for `tap`.
    pub taps: Vec<TapPoint>,
}

/// The step after which a stage's output rows and registers are complete
/// (its last step), and their layout.
#[derive(Clone, Debug)]
pub struct TapPoint {
    pub seg: usize,
    pub step: usize,
    /// The stage's output fields (`sink` is unused).
    pub spec: EmitSpec,
}

impl Chain {
    /// The stage of `other` that is `stage` of `self` unchanged, by the
    /// rule of SPEC §5: the same name, definition text and input schema.
    pub fn same_stage_in(&self, stage: usize, other: &Chain) -> Option<usize> {
        let s = &self.stages[stage];
        other
            .stages
            .iter()
            .position(|o| o.name == s.name && o.text == s.text && o.input == s.input)
    }

    /// Every record shape this chain sends to a sink.
    pub fn emits(&self) -> impl Iterator<Item = &EmitSpec> {
        self.segments
            .iter()
            .flat_map(|s| &s.steps)
            .flat_map(|st| match &st.action {
                Action::Route { emit, .. } | Action::Tee { emit } => std::slice::from_ref(emit),
                Action::To { emits } => emits.as_slice(),
                _ => &[],
            })
    }

    /// The source schema.
    pub fn input(&self) -> &Arc<Schema> {
        &self.segments[0].input
    }

    /// Whether any stage keeps state between batches (windows).
    pub fn has_windows(&self) -> bool {
        self.segments.len() > 1
    }
}
