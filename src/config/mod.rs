//! TOML config → validated [`Config`]; every limit is checked here, once.
//!
//! Parsing is serde with `deny_unknown_fields`, so an unknown key is an
//! error naming the key and its line. Validation then checks what serde
//! cannot (references between sections, binary layouts, format/framing
//! pairs, limits) and reports `path:line: message` for the table at fault.
//! Everything downstream may assume a `Config` is consistent.
//!
//! Defaults are those of SPEC §3; keys whose feature is not yet available
//! are accepted and listed in [`Config::notices`].

pub mod units;

use crate::codec::schema::{
    FIELDS_MAX, Field, FieldType, Schema, TYPE_NAMES, WireType, parse_type,
};
use crate::codec::{DecoderSpec, Format, Framing, Precision};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::Spanned;
use units::{Dur, Size};

/// The embedded default config used by `mutstream run` without `--config`.
pub const EMBEDDED: &str = include_str!("default.toml");

/// A config that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{col}: {msg}")]
    Parse {
        path: String,
        line: usize,
        col: usize,
        msg: String,
    },
    #[error("{path}:{line}: {msg}")]
    Invalid {
        path: String,
        line: usize,
        msg: String,
    },
}

// ---------------------------------------------------------------- validated

/// How an idle worker waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Idle {
    /// Poll without sleeping.
    Spin,
    /// Sleep in `io_uring_enter` until a completion arrives.
    Park,
    /// Spin for 50 µs after the last work, then park.
    Adaptive,
}

#[derive(Clone, Debug)]
pub struct Runtime {
    pub shards: usize,
    pub pin: bool,
    pub batch_max: usize,
    pub ring_capacity: usize,
    pub idle: Idle,
    pub state_dir: PathBuf,
    pub shutdown_timeout: Duration,
    pub max_symbols: u32,
    pub max_state_keys: u64,
    pub max_live_generations: u32,
    /// Provided receive buffers per shard for TCP (a power of two).
    pub recv_buffers: u32,
    /// Bytes per provided TCP receive buffer.
    pub recv_buffer_size: u32,
}

#[derive(Clone, Debug)]
pub struct Admin {
    pub listen: SocketAddr,
    /// (name, secret) pairs; the name is the author in the audit.
    pub tokens: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

/// A validated `[[source]]`.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub transport: Transport,
    pub listen: SocketAddr,
    pub framing: Framing,
    pub decoder: DecoderSpec,
    /// Index into [`Config::schemas`].
    pub schema: usize,
    pub max_frame: usize,
    pub max_connections: u32,
    /// `None` when `idle_timeout = "0s"`.
    pub idle_timeout: Option<Duration>,
    pub rcvbuf_bytes: u64,
    pub line: usize,
}

/// Where the pipeline text came from, for `file:line:col` diagnostics.
#[derive(Clone, Debug)]
pub struct PipelineSource {
    pub text: String,
    /// The `.mts` file, or the config file for inline `text`.
    pub origin: String,
    /// Line of the origin on which `text` starts (0 for a file).
    pub first_line: usize,
    /// The `.mts` file path, when it came from one.
    pub path: Option<PathBuf>,
}

/// A parameter value; its type is fixed by the literal.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
}

impl ParamValue {
    pub fn ty(&self) -> FieldType {
        match self {
            ParamValue::I64(_) => FieldType::I64,
            ParamValue::F64(_) => FieldType::F64,
            ParamValue::Bool(_) => FieldType::Bool,
            ParamValue::Str(_) => FieldType::Str,
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::I64(v) => write!(f, "{v}"),
            ParamValue::F64(v) => write!(f, "{v:?}"),
            ParamValue::Bool(v) => write!(f, "{v}"),
            ParamValue::Str(v) => write!(f, "{v:?}"),
        }
    }
}

/// A validated `[tables.N]`: its shape; rows are loaded by the pipeline.
#[derive(Clone, Debug)]
pub struct TableDef {
    pub name: String,
    pub key_field: String,
    pub key_type: FieldType,
    /// Empty for a set.
    pub columns: Vec<(String, FieldType)>,
    pub keys: Vec<toml::Value>,
    pub rows: Vec<toml::Table>,
    pub file: Option<PathBuf>,
    pub max_rows: u64,
    pub line: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Journal,
    File,
    Stdout,
    Blackhole,
    Tcp,
    Udp,
}

impl SinkKind {
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Journal => "journal",
            SinkKind::File => "file",
            SinkKind::Stdout => "stdout",
            SinkKind::Blackhole => "blackhole",
            SinkKind::Tcp => "tcp",
            SinkKind::Udp => "udp",
        }
    }
}

/// What a sink does when its ring is full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnFull {
    /// Stop reading the sockets feeding it until there is room.
    Block,
    /// Drop and count.
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    Never,
    Interval,
    EveryBatch,
}

/// A validated `[[sink]]`.
#[derive(Clone, Debug)]
pub struct SinkDef {
    pub name: String,
    pub kind: SinkKind,
    pub path: Option<PathBuf>,
    pub on_full: OnFull,
    pub segment_size: u64,
    pub fsync: Fsync,
    pub fsync_interval: Duration,
    pub max_bytes: Option<u64>,
    pub max_age: Option<Duration>,
    pub line: usize,
}

/// A validated config.
#[derive(Clone, Debug)]
pub struct Config {
    /// The config file, or `<embedded>`.
    pub origin: String,
    /// The config file itself, when there is one.
    pub path: Option<PathBuf>,
    pub runtime: Runtime,
    pub admin: Admin,
    pub schemas: Vec<Arc<Schema>>,
    pub sources: Vec<Source>,
    pub pipeline: PipelineSource,
    pub params: Vec<(String, ParamValue)>,
    pub tables: Vec<TableDef>,
    pub sinks: Vec<SinkDef>,
    /// Accepted settings whose feature this version does not provide yet.
    pub notices: Vec<String>,
}

/// Hard limits, checked here so the data path may rely on them.
pub mod limits {
    pub const SHARDS_MAX: usize = 64;
    pub const BATCH_MAX: usize = 65_536;
    pub const RING_CAPACITY_MAX: usize = 1 << 24;
    pub const MAX_FRAME_MAX: usize = 16 << 20;
    /// Largest UDP payload (IPv4).
    pub const DATAGRAM_MAX: usize = 65_507;
    pub const RECV_BUFFERS_MAX: u32 = 32_768;
    pub const RECV_BUFFER_SIZE_MIN: u32 = 512;
    pub const RECV_BUFFER_SIZE_MAX: u32 = 1 << 20;
    pub const MAX_CONNECTIONS_MAX: u32 = 65_536;
}

// ---------------------------------------------------------------- raw (serde)

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    runtime: RawRuntime,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    schemas: BTreeMap<String, Spanned<RawSchema>>,
    #[serde(default)]
    source: Vec<Spanned<RawSource>>,
    pipeline: Option<Spanned<RawPipeline>>,
    #[serde(default)]
    params: BTreeMap<String, Spanned<toml::Value>>,
    #[serde(default)]
    tables: BTreeMap<String, Spanned<RawTable>>,
    #[serde(default)]
    sink: Vec<Spanned<RawSink>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    shards: Option<u32>,
    pin: Option<bool>,
    batch_max: Option<u32>,
    ring_capacity: Option<u32>,
    idle: Option<Idle>,
    state_dir: Option<String>,
    shutdown_timeout: Option<Dur>,
    max_symbols: Option<u32>,
    max_state_keys: Option<u64>,
    max_live_generations: Option<u32>,
    recv_buffers: Option<u32>,
    recv_buffer_size: Option<Size>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    tokens: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Endian {
    Little,
    Big,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchema {
    size: Option<Size>,
    endian: Option<Endian>,
    fields: Vec<Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    offset: Option<u32>,
    required: Option<bool>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawFraming {
    Datagram,
    Newline,
    Fixed,
    Len16be,
    Len32le,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawFormat {
    Binary,
    Lp,
    Json,
    Csv,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawPrecision {
    Ns,
    Us,
    Ms,
    S,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    name: String,
    transport: Transport,
    listen: String,
    framing: RawFraming,
    format: RawFormat,
    schema: String,
    columns: Option<Vec<String>>,
    measurement: Option<String>,
    precision: Option<RawPrecision>,
    max_frame: Option<Size>,
    max_connections: Option<u32>,
    idle_timeout: Option<Dur>,
    rcvbuf_bytes: Option<Size>,
    dead_letter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    text: Option<Spanned<String>>,
    file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    key: BTreeMap<String, String>,
    keys: Option<Vec<toml::Value>>,
    columns: Option<BTreeMap<String, String>>,
    rows: Option<Vec<toml::Table>>,
    file: Option<String>,
    max_rows: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSink {
    name: String,
    kind: SinkKind,
    path: Option<String>,
    on_full: Option<OnFull>,
    segment_size: Option<Size>,
    fsync: Option<Fsync>,
    fsync_interval: Option<Dur>,
    max_bytes: Option<Size>,
    max_age: Option<Dur>,
}

// ---------------------------------------------------------------- loading

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let col = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, col)
}

/// The default shard count: one core left for the control plane, sink
/// threads and load generators.
pub fn default_shards() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.saturating_sub(1).max(1)
}

impl Config {
    /// Reads and validates the config file at `path`.
    ///
    /// # Errors
    /// Unreadable file, TOML syntax, unknown key, or a failed check, each as
    /// one line naming the file and line.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut c = Config::parse(&text, &path.display().to_string(), &base)?;
        c.path = Some(path.to_path_buf());
        Ok(c)
    }

    /// The embedded default config.
    pub fn embedded() -> Config {
        Config::parse(EMBEDDED, "<embedded>", Path::new("."))
            .expect("the embedded config is valid (tested)")
    }

    /// Parses and validates config `text`; `origin` names it in errors and
    /// relative `file` paths resolve against `base_dir`.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let (line, col) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            ConfigError::Parse {
                path: origin.to_string(),
                line,
                col,
                msg: e.message().trim().replace('\n', "; "),
            }
        })?;
        Validator {
            text,
            origin,
            base_dir,
            notices: Vec::new(),
        }
        .validate(raw)
    }

    /// The schema a source decodes into.
    pub fn schema_of(&self, source: &Source) -> &Arc<Schema> {
        &self.schemas[source.schema]
    }

    /// Index of the sink called `name`.
    pub fn sink_index(&self, name: &str) -> Option<usize> {
        self.sinks.iter().position(|s| s.name == name)
    }

    /// Schemas read by at least one source, by index into `schemas`.
    pub fn source_schemas(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.sources.iter().map(|s| s.schema).collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

struct Validator<'a> {
    text: &'a str,
    origin: &'a str,
    base_dir: &'a Path,
    notices: Vec<String>,
}

impl Validator<'_> {
    fn line(&self, span: std::ops::Range<usize>) -> usize {
        line_col(self.text, span.start).0
    }

    fn err(&self, line: usize, msg: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            path: self.origin.to_string(),
            line,
            msg: msg.into(),
        }
    }

    fn validate(mut self, raw: RawConfig) -> Result<Config, ConfigError> {
        let runtime = self.runtime(&raw.runtime)?;
        let admin = self.admin(&raw.admin)?;

        let mut schema_names = Vec::new();
        let mut schemas = Vec::new();
        for (name, s) in &raw.schemas {
            schemas.push(Arc::new(self.schema(name, s)?));
            schema_names.push(name.clone());
        }

        let mut sources = Vec::new();
        let mut seen = HashSet::new();
        let mut addrs = HashSet::new();
        for s in &raw.source {
            let src = self.source(s, &schema_names, &schemas)?;
            if !seen.insert(src.name.clone()) {
                return Err(self.err(src.line, format!("source {:?} is defined twice", src.name)));
            }
            // Port 0 asks for a fresh ephemeral port each time.
            if src.listen.port() != 0 && !addrs.insert((src.transport as u8, src.listen)) {
                return Err(self.err(
                    src.line,
                    format!(
                        "source {:?}: another source already listens on {} {}",
                        src.name,
                        if src.transport == Transport::Udp {
                            "udp"
                        } else {
                            "tcp"
                        },
                        src.listen
                    ),
                ));
            }
            sources.push(src);
        }
        if sources.is_empty() {
            return Err(self.err(1, "no [[source]]: nothing to read from"));
        }

        let mut sinks = Vec::new();
        let mut seen = HashSet::new();
        let mut paths = HashSet::new();
        for s in &raw.sink {
            let sink = self.sink(s)?;
            if !seen.insert(sink.name.clone()) {
                return Err(self.err(sink.line, format!("sink {:?} is defined twice", sink.name)));
            }
            if let Some(p) = &sink.path
                && !paths.insert(p.clone())
            {
                return Err(self.err(
                    sink.line,
                    format!(
                        "sink {:?}: path {} is used by another sink",
                        sink.name,
                        p.display()
                    ),
                ));
            }
            sinks.push(sink);
        }
        if sinks.is_empty() {
            return Err(self.err(1, "no [[sink]]: records would have nowhere to go"));
        }

        let pipeline = self.pipeline(raw.pipeline.as_ref())?;

        let mut params = Vec::new();
        for (name, v) in &raw.params {
            let line = self.line(v.span());
            let value = match v.get_ref() {
                toml::Value::Integer(i) => ParamValue::I64(*i),
                toml::Value::Float(f) => ParamValue::F64(*f),
                toml::Value::Boolean(b) => ParamValue::Bool(*b),
                toml::Value::String(s) => ParamValue::Str(s.clone()),
                other => {
                    return Err(self.err(
                        line,
                        format!(
                            "param {name}: a {} is not a parameter value (use an integer, float, bool or string)",
                            other.type_str()
                        ),
                    ));
                }
            };
            params.push((name.clone(), value));
        }

        let mut tables = Vec::new();
        for (name, t) in &raw.tables {
            tables.push(self.table(name, t)?);
        }

        if !(admin.listen.ip().is_loopback()) && admin.tokens.is_empty() {
            return Err(self.err(
                1,
                format!(
                    "[admin] listen = {} is not loopback: set [admin] tokens so that only holders of a token can change the pipeline",
                    admin.listen
                ),
            ));
        }
        for s in &sinks {
            if matches!(s.kind, SinkKind::Tcp | SinkKind::Udp) {
                self.notices.push(format!(
                    "sink {:?}: kind = {:?} (forwarding) is not yet supported in this version; `run` refuses it",
                    s.name,
                    s.kind.name()
                ));
            }
        }

        Ok(Config {
            origin: self.origin.to_string(),
            path: None,
            runtime,
            admin,
            schemas,
            sources,
            pipeline,
            params,
            tables,
            sinks,
            notices: self.notices,
        })
    }

    fn runtime(&mut self, r: &RawRuntime) -> Result<Runtime, ConfigError> {
        use limits::*;
        let shards = r.shards.map_or_else(default_shards, |s| s as usize);
        if shards == 0 || shards > SHARDS_MAX {
            return Err(self.err(
                1,
                format!("[runtime] shards = {shards}: must be 1..={SHARDS_MAX}"),
            ));
        }
        let batch_max = r.batch_max.unwrap_or(1024) as usize;
        if batch_max == 0 || batch_max > BATCH_MAX {
            return Err(self.err(
                1,
                format!("[runtime] batch_max = {batch_max}: must be 1..={BATCH_MAX}"),
            ));
        }
        let ring_capacity = r.ring_capacity.unwrap_or(65_536) as usize;
        if ring_capacity < batch_max || ring_capacity > RING_CAPACITY_MAX {
            return Err(self.err(
                1,
                format!(
                    "[runtime] ring_capacity = {ring_capacity}: must be at least batch_max ({batch_max}) and at most {RING_CAPACITY_MAX}"
                ),
            ));
        }
        let recv_buffers = r.recv_buffers.unwrap_or(256);
        if !recv_buffers.is_power_of_two() || !(2..=RECV_BUFFERS_MAX).contains(&recv_buffers) {
            return Err(self.err(
                1,
                format!("[runtime] recv_buffers = {recv_buffers}: must be a power of two in 2..={RECV_BUFFERS_MAX}"),
            ));
        }
        let recv_buffer_size = r.recv_buffer_size.map_or(64 << 10, |s| s.0);
        if recv_buffer_size < RECV_BUFFER_SIZE_MIN as u64
            || recv_buffer_size > RECV_BUFFER_SIZE_MAX as u64
        {
            return Err(self.err(
                1,
                format!(
                    "[runtime] recv_buffer_size = {recv_buffer_size}: must be {RECV_BUFFER_SIZE_MIN}..={RECV_BUFFER_SIZE_MAX} bytes"
                ),
            ));
        }
        let max_symbols = r.max_symbols.unwrap_or(1_000_000);
        if max_symbols == 0 {
            return Err(self.err(1, "[runtime] max_symbols must be at least 1"));
        }
        let max_live_generations = r.max_live_generations.unwrap_or(16);
        if max_live_generations < 2 {
            return Err(self.err(1, "[runtime] max_live_generations must be at least 2"));
        }
        Ok(Runtime {
            shards,
            pin: r.pin.unwrap_or(true),
            batch_max,
            ring_capacity,
            idle: r.idle.unwrap_or(Idle::Adaptive),
            state_dir: PathBuf::from(r.state_dir.as_deref().unwrap_or("./mutstream-data/state")),
            shutdown_timeout: r.shutdown_timeout.map_or(Duration::from_secs(30), |d| d.0),
            max_symbols,
            max_state_keys: r.max_state_keys.unwrap_or(1_000_000),
            max_live_generations,
            recv_buffers,
            recv_buffer_size: recv_buffer_size as u32,
        })
    }

    fn admin(&mut self, a: &RawAdmin) -> Result<Admin, ConfigError> {
        let listen = a.listen.as_deref().unwrap_or("127.0.0.1:9100");
        let listen: SocketAddr = listen.parse().map_err(|_| {
            self.err(
                1,
                format!("[admin] listen = {listen:?}: expected IP:PORT, e.g. \"127.0.0.1:9100\""),
            )
        })?;
        let tokens: Vec<(String, String)> = a
            .tokens
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, secret) in &tokens {
            if secret.len() < 16 {
                return Err(self.err(
                    1,
                    format!("[admin] tokens: the token of {name:?} is shorter than 16 characters"),
                ));
            }
        }
        Ok(Admin { listen, tokens })
    }

    fn schema(&mut self, name: &str, s: &Spanned<RawSchema>) -> Result<Schema, ConfigError> {
        let line = self.line(s.span());
        let raw = s.get_ref();
        if raw.fields.is_empty() {
            return Err(self.err(line, format!("schema {name}: no fields")));
        }
        if raw.fields.len() > FIELDS_MAX {
            return Err(self.err(
                line,
                format!(
                    "schema {name}: {} fields, at most {FIELDS_MAX} are supported",
                    raw.fields.len()
                ),
            ));
        }
        let mut fields = Vec::new();
        let mut names = HashSet::new();
        for f in &raw.fields {
            let fline = self.line(f.span());
            let f = f.get_ref();
            let Some((ty, wire)) = parse_type(&f.ty) else {
                return Err(self.err(
                    fline,
                    format!(
                        "schema {name}: field {}: unknown type {:?} (types: {TYPE_NAMES})",
                        f.name, f.ty
                    ),
                ));
            };
            if f.name.is_empty() || f.name.starts_with('_') {
                return Err(self.err(
                    fline,
                    format!(
                        "schema {name}: field name {:?}: names must be non-empty and not start with '_' (reserved for meta fields)",
                        f.name
                    ),
                ));
            }
            if !names.insert(f.name.clone()) {
                return Err(self.err(
                    fline,
                    format!("schema {name}: field {} is declared twice", f.name),
                ));
            }
            if f.name == "ts" && ty != FieldType::Timestamp {
                return Err(self.err(
                    fline,
                    format!("schema {name}: field ts is the event time and must have type \"timestamp\", not {:?}", f.ty),
                ));
            }
            if let (Some(size), Some(off)) = (raw.size, f.offset)
                && off as u64 + wire.width() as u64 > size.0
            {
                return Err(self.err(
                    fline,
                    format!(
                        "schema {name}: field {} at offset {off} ({} bytes) ends past the record size {}",
                        f.name,
                        wire.width(),
                        size.0
                    ),
                ));
            }
            fields.push(Field {
                name: f.name.clone(),
                ty,
                wire,
                offset: f.offset,
                required: f.required.unwrap_or(false),
            });
        }
        let size = match raw.size {
            Some(s) if s.0 == 0 || s.0 > limits::DATAGRAM_MAX as u64 => {
                return Err(self.err(
                    line,
                    format!(
                        "schema {name}: size = {} must be 1..={}",
                        s.0,
                        limits::DATAGRAM_MAX
                    ),
                ));
            }
            Some(s) => Some(s.0 as u32),
            None => None,
        };
        Ok(Schema::new(
            name,
            fields,
            size,
            matches!(raw.endian, Some(Endian::Big)),
        ))
    }

    fn source(
        &mut self,
        s: &Spanned<RawSource>,
        schema_names: &[String],
        schemas: &[Arc<Schema>],
    ) -> Result<Source, ConfigError> {
        let line = self.line(s.span());
        let r = s.get_ref();
        let name = &r.name;
        let e = |v: &Self, msg: String| v.err(line, format!("source {name:?}: {msg}"));
        let listen: SocketAddr = r.listen.parse().map_err(|_| {
            e(
                self,
                format!(
                    "listen = {:?}: expected IP:PORT, e.g. \"127.0.0.1:9000\"",
                    r.listen
                ),
            )
        })?;
        let schema = schema_names
            .iter()
            .position(|n| *n == r.schema)
            .ok_or_else(|| {
                e(
                    self,
                    format!(
                        "schema {:?} is not defined (defined: {})",
                        r.schema,
                        if schema_names.is_empty() {
                            "none".to_string()
                        } else {
                            schema_names.join(", ")
                        }
                    ),
                )
            })?;
        let framing = match r.framing {
            RawFraming::Datagram => Framing::Datagram,
            RawFraming::Newline => Framing::Newline,
            RawFraming::Fixed => Framing::Fixed,
            RawFraming::Len16be => Framing::Len16Be,
            RawFraming::Len32le => Framing::Len32Le,
        };
        let format = match r.format {
            RawFormat::Binary => Format::Binary,
            RawFormat::Lp => Format::Lp,
            RawFormat::Json => Format::Json,
            RawFormat::Csv => Format::Csv,
        };
        match (r.transport, framing) {
            (Transport::Udp, Framing::Datagram) => {}
            (Transport::Udp, f) => {
                return Err(e(
                    self,
                    format!(
                        "framing = {:?} needs transport = \"tcp\"; UDP sources use framing = \"datagram\"",
                        f.name()
                    ),
                ));
            }
            (Transport::Tcp, Framing::Datagram) => {
                return Err(e(
                    self,
                    "framing = \"datagram\" needs transport = \"udp\"".into(),
                ));
            }
            _ => {}
        }
        let ok = match format {
            Format::Binary => matches!(
                framing,
                Framing::Datagram | Framing::Fixed | Framing::Len16Be | Framing::Len32Le
            ),
            Format::Lp | Format::Json | Format::Csv => {
                matches!(framing, Framing::Newline | Framing::Datagram)
            }
        };
        if !ok {
            return Err(e(
                self,
                format!(
                    "format = {:?} cannot use framing = {:?} (binary: datagram, fixed, len16be, len32le; lp, json, csv: newline or datagram)",
                    format.name(),
                    framing.name()
                ),
            ));
        }
        let sch = &schemas[schema];
        if format == Format::Binary {
            let Some(size) = sch.size else {
                return Err(e(
                    self,
                    format!(
                        "format = \"binary\" needs a record size: set [schemas.{}] size",
                        sch.name
                    ),
                ));
            };
            for f in &sch.fields {
                if f.wire == WireType::Variable {
                    return Err(e(
                        self,
                        format!(
                            "schema {}: field {} of type {} has no fixed binary layout",
                            sch.name, f.name, f.ty
                        ),
                    ));
                }
                if f.offset.is_none() {
                    return Err(e(
                        self,
                        format!(
                            "schema {}: field {} needs an offset for format = \"binary\"",
                            sch.name, f.name
                        ),
                    ));
                }
            }
            if framing == Framing::Len16Be && size > u16::MAX as u32 {
                return Err(e(self, "record size does not fit a len16be frame".into()));
            }
        }
        let columns = match (&r.columns, format) {
            (Some(c), Format::Csv) => {
                if c.is_empty() {
                    return Err(e(self, "columns is empty".into()));
                }
                let mut seen = HashSet::new();
                for col in c {
                    if !seen.insert(col) {
                        return Err(e(self, format!("columns: {col:?} appears twice")));
                    }
                }
                if !c.iter().any(|col| sch.index_of(col).is_some()) {
                    return Err(e(
                        self,
                        format!("columns: none of them is a field of schema {}", sch.name),
                    ));
                }
                c.clone()
            }
            (None, Format::Csv) => {
                return Err(e(
                    self,
                    "format = \"csv\" needs columns = [...] (the column order; there is no header)"
                        .into(),
                ));
            }
            (Some(_), _) => return Err(e(self, "columns only applies to format = \"csv\"".into())),
            (None, _) => Vec::new(),
        };
        if format != Format::Lp && (r.measurement.is_some() || r.precision.is_some()) {
            return Err(e(
                self,
                "measurement and precision only apply to format = \"lp\"".into(),
            ));
        }
        let precision = match r.precision.unwrap_or(RawPrecision::Ns) {
            RawPrecision::Ns => Precision::Ns,
            RawPrecision::Us => Precision::Us,
            RawPrecision::Ms => Precision::Ms,
            RawPrecision::S => Precision::S,
        };
        let max_frame = r.max_frame.map_or(64 << 10, |s| s.0);
        if max_frame == 0 || max_frame > limits::MAX_FRAME_MAX as u64 {
            return Err(e(
                self,
                format!(
                    "max_frame = {max_frame} bytes: must be 1..={}",
                    limits::MAX_FRAME_MAX
                ),
            ));
        }
        if let Some(size) = sch.size
            && format == Format::Binary
            && (size as u64) > max_frame
        {
            return Err(e(
                self,
                format!("max_frame = {max_frame} is smaller than one record ({size} bytes)"),
            ));
        }
        let max_connections = r.max_connections.unwrap_or(1024);
        if max_connections == 0 || max_connections > limits::MAX_CONNECTIONS_MAX {
            return Err(e(
                self,
                format!(
                    "max_connections = {max_connections}: must be 1..={}",
                    limits::MAX_CONNECTIONS_MAX
                ),
            ));
        }
        let idle_timeout = r.idle_timeout.map_or(Duration::from_secs(300), |d| d.0);
        if r.transport == Transport::Udp
            && (r.max_connections.is_some() || r.idle_timeout.is_some())
        {
            return Err(e(
                self,
                "max_connections and idle_timeout only apply to transport = \"tcp\"".into(),
            ));
        }
        if let Some(d) = &r.dead_letter {
            self.notices.push(format!(
                "source {name:?}: dead_letter = {d:?} is not yet supported in this version; `run` counts and samples bad records without keeping them"
            ));
        }
        Ok(Source {
            name: name.clone(),
            transport: r.transport,
            listen,
            framing,
            decoder: DecoderSpec {
                format,
                measurement: r.measurement.clone(),
                precision,
                columns,
            },
            schema,
            max_frame: max_frame as usize,
            max_connections,
            idle_timeout: (!idle_timeout.is_zero()).then_some(idle_timeout),
            rcvbuf_bytes: r.rcvbuf_bytes.map_or(8 << 20, |s| s.0),
            line,
        })
    }

    fn pipeline(&self, p: Option<&Spanned<RawPipeline>>) -> Result<PipelineSource, ConfigError> {
        let Some(p) = p else {
            return Err(self.err(
                1,
                "no [pipeline]: set [pipeline] text = \"...\" or file = \"x.mts\"",
            ));
        };
        let line = self.line(p.span());
        match (&p.get_ref().text, &p.get_ref().file) {
            (Some(text), None) => {
                let (mut first, _) = line_col(self.text, text.span().start);
                // A `"""` string begins on the line after its opening quotes.
                if self.text[text.span()].starts_with("\"\"\"\n")
                    || self.text[text.span()].starts_with("'''\n")
                {
                    first += 1;
                }
                Ok(PipelineSource {
                    text: text.get_ref().clone(),
                    origin: self.origin.to_string(),
                    first_line: first - 1,
                    path: None,
                })
            }
            (None, Some(file)) => {
                let path = self.base_dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.err(
                        line,
                        format!(
                            "[pipeline] file = {file:?}: cannot read {}: {e}",
                            path.display()
                        ),
                    )
                })?;
                Ok(PipelineSource {
                    text,
                    origin: path.display().to_string(),
                    first_line: 0,
                    path: Some(path),
                })
            }
            _ => Err(self.err(line, "[pipeline] needs exactly one of text or file")),
        }
    }

    fn table(&self, name: &str, t: &Spanned<RawTable>) -> Result<TableDef, ConfigError> {
        let line = self.line(t.span());
        let r = t.get_ref();
        let e = |msg: String| self.err(line, format!("table {name}: {msg}"));
        let scalar = |ty: &str| -> Result<FieldType, ConfigError> {
            match parse_type(ty) {
                Some((t, _)) => Ok(t),
                None => Err(e(format!("unknown type {ty:?} (types: {TYPE_NAMES})"))),
            }
        };
        if r.key.len() != 1 {
            return Err(e(
                "key must name exactly one field: key = { field = \"type\" }".into(),
            ));
        }
        let (key_field, key_ty) = r.key.iter().next().expect("one entry, checked above");
        let key_type = scalar(key_ty)?;
        let mut columns = Vec::new();
        for (c, ty) in r.columns.iter().flatten() {
            if c == key_field {
                return Err(e(format!("column {c} is the key field")));
            }
            columns.push((c.clone(), scalar(ty)?));
        }
        match (&r.keys, &r.columns, &r.rows, &r.file) {
            (Some(_), None, None, None) => {}
            (None, None, None, Some(_)) => {}
            (None, Some(_), Some(rows), None) => {
                for (i, row) in rows.iter().enumerate() {
                    if !row.contains_key(key_field) {
                        return Err(e(format!("rows[{i}] has no key field {key_field}")));
                    }
                    for k in row.keys() {
                        if k != key_field && !columns.iter().any(|(c, _)| c == k) {
                            return Err(e(format!("rows[{i}]: {k} is not a column")));
                        }
                    }
                }
            }
            (None, Some(_), None, Some(_)) => {}
            _ => {
                return Err(e(
                    "a set has keys = [...] (or a file); a map has columns = {...} and rows = [...] or file = \"x.csv\"".into(),
                ));
            }
        }
        let max_rows = r.max_rows.unwrap_or(1_000_000);
        let count = r.keys.as_ref().map_or(0, |k| k.len()) + r.rows.as_ref().map_or(0, |k| k.len());
        if count as u64 > max_rows {
            return Err(e(format!("{count} rows exceed max_rows = {max_rows}")));
        }
        Ok(TableDef {
            name: name.to_string(),
            key_field: key_field.clone(),
            key_type,
            columns,
            keys: r.keys.clone().unwrap_or_default(),
            rows: r.rows.clone().unwrap_or_default(),
            file: r.file.as_ref().map(|f| self.base_dir.join(f)),
            max_rows,
            line,
        })
    }

    fn sink(&mut self, s: &Spanned<RawSink>) -> Result<SinkDef, ConfigError> {
        let line = self.line(s.span());
        let r = s.get_ref();
        let e = |msg: String| self.err(line, format!("sink {:?}: {msg}", r.name));
        let needs_path = matches!(r.kind, SinkKind::Journal | SinkKind::File);
        if needs_path && r.path.is_none() {
            return Err(e(format!("kind = {:?} needs a path", r.kind.name())));
        }
        if !needs_path && r.path.is_some() && !matches!(r.kind, SinkKind::Tcp | SinkKind::Udp) {
            return Err(e(format!("kind = {:?} takes no path", r.kind.name())));
        }
        let journal_keys = r.segment_size.is_some()
            || r.fsync.is_some()
            || r.fsync_interval.is_some()
            || r.max_bytes.is_some()
            || r.max_age.is_some();
        if journal_keys && r.kind != SinkKind::Journal {
            return Err(e("segment_size, fsync, fsync_interval, max_bytes and max_age only apply to kind = \"journal\"".into()));
        }
        let segment_size = r.segment_size.map_or(256 << 20, |s| s.0);
        if !(1 << 20..=1 << 40).contains(&segment_size) {
            return Err(e(format!(
                "segment_size = {segment_size}: must be 1MiB..=1TiB"
            )));
        }
        let fsync_interval = r.fsync_interval.map_or(Duration::from_millis(100), |d| d.0);
        if fsync_interval.is_zero() {
            return Err(e(
                "fsync_interval must be above 0 (use fsync = \"every_batch\")".into(),
            ));
        }
        if r.name.is_empty() || r.name.starts_with('_') {
            return Err(e("names must be non-empty and not start with '_'".into()));
        }
        Ok(SinkDef {
            name: r.name.clone(),
            kind: r.kind,
            path: r.path.as_ref().map(PathBuf::from),
            on_full: r.on_full.unwrap_or(OnFull::Block),
            segment_size,
            fsync: r.fsync.unwrap_or(Fsync::Interval),
            fsync_interval,
            max_bytes: r.max_bytes.map(|s| s.0),
            max_age: r.max_age.map(|d| d.0),
            line,
        })
    }
}

#[cfg(test)]
mod tests;
