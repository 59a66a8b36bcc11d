#!/usr/bin/env bash
# The heavy suites in full, beside the short forms CI runs:
#   * loom with 3 preemptions, including the acknowledgement-under-a-storm
#     model (CI: 2, without it);
#   * cargo-fuzz on every target, FUZZ_SECONDS each (default 600; CI
#     replays the committed corpus only);
#   * the differential test of the compiled chain with DIFF_CASES random
#     programs (default 200 000; CI: 10 000);
#   * the journal's kill -9 loop (200 runs; CI: 20), power-loss images
#     (1 000; CI: 300) and corruption matrix (10 000 faults; CI: 2 000);
#   * the mutation storm at full size: 5 000 000 records and 1 000 changes
#     on 1 and on 2 shards (CI: 400 000 and 150);
#   * the ingest and stream suites three times over, to shake out races.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS=${FUZZ_SECONDS:-600}
DIFF_CASES=${DIFF_CASES:-200000}

echo "== loom, LOOM_MAX_PREEMPTIONS=3"
LOOM_MAX_PREEMPTIONS=3 RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom -- --include-ignored

echo "== fuzz, ${FUZZ_SECONDS}s per target"
for t in decode_lp decode_json decode_csv decode_binary frame_stream pipeline_parse journal_scan; do
  (cd fuzz && cargo +nightly fuzz run "$t" -- -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048)
done

echo "== differential, ${DIFF_CASES} cases"
PROPTEST_CASES="$DIFF_CASES" cargo test --release --test differential

echo "== journal: kill -9 loop x200, power loss x1000 images, corruption x10000"
CRASH_ITERATIONS=200 cargo test --release --test journal_crash -- --nocapture
JOURNAL_IMAGES=1000 JOURNAL_FAULTS=10000 cargo test --release --test journal_faults -- --nocapture

echo "== mutation storm: 5M records, 1000 changes"
MUTSTREAM_STORM_RECORDS=5000000 MUTSTREAM_STORM_MUTATIONS=1000 cargo test --release --test mutation storm -- --nocapture --test-threads 1

echo "== ingest and streams x3"
for i in 1 2 3; do
  cargo test --release --test ingest --test streams --test generations --test backpressure
done
