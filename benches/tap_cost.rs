//! What a tap nobody reads adds to a batch, counted in instructions so the
//! figure repeats run to run (`tools/tap-cost.sh` runs this under
//! callgrind and compares the two loops). Without valgrind it prints wall
//! times, which on a shared machine are only indicative.
//!
//! Both loops run the ticks example's chain (filter, eval, enrich, route,
//! to) over the same 1024-record batch and encode what it emits as a sink
//! port does; `tapped` also has a tap armed on its first stage whose
//! buffers nobody drains: after the first few batches each tapped batch
//! is dropped and counted, the steady state of an abandoned `tap`.

use mutstream::codec::schema::{Field, Schema, parse_type};
use mutstream::codec::{Batch, Interner};
use mutstream::loadgen::{Rng, Tick};
use mutstream::pipeline::compile::{CompileInput, compile};
use mutstream::pipeline::exec::{Emit, Exec, Rows};
use mutstream::pipeline::program::{Chain, EmitSpec};
use mutstream::sink::row::{Scratch, encode};
use mutstream::sink::tap::{TapPort, TapWant, channel};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const N: usize = 1024;
const BATCHES: usize = 20_000;

struct Plain(Vec<u8>, Scratch);
impl Emit for Plain {
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        self.0.clear();
        black_box(encode(spec, rows, &mut self.0, &mut self.1));
    }
}

struct Tapped(Plain, TapPort, u64);
impl Emit for Tapped {
    fn emit(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        self.0.emit(spec, rows);
    }
    fn tap(&mut self, spec: &EmitSpec, rows: &Rows<'_>) {
        // 1 ms per batch: the 500 ms interval turns over as it would.
        self.2 += 1_000_000;
        self.1.copy(spec, rows, 1, self.2);
        // As the worker does at the end of a round.
        self.1.flush();
    }
}

#[inline(never)]
fn plain(exec: &mut Exec, chain: &Chain, b: &Batch, syms: &mut Interner, out: &mut Plain) {
    for _ in 0..BATCHES {
        exec.run(chain, black_box(b), syms, 0, out);
    }
}

#[inline(never)]
fn tapped(exec: &mut Exec, chain: &Chain, b: &Batch, syms: &mut Interner, out: &mut Tapped) {
    for _ in 0..BATCHES {
        exec.run(chain, black_box(b), syms, 0, out);
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not: then
    // run a few batches only, to check it works.
    let full = std::env::args().any(|a| a == "--bench");
    let t = Arc::new(Schema::new(
        "tick",
        [
            ("ts", "timestamp", 0),
            ("seq", "u64", 8),
            ("symbol", "u32", 16),
            ("qty", "i32", 20),
            ("price", "f64", 24),
        ]
        .iter()
        .map(|(n, ty, o)| {
            let (ty, wire) = parse_type(ty).unwrap();
            Field {
                name: n.to_string(),
                ty,
                wire,
                offset: Some(*o),
                required: false,
            }
        })
        .collect(),
        Some(32),
        false,
    ));
    let mut r = Rng::new(1);
    let mut data = Vec::new();
    for i in 0..N as u64 {
        Tick::draw(&mut r, i as i64, i).encode(&mut data);
    }
    let mut batch = Batch::new(&t, N);
    mutstream::codec::binary::BinaryDecoder::new(&t).decode_run(&data, &mut batch);
    let ex = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/examples");
    let cfg = mutstream::config::Config::load(&ex.join("ticks.toml")).unwrap();
    let tables = mutstream::pipeline::load_tables(&cfg).unwrap();
    let text = std::fs::read_to_string(ex.join("ticks.mts")).unwrap();
    let sinks = vec!["journal".to_string(), "alerts".to_string()];
    let chain = compile(
        &mutstream::pipeline::parser::parse(&text).unwrap(),
        &CompileInput {
            schema: &t,
            params: &cfg.params,
            tables: &tables,
            sinks: &sinks,
        },
    )
    .unwrap()
    .chain;
    let mut syms = Interner::new(1 << 10);
    let mut exec = Exec::new(&chain, N);
    let mut p = Plain(Vec::with_capacity(1 << 20), Scratch::with_rows(N));
    let (mut port, _nobody_reads) = channel(0, N);
    port.want = TapWant::new(&chain.stages[0].name, 100, 500_000_000).unwrap();
    let mut q = Tapped(
        Plain(Vec::with_capacity(1 << 20), Scratch::with_rows(N)),
        port,
        0,
    );
    let reps = if full { 1 } else { 0 };
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        if full {
            plain(&mut exec, &chain, &batch, &mut syms, &mut p);
        } else {
            exec.run(&chain, &batch, &mut syms, 0, &mut p);
        }
        let a = t0.elapsed();
        exec.set_tap(&chain, Some(0));
        let t0 = Instant::now();
        if full {
            tapped(&mut exec, &chain, &batch, &mut syms, &mut q);
        } else {
            exec.run(&chain, &batch, &mut syms, 0, &mut q);
        }
        let b = t0.elapsed();
        exec.set_tap(&chain, None);
        if full {
            println!(
                "tap_cost: {BATCHES} batches of {N} ticks: plain {:.2} µs/batch, tap armed and unread {:.2} µs/batch ({:+.2} %, wall time; tools/tap-cost.sh counts instructions)",
                a.as_secs_f64() * 1e6 / BATCHES as f64,
                b.as_secs_f64() * 1e6 / BATCHES as f64,
                (b.as_secs_f64() / a.as_secs_f64() - 1.0) * 100.0
            );
            println!("tap_cost: rows the unread tap dropped: {}", q.1.dropped);
        }
    }
}
