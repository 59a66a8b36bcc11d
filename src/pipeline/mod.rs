//! The `.mts` pipeline language: parse, type-check, compile, run.
//!
//! [`parser`] turns text into an [`ast::Pipeline`]; [`compile`] types it
//! against a source schema, the params, tables and sinks, producing a
//! [`program::Chain`]; [`exec::Exec`] runs a chain a batch at a time over
//! column slices; [`generation`] publishes compiled chains to the workers.
//! Nothing here touches I/O or a clock: time arrives as `now_ns`.

pub mod ast;
pub mod compile;
pub mod diag;
pub mod exec;
pub mod generation;
pub mod kernels;
pub mod lexer;
pub mod parser;
pub mod program;
pub mod state;
pub mod table;
pub mod testing;

use crate::config::{Config, ParamValue};
use diag::Diagnostic;
use program::Chain;
use std::sync::Arc;

/// A pipeline compiled for every schema a source reads.
#[derive(Clone, Debug)]
pub struct Plan {
    /// By schema index; `None` for schemas no source reads.
    pub chains: Vec<Option<Arc<Chain>>>,
}

impl Plan {
    /// The tables the chains look up, each once.
    pub fn tables(&self) -> Vec<Arc<table::Table>> {
        let mut out: Vec<Arc<table::Table>> = Vec::new();
        let keys = self
            .chains
            .iter()
            .flatten()
            .flat_map(|c| &c.segments)
            .flat_map(|s| &s.memos);
        for k in keys {
            if !out.iter().any(|t| Arc::ptr_eq(t, &k.table)) {
                out.push(k.table.clone());
            }
        }
        out
    }
}

/// A pipeline that does not compile, with its location rendered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{headline}")]
pub struct PipelineError {
    /// `file:line:col: message`.
    pub headline: String,
    /// The headline, the source line and a caret under the span.
    pub rendered: String,
}

fn located(d: &Diagnostic, origin: &str, text: &str, first_line: usize) -> PipelineError {
    let l = d.locate(origin, text, first_line);
    PipelineError {
        headline: l.headline(),
        rendered: l.to_string(),
    }
}

/// Compiles `text` (from `origin`, starting at line `first_line + 1`) for
/// every source schema of `cfg`, with `params`.
///
/// # Errors
/// The first syntax, name or type error, located in `origin`.
pub fn compile_for(
    cfg: &Config,
    text: &str,
    origin: &str,
    first_line: usize,
    params: &[(String, ParamValue)],
) -> Result<Plan, PipelineError> {
    compile_reusing(cfg, text, origin, first_line, params, None)
}

/// As [`compile_for`]; a table whose content equals one that `running`
/// uses is that same table (the same `Arc`), so shards keep what they
/// memoised about it across the switch.
///
/// # Errors
/// As [`compile_for`].
pub fn compile_reusing(
    cfg: &Config,
    text: &str,
    origin: &str,
    first_line: usize,
    params: &[(String, ParamValue)],
    running: Option<&Plan>,
) -> Result<Plan, PipelineError> {
    let ast = parser::parse(text).map_err(|d| located(&d, origin, text, first_line))?;
    let sinks: Vec<String> = cfg.sinks.iter().map(|s| s.name.clone()).collect();
    let mut tables = load_tables(cfg)?;
    if let Some(running) = running {
        let old = running.tables();
        for t in &mut tables {
            if let Some(o) = old.iter().find(|o| o.same_content(t)) {
                *t = o.clone();
            }
        }
    }
    let mut chains = vec![None; cfg.schemas.len()];
    for si in cfg.source_schemas() {
        let input = compile::CompileInput {
            schema: &cfg.schemas[si],
            params,
            tables: &tables,
            sinks: &sinks,
        };
        let c =
            compile::compile(&ast, &input).map_err(|d| located(&d, origin, text, first_line))?;
        chains[si] = Some(Arc::new(c.chain));
    }
    Ok(Plan { chains })
}

/// Loads every table of `cfg` (inline rows and CSV files).
///
/// # Errors
/// The first table that does not load, as one line.
pub fn load_tables(cfg: &Config) -> Result<Vec<Arc<table::Table>>, PipelineError> {
    cfg.tables
        .iter()
        .map(|t| {
            table::Table::load(t).map(Arc::new).map_err(|e| {
                let headline = format!("{}:{}: {e}", cfg.origin, t.line);
                PipelineError {
                    rendered: headline.clone(),
                    headline,
                }
            })
        })
        .collect()
}

/// Compiles the config's own pipeline with its params.
///
/// # Errors
/// As [`compile_for`].
pub fn compile_config(cfg: &Config) -> Result<Plan, PipelineError> {
    let p = &cfg.pipeline;
    compile_for(cfg, &p.text, &p.origin, p.first_line, &cfg.params)
}

#[cfg(test)]
mod tests;

/// Fuzz entry point for the parser and type checker: any text either
/// compiles or yields a located diagnostic; nothing panics.
#[doc(hidden)]
pub fn fuzz_one(data: &[u8]) {
    use crate::codec::schema::{Field, Schema, parse_type};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let f = |name: &str, ty: &str| {
        let (ty, wire) = parse_type(ty).expect("known type");
        Field {
            name: name.into(),
            ty,
            wire,
            offset: None,
            required: false,
        }
    };
    let schema = Arc::new(Schema::new(
        "fuzz",
        vec![
            f("ts", "timestamp"),
            f("price", "f64"),
            f("qty", "i64"),
            f("seq", "u64"),
            f("symbol", "symbol"),
            f("name", "string"),
            f("ok", "bool"),
        ],
        None,
        false,
    ));
    let params = vec![
        ("min_price".to_string(), ParamValue::F64(1.0)),
        ("n".to_string(), ParamValue::I64(3)),
        ("s".to_string(), ParamValue::Str("x".into())),
    ];
    let sinks = vec!["out".to_string(), "alerts".to_string()];
    let def =
        |name: &str,
         key: crate::codec::FieldType,
         columns: Vec<(String, crate::codec::FieldType)>| crate::config::TableDef {
            name: name.into(),
            key_field: "k".into(),
            key_type: key,
            columns,
            keys: Vec::new(),
            rows: Vec::new(),
            file: None,
            max_rows: 100,
            line: 1,
        };
    use crate::codec::FieldType as T;
    let mut set = def("watch", T::U64, Vec::new());
    set.keys = (1..5).map(toml::Value::Integer).collect();
    let mut map = def(
        "names",
        T::Symbol,
        vec![("owner".into(), T::Symbol), ("floor".into(), T::I64)],
    );
    let mut row = toml::Table::new();
    row.insert("k".into(), toml::Value::String("a".into()));
    row.insert("owner".into(), toml::Value::String("o".into()));
    map.rows = vec![row];
    let tables = vec![
        Arc::new(table::Table::load(&set).expect("valid fuzz table")),
        Arc::new(table::Table::load(&map).expect("valid fuzz table")),
    ];
    match parser::parse(text) {
        Err(d) => {
            let _ = d.locate("fuzz.mts", text, 0).to_string();
        }
        Ok(ast) => {
            let input = compile::CompileInput {
                schema: &schema,
                params: &params,
                tables: &tables,
                sinks: &sinks,
            };
            match compile::compile(&ast, &input) {
                Err(d) => {
                    let _ = d.locate("fuzz.mts", text, 0).to_string();
                }
                Ok(c) => {
                    // Run what compiled over an empty and a one-row batch.
                    let mut exec = exec::Exec::new(&c.chain, 4);
                    let mut b = crate::codec::Batch::new(&schema, 4);
                    let mut syms = crate::codec::Interner::new(16);
                    struct Nop;
                    impl exec::Emit for Nop {
                        fn emit(&mut self, _: &program::EmitSpec, _: &exec::Rows<'_>) {}
                    }
                    exec.run(&c.chain, &b, &mut syms, 0, &mut Nop);
                    for k in 0..3 {
                        let id = syms
                            .intern(if k == 0 { b"a" } else { b"zz" })
                            .expect("room");
                        let mut r = b.row();
                        r.set_i64(0, k * 1_000_000_000 - 1);
                        r.set_f64(1, if k == 1 { f64::NAN } else { k as f64 });
                        r.set_i64(2, if k == 2 { i64::MIN } else { k });
                        r.set_u64(3, k as u64);
                        r.set_sym(4, id);
                        r.commit(&schema, 0).expect("no required fields");
                    }
                    exec.run(&c.chain, &b, &mut syms, 0, &mut Nop);
                    exec.flush_windows(&c.chain, &mut syms, 0, None, &mut Nop);
                }
            }
        }
    }
}
