#!/usr/bin/env bash
# Differential test of specdec-tokenize against Hugging Face tokenizers 0.23.2 (npm binding of
# the Rust library). Installs the npm package on first use (needs the npm registry), then runs
# compare_with_hf.js for each seed. Exit status is nonzero on any mismatch.
#
# Usage: tests/tokenizer/compare_with_hf.sh [BUILD_DIR] [COUNT] [SEEDS...]
#   BUILD_DIR  CMake build dir holding tools/tokenize/specdec-tokenize (default: build)
#   COUNT      strings per seed (default: 5000)
#   SEEDS      PRNG seeds (default: 1 2 3)
# HF_TOKENIZERS_DIR overrides where the npm package lives (default: BUILD_DIR/hf-tokenizers).
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-build}"
count="${2:-5000}"
shift $(( $# > 2 ? 2 : $# ))
seeds=("${@:-1 2 3}")
[[ "$build" = /* ]] || build="$repo/$build"
bin="$build/tools/tokenize/specdec-tokenize"
npm_dir="${HF_TOKENIZERS_DIR:-$build/hf-tokenizers}"

if [[ ! -x "$bin" ]]; then
  echo "missing $bin; build it with: cmake --build $build --target specdec-tokenize" >&2
  exit 2
fi
if [[ ! -d "$npm_dir/node_modules/tokenizers" ]]; then
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund tokenizers@0.23.2 >&2
fi

status=0
for seed in ${seeds[@]}; do
  NODE_PATH="$npm_dir/node_modules" node "$repo/tests/tokenizer/compare_with_hf.js" \
    --tokenizer "$repo/assets/gpt-neox-20b/tokenizer.json" --bin "$bin" \
    --count "$count" --seed "$seed" || status=1
done
exit $status
