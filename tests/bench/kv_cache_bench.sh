#!/bin/bash
# Perplexity of each KV policy relative to `full` on held-out text, through specdec-score
# --kv_policy (the verifier's code path). Budgets are a quarter of the context, slack and the
# uncommitted chunk included: limit = context/4 - 2 blocks. Usage:
#   tests/bench/kv_cache_bench.sh [BUILD_DIR] [TEXT] [MAX_TOKENS] > results.jsonl
# TEXT defaults to Debian's license texts (English prose the model never saw in training).
set -euo pipefail
BUILD=${1:-build}
TEXT=${2:-/tmp/specdec_kv_heldout.txt}
MAX_TOKENS=${3:-6144}
MODEL=${MODEL:-$(dirname "$0")/../../../shared/models/specdec-tiny-py}
if [[ ! -s $TEXT ]]; then
  cat /usr/share/common-licenses/{GPL-3,Apache-2.0,MPL-2.0,LGPL-2.1,GFDL-1.3,Artistic} > "$TEXT"
fi
for ctx in ${CONTEXTS:-256 1024 2048}; do
  b=$((ctx / 4 - 32))   # committed tokens kept; + 16 slack + 16 uncommitted = ctx / 4
  r=$((b / 4))
  for policy in full int8 "sink_window:sink=4,window=$((b - 4))" "int8+sink_window:sink=4,window=$((b - 4))" \
      "h2o:budget=$b,recent=$r" "int8+h2o:budget=$b,recent=$r" \
      "hierarchical:sink=4,recent=$r,budget=$b,pool=4" "query_aware:pages=$((b / 16))"; do
    out=$("$BUILD/tools/score/specdec-score" --model_dir "$MODEL" --text_file "$TEXT" --window "$ctx" \
      --max_tokens "$MAX_TOKENS" --kv_policy "$policy" --kv_chunk 16 --json --threads "${THREADS:-1}" 2>/dev/null | tail -1)
    echo "{\"context\":$ctx,\"policy\":\"$policy\",\"result\":$out}"
  done
done
