#![no_main]
// Replayed on stable by tests/fuzz_corpus.rs; run with `cargo +nightly fuzz run decode_lp`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mutstream::codec::lp::fuzz_one(data));
