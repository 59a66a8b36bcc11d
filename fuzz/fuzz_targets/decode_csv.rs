#![no_main]
// Replayed on stable by tests/fuzz_corpus.rs; run with `cargo +nightly fuzz run decode_csv`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mutstream::codec::csv::fuzz_one(data));
