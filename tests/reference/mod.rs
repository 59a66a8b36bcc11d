//! The language's reference interpreter (docs/PIPELINE.md, SPEC §4): a
//! deliberately simple tree walker, one record at a time through every
//! stage, sharing no code with the compiler. `tests/differential.rs` holds
//! the compiled chains to it on generated pipelines; the mutation storm
//! checks every output record against it under the generation that
//! computed it.
#![allow(dead_code)]

use mutstream::codec::FieldType as FT;
use mutstream::config::ParamValue;
use mutstream::pipeline::ast::{BinOp, Expr, ExprKind, Lit, Op, Pipeline};
use std::cmp::Ordering;
use std::fmt::Write as _;
use xxhash_rust::xxh3::xxh3_64;

/// The input schema, the sinks and the set tables (`in @table`) a run
/// sees.
pub struct World<'a> {
    pub fields: &'a [(&'a str, FT)],
    pub sinks: &'a [&'a str],
    /// Set tables: name, key type, keys.
    pub tables: &'a [(String, FT, Vec<Val>)],
}

/// A value as the reference sees it. Symbols and strings are both `Str`.
#[derive(Clone, Debug)]
pub enum Val {
    Null,
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
    Str(String),
    Ts(i64),
}

impl PartialEq for Val {
    /// Floats bitwise (so `0.0 != -0.0`), but any NaN equals any NaN.
    fn eq(&self, o: &Val) -> bool {
        match (self, o) {
            (Val::Null, Val::Null) => true,
            (Val::I64(a), Val::I64(b)) | (Val::Ts(a), Val::Ts(b)) => a == b,
            (Val::U64(a), Val::U64(b)) => a == b,
            (Val::F64(a), Val::F64(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Str(a), Val::Str(b)) => a == b,
            _ => false,
        }
    }
}

/// Tags an integer with its static type (timestamps are `i64` underneath).
pub fn retag(v: Val, t: FT) -> Val {
    match (v, t) {
        (Val::I64(x), FT::Timestamp) => Val::Ts(x),
        (Val::Ts(x), FT::I64) => Val::I64(x),
        (v, _) => v,
    }
}

/// A record leaving the pipeline: (name, type, value) per field.
pub type Rec = Vec<(String, FT, Val)>;

pub fn show_rec(r: &Rec) -> String {
    let mut s = String::from("{");
    for (i, (n, t, v)) in r.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{n}:{t}={v:?}");
    }
    s.push('}');
    s
}

// ---------------------------------------------------------------------------
// The reference interpreter.

/// Evaluates expressions one record at a time and counts what SPEC §4 says
/// is counted. Every expression is computed in full (no short circuit), as
/// docs/PIPELINE.md §5.6 requires, so counts include untaken branches.
pub struct Reference<'a> {
    tables: &'a [(String, FT, Vec<Val>)],
    params: &'a [(String, ParamValue)],
    now_ns: i64,
    overflow: u64,
    div_zero: u64,
}

/// A static type (`None` for the literal `null`) and a value.
pub type Typed = (Option<FT>, Val);

pub fn is_num(t: FT) -> bool {
    matches!(t, FT::I64 | FT::U64 | FT::F64)
}

pub fn is_text(t: FT) -> bool {
    matches!(t, FT::Symbol | FT::Str)
}

pub fn lit(l: &Lit) -> Option<(FT, Val)> {
    Some(match l {
        Lit::Int(v) => match i64::try_from(*v) {
            Ok(v) => (FT::I64, Val::I64(v)),
            Err(_) => (FT::U64, Val::U64(*v)),
        },
        Lit::Float(v) => (FT::F64, Val::F64(*v)),
        Lit::Str(s) => (FT::Str, Val::Str(s.clone())),
        Lit::Bool(b) => (FT::Bool, Val::Bool(*b)),
        Lit::Duration(ns) => (FT::I64, Val::I64(*ns)),
        Lit::Null => return None,
    })
}

pub fn param(params: &[(String, ParamValue)], p: &str) -> (FT, Val) {
    let v = &params
        .iter()
        .find(|(n, _)| n == p)
        .unwrap_or_else(|| panic!("reference: unknown param ${p}"))
        .1;
    match v {
        ParamValue::I64(x) => (FT::I64, Val::I64(*x)),
        ParamValue::F64(x) => (FT::F64, Val::F64(*x)),
        ParamValue::Bool(x) => (FT::Bool, Val::Bool(*x)),
        ParamValue::Str(x) => (FT::Str, Val::Str(x.clone())),
    }
}

/// The constant an expression denotes, if it is one: a literal, a `$param`
/// or a negated constant (PIPELINE.md §5.2: negated literals fold, and
/// `-9223372036854775808` is `i64::MIN`; a negation that overflows does not
/// fold and is computed, so it is null and counted).
///
/// Reading: §5.8 makes literals and params alike "constants of the
/// generation", so a non-negative `$param` (or `-$param`) takes a `u64`
/// operand's type as a literal does (§5.3). A call such as `round(5)` is
/// not a literal.
pub fn constant(e: &Expr, params: &[(String, ParamValue)]) -> Option<(FT, Val)> {
    match &e.kind {
        ExprKind::Lit(l) => lit(l),
        ExprKind::Param(p) => Some(param(params, p)),
        ExprKind::Neg(x) => match constant(x, params)? {
            (FT::I64, Val::I64(v)) => v.checked_neg().map(|v| (FT::I64, Val::I64(v))),
            (FT::U64, Val::U64(v)) if v == 1 << 63 => Some((FT::I64, Val::I64(i64::MIN))),
            (FT::F64, Val::F64(v)) => Some((FT::F64, Val::F64(-v))),
            _ => None,
        },
        _ => None,
    }
}

pub fn nonneg_int_constant(e: &Expr, params: &[(String, ParamValue)]) -> bool {
    matches!(constant(e, params), Some((FT::I64, Val::I64(v))) if v >= 0)
}

pub fn to_f64(v: &Val) -> f64 {
    match *v {
        Val::I64(x) | Val::Ts(x) => x as f64,
        Val::U64(x) => x as f64,
        Val::F64(x) => x,
        ref v => panic!("reference: {v:?} is not a number"),
    }
}

pub fn to_i128(v: &Val) -> i128 {
    match *v {
        Val::I64(x) | Val::Ts(x) => x as i128,
        Val::U64(x) => x as i128,
        ref v => panic!("reference: {v:?} is not an integer"),
    }
}

pub fn text(v: &Val) -> &str {
    match v {
        Val::Str(s) => s,
        v => panic!("reference: {v:?} is not text"),
    }
}

pub fn cmp_holds(op: BinOp, o: Option<Ordering>) -> bool {
    let Some(o) = o else {
        return false; // NaN compares false, `!=` included
    };
    match op {
        BinOp::Eq => o == Ordering::Equal,
        BinOp::Ne => o != Ordering::Equal,
        BinOp::Lt => o == Ordering::Less,
        BinOp::Le => o != Ordering::Greater,
        BinOp::Gt => o == Ordering::Greater,
        BinOp::Ge => o != Ordering::Less,
        _ => unreachable!("comparison operators only"),
    }
}

pub fn kleene(v: &Val) -> Option<bool> {
    match v {
        Val::Null => None,
        Val::Bool(b) => Some(*b),
        v => panic!("reference: {v:?} is not a bool"),
    }
}

pub fn from_kleene(b: Option<bool>) -> Val {
    b.map_or(Val::Null, Val::Bool)
}

impl Reference<'_> {
    fn overflowed(&mut self) -> Val {
        self.overflow += 1;
        Val::Null
    }

    fn by_zero(&mut self) -> Val {
        self.div_zero += 1;
        Val::Null
    }

    /// Converts a value to the representation `to` (§5.3): integers to
    /// `f64` freely, `u64` ↔ `i64` with a check (null and counted as
    /// overflow when out of range), timestamps as their `i64` ns.
    fn conv(&mut self, v: Val, to: FT) -> Val {
        match (v, to) {
            (Val::Null, _) => Val::Null,
            (Val::I64(a) | Val::Ts(a), FT::I64 | FT::Timestamp) => Val::I64(a),
            (Val::I64(a) | Val::Ts(a), FT::F64) => Val::F64(a as f64),
            (Val::I64(a), FT::U64) => match u64::try_from(a) {
                Ok(x) => Val::U64(x),
                Err(_) => self.overflowed(),
            },
            (Val::U64(a), FT::U64) => Val::U64(a),
            (Val::U64(a), FT::F64) => Val::F64(a as f64),
            (Val::U64(a), FT::I64 | FT::Timestamp) => match i64::try_from(a) {
                Ok(x) => Val::I64(x),
                Err(_) => self.overflowed(),
            },
            (Val::F64(a), FT::F64) => Val::F64(a),
            (v, t) => panic!("reference: no conversion of {v:?} to {t}"),
        }
    }

    fn expr(&mut self, e: &Expr, env: &[(String, FT)], vals: &[Val]) -> Typed {
        match &e.kind {
            ExprKind::Lit(l) => match lit(l) {
                Some((t, v)) => (Some(t), v),
                None => (None, Val::Null),
            },
            ExprKind::Field(n) => {
                let i = env
                    .iter()
                    .position(|(f, _)| f == n)
                    .unwrap_or_else(|| panic!("reference: unknown field {n}"));
                (Some(env[i].1), vals[i].clone())
            }
            ExprKind::Param(p) => {
                let (t, v) = param(self.params, p);
                (Some(t), v)
            }
            ExprKind::Neg(x) => {
                if let Some((t, v)) = constant(e, self.params) {
                    return (Some(t), v);
                }
                let (t, v) = self.expr(x, env, vals);
                match t {
                    None => (None, Val::Null),
                    Some(FT::F64) => match v {
                        Val::F64(a) => (Some(FT::F64), Val::F64(-a)),
                        _ => (Some(FT::F64), Val::Null),
                    },
                    // A u64 operand is first converted to i64 with the check.
                    Some(FT::I64 | FT::U64) => {
                        let v = self.conv(v, FT::I64);
                        let r = match v {
                            Val::I64(a) => match a.checked_neg() {
                                Some(r) => Val::I64(r),
                                None => self.overflowed(),
                            },
                            _ => Val::Null,
                        };
                        (Some(FT::I64), r)
                    }
                    Some(t) => panic!("reference: cannot negate {t}"),
                }
            }
            ExprKind::Not(x) => {
                let (_, v) = self.expr(x, env, vals);
                (Some(FT::Bool), from_kleene(kleene(&v).map(|b| !b)))
            }
            ExprKind::Binary(op, l, r) => match op {
                BinOp::And | BinOp::Or => {
                    let (_, a) = self.expr(l, env, vals);
                    let (_, b) = self.expr(r, env, vals);
                    let (a, b) = (kleene(&a), kleene(&b));
                    let v = if *op == BinOp::And {
                        match (a, b) {
                            (Some(false), _) | (_, Some(false)) => Some(false),
                            (Some(true), Some(true)) => Some(true),
                            _ => None,
                        }
                    } else {
                        match (a, b) {
                            (Some(true), _) | (_, Some(true)) => Some(true),
                            (Some(false), Some(false)) => Some(false),
                            _ => None,
                        }
                    };
                    (Some(FT::Bool), from_kleene(v))
                }
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => (
                    Some(FT::Bool),
                    Val::Bool(self.compare(*op, l, r, env, vals)),
                ),
                _ => self.arith(*op, l, r, env, vals),
            },
            ExprKind::Call(f, args) => self.call(&f.name, args, env, vals),
            ExprKind::InList(x, items) => {
                let (t, v) = self.expr(x, env, vals);
                let t = t.expect("reference: `null in [...]` does not compile");
                let items: Vec<(FT, Val)> = items
                    .iter()
                    .map(|it| {
                        constant(it, self.params).expect("reference: list items are constants")
                    })
                    .collect();
                (Some(FT::Bool), Val::Bool(in_list(t, &v, &items)))
            }
            ExprKind::InTable(x, t) => {
                // Membership in a set table: its keys, as a list of the
                // table's key type.
                let (xt, v) = self.expr(x, env, vals);
                let xt = xt.expect("reference: `null in @t` does not compile");
                let (_, kt, keys) = self
                    .tables
                    .iter()
                    .find(|(n, _, _)| *n == t.name)
                    .unwrap_or_else(|| panic!("reference: unknown table @{}", t.name));
                let items: Vec<(FT, Val)> = keys.iter().map(|k| (*kt, k.clone())).collect();
                (Some(FT::Bool), Val::Bool(in_list(xt, &v, &items)))
            }
        }
    }

    fn arith(
        &mut self,
        op: BinOp,
        l: &Expr,
        r: &Expr,
        env: &[(String, FT)],
        vals: &[Val],
    ) -> Typed {
        let (lt, lv) = self.expr(l, env, vals);
        let (rt, rv) = self.expr(r, env, vals);
        // `null` takes the type of the other operand.
        let (mut a, mut b) = match (lt, rt) {
            (Some(a), Some(b)) => (a, b),
            (Some(t), None) | (None, Some(t)) => (t, t),
            (None, None) => panic!("reference: `null {} null` does not compile", op.symbol()),
        };
        // A non-negative integer literal takes the type of a u64 operand.
        if (a, b) == (FT::U64, FT::I64) && nonneg_int_constant(r, self.params) {
            b = FT::U64;
        }
        if (a, b) == (FT::I64, FT::U64) && nonneg_int_constant(l, self.params) {
            a = FT::U64;
        }
        use FT::*;
        let (rep, out) = match (a, b) {
            (Timestamp, Timestamp) if op == BinOp::Sub => (I64, I64),
            (Timestamp, I64 | U64) | (I64 | U64, Timestamp) if op == BinOp::Add => (I64, Timestamp),
            (Timestamp, I64 | U64) if op == BinOp::Sub => (I64, Timestamp),
            (F64, I64 | U64 | F64) | (I64 | U64, F64) => (F64, F64),
            (I64, I64 | U64) | (U64, I64) => (I64, I64),
            (U64, U64) => (U64, U64),
            (a, b) => panic!("reference: `{}` on {a} and {b}", op.symbol()),
        };
        let x = self.conv(lv, rep);
        let y = self.conv(rv, rep);
        let v = match (x, y) {
            (Val::I64(x), Val::I64(y)) => {
                let r = match op {
                    BinOp::Add => x.checked_add(y),
                    BinOp::Sub => x.checked_sub(y),
                    BinOp::Mul => x.checked_mul(y),
                    BinOp::Div | BinOp::Rem if y == 0 => return (Some(out), self.by_zero()),
                    // Truncating division; the remainder takes the dividend's sign.
                    BinOp::Div => x.checked_div(y),
                    BinOp::Rem => x.checked_rem(y),
                    _ => unreachable!(),
                };
                r.map_or_else(|| self.overflowed(), Val::I64)
            }
            (Val::U64(x), Val::U64(y)) => {
                let r = match op {
                    BinOp::Add => x.checked_add(y),
                    BinOp::Sub => x.checked_sub(y),
                    BinOp::Mul => x.checked_mul(y),
                    BinOp::Div | BinOp::Rem if y == 0 => return (Some(out), self.by_zero()),
                    BinOp::Div => Some(x / y),
                    BinOp::Rem => Some(x % y),
                    _ => unreachable!(),
                };
                r.map_or_else(|| self.overflowed(), Val::U64)
            }
            (Val::F64(x), Val::F64(y)) => match op {
                BinOp::Add => Val::F64(x + y),
                BinOp::Sub => Val::F64(x - y),
                BinOp::Mul => Val::F64(x * y),
                // Float division or remainder by ±0.0 is null, whatever the dividend.
                BinOp::Div | BinOp::Rem if y == 0.0 => self.by_zero(),
                BinOp::Div => Val::F64(x / y),
                BinOp::Rem => Val::F64(x % y),
                _ => unreachable!(),
            },
            // A null operand: null, not counted.
            _ => Val::Null,
        };
        (Some(out), retag(v, out))
    }

    fn compare(
        &mut self,
        op: BinOp,
        l: &Expr,
        r: &Expr,
        env: &[(String, FT)],
        vals: &[Val],
    ) -> bool {
        let (lt, lv) = self.expr(l, env, vals);
        let (rt, rv) = self.expr(r, env, vals);
        let (lt, rt) = match (lt, rt) {
            (Some(a), Some(b)) => (a, b),
            // A comparison with the literal `null`: `==` / `!=` test
            // presence, the orderings are false.
            (Some(_), None) | (None, Some(_)) => {
                let other = if lt.is_some() { &lv } else { &rv };
                let present = !matches!(other, Val::Null);
                return match op {
                    BinOp::Eq => !present,
                    BinOp::Ne => present,
                    _ => false,
                };
            }
            (None, None) => panic!("reference: `null` compared with `null` does not compile"),
        };
        if matches!(lv, Val::Null) || matches!(rv, Val::Null) {
            return false;
        }
        let numlike = |t: FT| is_num(t) || t == FT::Timestamp;
        let ord = if numlike(lt) && numlike(rt) {
            if lt == FT::F64 || rt == FT::F64 {
                to_f64(&lv).partial_cmp(&to_f64(&rv))
            } else {
                Some(to_i128(&lv).cmp(&to_i128(&rv)))
            }
        } else if is_text(lt) && is_text(rt) {
            Some(text(&lv).as_bytes().cmp(text(&rv).as_bytes()))
        } else if lt == FT::Bool && rt == FT::Bool && matches!(op, BinOp::Eq | BinOp::Ne) {
            let (Val::Bool(a), Val::Bool(b)) = (&lv, &rv) else {
                unreachable!()
            };
            Some(a.cmp(b))
        } else {
            panic!(
                "reference: cannot compare {lt} with {rt} by {}",
                op.symbol()
            )
        };
        cmp_holds(op, ord)
    }

    fn call(&mut self, f: &str, args: &[Expr], env: &[(String, FT)], vals: &[Val]) -> Typed {
        let mut ev: Vec<Typed> = args.iter().map(|a| self.expr(a, env, vals)).collect();
        let ty = |i: usize| {
            ev[i]
                .0
                .unwrap_or_else(|| panic!("reference: `{f}` of null"))
        };
        match f {
            "abs" => {
                let t = ty(0);
                let v = match std::mem::replace(&mut ev[0].1, Val::Null) {
                    Val::I64(a) => a.checked_abs().map_or_else(|| self.overflowed(), Val::I64),
                    Val::F64(a) => Val::F64(a.abs()),
                    v => v, // u64 unchanged, null stays null
                };
                (Some(t), v)
            }
            "round" | "floor" | "ceil" => {
                let t = ty(0);
                let v = match ev[0].1 {
                    Val::F64(a) => Val::F64(match f {
                        "round" => a.round(), // half away from zero
                        "floor" => a.floor(),
                        _ => a.ceil(),
                    }),
                    ref v => v.clone(), // integers unchanged
                };
                (Some(t), v)
            }
            "min" | "max" => {
                let types: Vec<FT> = (0..ev.len()).map(ty).collect();
                let (rep, out) = if types.contains(&FT::F64) {
                    (FT::F64, FT::F64)
                } else if types.iter().all(|t| *t == FT::Timestamp) {
                    (FT::I64, FT::Timestamp)
                } else if types.iter().all(|t| *t == FT::U64) {
                    (FT::U64, FT::U64)
                } else {
                    (FT::I64, FT::I64)
                };
                // Every argument is converted (and counted) before nulls decide.
                let conv: Vec<Val> = ev.into_iter().map(|(_, v)| self.conv(v, rep)).collect();
                if conv.iter().any(|v| matches!(v, Val::Null)) {
                    return (Some(out), Val::Null);
                }
                let v = match rep {
                    FT::F64 => {
                        // NaN is skipped; NaN only if every argument is NaN.
                        // Reading: the documentation says neither which NaN
                        // comes out then (its bits reach `hash`) nor how 0.0
                        // and -0.0 order; a left-to-right fold that moves on
                        // from a NaN (so the last NaN), with std's
                        // `f64::max`/`min` between numbers, decides.
                        let r = conv.iter().map(to_f64).reduce(|a, b| {
                            if a.is_nan() {
                                b
                            } else if b.is_nan() {
                                a
                            } else if f == "max" {
                                a.max(b)
                            } else {
                                a.min(b)
                            }
                        });
                        Val::F64(r.expect("two or more"))
                    }
                    FT::U64 => {
                        let xs = conv.iter().map(|v| to_i128(v) as u64);
                        Val::U64(if f == "max" { xs.max() } else { xs.min() }.expect("two or more"))
                    }
                    _ => {
                        let xs = conv.iter().map(|v| to_i128(v) as i64);
                        Val::I64(if f == "max" { xs.max() } else { xs.min() }.expect("two or more"))
                    }
                };
                (Some(out), retag(v, out))
            }
            "len" => (
                Some(FT::I64),
                match &ev[0].1 {
                    Val::Null => Val::Null,
                    v => Val::I64(text(v).chars().count() as i64),
                },
            ),
            "lower" | "upper" => (
                Some(FT::Str),
                match &ev[0].1 {
                    Val::Null => Val::Null,
                    // Per character, not locale-aware (and no final-sigma rule).
                    v => Val::Str(if f == "lower" {
                        text(v).chars().flat_map(char::to_lowercase).collect()
                    } else {
                        text(v).chars().flat_map(char::to_uppercase).collect()
                    }),
                },
            ),
            "starts_with" | "contains" => {
                let hit = match (&ev[0].1, &ev[1].1) {
                    (Val::Null, _) | (_, Val::Null) => false,
                    (s, p) => {
                        let (s, p) = (text(s).as_bytes(), text(p).as_bytes());
                        if f == "starts_with" {
                            s.len() >= p.len() && s[..p.len()] == *p
                        } else {
                            p.is_empty() || s.windows(p.len()).any(|w| w == p)
                        }
                    }
                };
                (Some(FT::Bool), Val::Bool(hit))
            }
            "if" => {
                let (ta, tb) = (ev[1].0, ev[2].0);
                let out = match (ta, tb) {
                    (Some(t), None) | (None, Some(t)) => t,
                    (Some(x), Some(y)) if x == y => x,
                    (Some(x), Some(y)) if is_text(x) && is_text(y) => FT::Str,
                    (Some(x), Some(y)) if is_num(x) && is_num(y) => {
                        if x == FT::F64 || y == FT::F64 {
                            FT::F64
                        } else {
                            FT::I64
                        }
                    }
                    (x, y) => panic!("reference: `if` branches {x:?} and {y:?}"),
                };
                let b = std::mem::replace(&mut ev[2].1, Val::Null);
                let a = std::mem::replace(&mut ev[1].1, Val::Null);
                // Both branches are converted (and counted), taken or not.
                let (a, b) = if is_num(out) {
                    (self.conv(a, out), self.conv(b, out))
                } else {
                    (a, b)
                };
                // `a` where the condition is true; `b` where false or null.
                let v = if matches!(ev[0].1, Val::Bool(true)) {
                    a
                } else {
                    b
                };
                (Some(out), retag(v, out))
            }
            "hash" => {
                let mut bytes = Vec::new();
                for (_, v) in &ev {
                    match v {
                        Val::Null => return (Some(FT::U64), Val::Null),
                        Val::I64(x) | Val::Ts(x) => bytes.extend_from_slice(&x.to_le_bytes()),
                        Val::U64(x) => bytes.extend_from_slice(&x.to_le_bytes()),
                        Val::F64(x) => {
                            let x = if x.is_nan() { f64::NAN } else { *x };
                            bytes.extend_from_slice(&x.to_bits().to_le_bytes())
                        }
                        Val::Bool(x) => bytes.push(u8::from(*x)),
                        Val::Str(s) => bytes.extend_from_slice(s.as_bytes()),
                    }
                }
                (Some(FT::U64), Val::U64(xxh3_64(&bytes)))
            }
            "now" => (Some(FT::Timestamp), Val::Ts(self.now_ns)),
            f => panic!("reference: function `{f}` is not generated"),
        }
    }
}

/// `x in [items]` (PIPELINE.md §7): one comparison type for the whole list.
pub fn in_list(t: FT, x: &Val, items: &[(FT, Val)]) -> bool {
    if matches!(x, Val::Null) {
        return false;
    }
    if is_num(t) || t == FT::Timestamp {
        if t == FT::F64 || items.iter().any(|(it, _)| *it == FT::F64) {
            let x = to_f64(x);
            items.iter().any(|(_, v)| to_f64(v) == x)
        } else {
            // Exact: a negative item can never match a u64, nor an item
            // above i64::MAX an i64 (the compiler drops both).
            let x = to_i128(x);
            items.iter().any(|(_, v)| to_i128(v) == x)
        }
    } else if is_text(t) {
        items.iter().any(|(_, v)| text(v) == text(x))
    } else {
        items.iter().any(|(_, v)| v == x)
    }
}

/// What the reference emits and counts for a whole batch.
#[derive(Default)]
pub struct RefRun {
    /// (sink, stage, input record, record).
    pub emits: Vec<(usize, usize, usize, Rec)>,
    pub overflow: u64,
    pub div_zero: u64,
    pub filtered: u64,
    pub stage_in: Vec<u64>,
    pub stage_out: Vec<u64>,
}

fn sink_index(sinks: &[&str], n: &str) -> usize {
    sinks
        .iter()
        .position(|s| *s == n)
        .unwrap_or_else(|| panic!("reference: unknown sink {n}"))
}

/// Runs `p` over `rows` one record at a time, each through every stage.
pub fn reference(
    world: &World,
    p: &Pipeline,
    rows: &[Vec<Val>],
    params: &[(String, ParamValue)],
    now_ns: i64,
) -> RefRun {
    let mut r = Reference {
        tables: world.tables,
        params,
        now_ns,
        overflow: 0,
        div_zero: 0,
    };
    let n = p.stages.len();
    let mut run = RefRun {
        stage_in: vec![0; n],
        stage_out: vec![0; n],
        ..RefRun::default()
    };
    let record = |env: &[(String, FT)], vals: &[Val]| -> Rec {
        env.iter()
            .zip(vals)
            .map(|((n, t), v)| (n.clone(), *t, retag(v.clone(), *t)))
            .collect()
    };
    let pos = |env: &[(String, FT)], n: &str| {
        env.iter()
            .position(|(f, _)| f == n)
            .unwrap_or_else(|| panic!("reference: unknown field {n}"))
    };
    for (ri, row) in rows.iter().enumerate() {
        let mut env: Vec<(String, FT)> = world
            .fields
            .iter()
            .map(|(n, t)| (n.to_string(), *t))
            .collect();
        let mut vals = row.clone();
        for (k, st) in p.stages.iter().enumerate() {
            run.stage_in[k] += 1;
            match &st.op {
                Op::Filter(e) => {
                    // Keeps only true: false and null are removed.
                    let (_, v) = r.expr(e, &env, &vals);
                    if !matches!(v, Val::Bool(true)) {
                        run.filtered += 1;
                        break;
                    }
                }
                Op::Eval(assigns) => {
                    // Sequential: each assignment sees the ones before it.
                    for (name, e) in assigns {
                        let (t, v) = r.expr(e, &env, &vals);
                        let t = t.expect("reference: `eval x = null` does not compile");
                        match env.iter().position(|(f, _)| *f == name.name) {
                            Some(i) => {
                                env[i].1 = t;
                                vals[i] = v;
                            }
                            None => {
                                env.push((name.name.clone(), t));
                                vals.push(v);
                            }
                        }
                    }
                }
                Op::Select(names) => {
                    let idx: Vec<usize> = names.iter().map(|n| pos(&env, &n.name)).collect();
                    env = idx.iter().map(|&i| env[i].clone()).collect();
                    vals = idx.iter().map(|&i| vals[i].clone()).collect();
                }
                Op::Drop(names) => {
                    for n in names {
                        let i = pos(&env, &n.name);
                        env.remove(i);
                        vals.remove(i);
                    }
                }
                Op::Rename(pairs) => {
                    for (from, to) in pairs {
                        let i = pos(&env, &from.name);
                        env[i].0 = to.name.clone();
                    }
                }
                Op::Route { sink, when } => {
                    // True goes to the sink and leaves; false and null stay.
                    let (_, v) = r.expr(when, &env, &vals);
                    if matches!(v, Val::Bool(true)) {
                        run.emits.push((
                            sink_index(world.sinks, &sink.name),
                            k,
                            ri,
                            record(&env, &vals),
                        ));
                        break;
                    }
                }
                Op::Tee(sink) => {
                    run.emits.push((
                        sink_index(world.sinks, &sink.name),
                        k,
                        ri,
                        record(&env, &vals),
                    ));
                }
                Op::To(sinks) => {
                    for s in sinks {
                        run.emits.push((
                            sink_index(world.sinks, &s.name),
                            k,
                            ri,
                            record(&env, &vals),
                        ));
                    }
                }
                other => panic!("reference: `{}` is not generated", other.word()),
            }
            run.stage_out[k] += 1;
        }
    }
    run.overflow = r.overflow;
    run.div_zero = r.div_zero;
    run
}
