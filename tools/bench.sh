#!/usr/bin/env bash
# The benchmark suite of WORKLOADS.md, end to end, beside the machine's own
# limits measured in the same run (iperf3 for TCP, sockperf for UDP
# latency; installed from Debian when missing):
#   * W1, W2, W4: filter + eval into blackhole sinks, 1 shard, median of 3;
#   * W4 again into journal sinks;
#   * W3: ticks over UDP, 32 per datagram, at the sender's maximum rate,
#     against a do-nothing receiver fed by the same sender;
#   * L1: ticks over UDP at 100 000/s for 30 s through examples/ticks.mts
#     into a journal, latency from the intended send time (mutgen, mutlat
#     and the appliance as separate processes).
# Markdown on stdout, JSON in target/bench/.
#   tools/bench.sh                         # full sizes: 20M (W1, W2), 100M (W4)
#   tools/bench.sh --records 10000000      # smaller throughput runs
#   tools/bench.sh --quick                 # small runs that check every record arrives (CI)
set -euo pipefail
cd "$(dirname "$0")/.."
install() {
  command -v "$1" >/dev/null && return
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null; fi
}
cargo build --release --workspace
mkdir -p target/bench
if [ "${1:-}" = "--quick" ]; then
  # Correctness, not speed: a run that loses a record fails.
  target/release/mutbench run --records 400000 --runs 1 --no-limits
  target/release/mutbench run --workload w4 --sink journal --records 400000 --runs 1 --no-limits
    target/release/mutbench udp --datagrams 20000 --runs 1
  target/release/mutbench latency --quick
  exit 0
fi
install iperf3
install sockperf
target/release/mutbench run --json target/bench/w1w2w4.json "$@"
target/release/mutbench run --workload w4 --sink journal --json target/bench/w4-journal.json "$@"
target/release/mutbench udp --json target/bench/w3.json
target/release/mutbench latency --json target/bench/l1.json
