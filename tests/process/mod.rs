//! Test support: a real `mutstream run` as a child process, its log
//! read line by line, its admin and data addresses taken from the log.
#![allow(dead_code)]

pub mod pty;

use mutstream::control::client::Client;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mutstream");

/// The tick schema (32-byte `loadgen::Tick`) and a TCP source `t` of it
/// on an ephemeral port, as config text.
pub const TICK_SOURCE: &str = r#"[schemas.tick]
size = 32
fields = [
  { name = "ts",     type = "timestamp", offset = 0 },
  { name = "seq",    type = "u64",       offset = 8 },
  { name = "symbol", type = "u32",       offset = 16 },
  { name = "qty",    type = "i32",       offset = 20 },
  { name = "price",  type = "f64",       offset = 24 },
]
[[source]]
name = "t"
transport = "tcp"
listen = "127.0.0.1:0"
framing = "fixed"
format = "binary"
schema = "tick"
"#;

/// `mutstream run --config m.toml` in a directory, started and ready:
/// the first TCP source and the admin API listen, generation 1 runs.
pub struct App {
    pub child: Child,
    lines: Receiver<String>,
    pub log: Vec<String>,
    pub admin: SocketAddr,
    pub data: SocketAddr,
}

impl App {
    pub fn start(dir: &Path, extra: &[&str]) -> App {
        let mut child = Command::new(BIN)
            .args(["run", "--config", "m.toml"])
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, rx) = channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut a = App {
            child,
            lines: rx,
            log: Vec::new(),
            admin: "127.0.0.1:1".parse().unwrap(),
            data: "127.0.0.1:1".parse().unwrap(),
        };
        let addr = |l: &str, after: &str| -> SocketAddr {
            l.split(after)
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let l = a.wait_for("listening on tcp");
        a.data = addr(&l, "listening on tcp ");
        let l = a.wait_for("admin API on http://");
        a.admin = addr(&l, "admin API on http://");
        a.wait_for("running generation");
        a
    }

    pub fn wait_for(&mut self, what: &str) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(what)) {
            return l.clone();
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.log.push(l.clone());
                if l.contains(what) {
                    return l;
                }
            }
        }
        panic!("no log line with {what:?}:\n{}", self.log.join("\n"));
    }

    pub fn client(&self, token: Option<&str>) -> Client {
        Client::new(
            &self.admin.to_string(),
            token.map(str::to_string),
            Duration::from_secs(10),
        )
    }

    pub fn stop(mut self) -> Vec<String> {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let st = self.child.wait().unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.log.push(l);
        }
        assert!(st.success(), "{}", self.log.join("\n"));
        self.log
    }
}
