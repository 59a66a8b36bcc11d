//! Coordinated omission, end to end: `mutgen` sends ticks at a fixed rate
//! over TCP with small socket buffers, the appliance is SIGSTOPped for 2 s,
//! and `mutlat` measures from the intended send time: the stall shows at
//! p99.9 and max, beside the figure from the actual send time, which hides
//! most of it. Nothing is lost. Then `mutlat` reads its `.hgrm` back to
//! the same percentiles and its plot is a non-empty SVG.
//!
//! The appliance and `mutgen` are the workspace's own binaries, built by
//! the same `cargo test`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MUTLAT: &str = env!("CARGO_BIN_EXE_mutlat");

/// A binary of the workspace, beside this test's own target directory.
fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} is not built (cargo build --workspace)",
        p.display()
    );
    p
}

fn signal(pid: u32, sig: i32) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

/// The row named `name` of a mutlat table: records, p50 .. max (µs).
fn row(out: &str, name: &str) -> Vec<f64> {
    let l = out
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no {name:?} row in:\n{out}"));
    l[name.len() + l.find(name).unwrap()..]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

fn mutlat(dir: &Path, args: &[&str]) -> String {
    let o = Command::new(MUTLAT)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "mutlat {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn a_stalled_appliance_shows_in_latency_from_the_intended_send_time() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("co.toml"),
        r#"
[admin]
listen = "127.0.0.1:0"
[runtime]
shards = 1
[schemas.tick]
size = 32
fields = [
  { name = "ts", type = "timestamp", offset = 0 }, { name = "seq", type = "u64", offset = 8 },
  { name = "symbol", type = "u32", offset = 16 }, { name = "qty", type = "i32", offset = 20 },
  { name = "price", type = "f64", offset = 24 },
]
[[source]]
name = "t"
transport = "tcp"
listen = "127.0.0.1:0"
framing = "fixed"
format = "binary"
schema = "tick"
rcvbuf_bytes = "16KiB"
[pipeline]
text = "to j"
[[sink]]
name = "j"
kind = "journal"
path = "./j"
segment_size = "16MiB"
"#,
    )
    .unwrap();
    let mut app = Command::new(bin("mutstream"))
        .args(["run", "--config", "co.toml"])
        .current_dir(d.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(app.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let mut l = String::new();
        assert!(err.read_line(&mut l).unwrap() > 0 && Instant::now() < deadline);
        if let Some(a) = l.split("listening on tcp ").nth(1) {
            break a.split_whitespace().next().unwrap().to_string();
        }
    };
    let tail = std::thread::spawn(move || err.lines().map_while(Result::ok).collect::<Vec<_>>());
    let rate = 10_000u64;
    let secs = 6u64;
    let sender = Command::new(bin("mutgen"))
        .args(["--addr", &addr, "--rate", &rate.to_string()])
        .args(["--duration", &format!("{secs}s"), "--sndbuf", "4096"])
        .args(["--sent-log", "sent.bin", "--quiet"])
        .current_dir(d.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1_500));
    signal(app.id(), 19); // SIGSTOP
    std::thread::sleep(Duration::from_secs(2));
    signal(app.id(), 18); // SIGCONT
    let g = sender.wait_with_output().unwrap();
    let report = String::from_utf8_lossy(&g.stdout).into_owned();
    assert!(g.status.success(), "{report}");
    assert!(report.contains("fell behind its schedule"), "{report}");
    std::thread::sleep(Duration::from_millis(300));
    signal(app.id(), 15);
    let st = app.wait().unwrap();
    let log = tail.join().unwrap();
    assert!(st.success(), "{st}: {}", log.join("\n"));

    let out = mutlat(
        d.path(),
        &[
            "j",
            "--sent-log",
            "sent.bin",
            "--hgrm",
            "co.hgrm",
            "--plot",
            "co.svg",
        ],
    );
    println!("{out}");
    let sent = rate * secs;
    assert!(
        out.contains(&format!("of {sent} records")),
        "every record arrived:\n{out}"
    );
    let intended = row(&out, "commit_ns - ts");
    let actual = row(&out, "commit_ns - sent");
    // records, p50, p90, p99, p99.9, p99.99, max
    assert_eq!(intended[0] as u64, sent);
    assert!(intended[4] >= 1_500_000.0, "p99.9 {} µs", intended[4]);
    assert!(intended[6] >= 1_500_000.0, "max {} µs", intended[6]);
    // From the actual send time, only what sat in the small buffers sees
    // the stall: the bulk of it hides (p90 here).
    assert!(
        actual[2] * 10.0 < intended[2],
        "from the actual send time the stall mostly hides: p90 {} vs {} µs",
        actual[2],
        intended[2]
    );

    // The .hgrm reads back to the same percentiles.
    let back = mutlat(d.path(), &["--read", "co.hgrm"]);
    assert_eq!(row(&back, "co")[1..], intended[1..], "{back}");
    // The plot is an SVG with content.
    let svg = std::fs::read_to_string(d.path().join("co.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(
        svg.len() > 2_000 && svg.contains("polyline"),
        "{} bytes",
        svg.len()
    );
    // Two files overlay on one plot.
    std::fs::copy(d.path().join("co.hgrm"), d.path().join("again.hgrm")).unwrap();
    let both = mutlat(
        d.path(),
        &[
            "--read",
            "co.hgrm",
            "--read",
            "again.hgrm",
            "--plot",
            "both.svg",
        ],
    );
    assert!(both.contains("again"), "{both}");
    assert!(std::fs::metadata(d.path().join("both.svg")).unwrap().len() > 2_000);
}
