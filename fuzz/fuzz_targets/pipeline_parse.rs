#![no_main]
// Replayed on stable by tests/fuzz_corpus.rs; run with `cargo +nightly fuzz run pipeline_parse`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mutstream::pipeline::fuzz_one(data));
