#!/usr/bin/env bash
# Single-thread encode throughput: specdec_tokenizer vs HF tokenizers 0.23.2 (PyPI) on the same
# ~4 MB corpus, in one run. Prints a markdown table (docs/benchmarks/tokenizer.md holds results).
# Usage: tests/bench/tokenize_throughput.sh [BUILD_DIR] [MB]
# The reference runs from the test venv (tests/python/setup_venv.sh; made here when missing).
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
venv="${SPECDEC_TEST_VENV:-$repo/build/test-venv}"
bash "$repo/tests/python/setup_venv.sh"
echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; single thread"
# One thread for the reference too (its batch API would use a thread pool).
RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false \
  "$venv/bin/python" "$repo/tests/bench/tokenize_throughput.py" \
  --tokenizer "$repo/assets/gpt-neox-20b/tokenizer.json" \
  --bench "$bench" --out "$build/tokenizer_bench_corpus.jsonl" --mb "$mb"
