#!/usr/bin/env bash
# Load benchmark: starts a verifier, a draft and a gateway on loopback ports with a random
# checkpoint (or MODEL_DIR), runs specdec-loadgen for each stream count, and prints its reports
# (tokens/s, TTFT and inter-token latency p50/p99, errors, RSS of each service before/peak/after,
# sessions left). docs/benchmarks/load.md has the numbers and the soak command.
#
#   tools/loadgen/load_bench.sh [BUILD_DIR] [PRESET]       (env: STREAMS="1 4 16" DURATION=20
#                                                          MAX_NEW=64 K=4 REPEAT=1 DRAFT_LAYERS=0
#                                                          DRAFT_VOCAB=0 TIMEOUT_MS=60000
#                                                          VERIFIER_CPUS= DRAFT_CPUS=
#                                                          MODEL_DIR= MAX_SESSIONS=300
#                                                          READ_DELAY_MS=0
#                                                          SESSION_THREADS=32
#                                                          GATEWAY_BIN=)
# GATEWAY_BIN: another specdec-gateway binary (e.g. an older build) in front of the same draft
# and verifier, for a side-by-side run.
# READ_DELAY_MS: every stream reads slowly (pauses that long after each message); with
# STREAMS=256 it is the "256 slow streams" run of docs/benchmarks/load.md (threads per service).
# MODEL_DIR: use that checkpoint instead of writing a random one from PRESET.
set -euo pipefail
BUILD=${1:-build}
PRESET=${2:-pythia-70m}
STREAMS=${STREAMS:-"1 4 16"}
DURATION=${DURATION:-20}
MAX_NEW=${MAX_NEW:-64}
K=${K:-4}
REPEAT=${REPEAT:-1}
THREADS=${THREADS:-1}
DRAFT_LAYERS=${DRAFT_LAYERS:-0}
DRAFT_VOCAB=${DRAFT_VOCAB:-0}
MODEL_DIR=${MODEL_DIR:-}
TIMEOUT_MS=${TIMEOUT_MS:-60000}
MAX_SESSIONS=${MAX_SESSIONS:-300}
READ_DELAY_MS=${READ_DELAY_MS:-0}
SESSION_THREADS=${SESSION_THREADS:-32}
GATEWAY_BIN=${GATEWAY_BIN:-$BUILD/services/gateway/specdec-gateway}
# The verifier's KV pool holds MAX_SESSIONS requests at once (16-token prompts, 16-token blocks).
POOL_BLOCKS=$(( MAX_SESSIONS * ((16 + MAX_NEW + K + 16) / 16 + 1) ))
VERIFIER_PIN=${VERIFIER_CPUS:+--cpus=$VERIFIER_CPUS}  # --cpus of each service; empty: not pinned
DRAFT_PIN=${DRAFT_CPUS:+--cpus=$DRAFT_CPUS}
. "$(dirname "$0")/../../tests/bench/lib.sh"
bench_work load

if [ -n "$MODEL_DIR" ]; then
  MODEL=$MODEL_DIR; WHAT="checkpoint $MODEL_DIR"
else
  MODEL=$WORK/model; WHAT="preset $PRESET"
  "$BUILD/tools/make_model/specdec-make-model" --preset "$PRESET" --out "$MODEL" >/dev/null
fi
VP=$(port); DP=$(port); GP=$(port)
"$BUILD/services/verifier/specdec-verifier" --model_dir "$MODEL" --device cpu \
  --threads "$THREADS" --listen "127.0.0.1:$VP" --max_sessions "$MAX_SESSIONS" \
  --kv_policy "full:pool_blocks=$POOL_BLOCKS" $VERIFIER_PIN >"$WORK/verifier.log" 2>&1 & PIDS+=($!); VPID=$!
"$BUILD/services/draft/specdec-draft" --model_dir "$MODEL" --device cpu --threads "$THREADS" \
  --draft_layers "$DRAFT_LAYERS" --draft_vocab "$DRAFT_VOCAB" --listen "127.0.0.1:$DP" $DRAFT_PIN \
  --max_sessions "$MAX_SESSIONS" \
  >"$WORK/draft.log" 2>&1 & PIDS+=($!); DPID=$!
wait_serving "127.0.0.1:$VP" "$VPID" verifier; wait_serving "127.0.0.1:$DP" "$DPID" draft
"$GATEWAY_BIN" --model_dir "$MODEL" --verifier "127.0.0.1:$VP" \
  --draft "127.0.0.1:$DP" --listen "127.0.0.1:$GP" --max_sessions "$MAX_SESSIONS" \
  $("$GATEWAY_BIN" --helpfull 2>&1 | grep -q -- -session_threads && echo --session_threads "$SESSION_THREADS") \
  >"$WORK/gateway.log" 2>&1 & PIDS+=($!); GPID=$!
wait_serving "127.0.0.1:$GP" "$GPID" gateway

echo "# $WHAT, $(nproc) cores, --threads $THREADS, K=$K, $MAX_NEW tokens per request, ${DURATION}s per run, read delay ${READ_DELAY_MS} ms, gateway --session_threads $SESSION_THREADS"
echo "# commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown), $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# CPU: $(lscpu | sed -n 's/^Model name: *//p'); flags: $(lscpu | sed -n 's/^Flags: *//p')"
status=0
for n in $STREAMS; do
  echo "## $n stream(s)"
  "$BUILD/tools/loadgen/specdec-loadgen" --server "127.0.0.1:$GP" --streams "$n" \
    --duration_s "$DURATION" --max_new_tokens "$MAX_NEW" --k "$K" --repeat "$REPEAT" \
    --timeout_ms "$TIMEOUT_MS" --read_delay_ms "$READ_DELAY_MS" \
    --draft "127.0.0.1:$DP" --verifier "127.0.0.1:$VP" \
    --pids "gateway=$GPID,draft=$DPID,verifier=$VPID" --json || status=1
done
exit $status
