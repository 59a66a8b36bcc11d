//! A journal on a small tmpfs that fills up (RELIABILITY.md test 9): no
//! SIGBUS, no corrupt frame, `on_full` applies and is counted, writing
//! resumes when space returns. The tmpfs is mounted in a private mount
//! namespace (`unshare -rm`), where a shell runs the appliance and fills
//! and frees the disk on command.

use mutstream::loadgen::Tick;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_mutstream");

/// The shell inside the namespace: $1 mount point, $2 config, $3 where
/// logs and read output go (outside the tmpfs).
const SCRIPT: &str = r#"
set -u
M=$1; CFG=$2; OUT=$3; BIN=$4
mount -t tmpfs -o size=32m tmpfs "$M" || { echo "mount failed"; exit 1; }
"$BIN" run --config "$CFG" 2> "$OUT/run.log" &
PID=$!
echo started
while read -r cmd; do
  case "$cmd" in
    fill) dd if=/dev/zero of="$M/filler" bs=64k 2>/dev/null; echo filled ;;
    free) rm -f "$M/filler"; echo freed ;;
    count) echo "count $("$BIN" read "$M/j" 2>>"$OUT/read.err" | wc -l)" ;;
    stop) kill -TERM $PID; wait $PID; echo "exit $?"
                    "$BIN" read "$M/j" > "$OUT/read.jsonl" 2>>"$OUT/read.err"; echo "read $?"; exit 0 ;;
  esac
done
# stdin closed (the test ended early): take the appliance down with us.
kill -KILL $PID 2>/dev/null
"#;

struct Ns {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    out: PathBuf,
}

impl Ns {
    fn cmd(&mut self, c: &str) -> String {
        let stdin = self.stdin.as_mut().expect("open until drop");
        writeln!(stdin, "{c}").unwrap();
        stdin.flush().unwrap();
        let mut l = String::new();
        self.stdout.read_line(&mut l).unwrap();
        l.trim().to_string()
    }

    fn count(&mut self) -> u64 {
        let l = self.cmd("count");
        l.strip_prefix("count ").unwrap().trim().parse().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.out.join("run.log")).unwrap_or_default()
    }

    /// The appliance's TCP address, from its log.
    fn addr(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(l) = self.log().lines().find(|l| l.contains("listening on tcp ")) {
                return l
                    .rsplit("tcp ")
                    .next()
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .into();
            }
            assert!(Instant::now() < deadline, "not listening: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        // EOF ends the script, which kills the appliance if still running.
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// Starts the namespace, or `None` where user namespaces are not allowed.
fn start(dir: &Path, on_full: &str) -> Option<Ns> {
    if !Command::new("unshare")
        .args(["-rm", "true"])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("unshare -rm is not permitted here; skipping");
        return None;
    }
    let mnt = dir.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let cfg = dir.join("disk.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[admin]
listen = "127.0.0.1:0"
[runtime]
shards = 1
batch_max = 256
state_dir = "{}/state"
[schemas.tick]
size = 32
fields = [
  {{ name = "ts", type = "timestamp", offset = 0 }},
  {{ name = "seq", type = "u64", offset = 8 }},
]
[[source]]
name = "t"
transport = "tcp"
listen = "127.0.0.1:0"
rcvbuf_bytes = "64KiB"
framing = "fixed"
format = "binary"
schema = "tick"
[pipeline]
text = "to j"
[[sink]]
name = "j"
kind = "journal"
path = "{}/j"
segment_size = "1MiB"
on_full = "{on_full}"
"#,
            dir.display(),
            mnt.display()
        ),
    )
    .unwrap();
    let mut child = Command::new("unshare")
        .args(["-rm", "sh", "-c", SCRIPT, "sh"])
        .arg(&mnt)
        .arg(&cfg)
        .arg(dir)
        .arg(BIN)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut l = String::new();
    stdout.read_line(&mut l).unwrap();
    assert_eq!(l.trim(), "started");
    Some(Ns {
        child,
        stdin: Some(stdin),
        stdout,
        out: dir.to_path_buf(),
    })
}

/// Sends ticks `from..to` on one connection (blocking when the appliance
/// stops reading).
fn send(addr: &str, from: u64, to: u64) -> std::thread::JoinHandle<()> {
    let addr = addr.to_string();
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        let mut buf = Vec::new();
        for seq in from..to {
            Tick {
                ts: 1,
                seq,
                symbol: 0,
                qty: 0,
                price: 0.0,
            }
            .encode(&mut buf);
            if buf.len() >= 64 * 32 {
                s.write_all(&buf).unwrap();
                buf.clear();
            }
        }
        s.write_all(&buf).unwrap();
    })
}

/// Polls the journal's record count until it stays put for `quiet`.
fn settle(ns: &mut Ns, quiet: Duration) -> u64 {
    let mut last = ns.count();
    let mut since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(60);
    while since.elapsed() < quiet {
        assert!(
            Instant::now() < deadline,
            "never settled; log: {}",
            ns.log()
        );
        std::thread::sleep(Duration::from_millis(100));
        let n = ns.count();
        if n != last {
            last = n;
            since = Instant::now();
        }
    }
    last
}

fn stop(ns: &mut Ns) -> Vec<u64> {
    assert_eq!(ns.cmd("stop"), "exit 0", "log: {}", ns.log());
    assert_eq!(ns.cmd("read 0").as_str(), "read 0");
    let _ = ns.child.wait();
    let err = std::fs::read_to_string(ns.out.join("read.err")).unwrap_or_default();
    assert!(err.is_empty(), "read reported: {err}");
    std::fs::read_to_string(ns.out.join("read.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["seq"].as_u64().unwrap()
        })
        .collect()
}

/// 19 MB of ticks: more than the socket buffers hold, less than the
/// tmpfs once it is freed.
const N: u64 = 600_000;

#[test]
fn full_disk_blocks_then_resumes_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut ns) = start(dir.path(), "block") else {
        return;
    };
    let addr = ns.addr();
    assert_eq!(ns.cmd("fill"), "filled");
    let sender = send(&addr, 0, N);
    // The current and the already reserved segment fill; then the worker
    // stops reading and the sender is held by TCP flow control.
    let held = settle(&mut ns, Duration::from_secs(1));
    assert!(held > 0 && held < N, "{held} of {N} before space returned");
    assert!(!sender.is_finished(), "the sender must be held back");
    assert!(
        ns.log().contains("cannot reserve the next segment"),
        "{}",
        ns.log()
    );
    assert_eq!(ns.cmd("free"), "freed");
    sender.join().unwrap();
    assert_eq!(settle(&mut ns, Duration::from_millis(500)), N);
    let seqs = stop(&mut ns);
    assert!(seqs.iter().copied().eq(0..N), "every record once, in order");
    let log = ns.log();
    assert!(
        log.contains(&format!("sink j: {N} records written")),
        "{log}"
    );
    eprintln!("full disk, block: held at {held} records until space returned, then all {N}");
}

#[test]
fn full_disk_drops_counted_then_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut ns) = start(dir.path(), "drop") else {
        return;
    };
    let addr = ns.addr();
    assert_eq!(ns.cmd("fill"), "filled");
    send(&addr, 0, N).join().unwrap();
    let kept = settle(&mut ns, Duration::from_millis(500));
    assert!(kept < N, "the disk is full: some must be dropped");
    assert_eq!(ns.cmd("free"), "freed");
    // Writing resumes once the journal thread has a segment again.
    std::thread::sleep(Duration::from_millis(300));
    send(&addr, N, N + 1_000).join().unwrap();
    let total = settle(&mut ns, Duration::from_millis(500));
    assert_eq!(
        total,
        kept + 1_000,
        "everything after space returned is kept"
    );
    let seqs = stop(&mut ns);
    assert_eq!(seqs.len() as u64, total);
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicate"
    );
    let log = ns.log();
    let dropped = N - kept;
    assert!(
        log.contains(&format!("dropped: {dropped} on full")),
        "delivered + dropped = sent; {log}"
    );
    eprintln!("full disk, drop: {kept} kept, {dropped} dropped and counted, then 1000 more kept");
}
