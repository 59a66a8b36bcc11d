//! A child process on a fresh pseudo-terminal, as a person runs it.

use super::BIN;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child on a fresh pseudo-terminal, and everything it printed.
pub struct OnPty {
    pub child: Child,
    /// The terminal's input side: what is written here, the child reads.
    keys: std::fs::File,
    out: std::sync::mpsc::Receiver<Vec<u8>>,
    seen: Vec<u8>,
}

impl OnPty {
    pub fn spawn(args: &[&str], dir: &std::path::Path) -> OnPty {
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
        let keys = std::fs::File::from(master.try_clone().unwrap());
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
            keys,
            out: rx,
            seen: Vec::new(),
        }
    }

    /// Types `s` on the terminal.
    pub fn type_keys(&mut self, s: &str) {
        self.keys.write_all(s.as_bytes()).unwrap();
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Collects output until `pred` holds on it, or panics after `limit`.
    pub fn until(&mut self, limit: Duration, pred: impl Fn(&str) -> bool) {
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
    pub fn finish(mut self, limit: Duration) -> (i32, String) {
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
