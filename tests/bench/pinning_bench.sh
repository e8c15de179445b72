#!/usr/bin/env bash
# Pinned vs unpinned draft and verifier on one machine, side by side in one run: the services
# are started unpinned and pinned (verifier on one CPU, draft on another) in alternation,
# PAIRS times, for a single stream through the pipeline (pipeline_bench.sh) and for concurrent
# streams (load_bench.sh). Prints every measurement and the median pinned/unpinned ratios.
#   tests/bench/pinning_bench.sh [BUILD_DIR] [MODEL_DIR]
#   env: PAIRS (3), VERIFIER_CPU (0), DRAFT_CPU (1), STREAMS ("1 4"), DURATION (10),
#        PRESET (pythia-70m: the load runs' random checkpoint)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
MODEL=${2:-}
PAIRS=${PAIRS:-3}
VERIFIER_CPU=${VERIFIER_CPU:-0}
DRAFT_CPU=${DRAFT_CPU:-1}
STREAMS=${STREAMS:-"1 4"}
DURATION=${DURATION:-10}
PRESET=${PRESET:-pythia-70m}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

echo "# $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)); pinned: verifier on CPU $VERIFIER_CPU, draft on CPU $DRAFT_CPU"
for pair in $(seq "$PAIRS"); do
  for mode in unpinned pinned; do
    if [ "$mode" = pinned ]; then
      export VERIFIER_CPUS=$VERIFIER_CPU DRAFT_CPUS=$DRAFT_CPU
    else
      unset VERIFIER_CPUS DRAFT_CPUS
    fi
    RUNS=1 tests/bench/pipeline_bench.sh "$BUILD" $MODEL >"$OUT/pipe.$mode.$pair" 2>&1
    STREAMS="$STREAMS" DURATION="$DURATION" tools/loadgen/load_bench.sh "$BUILD" "$PRESET" \
      >"$OUT/load.$mode.$pair" 2>&1
    echo "pair $pair: $mode done" >&2
  done
done

python3 - "$OUT" "$PAIRS" "$STREAMS" <<'PY'
import re, statistics, sys
out, pairs, streams = sys.argv[1], int(sys.argv[2]), sys.argv[3].split()
def pipe(mode, p):
    return float(re.search(r"gRPC pipeline\s+([\d.]+)", open(f"{out}/pipe.{mode}.{p}").read()).group(1))
def load(mode, p):
    text = open(f"{out}/load.{mode}.{p}").read()
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r"phase 0: (\d+) streams.*?([\d.]+) tokens/s", text)}
rows = [("pipeline, 1 stream (pipeline_bench)", [pipe("unpinned", p) for p in range(1, pairs + 1)],
         [pipe("pinned", p) for p in range(1, pairs + 1)])]
for n in streams:
    rows.append((f"load, {n} stream(s) (load_bench)", [load("unpinned", p)[n] for p in range(1, pairs + 1)],
                 [load("pinned", p)[n] for p in range(1, pairs + 1)]))
print("| run | unpinned tokens/s | pinned tokens/s | pinned / unpinned (median of pairs) |")
print("|---|---|---|---:|")
for name, a, b in rows:
    ratio = statistics.median(y / x for x, y in zip(a, b))
    print(f"| {name} | {' '.join(f'{x:.1f}' for x in a)} | {' '.join(f'{x:.1f}' for x in b)} | {ratio:.2f} |")
PY
