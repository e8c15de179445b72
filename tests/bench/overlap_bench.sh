#!/usr/bin/env bash
# Overlapped rounds: the gain over sequential rounds per acceptance rate. Runs
# tests/bench/pipeline_bench.sh for drafts of the trained checkpoint that accept more or less
# often and prints, per draft: acceptance, rounds overlapped, sequential and overlapped tokens/s
# through the pipeline (same run), and their ratio. docs/pipeline.md has the numbers.
#   tests/bench/overlap_bench.sh [BUILD_DIR] [MODEL_DIR]   (env: RUNS (3), TOKENS (128), K (8))
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
MODEL=${2:-../shared/models/specdec-tiny-py}
[ -f "$MODEL/vocab_rank.json" ] || { echo "overlap_bench: $MODEL is not the trained checkpoint (no vocab_rank.json)" >&2; exit 1; }
RUNS=${RUNS:-3}; TOKENS=${TOKENS:-128}; K=${K:-8}
WORK=$(mktemp -d /tmp/specdec_overlap.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
. tests/bench/lib.sh
ALL=$(all_layers "$MODEL")
i=0
for draft in "$ALL 0" "$ALL 4096" "$ALL 256" "0,1,2,3,4 4096" "0,1,2,3 4096" "0,1,2 4096" "0 4096"; do
  set -- $draft
  i=$((i + 1))
  DRAFT_LAYERS=$1 DRAFT_VOCAB=$2 K=$K RUNS=$RUNS TOKENS=$TOKENS JSON_OUT="$WORK/$i.json" \
    tests/bench/pipeline_bench.sh "$BUILD" "$MODEL" >"$WORK/$i.log" 2>&1 ||
    { tail -n 20 "$WORK/$i.log" >&2; exit 1; }
done
python3 - "$WORK" "$i" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
print("| draft (layers, vocabulary) | acceptance | rounds overlapped | sequential tokens/s | overlapped tokens/s | overlap gain |")
print("|---|---:|---:|---:|---:|---:|")
for i in range(1, n + 1):
    d = json.load(open(f"{work}/{i}.json"))
    print(f"| {d['draft_layers']}, {d['draft_vocab'] or 'full'} | {100 * d['acceptance']:.0f}% | "
          f"{100 * d['overlapped_fraction']:.0f}% | {d['sequential_tps']:.0f} | {d['pipeline_tps']:.0f} | "
          f"{d['pipeline_tps'] / d['sequential_tps']:.2f}x |")
PY
