#!/usr/bin/env bash
# Builds every libFuzzer target with clang (ASan + UBSan) and runs each for a bounded time
# over its seed corpus in the repo. Exit status is non-zero if any target finds a crash.
# Usage: tests/fuzz/run_fuzzers.sh [SECONDS_PER_TARGET]   (default 20)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-${SPECDEC_FUZZ_SECONDS:-20}}

if ! command -v clang++ >/dev/null; then
  echo "run_fuzzers.sh: clang++ not found; install clang (deploy/install-deps.sh does)" >&2
  exit 1
fi
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DSPECDEC_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=(safetensors_fuzzer config_fuzzer tokenizer_encode_fuzzer tokenizer_load_fuzzer
         openai_request_fuzzer)
cmake --build build-fuzz --target "${targets[@]}" -j2

declare -A corpus=(
  [safetensors_fuzzer]=common/safetensors/fuzz/corpus
  [config_fuzzer]=common/model/fuzz/corpus
  [tokenizer_encode_fuzzer]=common/tokenizer/fuzz/corpus/encode
  [tokenizer_load_fuzzer]=common/tokenizer/fuzz/corpus/load
  [openai_request_fuzzer]=services/gateway/fuzz/corpus
)
failed=0
for target in "${targets[@]}"; do
  binary=$(find build-fuzz -type f -name "$target" | head -1)
  work=$(mktemp -d)  # new units go here, never into the committed seed corpus
  echo "== $target for ${seconds}s"
  if ! "$binary" -max_total_time="$seconds" -max_len=8192 -artifact_prefix="$work/" \
      "$work" "${corpus[$target]}" >"$work/log" 2>&1; then
    echo "$target FAILED; crash inputs and log in $work" >&2
    tail -30 "$work/log" >&2
    failed=1
  else
    grep -E "^Done|runs in" "$work/log" | tail -1
    rm -rf "$work"
  fi
done
exit $failed
