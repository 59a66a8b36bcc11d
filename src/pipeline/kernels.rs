//! Batch-at-a-time kernels: one typed loop per instruction per batch.
//!
//! An instruction's operands are columns (registers) or constants; each
//! kernel is generic over both through [`Src`], so `price > $min` compiles
//! to a loop comparing a slice with a value held in a register. Kernels
//! visit only the selected rows ([`Sel`]); rows outside the selection are
//! left stale and never read.
//!
//! The semantics here are the language's (SPEC §4) and must not vary:
//! * arithmetic with null is null; integer overflow and division by zero
//!   (also of floats) are null, and counted;
//! * comparisons with null are false; NaN compares false, even with `!=`;
//! * `and`/`or`/`not` are three-valued (Kleene), a filter keeps only true.

use crate::codec::Interner;
use crate::codec::batch::{Bitmap, Column, ColumnData, StrRef};

/// The rows an instruction applies to.
#[derive(Clone, Copy, Debug)]
pub enum Sel<'a> {
    /// Rows `0..n`.
    All(usize),
    /// These rows, ascending.
    Idx(&'a [u32]),
}

impl Sel<'_> {
    pub fn len(&self) -> usize {
        match self {
            Sel::All(n) => *n,
            Sel::Idx(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `$body` with `$i: usize` bound to each selected row.
macro_rules! each {
    ($sel:expr, $i:ident, $body:block) => {
        match $sel {
            Sel::All(n) => {
                #[allow(clippy::needless_range_loop)]
                for $i in 0..n $body
            }
            Sel::Idx(ix) => {
                for &k in ix {
                    let $i = k as usize;
                    $body
                }
            }
        }
    };
}
pub(crate) use each;

/// A source of values: a column or a constant.
pub trait Src<T: Copy> {
    fn get(&self, i: usize) -> T;
    fn valid(&self, i: usize) -> bool;
}

/// A column as a source.
pub struct Col<'a, T> {
    pub v: &'a [T],
    pub m: &'a Bitmap,
}

impl<T: Copy> Src<T> for Col<'_, T> {
    #[inline(always)]
    fn get(&self, i: usize) -> T {
        self.v[i]
    }
    #[inline(always)]
    fn valid(&self, i: usize) -> bool {
        self.m.get(i)
    }
}

/// A constant as a source (`None` is null).
pub struct K<T>(pub Option<T>);

impl<T: Copy + Default> Src<T> for K<T> {
    #[inline(always)]
    fn get(&self, _: usize) -> T {
        self.0.unwrap_or_default()
    }
    #[inline(always)]
    fn valid(&self, _: usize) -> bool {
        self.0.is_some()
    }
}

/// Text (symbol or string) as bytes.
pub trait TextSrc {
    fn get(&self, i: usize) -> &[u8];
    fn valid(&self, i: usize) -> bool;
}

pub struct SymCol<'a> {
    pub ids: &'a [u32],
    pub m: &'a Bitmap,
    pub symbols: &'a Interner,
}

impl TextSrc for SymCol<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> &[u8] {
        self.symbols.resolve(self.ids[i])
    }
    #[inline(always)]
    fn valid(&self, i: usize) -> bool {
        self.m.get(i)
    }
}

pub struct StrCol<'a> {
    pub refs: &'a [StrRef],
    pub m: &'a Bitmap,
    pub arena: &'a [u8],
}

impl TextSrc for StrCol<'_> {
    #[inline(always)]
    fn get(&self, i: usize) -> &[u8] {
        self.refs[i].get(self.arena)
    }
    #[inline(always)]
    fn valid(&self, i: usize) -> bool {
        self.m.get(i)
    }
}

pub struct TextK<'a>(pub Option<&'a [u8]>);

impl TextSrc for TextK<'_> {
    #[inline(always)]
    fn get(&self, _: usize) -> &[u8] {
        self.0.unwrap_or_default()
    }
    #[inline(always)]
    fn valid(&self, _: usize) -> bool {
        self.0.is_some()
    }
}

/// Typed mutable views of a destination column.
pub fn out_i64(c: &mut Column) -> (&mut [i64], &mut Bitmap) {
    match &mut c.data {
        ColumnData::I64(v) => (v, &mut c.valid),
        _ => unreachable!("register types fixed at compile time"),
    }
}

pub fn out_u64(c: &mut Column) -> (&mut [u64], &mut Bitmap) {
    match &mut c.data {
        ColumnData::U64(v) => (v, &mut c.valid),
        _ => unreachable!("register types fixed at compile time"),
    }
}

pub fn out_f64(c: &mut Column) -> (&mut [f64], &mut Bitmap) {
    match &mut c.data {
        ColumnData::F64(v) => (v, &mut c.valid),
        _ => unreachable!("register types fixed at compile time"),
    }
}

pub fn out_bool(c: &mut Column) -> (&mut [bool], &mut Bitmap) {
    match &mut c.data {
        ColumnData::Bool(v) => (v, &mut c.valid),
        _ => unreachable!("register types fixed at compile time"),
    }
}

/// `out = f(a, b)` where both are valid and `f` gives `Some`; otherwise
/// null. Returns how many rows `f` refused (overflow, division by zero).
#[inline(always)]
pub fn binary<X: Copy, Y: Copy, O: Copy>(
    sel: Sel<'_>,
    a: &impl Src<X>,
    b: &impl Src<Y>,
    out: &mut [O],
    m: &mut Bitmap,
    f: impl Fn(X, Y) -> Option<O>,
) -> u64 {
    let mut refused = 0u64;
    each!(sel, i, {
        if a.valid(i) && b.valid(i) {
            match f(a.get(i), b.get(i)) {
                Some(v) => {
                    out[i] = v;
                    m.set(i, true);
                }
                None => {
                    refused += 1;
                    m.set(i, false);
                }
            }
        } else {
            m.set(i, false);
        }
    });
    refused
}

/// `out = f(a)` for valid `a`; null otherwise. Returns refusals.
#[inline(always)]
pub fn unary<X: Copy, O: Copy>(
    sel: Sel<'_>,
    a: &impl Src<X>,
    out: &mut [O],
    m: &mut Bitmap,
    f: impl Fn(X) -> Option<O>,
) -> u64 {
    let mut refused = 0u64;
    each!(sel, i, {
        if a.valid(i) {
            match f(a.get(i)) {
                Some(v) => {
                    out[i] = v;
                    m.set(i, true);
                }
                None => {
                    refused += 1;
                    m.set(i, false);
                }
            }
        } else {
            m.set(i, false);
        }
    });
    refused
}

/// A comparison: always valid; false when either side is null or `f` says
/// so (NaN handling lives in `f`).
#[inline(always)]
pub fn compare<X: Copy, Y: Copy>(
    sel: Sel<'_>,
    a: &impl Src<X>,
    b: &impl Src<Y>,
    out: &mut [bool],
    m: &mut Bitmap,
    f: impl Fn(X, Y) -> bool,
) {
    each!(sel, i, {
        out[i] = a.valid(i) && b.valid(i) && f(a.get(i), b.get(i));
        m.set(i, true);
    });
}

/// Text comparison with `f` over bytes.
#[inline(always)]
pub fn compare_text(
    sel: Sel<'_>,
    a: &impl TextSrc,
    b: &impl TextSrc,
    out: &mut [bool],
    m: &mut Bitmap,
    f: impl Fn(&[u8], &[u8]) -> bool,
) {
    each!(sel, i, {
        out[i] = a.valid(i) && b.valid(i) && f(a.get(i), b.get(i));
        m.set(i, true);
    });
}

/// Three-valued `and` / `or`.
pub fn logic(
    sel: Sel<'_>,
    a: &impl Src<bool>,
    b: &impl Src<bool>,
    out: &mut [bool],
    m: &mut Bitmap,
    is_and: bool,
) {
    each!(sel, i, {
        let (av, bv) = (a.valid(i), b.valid(i));
        let (x, y) = (av && a.get(i), bv && b.get(i));
        // The dominant value (false for and, true for or) decides alone.
        let dom = !is_and;
        if (av && x == dom) || (bv && y == dom) {
            out[i] = dom;
            m.set(i, true);
        } else if av && bv {
            out[i] = !dom;
            m.set(i, true);
        } else {
            m.set(i, false);
        }
    });
}

/// Writes the text of each selected row into `out` (string refs into
/// `arena`) after `f` transforms it.
pub fn text_map(
    sel: Sel<'_>,
    a: &impl TextSrc,
    out: &mut [StrRef],
    m: &mut Bitmap,
    arena: &mut Vec<u8>,
    f: impl Fn(&[u8], &mut Vec<u8>),
) {
    each!(sel, i, {
        if a.valid(i) {
            let off = arena.len();
            f(a.get(i), arena);
            out[i] = StrRef {
                off: off as u32,
                len: (arena.len() - off) as u32,
            };
            m.set(i, true);
        } else {
            m.set(i, false);
        }
    });
}

/// Lower- or upper-cases UTF-8 text (input is valid UTF-8 by construction).
pub fn change_case(s: &[u8], out: &mut Vec<u8>, upper: bool) {
    if s.is_ascii() {
        out.extend(s.iter().map(|c| {
            if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        }));
        return;
    }
    let s = std::str::from_utf8(s).unwrap_or_default();
    let mut buf = [0u8; 4];
    for c in s.chars() {
        if upper {
            for u in c.to_uppercase() {
                out.extend_from_slice(u.encode_utf8(&mut buf).as_bytes());
            }
        } else {
            for l in c.to_lowercase() {
                out.extend_from_slice(l.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Unicode scalar values in UTF-8 text.
#[inline]
pub fn char_count(s: &[u8]) -> i64 {
    s.iter().filter(|&&b| (b as i8) >= -0x40).count() as i64
}

/// Float min/max skipping NaN; NaN only if both are NaN.
#[inline(always)]
pub fn fmin(a: f64, b: f64) -> f64 {
    if a.is_nan() {
        b
    } else if b.is_nan() {
        a
    } else {
        a.min(b)
    }
}

#[inline(always)]
pub fn fmax(a: f64, b: f64) -> f64 {
    if a.is_nan() {
        b
    } else if b.is_nan() {
        a
    } else {
        a.max(b)
    }
}

/// Float division: division by zero is null.
#[inline(always)]
pub fn fdiv(a: f64, b: f64) -> Option<f64> {
    if b == 0.0 { None } else { Some(a / b) }
}

/// Float remainder: a zero divisor is null.
#[inline(always)]
pub fn frem(a: f64, b: f64) -> Option<f64> {
    if b == 0.0 { None } else { Some(a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(vals: &[Option<i64>]) -> (Vec<i64>, Bitmap) {
        let mut m = Bitmap::new(vals.len());
        let v = vals
            .iter()
            .enumerate()
            .map(|(i, x)| {
                m.set(i, x.is_some());
                x.unwrap_or(0)
            })
            .collect();
        (v, m)
    }

    #[test]
    fn overflow_and_division_by_zero_are_counted_nulls() {
        let (a, am) = col(&[Some(i64::MAX), Some(4), None, Some(9)]);
        let (b, bm) = col(&[Some(1), Some(0), Some(1), Some(3)]);
        let mut out = vec![0i64; 4];
        let mut m = Bitmap::new(4);
        let a = Col { v: &a, m: &am };
        let b = Col { v: &b, m: &bm };
        let n = binary(Sel::All(4), &a, &b, &mut out, &mut m, |x: i64, y: i64| {
            x.checked_add(y)
        });
        assert_eq!(n, 1);
        assert!(!m.get(0) && m.get(1) && !m.get(2) && m.get(3));
        let n = binary(
            Sel::Idx(&[1, 3]),
            &a,
            &b,
            &mut out,
            &mut m,
            |x: i64, y: i64| x.checked_div(y),
        );
        assert_eq!(n, 1);
        assert!(!m.get(1));
        assert_eq!(out[3], 3);
    }

    #[test]
    fn kleene_logic() {
        let mut bm = Bitmap::new(9);
        let mut av = Vec::new();
        let mut bv = Vec::new();
        let mut am = Bitmap::new(9);
        let vals = [Some(true), Some(false), None];
        let mut i = 0;
        for x in vals {
            for y in vals {
                am.set(i, x.is_some());
                bm.set(i, y.is_some());
                av.push(x.unwrap_or(false));
                bv.push(y.unwrap_or(false));
                i += 1;
            }
        }
        let a = Col { v: &av, m: &am };
        let b = Col { v: &bv, m: &bm };
        let mut out = vec![false; 9];
        let mut m = Bitmap::new(9);
        logic(Sel::All(9), &a, &b, &mut out, &mut m, true);
        let got: Vec<Option<bool>> = (0..9).map(|i| m.get(i).then_some(out[i])).collect();
        let t = Some(true);
        let f = Some(false);
        assert_eq!(got, [t, f, None, f, f, f, None, f, None]);
        logic(Sel::All(9), &a, &b, &mut out, &mut m, false);
        let got: Vec<Option<bool>> = (0..9).map(|i| m.get(i).then_some(out[i])).collect();
        assert_eq!(got, [t, t, t, t, f, None, t, None, None]);
    }

    #[test]
    fn nan_compares_false_even_for_ne() {
        let v = [f64::NAN, 1.0];
        let mut vm = Bitmap::new(2);
        vm.set_all(2);
        let a = Col { v: &v, m: &vm };
        let mut out = vec![true; 2];
        let mut m = Bitmap::new(2);
        compare(
            Sel::All(2),
            &a,
            &K(Some(1.0)),
            &mut out,
            &mut m,
            |x: f64, y: f64| !x.is_nan() && !y.is_nan() && x != y,
        );
        assert_eq!(out, [false, false]);
    }

    #[test]
    fn text_helpers() {
        let mut out = Vec::new();
        change_case("ÄbC".as_bytes(), &mut out, false);
        assert_eq!(out, "äbc".as_bytes());
        assert_eq!(char_count("héllo".as_bytes()), 5);
        assert_eq!(fmin(f64::NAN, 2.0), 2.0);
        assert!(fmax(f64::NAN, f64::NAN).is_nan());
    }
}
