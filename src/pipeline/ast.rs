//! The syntax tree of a `.mts` pipeline, as parsed (untyped).

use super::diag::Span;

/// A name with where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The label, or `s1, s2, ...` by position among all stages.
    pub name: String,
    /// Whether `name` was written as a label.
    pub labelled: bool,
    pub op: Op,
    /// The whole stage, label included.
    pub span: Span,
    /// The stage's definition text without the label, whitespace collapsed:
    /// two stages with equal `text` are the same definition.
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowKind {
    Tumbling,
    Sliding,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Filter(Expr),
    Eval(Vec<(Name, Expr)>),
    Select(Vec<Name>),
    Drop(Vec<Name>),
    Rename(Vec<(Name, Name)>),
    Enrich {
        table: Name,
        on: Name,
        select: Option<Vec<Name>>,
    },
    Dedup {
        fields: Vec<Name>,
        within_ns: i64,
    },
    /// `sample 1 in N [by f, ...]`
    SampleEvery {
        n: u64,
        by: Vec<Name>,
    },
    /// `sample N per D`
    SampleRate {
        n: u64,
        per_ns: i64,
    },
    Window {
        kind: WindowKind,
        size_ns: i64,
        every_ns: Option<i64>,
        lateness_ns: Option<i64>,
        by: Vec<Name>,
        emit: Vec<(Name, Expr)>,
    },
    Route {
        sink: Name,
        when: Expr,
    },
    Tee(Name),
    To(Vec<Name>),
}

impl Op {
    /// The stage word.
    pub fn word(&self) -> &'static str {
        match self {
            Op::Filter(_) => "filter",
            Op::Eval(_) => "eval",
            Op::Select(_) => "select",
            Op::Drop(_) => "drop",
            Op::Rename(_) => "rename",
            Op::Enrich { .. } => "enrich",
            Op::Dedup { .. } => "dedup",
            Op::SampleEvery { .. } | Op::SampleRate { .. } => "sample",
            Op::Window { .. } => "window",
            Op::Route { .. } => "route",
            Op::Tee(_) => "tee",
            Op::To(_) => "to",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge
        )
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem
        )
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Lit {
    Int(u64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    /// A duration literal, in ns.
    Duration(i64),
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Lit(Lit),
    Field(String),
    Param(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Call(Name, Vec<Expr>),
    InTable(Box<Expr>, Name),
    InList(Box<Expr>, Vec<Expr>),
}
