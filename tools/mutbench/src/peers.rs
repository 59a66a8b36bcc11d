//! `mutbench peers`: WORKLOADS.md W1 with a `file` sink through mutstream
//! and through its peers (syslog-ng, rsyslog, Vector, Fluent Bit), each a
//! separate process fed the same seeded bytes over the same loopback
//! connections, in one run.
//!
//! Each system gets its configuration from `tools/peers/` (ports, output
//! file and work directory substituted), and a run is timed from the first
//! byte sent until its output file holds every record P1 passes; CPU is
//! the process's own utime + stime (all its threads) from /proc/PID/stat
//! over the same interval. A run whose output holds fewer or more lines
//! than expected fails. syslog-ng and rsyslog are Debian packages that
//! conflict, so with `--install` each is installed just before its turn.

use anyhow::{Context, bail};
use std::io::{Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A system under comparison.
pub struct Peer {
    pub name: &'static str,
    /// Its executable, looked up on PATH (mutstream: beside mutbench).
    bin: &'static str,
    /// The Debian package providing `bin`, when there is one.
    package: Option<&'static str>,
    /// Files of `tools/peers/` rendered into the run directory; the first
    /// is the configuration.
    files: &'static [&'static str],
}

pub const PEERS: &[Peer] = &[
    Peer {
        name: "mutstream",
        bin: "mutstream",
        package: None,
        files: &["mutstream.toml"],
    },
    Peer {
        name: "syslog-ng",
        bin: "syslog-ng",
        package: Some("syslog-ng-core"),
        files: &["syslog-ng.conf"],
    },
    Peer {
        name: "rsyslog",
        bin: "rsyslogd",
        package: Some("rsyslog"),
        files: &["rsyslog.conf"],
    },
    Peer {
        name: "vector",
        bin: "vector",
        package: None,
        files: &["vector.toml"],
    },
    Peer {
        name: "fluent-bit",
        bin: "fluent-bit",
        package: None,
        files: &["fluent-bit.conf", "fluent-bit.lua"],
    },
];

impl Peer {
    fn exe(&self) -> Option<PathBuf> {
        if self.name == "mutstream" {
            let p = std::env::current_exe().ok()?.with_file_name("mutstream");
            return p.is_file().then_some(p);
        }
        on_path(self.bin)
    }

    fn command(&self, exe: &Path, dir: &Path) -> Command {
        let conf = dir.join(self.files[0]);
        let mut c = Command::new(exe);
        match self.name {
            "mutstream" => c.arg("run").arg("--config").arg(&conf),
            "syslog-ng" => c
                .args(["-F", "--no-caps", "-f"])
                .arg(&conf)
                .arg("-R")
                .arg(dir.join("persist"))
                .arg("-p")
                .arg(dir.join("pid"))
                .arg("-c")
                .arg(dir.join("ctl")),
            "rsyslog" => c
                .args(["-n", "-f"])
                .arg(&conf)
                .arg("-i")
                .arg(dir.join("pid")),
            "vector" => c.arg("--quiet").arg("--config").arg(&conf),
            _ => c.arg("-c").arg(&conf),
        };
        c
    }

    fn version(&self, exe: &Path) -> String {
        let flag = match self.name {
            "rsyslog" => "-v",
            _ => "--version",
        };
        Command::new(exe)
            .arg(flag)
            .output()
            .ok()
            .and_then(|o| {
                let s = String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr);
                // The first token that reads as a version: "3.38.1" out of
                // "syslog-ng 3 (3.38.1)", "8.2302.0" out of "rsyslogd  8.2302.0 (aka ...".
                s.split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == 'v')
                    .find(|t| t.contains('.') && t.starts_with(|c: char| c.is_ascii_digit()))
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "?".into())
    }
}

fn on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}

/// `apt-get install PACKAGE`, directly as root, otherwise through sudo.
fn install(package: &str) -> anyhow::Result<()> {
    eprintln!("peers: installing {package} from Debian");
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let apt = |args: &[&str]| {
        let mut c = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        c.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
    };
    let _ = apt(&["update", "-qq"]);
    let st = apt(&["install", "-y", "-qq", package]).context("apt-get")?;
    if !st.success() {
        bail!("apt-get install {package} failed ({st})");
    }
    Ok(())
}

/// utime + stime of process `pid`, all its threads, in seconds.
fn process_cpu(pid: u32) -> f64 {
    crate::stat_cpu(&format!("/proc/{pid}/stat"))
}

/// Counts the lines of a growing file incrementally.
struct LineCounter {
    path: PathBuf,
    at: u64,
    lines: u64,
    buf: Vec<u8>,
}

impl LineCounter {
    fn new(path: PathBuf) -> LineCounter {
        LineCounter {
            path,
            at: 0,
            lines: 0,
            buf: vec![0; 1 << 20],
        }
    }

    fn poll(&mut self) -> u64 {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return self.lines;
        };
        if f.seek(SeekFrom::Start(self.at)).is_err() {
            return self.lines;
        }
        while let Ok(n) = f.read(&mut self.buf) {
            if n == 0 {
                break;
            }
            self.at += n as u64;
            self.lines += self.buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        }
        self.lines
    }
}

/// A running system; killed (SIGTERM, then SIGKILL) when dropped.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: kill on a child we spawned and have not reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn render(peer: &Peer, dir: &Path, port: u16, out: &Path) -> anyhow::Result<()> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peers");
    for f in peer.files {
        let text = std::fs::read_to_string(src.join(f))
            .with_context(|| format!("{}", src.join(f).display()))?;
        let text = text
            .replace("@PORT@", &port.to_string())
            .replace("@OUT@", &out.display().to_string())
            .replace("@DIR@", &dir.display().to_string());
        std::fs::write(dir.join(f), text)?;
    }
    Ok(())
}

/// One timed run of `peer`.
pub struct PeerRun {
    pub secs: f64,
    pub cpu_secs: f64,
}

/// The seeded bytes of one run: per connection, its block of `unique`
/// records and the number of records it sends.
pub struct Load<'a> {
    pub blocks: &'a [Vec<u8>],
    pub unique: u64,
    pub per_conn: Vec<u64>,
    pub expected: u64,
}

fn run_once(peer: &Peer, exe: &Path, load: &Load) -> anyhow::Result<PeerRun> {
    let dir = std::env::temp_dir().join(format!(
        "mutbench-peer-{}-{}",
        peer.name,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let res = run_in(peer, exe, load, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    res
}

fn run_in(peer: &Peer, exe: &Path, load: &Load, dir: &Path) -> anyhow::Result<PeerRun> {
    let port = free_port()?;
    let out = dir.join("out.jsonl");
    render(peer, dir, port, &out)?;
    let log = dir.join("log");
    let logf = std::fs::File::create(&log)?;
    let child = peer
        .command(exe, dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let mut running = Running { child, log };
    let pid = running.child.id();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // Ready when the port accepts (the probe connection sends nothing).
    let t = Instant::now();
    loop {
        if TcpStream::connect(addr).is_ok() {
            break;
        }
        if let Ok(Some(st)) = running.child.try_wait() {
            bail!("{} exited ({st}): {}", peer.name, running.log_tail());
        }
        if t.elapsed() > Duration::from_secs(20) {
            bail!(
                "{} did not listen on {addr} within 20 s: {}",
                peer.name,
                running.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut socks: Vec<TcpStream> = (0..load.blocks.len())
        .map(|_| TcpStream::connect(addr))
        .collect::<Result<_, _>>()?;
    let sender_core = core_affinity::get_core_ids()
        .unwrap_or_default()
        .last()
        .copied();
    let cpu0 = process_cpu(pid);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (c, sock) in socks.iter_mut().enumerate() {
            let (data, n, unique) = (&load.blocks[c], load.per_conn[c], load.unique);
            s.spawn(move || {
                if let Some(core) = sender_core {
                    core_affinity::set_for_current(core);
                }
                crate::send_block(sock, crate::Workload::W1, data, unique, n).expect("send");
            });
        }
    });
    drop(socks);
    let mut counter = LineCounter::new(out);
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        let n = counter.poll();
        if n >= load.expected {
            break;
        }
        if n != last {
            (last, last_change) = (n, Instant::now());
        }
        if let Ok(Some(st)) = running.child.try_wait() {
            bail!(
                "{} exited ({st}) with {n} of {} records written: {}",
                peer.name,
                load.expected,
                running.log_tail()
            );
        }
        if last_change.elapsed() > Duration::from_secs(30) {
            bail!(
                "{} wrote {n} of {} expected records and nothing for 30 s",
                peer.name,
                load.expected
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu_secs = process_cpu(pid) - cpu0;
    // Anything beyond the expected count is a duplicate.
    std::thread::sleep(Duration::from_millis(1500));
    let n = counter.poll();
    if n != load.expected {
        bail!(
            "{} wrote {n} records, {} expected",
            peer.name,
            load.expected
        );
    }
    drop(running);
    Ok(PeerRun { secs, cpu_secs })
}

/// A system's median figures.
pub struct Row {
    pub name: &'static str,
    pub version: String,
    pub rate: f64,
    pub per_cpu: f64,
}

/// Runs every selected system `runs` times on `load`; a system missing
/// from the machine is reported and skipped, a failed run fails.
pub fn run(
    names: &[String],
    load: &Load,
    records: u64,
    runs: usize,
    install_missing: bool,
) -> anyhow::Result<(Vec<Row>, Vec<String>)> {
    let (mut rows, mut skipped) = (Vec::new(), Vec::new());
    for peer in PEERS.iter().filter(|p| names.iter().any(|n| n == p.name)) {
        let mut exe = peer.exe();
        if exe.is_none()
            && install_missing
            && let Some(pkg) = peer.package
        {
            install(pkg)?;
            exe = peer.exe();
        }
        let Some(exe) = exe else {
            let why = match (peer.name, peer.package) {
                ("mutstream", _) => {
                    "mutstream is not built beside mutbench (cargo build --release --workspace)"
                        .to_string()
                }
                (_, Some(pkg)) => format!(
                    "{} is not installed (Debian package {pkg}; tools/bench.sh --peers installs it)",
                    peer.bin
                ),
                _ => format!("{} is not on the PATH", peer.bin),
            };
            eprintln!("peers: skipping {}: {why}", peer.name);
            skipped.push(format!("{}: {why}", peer.name));
            continue;
        };
        let version = peer.version(&exe);
        let (mut rate, mut per_cpu) = (Vec::new(), Vec::new());
        for r in 0..runs {
            let res = run_once(peer, &exe, load)?;
            eprintln!(
                "peers: {} ({version}) run {}: {records} records in {:.3} s = {:.0} rec/s, {:.0} rec per CPU-s ({:.2} CPU-s), {} written as expected",
                peer.name,
                r + 1,
                res.secs,
                records as f64 / res.secs,
                records as f64 / res.cpu_secs,
                res.cpu_secs,
                load.expected
            );
            rate.push(records as f64 / res.secs);
            per_cpu.push(records as f64 / res.cpu_secs);
        }
        rows.push(Row {
            name: peer.name,
            version,
            rate: crate::median(&mut rate),
            per_cpu: crate::median(&mut per_cpu),
        });
    }
    Ok((rows, skipped))
}
