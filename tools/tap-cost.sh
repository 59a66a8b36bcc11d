#!/usr/bin/env bash
# What an armed `tap` that nobody reads costs the worker, in instructions
# (callgrind; repeatable, unlike wall time on a shared machine): the
# ticks example's chain over 20 000 batches of 1024 ticks, encoded as a
# sink does, without and with the tap (benches/tap_cost.rs).
#   tools/tap-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "tap-cost: valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench --bench tap_cost --no-run --message-format=json 2>/dev/null \
  | sed -n 's/.*"executable":"\([^"]*tap_cost[^"]*\)".*/\1/p' | tail -1)
out=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$out/cg" "$bin" --bench >/dev/null 2>"$out/log"
ir() { callgrind_annotate --inclusive=yes "$out/cg" 2>/dev/null | grep -E "tap_cost::$1 " | head -1 | awk '{gsub(",","",$1); print $1}'; }
a=$(ir plain); b=$(ir tapped)
echo "instructions, 20000 batches: plain $a, tap armed and unread $b"
awk -v a="$a" -v b="$b" 'BEGIN { printf "tap cost: %+.3f %% of the chain and encoding\n", (b - a) / a * 100 }'
rm -rf "$out"
