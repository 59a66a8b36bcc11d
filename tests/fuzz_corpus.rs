//! Replays every committed fuzz corpus file through its target on stable,
//! so CI keeps the corpus passing without a nightly toolchain.
//!
//! How: `fuzz/corpus/<target>/*` go through the same `fuzz_one` entry the
//! cargo-fuzz target calls (fuzz/fuzz_targets/<target>.rs); the directory
//! must exist and hold at least one input.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.unwrap().path();
        if p.is_file() {
            f(&std::fs::read(&p).unwrap());
            n += 1;
        }
    }
    assert!(n > 0, "{target}: empty corpus");
}

#[test]
fn decode_lp() {
    replay("decode_lp", mutstream::codec::lp::fuzz_one);
}

#[test]
fn decode_json() {
    replay("decode_json", mutstream::codec::json::fuzz_one);
}

#[test]
fn decode_csv() {
    replay("decode_csv", mutstream::codec::csv::fuzz_one);
}

#[test]
fn decode_binary() {
    replay("decode_binary", mutstream::codec::binary::fuzz_one);
}

#[test]
fn frame_stream() {
    replay("frame_stream", mutstream::codec::frame::fuzz_one);
}

#[test]
fn pipeline_parse() {
    replay("pipeline_parse", mutstream::pipeline::fuzz_one);
}

#[test]
fn journal_scan() {
    replay("journal_scan", mutstream::journal::fuzz_one);
}
