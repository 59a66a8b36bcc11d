//! HdrHistogram's percentile distribution text (`.hgrm`), as its Java
//! `outputPercentileDistribution` writes it and its online plotter reads
//! it: a header, one row per percentile step (5 ticks per half distance),
//! and the `#[Mean …]`, `#[Max …]`, `#[Buckets …]` footer. Values are
//! written divided by a unit scale (1000: ns recorded, µs written).

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Percentile steps per half distance to 100 %, as HdrHistogram's tools.
pub const TICKS: u32 = 5;

/// The `.hgrm` text of `h`, values divided by `scale`.
pub fn write(h: &Histogram<u64>, scale: f64) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = v.value_iterated_to() as f64 / scale;
        if q < 1.0 {
            let _ = writeln!(
                s,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(s, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]",
        h.mean() / scale,
        h.stdev() / scale
    );
    let _ = writeln!(
        s,
        "#[Max     = {:12.3}, Total count    = {:12}]",
        h.max() as f64 / scale,
        h.len()
    );
    let _ = writeln!(
        s,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        2048
    );
    s
}

/// One row of a percentile table.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Row {
    pub value: f64,
    pub quantile: f64,
    pub total: u64,
}

/// The rows of an `.hgrm` text.
///
/// # Errors
/// Text that holds no percentile row, or a malformed one (its line).
pub fn read(text: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with("Value") {
            continue;
        }
        let f: Vec<&str> = t.split_whitespace().collect();
        let bad = || format!("line {}: not a percentile row: {l:?}", n + 1);
        if f.len() < 3 {
            return Err(bad());
        }
        rows.push(Row {
            value: f[0].parse().map_err(|_| bad())?,
            quantile: f[1].parse().map_err(|_| bad())?,
            total: f[2].parse().map_err(|_| bad())?,
        });
    }
    if rows.is_empty() {
        return Err("no percentile rows".into());
    }
    Ok(rows)
}

/// The value at quantile `q` of a table: the first row at or past `q`.
pub fn value_at(rows: &[Row], q: f64) -> f64 {
    rows.iter()
        .find(|r| r.quantile >= q)
        .or(rows.last())
        .map_or(0.0, |r| r.value)
}

/// The percentiles every report prints.
pub const REPORT: [(&str, f64); 6] = [
    ("p50", 0.5),
    ("p90", 0.9),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
    ("max", 1.0),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_tables_read_back_to_the_histograms_percentiles() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        let mut x = 12345u64;
        for _ in 0..100_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // A long tail: most around 10 µs, some up to seconds.
            let v = 5_000 + (x >> 40) % 10_000 + if x % 1000 == 0 { x % 2_000_000_000 } else { 0 };
            h.record(v).unwrap();
        }
        let text = write(&h, 1000.0);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)"));
        assert!(text.contains("#[Max     ="), "{text}");
        let rows = read(&text).unwrap();
        assert_eq!(rows.last().unwrap().total, 100_000);
        // Every row is the histogram's value at the row's quantile, to the
        // histogram's 3 significant digits (and the printed 3 decimals).
        for r in &rows {
            let want = h.value_at_quantile(r.quantile) as f64 / 1000.0;
            assert!(
                (r.value - want).abs() <= want * 0.002 + 0.001,
                "{r:?}: histogram {want}"
            );
        }
        // A report's percentiles come from the rows, monotonic, ending at max.
        let vals: Vec<f64> = REPORT.iter().map(|&(_, q)| value_at(&rows, q)).collect();
        assert!(vals.windows(2).all(|w| w[0] <= w[1]), "{vals:?}");
        assert!((vals[5] - h.max() as f64 / 1000.0).abs() <= h.max() as f64 / 1000.0 * 0.002);
        assert!(read("garbage").is_err());
    }
}
