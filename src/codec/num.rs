//! Number parsing from bytes, shared by the text decoders.
//!
//! Integers are parsed by hand (sign, digits, checked overflow) so that an
//! overflow is told apart from bad syntax; floats go through `fast-float2`,
//! which parses `&[u8]` without a UTF-8 check.

/// Why a number did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumError {
    /// Not a number of this kind at all.
    Syntax,
    /// A well-formed integer outside the type's range.
    Range,
}

/// Parses `[+-]?[0-9]+` into an `i64`.
#[inline]
pub fn parse_i64(s: &[u8]) -> Result<i64, NumError> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return Err(NumError::Syntax);
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut v: i64 = 0;
    let mut overflow = false;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(NumError::Syntax);
        }
        match v.checked_mul(10).and_then(|v| v.checked_sub(d as i64)) {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow {
        return Err(NumError::Range);
    }
    if neg {
        Ok(v)
    } else {
        v.checked_neg().ok_or(NumError::Range)
    }
}

/// Parses `[+]?[0-9]+` into a `u64`; a leading `-` is a range error when
/// digits follow (a negative number is a number, just not a `u64`).
#[inline]
pub fn parse_u64(s: &[u8]) -> Result<u64, NumError> {
    let digits = match s.first() {
        Some(b'+') => &s[1..],
        Some(b'-') => {
            return match parse_i64(s) {
                Ok(0) => Ok(0),
                Ok(_) | Err(NumError::Range) => Err(NumError::Range),
                Err(e) => Err(e),
            };
        }
        _ => s,
    };
    if digits.is_empty() {
        return Err(NumError::Syntax);
    }
    let mut v: u64 = 0;
    let mut overflow = false;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(NumError::Syntax);
        }
        match v.checked_mul(10).and_then(|v| v.checked_add(d as u64)) {
            Some(n) => v = n,
            None => overflow = true,
        }
    }
    if overflow {
        Err(NumError::Range)
    } else {
        Ok(v)
    }
}

/// Parses a decimal float (`1`, `-1.5`, `2e-3`, `.5`) of the whole input.
/// `NaN`, `inf` and `Infinity` spellings are *not* accepted here: each
/// format decides which special values it allows.
#[inline]
pub fn parse_f64(s: &[u8]) -> Option<f64> {
    // fast-float2 accepts "inf"/"nan" spellings; refuse anything that does
    // not start like a decimal number.
    let first = *s.first()?;
    let lead = if first == b'-' || first == b'+' {
        *s.get(1)?
    } else {
        first
    };
    if !(lead.is_ascii_digit() || lead == b'.') {
        return None;
    }
    match fast_float2::parse_partial::<f64, _>(s) {
        Ok((v, n)) if n == s.len() => Some(v),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints() {
        assert_eq!(parse_i64(b"0"), Ok(0));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), Err(NumError::Range));
        assert_eq!(parse_i64(b"-"), Err(NumError::Syntax));
        assert_eq!(parse_i64(b"12a"), Err(NumError::Syntax));
        assert_eq!(parse_i64(b"99999999999999999999x"), Err(NumError::Syntax));
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), Err(NumError::Range));
        assert_eq!(parse_u64(b"-1"), Err(NumError::Range));
        assert_eq!(parse_u64(b"-0"), Ok(0));
        assert_eq!(parse_u64(b""), Err(NumError::Syntax));
    }

    #[test]
    fn floats() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-2e3"), Some(-2000.0));
        assert_eq!(parse_f64(b".5"), Some(0.5));
        assert_eq!(parse_f64(b"1.5x"), None);
        assert_eq!(parse_f64(b"nan"), None);
        assert_eq!(parse_f64(b"inf"), None);
        assert_eq!(parse_f64(b""), None);
        assert_eq!(parse_f64(b"-"), None);
    }
}
