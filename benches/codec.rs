//! ns/record of each decoder and framer on the workload data of
//! WORKLOADS.md (1024 records per iteration, decoded into a reused batch).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mutstream::codec::frame::{LineScan, StreamFramer, StreamKind};
use mutstream::codec::schema::{Field, Schema, parse_type};
use mutstream::codec::{Batch, DecodeCx, Decoder, DecoderSpec, Format, Interner, Precision};
use mutstream::loadgen::{Rng, Sensor, Tick};
use std::hint::black_box;

const N: usize = 1024;

fn schema(fields: &[(&str, &str, Option<u32>)], size: Option<u32>) -> Schema {
    Schema::new(
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
    )
}

fn tick_schema() -> Schema {
    schema(
        &[
            ("ts", "timestamp", Some(0)),
            ("seq", "u64", Some(8)),
            ("symbol", "u32", Some(16)),
            ("qty", "i32", Some(20)),
            ("price", "f64", Some(24)),
        ],
        Some(32),
    )
}

fn sensor_schema() -> Schema {
    schema(
        &[
            ("ts", "timestamp", None),
            ("device", "symbol", None),
            ("site", "symbol", None),
            ("temp", "f64", None),
            ("hum", "f64", None),
            ("battery", "i64", None),
        ],
        None,
    )
}

fn lines(f: fn(&Sensor, &mut Vec<u8>)) -> Vec<u8> {
    let mut r = Rng::new(1);
    let mut out = Vec::new();
    for i in 0..N as u64 {
        f(&Sensor::draw(&mut r, i), &mut out);
    }
    out
}

fn text_decoder(c: &mut Criterion, name: &str, format: Format, data: Vec<u8>) {
    let s = sensor_schema();
    let spec = DecoderSpec {
        format,
        measurement: None,
        precision: Precision::Ns,
        columns: ["ts", "device", "site", "temp", "hum", "battery"]
            .map(String::from)
            .to_vec(),
    };
    let mut dec = Decoder::new(&spec, &s);
    let mut batch = Batch::new(&s, N);
    let mut syms = Interner::new(1 << 20);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(name, |b| {
        b.iter(|| {
            batch.clear();
            let mut cx = DecodeCx {
                schema: &s,
                symbols: &mut syms,
                now_ns: 0,
            };
            for line in data.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                let _ = black_box(dec.decode_line(line, &mut batch, &mut cx));
            }
            black_box(batch.len())
        })
    });
    g.finish();
}

fn decoders(c: &mut Criterion) {
    let s = tick_schema();
    let mut r = Rng::new(1);
    let mut data = Vec::new();
    for i in 0..N as u64 {
        Tick::draw(&mut r, i as i64, i).encode(&mut data);
    }
    let dec = mutstream::codec::binary::BinaryDecoder::new(&s);
    let mut batch = Batch::new(&s, N);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("binary_tick", |b| {
        b.iter(|| {
            batch.clear();
            black_box(dec.decode_run(black_box(&data), &mut batch))
        })
    });
    g.finish();
    text_decoder(c, "lp_sensor", Format::Lp, lines(Sensor::lp));
    text_decoder(c, "json_sensor", Format::Json, lines(Sensor::json));
    text_decoder(c, "csv_sensor", Format::Csv, lines(Sensor::csv));
}

fn framers(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(N as u64));
    for (name, format, data) in [
        ("newline_lp", Format::Lp, lines(Sensor::lp)),
        ("newline_json", Format::Json, lines(Sensor::json)),
        ("newline_csv", Format::Csv, lines(Sensor::csv)),
    ] {
        let mut f = StreamFramer::new(StreamKind::Newline(LineScan::for_format(format)), 65536);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0usize;
                // Fed in 64 KiB receives, as the worker does.
                for chunk in data.chunks(65536) {
                    f.feed(black_box(chunk), &mut |_| n += 1);
                }
                black_box(n)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decoders, framers);
criterion_main!(benches);
