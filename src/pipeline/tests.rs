//! Compile-and-run tests of the language core over hand-built batches.

use super::compile::{CompileInput, compile};
use super::exec::{Emit, Exec, Rows};
use super::parser::parse;
use super::program::EmitSpec;
use crate::codec::batch::{Batch, ColumnData, Value};
use crate::codec::schema::{Field, Schema, parse_type};
use crate::codec::{FieldType, Interner};
use crate::config::ParamValue;
use std::sync::Arc;

fn schema(fields: &[(&str, &str)]) -> Arc<Schema> {
    Arc::new(Schema::new(
        "t",
        fields
            .iter()
            .map(|(n, t)| {
                let (ty, wire) = parse_type(t).unwrap();
                Field {
                    name: n.to_string(),
                    ty,
                    wire,
                    offset: None,
                    required: false,
                }
            })
            .collect(),
        None,
        false,
    ))
}

#[derive(Clone, Debug, PartialEq)]
enum V {
    Null,
    I(i64),
    U(u64),
    F(f64),
    B(bool),
    S(String),
}

/// Records the emitted rows as (sink, [(field, value)]).
#[derive(Default)]
struct Sink {
    rows: Vec<(usize, Vec<(String, V)>)>,
}

impl Emit for Sink {
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        let idx: Vec<usize> = match rows.sel {
            super::kernels::Sel::All(n) => (0..n).collect(),
            super::kernels::Sel::Idx(v) => v.iter().map(|&i| i as usize).collect(),
        };
        for i in idx {
            let mut rec = Vec::new();
            for ((name, ty), &r) in spec.schema.fields.iter().zip(&spec.regs) {
                let (c, arena) = rows.column(r);
                let v = if !c.valid.get(i) {
                    V::Null
                } else {
                    match (&c.data, ty) {
                        (ColumnData::I64(v), _) => V::I(v[i]),
                        (ColumnData::U64(v), _) => V::U(v[i]),
                        (ColumnData::F64(v), _) => V::F(v[i]),
                        (ColumnData::Bool(v), _) => V::B(v[i]),
                        (ColumnData::Sym(v), _) => {
                            V::S(String::from_utf8(rows.symbols.resolve(v[i]).to_vec()).unwrap())
                        }
                        (ColumnData::Str(v), _) => {
                            V::S(String::from_utf8(v[i].get(arena).to_vec()).unwrap())
                        }
                    }
                };
                rec.push((name.clone(), v));
            }
            self.rows.push((spec.sink, rec));
        }
    }
}

struct Run {
    out: Vec<(usize, Vec<(String, V)>)>,
    exec: Exec,
}

/// Compiles `src` for `s`, fills a batch with `rows`, runs it.
fn run(s: &Arc<Schema>, src: &str, params: &[(&str, ParamValue)], rows: &[Vec<V>]) -> Run {
    let params: Vec<(String, ParamValue)> = params
        .iter()
        .map(|(n, v)| (n.to_string(), v.clone()))
        .collect();
    let sinks = vec!["out".to_string(), "side".to_string()];
    let ast = parse(src).unwrap_or_else(|e| panic!("{}", e.locate("t", src, 0)));
    let c = compile(
        &ast,
        &CompileInput {
            schema: s,
            params: &params,
            tables: &[],
            sinks: &sinks,
        },
    )
    .unwrap_or_else(|e| panic!("{}", e.locate("t", src, 0)));

    let mut syms = Interner::new(100);
    let mut b = Batch::new(s, 64);
    for r in rows {
        let mut w = b.row();
        for (i, v) in r.iter().enumerate() {
            match v {
                V::Null => w.set_null(i),
                V::I(x) => w.set_i64(i, *x),
                V::U(x) => w.set_u64(i, *x),
                V::F(x) => w.set_f64(i, *x),
                V::B(x) => w.set_bool(i, *x),
                V::S(x) => {
                    if s.fields[i].ty == FieldType::Symbol {
                        let id = syms.intern(x.as_bytes()).unwrap();
                        w.set_sym(i, id)
                    } else {
                        w.set_str(i, x.as_bytes())
                    }
                }
            }
        }
        w.commit(s, 0).unwrap();
    }
    let mut exec = Exec::new(&c.chain, 64);
    let mut sink = Sink::default();
    exec.run(&c.chain, &b, &mut syms, 123, &mut sink);
    let _ = Value::Null;
    Run {
        out: sink.rows,
        exec,
    }
}

fn col(out: &[(usize, Vec<(String, V)>)], name: &str) -> Vec<V> {
    out.iter()
        .map(|(_, r)| {
            r.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap()
        })
        .collect()
}

#[test]
fn filter_eval_route_to() {
    let s = schema(&[("price", "f64"), ("qty", "i64"), ("sym", "symbol")]);
    let r = run(
        &s,
        "hot: filter price > $min | eval notional = price * qty\nbig: route side when notional > 1000 | to out",
        &[("min", ParamValue::F64(10.0))],
        &[
            vec![V::F(5.0), V::I(10), V::S("a".into())],
            vec![V::F(20.0), V::I(10), V::S("b".into())],
            vec![V::F(200.0), V::I(10), V::S("c".into())],
            vec![V::Null, V::I(10), V::S("d".into())],
            vec![V::F(f64::NAN), V::I(10), V::S("e".into())],
            vec![V::F(30.0), V::Null, V::S("f".into())],
        ],
    );
    let side: Vec<_> = r.out.iter().filter(|(k, _)| *k == 1).cloned().collect();
    let out: Vec<_> = r.out.iter().filter(|(k, _)| *k == 0).cloned().collect();
    assert_eq!(col(&side, "sym"), [V::S("c".into())]);
    assert_eq!(col(&side, "notional"), [V::F(2000.0)]);
    // A null notional does not match `> 1000`: it stays in the pipeline.
    assert_eq!(col(&out, "sym"), [V::S("b".into()), V::S("f".into())]);
    assert_eq!(col(&out, "notional"), [V::F(200.0), V::Null]);
    assert_eq!(r.exec.counters.stage_in, [6, 3, 3, 2]);
}

#[test]
fn null_nan_overflow_division() {
    let s = schema(&[("a", "i64"), ("b", "i64"), ("f", "f64")]);
    let r = run(
        &s,
        "eval s = a + b, d = a / b, m = a % b, fd = f / 0.0, isn = f != null, nn = f == f, ne = f != 1.0 | to out",
        &[],
        &[
            vec![V::I(i64::MAX), V::I(1), V::F(f64::NAN)],
            vec![V::I(7), V::I(0), V::Null],
            vec![V::I(-7), V::I(2), V::F(1.0)],
            vec![V::I(i64::MIN), V::I(-1), V::F(2.0)],
        ],
    );
    assert_eq!(col(&r.out, "s"), [V::Null, V::I(7), V::I(-5), V::Null]);
    assert_eq!(
        col(&r.out, "d"),
        [V::I(i64::MAX), V::Null, V::I(-3), V::Null]
    );
    assert_eq!(col(&r.out, "m"), [V::I(0), V::Null, V::I(-1), V::Null]);
    assert_eq!(col(&r.out, "fd"), [V::Null, V::Null, V::Null, V::Null]);
    assert_eq!(
        col(&r.out, "isn"),
        [V::B(true), V::B(false), V::B(true), V::B(true)]
    );
    assert_eq!(
        col(&r.out, "nn"),
        [V::B(false), V::B(false), V::B(true), V::B(true)]
    );
    assert_eq!(
        col(&r.out, "ne"),
        [V::B(false), V::B(false), V::B(false), V::B(true)]
    );
    // overflow: MAX+1, MIN+(-1), MIN/-1, MIN%-1; division by zero: 7/0, 7%0 and f/0.0 (x3, one NaN row has f valid).
    assert_eq!(r.exec.counters.overflow, 4);
    assert_eq!(r.exec.counters.div_zero, 2 + 3);
}

#[test]
fn mixed_numeric_comparisons_are_exact() {
    let s = schema(&[("i", "i64"), ("u", "u64")]);
    let r = run(
        &s,
        "eval lt = i < u, eq = u == 18446744073709551615, big = u > 9223372036854775807, f = i < 1.5 | to out",
        &[],
        &[vec![V::I(-1), V::U(u64::MAX)], vec![V::I(5), V::U(5)]],
    );
    assert_eq!(col(&r.out, "lt"), [V::B(true), V::B(false)]);
    assert_eq!(col(&r.out, "eq"), [V::B(true), V::B(false)]);
    assert_eq!(col(&r.out, "big"), [V::B(true), V::B(false)]);
    assert_eq!(col(&r.out, "f"), [V::B(true), V::B(false)]);
}

#[test]
fn kleene_logic_in_filters() {
    let s = schema(&[("a", "bool"), ("b", "bool")]);
    let r = run(
        &s,
        "eval o = a or b, x = a and b, n = not a | filter a or b | to out",
        &[],
        &[
            vec![V::Null, V::B(true)],
            vec![V::Null, V::B(false)],
            vec![V::B(true), V::Null],
            vec![V::B(false), V::Null],
        ],
    );
    // `null or false` is null: the filter drops it; `false or null` too.
    assert_eq!(col(&r.out, "o"), [V::B(true), V::B(true)]);
    assert_eq!(col(&r.out, "x"), [V::Null, V::Null]);
    assert_eq!(col(&r.out, "n"), [V::Null, V::B(false)]);
}

#[test]
fn functions() {
    let s = schema(&[
        ("name", "symbol"),
        ("txt", "string"),
        ("v", "f64"),
        ("i", "i64"),
    ]);
    let r = run(
        &s,
        "eval l = len(name), up = upper(txt), lo = lower(name), sw = starts_with(name, \"ab\"), \
         c = contains(txt, \"é\"), r = round(v), fl = floor(v), ce = ceil(v), ab = abs(i), \
         mx = max(v, i, 2), mn = min(i, 3), t = if(i > 0, name, txt), h = hash(name, i), n = now(), \
         inl = name in [\"abc\", \"zz\"], ini = i in [1, 2, -5] | to out",
        &[],
        &[
            vec![V::S("abc".into()), V::S("café".into()), V::F(2.5), V::I(-5)],
            vec![
                V::S("x".into()),
                V::S("Ü".into()),
                V::F(f64::NAN),
                V::I(i64::MIN),
            ],
        ],
    );
    assert_eq!(col(&r.out, "l"), [V::I(3), V::I(1)]);
    assert_eq!(col(&r.out, "up"), [V::S("CAFÉ".into()), V::S("Ü".into())]);
    assert_eq!(col(&r.out, "lo"), [V::S("abc".into()), V::S("x".into())]);
    assert_eq!(col(&r.out, "sw"), [V::B(true), V::B(false)]);
    assert_eq!(col(&r.out, "c"), [V::B(true), V::B(false)]);
    let rounded = col(&r.out, "r");
    assert_eq!(rounded[0], V::F(3.0));
    assert!(matches!(rounded[1], V::F(f) if f.is_nan()));
    assert_eq!(col(&r.out, "fl")[0], V::F(2.0));
    assert_eq!(col(&r.out, "ce")[0], V::F(3.0));
    assert_eq!(col(&r.out, "ab"), [V::I(5), V::Null]);
    // max skips NaN: max(NaN, MIN, 2) = 2.
    assert_eq!(col(&r.out, "mx"), [V::F(2.5), V::F(2.0)]);
    assert_eq!(col(&r.out, "mn"), [V::I(-5), V::I(i64::MIN)]);
    assert_eq!(col(&r.out, "t"), [V::S("café".into()), V::S("Ü".into())]);
    let mut bytes = b"abc".to_vec();
    bytes.extend_from_slice(&(-5i64).to_le_bytes());
    assert_eq!(
        col(&r.out, "h")[0],
        V::U(xxhash_rust::xxh3::xxh3_64(&bytes))
    );
    assert_eq!(col(&r.out, "n"), [V::I(123), V::I(123)]);
    assert_eq!(col(&r.out, "inl"), [V::B(true), V::B(false)]);
    assert_eq!(col(&r.out, "ini"), [V::B(true), V::B(false)]);
}

#[test]
fn shaping_stages() {
    let s = schema(&[("a", "i64"), ("b", "i64"), ("c", "i64")]);
    let r = run(
        &s,
        "eval d = a + 1, a = 0 | drop b | rename c as z | select z, d, a | tee side | to out",
        &[],
        &[vec![V::I(1), V::I(2), V::I(3)]],
    );
    assert_eq!(r.out.len(), 2);
    assert_eq!(r.out[0].0, 1);
    assert_eq!(
        r.out[1].1,
        vec![
            ("z".to_string(), V::I(3)),
            ("d".to_string(), V::I(2)),
            ("a".to_string(), V::I(0))
        ]
    );
}

fn compile_err(fields: &[(&str, &str)], src: &str) -> String {
    let s = schema(fields);
    let sinks = vec!["out".to_string(), "alerts".to_string()];
    let params = vec![("min_price".to_string(), ParamValue::F64(1.0))];
    let ast = match parse(src) {
        Ok(a) => a,
        Err(e) => return e.locate("p.mts", src, 0).headline(),
    };
    match compile(
        &ast,
        &CompileInput {
            schema: &s,
            params: &params,
            tables: &[],
            sinks: &sinks,
        },
    ) {
        Ok(_) => panic!("compiled: {src}"),
        Err(e) => e.locate("p.mts", src, 0).headline(),
    }
}

#[test]
fn type_errors_are_located() {
    let f = [
        ("price", "f64"),
        ("qty", "i64"),
        ("sym", "symbol"),
        ("ok", "bool"),
        ("ts", "timestamp"),
    ];
    let cases = [
        (
            "filter prcie > 1 | to out",
            "p.mts:1:8: unknown field `prcie`; did you mean `price`?",
        ),
        (
            "filter price > $min_prcie | to out",
            "p.mts:1:16: unknown parameter `$min_prcie`; did you mean `$min_price`?",
        ),
        (
            "filter price | to out",
            "p.mts:1:8: `filter` needs a bool expression, found f64",
        ),
        (
            "eval x = sym + 1 | to out",
            "p.mts:1:10: `+` is not defined for symbol and i64",
        ),
        (
            "filter sym > 1 | to out",
            "p.mts:1:8: cannot compare symbol with i64",
        ),
        (
            "eval x = ts * 2 | to out",
            "p.mts:1:10: `*` is not defined for timestamp and i64",
        ),
        (
            "to outt",
            "p.mts:1:4: unknown sink `outt`; did you mean `out`?",
        ),
        (
            "filter ok | eval x = 1",
            "p.mts:1:13: the pipeline must end with `to SINK` (records reaching its end would go nowhere)",
        ),
        (
            "to out | filter ok",
            "p.mts:1:10: unreachable stage: `to` ends the pipeline",
        ),
        (
            "eval x = sum(price) | to out",
            "p.mts:1:10: aggregate `sum` is only allowed in a window's `emit`",
        ),
        (
            "eval x = lenn(sym) | to out",
            "p.mts:1:10: unknown function `lenn`; did you mean `len`?",
        ),
        (
            "eval x = len(price) | to out",
            "p.mts:1:14: `len` needs a string or symbol, found f64",
        ),
        (
            "eval x = null | to out",
            "p.mts:1:10: cannot infer the type of `null`; to remove a field use `drop`",
        ),
        (
            "eval _gen = 1 | to out",
            "p.mts:1:6: `_gen`: names starting with `_` are reserved for meta fields",
        ),
        (
            "select price, pirce | to out",
            "p.mts:1:15: unknown field `pirce`; did you mean `price`?",
        ),
        (
            "rename price as qty | to out",
            "p.mts:1:17: `qty` already exists; drop it first or choose another name",
        ),
        (
            "filter ok > true | to out",
            "p.mts:1:8: bools only compare with `==` and `!=`",
        ),
        (
            "eval x = if(price, 1, 2) | to out",
            "p.mts:1:13: `if` needs a bool condition, found f64",
        ),
        (
            "eval x = if(ok, 1, sym) | to out",
            "p.mts:1:10: `if` branches have different types: i64 and symbol",
        ),
        (
            "filter price in [1, \"a\"] | to out",
            "p.mts:1:21: a string item in a list of f64 values",
        ),
        (
            "filter sym in @watch | to out",
            "p.mts:1:15: unknown table `@watch`",
        ),
        ("to out, out", "p.mts:1:9: sink `out` is named twice"),
        (
            "window tumbling 1s emit p = price | to out",
            "p.mts:1:29: `price` varies within a window: aggregate it (e.g. `last(price)`) or list it in `by`",
        ),
        (
            "eval x = min(price) | to out",
            "p.mts:1:10: `min` takes two or more arguments (as an aggregate, it belongs in a window's `emit`)",
        ),
        (
            "window tumbling 1s emit m = max() | to out",
            "p.mts:1:29: `max` needs arguments: one as a window's aggregate, two or more to compare values",
        ),
    ];
    for (src, want) in cases {
        assert_eq!(compile_err(&f, src), want, "{src}");
    }
}

#[test]
fn integer_literals_take_the_type_of_a_u64_operand() {
    let s = schema(&[("seq", "u64"), ("name", "symbol")]);
    let r = run(
        &s,
        "eval m = seq % 10, n = seq + 1, h = hash(name) % 1000, neg = seq - 5, mixed = seq + -1 | to out",
        &[],
        &[
            vec![V::U(u64::MAX - 5), V::S("abc".into())],
            vec![V::U(3), V::S("x".into())],
        ],
    );
    assert_eq!(col(&r.out, "m"), [V::U((u64::MAX - 5) % 10), V::U(3)]);
    assert_eq!(col(&r.out, "n"), [V::U(u64::MAX - 4), V::U(4)]);
    let h = xxhash_rust::xxh3::xxh3_64(b"abc") % 1000;
    assert_eq!(col(&r.out, "h")[0], V::U(h));
    // Unsigned underflow is overflow: null.
    assert_eq!(col(&r.out, "neg"), [V::U(u64::MAX - 10), V::Null]);
    // A negative literal keeps i64 arithmetic (u64 above i64::MAX is null).
    assert_eq!(col(&r.out, "mixed"), [V::Null, V::I(2)]);
}

/// A table declaration for tests: key field `key` of type `key_type`.
fn table_def(
    key: &str,
    key_type: FieldType,
    columns: Vec<(String, FieldType)>,
    rows: Vec<toml::Table>,
) -> crate::config::TableDef {
    crate::config::TableDef {
        name: "t".into(),
        key_field: key.into(),
        key_type,
        columns,
        keys: Vec::new(),
        rows,
        file: None,
        max_rows: 10,
        line: 1,
    }
}

/// Memo slots across generations: a table of the same content handed over
/// as the same `Arc` keeps its memo, one with the same content loaded
/// again gets an emptied one, and a changed table never sees what was
/// memoised about the old one.
#[test]
fn lookup_memos_follow_their_table_across_generations() {
    use super::table::Table;
    let s = schema(&[("sym", "symbol")]);
    let def = |x_sector: &str| {
        let row = |k: &str, v: &str| {
            let mut r = toml::Table::new();
            r.insert("sym".into(), toml::Value::String(k.into()));
            r.insert("sector".into(), toml::Value::String(v.into()));
            r
        };
        table_def(
            "sym",
            FieldType::Symbol,
            vec![("sector".into(), FieldType::Symbol)],
            vec![row("a", x_sector), row("b", "y")],
        )
    };
    let src = "filter sym in @t | enrich @t on sym select sector | to out";
    let ast = parse(src).unwrap();
    let sinks = vec!["out".to_string()];
    let chain = |t: &Arc<Table>| {
        compile(
            &ast,
            &CompileInput {
                schema: &s,
                params: &[],
                tables: std::slice::from_ref(t),
                sinks: &sinks,
            },
        )
        .unwrap()
        .chain
    };
    let mut syms = Interner::new(100);
    let mut b = Batch::new(&s, 64);
    for k in ["a", "b", "c", "a"] {
        let id = syms.intern(k.as_bytes()).unwrap();
        let mut w = b.row();
        w.set_sym(0, id);
        w.commit(&s, 0).unwrap();
    }
    let sectors = |exec: &mut Exec, c: &super::program::Chain, syms: &mut Interner| {
        let mut sink = Sink::default();
        exec.run(c, &b, syms, 0, &mut sink);
        col(&sink.rows, "sector")
    };
    let v = |x: &str| V::S(x.into());

    let t1 = Arc::new(Table::load(&def("x")).unwrap());
    let c1 = chain(&t1);
    let mut e1 = Exec::new(&c1, 64);
    assert_eq!(sectors(&mut e1, &c1, &mut syms), [v("x"), v("y"), v("x")]);

    // The same table, shared: the memo moves over as it is.
    let c2 = chain(&t1);
    let mut e2 = Exec::new(&c2, 64);
    e2.adopt(&c2, &mut e1, &c1);
    assert_eq!(sectors(&mut e2, &c2, &mut syms), [v("x"), v("y"), v("x")]);

    // A changed table: the memory is reused, what it held is not.
    let t3 = Arc::new(Table::load(&def("z")).unwrap());
    assert!(!t3.same_content(&t1));
    let c3 = chain(&t3);
    let mut e3 = Exec::new(&c3, 64);
    e3.adopt(&c3, &mut e2, &c2);
    assert_eq!(sectors(&mut e3, &c3, &mut syms), [v("z"), v("y"), v("z")]);

    // The same content loaded again compares equal (the control plane
    // then hands the running `Arc` to the new generation).
    assert!(Table::load(&def("z")).unwrap().same_content(&t3));
}

/// `compile_reusing` hands an unchanged table to the new plan as the
/// running plan's own `Arc`, and a changed one as a new table.
#[test]
fn unchanged_tables_are_shared_with_the_running_plan() {
    let text = |lot: i64| {
        format!(
            "[[source]]\nname = \"in\"\ntransport = \"udp\"\nlisten = \"127.0.0.1:0\"\nformat = \"lp\"\nframing = \"datagram\"\nschema = \"m\"\n\
             [schemas.m]\nfields = [{{ name = \"sym\", type = \"symbol\" }}]\n\
             [tables.t]\nkey = {{ sym = \"symbol\" }}\ncolumns = {{ lot = \"i64\" }}\nrows = [{{ sym = \"a\", lot = {lot} }}]\n\
             [pipeline]\ntext = \"enrich @t on sym select lot | to out\"\n\
             [[sink]]\nname = \"out\"\nkind = \"blackhole\"\n"
        )
    };
    let cfg = |lot| {
        crate::config::Config::parse(&text(lot), "t.toml", std::path::Path::new(".")).unwrap()
    };
    let p = &cfg(1).pipeline;
    let compile = |c: &crate::config::Config, running| {
        super::compile_reusing(c, &p.text, "t.mts", 0, &c.params, running).unwrap()
    };
    let first = compile(&cfg(1), None);
    let same = compile(&cfg(1), Some(&first));
    let changed = compile(&cfg(2), Some(&first));
    assert_eq!(first.tables().len(), 1);
    assert!(Arc::ptr_eq(&first.tables()[0], &same.tables()[0]));
    assert!(!Arc::ptr_eq(&first.tables()[0], &changed.tables()[0]));
    assert!(!Arc::ptr_eq(
        &first.tables()[0],
        &compile(&cfg(1), None).tables()[0]
    ));
}

/// A table whose only change is a float cell going from `0.0` to `-0.0` is
/// a changed table (`eval` can tell them apart: `1.0 / x`).
#[test]
fn same_content_compares_float_cells_by_bits() {
    use super::table::Table;
    let def = |v: f64| {
        let mut r = toml::Table::new();
        r.insert("k".into(), toml::Value::Integer(1));
        r.insert("x".into(), toml::Value::Float(v));
        table_def(
            "k",
            FieldType::U64,
            vec![("x".into(), FieldType::F64)],
            vec![r],
        )
    };
    let t = |v| Table::load(&def(v)).unwrap();
    assert!(t(0.0).same_content(&t(0.0)));
    assert!(!t(0.0).same_content(&t(-0.0)));
    assert!(t(f64::NAN).same_content(&t(f64::NAN)));
    assert!(!t(1.0).same_content(&t(2.0)));
}
