#!/usr/bin/env bash
# Single-thread encode throughput: specdec_tokenizer vs HF tokenizers 0.23.2 (npm) on the same
# ~4 MB corpus, in one run. Prints a markdown table (docs/benchmarks/tokenizer.md holds results).
# Usage: tests/bench/tokenize_throughput.sh [BUILD_DIR] [MB]
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
build="${1:-build}"
mb="${2:-4}"
[[ "$build" = /* ]] || build="$repo/$build"
bench="$(find "$build" -type f -name tokenizer_bench -perm -u+x | head -n1)"
if [[ -z "$bench" ]]; then
  echo "build tokenizer_bench first: cmake --build $build --target tokenizer_bench" >&2
  exit 2
fi
npm_dir="${HF_TOKENIZERS_DIR:-$build/hf-tokenizers}"
if [[ ! -d "$npm_dir/node_modules/tokenizers" ]]; then
  mkdir -p "$npm_dir"
  npm install --prefix "$npm_dir" --no-audit --no-fund tokenizers@0.23.2 >&2
fi
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; single thread"
# One thread for the reference too (its batch API would use a thread pool).
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false NODE_PATH="$npm_dir/node_modules" \
  node "$repo/tests/bench/tokenize_throughput.js" --tokenizer "$repo/assets/gpt-neox-20b/tokenizer.json" \
  --bench "$bench" --out "$build/tokenizer_bench_corpus.jsonl" --mb "$mb"
