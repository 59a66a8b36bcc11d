#!/usr/bin/env bash
# The benchmark suite of WORKLOADS.md, end to end, beside the machine's own
# limits measured in the same run (iperf3 for TCP, sockperf for UDP
# latency; installed from Debian when missing):
#   * W1, W2, W4: 1 shard, median of 3, into journals as WORKLOADS.md
#     says, then again into blackhole sinks (the pipeline without storage);
#   * W3: ticks over UDP, 32 per datagram, at the sender's maximum rate,
#     against a do-nothing receiver fed by the same sender;
#   * L1: ticks over UDP at 100 000/s for 30 s through examples/ticks.mts
#     into a journal, latency from the intended send time (mutgen, mutlat
#     and the appliance as separate processes); L2: the same while
#     `min_price` changes 100 times a second through the admin API, with
#     the acknowledgement times; then L2 once more under strace -c on the
#     worker threads (which syscalls they make while changes apply);
#   * acks: W4 at full speed while `set` and `apply` alternate 100 times
#     a second through the control path: acknowledgement times and the
#     load's rate with and without the changes;
#   * tap: W4 with and without a `tap` nobody reads, runs alternating
#     (tools/tap-cost.sh gives the same in instructions, repeatably);
#   * with --peers: W1 with a file sink through mutstream, syslog-ng and
#     rsyslog (Debian packages installed one after the other: they
#     conflict), and Vector and Fluent Bit when they are on the PATH;
#     configurations in tools/peers/.
# Markdown on stdout, JSON in target/bench/.
#   tools/bench.sh                         # full sizes: 20M (W1, W2), 100M (W4)
#   tools/bench.sh --records 10000000      # smaller throughput runs
#   tools/bench.sh --quick                 # small runs that check every record arrives (CI)
#   tools/bench.sh --peers                 # the full suite, then the peer comparison
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
  target/release/mutbench run --sink journal --records 400000 --runs 1 --no-limits
  target/release/mutbench udp --datagrams 20000 --runs 1
  target/release/mutbench latency --quick
  target/release/mutbench acks --records 4000000
  target/release/mutbench tap --records 400000 --runs 1
  target/release/mutbench peers --peer mutstream --records 200000 --runs 1
  exit 0
fi
peers=0
args=()
for a in "$@"; do
  if [ "$a" = "--peers" ]; then peers=1; else args+=("$a"); fi
done
set -- "${args[@]+"${args[@]}"}"
install iperf3
install sockperf
target/release/mutbench run --sink journal --json target/bench/w1w2w4.json "$@"
target/release/mutbench run --no-limits --json target/bench/w1w2w4-blackhole.json "$@"
target/release/mutbench udp --json target/bench/w3.json
install strace
target/release/mutbench latency --strace --json target/bench/latency.json
target/release/mutbench acks --json target/bench/acks.json
# The same with the kernel's receive processing and unbound workqueues off
# the worker's core (docs/OPERATIONS.md), where this user may set them.
if [ -w /sys/devices/virtual/workqueue/cpumask ]; then
  target/release/mutbench acks --isolate --json target/bench/acks-isolated.json
fi
target/release/mutbench tap --json target/bench/tap.json
if [ "$peers" = 1 ]; then
  target/release/mutbench peers --install --json target/bench/peers.json
fi
