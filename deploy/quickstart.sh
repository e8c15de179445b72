#!/usr/bin/env bash
# The quick start: builds specdec, starts the three services on loopback, waits until they
# are healthy, streams one generation through the gateway with adaptive K and its rounds shown,
# measures plain decoding (K=0: the verifier alone, same services and threads) against it, says
# what the acceptance means, and stops the services cleanly.
# Usage: deploy/quickstart.sh [MODEL_DIR] [PROMPT]
#   MODEL_DIR: a Hugging Face GPT-NeoX folder (config.json, *.safetensors, tokenizer.json).
#              Without it a random Pythia-70M-shaped checkpoint is written to models/.
# Environment: DRAFT_LAYERS (default 0,1,4,5), DRAFT_VOCAB (default 8192), K (the bound of
#              adaptive K, default 8), MAX_NEW_TOKENS (default 48), RUNS (timed runs of each,
#              default 3), PORT_BASE (default 50050), SKIP_DEPS=1.
set -euo pipefail
cd "$(dirname "$0")/.."

model_dir=${1:-}
prompt=${2:-"The Python interpreter"}
port_base=${PORT_BASE:-50050}
gateway=127.0.0.1:$port_base
verifier=127.0.0.1:$((port_base + 1))
draft=127.0.0.1:$((port_base + 2))

[ "${SKIP_DEPS:-0}" = 1 ] || bash deploy/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target specdec-make-model specdec-draft specdec-verifier specdec-gateway specdec

random_model=0
if [ -z "$model_dir" ]; then
  model_dir=models/pythia-70m-random
  random_model=1
  if [ ! -f "$model_dir/config.json" ]; then
    echo "quickstart: no model folder given; writing a random Pythia-70M-shaped checkpoint to $model_dir"
    build/tools/make_model/specdec-make-model --preset pythia-70m --seed 1 --out "$model_dir"
  fi
fi

logs=$(mktemp -d)
pids=()
cleanup() {
  # SIGTERM: each service drains its streams and exits.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "quickstart: services stopped (logs in $logs)"
}
trap cleanup EXIT

# Two services share this machine's cores: one compute thread each keeps them from fighting.
build/services/verifier/specdec-verifier --model_dir "$model_dir" --listen "$verifier" --threads 1 \
  >"$logs/verifier.log" 2>&1 &
pids+=($!)
build/services/draft/specdec-draft --model_dir "$model_dir" --listen "$draft" --threads 1 \
  --draft_layers "${DRAFT_LAYERS:-0,1,4,5}" --draft_vocab "${DRAFT_VOCAB:-8192}" >"$logs/draft.log" 2>&1 &
pids+=($!)
# Waits until the service at $1 answers the standard gRPC health check with SERVING.
wait_healthy() {
  for _ in $(seq 1 240); do
    if build/services/client/specdec health --server "$1" >/dev/null 2>&1; then return 0; fi
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "quickstart: a service exited; see $logs" >&2; tail -5 "$logs"/*.log >&2; exit 1; }
    done
    sleep 0.5
  done
  echo "quickstart: $1 did not become healthy in 2 minutes; see $logs" >&2
  exit 1
}

echo "quickstart: waiting for the verifier and the draft to load the model..."
wait_healthy "$verifier"
wait_healthy "$draft"
build/services/gateway/specdec-gateway --model_dir "$model_dir" --listen "$gateway" \
  --verifier "$verifier" --draft "$draft" >"$logs/gateway.log" 2>&1 &
pids+=($!)
wait_healthy "$gateway"
build/services/client/specdec info --server "$gateway"

k=${K:-8}
max_new=${MAX_NEW_TOKENS:-48}
runs=${RUNS:-3}
echo "quickstart: generating from \"$prompt\" with adaptive K (at most $k per round; rounds on stderr)"
build/services/client/specdec generate "$prompt" --server "$gateway" \
  --max_new_tokens "$max_new" --k "$k" --adaptive --rounds

# One timed request; prints "TOKENS_PER_S ACCEPTED DRAFTED" from the client's summary line
# ("[...: 4 prompt + 48 generated tokens, 9 rounds, 3/20 drafts accepted, ..., 73.8 tokens/s]").
timed() {
  build/services/client/specdec generate "$prompt" --server "$gateway" \
    --max_new_tokens "$max_new" "$@" 2>&1 >/dev/null |
    sed -n 's|.* \([0-9]*\)/\([0-9]*\) drafts accepted.* \([0-9.]*\) tokens/s\]$|\3 \1 \2|p'
}
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }

echo "quickstart: timing $runs runs of each, $max_new tokens, plain and speculative alternating..."
timed --k 0 >/dev/null  # warm-up: page in the weights, size the allocators
plain=() spec=() accepted=0 drafted=0
for _ in $(seq 1 "$runs"); do
  read -r rate _ _ < <(timed --k 0) || { echo "quickstart: a timed request failed" >&2; exit 1; }
  plain+=("$rate")
  read -r rate a d < <(timed --k "$k" --adaptive) ||
    { echo "quickstart: a timed request failed" >&2; exit 1; }
  spec+=("$rate")
  accepted=$((accepted + a))
  drafted=$((drafted + d))
done
plain_rate=$(printf '%s\n' "${plain[@]}" | median)
spec_rate=$(printf '%s\n' "${spec[@]}" | median)
share=$(awk -v s="$spec_rate" -v p="$plain_rate" 'BEGIN {printf "%.0f", (p > 0) ? 100 * s / p : 0}')
echo
echo "quickstart: tokens/s (median of $runs, $max_new tokens, prefill included, 1 compute thread per service)"
echo "  plain decoding (K=0, the verifier alone):  $plain_rate"
echo "  speculative (adaptive K <= $k):            $spec_rate  ($share% of plain; $accepted/$drafted drafts accepted)"
if [ "$random_model" = 1 ]; then
  cat <<EOT

This checkpoint has RANDOM weights (no model folder was given), so nothing will be accepted:
the draft is the same random network with layers skipped and the vocabulary cut to the first
ids, and the full model's next token almost never agrees with it. Speculation cannot pay
there: adaptive K measures it, stops drafting after a few rounds (rounds marked
fallback=FALLBACK_PAUSED above) and probes the draft every 16th round, which is why the
speculative figure stays close to plain decoding instead of falling to a fraction of it. With
a trained checkpoint (README, "Run it on Pythia-70M") drafts are accepted and K grows.
EOT
elif [ "$drafted" -gt 0 ] && [ "$accepted" = 0 ]; then
  echo
  echo "No draft was accepted: the draft never agreed with the full model (a random or untrained"
  echo "checkpoint, or a draft plan too small: see DRAFT_LAYERS, DRAFT_VOCAB and docs/shrunken_self.md)."
fi
