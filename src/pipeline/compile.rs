//! Type checking and compilation: [`Pipeline`] + input schema → [`Chain`].
//!
//! Every field, parameter, table and sink is resolved and typed here, once
//! per generation, so nothing on the hot path looks anything up by name.
//! Type rules (written down in docs/PIPELINE.md):
//! * integer literals are `i64` (`u64` above `i64::MAX`), floats `f64`,
//!   durations `i64` nanoseconds;
//! * arithmetic: `f64` if either side is `f64`; `i64` with `u64` is `i64`;
//!   `/` on integers truncates; `timestamp ± integer` is a timestamp and
//!   `timestamp − timestamp` is `i64` ns;
//! * comparisons: numbers compare by value across types; symbols and
//!   strings compare by bytes; `x == null` / `x != null` test presence;
//! * `eval` assignments run left to right and see the ones before them.

use super::ast::*;
use super::diag::{Diagnostic, Span, suggest};
use super::program::*;
use super::table::Table;
use crate::codec::schema::{Field, WireType};
use crate::codec::{FieldType, Schema};
use crate::config::ParamValue;
use std::sync::Arc;

/// What a pipeline is compiled against.
pub struct CompileInput<'a> {
    pub schema: &'a Arc<Schema>,
    pub params: &'a [(String, ParamValue)],
    /// Loaded tables (shared by every shard of the generation).
    pub tables: &'a [Arc<Table>],
    pub sinks: &'a [String],
}

/// The default window lateness (SPEC §4).
pub const DEFAULT_LATENESS_NS: i64 = 1_000_000_000;

/// A compiled chain.
#[derive(Debug)]
pub struct Compiled {
    pub chain: Chain,
}

const SCALAR_FUNCS: &[&str] = &[
    "abs",
    "min",
    "max",
    "round",
    "floor",
    "ceil",
    "len",
    "lower",
    "upper",
    "starts_with",
    "contains",
    "if",
    "hash",
    "now",
];
const AGGREGATES: &[&str] = &["count", "sum", "min", "max", "avg", "first", "last"];

/// Compiles `p` for `input.schema`.
///
/// # Errors
/// The first type or name error, located.
pub fn compile(p: &Pipeline, input: &CompileInput<'_>) -> Result<Compiled, Diagnostic> {
    let schema = input.schema;
    let mut env = input_env(schema);
    let mut c = Compiler {
        input,
        done: Vec::new(),
        cur: SegBuild::new(schema.clone()),
        instrs: Vec::new(),
    };
    let mut stages = Vec::new();
    let mut taps = Vec::new();
    let last = p.stages.len() - 1;
    for (k, st) in p.stages.iter().enumerate() {
        let before = out_schema(&env);
        let mut sinks = Vec::new();
        let action = c.stage(st, k, &mut env, &mut sinks)?;
        if let Op::To(_) = st.op {
            if k != last {
                return Err(Diagnostic::new(
                    p.stages[k + 1].span,
                    "unreachable stage: `to` ends the pipeline",
                ));
            }
        } else if k == last {
            return Err(Diagnostic::new(
                st.span,
                "the pipeline must end with `to SINK` (records reaching its end would go nowhere)",
            ));
        }
        if let Some(action) = action {
            c.cur.steps.push(Step {
                stage: k,
                instrs: std::mem::take(&mut c.instrs),
                action,
            });
        }
        taps.push(TapPoint {
            seg: c.done.len(),
            step: c.cur.steps.len() - 1,
            spec: c.emit_spec(usize::MAX, &env),
        });
        stages.push(StagePlan {
            name: st.name.clone(),
            word: st.op.word(),
            text: st.text.clone(),
            input: before,
            output: out_schema(&env),
            sinks,
        });
    }
    let mut segments: Vec<Segment> = c.done.into_iter().map(SegBuild::finish).collect();
    segments.push(c.cur.finish());
    Ok(Compiled {
        chain: Chain {
            segments,
            stages,
            taps,
        },
    })
}

/// Bindings for every field of a segment's input.
fn input_env(schema: &Schema) -> Vec<Binding> {
    schema
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| Binding {
            name: f.name.clone(),
            ty: f.ty,
            reg: i as Reg,
        })
        .collect()
}

/// A segment being compiled.
struct SegBuild {
    input: Arc<Schema>,
    temps: Vec<FieldType>,
    steps: Vec<Step>,
    memos: Vec<MemoKey>,
    n_states: usize,
}

impl SegBuild {
    fn new(input: Arc<Schema>) -> SegBuild {
        SegBuild {
            input,
            temps: Vec::new(),
            steps: Vec::new(),
            memos: Vec::new(),
            n_states: 0,
        }
    }

    fn finish(self) -> Segment {
        Segment {
            n_inputs: self.input.fields.len(),
            input: self.input,
            temps: self.temps,
            steps: self.steps,
            memos: self.memos,
            n_states: self.n_states,
        }
    }
}

#[derive(Clone, Debug)]
struct Binding {
    name: String,
    ty: FieldType,
    reg: Reg,
}

fn out_schema(env: &[Binding]) -> Arc<OutSchema> {
    Arc::new(OutSchema {
        fields: env.iter().map(|b| (b.name.clone(), b.ty)).collect(),
    })
}

/// A typed operand: a register, or a constant (`None` type: `null`).
#[derive(Clone, Debug)]
enum Te {
    Reg(Reg, FieldType),
    Const(Const, Option<FieldType>),
}

impl Te {
    fn ty(&self) -> Option<FieldType> {
        match self {
            Te::Reg(_, t) => Some(*t),
            Te::Const(_, t) => *t,
        }
    }

    fn opnd(&self) -> Opnd {
        match self {
            Te::Reg(r, _) => Opnd::Reg(*r),
            Te::Const(c, _) => Opnd::Const(c.clone()),
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Te::Const(Const::Null, _))
    }
}

struct Compiler<'a> {
    input: &'a CompileInput<'a>,
    /// Segments ended by a window.
    done: Vec<SegBuild>,
    cur: SegBuild,
    instrs: Vec<Instr>,
}

fn tname(t: Option<FieldType>) -> &'static str {
    t.map_or("null", |t| t.name())
}

fn lookup<'e>(env: &'e [Binding], n: &str) -> Option<&'e Binding> {
    env.iter().find(|b| b.name == n)
}

fn unknown_field(env: &[Binding], name: &str, span: Span) -> Diagnostic {
    let d = Diagnostic::new(span, format!("unknown field `{name}`"));
    match suggest(name, env.iter().map(|b| b.name.as_str())) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d.with_help(format!(
            "fields here: {}",
            env.iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

impl Compiler<'_> {
    fn reg(&mut self, ty: FieldType) -> Reg {
        let r = self.cur.input.fields.len() + self.cur.temps.len();
        assert!(
            r < Reg::MAX as usize,
            "register count bounded by pipeline size"
        );
        self.cur.temps.push(ty);
        r as Reg
    }

    fn memo(&mut self, table: &Arc<Table>, col: Option<usize>) -> u16 {
        self.cur.memos.push(MemoKey {
            table: table.clone(),
            col,
        });
        (self.cur.memos.len() - 1) as u16
    }

    fn state(&mut self) -> u16 {
        self.cur.n_states += 1;
        (self.cur.n_states - 1) as u16
    }

    /// A call's result is a value, never a literal: a constant operand is
    /// loaded into a register so it neither folds under `-` nor takes a
    /// `u64` operand's type (PIPELINE.md §5.2, §5.3).
    fn not_literal(&mut self, te: Te, span: Span) -> Result<Te, Diagnostic> {
        Ok(match te {
            Te::Const(..) => {
                let (r, t) = self.in_reg(te, span)?;
                Te::Reg(r, t)
            }
            te => te,
        })
    }

    /// `te` in a register (constants are materialised).
    fn in_reg(&mut self, te: Te, span: Span) -> Result<(Reg, FieldType), Diagnostic> {
        match te {
            Te::Reg(r, t) => Ok((r, t)),
            Te::Const(Const::Null, _) => {
                Err(Diagnostic::new(span, "cannot infer the type of `null`"))
            }
            Te::Const(c, t) => {
                let t = t.expect("non-null constants are typed");
                let dst = self.reg(t);
                self.instrs.push(Instr::Copy {
                    a: Opnd::Const(c),
                    dst,
                });
                Ok((dst, t))
            }
        }
    }

    /// The `ts` field, which event-time stages need.
    fn ts_reg(&self, env: &[Binding], span: Span, what: &str) -> Result<Reg, Diagnostic> {
        match lookup(env, "ts") {
            Some(b) if b.ty == FieldType::Timestamp => Ok(b.reg),
            _ => Err(Diagnostic::new(
                span,
                format!("{what} needs a `ts` field of type timestamp (event time)"),
            )),
        }
    }

    fn fields(&self, env: &[Binding], names: &[Name]) -> Result<Vec<(Reg, FieldType)>, Diagnostic> {
        names
            .iter()
            .map(|n| {
                lookup(env, &n.name)
                    .map(|b| (b.reg, b.ty))
                    .ok_or_else(|| unknown_field(env, &n.name, n.span))
            })
            .collect()
    }

    fn sink(&self, n: &Name) -> Result<usize, Diagnostic> {
        self.input
            .sinks
            .iter()
            .position(|s| *s == n.name)
            .ok_or_else(|| {
                let d = Diagnostic::new(n.span, format!("unknown sink `{}`", n.name));
                match suggest(&n.name, self.input.sinks.iter().map(String::as_str)) {
                    Some(s) => d.with_help(format!("did you mean `{s}`?")),
                    None => d.with_help(format!("sinks: {}", self.input.sinks.join(", "))),
                }
            })
    }

    fn table(&self, n: &Name) -> Result<&Arc<Table>, Diagnostic> {
        self.input
            .tables
            .iter()
            .find(|t| t.name == n.name)
            .ok_or_else(|| {
                let d = Diagnostic::new(n.span, format!("unknown table `@{}`", n.name));
                match suggest(&n.name, self.input.tables.iter().map(|t| t.name.as_str())) {
                    Some(s) => d.with_help(format!("did you mean `@{s}`?")),
                    None => d,
                }
            })
    }

    fn emit_spec(&self, sink: usize, env: &[Binding]) -> EmitSpec {
        EmitSpec {
            sink,
            schema: out_schema(env),
            regs: env.iter().map(|b| b.reg).collect(),
        }
    }

    /// Compiles stage `k`; returns its action, or `None` when the stage
    /// pushed its own steps (a window, which also starts a segment).
    fn stage(
        &mut self,
        st: &Stage,
        k: usize,
        env: &mut Vec<Binding>,
        sinks: &mut Vec<String>,
    ) -> Result<Option<Action>, Diagnostic> {
        if let Op::Window { .. } = st.op {
            self.window(st, k, env)?;
            return Ok(None);
        }
        Ok(Some(match &st.op {
            Op::Filter(e) => {
                let te = self.expr(e, env)?;
                self.want_bool(&te, e.span, "filter")?;
                Action::Filter { pred: te.opnd() }
            }
            Op::Eval(assigns) => {
                for (name, e) in assigns {
                    check_new_name(name)?;
                    let te = self.expr(e, env)?;
                    let (reg, ty) = match te {
                        Te::Reg(r, t) => (r, t),
                        Te::Const(Const::Null, _) => {
                            return Err(Diagnostic::new(
                                e.span,
                                "cannot infer the type of `null`; to remove a field use `drop`",
                            ));
                        }
                        Te::Const(c, t) => {
                            let t = t.expect("non-null constants are typed");
                            let dst = self.reg(t);
                            self.instrs.push(Instr::Copy {
                                a: Opnd::Const(c),
                                dst,
                            });
                            (dst, t)
                        }
                    };
                    bind(env, &name.name, ty, reg);
                }
                Action::None
            }
            Op::Select(names) => {
                let mut out = Vec::new();
                for n in names {
                    let b =
                        lookup(env, &n.name).ok_or_else(|| unknown_field(env, &n.name, n.span))?;
                    if out.iter().any(|x: &Binding| x.name == n.name) {
                        return Err(Diagnostic::new(
                            n.span,
                            format!("`{}` is selected twice", n.name),
                        ));
                    }
                    out.push(b.clone());
                }
                *env = out;
                Action::None
            }
            Op::Drop(names) => {
                for n in names {
                    let i = env
                        .iter()
                        .position(|b| b.name == n.name)
                        .ok_or_else(|| unknown_field(env, &n.name, n.span))?;
                    env.remove(i);
                }
                Action::None
            }
            Op::Rename(pairs) => {
                for (from, to) in pairs {
                    check_new_name(to)?;
                    let i = env
                        .iter()
                        .position(|b| b.name == from.name)
                        .ok_or_else(|| unknown_field(env, &from.name, from.span))?;
                    if from.name != to.name && lookup(env, &to.name).is_some() {
                        return Err(Diagnostic::new(
                            to.span,
                            format!(
                                "`{}` already exists; drop it first or choose another name",
                                to.name
                            ),
                        ));
                    }
                    env[i].name = to.name.clone();
                }
                Action::None
            }
            Op::Route { sink, when } => {
                let s = self.sink(sink)?;
                sinks.push(sink.name.clone());
                let te = self.expr(when, env)?;
                self.want_bool(&te, when.span, "route ... when")?;
                Action::Route {
                    pred: te.opnd(),
                    emit: self.emit_spec(s, env),
                }
            }
            Op::Tee(sink) => {
                let s = self.sink(sink)?;
                sinks.push(sink.name.clone());
                Action::Tee {
                    emit: self.emit_spec(s, env),
                }
            }
            Op::To(names) => {
                let mut emits = Vec::new();
                for n in names {
                    let s = self.sink(n)?;
                    if emits.iter().any(|e: &EmitSpec| e.sink == s) {
                        return Err(Diagnostic::new(
                            n.span,
                            format!("sink `{}` is named twice", n.name),
                        ));
                    }
                    sinks.push(n.name.clone());
                    emits.push(self.emit_spec(s, env));
                }
                Action::To { emits }
            }
            Op::Enrich { table, on, select } => {
                let t = self.table(table)?.clone();
                let b = lookup(env, &on.name)
                    .ok_or_else(|| unknown_field(env, &on.name, on.span))?
                    .clone();
                if !comparable(b.ty, t.key_type) {
                    return Err(Diagnostic::new(
                        on.span,
                        format!(
                            "`{}` is {} but table `@{}` is keyed by {} {}",
                            on.name, b.ty, t.name, t.key_field, t.key_type
                        ),
                    ));
                }
                if t.columns.is_empty() {
                    return Err(Diagnostic::new(
                        table.span,
                        format!(
                            "`@{}` is a set (keys only); test membership with `{} in @{}`",
                            t.name, on.name, t.name
                        ),
                    ));
                }
                let cols: Vec<usize> = match select {
                    None => (0..t.columns.len()).collect(),
                    Some(sel) => {
                        let mut v = Vec::new();
                        for n in sel {
                            let c = t
                                .columns
                                .iter()
                                .position(|(c, _)| *c == n.name)
                                .ok_or_else(|| {
                                    let d = Diagnostic::new(
                                        n.span,
                                        format!("table `@{}` has no column `{}`", t.name, n.name),
                                    );
                                    match suggest(
                                        &n.name,
                                        t.columns.iter().map(|(c, _)| c.as_str()),
                                    ) {
                                        Some(s) => d.with_help(format!("did you mean `{s}`?")),
                                        None => d,
                                    }
                                })?;
                            v.push(c);
                        }
                        v
                    }
                };
                let memo = self.memo(&t, None);
                let row = self.reg(FieldType::U64);
                self.instrs.push(Instr::Lookup {
                    a: Opnd::Reg(b.reg),
                    a_ty: b.ty,
                    table: t.clone(),
                    memo,
                    dst: row,
                });
                for c in cols {
                    let (name, ty) = t.columns[c].clone();
                    let memo = self.memo(&t, Some(c));
                    let dst = self.reg(ty);
                    self.instrs.push(Instr::TableCol {
                        row,
                        table: t.clone(),
                        col: c,
                        memo,
                        dst,
                    });
                    bind(env, &name, ty, dst);
                }
                Action::None
            }
            Op::Dedup { fields, within_ns } => {
                let keys = self.fields(env, fields)?;
                let ts = self.ts_reg(env, st.span, "`dedup`")?;
                Action::Dedup {
                    keys,
                    ts,
                    within_ns: *within_ns,
                    state: self.state(),
                }
            }
            Op::SampleEvery { n, by } => Action::SampleEvery {
                n: *n,
                by: self.fields(env, by)?,
                state: self.state(),
            },
            Op::SampleRate { n, per_ns } => Action::SampleRate {
                n: *n,
                per_ns: *per_ns,
                ts: self.ts_reg(env, st.span, "`sample N per D`")?,
                state: self.state(),
            },
            Op::Window { .. } => unreachable!("handled above"),
        }))
    }

    /// A window: the per-record aggregate arguments are computed in the
    /// current segment, which ends with the window; the closed windows'
    /// records (ts, window_start, by fields, `__aN` aggregate values) start
    /// the next segment, which computes the `emit` expressions over them.
    fn window(&mut self, st: &Stage, k: usize, env: &mut Vec<Binding>) -> Result<(), Diagnostic> {
        let Op::Window {
            kind,
            size_ns,
            every_ns,
            lateness_ns,
            by,
            emit,
        } = &st.op
        else {
            unreachable!("called for windows only")
        };
        if let (WindowKind::Sliding, Some(every)) = (kind, every_ns)
            && (*every > *size_ns || size_ns % every != 0)
        {
            return Err(Diagnostic::new(
                st.span,
                "a sliding window's size must be a multiple of its `every` interval",
            ));
        }
        let ts = self.ts_reg(env, st.span, "a window")?;
        let by_regs = self.fields(env, by)?;
        let mut aggs = Vec::new();
        let mut rewritten = Vec::new();
        for (name, e) in emit {
            check_new_name(name)?;
            if name.name == "ts"
                || name.name == "window_start"
                || by.iter().any(|b| b.name == name.name)
            {
                return Err(Diagnostic::new(
                    name.span,
                    format!("`{}` is already an output field of this window", name.name),
                ));
            }
            if rewritten
                .iter()
                .any(|(n, _): &(Name, Expr)| n.name == name.name)
            {
                return Err(Diagnostic::new(
                    name.span,
                    format!("`{}` is emitted twice", name.name),
                ));
            }
            rewritten.push((
                name.clone(),
                self.rewrite_aggs(e, env, by, &mut aggs, false)?,
            ));
        }
        // The schema the window hands to the next segment.
        let field = |name: &str, ty: FieldType| Field {
            name: name.into(),
            ty,
            wire: WireType::Variable,
            offset: None,
            required: false,
        };
        let mut fields = vec![
            field("ts", FieldType::Timestamp),
            field("window_start", FieldType::Timestamp),
        ];
        for (n, (_, ty)) in by.iter().zip(&by_regs) {
            fields.push(field(&n.name, *ty));
        }
        for (i, a) in aggs.iter().enumerate() {
            fields.push(field(&format!("__a{i}"), a.out_ty));
        }
        let output = Arc::new(Schema::new(
            &format!("window {}", st.name),
            fields,
            None,
            false,
        ));
        let spec = Arc::new(WindowSpec {
            shape: match kind {
                WindowKind::Tumbling => WindowShape::Tumbling,
                WindowKind::Sliding => WindowShape::Sliding {
                    every_ns: every_ns.expect("sliding windows have `every` (parser)"),
                },
            },
            size_ns: *size_ns,
            lateness_ns: lateness_ns.unwrap_or(DEFAULT_LATENESS_NS),
            ts,
            by: by_regs,
            aggs,
            output: output.clone(),
        });
        let next = self.done.len() + 1;
        self.cur.steps.push(Step {
            stage: k,
            instrs: std::mem::take(&mut self.instrs),
            action: Action::Window { spec, next },
        });
        let ended = std::mem::replace(&mut self.cur, SegBuild::new(output.clone()));
        self.done.push(ended);
        // In the new segment: the emit expressions over the window's record,
        // then its output fields in order.
        *env = input_env(&output);
        for (name, e) in &rewritten {
            let te = self.expr(e, env)?;
            let (reg, ty) = self.in_reg(te, e.span)?;
            bind(env, &name.name, ty, reg);
        }
        let mut out = Vec::new();
        for n in ["ts", "window_start"]
            .into_iter()
            .chain(by.iter().map(|b| b.name.as_str()))
        {
            out.push(lookup(env, n).expect("window output field").clone());
        }
        for (name, _) in &rewritten {
            out.push(lookup(env, &name.name).expect("just bound").clone());
        }
        *env = out;
        self.cur.steps.push(Step {
            stage: k,
            instrs: std::mem::take(&mut self.instrs),
            action: Action::None,
        });
        Ok(())
    }

    /// Replaces each aggregate call in `e` by a reference to its result
    /// field `__aN`, compiling its argument in the current segment.
    fn rewrite_aggs(
        &mut self,
        e: &Expr,
        env: &[Binding],
        by: &[Name],
        aggs: &mut Vec<AggSpec>,
        inside: bool,
    ) -> Result<Expr, Diagnostic> {
        let span = e.span;
        let field = |name: String| Expr {
            kind: ExprKind::Field(name),
            span,
        };
        Ok(match &e.kind {
            ExprKind::Call(f, args)
                if AGGREGATES.contains(&f.name.as_str())
                    && !(matches!(f.name.as_str(), "min" | "max") && args.len() != 1) =>
            {
                if inside {
                    return Err(Diagnostic::new(f.span, "aggregates do not nest"));
                }
                let kind = match (f.name.as_str(), args.len()) {
                    ("count", 0) => AggKind::CountAll,
                    ("count", 1) => AggKind::Count,
                    ("sum", 1) => AggKind::Sum,
                    ("min", 1) => AggKind::Min,
                    ("max", 1) => AggKind::Max,
                    ("avg", 1) => AggKind::Avg,
                    ("first", 1) => AggKind::First,
                    ("last", 1) => AggKind::Last,
                    (n, _) => {
                        return Err(Diagnostic::new(
                            e.span,
                            format!(
                                "`{n}` takes one argument{}",
                                if n == "count" { " or none" } else { "" }
                            ),
                        ));
                    }
                };
                let (arg, arg_ty) = match args.first() {
                    None => (None, FieldType::I64),
                    Some(a) => {
                        // The argument is a per-record expression: no
                        // aggregate inside it.
                        self.no_aggs(a)?;
                        let te = self.expr(a, env)?;
                        if te.is_null() {
                            return Err(Diagnostic::new(a.span, "cannot aggregate `null`"));
                        }
                        let (r, t) = self.in_reg(te, a.span)?;
                        (Some(r), t)
                    }
                };
                let out_ty = match kind {
                    AggKind::CountAll | AggKind::Count => FieldType::I64,
                    AggKind::Avg | AggKind::Sum if !arg_ty.is_numeric() => {
                        return Err(Diagnostic::new(
                            args[0].span,
                            format!("`{}` needs a number, found {arg_ty}", f.name),
                        ));
                    }
                    AggKind::Avg => FieldType::F64,
                    AggKind::Min | AggKind::Max if arg_ty == FieldType::Bool => {
                        return Err(Diagnostic::new(
                            args[0].span,
                            format!("`{}` needs a number, timestamp or text, found bool", f.name),
                        ));
                    }
                    _ => arg_ty,
                };
                aggs.push(AggSpec {
                    kind,
                    arg,
                    arg_ty,
                    out_ty,
                });
                field(format!("__a{}", aggs.len() - 1))
            }
            ExprKind::Field(n) => {
                if by.iter().any(|b| b.name == *n) {
                    e.clone()
                } else if lookup(env, n).is_some() {
                    return Err(Diagnostic::new(
                        e.span,
                        format!(
                            "`{n}` varies within a window: aggregate it (e.g. `last({n})`) or list it in `by`"
                        ),
                    ));
                } else {
                    return Err(unknown_field(env, n, e.span));
                }
            }
            ExprKind::Lit(_) | ExprKind::Param(_) => e.clone(),
            ExprKind::Neg(x) => Expr {
                kind: ExprKind::Neg(Box::new(self.rewrite_aggs(x, env, by, aggs, inside)?)),
                span,
            },
            ExprKind::Not(x) => Expr {
                kind: ExprKind::Not(Box::new(self.rewrite_aggs(x, env, by, aggs, inside)?)),
                span,
            },
            ExprKind::Binary(op, l, r) => Expr {
                kind: ExprKind::Binary(
                    *op,
                    Box::new(self.rewrite_aggs(l, env, by, aggs, inside)?),
                    Box::new(self.rewrite_aggs(r, env, by, aggs, inside)?),
                ),
                span,
            },
            ExprKind::Call(f, args) => {
                let mut v = Vec::new();
                for a in args {
                    v.push(self.rewrite_aggs(a, env, by, aggs, inside)?);
                }
                Expr {
                    kind: ExprKind::Call(f.clone(), v),
                    span,
                }
            }
            ExprKind::InTable(x, t) => Expr {
                kind: ExprKind::InTable(
                    Box::new(self.rewrite_aggs(x, env, by, aggs, inside)?),
                    t.clone(),
                ),
                span,
            },
            ExprKind::InList(x, items) => Expr {
                kind: ExprKind::InList(
                    Box::new(self.rewrite_aggs(x, env, by, aggs, inside)?),
                    items.clone(),
                ),
                span,
            },
        })
    }

    /// Rejects an aggregate call inside a per-record expression.
    fn no_aggs(&self, e: &Expr) -> Result<(), Diagnostic> {
        match &e.kind {
            ExprKind::Call(f, args) => {
                if AGGREGATES.contains(&f.name.as_str())
                    && !(matches!(f.name.as_str(), "min" | "max") && args.len() != 1)
                {
                    return Err(Diagnostic::new(f.span, "aggregates do not nest"));
                }
                args.iter().try_for_each(|a| self.no_aggs(a))
            }
            ExprKind::Neg(x) | ExprKind::Not(x) | ExprKind::InTable(x, _) => self.no_aggs(x),
            ExprKind::Binary(_, l, r) => {
                self.no_aggs(l)?;
                self.no_aggs(r)
            }
            ExprKind::InList(x, items) => {
                self.no_aggs(x)?;
                items.iter().try_for_each(|i| self.no_aggs(i))
            }
            ExprKind::Lit(_) | ExprKind::Field(_) | ExprKind::Param(_) => Ok(()),
        }
    }

    fn want_bool(&self, te: &Te, span: Span, what: &str) -> Result<(), Diagnostic> {
        match te.ty() {
            Some(FieldType::Bool) | None => Ok(()),
            Some(t) => Err(Diagnostic::new(
                span,
                format!("`{what}` needs a bool expression, found {t}"),
            )),
        }
    }

    fn expr(&mut self, e: &Expr, env: &[Binding]) -> Result<Te, Diagnostic> {
        match &e.kind {
            ExprKind::Lit(l) => Ok(match l {
                Lit::Int(v) => match i64::try_from(*v) {
                    Ok(v) => Te::Const(Const::I64(v), Some(FieldType::I64)),
                    Err(_) => Te::Const(Const::U64(*v), Some(FieldType::U64)),
                },
                Lit::Float(v) => Te::Const(Const::F64(*v), Some(FieldType::F64)),
                Lit::Str(s) => Te::Const(Const::Str(s.as_bytes().into()), Some(FieldType::Str)),
                Lit::Bool(b) => Te::Const(Const::Bool(*b), Some(FieldType::Bool)),
                Lit::Null => Te::Const(Const::Null, None),
                Lit::Duration(ns) => Te::Const(Const::I64(*ns), Some(FieldType::I64)),
            }),
            ExprKind::Field(n) => {
                let b = lookup(env, n).ok_or_else(|| unknown_field(env, n, e.span))?;
                Ok(Te::Reg(b.reg, b.ty))
            }
            ExprKind::Param(p) => {
                let v = self
                    .input
                    .params
                    .iter()
                    .find(|(n, _)| n == p)
                    .map(|(_, v)| v)
                    .ok_or_else(|| {
                        let d = Diagnostic::new(e.span, format!("unknown parameter `${p}`"));
                        match suggest(p, self.input.params.iter().map(|(n, _)| n.as_str())) {
                            Some(s) => d.with_help(format!("did you mean `${s}`?")),
                            None => d.with_help("declare it under [params] in the config"),
                        }
                    })?;
                Ok(match v {
                    ParamValue::I64(i) => Te::Const(Const::I64(*i), Some(FieldType::I64)),
                    ParamValue::F64(f) => Te::Const(Const::F64(*f), Some(FieldType::F64)),
                    ParamValue::Bool(b) => Te::Const(Const::Bool(*b), Some(FieldType::Bool)),
                    ParamValue::Str(s) => {
                        Te::Const(Const::Str(s.as_bytes().into()), Some(FieldType::Str))
                    }
                })
            }
            ExprKind::Neg(x) => {
                let te = self.expr(x, env)?;
                // Fold negated literals so `-5` is a constant (lists need it).
                if let Te::Const(c, _) = &te {
                    let folded = match c {
                        Const::I64(v) => v.checked_neg().map(|v| (Const::I64(v), FieldType::I64)),
                        Const::U64(v) if *v == 1 << 63 => {
                            Some((Const::I64(i64::MIN), FieldType::I64))
                        }
                        Const::F64(v) => Some((Const::F64(-v), FieldType::F64)),
                        _ => None,
                    };
                    if let Some((c, t)) = folded {
                        return Ok(Te::Const(c, Some(t)));
                    }
                }
                match te.ty() {
                    None => Ok(te),
                    Some(FieldType::I64) => self.un(
                        |a, dst| Instr::Neg {
                            ty: NumTy::I64,
                            a,
                            dst,
                        },
                        te,
                        FieldType::I64,
                    ),
                    Some(FieldType::F64) => self.un(
                        |a, dst| Instr::Neg {
                            ty: NumTy::F64,
                            a,
                            dst,
                        },
                        te,
                        FieldType::F64,
                    ),
                    Some(FieldType::U64) => {
                        let te = self.cast(te, FieldType::I64);
                        self.un(
                            |a, dst| Instr::Neg {
                                ty: NumTy::I64,
                                a,
                                dst,
                            },
                            te,
                            FieldType::I64,
                        )
                    }
                    Some(t) => Err(Diagnostic::new(e.span, format!("cannot negate {t}"))),
                }
            }
            ExprKind::Not(x) => {
                let te = self.expr(x, env)?;
                self.want_bool(&te, x.span, "not")?;
                self.un(|a, dst| Instr::Not { a, dst }, te, FieldType::Bool)
            }
            ExprKind::Binary(op, l, r) => {
                let lt = self.expr(l, env)?;
                let rt = self.expr(r, env)?;
                match op {
                    BinOp::And | BinOp::Or => {
                        self.want_bool(&lt, l.span, op.symbol())?;
                        self.want_bool(&rt, r.span, op.symbol())?;
                        let dst = self.reg(FieldType::Bool);
                        let (a, b) = (lt.opnd(), rt.opnd());
                        self.instrs.push(if *op == BinOp::And {
                            Instr::And { a, b, dst }
                        } else {
                            Instr::Or { a, b, dst }
                        });
                        Ok(Te::Reg(dst, FieldType::Bool))
                    }
                    _ if op.is_comparison() => self.compare(*op, lt, rt, e.span),
                    _ => self.arith(*op, lt, rt, e.span),
                }
            }
            ExprKind::Call(f, args) => self.call(f, args, env, e.span),
            ExprKind::InTable(x, t) => {
                let te = self.expr(x, env)?;
                let table = self.table(t)?;
                if let Some(ty) = te.ty()
                    && !comparable(ty, table.key_type)
                {
                    return Err(Diagnostic::new(
                        e.span,
                        format!(
                            "{ty} cannot be looked up in `@{}`, keyed by {}",
                            table.name, table.key_type
                        ),
                    ));
                }
                if te.ty().is_none() {
                    return Err(Diagnostic::new(
                        x.span,
                        format!("`null in @{}` never matches; test `x == null`", table.name),
                    ));
                }
                let table = table.clone();
                let (a, a_ty) = self.in_reg(te, x.span)?;
                let memo = self.memo(&table, None);
                let row = self.reg(FieldType::U64);
                self.instrs.push(Instr::Lookup {
                    a: Opnd::Reg(a),
                    a_ty,
                    table,
                    memo,
                    dst: row,
                });
                let dst = self.reg(FieldType::Bool);
                self.instrs.push(Instr::Present {
                    a: Opnd::Reg(row),
                    negate: false,
                    dst,
                });
                Ok(Te::Reg(dst, FieldType::Bool))
            }
            ExprKind::InList(x, items) => self.in_list(x, items, env, e.span),
        }
    }

    fn un(
        &mut self,
        f: impl FnOnce(Opnd, Reg) -> Instr,
        te: Te,
        out: FieldType,
    ) -> Result<Te, Diagnostic> {
        let dst = self.reg(out);
        self.instrs.push(f(te.opnd(), dst));
        Ok(Te::Reg(dst, out))
    }

    /// Converts `te` to numeric type `to` (int → f64, u64 ↔ i64 checked,
    /// timestamp ↔ i64 by retagging).
    fn cast(&mut self, te: Te, to: FieldType) -> Te {
        let from = match te.ty() {
            None => return Te::Const(Const::Null, Some(to)),
            Some(t) => t,
        };
        let norm = |t| {
            if t == FieldType::Timestamp {
                FieldType::I64
            } else {
                t
            }
        };
        if norm(from) == norm(to) {
            return match te {
                Te::Reg(r, _) => Te::Reg(r, to),
                Te::Const(c, _) => Te::Const(c, Some(to)),
            };
        }
        if let Te::Const(c, _) = &te {
            let folded = match (c, to) {
                (Const::I64(v), FieldType::F64) => Some(Const::F64(*v as f64)),
                (Const::U64(v), FieldType::F64) => Some(Const::F64(*v as f64)),
                // A constant that does not fit is converted at run time, so
                // each record's overflow is counted like any other.
                (Const::U64(v), FieldType::I64 | FieldType::Timestamp) => {
                    i64::try_from(*v).ok().map(Const::I64)
                }
                (Const::I64(v), FieldType::U64) => u64::try_from(*v).ok().map(Const::U64),
                _ => None,
            };
            if let Some(c) = folded {
                return Te::Const(c, Some(to));
            }
        }
        let op = match (norm(from), norm(to)) {
            (FieldType::I64, FieldType::F64) => CastOp::I64ToF64,
            (FieldType::U64, FieldType::F64) => CastOp::U64ToF64,
            (FieldType::U64, FieldType::I64) => CastOp::U64ToI64,
            (FieldType::I64, FieldType::U64) => CastOp::I64ToU64,
            (f, t) => unreachable!("cast {f} -> {t} is not generated"),
        };
        let dst = self.reg(to);
        self.instrs.push(Instr::Cast {
            op,
            a: te.opnd(),
            dst,
        });
        Te::Reg(dst, to)
    }

    fn arith(&mut self, op: BinOp, l: Te, r: Te, span: Span) -> Result<Te, Diagnostic> {
        use FieldType::*;
        let aop = match op {
            BinOp::Add => ArithOp::Add,
            BinOp::Sub => ArithOp::Sub,
            BinOp::Mul => ArithOp::Mul,
            BinOp::Div => ArithOp::Div,
            BinOp::Rem => ArithOp::Rem,
            _ => unreachable!(),
        };
        let (lt, rt) = match (l.ty(), r.ty()) {
            (None, None) => return Err(Diagnostic::new(span, "cannot infer the type of `null`")),
            (None, Some(t)) => (t, t),
            (Some(t), None) => (t, t),
            (Some(a), Some(b)) => (a, b),
        };
        // A non-negative integer constant takes the type of a u64 operand,
        // so `hash(k) % 10` and `seq + 1` stay u64 instead of overflowing i64.
        let nonneg_const = |t: &Te| matches!(t, Te::Const(Const::I64(v), _) if *v >= 0);
        let (lt, rt) = match (lt, rt) {
            (U64, I64) if nonneg_const(&r) => (U64, U64),
            (I64, U64) if nonneg_const(&l) => (U64, U64),
            other => other,
        };
        let bad = || {
            Diagnostic::new(
                span,
                format!(
                    "`{}` is not defined for {} and {}",
                    op.symbol(),
                    tname(l.ty()),
                    tname(r.ty())
                ),
            )
        };
        // (representation, result type)
        let (num, out) = match (lt, rt) {
            (Timestamp, Timestamp) if aop == ArithOp::Sub => (NumTy::I64, I64),
            (Timestamp, I64 | U64) | (I64 | U64, Timestamp) if aop == ArithOp::Add => {
                (NumTy::I64, Timestamp)
            }
            (Timestamp, I64 | U64) if aop == ArithOp::Sub => (NumTy::I64, Timestamp),
            (Timestamp, _) | (_, Timestamp) => return Err(bad()),
            (F64, I64 | U64 | F64) | (I64 | U64, F64) => (NumTy::F64, F64),
            (I64, I64) | (I64, U64) | (U64, I64) => (NumTy::I64, I64),
            (U64, U64) => (NumTy::U64, U64),
            _ => return Err(bad()),
        };
        let rep = match num {
            NumTy::I64 => I64,
            NumTy::U64 => U64,
            NumTy::F64 => F64,
        };
        let l = self.cast(l, rep);
        let r = self.cast(r, rep);
        let dst = self.reg(out);
        self.instrs.push(Instr::Arith {
            op: aop,
            ty: num,
            a: l.opnd(),
            b: r.opnd(),
            dst,
        });
        Ok(Te::Reg(dst, out))
    }

    /// The comparison kind for two types, converting operands as needed.
    fn cmp_operands(
        &mut self,
        l: Te,
        r: Te,
        span: Span,
        what: &str,
    ) -> Result<(CmpKind, Te, Te), Diagnostic> {
        use FieldType::*;
        let (lt, rt) = (
            l.ty().expect("nulls handled"),
            r.ty().expect("nulls handled"),
        );
        let norm = |t| if t == Timestamp { I64 } else { t };
        Ok(match (norm(lt), norm(rt)) {
            (F64, I64 | U64 | F64) | (I64 | U64, F64) => {
                let l = self.cast(l, F64);
                let r = self.cast(r, F64);
                (CmpKind::F64, l, r)
            }
            (I64, I64) => (CmpKind::I64, l, r),
            (U64, U64) => (CmpKind::U64, l, r),
            (I64, U64) => (CmpKind::I64U64, l, r),
            (U64, I64) => (CmpKind::U64I64, l, r),
            (Bool, Bool) => (CmpKind::Bool, l, r),
            (Symbol | Str, Symbol | Str) => (CmpKind::Text, l, r),
            _ => {
                return Err(Diagnostic::new(
                    span,
                    format!("cannot {what} {lt} with {rt}"),
                ));
            }
        })
    }

    fn compare(&mut self, op: BinOp, l: Te, r: Te, span: Span) -> Result<Te, Diagnostic> {
        let cop = match op {
            BinOp::Eq => CmpOp::Eq,
            BinOp::Ne => CmpOp::Ne,
            BinOp::Lt => CmpOp::Lt,
            BinOp::Le => CmpOp::Le,
            BinOp::Gt => CmpOp::Gt,
            BinOp::Ge => CmpOp::Ge,
            _ => unreachable!(),
        };
        if l.is_null() || r.is_null() {
            let other = if l.is_null() { &r } else { &l };
            if other.ty().is_none() {
                return Err(Diagnostic::new(span, "comparing `null` with `null`"));
            }
            return match cop {
                CmpOp::Eq | CmpOp::Ne => {
                    let a = other.opnd();
                    self.un(
                        |_, dst| Instr::Present {
                            a,
                            negate: cop == CmpOp::Eq,
                            dst,
                        },
                        l,
                        FieldType::Bool,
                    )
                }
                // A comparison with null is false.
                _ => Ok(Te::Const(Const::Bool(false), Some(FieldType::Bool))),
            };
        }
        let (kind, l, r) = self.cmp_operands(l, r, span, "compare")?;
        if kind == CmpKind::Bool && !matches!(cop, CmpOp::Eq | CmpOp::Ne) {
            return Err(Diagnostic::new(
                span,
                "bools only compare with `==` and `!=`",
            ));
        }
        let dst = self.reg(FieldType::Bool);
        self.instrs.push(Instr::Cmp {
            op: cop,
            kind,
            a: l.opnd(),
            b: r.opnd(),
            dst,
        });
        Ok(Te::Reg(dst, FieldType::Bool))
    }

    fn in_list(
        &mut self,
        x: &Expr,
        items: &[Expr],
        env: &[Binding],
        span: Span,
    ) -> Result<Te, Diagnostic> {
        let te = self.expr(x, env)?;
        let lt = te.ty().ok_or_else(|| {
            Diagnostic::new(x.span, "`null in [...]` never matches; test `x == null`")
        })?;
        let mut consts = Vec::new();
        for it in items {
            let c = self.expr(it, env)?;
            let Te::Const(c, ct) = c else {
                return Err(Diagnostic::new(
                    it.span,
                    "list items must be literals or parameters",
                ));
            };
            let Some(ct) = ct else {
                return Err(Diagnostic::new(
                    it.span,
                    "`null` in a list never matches; test `x == null`",
                ));
            };
            consts.push((c, ct, it.span));
        }
        // One comparison kind for all items: f64 if the field or any item is.
        let any_f64 = lt == FieldType::F64 || consts.iter().any(|(_, t, _)| *t == FieldType::F64);
        let (kind, a) = if lt.is_numeric() || lt == FieldType::Timestamp {
            if any_f64 {
                (CmpKind::F64, self.cast(te, FieldType::F64))
            } else if lt == FieldType::U64 {
                (CmpKind::U64, te)
            } else {
                (CmpKind::I64, te)
            }
        } else if lt.is_text() {
            (CmpKind::Text, te)
        } else {
            (CmpKind::Bool, te)
        };
        let mut out = Vec::new();
        for (c, ct, sp) in consts {
            let ok = match kind {
                CmpKind::F64 | CmpKind::I64 | CmpKind::U64 => ct.is_numeric(),
                CmpKind::Text => ct.is_text(),
                _ => ct == FieldType::Bool,
            };
            if !ok {
                return Err(Diagnostic::new(
                    sp,
                    format!("a {ct} item in a list of {lt} values"),
                ));
            }
            let conv = match (kind, c) {
                (CmpKind::F64, Const::I64(v)) => Some(Const::F64(v as f64)),
                (CmpKind::F64, Const::U64(v)) => Some(Const::F64(v as f64)),
                (CmpKind::I64, Const::U64(v)) => i64::try_from(v).ok().map(Const::I64),
                (CmpKind::U64, Const::I64(v)) => u64::try_from(v).ok().map(Const::U64),
                (_, c) => Some(c),
            };
            // An item the field's type cannot hold can never match.
            out.extend(conv);
        }
        let dst = self.reg(FieldType::Bool);
        self.instrs.push(Instr::InList {
            a: a.opnd(),
            items: ListItems::new(kind, &out),
            dst,
        });
        let _ = span;
        Ok(Te::Reg(dst, FieldType::Bool))
    }

    fn call(
        &mut self,
        f: &Name,
        args: &[Expr],
        env: &[Binding],
        span: Span,
    ) -> Result<Te, Diagnostic> {
        let name = f.name.as_str();
        if !SCALAR_FUNCS.contains(&name) {
            if AGGREGATES.contains(&name) {
                return Err(Diagnostic::new(
                    f.span,
                    format!("aggregate `{name}` is only allowed in a window's `emit`"),
                ));
            }
            let d = Diagnostic::new(f.span, format!("unknown function `{name}`"));
            return Err(match suggest(name, SCALAR_FUNCS.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("functions: {}", SCALAR_FUNCS.join(", "))),
            });
        }
        let arity = |n: usize| -> Result<(), Diagnostic> {
            if args.len() == n {
                Ok(())
            } else {
                Err(Diagnostic::new(
                    span,
                    format!(
                        "`{name}` takes {n} argument{}, found {}",
                        if n == 1 { "" } else { "s" },
                        args.len()
                    ),
                ))
            }
        };
        let mut tes = Vec::new();
        for a in args {
            tes.push(self.expr(a, env)?);
        }
        let need = |te: &Te,
                    i: usize,
                    ok: fn(FieldType) -> bool,
                    what: &str|
         -> Result<FieldType, Diagnostic> {
            match te.ty() {
                Some(t) if ok(t) => Ok(t),
                t => Err(Diagnostic::new(
                    args[i].span,
                    format!("`{name}` needs {what}, found {}", tname(t)),
                )),
            }
        };
        match name {
            "abs" => {
                arity(1)?;
                let t = need(&tes[0], 0, FieldType::is_numeric, "a number")?;
                let te = tes.pop().expect("arity 1");
                Ok(match t {
                    // The value is the operand, but no longer a literal.
                    FieldType::U64 => self.not_literal(te, args[0].span)?,
                    FieldType::I64 => self.un(
                        |a, dst| Instr::Abs {
                            ty: NumTy::I64,
                            a,
                            dst,
                        },
                        te,
                        t,
                    )?,
                    _ => self.un(
                        |a, dst| Instr::Abs {
                            ty: NumTy::F64,
                            a,
                            dst,
                        },
                        te,
                        t,
                    )?,
                })
            }
            "round" | "floor" | "ceil" => {
                arity(1)?;
                let t = need(&tes[0], 0, FieldType::is_numeric, "a number")?;
                let te = tes.pop().expect("arity 1");
                if t != FieldType::F64 {
                    // The value is the integer, but no longer a literal: it
                    // does not take a u64 operand's type.
                    return self.not_literal(te, args[0].span);
                }
                let op = match name {
                    "round" => RoundOp::Round,
                    "floor" => RoundOp::Floor,
                    _ => RoundOp::Ceil,
                };
                self.un(|a, dst| Instr::Round { op, a, dst }, te, FieldType::F64)
            }
            "min" | "max" => {
                if args.is_empty() {
                    return Err(Diagnostic::new(
                        span,
                        format!(
                            "`{name}` needs arguments: one as a window's aggregate, two or more to compare values"
                        ),
                    ));
                }
                if args.len() < 2 {
                    return Err(Diagnostic::new(
                        span,
                        format!(
                            "`{name}` takes two or more arguments (as an aggregate, it belongs in a window's `emit`)"
                        ),
                    ));
                }
                let mut types = Vec::new();
                for (i, te) in tes.iter().enumerate() {
                    types.push(need(
                        te,
                        i,
                        |t| t.is_numeric() || t == FieldType::Timestamp,
                        "a number or timestamp",
                    )?);
                }
                let all_ts = types.iter().all(|t| *t == FieldType::Timestamp);
                let (ty, out) = if types.contains(&FieldType::F64) {
                    (NumTy::F64, FieldType::F64)
                } else if all_ts {
                    (NumTy::I64, FieldType::Timestamp)
                } else if types.iter().all(|t| *t == FieldType::U64) {
                    (NumTy::U64, FieldType::U64)
                } else {
                    (NumTy::I64, FieldType::I64)
                };
                if types.contains(&FieldType::Timestamp) && !all_ts {
                    return Err(Diagnostic::new(
                        span,
                        format!("`{name}` mixes timestamps with numbers"),
                    ));
                }
                let rep = match ty {
                    NumTy::I64 => FieldType::I64,
                    NumTy::U64 => FieldType::U64,
                    NumTy::F64 => FieldType::F64,
                };
                let ops: Vec<Opnd> = tes.into_iter().map(|t| self.cast(t, rep).opnd()).collect();
                let dst = self.reg(out);
                self.instrs.push(Instr::MinMax {
                    max: name == "max",
                    ty,
                    args: ops,
                    dst,
                });
                Ok(Te::Reg(dst, out))
            }
            "len" => {
                arity(1)?;
                need(&tes[0], 0, FieldType::is_text, "a string or symbol")?;
                let te = tes.pop().expect("arity 1");
                self.un(|a, dst| Instr::Len { a, dst }, te, FieldType::I64)
            }
            "lower" | "upper" => {
                arity(1)?;
                need(&tes[0], 0, FieldType::is_text, "a string or symbol")?;
                let te = tes.pop().expect("arity 1");
                let upper = name == "upper";
                self.un(|a, dst| Instr::Case { upper, a, dst }, te, FieldType::Str)
            }
            "starts_with" | "contains" => {
                arity(2)?;
                need(&tes[0], 0, FieldType::is_text, "a string or symbol")?;
                need(&tes[1], 1, FieldType::is_text, "a string or symbol")?;
                let dst = self.reg(FieldType::Bool);
                let (a, b) = (tes[0].opnd(), tes[1].opnd());
                self.instrs.push(if name == "contains" {
                    Instr::Contains { a, b, dst }
                } else {
                    Instr::StartsWith { a, b, dst }
                });
                Ok(Te::Reg(dst, FieldType::Bool))
            }
            "if" => {
                arity(3)?;
                need(&tes[0], 0, |t| t == FieldType::Bool, "a bool condition")?;
                let b = tes.pop().expect("arity 3");
                let a = tes.pop().expect("arity 3");
                let c = tes.pop().expect("arity 3");
                let out = match (a.ty(), b.ty()) {
                    (None, None) => {
                        return Err(Diagnostic::new(
                            span,
                            "cannot infer the type of `if(..., null, null)`",
                        ));
                    }
                    (Some(t), None) | (None, Some(t)) => t,
                    (Some(x), Some(y)) if x == y => x,
                    (Some(x), Some(y)) if x.is_text() && y.is_text() => FieldType::Str,
                    (Some(x), Some(y)) if x.is_numeric() && y.is_numeric() => {
                        if x == FieldType::F64 || y == FieldType::F64 {
                            FieldType::F64
                        } else {
                            FieldType::I64
                        }
                    }
                    (Some(x), Some(y)) => {
                        return Err(Diagnostic::new(
                            span,
                            format!("`if` branches have different types: {x} and {y}"),
                        ));
                    }
                };
                let a = self.coerce_to(a, out);
                let b = self.coerce_to(b, out);
                let dst = self.reg(out);
                self.instrs.push(Instr::If {
                    c: c.opnd(),
                    a: a.opnd(),
                    b: b.opnd(),
                    dst,
                });
                Ok(Te::Reg(dst, out))
            }
            "hash" => {
                if args.is_empty() {
                    return Err(Diagnostic::new(span, "`hash` takes one or more arguments"));
                }
                let mut v = Vec::new();
                for (i, te) in tes.iter().enumerate() {
                    let t = te
                        .ty()
                        .ok_or_else(|| Diagnostic::new(args[i].span, "cannot hash `null`"))?;
                    v.push((te.opnd(), t));
                }
                let dst = self.reg(FieldType::U64);
                self.instrs.push(Instr::Hash { args: v, dst });
                Ok(Te::Reg(dst, FieldType::U64))
            }
            "now" => {
                arity(0)?;
                let dst = self.reg(FieldType::Timestamp);
                self.instrs.push(Instr::Now { dst });
                Ok(Te::Reg(dst, FieldType::Timestamp))
            }
            _ => unreachable!("SCALAR_FUNCS checked above"),
        }
    }

    /// Converts a branch of `if` to the result type: numbers by cast,
    /// symbols to strings by copying their bytes.
    fn coerce_to(&mut self, te: Te, to: FieldType) -> Te {
        match te.ty() {
            None => Te::Const(Const::Null, Some(to)),
            Some(t) if t == to => te,
            Some(FieldType::Symbol) if to == FieldType::Str => {
                let dst = self.reg(FieldType::Str);
                self.instrs.push(Instr::Copy { a: te.opnd(), dst });
                Te::Reg(dst, FieldType::Str)
            }
            Some(_) => self.cast(te, to),
        }
    }
}

fn comparable(a: FieldType, b: FieldType) -> bool {
    let num = |t: FieldType| t.is_numeric() || t == FieldType::Timestamp;
    (num(a) && num(b)) || (a.is_text() && b.is_text()) || (a == b)
}

fn check_new_name(n: &Name) -> Result<(), Diagnostic> {
    if n.name.starts_with('_') {
        return Err(Diagnostic::new(
            n.span,
            format!(
                "`{}`: names starting with `_` are reserved for meta fields",
                n.name
            ),
        ));
    }
    Ok(())
}

fn bind(env: &mut Vec<Binding>, name: &str, ty: FieldType, reg: Reg) {
    match env.iter_mut().find(|b| b.name == name) {
        Some(b) => {
            b.ty = ty;
            b.reg = reg;
        }
        None => env.push(Binding {
            name: name.to_string(),
            ty,
            reg,
        }),
    }
}
