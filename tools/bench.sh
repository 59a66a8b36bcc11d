#!/usr/bin/env bash
# W1, W2 and W4 (WORKLOADS.md) end to end, filter + eval into blackhole
# sinks, then W4 into journal sinks, 1 shard, median of 3 runs each, beside
# iperf3's TCP loopback limit measured in the same run. Installs iperf3 from
# Debian when missing.
#   tools/bench.sh                         # full sizes: 20M (W1, W2), 100M (W4)
#   tools/bench.sh --records 10000000      # smaller runs
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v iperf3 >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null; fi
fi
cargo build --release -p mutbench
mkdir -p target/bench
target/release/mutbench run --json target/bench/w1w2w4.json "$@"
target/release/mutbench run --workload w4 --sink journal --json target/bench/w4-journal.json "$@"
