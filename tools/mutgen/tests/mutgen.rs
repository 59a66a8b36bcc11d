//! `mutgen` is deterministic: the same seed and epoch give the same bytes,
//! and its schedule holds exactly rate × duration sends (checked on the
//! schedule, through `--out`, not on the wall clock).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mutgen");

fn gen_bytes(dir: &std::path::Path, args: &[&str]) -> (Vec<u8>, String) {
    let out = dir.join("out.bin");
    let o = Command::new(BIN)
        .args(args)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        std::fs::read(&out).unwrap(),
        String::from_utf8(o.stdout).unwrap(),
    )
}

#[test]
fn same_seed_and_epoch_give_the_same_bytes() {
    let d = tempfile::tempdir().unwrap();
    for fmt in ["binary", "lp", "json", "csv"] {
        let args = |seed: &'static str| {
            vec![
                "--format",
                fmt,
                "--seed",
                seed,
                "--epoch",
                "1000",
                "--records",
                "20000",
                "--conns",
                "3",
                "--rate",
                "50000",
            ]
        };
        let (a, report) = gen_bytes(d.path(), &args("7"));
        let (b, _) = gen_bytes(d.path(), &args("7"));
        let (c, _) = gen_bytes(d.path(), &args("8"));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{fmt}: same seed and epoch, different bytes");
        assert_ne!(a, c, "{fmt}: a different seed gives the same bytes");
        assert!(report.contains("wrote 20000 records"), "{report}");
        assert!(report.contains("expected"), "{report}");
    }
}

#[test]
fn ten_seconds_at_100k_per_second_is_exactly_a_million_records() {
    let d = tempfile::tempdir().unwrap();
    let (b, report) = gen_bytes(
        d.path(),
        &[
            "--rate",
            "100000",
            "--duration",
            "10s",
            "--epoch",
            "0",
            "--conns",
            "4",
        ],
    );
    assert_eq!(b.len(), 1_000_000 * 32);
    assert!(report.contains("wrote 1000000 records"), "{report}");
    // Ticks carry their intended send time: 10 µs apart over all
    // connections, the last one due before 10 s.
    let ts = |rec: &[u8]| i64::from_le_bytes(rec[..8].try_into().unwrap());
    let first_conn: Vec<i64> = b[..250_000 * 32].chunks(32).map(ts).collect();
    assert_eq!(first_conn[0], 0);
    assert_eq!(first_conn[1], 40_000, "4 connections: 40 µs apart each");
    assert!(*first_conn.last().unwrap() < 10_000_000_000);
}

#[test]
fn bad_arguments_are_one_line_errors() {
    for args in [
        &["--out", "/dev/null", "--rate", "fast"][..],
        &["--out", "/dev/null", "--duration", "10s"][..],
        &["--out", "/dev/null", "--conns", "0"][..],
    ] {
        let o = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("mutgen: "), "{e}");
    }
}
