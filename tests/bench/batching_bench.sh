#!/usr/bin/env bash
# Cross-session batching on vs off, side by side: the three services with --max_batch_tokens=512
# (the default) and then with 0 (every session runs its own passes), specdec-loadgen at each
# stream count against both, same checkpoint, same run. Prints one line per (mode, streams) and
# the on/off ratio per stream count. docs/benchmarks/batching.md has the numbers.
#   tests/bench/batching_bench.sh [BUILD_DIR] [MODEL_DIR]
#   env: STREAMS ("1 4 16 64"), DURATION (10 s of load; requests in flight then finish),
#        MAX_NEW (32), K (4), DRAFT_FLAGS ("--draft_layers=0"), THREADS (1)
# Without MODEL_DIR a random Pythia-70M-shaped checkpoint is written.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
MODEL=${2:-}
STREAMS=${STREAMS:-"1 4 16 64"}
DURATION=${DURATION:-10}
MAX_NEW=${MAX_NEW:-32}
K=${K:-4}
DRAFT_FLAGS=${DRAFT_FLAGS:-"--draft_layers=0"}
THREADS=${THREADS:-1}
. tests/bench/lib.sh
bench_work batching
if [ -z "$MODEL" ]; then
  MODEL=$WORK/model
  "$BUILD/tools/make_model/specdec-make-model" --preset pythia-70m --out "$MODEL" >/dev/null
fi
echo "# $(basename "$MODEL"), K=$K, draft $DRAFT_FLAGS, $MAX_NEW tokens per request, $(nproc) cores, --threads $THREADS"
for mode in on off; do
  if [ "$mode" = on ]; then BATCH=--max_batch_tokens=512; else BATCH=--max_batch_tokens=0; fi
  VP=127.0.0.1:$(port); DP=127.0.0.1:$(port); GP=127.0.0.1:$(port)
  "$BUILD/services/verifier/specdec-verifier" --model_dir "$MODEL" --device cpu --threads "$THREADS" \
    --listen "$VP" $BATCH >"$WORK/verifier.$mode.log" 2>&1 & PIDS+=($!); VPID=$!
  "$BUILD/services/draft/specdec-draft" --model_dir "$MODEL" --device cpu --threads "$THREADS" \
    $DRAFT_FLAGS --listen "$DP" $BATCH >"$WORK/draft.$mode.log" 2>&1 & PIDS+=($!); DPID=$!
  wait_serving "$VP" "$VPID" "verifier.$mode"; wait_serving "$DP" "$DPID" "draft.$mode"
  "$BUILD/services/gateway/specdec-gateway" --model_dir "$MODEL" --verifier "$VP" --draft "$DP" \
    --listen "$GP" --max_sessions 256 >"$WORK/gateway.$mode.log" 2>&1 & PIDS+=($!); GPID=$!
  wait_serving "$GP" "$GPID" "gateway.$mode"
  for n in $STREAMS; do
    result=$("$BUILD/tools/loadgen/specdec-loadgen" --server "$GP" --streams "$n" \
      --duration_s "$DURATION" --k "$K" --max_new_tokens "$MAX_NEW" --timeout_ms 600000 --quiet \
      --json | tail -n 1)
    # Not a pipeline around the loop: its services must stay in this shell's PIDS (EXIT trap).
    echo "batching=$mode streams=$n $result" | tee -a "$WORK/results.txt"
  done
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
done
python3 - "$WORK/results.txt" <<'PY'
import json, re, sys
rows = {}
for line in open(sys.argv[1]):
    m = re.match(r"batching=(\w+) streams=(\d+) (\{.*\})", line)
    if m:
        phase = json.loads(m.group(3))["phases"][0]
        rows[(m.group(1), int(m.group(2)))] = phase
print("| streams | batching on tokens/s | off tokens/s | on / off | ITL p50 on / off (ms) | errors on / off |")
print("|---:|---:|---:|---:|---|---|")
for n in sorted({n for _, n in rows}):
    on, off = rows.get(("on", n)), rows.get(("off", n))
    if not on or not off:
        continue
    print(f"| {n} | {on['tokens_per_s']:.1f} | {off['tokens_per_s']:.1f} | "
          f"{on['tokens_per_s'] / off['tokens_per_s']:.2f}x | {on['itl_p50_ms']:.1f} / {off['itl_p50_ms']:.1f} | "
          f"{on['errors']} / {off['errors']} |")
PY
