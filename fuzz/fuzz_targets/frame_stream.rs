#![no_main]
// Replayed on stable by tests/fuzz_corpus.rs; run with `cargo +nightly fuzz run frame_stream`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| mutstream::codec::frame::fuzz_one(data));
