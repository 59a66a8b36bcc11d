//! `mutstream demo` under a pseudo-terminal, as a newcomer runs it: the
//! live table is drawn in place, at least 4 mutations are applied while
//! records flow, the run exits 0, and its summary accounts for every
//! record sent (0 unaccounted). Ctrl-C (SIGINT) stops it early, cleanly,
//! with the same accounting.

mod process;

use process::BIN;
use process::pty::OnPty;
use std::process::Command;
use std::time::Duration;

/// The summary's count on the line starting with `what`.
fn figure(out: &str, what: &str) -> i64 {
    let line = out
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with(what))
        .unwrap_or_else(|| panic!("no {what:?} line in:\n{out}"));
    line[what.len()..]
        .split_whitespace()
        .next()
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no number on {line:?}"))
}

fn check_accounting(out: &str) {
    let sent = figure(out, "sent");
    assert!(sent > 0, "nothing sent:\n{out}");
    assert_eq!(figure(out, "unaccounted"), 0, "{out}");
    let parts: i64 = [
        "journaled",
        "routed",
        "filtered out",
        "into windows",
        "dropped",
    ]
    .iter()
    .map(|w| figure(out, w))
    .sum();
    assert_eq!(
        parts, sent,
        "the parts do not add up to what was sent:\n{out}"
    );
}

#[test]
fn demo_runs_on_a_terminal_and_accounts_for_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let p = OnPty::spawn(&["demo", "--duration", "10s", "--rate", "20k"], dir.path());
    let (code, out) = p.finish(Duration::from_secs(90));
    assert_eq!(code, 0, "{out}");
    // Drawn in place: the cursor moves up over the previous table.
    assert!(
        out.contains("\x1b[") && out.contains("latency, last"),
        "{out}"
    );
    let applied = out
        .lines()
        .find_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("mutstream demo: done after ")?;
            rest.split("; ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or_else(|| panic!("no summary line:\n{out}"));
    assert!(applied >= 4, "{applied} mutations applied:\n{out}");
    for what in [
        "set min_price = 50",
        "table watchlist put 4",
        "apply ticks-vwap.mts",
        "rollback",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains(what) && l.contains("→ generation")),
            "{what} was not applied:\n{out}"
        );
    }
    check_accounting(&out);
    // The VWAP generation aggregated records into windows.
    assert!(figure(&out, "into windows") > 0, "{out}");
    // What it journaled reads back.
    let journal = dir.path().join("mutstream-data/demo/journal");
    let read = Command::new(BIN)
        .arg("read")
        .arg(&journal)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    let rows = String::from_utf8_lossy(&read.stdout)
        .lines()
        .filter(|l| l.contains("\"seq\""))
        .count() as i64;
    assert_eq!(rows, figure(&out, "journaled"), "{out}");
}

#[test]
fn ctrl_c_stops_the_demo_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = OnPty::spawn(&["demo", "--duration", "60s", "--rate", "20k"], dir.path());
    p.until(Duration::from_secs(30), |t| t.contains("latency, last"));
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: signals our own child by its pid.
    unsafe { libc::kill(p.child.id() as i32, libc::SIGINT) };
    let (code, out) = p.finish(Duration::from_secs(30));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("stopped by a signal"), "{out}");
    check_accounting(&out);
}
