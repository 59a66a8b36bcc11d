//! `mutstream demo` under a pseudo-terminal, as a newcomer runs it: the
//! live table is drawn in place, at least 4 mutations are applied while
//! records flow, the run exits 0, and its summary accounts for every
//! record sent (0 unaccounted). Ctrl-C (SIGINT) stops it early, cleanly,
//! with the same accounting.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mutstream");

/// A child on a fresh pseudo-terminal, and everything it printed.
struct OnPty {
    child: Child,
    out: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl OnPty {
    fn spawn(args: &[&str], dir: &std::path::Path) -> OnPty {
        let (mut master, mut slave) = (0, 0);
        let ws = libc::winsize {
            ws_row: 50,
            ws_col: 160,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two fds into the given ints; the name and
        // termios pointers may be null, `ws` outlives the call.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &ws,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: `master` was just opened by openpty and is owned here.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        // SAFETY: as above, for `slave`.
        let slave = unsafe { OwnedFd::from_raw_fd(slave) };
        let child = Command::new(BIN)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut m = std::fs::File::from(master);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child and every copy of the slave are gone.
            while let Ok(n) = m.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        OnPty {
            child,
            out: rx,
            seen: Vec::new(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Collects output until `pred` holds on it, or panics after `limit`.
    fn until(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) {
        let end = Instant::now() + limit;
        while !pred(&self.text()) {
            let left = end.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out; output so far:\n{}",
                self.text()
            );
            if let Ok(b) = self.out.recv_timeout(left.min(Duration::from_millis(200))) {
                self.seen.extend(b);
            }
        }
    }

    /// Waits for the exit and the last output.
    fn finish(mut self, limit: Duration) -> (i32, String) {
        let end = Instant::now() + limit;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("did not exit in {limit:?}; output:\n{}", self.text());
            }
            while let Ok(b) = self.out.try_recv() {
                self.seen.extend(b);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(b) = self.out.recv_timeout(Duration::from_millis(500)) {
            self.seen.extend(b);
        }
        (status.code().unwrap_or(-1), self.text())
    }
}

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
