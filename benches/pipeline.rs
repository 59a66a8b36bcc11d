//! ns/record of compiled chains over a 1024-record batch: a filter and an
//! eval alone and as P1, the IoT example's enrich and window, the ticks
//! example verbatim, and the row encoding every emitted record goes
//! through on its way to a sink.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mutstream::codec::schema::{Field, Schema, parse_type};
use mutstream::codec::{Batch, DecodeCx, Decoder, DecoderSpec, Format, Interner, Precision};
use mutstream::config::ParamValue;
use mutstream::loadgen::{Rng, Sensor, Tick};
use mutstream::pipeline::compile::{CompileInput, compile};
use mutstream::pipeline::exec::{Emit, Exec, Rows};
use mutstream::pipeline::parser::parse;
use mutstream::pipeline::program::EmitSpec;
use mutstream::pipeline::table::Table;
use std::hint::black_box;
use std::sync::Arc;

const N: usize = 1024;

/// Counts emitted records without encoding them.
struct Count(usize);
impl Emit for Count {
    fn emit(&mut self, _: &EmitSpec, rows: &Rows<'_>) {
        self.0 += rows.sel.len();
    }
}

/// Encodes emitted records into the row format, as a sink port does.
struct Encode(Vec<u8>, mutstream::sink::row::Scratch);
impl Emit for Encode {
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        self.0.clear();
        black_box(mutstream::sink::row::encode(
            spec,
            rows,
            &mut self.0,
            &mut self.1,
        ));
    }
}

/// Encodes as [`Encode`] and copies the tapped stage's rows into a tap
/// port nobody drains: the steady state of an abandoned `mutstream tap`
/// (its buffers full, each tapped batch dropped and counted).
struct EncodeTapped(Encode, mutstream::sink::tap::TapPort, u64);
impl Emit for EncodeTapped {
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        self.0.emit(spec, rows);
    }
    fn tap(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        // 1 ms of clock per batch: the 500 ms interval turns over too.
        self.2 += 1_000_000;
        self.1.copy(spec, rows, 1, self.2);
    }
}

fn schema(fields: &[(&str, &str, Option<u32>)], size: Option<u32>) -> Arc<Schema> {
    Arc::new(Schema::new(
        "s",
        fields
            .iter()
            .map(|(n, t, o)| {
                let (ty, wire) = parse_type(t).unwrap();
                Field {
                    name: n.to_string(),
                    ty,
                    wire,
                    offset: *o,
                    required: false,
                }
            })
            .collect(),
        size,
        false,
    ))
}

#[allow(clippy::too_many_arguments)]
fn bench_chain(
    c: &mut Criterion,
    name: &str,
    s: &Arc<Schema>,
    batch: &Batch,
    syms: &mut Interner,
    src: &str,
    params: &[(String, ParamValue)],
    tables: &[Arc<Table>],
) {
    let sinks = vec!["journal".to_string(), "alerts".to_string()];
    let ast = parse(src).unwrap();
    let chain = compile(
        &ast,
        &CompileInput {
            schema: s,
            params,
            tables,
            sinks: &sinks,
        },
    )
    .unwrap()
    .chain;
    let mut exec = Exec::new(&chain, N);
    let mut g = c.benchmark_group("chain");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut out = Count(0);
            exec.run(&chain, black_box(batch), syms, 0, &mut out);
            black_box(out.0)
        })
    });
    let mut enc = Encode(Vec::with_capacity(1 << 20), Default::default());
    g.bench_function(format!("{name}+encode"), |b| {
        b.iter(|| exec.run(&chain, black_box(batch), syms, 0, &mut enc))
    });
    if let Some(stage) = chain.stages.first().map(|s| s.name.clone()) {
        // The same with a tap on the first stage that nobody reads.
        let (mut port, _rx) = mutstream::sink::tap::channel(0, N);
        port.want = mutstream::sink::tap::TapWant::new(&stage, 100, 500_000_000).unwrap();
        exec.set_tap(&chain, Some(0));
        let mut tapped = EncodeTapped(
            Encode(Vec::with_capacity(1 << 20), Default::default()),
            port,
            0,
        );
        g.bench_function(format!("{name}+encode+tap_unread"), |b| {
            b.iter(|| exec.run(&chain, black_box(batch), syms, 0, &mut tapped))
        });
        exec.set_tap(&chain, None);
    }
    g.finish();
}

fn chains(c: &mut Criterion) {
    // P1 over sensors (WORKLOADS.md).
    let s = schema(
        &[
            ("ts", "timestamp", None),
            ("device", "symbol", None),
            ("site", "symbol", None),
            ("temp", "f64", None),
            ("hum", "f64", None),
            ("battery", "i64", None),
        ],
        None,
    );
    let spec = DecoderSpec {
        format: Format::Json,
        measurement: None,
        precision: Precision::Ns,
        columns: vec![],
    };
    let mut dec = Decoder::new(&spec, &s);
    let mut batch = Batch::new(&s, N);
    let mut syms = Interner::new(1 << 20);
    let mut r = Rng::new(1);
    let mut line = Vec::new();
    for i in 0..N as u64 {
        line.clear();
        Sensor::draw(&mut r, i).json(&mut line);
        let mut cx = DecodeCx {
            schema: &s,
            symbols: &mut syms,
            now_ns: 0,
        };
        dec.decode_line(&line[..line.len() - 1], &mut batch, &mut cx)
            .unwrap();
    }
    bench_chain(
        c,
        "filter",
        &s,
        &batch,
        &mut syms,
        "filter temp > 25.0 | to journal",
        &[],
        &[],
    );
    bench_chain(
        c,
        "eval",
        &s,
        &batch,
        &mut syms,
        "eval temp_f = temp * 9.0 / 5.0 + 32.0 | to journal",
        &[],
        &[],
    );
    bench_chain(
        c,
        "p1_filter_eval",
        &s,
        &batch,
        &mut syms,
        "hot: filter temp > 25.0 | eval temp_f = temp * 9.0 / 5.0 + 32.0 | to journal",
        &[],
        &[],
    );
    // The IoT example's enrich (devices.csv, symbol keys) and its window.
    let iot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/examples/iot.toml");
    let cfg = mutstream::config::Config::load(&iot).unwrap();
    let tables = mutstream::pipeline::load_tables(&cfg).unwrap();
    bench_chain(
        c,
        "enrich_devices",
        &s,
        &batch,
        &mut syms,
        "enrich @devices on device select owner, floor | to journal",
        &[],
        &tables,
    );
    bench_chain(
        c,
        "window_10s_by_device_site",
        &s,
        &batch,
        &mut syms,
        "avg: window tumbling 10s by device, site emit temp = avg(temp), hum = avg(hum), n = count() | to journal",
        &[],
        &[],
    );

    // The ticks example, its tables included.
    let t = schema(
        &[
            ("ts", "timestamp", Some(0)),
            ("seq", "u64", Some(8)),
            ("symbol", "u32", Some(16)),
            ("qty", "i32", Some(20)),
            ("price", "f64", Some(24)),
        ],
        Some(32),
    );
    let mut data = Vec::new();
    for i in 0..N as u64 {
        Tick::draw(&mut r, i as i64, i).encode(&mut data);
    }
    let mut tb = Batch::new(&t, N);
    mutstream::codec::binary::BinaryDecoder::new(&t).decode_run(&data, &mut tb);
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/examples");
    let cfg = mutstream::config::Config::load(&ex.join("ticks.toml")).unwrap();
    let tables = mutstream::pipeline::load_tables(&cfg).unwrap();
    let text = std::fs::read_to_string(ex.join("ticks.mts")).unwrap();
    bench_chain(
        c,
        "ticks_example",
        &t,
        &tb,
        &mut Interner::new(1 << 10),
        &text,
        &cfg.params,
        &tables,
    );
}

criterion_group!(benches, chains);
criterion_main!(benches);
