//! The `mutstream` command: parse arguments, load the config, hand over to
//! the library. Every error is one line on stderr and an exit code (SPEC
//! §2): 0 success, 1 invalid config/pipeline or runtime error, 2 usage.

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use mutstream::codec::Reason;
use mutstream::config::{Config, SinkKind, Transport};
use mutstream::runtime::Appliance;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "mutstream",
    version,
    about = "Single-node ingestion appliance with live-mutable pipelines"
)]
struct Cli {
    /// Log level: error, warn, info, debug, trace (default info; warn for
    /// `demo`, whose table owns the terminal).
    #[arg(long, global = true)]
    log_level: Option<String>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReadFormat {
    Json,
    Csv,
}

#[derive(Subcommand)]
enum Command {
    /// Run the appliance (the embedded default config without --config).
    Run {
        #[arg(long, env = "MUTSTREAM_CONFIG")]
        config: Option<PathBuf>,
        /// Start from the config files, not the last applied generation.
        #[arg(long)]
        fresh: bool,
    },
    /// Validate a config (and optionally a pipeline) and print the plan.
    Check {
        /// A pipeline file to check against --schema instead of the
        /// config's own pipeline.
        pipeline: Option<PathBuf>,
        #[arg(long)]
        config: PathBuf,
        /// The source schema to check PIPELINE against.
        #[arg(long)]
        schema: Option<String>,
    },
    /// Appliance, load generator and scripted live mutations in one process.
    Demo {
        /// How long to send (`20s`, `2m`); mutations are spread over it.
        #[arg(long, default_value = "30s")]
        duration: String,
        /// Records per second over UDP and TCP together (`50000`, `100k`, `1M`).
        #[arg(long, default_value = "100k")]
        rate: String,
        /// Journals and state of the demo (emptied first).
        #[arg(long, default_value = "./mutstream-data/demo")]
        dir: PathBuf,
    },
    /// Run a pipeline on given records without sockets and compare the
    /// output: `test P.mts --config F --schema S --input IN --expect OUT`,
    /// or `test CASES.toml`.
    Test {
        /// A pipeline file, or a CASES.toml of [[case]] tables.
        target: PathBuf,
        /// The config whose schemas, params and tables the pipeline uses.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The schema of the input records (a pipeline file only).
        #[arg(long)]
        schema: Option<String>,
        /// now() in ns since the epoch (also the ts of records without one).
        #[arg(long)]
        now: Option<i64>,
        /// Input records, JSON lines.
        #[arg(long)]
        input: Option<PathBuf>,
        /// Expected records, JSON lines, each with "_sink".
        #[arg(long)]
        expect: Option<PathBuf>,
    },
    /// Change and inspect a running appliance through its admin API.
    Ctl(mutstream::control::client::CtlArgs),
    /// Print journal records with `_gen`, `_shard`, `_seq`, `_ingest_ns`, `_commit_ns`.
    Read {
        /// A journal sink's directory (its `path`).
        dir: PathBuf,
        /// Keep printing records as they are committed, until SIGINT.
        #[arg(long)]
        follow: bool,
        /// Only partition SHARD, from sequence SEQ.
        #[arg(long, value_name = "SHARD:SEQ", conflicts_with = "since")]
        from: Option<String>,
        /// Records committed since TIME: RFC 3339, or a duration back from now (`10m`).
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Interleave partitions by ingest time (default: partition by partition).
        #[arg(long)]
        merge: bool,
        #[arg(long, value_enum, default_value = "json")]
        format: ReadFormat,
    },
    /// Live terminal view of a running appliance.
    Top(mutstream::control::top::TopArgs),
    /// Live records leaving a stage, as JSON lines.
    Tap(mutstream::control::client::TapArgs),
}

fn init_logging(level: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level).with_context(|| {
        format!("--log-level {level:?}: expected error, warn, info, debug or trace")
    })?;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.with_target(false).init(),
        LogFormat::Json => b.json().init(),
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let level = cli.log_level.as_deref().unwrap_or(match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    });
    if let Err(e) = init_logging(level, cli.log_format) {
        eprintln!("mutstream: {e:#}");
        return ExitCode::from(2);
    }
    let r = match cli.command {
        Command::Run { config, fresh } => run(config.as_deref(), fresh),
        Command::Check {
            pipeline,
            config,
            schema,
        } => check(&config, pipeline.as_deref(), schema.as_deref()),
        Command::Demo {
            duration,
            rate,
            dir,
        } => demo(&duration, &rate, dir),
        Command::Test {
            target,
            config,
            schema,
            now,
            input,
            expect,
        } => test_cmd(
            &target,
            config.as_deref(),
            schema.as_deref(),
            now,
            input.as_deref(),
            expect.as_deref(),
        ),
        Command::Ctl(args) => Ok(mutstream::control::client::main(args)),
        Command::Read {
            dir,
            follow,
            from,
            since,
            merge,
            format,
        } => read_cmd(dir, follow, from, since, merge, format),
        Command::Top(args) => Ok(mutstream::control::top::main(args)),
        Command::Tap(args) => Ok(mutstream::control::client::tap_main(args)),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mutstream: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// One test case, from the command line or a CASES.toml.
struct Case {
    name: String,
    pipeline: PathBuf,
    config: PathBuf,
    schema: String,
    now: i64,
    input: String,
    expect: Vec<serde_json::Value>,
}

fn read(p: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))
}

fn test_cmd(
    target: &Path,
    config: Option<&Path>,
    schema: Option<&str>,
    now: Option<i64>,
    input: Option<&Path>,
    expect: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    use mutstream::pipeline::testing;
    let cases = match (config, schema, input, expect) {
        (Some(config), Some(schema), Some(input), Some(expect)) => {
            let ex = read(expect)?;
            vec![Case {
                name: target.display().to_string(),
                pipeline: target.to_path_buf(),
                config: config.to_path_buf(),
                schema: schema.to_string(),
                now: now.unwrap_or(0),
                input: read(input)?,
                expect: testing::parse_lines(&ex, &expect.display().to_string())
                    .map_err(anyhow::Error::msg)?,
            }]
        }
        (None, None, None, None) => load_cases(target)?,
        _ => anyhow::bail!(
            "usage: mutstream test P.mts --config F --schema S --input IN.jsonl --expect OUT.jsonl [--now NS], or mutstream test CASES.toml"
        ),
    };
    let mut failed = 0;
    for c in &cases {
        let cfg = Config::load(&c.config)?;
        let text = read(&c.pipeline)?;
        let origin = c.pipeline.display().to_string();
        let outcome = match testing::run(&cfg, &text, &origin, 0, &c.schema, c.now, &c.input) {
            Ok(o) => o,
            Err(e) => {
                println!("test {} ... FAILED\n{e}", c.name);
                failed += 1;
                continue;
            }
        };
        let diff = testing::diff(&c.expect, &outcome.outputs);
        if diff.is_empty() && outcome.rejected.is_empty() {
            println!(
                "test {} ... ok ({} records out)",
                c.name,
                outcome.outputs.len()
            );
            continue;
        }
        failed += 1;
        println!("test {} ... FAILED", c.name);
        for (line, why) in &outcome.rejected {
            println!("  input line {line} rejected: {why}");
        }
        for d in diff {
            println!("  {d}");
        }
    }
    println!(
        "{} test{}, {} passed, {failed} failed",
        cases.len(),
        if cases.len() == 1 { "" } else { "s" },
        cases.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Reads a CASES.toml: `[[case]]` tables with name, pipeline, config,
/// schema, now, and input/expect as inline records or JSON-lines files.
fn load_cases(path: &Path) -> anyhow::Result<Vec<Case>> {
    use mutstream::pipeline::testing;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        case: Vec<RawCase>,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawCase {
        name: String,
        pipeline: String,
        config: String,
        schema: String,
        now: Option<i64>,
        input: toml::Value,
        expect: toml::Value,
    }
    let text = read(path)?;
    let f: File = toml::from_str(&text).map_err(|e| {
        let (line, col) = e
            .span()
            .map_or((1, 1), |s| mutstream::config::line_col(&text, s.start));
        anyhow::anyhow!("{}:{line}:{col}: {}", path.display(), e.message().trim())
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let records =
        |v: &toml::Value, what: &str, name: &str| -> anyhow::Result<Vec<serde_json::Value>> {
            match v {
                toml::Value::String(file) => {
                    let p = dir.join(file);
                    testing::parse_lines(&read(&p)?, &p.display().to_string())
                        .map_err(anyhow::Error::msg)
                }
                toml::Value::Array(items) => Ok(items.iter().map(testing::toml_to_json).collect()),
                _ => anyhow::bail!(
                    "{}: case {name:?}: {what} must be an array of records or a file name",
                    path.display()
                ),
            }
        };
    f.case
        .into_iter()
        .map(|c| {
            let input = records(&c.input, "input", &c.name)?;
            Ok(Case {
                input: input.iter().map(|v| format!("{v}\n")).collect(),
                expect: records(&c.expect, "expect", &c.name)?,
                pipeline: dir.join(&c.pipeline),
                config: dir.join(&c.config),
                schema: c.schema,
                now: c.now.unwrap_or(0),
                name: c.name,
            })
        })
        .collect()
}

fn read_cmd(
    dir: PathBuf,
    follow: bool,
    from: Option<String>,
    since: Option<String>,
    merge: bool,
    format: ReadFormat,
) -> anyhow::Result<ExitCode> {
    use mutstream::journal::read;
    let from = from
        .map(|s| read::parse_from(&s))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let since = since
        .map(|s| read::parse_since(&s, mutstream::sys::now_ns()))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handlers")?;
    }
    let o = read::ReadOptions {
        dir,
        follow,
        from,
        since,
        merge,
        format: match format {
            ReadFormat::Json => read::Format::Json,
            ReadFormat::Csv => read::Format::Csv,
        },
    };
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    match read::read(&o, &mut out, &stop) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(anyhow::anyhow!("read: {e}")),
    }
}

fn load(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::embedded()),
    }
}

fn check(config: &Path, pipeline: Option<&Path>, schema: Option<&str>) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    let plan = match pipeline {
        None => mutstream::pipeline::compile_config(&cfg),
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("{}: cannot read", p.display()))?;
            let Some(schema) = schema else {
                anyhow::bail!(
                    "check {}: give the schema it reads with --schema NAME",
                    p.display()
                );
            };
            let Some(si) = cfg.schemas.iter().position(|s| s.name == schema) else {
                let names: Vec<&str> = cfg.schemas.iter().map(|s| s.name.as_str()).collect();
                anyhow::bail!(
                    "--schema {schema}: not a schema of {} (schemas: {})",
                    config.display(),
                    names.join(", ")
                );
            };
            let mut only = cfg.clone();
            for s in &mut only.sources {
                s.schema = si;
            }
            mutstream::pipeline::compile_for(&only, &text, &p.display().to_string(), 0, &cfg.params)
        }
    };
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", e.rendered);
            return Ok(ExitCode::from(1));
        }
    };
    print!("{}", describe(&cfg, &plan, pipeline));
    Ok(ExitCode::SUCCESS)
}

/// The plan `check` prints.
fn describe(cfg: &Config, plan: &mutstream::pipeline::Plan, pipeline: Option<&Path>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let rt = &cfg.runtime;
    let _ = writeln!(s, "config {}: valid", cfg.origin);
    let _ = writeln!(
        s,
        "runtime: {} shard{}{}, batch_max {}, ring_capacity {}, idle {:?}",
        rt.shards,
        if rt.shards == 1 { "" } else { "s" },
        if rt.pin { " (pinned)" } else { "" },
        rt.batch_max,
        rt.ring_capacity,
        rt.idle
    );
    for src in &cfg.sources {
        let _ = writeln!(
            s,
            "source {}: {} {} framing={} format={} schema={}",
            src.name,
            if src.transport == Transport::Udp {
                "udp"
            } else {
                "tcp"
            },
            src.listen,
            src.framing.name(),
            src.decoder.format.name(),
            cfg.schemas[src.schema].name
        );
    }
    for k in &cfg.sinks {
        let _ = writeln!(
            s,
            "sink {}: {}{}",
            k.name,
            k.kind.name(),
            k.path
                .as_ref()
                .map_or(String::new(), |p| format!(" {}", p.display()))
        );
    }
    let origin = pipeline.map_or(cfg.pipeline.origin.clone(), |p| p.display().to_string());
    for (si, chain) in plan.chains.iter().enumerate() {
        let Some(chain) = chain else { continue };
        let _ = writeln!(s, "pipeline {origin} for schema {}:", cfg.schemas[si].name);
        for st in &chain.stages {
            let _ = writeln!(s, "  {} ({}): {}", st.name, st.word, st.text);
            let _ = writeln!(s, "      in:  {}", st.input.describe());
            if st.output != st.input {
                let _ = writeln!(s, "      out: {}", st.output.describe());
            }
            if !st.sinks.is_empty() {
                let _ = writeln!(s, "      to:  {}", st.sinks.join(", "));
            }
        }
    }
    let notices = &cfg.notices;
    if !notices.is_empty() {
        let _ = writeln!(s, "not yet supported in this version (check passes):");
        for n in notices {
            let _ = writeln!(s, "  - {n}");
        }
    }
    s
}

fn demo(duration: &str, rate: &str, dir: PathBuf) -> anyhow::Result<ExitCode> {
    let d = humantime::parse_duration(duration)
        .map_err(|e| anyhow::anyhow!("--duration {duration:?}: {e} (e.g. 20s, 2m)"))?;
    if d < Duration::from_secs(1) {
        anyhow::bail!("--duration {duration:?}: at least 1s, so the mutations have time to run");
    }
    let rate = mutstream::demo::load::parse_rate(rate).map_err(anyhow::Error::msg)?;
    let code = mutstream::demo::run(&mutstream::demo::Options {
        duration: d,
        rate,
        dir,
    })?;
    Ok(ExitCode::from(code))
}

fn run(path: Option<&Path>, fresh: bool) -> anyhow::Result<ExitCode> {
    use mutstream::control::{Controller, Op, Request, engine::ControlError, http::Server};
    let cfg = load(path)?;
    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, term.clone()).context("cannot install signal handlers")?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("cannot install signal handlers")?;
    let shutdown_timeout = cfg.runtime.shutdown_timeout;
    let admin = cfg.admin.clone();
    // Bound before the data plane starts, so a busy admin port is one
    // clear error rather than an appliance nobody can change.
    let ready = Arc::new(AtomicBool::new(false));
    let (server, inbox) = Server::start(
        admin.listen,
        &admin.tokens,
        mutstream::runtime::housekeeping_cores(&cfg.runtime),
        ready.clone(),
    )
    .with_context(|| {
        format!(
            "admin API: cannot listen on {} (set [admin] listen)",
            admin.listen
        )
    })?;
    let mut ctl = match Controller::start(cfg, fresh) {
        Ok(c) => c,
        Err(ControlError::Start(e @ mutstream::runtime::StartError::Journal(_))) => {
            eprintln!("mutstream: {e}");
            return Ok(ExitCode::from(74));
        }
        Err(e @ (ControlError::State(..) | ControlError::Busy(..))) => {
            eprintln!("mutstream: {e}");
            return Ok(ExitCode::from(74));
        }
        Err(e) => return Err(e.into()),
    };
    // This thread compiles, publishes and waits for acknowledgements: keep
    // it off the pinned workers' cores, as the admin and sink threads are.
    mutstream::sys::allow_cores(&mutstream::runtime::housekeeping_cores(
        &ctl.app().config().runtime,
    ));
    let app = ctl.app();
    for src in &app.config().sources {
        let addr = app.local_addr(&src.name).expect("every source is bound");
        let transport = if src.transport == Transport::Udp {
            "udp"
        } else {
            "tcp"
        };
        tracing::info!(
            "source {} listening on {transport} {addr} ({}, {})",
            src.name,
            src.framing.name(),
            src.decoder.format.name()
        );
    }
    for k in &app.config().sinks {
        if matches!(k.kind, SinkKind::File | SinkKind::Journal) {
            tracing::info!(
                "sink {} writing {} {}",
                k.name,
                k.kind.name(),
                k.path
                    .as_ref()
                    .expect("file and journal sinks have a path")
                    .display()
            );
        }
    }
    tracing::info!(
        "admin API on http://{}{}",
        server.local_addr(),
        if admin.tokens.is_empty() {
            String::new()
        } else {
            format!(" ({} named tokens)", admin.tokens.len())
        }
    );
    tracing::info!("{}", ctl.started());
    tracing::info!(
        "running generation {} on {} shard{}; SIGHUP reloads the pipeline, SIGINT/SIGTERM stop",
        app.generation(),
        app.config().runtime.shards,
        if app.config().runtime.shards == 1 {
            ""
        } else {
            "s"
        }
    );
    ready.store(true, Ordering::Release);
    let mut reporter = BadRecordReporter::default();
    let mut last_report = Instant::now();
    while !term.load(Ordering::Relaxed) {
        match inbox.recv_timeout(ctl.poll_interval()) {
            Ok((req, answer)) => {
                let _ = answer.send(ctl.handle(req));
            }
            Err(crossbeam::channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam::channel::RecvTimeoutError::Disconnected) => {
                tracing::error!("the admin API stopped; shutting down");
                break;
            }
        }
        ctl.tick();
        if hup.swap(false, Ordering::Relaxed) {
            // Logged by the controller, accepted or refused.
            let _ = ctl.handle(Request {
                op: Op::Reload,
                author: "sighup".into(),
                if_match: None,
                idempotency_key: None,
            });
        }
        if ctl.app().failed_worker() {
            tracing::error!("a shard worker stopped unexpectedly; shutting down");
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            reporter.report(ctl.app());
            ctl.app_mut().reclaim();
        }
    }
    ready.store(false, Ordering::Release);
    server.stop();
    let app = ctl.into_app();
    reporter.report(&app);
    tracing::info!(
        "stopping: draining batches and sink rings (deadline {:?})",
        shutdown_timeout
    );
    let summary = app.shutdown(shutdown_timeout);
    eprint!("{}", summary.render());
    Ok(if summary.clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Logs one line per source with new bad records since the last report,
/// with the most recent sample.
#[derive(Default)]
struct BadRecordReporter {
    seen: Vec<[u64; Reason::COUNT]>,
}

impl BadRecordReporter {
    fn report(&mut self, app: &Appliance) {
        let m = app.metrics();
        let cfg = app.config();
        self.seen.resize(cfg.sources.len(), [0; Reason::COUNT]);
        let samples: Vec<_> = m.shards.iter().flat_map(|s| s.samples.read()).collect();
        for (i, src) in cfg.sources.iter().enumerate() {
            let mut parts = Vec::new();
            let mut total = 0;
            for r in Reason::ALL {
                let n = m.sum(|s| s.sources[i].rejects[r.index()].get());
                let d = n - self.seen[i][r.index()];
                self.seen[i][r.index()] = n;
                if d > 0 {
                    total += d;
                    parts.push(format!("{r}: {d}"));
                }
            }
            if total == 0 {
                continue;
            }
            let last = samples
                .iter()
                .filter(|b| b.source == i)
                .max_by_key(|b| b.at_ns)
                .map(|b| {
                    let field = b.field.map_or(String::new(), |f| {
                        format!(
                            " at field {}",
                            cfg.schemas[src.schema]
                                .fields
                                .get(f as usize)
                                .map_or("?", |x| x.name.as_str())
                        )
                    });
                    format!(
                        "; last: {}{field}: {:?}{}",
                        b.reason,
                        String::from_utf8_lossy(&b.bytes),
                        if b.truncated { "..." } else { "" }
                    )
                })
                .unwrap_or_default();
            tracing::warn!(
                "source {}: {total} bad records dropped ({}){last}",
                src.name,
                parts.join(", ")
            );
        }
    }
}
