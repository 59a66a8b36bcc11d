//! RFC 3339 timestamps to and from nanoseconds since the Unix epoch.
//!
//! Hand-written for the decode path (no allocation, no locale, no tz
//! database): `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM)`.
//! Fractions longer than nanoseconds are truncated. The result must fit an
//! `i64` of nanoseconds (years 1678 to 2261).

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number from 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &[u8], n: usize) -> Option<u32> {
    let mut v = 0u32;
    for &c in s.get(..n)? {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u32;
    }
    Some(v)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses an RFC 3339 date-time into ns since the epoch.
pub fn parse_rfc3339(s: &[u8]) -> Option<i64> {
    if s.len() < 20 {
        return None;
    }
    let y = digits(s, 4)? as i64;
    let mo = digits(&s[5..], 2)?;
    let d = digits(&s[8..], 2)?;
    let h = digits(&s[11..], 2)?;
    let mi = digits(&s[14..], 2)?;
    let sec = digits(&s[17..], 2)?;
    if s[4] != b'-' || s[7] != b'-' || !matches!(s[10], b'T' | b't' | b' ') {
        return None;
    }
    if s[13] != b':' || s[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    // 60 admits a leap second, folded into the next second as POSIX does.
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ns: i64 = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        let mut scale = 100_000_000i64;
        while let Some(&c) = s.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            frac_ns += (c - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset_s: i64 = match s.get(i)? {
        b'Z' | b'z' => {
            i += 1;
            0
        }
        &sign @ (b'+' | b'-') => {
            let oh = digits(&s[i + 1..], 2)? as i64;
            if s.get(i + 3) != Some(&b':') {
                return None;
            }
            let om = digits(&s[i + 4..], 2)? as i64;
            if oh > 23 || om > 59 {
                return None;
            }
            i += 6;
            let o = oh * 3600 + om * 60;
            if sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    if i != s.len() {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + (h as i64) * 3600 + (mi as i64) * 60 + sec as i64 - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

/// Formats ns since the epoch as RFC 3339 in UTC with nanoseconds.
pub fn format_rfc3339(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let frac = ns.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339(b"2024-11-25T00:00:00Z"),
            Some(1_732_492_800_000_000_000)
        );
        assert_eq!(
            parse_rfc3339(b"2024-11-25T01:00:00.5+01:00"),
            Some(1_732_492_800_500_000_000)
        );
        assert_eq!(
            parse_rfc3339(b"2024-11-24t23:00:00.000000001-01:00"),
            Some(1_732_492_800_000_000_001)
        );
        assert_eq!(parse_rfc3339(b"1969-12-31T23:59:59.9Z"), Some(-100_000_000));
    }

    #[test]
    fn rejects() {
        for bad in [
            &b"2024-02-30T00:00:00Z"[..],
            b"2024-11-25T00:00:00",
            b"2024-11-25T24:00:00Z",
            b"2024-11-25T00:00:00.Z",
            b"2024-11-25T00:00:00Zx",
            b"2024-13-01T00:00:00Z",
            b"9999-12-31T00:00:00Z",
            b"",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn round_trip() {
        for ns in [0i64, 1, -1, 1_732_492_800_123_456_789, -86_400_000_000_001] {
            assert_eq!(parse_rfc3339(format_rfc3339(ns).as_bytes()), Some(ns));
        }
    }
}
