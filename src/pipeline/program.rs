//! The compiled form of a pipeline: a [`Chain`] of steps over registers.
//!
//! Registers `0..n_inputs` are the batch's decoded columns; the rest are
//! temporaries owned by each shard's [`super::exec::Exec`]. Every
//! instruction writes a fresh register (single assignment), so an operand is
//! never overwritten while it is read and `eval` can alias a field to an
//! existing register without a copy.

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

/// A pipeline compiled for one input schema.
#[derive(Clone, Debug)]
pub struct Chain {
    pub input: Arc<Schema>,
    pub n_inputs: usize,
    /// Types of registers `n_inputs..`.
    pub temps: Vec<FieldType>,
    pub steps: Vec<Step>,
    pub stages: Vec<StagePlan>,
}

impl Chain {
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
