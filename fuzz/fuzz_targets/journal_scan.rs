#![no_main]
// Replayed on stable by tests/fuzz_corpus.rs; run with `cargo +nightly fuzz run journal_scan`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mutstream::journal::fuzz_one(data));
