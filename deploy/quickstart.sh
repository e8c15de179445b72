#!/usr/bin/env bash
# The quick start: builds specdec, starts the three services on loopback, waits until they
# are healthy, streams one generation through the gateway with its rounds shown, and stops
# the services cleanly.
# Usage: deploy/quickstart.sh [MODEL_DIR] [PROMPT]
#   MODEL_DIR: a Hugging Face GPT-NeoX folder (config.json, *.safetensors, tokenizer.json).
#              Without it a random Pythia-70M-shaped checkpoint is written to models/.
# Environment: DRAFT_LAYERS (default 0,1,4,5), DRAFT_VOCAB (default 8192), K (default 4),
#              MAX_NEW_TOKENS (default 48), PORT_BASE (default 50050), SKIP_DEPS=1.
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

if [ -z "$model_dir" ]; then
  model_dir=models/pythia-70m-random
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

echo "quickstart: generating from \"$prompt\" (rounds on stderr)"
build/services/client/specdec generate "$prompt" --server "$gateway" \
  --max_new_tokens "${MAX_NEW_TOKENS:-48}" --k "${K:-4}" --rounds
