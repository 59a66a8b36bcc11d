//! The compiled pipeline chain computes exactly what the language reference
//! (docs/PIPELINE.md, SPEC §4) says, for random well-typed pipelines over
//! random batches.
//!
//! How: a type-directed generator, driven by a proptest "choice tape" (a
//! vector of `u32`s that shrinks toward zero, and a zero choice is always
//! the simplest one), writes pipelines of `filter`, `eval`, `select`,
//! `drop`, `rename`, `route`, `tee` ending in `to`, with expressions of
//! depth ≤ 4 using every operator, function, literal form and `in [...]`
//! over a fixed schema holding every field type. Each pipeline is parsed and
//! compiled by the real parser and compiler (a pipeline that does not
//! compile is a generator bug) and run once over 1–64 random records full
//! of nulls, NaN, ±inf, -0.0, extreme integers and odd Unicode. A
//! deliberately simple reference interpreter in this file walks the same
//! AST one record at a time with ordinary checked Rust arithmetic, written
//! from the documentation and not from `src/pipeline`. The records each sink
//! receives must be equal, in order (by stage, then by input record), field
//! by field with the same names and types (floats bitwise, any NaN equal to
//! any NaN); the `overflow`, `div_zero` and `filtered` counts and the
//! per-stage in/out counts must match too.
//!
//! Where the documentation leaves a choice, the reference takes the one the
//! documentation implies and says so in a comment (look for "Reading:").
//!
//! Found and fixed, each kept as a `regression_*` test at the end of this
//! file: integer `null / 0` panicked the chain; a u64 constant folded to
//! null in an `i64` context was not counted as overflow; `round`/`floor`/
//! `ceil` of an integer constant was typed like a literal.
//!
//! `PROPTEST_CASES` overrides the default of 10 000 cases (about 10 s).

use mutstream::codec::schema::{Field, Schema, parse_type};
use mutstream::codec::{Batch, ColumnData, FieldType as FT, Interner};
use mutstream::config::ParamValue;
use mutstream::pipeline::compile::{CompileInput, compile};
use mutstream::pipeline::exec::{Emit, Exec, Rows, RunStats};
use mutstream::pipeline::kernels::Sel;
use mutstream::pipeline::parser::parse;
use mutstream::pipeline::program::{Chain, EmitSpec};
use proptest::prelude::*;
use std::fmt::Write as _;
use std::sync::Arc;

mod reference;
use reference::*;

// ---------------------------------------------------------------------------
// The fixture: one schema with every field type, params of every param type.

/// `window` is a keyword (written in backticks) and `floor` a function name
/// used as a field. No field is called `ts`, so a null timestamp stays null.
const FIELDS: &[(&str, FT)] = &[
    ("i1", FT::I64),
    ("i2", FT::I64),
    ("window", FT::I64),
    ("u1", FT::U64),
    ("u2", FT::U64),
    ("u3", FT::U64),
    ("f1", FT::F64),
    ("f2", FT::F64),
    ("floor", FT::F64),
    ("b1", FT::Bool),
    ("b2", FT::Bool),
    ("y1", FT::Symbol),
    ("y2", FT::Symbol),
    ("s1", FT::Str),
    ("s2", FT::Str),
    ("t1", FT::Timestamp),
    ("t2", FT::Timestamp),
];

const SINKS: &[&str] = &["out", "side", "alerts"];

const BATCH_MAX: usize = 64;

const KEYWORDS: &[&str] = &[
    "filter", "eval", "select", "drop", "rename", "enrich", "dedup", "sample", "window", "route",
    "tee", "to", "on", "within", "in", "per", "by", "every", "emit", "lateness", "when", "as",
    "and", "or", "not", "true", "false", "null",
];

fn params() -> Vec<(String, ParamValue)> {
    [
        ("pi", ParamValue::I64(7)),
        ("pneg", ParamValue::I64(-3)),
        ("pzero", ParamValue::I64(0)),
        ("pmax", ParamValue::I64(i64::MAX)),
        ("pmin", ParamValue::I64(i64::MIN)),
        ("pf", ParamValue::F64(2.5)),
        ("pnz", ParamValue::F64(-0.0)),
        ("pbig", ParamValue::F64(1e300)),
        ("pb", ParamValue::Bool(true)),
        ("ps", ParamValue::Str("abc".into())),
        ("pe", ParamValue::Str(String::new())),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect()
}

fn schema() -> Arc<Schema> {
    let fields = FIELDS
        .iter()
        .map(|(name, t)| {
            let (ty, wire) = parse_type(t.name()).expect("every field type has a config name");
            Field {
                name: name.to_string(),
                ty,
                wire,
                offset: None,
                required: false,
            }
        })
        .collect();
    Arc::new(Schema::new("diff", fields, None, false))
}

// ---------------------------------------------------------------------------
// Values.

// ---------------------------------------------------------------------------
// The compiled chain, run through its public API.

/// Captures every emitted record as (sink, record).
#[derive(Default)]
struct Capture {
    out: Vec<(usize, Rec)>,
}

impl Emit for Capture {
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        let idx: Vec<usize> = match rows.sel {
            Sel::All(n) => (0..n).collect(),
            Sel::Idx(ix) => ix.iter().map(|&i| i as usize).collect(),
        };
        for i in idx {
            let rec = spec
                .schema
                .fields
                .iter()
                .zip(&spec.regs)
                .map(|((name, ty), &r)| {
                    let (c, arena) = rows.column(r);
                    let utf8 = |b: &[u8]| {
                        String::from_utf8(b.to_vec())
                            .unwrap_or_else(|_| panic!("field {name} holds invalid UTF-8: {b:?}"))
                    };
                    let v = if !c.valid.get(i) {
                        Val::Null
                    } else {
                        match (&c.data, ty) {
                            (ColumnData::I64(v), FT::Timestamp) => Val::Ts(v[i]),
                            (ColumnData::I64(v), FT::I64) => Val::I64(v[i]),
                            (ColumnData::U64(v), FT::U64) => Val::U64(v[i]),
                            (ColumnData::F64(v), FT::F64) => Val::F64(v[i]),
                            (ColumnData::Bool(v), FT::Bool) => Val::Bool(v[i]),
                            (ColumnData::Sym(v), FT::Symbol) => {
                                Val::Str(utf8(rows.symbols.resolve(v[i])))
                            }
                            (ColumnData::Str(v), FT::Str) => Val::Str(utf8(v[i].get(arena))),
                            (_, t) => panic!("field {name}: a {t} field in a {:?} column", c.ty),
                        }
                    };
                    (name.clone(), *ty, v)
                })
                .collect();
            self.out.push((spec.sink, rec));
        }
    }
}

struct ChainRun {
    out: Vec<(usize, Rec)>,
    stats: RunStats,
    stage_in: Vec<u64>,
    stage_out: Vec<u64>,
}

/// The only place the compiled-chain API is called. A first run over other
/// rows (`warmup`) leaves stale values in every register and arena, so a
/// kernel that reads outside its selection shows up in the second run,
/// which is the one compared.
fn run_chain(
    chain: &Chain,
    warmup: &Batch,
    batch: &Batch,
    syms: &mut Interner,
    now_ns: i64,
) -> ChainRun {
    let mut exec = Exec::new(chain, BATCH_MAX);
    exec.run(chain, warmup, syms, now_ns, &mut Capture::default());
    let in0 = exec.counters.stage_in.clone();
    let out0 = exec.counters.stage_out.clone();
    let mut cap = Capture::default();
    let stats = exec.run(chain, batch, syms, now_ns, &mut cap);
    let delta = |now: &[u64], before: &[u64]| -> Vec<u64> {
        now.iter().zip(before).map(|(a, b)| a - b).collect()
    };
    ChainRun {
        out: cap.out,
        stats,
        stage_in: delta(&exec.counters.stage_in, &in0),
        stage_out: delta(&exec.counters.stage_out, &out0),
    }
}

/// Fills a batch with `rows`, interning symbols into `syms`.
fn fill(schema: &Schema, rows: &[Vec<Val>], syms: &mut Interner) -> Batch {
    let mut b = Batch::new(schema, BATCH_MAX);
    for row in rows {
        let mut w = b.row();
        for (i, v) in row.iter().enumerate() {
            match v {
                Val::Null => w.set_null(i),
                Val::I64(x) | Val::Ts(x) => w.set_i64(i, *x),
                Val::U64(x) => w.set_u64(i, *x),
                Val::F64(x) => w.set_f64(i, *x),
                Val::Bool(x) => w.set_bool(i, *x),
                Val::Str(s) if schema.fields[i].ty == FT::Symbol => {
                    let id = syms.intern(s.as_bytes()).expect("few symbols per test");
                    w.set_sym(i, id);
                }
                Val::Str(s) => w.set_str(i, s.as_bytes()),
            }
        }
        w.commit(schema, 0).expect("no required fields");
    }
    b
}

// ---------------------------------------------------------------------------
// One case: compile, run both, compare.

fn show_rows(rows: &[Vec<Val>]) -> String {
    let mut s = String::new();
    for (k, r) in rows.iter().enumerate() {
        let _ = write!(s, "  #{k}: {{");
        let mut first = true;
        for ((n, _), v) in FIELDS.iter().zip(r) {
            if !matches!(v, Val::Null) {
                let _ = write!(s, "{}{n}: {v:?}", if first { "" } else { ", " });
                first = false;
            }
        }
        s.push_str("}\n");
    }
    s
}

/// Compiles `text`, runs it both ways over `rows`; `Err` describes the
/// first disagreement.
fn check(text: &str, rows: &[Vec<Val>], now_ns: i64) -> Result<(), String> {
    let schema = schema();
    let params = params();
    let sinks: Vec<String> = SINKS.iter().map(|s| s.to_string()).collect();
    let ast = parse(text).unwrap_or_else(|d| {
        panic!(
            "generator bug: the pipeline does not parse\n{text}\n{}",
            d.locate("gen.mts", text, 0)
        )
    });
    let compiled = compile(
        &ast,
        &CompileInput {
            schema: &schema,
            params: &params,
            tables: &[],
            sinks: &sinks,
        },
    )
    .unwrap_or_else(|d| {
        panic!(
            "generator bug: the pipeline does not compile\n{text}\n{}",
            d.locate("gen.mts", text, 0)
        )
    });

    let mut syms = Interner::new(1 << 16);
    let warm_rows: Vec<Vec<Val>> = rows.iter().rev().cloned().collect();
    let warmup = fill(&schema, &warm_rows, &mut syms);
    let batch = fill(&schema, rows, &mut syms);
    let ctx = || {
        format!(
            "pipeline:\n{text}\nnow: {now_ns}\ninput:\n{}",
            show_rows(rows)
        )
    };
    // A panic in the chain is a disagreement too: report it with the case.
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_chain(&compiled.chain, &warmup, &batch, &mut syms, now_ns)
    }))
    .map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        format!("{}the compiled chain panicked: {msg}", ctx())
    })?;
    let world = World {
        fields: FIELDS,
        sinks: SINKS,
        tables: &[],
    };
    let want = reference(&world, &ast, rows, &params, now_ns);

    for (k, sink) in SINKS.iter().enumerate() {
        let g: Vec<&Rec> = got
            .out
            .iter()
            .filter(|(s, _)| *s == k)
            .map(|(_, r)| r)
            .collect();
        let mut w: Vec<(usize, usize, &Rec)> = want
            .emits
            .iter()
            .filter(|(s, ..)| *s == k)
            .map(|(_, st, ri, r)| (*st, *ri, r))
            .collect();
        // Reading: the chain runs a batch at a time, so a sink receives
        // stage by stage, each stage's records in input order.
        w.sort_by_key(|(st, ri, _)| (*st, *ri));
        for (i, (st, ri, wr)) in w.iter().enumerate() {
            match g.get(i) {
                Some(gr) if gr == wr => {}
                Some(gr) => {
                    return Err(format!(
                        "{}sink `{sink}`, record {i} (stage {st}, input #{ri}):\n  compiled:  {}\n  reference: {}",
                        ctx(),
                        show_rec(gr),
                        show_rec(wr)
                    ));
                }
                None => {
                    return Err(format!(
                        "{}sink `{sink}`: compiled emitted {} records, reference {}; first missing (stage {st}, input #{ri}): {}",
                        ctx(),
                        g.len(),
                        w.len(),
                        show_rec(wr)
                    ));
                }
            }
        }
        if g.len() > w.len() {
            return Err(format!(
                "{}sink `{sink}`: compiled emitted {} records, reference {}; first extra: {}",
                ctx(),
                g.len(),
                w.len(),
                show_rec(g[w.len()])
            ));
        }
    }
    let counts = [
        ("overflow", got.stats.overflow, want.overflow),
        ("div_zero", got.stats.div_zero, want.div_zero),
        ("filtered", got.stats.filtered, want.filtered),
    ];
    for (what, g, w) in counts {
        if g != w {
            return Err(format!("{}{what}: compiled {g}, reference {w}", ctx()));
        }
    }
    if got.stage_in != want.stage_in || got.stage_out != want.stage_out {
        return Err(format!(
            "{}stage_in/stage_out: compiled {:?}/{:?}, reference {:?}/{:?}",
            ctx(),
            got.stage_in,
            got.stage_out,
            want.stage_in,
            want.stage_out
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The generator.

/// Choices read from the proptest-generated tape; past its end every choice
/// is 0, and choice 0 is always the simplest option, so shrinking the tape
/// shrinks the pipeline.
struct Tape<'a> {
    data: &'a [u32],
    pos: usize,
}

impl Tape<'_> {
    fn next(&mut self) -> u32 {
        let v = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        v
    }

    fn pick(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        self.next() as usize % n
    }

    /// Index into `w` by weight; choice 0 is the first non-zero weight.
    fn weighted(&mut self, w: &[u32]) -> usize {
        let total: u32 = w.iter().sum();
        let mut x = self.next() % total;
        for (i, &wi) in w.iter().enumerate() {
            if x < wi {
                return i;
            }
            x -= wi;
        }
        unreachable!("x < total")
    }

    /// True with probability `pct`%; choice 0 is false.
    fn chance(&mut self, pct: u32) -> bool {
        self.next() % 100 >= 100 - pct
    }
}

/// What the generator asks for: the type classes that decide whether an
/// expression compiles (i64 versus u64 never does).
#[derive(Clone, Copy, Debug, PartialEq)]
enum C {
    Int,
    Float,
    Num,
    Bool,
    Text,
    Ts,
}

fn class(t: FT) -> C {
    match t {
        FT::I64 | FT::U64 => C::Int,
        FT::F64 => C::Float,
        FT::Bool => C::Bool,
        FT::Symbol | FT::Str => C::Text,
        FT::Timestamp => C::Ts,
    }
}

/// A generated expression: its text, its (best-guess) type, and its value
/// when the compiler sees it as an `i64` constant (a literal, a param, or a
/// negated constant).
struct G {
    s: String,
    ty: FT,
    int_const: Option<i128>,
}

impl G {
    fn new(s: String, ty: FT) -> G {
        G {
            s,
            ty,
            int_const: None,
        }
    }

    /// An integer leaf from the pools below.
    fn int(s: String) -> G {
        let int_const = int_value(&s);
        G {
            s,
            ty: FT::I64,
            int_const,
        }
    }

    fn nonneg(&self) -> bool {
        self.int_const.is_some_and(|v| v >= 0)
    }
}

/// The value of an integer literal, duration, int param or negated one, as
/// the pools below write them; `None` above `i64::MAX` (a u64).
fn int_value(s: &str) -> Option<i128> {
    let t: String = s
        .chars()
        .filter(|c| !matches!(c, ' ' | '(' | ')' | '_'))
        .collect();
    if let Some(p) = t.strip_prefix('$') {
        return params()
            .into_iter()
            .find(|(n, _)| n == p)
            .and_then(|(_, v)| match v {
                ParamValue::I64(v) => Some(v as i128),
                _ => None,
            });
    }
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.as_str()),
    };
    const UNITS: &[(&str, i128)] = &[
        ("ns", 1),
        ("us", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let (digits, mul) = UNITS
        .iter()
        .find_map(|(u, m)| t.strip_suffix(u).map(|d| (d, *m)))
        .unwrap_or((t, 1));
    let v = digits.parse::<i128>().ok()? * mul;
    if v > i64::MAX as i128 + i128::from(neg) {
        return None;
    }
    Some(if neg { -v } else { v })
}

const INTS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "5",
    "7",
    "10",
    "100",
    "1_000",
    "1000000007",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775806",
    "4294967296",
];
const U64S: &[&str] = &[
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551614",
    "12345678901234567890",
];
const DURATIONS: &[&str] = &["0ns", "1ns", "1us", "250ms", "1s", "5m", "2h"];
const NEG_INTS: &[&str] = &["-1", "-5", "-9223372036854775808", "-0", "-(7)", "- 3"];
const FLOATS: &[&str] = &[
    "0.0",
    "0.5",
    "1.5",
    "2.5",
    "3.0",
    "100.25",
    "1e308",
    "1.7976931348623157e308",
    "5e-324",
    "2.2250738585072014e-308",
    "1e-7",
    "9007199254740993.0",
    "1e16",
    "1e400", // infinity
    ".5",
    "2E+4",
];
const NEG_FLOATS: &[&str] = &["-0.0", "-1.5", "-2.5", "-1e400", "-1e308"];
/// Shared by literals and data, so equalities happen.
const STRINGS: &[&str] = &[
    "",
    "a",
    "abc",
    "ABC",
    "Abc",
    "ab",
    "b",
    "ß",
    "Straße",
    "STRASSE",
    "ΑΣ",
    "ας",
    "é",
    "É",
    "café",
    "日本",
    "😀",
    "a\"b",
    "x\\y",
    "tab\tx",
    "line\nbreak",
    "İ",
    "ﬁ",
];
const INT_PARAMS: &[&str] = &["$pi", "$pneg", "$pzero", "$pmax", "$pmin"];
const FLOAT_PARAMS: &[&str] = &["$pf", "$pnz", "$pbig"];
const TEXT_PARAMS: &[&str] = &["$ps", "$pe"];

fn quote(s: &str) -> String {
    let mut q = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\t' => q.push_str("\\t"),
            '\r' => q.push_str("\\r"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn is_plain_name(n: &str) -> bool {
    let mut cs = n.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&n)
}

struct Gen<'a> {
    t: Tape<'a>,
    /// The schema at the current stage (best-guess types; classes exact).
    env: Vec<(String, FT)>,
    fresh: u32,
}

impl Gen<'_> {
    fn name(&mut self, n: &str) -> String {
        if is_plain_name(n) && !self.t.chance(10) {
            n.to_string()
        } else {
            format!("`{n}`")
        }
    }

    fn fresh_name(&mut self) -> String {
        self.fresh += 1;
        match self.t.weighted(&[8, 1, 1]) {
            0 => format!("n{}", self.fresh),
            1 => format!("new field {}", self.fresh),
            _ => ["as", "to", "in", "sum"][self.t.pick(4)].to_string() + &self.fresh.to_string(),
        }
    }

    fn fields_of(&self, c: C) -> Vec<(String, FT)> {
        self.env
            .iter()
            .filter(|(_, t)| class(*t) == c)
            .cloned()
            .collect()
    }

    fn pool(&mut self, p: &[&str]) -> String {
        p[self.t.pick(p.len())].to_string()
    }

    fn leaf(&mut self, c: C) -> G {
        let fields = self.fields_of(c);
        let f = if fields.is_empty() { 0 } else { 6 };
        match c {
            C::Int => match self.t.weighted(&[f, 3, 1, 1, 1, 1]) {
                0 => {
                    let (n, t) = fields[self.t.pick(fields.len())].clone();
                    G::new(self.name(&n), t)
                }
                1 => G::int(self.pool(INTS)),
                // A bare u64 literal; above i64::MAX, converting it to i64
                // is an overflow per record (`regression_folded_u64_
                // conversion_counts_overflow`).
                2 => G::new(self.pool(U64S), FT::U64),
                3 => G::int(self.pool(DURATIONS)),
                4 => G::int(self.pool(INT_PARAMS)),
                _ => G::int(self.pool(NEG_INTS)),
            },
            C::Float => match self.t.weighted(&[f, 3, 1, 1]) {
                0 => {
                    let (n, t) = fields[self.t.pick(fields.len())].clone();
                    G::new(self.name(&n), t)
                }
                1 => G::new(self.pool(FLOATS), FT::F64),
                2 => G::new(self.pool(FLOAT_PARAMS), FT::F64),
                _ => G::new(self.pool(NEG_FLOATS), FT::F64),
            },
            C::Bool => match self.t.weighted(&[f, 2, 1]) {
                0 => {
                    let (n, t) = fields[self.t.pick(fields.len())].clone();
                    G::new(self.name(&n), t)
                }
                1 => G::new(["true", "false"][self.t.pick(2)].into(), FT::Bool),
                _ => G::new("$pb".into(), FT::Bool),
            },
            C::Text => match self.t.weighted(&[f, 3, 1]) {
                0 => {
                    let (n, t) = fields[self.t.pick(fields.len())].clone();
                    G::new(self.name(&n), t)
                }
                1 => G::new(quote(STRINGS[self.t.pick(STRINGS.len())]), FT::Str),
                _ => G::new(self.pool(TEXT_PARAMS), FT::Str),
            },
            C::Ts => match self.t.weighted(&[f, 1]) {
                0 => {
                    let (n, t) = fields[self.t.pick(fields.len())].clone();
                    G::new(self.name(&n), t)
                }
                _ => G::new("now()".into(), FT::Timestamp),
            },
            C::Num => unreachable!("resolved by gen"),
        }
    }

    fn any_class(&mut self) -> C {
        [C::Int, C::Float, C::Bool, C::Text, C::Ts][self.t.pick(5)]
    }

    fn arith_op(&mut self) -> &'static str {
        ["+", "-", "*", "/", "%"][self.t.pick(5)]
    }

    fn bool_or_null(&mut self, depth: u32) -> String {
        if self.t.chance(12) {
            "null".into()
        } else {
            self.ex(C::Bool, depth).s
        }
    }

    /// `op` applied to `a` and `b`, typed as the compiler types it.
    fn arith(&mut self, a: G, op: &str, b: G) -> G {
        let ty = if a.ty == FT::F64 || b.ty == FT::F64 {
            FT::F64
        } else if (a.ty, b.ty) == (FT::U64, FT::U64)
            || (a.ty == FT::U64 && b.nonneg())
            || (b.ty == FT::U64 && a.nonneg())
        {
            FT::U64
        } else {
            FT::I64
        };
        G::new(format!("({} {op} {})", a.s, b.s), ty)
    }

    fn call(&mut self, f: &str, args: &[String]) -> String {
        format!("{f}({})", args.join(", "))
    }

    fn min_max(&mut self, args: Vec<G>) -> G {
        let f = ["min", "max"][self.t.pick(2)];
        let ty = if args.iter().any(|a| a.ty == FT::F64) {
            FT::F64
        } else if args.iter().all(|a| a.ty == FT::Timestamp) {
            FT::Timestamp
        } else if args.iter().all(|a| a.ty == FT::U64) {
            FT::U64
        } else {
            FT::I64
        };
        let s: Vec<String> = args.into_iter().map(|a| a.s).collect();
        G::new(self.call(f, &s), ty)
    }

    /// `if(c, a, b)` or `if(c, b, a)`, where `a` has the class asked for and
    /// `b` is compatible with it; now and then one branch is `null` instead
    /// of `b`.
    fn if_expr(&mut self, depth: u32, a: G, b: G) -> G {
        // The condition is a bool expression; the literal `null` is refused.
        let c = self.ex(C::Bool, depth).s;
        let ty = if a.ty == b.ty {
            a.ty
        } else if a.ty == FT::F64 || b.ty == FT::F64 {
            FT::F64
        } else if class(a.ty) == C::Text {
            FT::Str
        } else {
            FT::I64
        };
        let (x, y) = match self.t.weighted(&[3, 3, 1, 1]) {
            0 => (a.s, b.s),
            1 => (b.s, a.s),
            2 => (a.s, "null".to_string()),
            _ => ("null".to_string(), a.s),
        };
        let ty = if x == "null" || y == "null" { a.ty } else { ty };
        G::new(self.call("if", &[c, x, y]), ty)
    }

    fn ex(&mut self, c: C, depth: u32) -> G {
        let c = if c == C::Num {
            if self.t.chance(35) { C::Float } else { C::Int }
        } else {
            c
        };
        if depth == 0 || self.t.pick(10) < 4 {
            let mut g = self.leaf(c);
            if self.t.chance(5) {
                g.s = format!("({})", g.s); // parentheses change nothing, constants included
            }
            return g;
        }
        let d = depth - 1;
        match c {
            C::Int => match self.t.weighted(&[4, 3, 1, 1, 2, 2, 1, 1, 2, 1]) {
                0 => {
                    let a = self.ex(C::Int, d);
                    let op = self.arith_op();
                    let b = self.ex(C::Int, d);
                    self.arith(a, op, b)
                }
                1 => {
                    // `seq + 1`, `hash(k) % 10`: a small literal beside anything.
                    let a = self.ex(C::Int, d);
                    let op = self.arith_op();
                    let b = G::int(self.pool(&["0", "1", "2", "3", "10", "-1", "$pi", "$pzero"]));
                    if self.t.chance(30) {
                        self.arith(b, op, a)
                    } else {
                        self.arith(a, op, b)
                    }
                }
                2 => {
                    let a = self.ex(C::Int, d);
                    let op = self.arith_op();
                    let n = G::new("null".into(), a.ty);
                    // `null / 0` is null, not a division by zero
                    // (`regression_null_dividend_by_zero`).
                    if self.t.chance(50) {
                        self.arith(n, op, a)
                    } else {
                        self.arith(a, op, n)
                    }
                }
                3 => {
                    let a = self.ex(C::Int, d);
                    // A negated constant folds (unless it overflows).
                    let int_const = a
                        .int_const
                        .map(|v| -v)
                        .filter(|v| i64::try_from(*v).is_ok());
                    G {
                        s: format!("(-{})", a.s),
                        ty: FT::I64,
                        int_const,
                    }
                }
                4 => {
                    let a = self.ex(C::Int, d);
                    let f = ["abs", "round", "floor", "ceil"][self.t.pick(4)];
                    // Of an integer constant, these are no longer a literal
                    // (`regression_rounded_constant_is_not_a_literal`).
                    G::new(self.call(f, &[a.s]), a.ty)
                }
                5 => {
                    let n = 2 + self.t.pick(2);
                    let args = (0..n).map(|_| self.ex(C::Int, d)).collect();
                    self.min_max(args)
                }
                6 => {
                    let a = self.ex(C::Text, d);
                    G::new(self.call("len", &[a.s]), FT::I64)
                }
                7 => {
                    let n = 1 + self.t.pick(3);
                    let args: Vec<String> = (0..n)
                        .map(|_| {
                            if self.t.chance(5) {
                                return self.pool(U64S);
                            }
                            let c = self.any_class();
                            self.ex(c, d).s
                        })
                        .collect();
                    G::new(self.call("hash", &args), FT::U64)
                }
                8 => {
                    let a = self.ex(C::Int, d);
                    let b = self.ex(C::Int, d);
                    self.if_expr(d, a, b)
                }
                _ => {
                    let a = self.ex(C::Ts, d);
                    let b = self.ex(C::Ts, d);
                    G::new(format!("({} - {})", a.s, b.s), FT::I64)
                }
            },
            C::Float => match self.t.weighted(&[4, 1, 1, 2, 2, 2]) {
                0 => {
                    let a = self.ex(C::Float, d);
                    let op = self.arith_op();
                    let b = self.ex(C::Num, d);
                    if self.t.chance(50) {
                        self.arith(b, op, a)
                    } else {
                        self.arith(a, op, b)
                    }
                }
                1 => {
                    let a = self.ex(C::Float, d);
                    let op = self.arith_op();
                    let n = G::new("null".into(), FT::F64);
                    if self.t.chance(50) {
                        self.arith(n, op, a)
                    } else {
                        self.arith(a, op, n)
                    }
                }
                2 => {
                    let a = self.ex(C::Float, d);
                    G::new(format!("(-{})", a.s), FT::F64)
                }
                3 => {
                    let a = self.ex(C::Float, d);
                    let f = ["abs", "round", "floor", "ceil"][self.t.pick(4)];
                    G::new(self.call(f, &[a.s]), FT::F64)
                }
                4 => {
                    let n = 1 + self.t.pick(2);
                    let mut args: Vec<G> = (0..n).map(|_| self.ex(C::Num, d)).collect();
                    let at = self.t.pick(n + 1);
                    let f = self.ex(C::Float, d);
                    args.insert(at, f);
                    self.min_max(args)
                }
                _ => {
                    let a = self.ex(C::Float, d);
                    let b = self.ex(C::Num, d);
                    self.if_expr(d, a, b)
                }
            },
            C::Bool => match self.t.weighted(&[5, 3, 1, 2, 3, 2, 3, 2, 1]) {
                0 => {
                    let ca = if self.t.chance(20) { C::Ts } else { C::Num };
                    let cb = if self.t.chance(20) { C::Ts } else { C::Num };
                    let a = self.ex(ca, d);
                    let b = if self.t.chance(10) {
                        G::new(self.pool(U64S), FT::U64) // compared exactly, never converted
                    } else {
                        self.ex(cb, d)
                    };
                    let op = ["==", "!=", "<", "<=", ">", ">="][self.t.pick(6)];
                    G::new(format!("({} {op} {})", a.s, b.s), FT::Bool)
                }
                1 => {
                    let a = self.ex(C::Text, d);
                    let b = self.ex(C::Text, d);
                    let op = ["==", "!=", "<", "<=", ">", ">="][self.t.pick(6)];
                    G::new(format!("({} {op} {})", a.s, b.s), FT::Bool)
                }
                2 => {
                    let a = self.ex(C::Bool, d);
                    let b = self.ex(C::Bool, d);
                    let op = ["==", "!="][self.t.pick(2)];
                    G::new(format!("({} {op} {})", a.s, b.s), FT::Bool)
                }
                3 => {
                    let c = self.any_class();
                    let a = self.ex(c, d);
                    let op = ["==", "!=", "==", "!=", "<", ">="][self.t.pick(6)];
                    let s = if self.t.chance(30) {
                        format!("(null {op} {})", a.s)
                    } else {
                        format!("({} {op} null)", a.s)
                    };
                    G::new(s, FT::Bool)
                }
                4 => {
                    let a = self.bool_or_null(d);
                    let b = self.bool_or_null(d);
                    let op = ["and", "or"][self.t.pick(2)];
                    G::new(format!("({a} {op} {b})"), FT::Bool)
                }
                5 => {
                    let a = self.bool_or_null(d);
                    G::new(format!("(not {a})"), FT::Bool)
                }
                6 => self.in_list(d),
                7 => {
                    let a = self.ex(C::Text, d);
                    let b = self.ex(C::Text, d);
                    let f = ["starts_with", "contains"][self.t.pick(2)];
                    G::new(self.call(f, &[a.s, b.s]), FT::Bool)
                }
                _ => {
                    let a = self.ex(C::Bool, d);
                    let b = self.ex(C::Bool, d);
                    self.if_expr(d, a, b)
                }
            },
            C::Text => match self.t.weighted(&[2, 1]) {
                0 => {
                    let a = self.ex(C::Text, d);
                    let f = ["lower", "upper"][self.t.pick(2)];
                    G::new(self.call(f, &[a.s]), FT::Str)
                }
                _ => {
                    let a = self.ex(C::Text, d);
                    let b = self.ex(C::Text, d);
                    self.if_expr(d, a, b)
                }
            },
            C::Ts => match self.t.weighted(&[3, 1, 1]) {
                0 => {
                    let a = self.ex(C::Ts, d);
                    let i = self.ex(C::Int, d);
                    let s = match self.t.pick(3) {
                        0 => format!("({} + {})", a.s, i.s),
                        1 => format!("({} + {})", i.s, a.s),
                        _ => format!("({} - {})", a.s, i.s),
                    };
                    G::new(s, FT::Timestamp)
                }
                1 => {
                    let n = 2 + self.t.pick(2);
                    let args = (0..n).map(|_| self.ex(C::Ts, d)).collect();
                    self.min_max(args)
                }
                _ => {
                    let a = self.ex(C::Ts, d);
                    let b = self.ex(C::Ts, d);
                    self.if_expr(d, a, b)
                }
            },
            C::Num => unreachable!("resolved above"),
        }
    }

    /// `x [not] in [items]` with constant items of a class `x` accepts.
    fn in_list(&mut self, d: u32) -> G {
        let c = [C::Num, C::Num, C::Ts, C::Text, C::Bool][self.t.pick(5)];
        let x = self.ex(c, d);
        let n = self.t.pick(5);
        let items: Vec<String> = (0..n)
            .map(|_| match c {
                C::Num | C::Ts => match self.t.weighted(&[4, 1, 2, 1, 1, 1]) {
                    0 => self.pool(INTS),
                    1 => self.pool(U64S),
                    2 => self.pool(FLOATS),
                    3 => self.pool(&["-1", "-5", "-9223372036854775808", "-0.0", "-2.5"]),
                    4 => self.pool(&["$pi", "$pneg", "$pzero", "$pmax", "$pmin", "$pf", "$pnz"]),
                    _ => "(3)".to_string(),
                },
                C::Text => match self.t.weighted(&[4, 1]) {
                    0 => quote(STRINGS[self.t.pick(STRINGS.len())]),
                    _ => self.pool(TEXT_PARAMS),
                },
                _ => self.pool(&["true", "false", "$pb"]),
            })
            .collect();
        let not = if self.t.chance(25) { "not " } else { "" };
        G::new(
            format!("({} {not}in [{}])", x.s, items.join(", ")),
            FT::Bool,
        )
    }

    fn any_expr(&mut self) -> G {
        let c = [C::Int, C::Float, C::Bool, C::Text, C::Ts, C::Num][self.t.pick(6)];
        self.ex(c, MAX_DEPTH)
    }

    fn cond(&mut self) -> String {
        if self.t.chance(3) {
            "null".into()
        } else {
            self.ex(C::Bool, MAX_DEPTH).s
        }
    }

    fn sink(&mut self) -> String {
        let s = SINKS[self.t.pick(SINKS.len())];
        self.name(s)
    }

    /// One stage (not `to`), updating `env` to its output schema.
    fn stage(&mut self) -> String {
        let n = self.env.len();
        let op = self.t.weighted(&[
            4,
            6,
            if n > 0 { 2 } else { 0 },
            if n > 0 { 2 } else { 0 },
            if n > 0 { 2 } else { 0 },
            3,
            2,
        ]);
        match op {
            0 => format!("filter {}", self.cond()),
            1 => {
                let k = 1 + self.t.pick(3);
                let mut parts = Vec::new();
                for _ in 0..k {
                    let e = self.any_expr();
                    let target = if !self.env.is_empty() && self.t.chance(30) {
                        self.env[self.t.pick(self.env.len())].0.clone()
                    } else {
                        self.fresh_name()
                    };
                    let rendered = self.name(&target);
                    parts.push(format!("{rendered} = {}", e.s));
                    match self.env.iter_mut().find(|(f, _)| *f == target) {
                        Some(b) => b.1 = e.ty,
                        None => self.env.push((target, e.ty)),
                    }
                }
                format!("eval {}", parts.join(", "))
            }
            2 => {
                let mut idx: Vec<usize> = (0..n).collect();
                let k = 1 + self.t.pick(n);
                let mut chosen = Vec::new();
                for _ in 0..k {
                    chosen.push(idx.remove(self.t.pick(idx.len())));
                }
                let names: Vec<String> = chosen
                    .iter()
                    .map(|&i| {
                        let f = self.env[i].0.clone();
                        self.name(&f)
                    })
                    .collect();
                self.env = chosen.iter().map(|&i| self.env[i].clone()).collect();
                format!("select {}", names.join(", "))
            }
            3 => {
                // Usually a few fields; now and then all of them.
                let k = if self.t.chance(5) {
                    n
                } else {
                    1 + self.t.pick(n.min(3))
                };
                let mut names = Vec::new();
                for _ in 0..k {
                    let i = self.t.pick(self.env.len());
                    let (f, _) = self.env.remove(i);
                    names.push(self.name(&f));
                }
                format!("drop {}", names.join(", "))
            }
            4 => {
                let k = 1 + self.t.pick(2);
                let mut pairs = Vec::new();
                for _ in 0..k {
                    let i = self.t.pick(self.env.len());
                    let from = self.env[i].0.clone();
                    let to = if self.t.chance(10) {
                        from.clone()
                    } else {
                        self.fresh_name()
                    };
                    pairs.push(format!("{} as {}", self.name(&from), self.name(&to)));
                    self.env[i].0 = to;
                }
                format!("rename {}", pairs.join(", "))
            }
            5 => {
                let s = self.sink();
                format!("route {s} when {}", self.cond())
            }
            _ => format!("tee {}", self.sink()),
        }
    }

    fn pipeline(&mut self) -> String {
        let n = self.t.pick(7);
        let mut text = String::new();
        if self.t.chance(5) {
            text.push_str("# generated\n");
        }
        for k in 0..=n {
            let label = format!("l{}: ", k + 1);
            if k == 0 {
                if self.t.chance(15) {
                    text.push_str(&label);
                }
            } else {
                let sep = match self.t.weighted(&[6, 1, 1, 1, 1]) {
                    0 => " | ".to_string(),
                    1 => "\n| ".to_string(),
                    2 => " # a comment\n| ".to_string(),
                    3 => format!("\n{label}"),
                    _ => format!(" | {label}"),
                };
                text.push_str(&sep);
            }
            if k < n {
                let s = self.stage();
                text.push_str(&s);
            } else {
                let mut sinks: Vec<&str> = SINKS.to_vec();
                let m = 1 + self.t.weighted(&[3, 2, 1]);
                let mut names = Vec::new();
                for _ in 0..m {
                    let s = sinks.remove(self.t.pick(sinks.len()));
                    names.push(self.name(s));
                }
                // `to out` is the simplest ending.
                if names.len() == 1 && self.t.pick(2) == 0 {
                    names = vec!["out".into()];
                }
                let _ = write!(text, "to {}", names.join(", "));
            }
        }
        text
    }
}

/// Expressions nest at most this deep below the stage (leaves at 0).
const MAX_DEPTH: u32 = 4;

fn generate(tape: &[u32]) -> String {
    generate_with_schema(tape).0
}

/// The pipeline and the schema the generator believes reaches its `to`.
fn generate_with_schema(tape: &[u32]) -> (String, Vec<(String, FT)>) {
    let mut g = Gen {
        t: Tape { data: tape, pos: 0 },
        env: FIELDS.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
        fresh: 0,
    };
    let text = g.pipeline();
    (text, g.env)
}

// ---------------------------------------------------------------------------
// Random records.

fn value(t: FT) -> BoxedStrategy<Val> {
    let strings = || prop::sample::select(STRINGS.to_vec()).prop_map(|s| Val::Str(s.to_string()));
    match t {
        FT::I64 => prop_oneof![
            2 => Just(Val::Null),
            4 => prop::sample::select(vec![
                0i64, 1, -1, 2, 3, -7, 10, 100, i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1,
                1 << 53, (1 << 53) + 1, 1 << 32, -(1 << 32), 1_000_000_007,
            ])
            .prop_map(Val::I64),
            3 => (-20i64..20).prop_map(Val::I64),
            1 => any::<i64>().prop_map(Val::I64),
        ]
        .boxed(),
        FT::U64 => prop_oneof![
            2 => Just(Val::Null),
            4 => prop::sample::select(vec![
                0u64, 1, 2, 3, 5, 10, i64::MAX as u64, (i64::MAX as u64) + 1, u64::MAX,
                u64::MAX - 1, (1 << 53) + 1, 1 << 32,
            ])
            .prop_map(Val::U64),
            3 => (0u64..20).prop_map(Val::U64),
            1 => any::<u64>().prop_map(Val::U64),
        ]
        .boxed(),
        FT::F64 => prop_oneof![
            2 => Just(Val::Null),
            5 => prop::sample::select(vec![
                f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 0.5, 1.5, 2.5, -2.5, 3.0,
                -7.0, 1e308, -1e308, f64::MAX, f64::MIN, f64::MIN_POSITIVE, 5e-324, 1e16,
                9007199254740992.0, i64::MAX as f64, u64::MAX as f64, 100.25,
            ])
            .prop_map(Val::F64),
            2 => (-100.0f64..100.0).prop_map(Val::F64),
            1 => any::<f64>().prop_map(Val::F64),
        ]
        .boxed(),
        FT::Bool => prop_oneof![
            1 => Just(Val::Null),
            2 => any::<bool>().prop_map(Val::Bool),
        ]
        .boxed(),
        FT::Symbol | FT::Str => prop_oneof![
            1 => Just(Val::Null),
            4 => strings(),
            1 => "[a-cA-C\u{e9}\u{3a3}]{0,4}".prop_map(Val::Str),
        ]
        .boxed(),
        FT::Timestamp => prop_oneof![
            2 => Just(Val::Null),
            4 => prop::sample::select(vec![
                0i64, 1, -1, 1_000_000_000, 1_732_492_800_000_000_000, i64::MAX, i64::MIN,
                i64::MAX - 1_000_000_000,
            ])
            .prop_map(Val::Ts),
            1 => any::<i64>().prop_map(Val::Ts),
        ]
        .boxed(),
    }
}

fn rows() -> impl Strategy<Value = Vec<Vec<Val>>> {
    let row: Vec<BoxedStrategy<Val>> = FIELDS.iter().map(|(_, t)| value(*t)).collect();
    prop::collection::vec(row, 1..=BATCH_MAX)
}

fn now_ns() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => Just(1_732_492_800_000_000_000i64),
        1 => Just(i64::MAX),
        1 => Just(0i64),
        1 => any::<i64>(),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: Some(Box::new(
            prop::test_runner::FileFailurePersistence::Direct("proptest-regressions/differential.txt"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn compiled_chain_matches_reference(
        tape in prop::collection::vec(any::<u32>(), 0..600),
        rows in rows(),
        now in now_ns(),
    ) {
        let text = generate(&tape);
        if let Err(e) = check(&text, &rows, now) {
            prop_assert!(false, "{}", e);
        }
    }
}

// ---------------------------------------------------------------------------
// Fixed cases: the harness itself, and regressions found by the generator.

fn row(vals: &[(&str, Val)]) -> Vec<Val> {
    let mut r = vec![Val::Null; FIELDS.len()];
    for (n, v) in vals {
        let i = FIELDS
            .iter()
            .position(|(f, _)| f == n)
            .unwrap_or_else(|| panic!("no field {n}"));
        r[i] = v.clone();
    }
    r
}

#[test]
fn harness_agrees_on_a_hand_written_pipeline() {
    let text = "hot: filter f1 > $pf | eval n = f1 * i1, d = u1 - 5, h = hash(y1, i1) % 10 \
                | route side when n > 100.0 | tee alerts | to out";
    let rows = [
        row(&[
            ("f1", Val::F64(5.0)),
            ("i1", Val::I64(10)),
            ("u1", Val::U64(3)),
        ]),
        row(&[
            ("f1", Val::F64(50.0)),
            ("i1", Val::I64(10)),
            ("y1", Val::Str("abc".into())),
        ]),
        row(&[("f1", Val::F64(f64::NAN)), ("i1", Val::I64(1))]),
        row(&[("f1", Val::F64(3.0)), ("u1", Val::U64(9))]),
    ];
    check(text, &rows, 0).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn generator_knows_what_it_generates() {
    // A fixed sweep of tapes, independent of proptest's seed: every
    // pipeline compiles, and the schema reaching `to` has the names and
    // type classes the generator believes (the classes are what keep the
    // generated expressions well typed and the exclusions effective).
    let schema = schema();
    let params = params();
    let sinks: Vec<String> = SINKS.iter().map(|s| s.to_string()).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..2000 {
        let tape: Vec<u32> = (0..400)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u32
            })
            .collect();
        let (text, believed) = generate_with_schema(&tape);
        let ast = parse(&text).unwrap_or_else(|d| panic!("{}", d.locate("gen.mts", &text, 0)));
        let c = compile(
            &ast,
            &CompileInput {
                schema: &schema,
                params: &params,
                tables: &[],
                sinks: &sinks,
            },
        )
        .unwrap_or_else(|d| panic!("{}", d.locate("gen.mts", &text, 0)));
        let actual = &c.chain.stages.last().expect("`to`").input.fields;
        let classes = |v: &[(String, FT)]| -> Vec<(String, C)> {
            v.iter().map(|(n, t)| (n.clone(), class(*t))).collect()
        };
        assert_eq!(classes(actual), classes(&believed), "{text}");
        check(&text, &[row(&[])], 0).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Runs each pipeline over `rows`; panics listing every disagreement.
fn check_all(texts: &[&str], rows: &[Vec<Val>]) {
    let failed: Vec<String> = texts
        .iter()
        .filter_map(|t| check(t, rows, 0).err())
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

/// Integer `/` and `%` with a `null` dividend and a zero divisor: null and
/// not counted (PIPELINE.md §5.3, "Arithmetic with a null operand is null,
/// and is not counted"). To tell `/ 0` from `i64::MIN / -1`, the chain
/// counts rows with a zero divisor and a valid dividend, but `x_valid`
/// (exec.rs) answers "always valid" for every constant, `Const::Null`
/// included: it counts a division by zero the kernel never refused, and
/// `overflow += refused - by_zero` underflows. Debug and test builds panic
/// ("attempt to subtract with overflow", exec.rs, `Instr::Arith`, `NumTy::I64`);
/// release builds count one `div_zero` too many and wrap `overflow` below
/// zero. The dividend is also a null constant when it is a u64 literal
/// folded to null (`18446744073709551615 / i1`). Excluded from the
/// generator: `null` on the left of integer `/` and `%` (and bare u64
/// literals, see below).
#[test]
fn regression_null_dividend_by_zero() {
    let rows = [row(&[("i1", Val::I64(0))]), row(&[("i1", Val::I64(2))])];
    check_all(
        &[
            "eval x = null / i1 | to out",
            "eval x = null % i1 | to out",
            "eval x = null % 0 | to out",
            "eval x = 18446744073709551615 / i1 | to out",
        ],
        &rows,
    );
}

/// A u64 constant above `i64::MAX` converted to `i64` is null and counted
/// as overflow (PIPELINE.md §5.3: "a u64 → i64 conversion above i64::MAX
/// ... produce null. They are counted per shard as overflow"). The compiler
/// folds the conversion of a constant into a null constant
/// (`Compiler::cast`) and nothing counts it: `x` is null for every record,
/// as expected, but `overflow` stays 0 instead of 1 per record. Excluded
/// from the generator: u64 literals are written `(L + 0)` wherever they may
/// be converted (they stay bare in comparisons, `hash` and lists).
#[test]
fn regression_folded_u64_conversion_counts_overflow() {
    let rows = [row(&[
        ("i1", Val::I64(1)),
        ("t1", Val::Ts(5)),
        ("b1", Val::Bool(true)),
    ])];
    check_all(
        &[
            "eval x = i1 + 18446744073709551615 | to out",
            "eval x = t1 + 18446744073709551615 | to out",
            "eval x = -18446744073709551615 | to out",
            "eval x = if(b1, i1, 18446744073709551615) | to out",
            "eval x = min(i1, 18446744073709551615) | to out",
        ],
        &rows,
    );
}

/// Only a non-negative integer *literal* takes the type of a `u64` operand
/// (PIPELINE.md §5.3); `round(0)` is a call, so `u1 + round(0)` is `i64`
/// arithmetic and a `u1` above `i64::MAX` gives null, counted as overflow.
/// The bug: the compiler returned the argument of `round`, `floor` and
/// `ceil` of an integer unchanged, so a constant stayed a constant and the
/// literal rule applied (`x` came out as `u64` 18446744073709551615; a
/// negated one folded too, and `u1 in [round(5)]` compiled). Now a call's
/// result is never a literal (`Compiler::not_literal`); the generator
/// wraps integer constants in all four of `abs`, `round`, `floor`, `ceil`.
#[test]
fn regression_rounded_constant_is_not_a_literal() {
    let rows = [row(&[("u1", Val::U64(u64::MAX))])];
    check_all(
        &[
            "eval x = u1 + round(0) | to out",
            "eval x = u1 + floor($pi) | to out",
            "eval x = ceil(3) * u1 | to out",
            "eval x = u1 + -round(-1) | to out",
        ],
        &rows,
    );
}

/// `abs` of a `u64` literal is the same number but no longer a literal:
/// negating it converts to `i64` first, so `2^63` overflows (counted, null)
/// where the literal `-9223372036854775808` folds to `i64::MIN`.
#[test]
fn regression_abs_of_constant_is_not_a_literal() {
    let rows = [row(&[("i1", Val::Null)]), row(&[("i1", Val::I64(3))])];
    check_all(
        &[
            "eval n = (-abs(9223372036854775808)) / i1 | to out",
            "eval n = -abs(9223372036854775807) | to out",
            "eval n = -9223372036854775808 | to out",
            "eval n = u1 + abs(1) | to out",
        ],
        &rows,
    );
}
