//! `mutstream ctl`: the control API's client. Human output by default,
//! the API's JSON with `--json`. Exit codes (SPEC §2): 0 done, 1 refused
//! or failed, 2 usage, 69 the API cannot be reached.

use clap::{Parser, Subcommand};
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "mutstream ctl",
    about = "Change and inspect a running mutstream"
)]
pub struct CtlArgs {
    /// The admin API: HOST:PORT or http://HOST:PORT.
    #[arg(
        long,
        env = "MUTSTREAM_ADMIN",
        default_value = "127.0.0.1:9100",
        global = true
    )]
    pub admin: String,
    /// Print the API's JSON answer instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// A file holding the token (else MUTSTREAM_TOKEN).
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Refuse the change unless GEN is the running generation.
    #[arg(long, global = true, value_name = "GEN")]
    pub if_match: Option<u64>,
    /// Makes a retried change safe: the same key gets the first answer.
    #[arg(long, global = true, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// How long to wait for the answer.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub cmd: CtlCmd,
}

#[derive(Subcommand, Debug)]
pub enum CtlCmd {
    /// Generation, per-shard acknowledged generation, counters, last bad records.
    Status,
    /// Replace the pipeline; returns once every shard runs it.
    Apply {
        file: PathBuf,
        /// Switch at event time TIME (RFC 3339 or integer ns).
        #[arg(long, value_name = "TIME")]
        at: Option<String>,
    },
    /// Compile a pipeline against the running appliance; say which stages keep state.
    Check { file: PathBuf },
    /// Change a parameter: NAME=VALUE.
    Set {
        #[arg(value_name = "NAME=VALUE")]
        assignment: String,
    },
    /// Change a table: `put KEY COL=V ...`, `del KEY`, `load FILE.csv`.
    Table {
        name: String,
        #[command(subcommand)]
        action: TableCmd,
    },
    /// Every generation with time, author and change.
    History,
    /// Publish an earlier generation's definition again (default: the previous one).
    Rollback { generation: Option<u64> },
}

#[derive(Subcommand, Debug)]
pub enum TableCmd {
    /// Insert or update a row.
    Put {
        key: String,
        #[arg(value_name = "COL=VALUE")]
        cols: Vec<String>,
    },
    /// Delete a row.
    Del { key: String },
    /// Replace every row from a CSV file with a header row.
    Load { file: PathBuf },
}

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("cannot reach the admin API at {0}: {1}")]
    Unreachable(String, String),
    #[error("{0}")]
    Protocol(String),
}

/// A blocking client of the admin API.
pub struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(admin: &str, token: Option<String>, timeout: Duration) -> Client {
        let base = if admin.starts_with("http://") || admin.starts_with("https://") {
            admin.trim_end_matches('/').to_string()
        } else {
            format!("http://{admin}")
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Client { base, token, agent }
    }

    /// `method path` with `body`; the status and the JSON answer.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, String)],
    ) -> Result<(u16, Value), CallError> {
        let url = format!("{}{path}", self.base);
        let mut hs: Vec<(&str, String)> = headers.to_vec();
        if let Some(t) = &self.token {
            hs.push(("Authorization", format!("Bearer {t}")));
        }
        macro_rules! with_headers {
            ($rb:expr) => {{
                let mut rb = $rb;
                for (k, v) in &hs {
                    rb = rb.header(*k, v.as_str());
                }
                rb
            }};
        }
        let r = match method {
            "GET" => with_headers!(self.agent.get(&url)).call(),
            "DELETE" => with_headers!(self.agent.delete(&url)).call(),
            "PUT" => with_headers!(self.agent.put(&url)).send(body.unwrap_or_default()),
            _ => with_headers!(self.agent.post(&url)).send(body.unwrap_or_default()),
        };
        let mut resp = r.map_err(|e| CallError::Unreachable(self.base.clone(), e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| CallError::Protocol(format!("reading the answer: {e}")))?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }
}

/// `%`-encoding for a path segment or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn token(args: &CtlArgs) -> Result<Option<String>, String> {
    token_from(args.token_file.as_ref())
}

/// The token from `--token-file`, else `MUTSTREAM_TOKEN`.
pub fn token_from(file: Option<&PathBuf>) -> Result<Option<String>, String> {
    if let Some(f) = file {
        let t =
            std::fs::read_to_string(f).map_err(|e| format!("--token-file {}: {e}", f.display()))?;
        return Ok(Some(t.trim().to_string()));
    }
    Ok(std::env::var("MUTSTREAM_TOKEN")
        .ok()
        .filter(|t| !t.is_empty()))
}

fn us(ns: u64) -> String {
    format!("{:?}", Duration::from_nanos(ns))
}

/// The text a human reads for a successful answer.
fn human(cmd: &CtlCmd, v: &Value) -> String {
    match cmd {
        CtlCmd::Status => {
            let mut s = format!(
                "generation {} on {} shard{}",
                v["generation"],
                v["shards"].as_array().map_or(0, Vec::len),
                if v["shards"].as_array().map_or(0, Vec::len) == 1 {
                    ""
                } else {
                    "s"
                }
            );
            let acks: Vec<String> = v["shards"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|x| match x["armed"].as_u64() {
                    Some(a) => format!("shard {}: {} ({a} armed)", x["shard"], x["generation"]),
                    None => format!("shard {}: {}", x["shard"], x["generation"]),
                })
                .collect();
            s += &format!(" ({})\n", acks.join(", "));
            s += &format!("started: {}\n", v["started"].as_str().unwrap_or("?"));
            s += &format!("pipeline: {}\n", v["pipeline"].as_str().unwrap_or("?"));
            if let Some(p) = v["params"].as_object()
                && !p.is_empty()
            {
                let ps: Vec<String> = p.iter().map(|(k, x)| format!("${k} = {x}")).collect();
                s += &format!("params: {}\n", ps.join(", "));
            }
            if let Some(t) = v["tables"].as_object()
                && !t.is_empty()
            {
                let ts: Vec<String> = t.iter().map(|(k, x)| format!("@{k} {x} rows")).collect();
                s += &format!("tables: {}\n", ts.join(", "));
            }
            for src in v["sources"].as_array().into_iter().flatten() {
                let bad: u64 = src["bad"]
                    .as_object()
                    .map_or(0, |o| o.values().filter_map(Value::as_u64).sum());
                s += &format!(
                    "source {}: {} records, {} bad, {} kernel drops\n",
                    src["name"].as_str().unwrap_or("?"),
                    src["records"],
                    bad,
                    src["kernel_drops"]
                );
            }
            for b in v["bad_records"].as_array().into_iter().flatten() {
                s += &format!(
                    "bad record ({}, {}): {}\n",
                    b["source"].as_str().unwrap_or("?"),
                    b["reason"].as_str().unwrap_or("?"),
                    b["sample"].as_str().unwrap_or("")
                );
            }
            s.trim_end().to_string()
        }
        CtlCmd::Check { .. } => {
            let mut s = format!("ok: compiles against generation {}", v["generation"]);
            for st in v["stages"].as_array().into_iter().flatten() {
                let state = match st["state"].as_str().unwrap_or("") {
                    "kept" => "keeps its state",
                    "fresh" => "starts with empty state",
                    "flushed" => "removed: flushes what it holds",
                    _ => "no state",
                };
                s += &format!(
                    "\n  {} ({}): {state}",
                    st["stage"].as_str().unwrap_or("?"),
                    st["op"].as_str().unwrap_or("?")
                );
            }
            s
        }
        CtlCmd::History => {
            let mut s = String::from(
                "GEN   TIME                      AUTHOR      OP           RESULT     CHANGE\n",
            );
            for e in v["history"].as_array().into_iter().flatten() {
                let at = e["at_ns"].as_u64().map_or("?".into(), |ns| {
                    humantime::format_rfc3339_millis(
                        std::time::UNIX_EPOCH + Duration::from_nanos(ns),
                    )
                    .to_string()
                });
                let what = match e["error"].as_str() {
                    Some(err) => err.to_string(),
                    None => e["diff"].as_str().unwrap_or("").to_string(),
                };
                s += &format!(
                    "{:<5} {:<25} {:<11} {:<12} {:<10} {}\n",
                    e["generation"]
                        .as_u64()
                        .map_or("-".into(), |g| g.to_string()),
                    at,
                    e["author"].as_str().unwrap_or("?"),
                    e["op"].as_str().unwrap_or("?"),
                    e["result"].as_str().unwrap_or("?"),
                    what
                );
            }
            s.trim_end().to_string()
        }
        _ => {
            let replay = if v["replayed"].as_bool() == Some(true) {
                " (an earlier answer to the same Idempotency-Key)"
            } else {
                ""
            };
            if let Some(t) = v["switch_at_rfc3339"].as_str() {
                return format!(
                    "generation {} is armed on every shard (in {}) to switch at {t}: {}{replay}",
                    v["generation"],
                    v["acked_ns"].as_u64().map_or("?".into(), us),
                    v["diff"].as_str().unwrap_or("")
                );
            }
            format!(
                "generation {} runs on every shard (acknowledged in {}): {}{replay}",
                v["generation"],
                v["acked_ns"].as_u64().map_or("?".into(), us),
                v["diff"].as_str().unwrap_or("")
            )
        }
    }
}

/// Runs `mutstream ctl`.
pub fn main(args: CtlArgs) -> ExitCode {
    match run(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mutstream ctl: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(args: &CtlArgs) -> Result<ExitCode, String> {
    let client = Client::new(&args.admin, token(args)?, args.timeout);
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (method, path, body): (&str, String, Option<Vec<u8>>) = match &args.cmd {
        CtlCmd::Status => ("GET", "/v1/status".into(), None),
        CtlCmd::History => ("GET", "/v1/history".into(), None),
        CtlCmd::Apply { file, at } => {
            let mut q = format!(
                "/v1/pipeline?origin={}",
                encode(&file.display().to_string())
            );
            if let Some(t) = at {
                q += &format!("&at={}", encode(t));
            }
            ("POST", q, Some(read(file)?))
        }
        CtlCmd::Check { file } => (
            "POST",
            format!(
                "/v1/pipeline?dry_run=1&origin={}",
                encode(&file.display().to_string())
            ),
            Some(read(file)?),
        ),
        CtlCmd::Set { assignment } => {
            let Some((name, value)) = assignment.split_once('=') else {
                eprintln!("mutstream ctl: set takes NAME=VALUE, not {assignment:?}");
                return Ok(ExitCode::from(2));
            };
            let name = name.trim().trim_start_matches('$');
            (
                "PUT",
                format!("/v1/params/{}", encode(name)),
                Some(serde_json::to_vec(&serde_json::json!({"value": value})).expect("json")),
            )
        }
        CtlCmd::Table { name, action } => {
            let name = name.trim_start_matches('@');
            match action {
                TableCmd::Put { key, cols } => {
                    let mut o = serde_json::Map::new();
                    for c in cols {
                        let Some((k, v)) = c.split_once('=') else {
                            eprintln!("mutstream ctl: table put takes COL=VALUE, not {c:?}");
                            return Ok(ExitCode::from(2));
                        };
                        o.insert(k.to_string(), Value::String(v.to_string()));
                    }
                    (
                        "PUT",
                        format!("/v1/tables/{}/{}", encode(name), encode(key)),
                        Some(serde_json::to_vec(&Value::Object(o)).expect("json")),
                    )
                }
                TableCmd::Del { key } => (
                    "DELETE",
                    format!("/v1/tables/{}/{}", encode(name), encode(key)),
                    None,
                ),
                TableCmd::Load { file } => (
                    "POST",
                    format!("/v1/tables/{}", encode(name)),
                    Some(read(file)?),
                ),
            }
        }
        CtlCmd::Rollback { generation } => (
            "POST",
            "/v1/rollback".into(),
            Some(
                serde_json::to_vec(&match generation {
                    Some(g) => serde_json::json!({ "generation": g }),
                    None => serde_json::json!({}),
                })
                .expect("json"),
            ),
        ),
    };
    let mut headers = Vec::new();
    if let Some(g) = args.if_match {
        headers.push(("If-Match", g.to_string()));
    }
    if let Some(k) = &args.idempotency_key {
        headers.push(("Idempotency-Key", k.clone()));
    }
    let (status, v) = match client.call(method, &path, body, &headers) {
        Ok(x) => x,
        Err(e @ CallError::Unreachable(..)) => {
            eprintln!("mutstream ctl: {e}");
            return Ok(ExitCode::from(69));
        }
        Err(e) => return Err(e.to_string()),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&v).expect("json"));
    }
    if (200..300).contains(&status) {
        if !args.json {
            println!("{}", human(&args.cmd, &v));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !args.json {
        let msg = v["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        // A pipeline error comes rendered: its headline, then the source
        // line with a caret.
        match v["rendered"].as_str() {
            Some(r) => eprintln!("mutstream ctl: {}", r.trim_end()),
            None => eprintln!("mutstream ctl: {msg}"),
        }
    }
    Ok(ExitCode::from(1))
}

/// The API's error line, or its whole answer when it has none.
fn api_error(v: &Value) -> String {
    v["error"]
        .as_str()
        .map_or_else(|| v.to_string(), str::to_string)
}

/// `mutstream tap`.
#[derive(Parser, Debug)]
#[command(
    name = "mutstream tap",
    about = "Print live records leaving a stage, as JSON lines"
)]
pub struct TapArgs {
    /// The stage (its label, or `sN` for the N-th unlabelled one; `ctl check` lists them).
    pub stage: String,
    /// Stop after N records.
    #[arg(short = 'n', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// How often to fetch, and the period the limit applies to.
    #[arg(short = 'i', long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// At most K records per interval (over all shards).
    #[arg(short = 'l', long, default_value_t = 100, value_name = "K")]
    pub limit: u32,
    /// The admin API: HOST:PORT or http://HOST:PORT.
    #[arg(long, env = "MUTSTREAM_ADMIN", default_value = "127.0.0.1:9100")]
    pub admin: String,
    /// A file holding the token (else MUTSTREAM_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// Runs `tap`: 0 after N records or Ctrl-C, 1 refused (no such stage),
/// 69 the API cannot be reached.
pub fn tap_main(args: TapArgs) -> ExitCode {
    match tap_run(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mutstream tap: {e}");
            ExitCode::from(1)
        }
    }
}

fn tap_run(args: &TapArgs) -> Result<ExitCode, String> {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    }
    let client = Client::new(
        &args.admin,
        token_from(args.token_file.as_ref())?,
        Duration::from_secs(10),
    );
    let interval_ms = args.interval.as_millis().clamp(10, 60_000) as u64;
    let body = serde_json::json!({
        "stage": args.stage,
        "limit": args.limit,
        "interval_ms": interval_ms,
    });
    // Unreachable: exit 69 (SPEC §2); any other failure: exit 1.
    let call =
        |method: &str, path: &str, body: Option<Vec<u8>>| client.call(method, path, body, &[]);
    let failed = |e: CallError| match e {
        CallError::Unreachable(..) => {
            eprintln!("mutstream tap: {e}");
            Ok(ExitCode::from(69))
        }
        CallError::Protocol(m) => Err(m),
    };
    let (status, v) = match call(
        "POST",
        "/v1/tap",
        Some(serde_json::to_vec(&body).expect("json")),
    ) {
        Ok(x) => x,
        Err(e) => return failed(e),
    };
    if status != 200 {
        return Err(api_error(&v));
    }
    let id = v["tap"].as_u64().ok_or("the answer names no tap")?;
    let fields: Vec<String> = v["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| Some(format!("{}:{}", f[0].as_str()?, f[1].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    eprintln!(
        "mutstream tap: stage {} of generation {} ({}); at most {} records per {:?}; Ctrl-C stops",
        args.stage,
        v["generation"],
        fields.join(", "),
        args.limit,
        args.interval
    );
    let path = format!("/v1/tap/{id}");
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    let mut next = std::time::Instant::now();
    let code = 'outer: loop {
        if stop.load(Ordering::Relaxed) {
            break ExitCode::SUCCESS;
        }
        next += args.interval;
        let (status, v) = match call("GET", &path, None) {
            Ok(x) => x,
            Err(e) => return failed(e),
        };
        if status != 200 {
            return Err(api_error(&v));
        }
        for r in v["records"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            if args.count.is_some_and(|n| printed >= n) {
                break;
            }
            // A closed pipe (`| head`) ends the tap quietly.
            if writeln!(out, "{r}").is_err() {
                break 'outer ExitCode::SUCCESS;
            }
            printed += 1;
        }
        let _ = out.flush();
        if let Some(d) = v["dropped"].as_u64().filter(|&d| d > 0) {
            eprintln!("mutstream tap: {d} records over the limit were not shown");
        }
        if args.count.is_some_and(|n| printed >= n) {
            break ExitCode::SUCCESS;
        }
        // Sleep to the next interval in small steps, to see Ctrl-C.
        while std::time::Instant::now() < next && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(
                next.saturating_duration_since(std::time::Instant::now())
                    .min(Duration::from_millis(50)),
            );
        }
    };
    let _ = client.call("DELETE", &path, None, &[]);
    Ok(code)
}
