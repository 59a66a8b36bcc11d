//! What a generation is made of: the pipeline text, the params and the
//! rows of every table. The running config's sources, schemas and sinks
//! are fixed for the process; everything here changes through mutations.
//!
//! A definition is plain data (serialisable into the audit journal and
//! `state_dir/current.json`); [`Definition::compile`] turns it into a
//! [`Plan`] against the running config, off the hot path.

use crate::codec::schema::FieldType;
use crate::config::{Config, ParamValue, TableDef};
use crate::pipeline::{PipelineError, Plan};
use serde::{Deserialize, Serialize};

/// One table: its declaration and its content (keys for a set, rows of
/// column → value otherwise).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableContent {
    pub name: String,
    pub key_field: String,
    /// Type names as in the config (`u64`, `string`, ...).
    pub key_type: String,
    #[serde(default)]
    pub columns: Vec<(String, String)>,
    pub max_rows: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<toml::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<toml::Table>,
}

/// A parameter as stored: its declared type and value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Param {
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
}

impl Param {
    fn of(v: &ParamValue) -> Param {
        match v {
            ParamValue::I64(i) => Param::I64(*i),
            ParamValue::F64(f) => Param::F64(*f),
            ParamValue::Bool(b) => Param::Bool(*b),
            ParamValue::Str(s) => Param::Str(s.clone()),
        }
    }

    fn value(&self) -> ParamValue {
        match self {
            Param::I64(i) => ParamValue::I64(*i),
            Param::F64(f) => ParamValue::F64(*f),
            Param::Bool(b) => ParamValue::Bool(*b),
            Param::Str(s) => ParamValue::Str(s.clone()),
        }
    }

    /// `text` parsed as a value of this parameter's declared type (an
    /// integer literal may set a float; a string may be quoted or not).
    pub fn parse_like(&self, text: &str) -> Result<Param, String> {
        let t = text.trim();
        match self {
            Param::I64(_) => t
                .parse()
                .map(Param::I64)
                .map_err(|_| format!("{t:?} is not an integer (the parameter is an i64)")),
            Param::F64(_) => match t.parse::<f64>() {
                Ok(f) if !t.eq_ignore_ascii_case("nan") && !t.contains("inf") => Ok(Param::F64(f)),
                _ => Err(format!("{t:?} is not a number (the parameter is an f64)")),
            },
            Param::Bool(_) => match t {
                "true" => Ok(Param::Bool(true)),
                "false" => Ok(Param::Bool(false)),
                _ => Err(format!(
                    "{t:?} is not true or false (the parameter is a bool)"
                )),
            },
            Param::Str(_) => {
                let s = t
                    .strip_prefix('"')
                    .and_then(|s| s.strip_suffix('"'))
                    .unwrap_or(t);
                Ok(Param::Str(s.to_string()))
            }
        }
    }

    /// As JSON: numbers, booleans, strings.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Param::I64(i) => (*i).into(),
            Param::F64(f) => (*f).into(),
            Param::Bool(b) => (*b).into(),
            Param::Str(s) => s.clone().into(),
        }
    }

    /// As the pipeline language would write it.
    pub fn literal(&self) -> String {
        match self {
            Param::I64(i) => i.to_string(),
            Param::F64(f) => {
                let s = f.to_string();
                if s.contains(['.', 'e', 'E']) {
                    s
                } else {
                    format!("{s}.0")
                }
            }
            Param::Bool(b) => b.to_string(),
            Param::Str(s) => format!("{s:?}"),
        }
    }
}

/// Everything a generation is compiled from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Definition {
    pub pipeline: String,
    /// Where the text came from, for `file:line:col` errors.
    pub origin: String,
    pub first_line: usize,
    pub params: Vec<(String, Param)>,
    pub tables: Vec<TableContent>,
}

impl Definition {
    /// The config's own pipeline, params and tables (a table's CSV file
    /// is read into rows here).
    pub fn from_config(cfg: &Config) -> Result<Definition, String> {
        let tables = cfg
            .tables
            .iter()
            .map(|t| match &t.file {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        format!("table {}: cannot read {}: {e}", t.name, path.display())
                    })?;
                    csv_content(t, &text, &path.display().to_string())
                }
                None => Ok(TableContent {
                    keys: t.keys.clone(),
                    rows: t.rows.clone(),
                    ..TableContent::declared(t)
                }),
            })
            .collect::<Result<_, _>>()?;
        Ok(Definition {
            pipeline: cfg.pipeline.text.clone(),
            origin: cfg.pipeline.origin.clone(),
            first_line: cfg.pipeline.first_line,
            params: cfg
                .params
                .iter()
                .map(|(n, v)| (n.clone(), Param::of(v)))
                .collect(),
            tables,
        })
    }

    /// Compiles against the running config's sources, schemas and sinks;
    /// tables that did not change are `running`'s own (see
    /// [`crate::pipeline::compile_reusing`]).
    pub fn compile(&self, cfg: &Config, running: Option<&Plan>) -> Result<Plan, PipelineError> {
        let basis = self.basis(cfg);
        let params: Vec<(String, ParamValue)> = self
            .params
            .iter()
            .map(|(n, p)| (n.clone(), p.value()))
            .collect();
        crate::pipeline::compile_reusing(
            &basis,
            &self.pipeline,
            &self.origin,
            self.first_line,
            &params,
            running,
        )
    }

    /// The running config with this definition's tables.
    fn basis(&self, cfg: &Config) -> Config {
        let mut basis = cfg.clone();
        basis.tables = self.tables.iter().map(TableContent::def).collect();
        basis
    }

    /// Table `name`'s declaration.
    pub fn table_def(&self, name: &str) -> Option<TableDef> {
        self.tables
            .iter()
            .find(|t| t.name == name)
            .map(TableContent::def)
    }

    pub fn param(&self, name: &str) -> Option<&Param> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, p)| p)
    }

    /// What changed from `old`, one short clause per change.
    pub fn diff(&self, old: &Definition) -> String {
        let mut parts = Vec::new();
        if self.pipeline != old.pipeline {
            let (a, b) = (old.pipeline.lines().count(), self.pipeline.lines().count());
            parts.push(format!("pipeline ({a} → {b} lines, from {})", self.origin));
        }
        for (n, p) in &self.params {
            match old.param(n) {
                Some(o) if o != p => {
                    parts.push(format!("${n}: {} → {}", o.literal(), p.literal()));
                }
                None => parts.push(format!("${n} = {}", p.literal())),
                _ => {}
            }
        }
        for t in &self.tables {
            match old.tables.iter().find(|o| o.name == t.name) {
                Some(o) if o != t => parts.push(format!("@{}: {}", t.name, t.changes(o))),
                None => parts.push(format!("@{}: new, {} rows", t.name, t.len())),
                _ => {}
            }
        }
        if parts.is_empty() {
            "no change".into()
        } else {
            parts.join("; ")
        }
    }
}

fn type_of(name: &str) -> FieldType {
    crate::codec::schema::parse_type(name).map_or(FieldType::Str, |(t, _)| t)
}

impl TableContent {
    /// An empty table as `def` declares it.
    pub fn declared(def: &TableDef) -> TableContent {
        TableContent {
            name: def.name.clone(),
            key_field: def.key_field.clone(),
            key_type: def.key_type.name().to_string(),
            columns: def
                .columns
                .iter()
                .map(|(n, t)| (n.clone(), t.name().to_string()))
                .collect(),
            max_rows: def.max_rows,
            keys: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Rows (or keys of a set).
    pub fn len(&self) -> usize {
        self.keys.len() + self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `+added −removed ~changed rows (N in all)` against `old`.
    fn changes(&self, old: &TableContent) -> String {
        use std::collections::HashMap;
        let index = |t: &TableContent| -> HashMap<String, String> {
            if t.rows.is_empty() {
                t.keys
                    .iter()
                    .map(|k| (k.to_string(), String::new()))
                    .collect()
            } else {
                t.rows
                    .iter()
                    .map(|r| {
                        let k = r.get(&t.key_field).map_or(String::new(), |v| v.to_string());
                        (k, toml::Value::Table(r.clone()).to_string())
                    })
                    .collect()
            }
        };
        let (n, o) = (index(self), index(old));
        let added = n.keys().filter(|k| !o.contains_key(*k)).count();
        let removed = o.keys().filter(|k| !n.contains_key(*k)).count();
        let changed = n
            .iter()
            .filter(|(k, v)| o.get(*k).is_some_and(|ov| ov != *v))
            .count();
        let mut p = Vec::new();
        if added > 0 {
            p.push(format!("+{added}"));
        }
        if removed > 0 {
            p.push(format!("−{removed}"));
        }
        if changed > 0 {
            p.push(format!("~{changed}"));
        }
        if p.is_empty() {
            p.push("reordered".into());
        }
        format!("{} ({} rows in all)", p.join(" "), self.len())
    }

    /// As a config table with inline content.
    pub fn def(&self) -> TableDef {
        TableDef {
            name: self.name.clone(),
            key_field: self.key_field.clone(),
            key_type: type_of(&self.key_type),
            columns: self
                .columns
                .iter()
                .map(|(n, t)| (n.clone(), type_of(t)))
                .collect(),
            keys: self.keys.clone(),
            rows: self.rows.clone(),
            file: None,
            max_rows: self.max_rows,
            line: 0,
        }
    }
}

/// `text` as a TOML value of type `ty` (what `Table::load` accepts).
pub fn typed(ty: FieldType, text: &str) -> Result<toml::Value, String> {
    let t = text.trim();
    let bad = |what: &str| format!("{t:?} is not {what}");
    Ok(match ty {
        FieldType::I64 | FieldType::U64 => {
            toml::Value::Integer(t.parse().map_err(|_| bad("an integer"))?)
        }
        FieldType::Timestamp => match t.parse::<i64>() {
            Ok(i) => toml::Value::Integer(i),
            Err(_) => toml::Value::String(t.to_string()),
        },
        FieldType::F64 => toml::Value::Float(t.parse().map_err(|_| bad("a number"))?),
        FieldType::Bool => match t {
            "true" => toml::Value::Boolean(true),
            "false" => toml::Value::Boolean(false),
            _ => return Err(bad("true or false")),
        },
        FieldType::Symbol | FieldType::Str => toml::Value::String(text.to_string()),
    })
}

/// Whether two key values are the same key of a table keyed by `ty`.
pub fn same_key(ty: FieldType, a: &toml::Value, b: &toml::Value) -> bool {
    match (ty, a, b) {
        (FieldType::F64, toml::Value::Integer(x), toml::Value::Float(y))
        | (FieldType::F64, toml::Value::Float(y), toml::Value::Integer(x)) => *x as f64 == *y,
        _ => a == b,
    }
}

/// A CSV text (header row naming the key and the columns) as a table's
/// content, every value typed by its column.
pub fn csv_content(def: &TableDef, text: &str, origin: &str) -> Result<TableContent, String> {
    let e = |msg: String| format!("table {}: {origin}: {msg}", def.name);
    let mut rd = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let header = rd.headers().map_err(|err| e(err.to_string()))?.clone();
    let pos = |name: &str| header.iter().position(|h| h.trim() == name);
    let key_at = pos(&def.key_field)
        .ok_or_else(|| e(format!("the header has no key column {:?}", def.key_field)))?;
    let mut col_at = Vec::new();
    for (c, _) in &def.columns {
        col_at.push(pos(c).ok_or_else(|| e(format!("the header has no column {c:?}")))?);
    }
    let mut content = TableContent::declared(def);
    for (i, rec) in rd.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|err| e(format!("line {line}: {err}")))?;
        let key = typed(def.key_type, rec.get(key_at).unwrap_or(""))
            .map_err(|m| e(format!("line {line}: {}: {m}", def.key_field)))?;
        if def.columns.is_empty() {
            content.keys.push(key);
            continue;
        }
        let mut row = toml::Table::new();
        row.insert(def.key_field.clone(), key);
        for (k, (c, ty)) in def.columns.iter().enumerate() {
            let s = rec.get(col_at[k]).unwrap_or("");
            if s.is_empty() && !matches!(ty, FieldType::Str | FieldType::Symbol) {
                continue; // null
            }
            row.insert(
                c.clone(),
                typed(*ty, s).map_err(|m| e(format!("line {line}: {c}: {m}")))?,
            );
        }
        content.rows.push(row);
    }
    Ok(content)
}

/// Upserts (`KEY COL=V ...`) a row into `content`; for a set, adds KEY.
pub fn put_row(
    def: &TableDef,
    content: &mut TableContent,
    key: &str,
    cols: &[(String, String)],
) -> Result<(), String> {
    let k = typed(def.key_type, key).map_err(|m| format!("key: {m}"))?;
    if def.columns.is_empty() {
        if let Some((c, _)) = cols.first() {
            return Err(format!("@{} is a set: it has no column {c:?}", def.name));
        }
        if !content.keys.iter().any(|x| same_key(def.key_type, x, &k)) {
            content.keys.push(k);
        }
        return Ok(());
    }
    let at = content.rows.iter().position(|r| {
        r.get(&def.key_field)
            .is_some_and(|x| same_key(def.key_type, x, &k))
    });
    let mut row = match at {
        Some(i) => content.rows[i].clone(),
        None => {
            let mut r = toml::Table::new();
            r.insert(def.key_field.clone(), k.clone());
            r
        }
    };
    for (c, v) in cols {
        let Some((_, ty)) = def.columns.iter().find(|(n, _)| n == c) else {
            return Err(format!(
                "@{} has no column {c:?} (columns: {})",
                def.name,
                def.columns
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        row.insert(c.clone(), typed(*ty, v).map_err(|m| format!("{c}: {m}"))?);
    }
    match at {
        Some(i) => content.rows[i] = row,
        None => content.rows.push(row),
    }
    Ok(())
}

/// Deletes KEY; whether it was there.
pub fn del_row(def: &TableDef, content: &mut TableContent, key: &str) -> Result<bool, String> {
    let k = typed(def.key_type, key).map_err(|m| format!("key: {m}"))?;
    let (before, after);
    if def.columns.is_empty() {
        before = content.keys.len();
        content.keys.retain(|x| !same_key(def.key_type, x, &k));
        after = content.keys.len();
    } else {
        before = content.rows.len();
        content.rows.retain(|r| {
            !r.get(&def.key_field)
                .is_some_and(|x| same_key(def.key_type, x, &k))
        });
        after = content.rows.len();
    }
    Ok(after < before)
}
