//! The one owner of the running appliance's definition: every mutation
//! (HTTP, `ctl`, SIGHUP) is a [`Request`] handled here, one at a time, on
//! the thread that owns the [`Appliance`] — never on a worker.
//!
//! A mutation builds the next [`Definition`], compiles it (a rejected one
//! changes nothing and answers with its `file:line:col` error), publishes
//! it as a generation, waits until every shard runs it (parked shards are
//! woken by the publication), appends the outcome to the audit journal
//! and saves the definition as `state_dir/current.json` for restarts.

use super::definition::{self, Definition};
use crate::config::Config;
use crate::pipeline::Plan;
use crate::runtime::{Appliance, StartError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What a request asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Status,
    History,
    /// `GET /metrics`: the Prometheus text exposition.
    Metrics,
    /// Replace the pipeline (`dry_run`: compile and report only).
    Apply {
        text: String,
        origin: String,
        dry_run: bool,
        /// `--at`: switch at this event time (ns) instead of at once.
        at: Option<i64>,
    },
    Set {
        name: String,
        value: String,
    },
    TablePut {
        table: String,
        key: String,
        cols: Vec<(String, String)>,
    },
    TableDel {
        table: String,
        key: String,
    },
    TableLoad {
        table: String,
        csv: String,
    },
    /// Publish generation `to`'s definition again (default: the one
    /// before the current).
    Rollback {
        to: Option<u64>,
    },
    /// SIGHUP: re-read the config file.
    Reload,
    /// `tap`: copy up to `limit` records per interval leaving `stage`.
    TapStart {
        stage: String,
        limit: u32,
        interval_ns: u64,
    },
    /// The records tapped since the last read.
    TapRead {
        id: u64,
    },
    TapStop {
        id: u64,
    },
}

impl Op {
    fn mutates(&self) -> bool {
        !matches!(
            self,
            Op::Status
                | Op::History
                | Op::Metrics
                | Op::Apply { dry_run: true, .. }
                | Op::TapStart { .. }
                | Op::TapRead { .. }
                | Op::TapStop { .. }
        )
    }

    fn name(&self) -> &'static str {
        match self {
            Op::Status => "status",
            Op::History => "history",
            Op::Metrics => "metrics",
            Op::Apply { dry_run: true, .. } => "check",
            Op::Apply { .. } => "apply",
            Op::Set { .. } => "set",
            Op::TablePut { .. } => "table put",
            Op::TableDel { .. } => "table del",
            Op::TableLoad { .. } => "table load",
            Op::Rollback { .. } => "rollback",
            Op::Reload => "reload",
            Op::TapStart { .. } => "tap",
            Op::TapRead { .. } => "tap read",
            Op::TapStop { .. } => "tap stop",
        }
    }
}

/// A request with its author (a token's name, `local` on loopback
/// without tokens, `sighup`) and its preconditions.
#[derive(Clone, Debug)]
pub struct Request {
    pub op: Op,
    pub author: String,
    /// `If-Match: GEN`: refuse unless GEN is the running generation.
    pub if_match: Option<u64>,
    /// `Idempotency-Key`: a retry with the same key gets the first answer.
    pub idempotency_key: Option<String>,
}

/// An answer: an HTTP status and a JSON body (`{"error": ...}` when
/// the status is not 2xx).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body }
    }

    fn err(status: u16, msg: impl Into<String>) -> Reply {
        Reply {
            status,
            body: json!({ "error": msg.into() }),
        }
    }

    /// The error line, when this is an error.
    pub fn error(&self) -> Option<&str> {
        self.body.get("error").and_then(Value::as_str)
    }
}

/// One line of the audit journal and of `history`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The generation it created (none when rejected).
    pub generation: Option<u64>,
    /// Wall-clock ns when it was decided.
    pub at_ns: u64,
    pub author: String,
    pub op: String,
    pub diff: String,
    /// `applied`, `published` (not acknowledged in time), `rejected`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acked_ns: Option<u64>,
    /// `apply --at`: the event time (ns) at which shards switch; `acked_ns`
    /// is then the time until every shard had it armed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch_at: Option<i64>,
    /// What the generation was compiled from (applied ones only), by its
    /// hash: `state_dir/definitions/HASH.json`, written once per distinct
    /// definition, so a parameter flipping back and forth costs two files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
}

/// `state_dir/current.json`: the last applied generation.
#[derive(Serialize, Deserialize)]
struct Current {
    generation: u64,
    at_ns: u64,
    author: String,
    /// Hash of the config file and every file it names, when applied.
    fingerprint: String,
    definition: Definition,
}

/// How the appliance started, for the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Startup {
    /// No saved generation: the config's.
    Config,
    /// `--fresh` with a saved generation N: the config's.
    Fresh(u64),
    /// The files changed since generation N was applied: they win.
    FilesChanged(u64),
    /// Generation N restored.
    Restored(u64),
}

impl std::fmt::Display for Startup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Startup::Config => write!(f, "no saved generation: running the config's pipeline"),
            Startup::Fresh(g) => write!(
                f,
                "--fresh: running the config's pipeline, not saved generation {g}"
            ),
            Startup::FilesChanged(g) => write!(
                f,
                "the config or a file it names changed since generation {g} was applied: the files win"
            ),
            Startup::Restored(g) => write!(f, "restored generation {g} from the state directory"),
        }
    }
}

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("state_dir {0}: {1}")]
    State(PathBuf, std::io::Error),
    #[error("state_dir {0} is in use by another mutstream process{1}")]
    Busy(PathBuf, String),
    #[error("{0}")]
    Definition(String),
}

const IDEMPOTENCY_KEYS: usize = 1024;

/// History entries kept in memory for `history` and `rollback`.
pub const HISTORY_KEPT: usize = 10_000;

/// The owner of the appliance and of its definition.
pub struct Controller {
    /// Held for the process's life: one appliance per state directory.
    _lock: std::fs::File,
    app: Appliance,
    def: Arc<Definition>,
    plan: Plan,
    started: Startup,
    history: Vec<Entry>,
    audit: std::fs::File,
    state_dir: PathBuf,
    idem: VecDeque<(String, u64, Reply)>,
    ack_timeout: Duration,
    reloads: [u64; 2],
    /// Changes and their acknowledgement times, for `/metrics`.
    figures: crate::metrics::prom::ControlFigures,
    /// The `tap` being read, if any, and the last session id given.
    tap: Option<super::tap::TapSession>,
    taps_started: u64,
    /// Latency inside the appliance, per generation, merged from the shards.
    latency: crate::metrics::latency::ByGeneration,
}

/// Hash of the config file and the pipeline and table files it names.
pub fn fingerprint(cfg: &Config) -> String {
    let mut files: Vec<PathBuf> = cfg.path.iter().cloned().collect();
    files.extend(cfg.pipeline.path.iter().cloned());
    files.extend(cfg.tables.iter().filter_map(|t| t.file.clone()));
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for f in files {
        h.update(f.display().to_string().as_bytes());
        h.update(&std::fs::read(&f).unwrap_or_default());
    }
    if cfg.path.is_none() {
        h.update(crate::config::EMBEDDED.as_bytes());
    }
    format!("{:032x}", h.digest128())
}

/// Takes `dir/lock` (flock, released when the process ends however it
/// ends) and writes this process's pid into it.
fn lock_state(dir: &Path) -> Result<std::fs::File, ControlError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("lock");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| ControlError::State(dir.to_path_buf(), e))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = std::fs::read_to_string(&path).unwrap_or_default();
        let pid = pid.trim();
        return Err(ControlError::Busy(
            dir.to_path_buf(),
            if pid.is_empty() {
                String::new()
            } else {
                format!(" (pid {pid})")
            },
        ));
    }
    let _ = f.set_len(0);
    let _ = writeln!(f, "{}", std::process::id());
    Ok(f)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        std::fs::File::open(d)?.sync_all()?;
    }
    Ok(())
}

impl Controller {
    /// Starts the appliance on the last applied generation in
    /// `state_dir` unless `fresh` or the files changed since (then on the
    /// config's own definition), and opens the audit journal.
    pub fn start(cfg: Config, fresh: bool) -> Result<Controller, ControlError> {
        let dir = cfg.runtime.state_dir.clone();
        std::fs::create_dir_all(&dir).map_err(|e| ControlError::State(dir.clone(), e))?;

        let fp = fingerprint(&cfg);
        let saved: Option<Current> = std::fs::read(dir.join("current.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let mut history: Vec<Entry> = std::fs::read_to_string(dir.join("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let last_audited = history.iter().filter_map(|e| e.generation).max();
        if history.len() > HISTORY_KEPT {
            history.drain(..history.len() - HISTORY_KEPT);
        }
        let last_gen = saved
            .as_ref()
            .map(|s| s.generation)
            .unwrap_or(0)
            .max(last_audited.unwrap_or(0));
        let (started, def, first) = match saved {
            Some(s) if !fresh && s.fingerprint == fp => {
                (Startup::Restored(s.generation), s.definition, s.generation)
            }
            Some(s) => {
                let why = if fresh {
                    Startup::Fresh(s.generation)
                } else {
                    Startup::FilesChanged(s.generation)
                };
                (
                    why,
                    Definition::from_config(&cfg).map_err(ControlError::Definition)?,
                    last_gen + 1,
                )
            }
            None => (
                Startup::Config,
                Definition::from_config(&cfg).map_err(ControlError::Definition)?,
                last_gen + 1,
            ),
        };
        let plan = match def.compile(&cfg, None) {
            Ok(p) => p,
            // A saved generation that no longer compiles against this
            // config (a schema changed): the files win.
            Err(e) if matches!(started, Startup::Restored(_)) => {
                tracing::warn!("saved generation does not compile any more ({e}); the files win");
                return Controller::start(cfg, true);
            }
            Err(e) => return Err(ControlError::Start(StartError::Pipeline(e))),
        };
        let app = Appliance::start_with(cfg.clone(), plan.clone(), first)?;
        // After the sources bound and the journals were claimed, whose
        // errors say more; a second appliance on this state directory
        // stops here.
        let lock = match lock_state(&dir) {
            Ok(l) => l,
            Err(e) => {
                let _ = app.shutdown(Duration::from_secs(1));
                return Err(e);
            }
        };
        let audit = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("audit.jsonl"))
            .map_err(|e| ControlError::State(dir.clone(), e))?;
        let def = Arc::new(def);
        if !matches!(started, Startup::Restored(_)) {
            history.push(Entry {
                generation: Some(first),
                at_ns: crate::sys::now_ns(),
                author: "config".into(),
                op: "start".into(),
                diff: format!("{}: {started}", cfg.origin),
                result: "applied".into(),
                error: None,
                acked_ns: None,
                switch_at: None,
                definition: None,
            });
        }
        let mut c = Controller {
            _lock: lock,
            app,
            def,
            plan,
            started,
            history,
            audit,
            state_dir: dir,
            idem: VecDeque::new(),
            ack_timeout: Duration::from_secs(5),
            reloads: [0; 2],
            figures: Default::default(),
            tap: None,
            taps_started: 0,
            latency: Default::default(),
        };
        if !matches!(c.started, Startup::Restored(_)) {
            // The files' definition is now the one a restart restores.
            let def = c.def.clone();
            let hash = c.store_definition(&def);
            let e = c.history.last_mut().expect("just pushed");
            e.definition = hash;
            let e = e.clone();
            c.save_current(&e, &def);
            c.record(&e);
        }
        Ok(c)
    }

    pub fn app(&self) -> &Appliance {
        &self.app
    }

    pub fn app_mut(&mut self) -> &mut Appliance {
        &mut self.app
    }

    pub fn into_app(self) -> Appliance {
        self.app
    }

    pub fn started(&self) -> &Startup {
        &self.started
    }

    pub fn definition(&self) -> &Definition {
        &self.def
    }

    pub fn history(&self) -> &[Entry] {
        &self.history
    }

    /// How long `apply` waits for every shard before naming the late ones.
    pub fn set_ack_timeout(&mut self, d: Duration) {
        self.ack_timeout = d;
    }

    /// Handles one request to its end.
    pub fn handle(&mut self, req: Request) -> Reply {
        if let (Some(key), true) = (&req.idempotency_key, req.op.mutates()) {
            let h = {
                let mut x = xxhash_rust::xxh3::Xxh3::new();
                x.update(format!("{:?}", req.op).as_bytes());
                x.digest()
            };
            if let Some((_, oh, r)) = self.idem.iter().find(|(k, _, _)| k == key) {
                if *oh != h {
                    return Reply::err(
                        422,
                        format!("Idempotency-Key {key:?} was used for a different request"),
                    );
                }
                let mut r = r.clone();
                if let Some(o) = r.body.as_object_mut() {
                    o.insert("replayed".into(), true.into());
                }
                return r;
            }
            let key = key.clone();
            let r = self.handle_inner(req);
            if r.status < 500 {
                if self.idem.len() >= IDEMPOTENCY_KEYS {
                    self.idem.pop_front();
                }
                self.idem.push_back((key, h, r.clone()));
            }
            return r;
        }
        self.handle_inner(req)
    }

    fn handle_inner(&mut self, req: Request) -> Reply {
        if let Some(g) = req.if_match
            && req.op.mutates()
            && g != self.app.generation()
        {
            return Reply::err(
                409,
                format!(
                    "If-Match: generation {g} is not the running one ({})",
                    self.app.generation()
                ),
            );
        }
        if req.op.mutates()
            && !matches!(req.op, Op::Apply { .. } | Op::Rollback { .. })
            && let Some(msg) = self.armed_pending()
        {
            return self.reject(&req, 409, msg);
        }
        // Reads first: they need no copy of the config or the definition.
        match &req.op {
            Op::TapStart {
                stage,
                limit,
                interval_ns,
            } => return self.tap_start(stage, *limit, *interval_ns),
            Op::TapRead { id } => return self.tap_read(*id),
            Op::TapStop { id } => return self.tap_stop(*id),
            Op::Status => return Reply::ok(self.status()),
            Op::Metrics => return Reply::ok(Value::String(self.metrics())),
            Op::History => {
                return Reply::ok(json!({
                    "generation": self.app.generation(),
                    "history": self.history.iter().map(|e| {
                        serde_json::to_value(e).unwrap_or(Value::Null)
                    }).collect::<Vec<_>>(),
                }));
            }
            _ => {}
        }
        let cfg = self.app.config().clone();
        let mut next = (*self.def).clone();
        match &req.op {
            Op::TapStart { .. }
            | Op::TapRead { .. }
            | Op::TapStop { .. }
            | Op::Status
            | Op::Metrics
            | Op::History => unreachable!("answered above"),
            Op::Apply {
                text,
                origin,
                dry_run,
                ..
            } => {
                next.pipeline = text.clone();
                next.origin = origin.clone();
                next.first_line = 0;
                if *dry_run {
                    return match next.compile(&cfg, Some(&self.plan)) {
                        Ok(plan) => Reply::ok(json!({
                            "ok": true,
                            "generation": self.app.generation(),
                            "stages": self.stage_report(&plan),
                        })),
                        Err(e) => Reply {
                            status: 400,
                            body: json!({"error": e.headline, "rendered": e.rendered}),
                        },
                    };
                }
            }
            Op::Set { name, value } => {
                let Some(p) = next.param(name) else {
                    let known: Vec<&str> = next.params.iter().map(|(n, _)| n.as_str()).collect();
                    return self.reject(
                        &req,
                        404,
                        format!(
                            "unknown parameter ${name} (declared: {})",
                            if known.is_empty() {
                                "none".into()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                };
                match p.parse_like(value) {
                    Ok(v) => {
                        for (n, p) in &mut next.params {
                            if n == name {
                                *p = v.clone();
                            }
                        }
                    }
                    Err(e) => return self.reject(&req, 400, format!("${name}: {e}")),
                }
            }
            Op::TablePut { table, key, cols } => {
                let r = Self::with_table(&mut next, table, |d, c| {
                    definition::put_row(d, c, key, cols)
                });
                if let Err((s, m)) = r {
                    return self.reject(&req, s, m);
                }
            }
            Op::TableDel { table, key } => {
                let r = Self::with_table(&mut next, table, |d, c| {
                    match definition::del_row(d, c, key)? {
                        true => Ok(()),
                        false => Err(format!("@{table} has no key {key:?}")),
                    }
                });
                if let Err((s, m)) = r {
                    return self.reject(&req, if s == 400 { 404 } else { s }, m);
                }
            }
            Op::TableLoad { table, csv } => {
                let r = Self::with_table(&mut next, table, |d, c| {
                    *c = definition::csv_content(d, csv, "request body")?;
                    Ok(())
                });
                if let Err((s, m)) = r {
                    return self.reject(&req, s, m);
                }
            }
            Op::Rollback { to } => {
                let cur = self.app.generation();
                let target = match to {
                    Some(g) => self
                        .history
                        .iter()
                        .rev()
                        .find(|e| e.generation == Some(*g) && e.definition.is_some()),
                    None => self
                        .history
                        .iter()
                        .rev()
                        .filter(|e| e.definition.is_some())
                        .find(|e| e.generation.is_some_and(|g| g < cur)),
                }
                .and_then(|e| self.load_definition(e.definition.as_deref()?));
                let Some(t) = target else {
                    return self.reject(
                        &req,
                        404,
                        match to {
                            Some(g) => format!("no applied generation {g} in the history"),
                            None => "no earlier generation in the history".into(),
                        },
                    );
                };
                next = t;
            }
            Op::Reload => match self.reload_definition() {
                Ok(d) => next = d,
                Err(e) => {
                    self.reloads[1] += 1;
                    return self.reject(&req, 400, e);
                }
            },
        }
        let r = self.publish(&req, next);
        if req.op == Op::Reload {
            self.reloads[usize::from(r.status != 200)] += 1;
        }
        r
    }

    /// While a generation armed by `apply --at` has not yet switched on
    /// every shard, why other changes must wait: they would be built on
    /// it and take effect at once, taking it along before its time.
    fn armed_pending(&self) -> Option<String> {
        let at = self.app.switch_at()?;
        let g = self.app.generation();
        let waiting: Vec<String> = (self.app.acks().iter().enumerate())
            .filter(|(_, a)| **a < g)
            .map(|(k, _)| k.to_string())
            .collect();
        if waiting.is_empty() {
            return None;
        }
        Some(format!(
            "generation {g} is armed to switch at {} and shard(s) {} have not switched yet; \
             apply a pipeline or roll back to replace it, or wait",
            crate::codec::time::format_rfc3339(at),
            waiting.join(", ")
        ))
    }

    /// Applies `f` to table `name` of `next`.
    fn with_table(
        next: &mut Definition,
        name: &str,
        f: impl FnOnce(&crate::config::TableDef, &mut definition::TableContent) -> Result<(), String>,
    ) -> Result<(), (u16, String)> {
        let Some(d) = next.table_def(name) else {
            return Err((404, format!("unknown table @{name}")));
        };
        let c = next
            .tables
            .iter_mut()
            .find(|t| t.name == name)
            .expect("declared");
        f(&d, c).map_err(|m| (400, format!("@{name}: {m}")))
    }

    /// The config file re-read: its pipeline, params and tables, against
    /// the running sources, schemas and sinks; what would need a restart
    /// is logged and ignored.
    fn reload_definition(&self) -> Result<Definition, String> {
        let old = self.app.config();
        let Some(path) = old.path.clone() else {
            return Err("running on the embedded config: nothing to reload".into());
        };
        let new = Config::load(&path).map_err(|e| e.to_string())?;
        let mut restart = Vec::new();
        if new.runtime.shards != old.runtime.shards {
            restart.push("[runtime] shards");
        }
        let src_key = |c: &Config| {
            c.sources
                .iter()
                .map(|s| {
                    format!(
                        "{}/{:?}/{}/{}/{}",
                        s.name,
                        s.transport,
                        s.listen,
                        s.framing.name(),
                        s.decoder.format.name()
                    )
                })
                .collect::<Vec<_>>()
        };
        if src_key(&new) != src_key(old) || new.schemas != old.schemas {
            restart.push("sources or schemas");
        }
        let sink_key = |c: &Config| {
            c.sinks
                .iter()
                .map(|s| format!("{}/{:?}/{:?}", s.name, s.kind, s.path))
                .collect::<Vec<_>>()
        };
        if sink_key(&new) != sink_key(old) {
            restart.push("sinks");
        }
        if !restart.is_empty() {
            tracing::warn!(
                "SIGHUP: changes to {} require a restart and are ignored",
                restart.join(", ")
            );
        }
        Definition::from_config(&new)
    }

    fn reject(&mut self, req: &Request, status: u16, msg: String) -> Reply {
        let e = Entry {
            generation: None,
            at_ns: crate::sys::now_ns(),
            author: req.author.clone(),
            op: req.op.name().into(),
            diff: String::new(),
            result: "rejected".into(),
            error: Some(msg.clone()),
            acked_ns: None,
            switch_at: None,
            definition: None,
        };
        self.record(&e);
        Reply::err(status, msg)
    }

    /// Compiles, publishes and waits for every shard.
    fn publish(&mut self, req: &Request, next: Definition) -> Reply {
        let cfg = self.app.config().clone();
        let plan = match next.compile(&cfg, Some(&self.plan)) {
            Ok(p) => p,
            Err(e) => {
                let mut r = self.reject(req, 400, e.headline.clone());
                r.body["rendered"] = e.rendered.into();
                return r;
            }
        };
        let switch_at = match &req.op {
            Op::Apply { at, .. } => *at,
            _ => None,
        };
        if switch_at.is_some()
            && let Some(c) = plan
                .chains
                .iter()
                .flatten()
                .find(|c| c.input().ts_index.is_none())
        {
            return self.reject(
                req,
                400,
                format!(
                    "--at needs a `ts` timestamp field in every schema; schema {} has none",
                    c.input().name
                ),
            );
        }
        let diff = next.diff(&self.def);
        let id = match self.app.publish_at(plan.clone(), switch_at) {
            Ok(id) => id,
            Err(e) => return self.reject(req, 503, e.to_string()),
        };
        let def = Arc::new(next);
        self.def = def.clone();
        self.plan = plan;
        let hash = self.store_definition(&def);
        let mut e = Entry {
            generation: Some(id),
            at_ns: crate::sys::now_ns(),
            author: req.author.clone(),
            op: req.op.name().into(),
            diff: diff.clone(),
            result: "applied".into(),
            error: None,
            acked_ns: None,
            switch_at,
            definition: hash,
        };
        let waited = match switch_at {
            Some(_) => self.app.wait_armed(id, self.ack_timeout),
            None => self.app.wait_acked(id, self.ack_timeout),
        };
        let reply = match waited {
            Ok(d) => {
                e.acked_ns = Some(d.as_nanos() as u64);
                let mut body = json!({
                    "generation": id,
                    "acked_ns": d.as_nanos() as u64,
                    "diff": diff,
                });
                if let Some(t) = switch_at {
                    body["switch_at"] = t.into();
                    body["switch_at_rfc3339"] = crate::codec::time::format_rfc3339(t).into();
                }
                Reply::ok(body)
            }
            Err(late) => {
                e.result = "published".into();
                let msg = format!(
                    "generation {id} is published but shard{} {} did not {} it within {:?}",
                    if late.len() == 1 { "" } else { "s" },
                    late.iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    if switch_at.is_some() {
                        "arm"
                    } else {
                        "acknowledge"
                    },
                    self.ack_timeout
                );
                e.error = Some(msg.clone());
                Reply {
                    status: 504,
                    body: json!({"error": msg, "generation": id, "late_shards": late}),
                }
            }
        };
        self.save_current(&e, &def);
        self.record(&e);
        self.push_history(e);
        reply
    }

    /// Writes `def` as `definitions/HASH.json` unless there; its hash.
    fn store_definition(&self, def: &Definition) -> Option<String> {
        let bytes = serde_json::to_vec(def).expect("serialisable");
        let hash = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
        let dir = self.state_dir.join("definitions");
        let path = dir.join(format!("{hash}.json"));
        if !path.exists() {
            let r = std::fs::create_dir_all(&dir).and_then(|_| write_atomic(&path, &bytes));
            if let Err(err) = r {
                tracing::error!("cannot save a definition in {}: {err}", dir.display());
                return None;
            }
        }
        Some(hash)
    }

    fn load_definition(&self, hash: &str) -> Option<Definition> {
        let path = self
            .state_dir
            .join("definitions")
            .join(format!("{hash}.json"));
        let bytes = std::fs::read(&path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn save_current(&self, e: &Entry, def: &Definition) {
        let cur = Current {
            generation: e.generation.unwrap_or(0),
            at_ns: e.at_ns,
            author: e.author.clone(),
            fingerprint: fingerprint(self.app.config()),
            definition: def.clone(),
        };
        let bytes = serde_json::to_vec(&cur).expect("serialisable");
        if let Err(err) = write_atomic(&self.state_dir.join("current.json"), &bytes) {
            tracing::error!(
                "cannot save generation {} in {}: {err}",
                cur.generation,
                self.state_dir.display()
            );
        }
    }

    /// Appends `e` to the audit journal (and logs it).
    fn record(&mut self, e: &Entry) {
        match (&e.generation, &e.error) {
            _ if e.op == "start" => {}
            (None, _) => self.figures.rejected += 1,
            (Some(_), None) => {
                self.figures.applied += 1;
                if let (Some(a), None) = (e.acked_ns, e.switch_at) {
                    self.figures.observe_ack(a as f64 / 1e9);
                }
            }
            (Some(_), Some(_)) => self.figures.published += 1,
        }
        let prefix = if e.author == "sighup" { "SIGHUP: " } else { "" };
        match (&e.generation, &e.error, e.acked_ns) {
            (Some(g), None, Some(a)) if e.switch_at.is_some() => tracing::info!(
                "generation {g} (author {}) armed on every shard in {:?}, switching at event time {}: {}: {}",
                e.author,
                Duration::from_nanos(a),
                crate::codec::time::format_rfc3339(e.switch_at.unwrap_or_default()),
                e.op,
                e.diff
            ),
            (Some(g), None, Some(a)) => tracing::info!(
                "{prefix}generation {g} (author {}) runs on every shard, acknowledged in {:?}: {}: {}",
                e.author,
                Duration::from_nanos(a),
                e.op,
                e.diff
            ),
            (Some(g), None, None) => {
                tracing::info!("generation {g} (author {}): {}", e.author, e.diff)
            }
            (None, Some(err), _) => tracing::warn!(
                "{prefix}{} by {} refused: {err}; keeping generation {}",
                e.op,
                e.author,
                self.app.generation()
            ),
            (Some(_), Some(err), _) => tracing::warn!("{prefix}{err}"),
            _ => {}
        }
        let mut line = serde_json::to_vec(e).expect("serialisable");
        line.push(b'\n');
        if let Err(err) = self
            .audit
            .write_all(&line)
            .and_then(|_| self.audit.sync_data())
        {
            tracing::error!("audit journal: {err}");
        }
        if e.generation.is_none() {
            self.push_history(e.clone());
        }
    }

    /// Keeps the last [`HISTORY_KEPT`] entries in memory (the audit
    /// journal keeps them all).
    fn push_history(&mut self, e: Entry) {
        if self.history.len() >= HISTORY_KEPT {
            self.history.drain(..HISTORY_KEPT / 10);
        }
        self.history.push(e);
    }

    /// Per stage of the candidate: whether its state is kept, starts
    /// fresh, or the stage keeps none; removed stateful stages flush.
    /// How long the control thread may wait for a request before the next
    /// [`Controller::tick`]: short while a tap runs, so the shards' tap
    /// buffers come back quickly.
    pub fn poll_interval(&self) -> Duration {
        if self.tap.is_some() {
            Duration::from_millis(2)
        } else {
            Duration::from_millis(20)
        }
    }

    /// Housekeeping between requests: moves tapped records off the shards'
    /// rings and ends a tap nobody reads.
    pub fn tick(&mut self) {
        let lat = &mut self.latency;
        self.app.drain_latency(|b| lat.add(b));
        let Some(t) = self.tap.as_mut() else {
            return;
        };
        self.app.drain_tap(|b| t.take(b));
        t.shard_drops(self.app.metrics().sum(|m| m.tap_dropped.get()));
        if t.idle() {
            tracing::info!(
                "tap {} on stage {}: not read for {:?}, stopped",
                t.id,
                t.stage,
                super::tap::IDLE
            );
            self.tap = None;
            self.app.set_tap(&crate::sink::tap::TapWant::OFF);
        }
    }

    fn tap_start(&mut self, stage: &str, limit: u32, interval_ns: u64) -> Reply {
        let found = self
            .plan
            .chains
            .iter()
            .flatten()
            .find_map(|c| c.stages.iter().find(|s| s.name == stage));
        let Some(st) = found else {
            let names: Vec<&str> = self
                .plan
                .chains
                .iter()
                .flatten()
                .flat_map(|c| c.stages.iter().map(|s| s.name.as_str()))
                .collect();
            return Reply::err(
                404,
                format!(
                    "no stage {stage:?} in generation {} (stages: {})",
                    self.app.generation(),
                    names.join(", ")
                ),
            );
        };
        let Some(want) = crate::sink::tap::TapWant::new(stage, limit, interval_ns) else {
            return Reply::err(400, "stage name too long");
        };
        let fields: Vec<Value> = st
            .output
            .fields
            .iter()
            .map(|(n, t)| json!([n, t.name()]))
            .collect();
        // A new tap replaces the one before (its reader gets 410).
        if let Some(prev) = &self.tap {
            tracing::debug!("tap on stage {stage} replaces tap {}", prev.id);
        }
        self.app.set_tap(&crate::sink::tap::TapWant::OFF);
        self.app.drain_tap(|_| {});
        self.taps_started += 1;
        let id = self.taps_started;
        let mut session =
            super::tap::TapSession::new(id, stage, limit, Duration::from_nanos(interval_ns));
        session.shard_drops(self.app.metrics().sum(|m| m.tap_dropped.get()));
        session.read();
        self.tap = Some(session);
        self.app.set_tap(&want);
        Reply::ok(json!({
            "tap": id,
            "stage": stage,
            "generation": self.app.generation(),
            "limit": limit,
            "interval_ms": interval_ns / 1_000_000,
            "fields": fields,
        }))
    }

    fn tap_gone(id: u64) -> Reply {
        Reply::err(
            410,
            format!(
                "tap {id} has ended (replaced by a newer tap, stopped, or not read for {:?})",
                super::tap::IDLE
            ),
        )
    }

    fn tap_read(&mut self, id: u64) -> Reply {
        let Some(t) = self.tap.as_mut().filter(|t| t.id == id) else {
            return Controller::tap_gone(id);
        };
        self.app.drain_tap(|b| t.take(b));
        t.shard_drops(self.app.metrics().sum(|m| m.tap_dropped.get()));
        let (records, dropped) = t.read();
        Reply::ok(json!({
            "tap": id,
            "generation": self.app.generation(),
            "records": records,
            "dropped": dropped,
        }))
    }

    fn tap_stop(&mut self, id: u64) -> Reply {
        if self.tap.as_ref().is_none_or(|t| t.id != id) {
            return Controller::tap_gone(id);
        }
        self.tap = None;
        self.app.set_tap(&crate::sink::tap::TapWant::OFF);
        self.app.drain_tap(|_| {});
        Reply::ok(json!({ "tap": id, "stopped": true }))
    }

    fn stage_report(&self, plan: &Plan) -> Vec<Value> {
        let stateful = |w: &str| matches!(w, "window" | "dedup" | "sample");
        let mut out = Vec::new();
        for (si, chain) in plan.chains.iter().enumerate() {
            let Some(chain) = chain else { continue };
            let old = self.plan.chains.get(si).and_then(Option::as_ref);
            for (k, s) in chain.stages.iter().enumerate() {
                let kept = old.and_then(|o| chain.same_stage_in(k, o)).is_some();
                let state = match (stateful(s.word), kept) {
                    (false, _) => "none",
                    (true, true) => "kept",
                    (true, false) => "fresh",
                };
                out.push(json!({
                    "schema": chain.input().name, "stage": s.name, "op": s.word,
                    "state": state, "unchanged": kept,
                }));
            }
            if let Some(o) = old {
                for (k, s) in o.stages.iter().enumerate() {
                    if stateful(s.word) && o.same_stage_in(k, chain).is_none() {
                        let still = chain.stages.iter().any(|n| n.name == s.name);
                        if !still {
                            out.push(json!({
                                "schema": chain.input().name, "stage": s.name, "op": s.word,
                                "state": "flushed", "unchanged": false,
                            }));
                        }
                    }
                }
            }
        }
        out
    }

    /// `GET /metrics`: the Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let cfg = self.app.config();
        let names = crate::metrics::prom::Names {
            sources: cfg.sources.iter().map(|s| s.name.as_str()).collect(),
            sinks: cfg.sinks.iter().map(|s| s.name.as_str()).collect(),
            stages: self
                .plan
                .chains
                .iter()
                .flatten()
                .next()
                .map(|c| c.stages.iter().map(|s| s.name.as_str()).collect())
                .unwrap_or_default(),
            generation: self.app.generation(),
            ring_capacity: cfg.runtime.ring_capacity,
        };
        let mut f = self.figures.clone();
        f.generation = self.app.generation();
        crate::metrics::prom::render(
            self.app.metrics(),
            &names,
            &self.app.acks(),
            &f,
            Some(&self.latency),
        )
    }

    /// `GET /v1/status`.
    pub fn status(&self) -> Value {
        let app = &self.app;
        let m = app.metrics();
        let cfg = app.config();
        let acks = app.acks();
        let sources: Vec<Value> = cfg
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut rejects = serde_json::Map::new();
                for r in crate::codec::Reason::ALL {
                    let n = m.sum(|sh| sh.sources[i].rejects[r.index()].get());
                    if n > 0 {
                        rejects.insert(r.to_string(), n.into());
                    }
                }
                json!({
                    "name": s.name,
                    "records": m.sum(|sh| sh.sources[i].records.get()),
                    "bytes": m.sum(|sh| sh.sources[i].bytes.get()),
                    "bad": rejects,
                    "kernel_drops": m.sum(|sh| sh.sources[i].kernel_drops.get()),
                })
            })
            .collect();
        let samples: Vec<Value> = m
            .shards
            .iter()
            .flat_map(|s| s.samples.read())
            .map(|b| {
                json!({
                    "source": cfg.sources.get(b.source).map(|s| s.name.clone()),
                    "reason": b.reason.to_string(),
                    "at_ns": b.at_ns,
                    "sample": String::from_utf8_lossy(&b.bytes),
                })
            })
            .collect();
        // Per stage of the latest generation, over the shards running it.
        let cur = app.generation();
        let counted: Vec<usize> = (0..m.shards.len())
            .filter(|&k| m.shards[k].generation.get() == cur)
            .collect();
        let stages: Vec<Value> = self
            .plan
            .chains
            .iter()
            .flatten()
            .next()
            .map(|c| {
                c.stages
                    .iter()
                    .enumerate()
                    .take(crate::metrics::STAGES_MAX)
                    .map(|(i, st)| {
                        let sum = |f: &dyn Fn(&crate::metrics::StageCounters) -> u64| -> u64 {
                            counted.iter().map(|&k| f(&m.shards[k].stages[i])).sum()
                        };
                        json!({
                            "name": st.name,
                            "op": st.word,
                            "in": sum(&|c| c.records_in.get()),
                            "out": sum(&|c| c.records_out.get()),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let summary = app.summary();
        let sinks: Vec<Value> = summary
            .sinks
            .iter()
            .map(|k| {
                json!({
                    "name": k.name,
                    "records": k.emitted,
                    "dropped": k.dropped_full + k.dropped_error + k.dropped_shutdown,
                })
            })
            .collect();
        let latency_of = |g: u64| {
            self.latency.gens.get(&g).map_or(json!(null), |(p, k)| {
                json!({
                    "generation": g,
                    "pipeline": crate::metrics::latency::summary_json(p),
                    "kernel": crate::metrics::latency::summary_json(k),
                })
            })
        };
        json!({
            "generation": app.generation(),
            "uptime_s": summary.elapsed.as_secs_f64(),
            "latency": latency_of(cur),
            "latency_by_generation": self.latency.gens.keys().rev().take(10).map(|&g| latency_of(g)).collect::<Vec<_>>(),
            "pipeline_in": summary.chain_in,
            "filtered": summary.filtered,
            "windowed": summary.windowed,
            "stages": stages,
            "stages_shards": counted.len(),
            "sinks": sinks,
            "mutations": {
                "applied": self.figures.applied,
                "rejected": self.figures.rejected,
                "ack_p50_ns": self.figures.ack_quantile_ns(0.5),
                "ack_p99_ns": self.figures.ack_quantile_ns(0.99),
            },
            "shards": acks.iter().zip(app.seen()).enumerate().map(|(i, (g, seen))| {
                let sm = &m.shards[i];
                let mut o = json!({
                    "shard": i,
                    "generation": g,
                    "switches": sm.generation_switches.get(),
                    "states_carried": sm.states_carried.get(),
                    "late_for_switch": sm.late_for_switch.get(),
                    "connections": sm.sources.iter()
                        .map(|c| c.conns_accepted.get().saturating_sub(c.conns_closed.get()))
                        .sum::<u64>(),
                });
                if seen > *g && seen != u64::MAX {
                    o["armed"] = seen.into();
                }
                o
            }).collect::<Vec<_>>(),
            "started": self.started.to_string(),
            "pipeline": self.def.origin,
            "params": self.def.params.iter().map(|(n, p)| (n.clone(), p.json())).collect::<serde_json::Map<_, _>>(),
            "tables": self.def.tables.iter().map(|t| (t.name.clone(), Value::from(t.keys.len() + t.rows.len()))).collect::<serde_json::Map<_, _>>(),
            "sources": sources,
            "bad_records": samples,
            "reloads": {"ok": self.reloads[0], "failed": self.reloads[1]},
        })
    }
}
