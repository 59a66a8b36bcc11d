//! Stateful and table stages against simple references: enrich and
//! `in @table` with the example tables, tumbling and sliding windows (late
//! records, out-of-order input within lateness, idle close, VWAP), dedup and
//! both sample forms.
//!
//! How: pipelines run through `mutstream::pipeline::testing::run` — the
//! engine behind `mutstream test`: JSON records decoded with the schema,
//! batches through the compiled chain, windows closed at the end — and
//! every output is compared with a reference computed here record by
//! record in plain Rust.

use mutstream::codec::batch::Batch;
use mutstream::codec::{DecodeCx, Interner};
use mutstream::config::Config;
use mutstream::loadgen::{Rng, Tick};
use mutstream::pipeline::exec::{Emit, Exec, Rows};
use mutstream::pipeline::program::EmitSpec;
use mutstream::pipeline::testing;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/examples")
}

fn ticks_config() -> Config {
    Config::load(&examples().join("ticks.toml")).unwrap()
}

fn lines(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

fn by_sink<'a>(out: &'a [Value], sink: &str) -> Vec<&'a Value> {
    out.iter().filter(|v| v["_sink"] == sink).collect()
}

fn tick_json(t: &Tick) -> Value {
    json!({"ts": t.ts, "seq": t.seq, "symbol": t.symbol, "qty": t.qty, "price": t.price})
}

#[test]
fn ticks_example_enriches_and_routes_exactly() {
    let cfg = ticks_config();
    let mut r = Rng::new(3);
    let ticks: Vec<Tick> = (0..5000)
        .map(|i| Tick::draw(&mut r, 1_000 + i, i as u64))
        .collect();
    let input: Vec<Value> = ticks.iter().map(tick_json).collect();
    let text = std::fs::read_to_string(examples().join("ticks.mts")).unwrap();
    let out = testing::run(&cfg, &text, "ticks.mts", 0, "tick", 0, &lines(&input)).unwrap();
    assert!(out.rejected.is_empty());
    // Reference: instruments.csv by hand.
    let csv = std::fs::read_to_string(examples().join("instruments.csv")).unwrap();
    let inst: HashMap<u32, (String, i64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].parse().unwrap(),
                (f[1].to_string(), f[2].parse().unwrap()),
            )
        })
        .collect();
    let (mut journal, mut alerts) = (Vec::new(), Vec::new());
    for t in &ticks {
        if !t.passes_example_filter() {
            continue;
        }
        let notional = t.price * t.qty as f64;
        let (sector, lot) = &inst[&t.symbol];
        let rec = json!({"ts": t.ts, "seq": t.seq, "symbol": t.symbol, "qty": t.qty, "price": t.price,
                         "notional": notional, "sector": sector, "lot": lot});
        if notional > 150_000.0 {
            alerts.push(rec)
        } else {
            journal.push(rec)
        }
    }
    let strip = |v: &&Value| {
        let mut m = v.as_object().unwrap().clone();
        m.remove("_sink");
        m.remove("_gen");
        Value::Object(m)
    };
    assert!(!alerts.is_empty() && journal.len() > 100);
    for (sink, want) in [("journal", &journal), ("alerts", &alerts)] {
        let got: Vec<Value> = by_sink(&out.outputs, sink).iter().map(strip).collect();
        assert_eq!(got.len(), want.len(), "{sink}");
        for (g, w) in got.iter().zip(want.iter()) {
            assert_eq!(g, w, "{sink}");
        }
    }
}

const WIN: &str = r#"
[admin]
listen = "127.0.0.1:0"
[runtime]
batch_max = 7
[schemas.t]
fields = [
  { name = "ts", type = "timestamp" }, { name = "sym", type = "symbol" },
  { name = "price", type = "f64" }, { name = "qty", type = "i64" }, { name = "note", type = "string" },
]
[[source]]
name = "in"
transport = "tcp"
listen = "127.0.0.1:0"
framing = "newline"
format = "json"
schema = "t"
[pipeline]
text = "to out"
[[sink]]
name = "out"
kind = "stdout"
"#;

fn win_cfg() -> Config {
    Config::parse(WIN, "w.toml", Path::new(".")).unwrap()
}

const S: i64 = 1_000_000_000;

/// Per (window start, sym): reference aggregates over records in arrival
/// order, skipping nulls.
#[derive(Default, Debug)]
struct Agg {
    n: i64,
    qty_sum: i64,
    pq: f64,
    min_p: Option<f64>,
    max_p: Option<f64>,
    first: Option<(i64, String)>,
    last: Option<(i64, String)>,
}

#[test]
fn tumbling_window_aggregates_exactly_and_counts_late() {
    let cfg = win_cfg();
    let mut r = Rng::new(11);
    let syms = ["a", "b", "c"];
    let mut input = Vec::new();
    let mut refs: BTreeMap<(i64, String), Agg> = BTreeMap::new();
    let mut max_ts = i64::MIN;
    let mut late = 0;
    let lateness = 2 * S;
    // Out of order within a jitter of up to 3 s: some beyond the 2 s lateness.
    for i in 0..3000i64 {
        let ts = i * 10_000_000 + r.range(0, 3_000_000_000) as i64 - 1_500_000_000;
        let sym = syms[r.range(0, 2) as usize];
        let price = r.cents(1, 200);
        let qty = r.range(1, 100) as i64;
        let note = format!("n{i}");
        input.push(json!({"ts": ts, "sym": sym, "price": price, "qty": qty, "note": note}));
        if max_ts != i64::MIN && ts < max_ts - lateness {
            late += 1;
            continue;
        }
        max_ts = max_ts.max(ts);
        let start = ts.div_euclid(S) * S;
        let a = refs.entry((start, sym.to_string())).or_default();
        a.n += 1;
        a.qty_sum += qty;
        a.pq += price * qty as f64;
        a.min_p = Some(a.min_p.map_or(price, |m| m.min(price)));
        a.max_p = Some(a.max_p.map_or(price, |m| m.max(price)));
        if a.first.as_ref().is_none_or(|(t, _)| ts < *t) {
            a.first = Some((ts, note.clone()));
        }
        if a.last.as_ref().is_none_or(|(t, _)| ts >= *t) {
            a.last = Some((ts, note.clone()));
        }
    }
    let text = "bars: window tumbling 1s lateness 2s by sym emit vwap = sum(price * qty) / sum(qty), trades = count(), \
                lo = min(price), hi = max(price), f = first(note), l = last(note), span = last(ts) - first(ts)\n| to out";
    let out = testing::run(&cfg, text, "w.mts", 0, "t", 0, &lines(&input)).unwrap();
    assert!(late > 10, "the input has late records: {late}");
    assert_eq!(out.outputs.len(), refs.len());
    // Sorted by window start, then key: the same order as the BTreeMap.
    for (v, ((start, sym), a)) in out.outputs.iter().zip(&refs) {
        assert_eq!(v["window_start"].as_i64(), Some(*start), "{v}");
        assert_eq!(v["ts"].as_i64(), Some(start + S), "{v}");
        assert_eq!(v["sym"].as_str(), Some(sym.as_str()));
        assert_eq!(v["trades"].as_i64(), Some(a.n));
        assert_eq!(
            v["vwap"].as_f64(),
            Some(a.pq / a.qty_sum as f64),
            "exact, same summation order: {v}"
        );
        assert_eq!(v["lo"].as_f64(), a.min_p);
        assert_eq!(v["hi"].as_f64(), a.max_p);
        assert_eq!(v["f"].as_str(), a.first.as_ref().map(|f| f.1.as_str()));
        assert_eq!(v["l"].as_str(), a.last.as_ref().map(|f| f.1.as_str()));
        assert_eq!(
            v["span"].as_i64(),
            Some(a.last.as_ref().unwrap().0 - a.first.as_ref().unwrap().0)
        );
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "ts",
                "window_start",
                "sym",
                "vwap",
                "trades",
                "lo",
                "hi",
                "f",
                "l",
                "span",
                "_gen",
                "_sink"
            ]
        );
    }
}

#[test]
fn sliding_windows_hold_each_record_in_every_window_covering_it() {
    let cfg = win_cfg();
    let input: Vec<Value> = (0..40)
        .map(|i| json!({"ts": i * S / 4, "sym": "x", "qty": 1}))
        .collect();
    let out = testing::run(
        &cfg,
        "window sliding 4s every 1s emit n = count(), q = sum(qty) | to out",
        "s.mts",
        0,
        "t",
        0,
        &lines(&input),
    )
    .unwrap();
    // Records at 0, 0.25, ..., 9.75 s: windows start at -3 s .. 9 s.
    let got: Vec<(i64, i64)> = out
        .outputs
        .iter()
        .map(|v| {
            (
                v["window_start"].as_i64().unwrap() / S,
                v["n"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut want = Vec::new();
    for start in -3..=9 {
        let n = (0..40)
            .filter(|i| (start * 4..start * 4 + 16).contains(i))
            .count() as i64;
        want.push((start, n));
    }
    assert_eq!(got, want);
    assert!(out.outputs.iter().all(|v| v["q"] == v["n"]));
}

/// Captures emitted `n` values for the idle test.
struct Count(Vec<i64>);
impl Emit for Count {
    fn emit(&mut self, _: &EmitSpec, rows: &Rows<'_>) {
        let idx: Vec<usize> = match rows.sel {
            mutstream::pipeline::kernels::Sel::All(n) => (0..n).collect(),
            mutstream::pipeline::kernels::Sel::Idx(v) => v.iter().map(|&i| i as usize).collect(),
        };
        self.0.extend(idx.iter().map(|_| 1));
    }
}

#[test]
fn windows_close_when_the_shard_goes_idle() {
    let cfg = win_cfg();
    let plan = mutstream::pipeline::compile_for(
        &cfg,
        "window tumbling 10s lateness 5s emit n = count() | to out",
        "i.mts",
        0,
        &cfg.params,
    )
    .unwrap();
    let chain = plan.chains[0].clone().unwrap();
    let mut exec = Exec::new(&chain, 16);
    let schema = &cfg.schemas[0];
    let mut b = Batch::new(schema, 16);
    let mut syms = Interner::new(100);
    let mut dec = mutstream::codec::json::JsonDecoder::new(schema);
    for i in 0..5 {
        let line = format!("{{\"ts\":{},\"sym\":\"x\"}}", i * S);
        let mut cx = DecodeCx {
            schema,
            symbols: &mut syms,
            now_ns: 0,
        };
        dec.decode(line.as_bytes(), &mut b, &mut cx).unwrap();
    }
    let wall = 1_000 * S;
    let mut out = Count(Vec::new());
    exec.run(&chain, &b, &mut syms, wall, &mut out);
    assert!(out.0.is_empty(), "the watermark (4 s - 5 s) closes nothing");
    assert_eq!(exec.window_groups(), 1);
    // Idle for less than size + lateness (15 s): still open.
    exec.flush_windows(
        &chain,
        &mut syms,
        wall,
        Some((wall + 15 * S - 1) as u64),
        &mut out,
    );
    assert!(out.0.is_empty());
    exec.flush_windows(
        &chain,
        &mut syms,
        wall,
        Some((wall + 15 * S) as u64),
        &mut out,
    );
    assert_eq!(
        out.0.len(),
        1,
        "idle for size + lateness of wall time closes the window"
    );
    assert_eq!(exec.window_groups(), 0);
}

#[test]
fn dedup_drops_repeats_within_the_duration() {
    let cfg = win_cfg();
    let input: Vec<Value> = [
        (0, "a"),
        (1, "a"),
        (2, "b"),
        (5, "a"),
        (6, "a"),
        (12, "a"),
        (3, "b"),
        (9, "b"),
    ]
    .iter()
    .map(|(t, s)| json!({"ts": t * S, "sym": s}))
    .collect();
    let out = testing::run(
        &cfg,
        "dedup sym within 5s | to out",
        "d.mts",
        0,
        "t",
        0,
        &lines(&input),
    )
    .unwrap();
    let got: Vec<(i64, &str)> = out
        .outputs
        .iter()
        .map(|v| (v["ts"].as_i64().unwrap() / S, v["sym"].as_str().unwrap()))
        .collect();
    // a@0 kept; a@1 dup; b@2 kept; a@5 kept (5 s after 0); a@6 dup of 5;
    // a@12 kept; b@3 dup of 2; b@9 kept.
    assert_eq!(got, [(0, "a"), (2, "b"), (5, "a"), (12, "a"), (9, "b")]);
}

#[test]
fn sample_every_nth_and_per_interval() {
    let cfg = win_cfg();
    let input: Vec<Value> = (0..100)
        .map(|i| json!({"ts": i * S / 10, "qty": i}))
        .collect();
    let out = testing::run(
        &cfg,
        "sample 1 in 7 | to out",
        "a.mts",
        0,
        "t",
        0,
        &lines(&input),
    )
    .unwrap();
    let got: Vec<i64> = out
        .outputs
        .iter()
        .map(|v| v["qty"].as_i64().unwrap())
        .collect();
    assert_eq!(got, (0..100).step_by(7).collect::<Vec<_>>());
    let out = testing::run(
        &cfg,
        "sample 3 per 1s | to out",
        "b.mts",
        0,
        "t",
        0,
        &lines(&input),
    )
    .unwrap();
    let got: Vec<i64> = out
        .outputs
        .iter()
        .map(|v| v["qty"].as_i64().unwrap())
        .collect();
    let want: Vec<i64> = (0..100).filter(|i| i % 10 < 3).collect();
    assert_eq!(got, want);
}

#[test]
fn sample_by_hash_is_the_documented_formula() {
    let cfg = win_cfg();
    let input: Vec<Value> = (0..500)
        .map(|i| json!({"ts": i, "sym": format!("s{i}")}))
        .collect();
    let out = testing::run(
        &cfg,
        "sample 1 in 4 by sym | to out",
        "h.mts",
        0,
        "t",
        0,
        &lines(&input),
    )
    .unwrap();
    let got: Vec<String> = out
        .outputs
        .iter()
        .map(|v| v["sym"].as_str().unwrap().to_string())
        .collect();
    let want: Vec<String> = (0..500)
        .map(|i| format!("s{i}"))
        .filter(|s| xxhash_rust::xxh3::xxh3_64(s.as_bytes()) % 4 == 0)
        .collect();
    assert!(want.len() > 80 && want.len() < 170);
    assert_eq!(got, want);
    // And the same as the expression the SPEC gives.
    let out2 = testing::run(
        &cfg,
        "filter hash(sym) % 4 == 0 | to out",
        "h2.mts",
        0,
        "t",
        0,
        &lines(&input),
    )
    .unwrap();
    assert_eq!(out2.outputs.len(), want.len());
}

/// `null in @table` is refused like `null in [...]`: it could never match.
#[test]
fn null_in_a_table_is_an_error() {
    let cfg = ticks_config();
    let e = mutstream::pipeline::compile_for(
        &cfg,
        "filter null in @watchlist | to journal",
        "n.mts",
        0,
        &cfg.params,
    )
    .unwrap_err();
    assert_eq!(
        e.headline,
        "n.mts:1:8: `null in @watchlist` never matches; test `x == null`"
    );
}
