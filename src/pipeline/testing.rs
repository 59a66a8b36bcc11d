//! `mutstream test`: run a pipeline over given records, without sockets,
//! and compare what reaches each sink with what was expected.
//!
//! Input records are JSON lines in the encoding of SPEC §3, decoded with
//! the source schema exactly as a JSON source would; each batch holds up to
//! `batch_max` records, as on a shard. When the input ends, every window
//! closes (as at shutdown). Outputs carry `_sink` and `_gen` (always 1);
//! comparison ignores meta fields other than `_sink`, compares numbers by
//! value, and keeps each sink's order.

use super::exec::{Emit, Exec, Rows};
use super::program::{EmitSpec, OutSchema};
use crate::codec::{Batch, DecodeCx, Interner};
use crate::config::Config;
use serde_json::{Map, Value};
use std::sync::Arc;

/// What a test run produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every emitted record, in order, with `_sink` and `_gen`.
    pub outputs: Vec<Value>,
    /// Input lines (1-based) that did not decode, with the reason.
    pub rejected: Vec<(usize, String)>,
}

struct Collect<'a> {
    sinks: &'a [String],
    out: Vec<Value>,
    rows: crate::sink::row::Scratch,
    buf: Vec<u8>,
    line: Vec<u8>,
}

impl Emit for Collect<'_> {
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        self.buf.clear();
        crate::sink::row::encode(spec, rows, &mut self.buf, &mut self.rows);
        let schema: &Arc<OutSchema> = &spec.schema;
        for r in crate::sink::row::RowIter::new(&self.buf, schema) {
            self.line.clear();
            crate::sink::json::write_record(&mut self.line, schema, &r, 1);
            let mut v: Value =
                serde_json::from_slice(&self.line).expect("the JSON encoder writes valid JSON");
            if let Value::Object(m) = &mut v {
                m.insert("_sink".into(), Value::String(self.sinks[spec.sink].clone()));
            }
            self.out.push(v);
        }
    }
}

/// Runs `text` (from `origin`) for schema `schema` of `cfg` over the JSON
/// lines of `input`, with `now()` = `now_ns`.
///
/// # Errors
/// An unknown schema, a pipeline that does not compile (located), a table
/// that does not load.
pub fn run(
    cfg: &Config,
    text: &str,
    origin: &str,
    first_line: usize,
    schema: &str,
    now_ns: i64,
    input: &str,
) -> Result<Outcome, String> {
    let si = cfg
        .schemas
        .iter()
        .position(|s| s.name == schema)
        .ok_or_else(|| {
            let names: Vec<&str> = cfg.schemas.iter().map(|s| s.name.as_str()).collect();
            format!(
                "schema {schema:?} is not defined in {} (schemas: {})",
                cfg.origin,
                names.join(", ")
            )
        })?;
    let mut only = cfg.clone();
    for s in &mut only.sources {
        s.schema = si;
    }
    let plan =
        super::compile_for(&only, text, origin, first_line, &cfg.params).map_err(|e| e.rendered)?;

    let chain = plan.chains[si].clone().expect("compiled for the schema");
    let schema = &cfg.schemas[si];
    let batch_max = cfg.runtime.batch_max;
    let mut exec = Exec::with_limits(&chain, batch_max, cfg.runtime.max_state_keys);
    let mut batch = Batch::new(schema, batch_max);
    let mut symbols = Interner::new(cfg.runtime.max_symbols);
    let mut dec = crate::codec::json::JsonDecoder::new(schema);
    let sinks: Vec<String> = cfg.sinks.iter().map(|s| s.name.clone()).collect();
    let mut out = Collect {
        sinks: &sinks,
        out: Vec::new(),
        rows: Default::default(),
        buf: Vec::new(),
        line: Vec::new(),
    };
    let mut rejected = Vec::new();
    for (n, line) in input.lines().enumerate() {
        if batch.is_full() {
            exec.run(&chain, &batch, &mut symbols, now_ns, &mut out);
            batch.clear();
        }
        let mut cx = DecodeCx {
            schema,
            symbols: &mut symbols,
            now_ns: now_ns as u64,
        };
        if let Err(r) = dec.decode(line.as_bytes(), &mut batch, &mut cx) {
            let field = r.field.map_or(String::new(), |f| {
                format!(" (field {})", schema.fields[f as usize].name)
            });
            rejected.push((n + 1, format!("{}{field}", r.reason)));
        }
    }
    if !batch.is_empty() {
        exec.run(&chain, &batch, &mut symbols, now_ns, &mut out);
    }
    exec.flush_windows(&chain, &mut symbols, now_ns, None, &mut out);
    Ok(Outcome {
        outputs: out.out,
        rejected,
    })
}

/// Drops meta fields other than `_sink` for comparison.
fn comparable(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('_') || *k == "_sink")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Value>>(),
        ),
        v => v.clone(),
    }
}

/// Equal as records: same keys, numbers equal by value (1 == 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(p), Some(q), _, _) => p == q,
                (_, _, Some(p), Some(q)) => p == q,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (x, y) => x == y,
    }
}

/// Compares outputs with expectations, sink by sink in order; returns the
/// differences as `- expected` / `+ got` lines (empty when they match).
pub fn diff(expected: &[Value], got: &[Value]) -> Vec<String> {
    let sink = |v: &Value| {
        v.get("_sink")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut names: Vec<String> = expected.iter().chain(got).map(sink).collect();
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    for name in names {
        let e: Vec<Value> = expected
            .iter()
            .filter(|v| sink(v) == name)
            .map(comparable)
            .collect();
        let g: Vec<Value> = got
            .iter()
            .filter(|v| sink(v) == name)
            .map(comparable)
            .collect();
        let n = e.len().max(g.len());
        for i in 0..n {
            match (e.get(i), g.get(i)) {
                (Some(x), Some(y)) if same(x, y) => {}
                (x, y) => {
                    if let Some(x) = x {
                        out.push(format!("- {x}"));
                    }
                    if let Some(y) = y {
                        out.push(format!("+ {y}"));
                    }
                }
            }
        }
    }
    out
}

/// Parses JSON lines (blank lines skipped).
///
/// # Errors
/// A line that is not JSON, with its number.
pub fn parse_lines(text: &str, origin: &str) -> Result<Vec<Value>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            serde_json::from_str(l).map_err(|e| format!("{origin}:{}: not JSON: {e}", n + 1))
        })
        .collect()
}

/// A TOML value as JSON (for inline records in a CASES.toml).
pub fn toml_to_json(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or_else(
            || {
                Value::String(if f.is_nan() {
                    "NaN".into()
                } else if *f > 0.0 {
                    "Infinity".into()
                } else {
                    "-Infinity".into()
                })
            },
            Value::Number,
        ),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}
