#!/usr/bin/env bash
# The GPU check, as one prepared script for a machine with an NVIDIA GPU, PyTorch 2.x (CUDA) and
# Hugging Face transformers, nvcc, CMake and ninja, and no package registry (docs/gpu.md):
#   1. builds the libtorch-only variant (SPECDEC_MODEL_ONLY) against that machine's own torch;
#   2. runs the model tests on the GPU: the Hugging Face fixtures (tests/data/gptneox) in f32
#      with TF32 off, the libtorch forward against the CPU engine, greedy speculative output
#      equal to plain (the CUDA instances of model_test and generation_test; they must RUN, a
#      skip is a failure here);
#   3. times Hugging Face's generate (eager and sdpa attention) against our plain and speculative
#      decoding on the same checkpoints, prompts, dtype and token counts: one stream and
#      --batches concurrent sequences (ours: one batched forward per step);
#   4. writes $OUT/gpu.md (GPU name from nvidia-smi, versions, every number) and the raw JSON.
# Any failure stops it with a non-zero status and the log's tail; it never writes a number it
# did not measure. ~10 minutes a command there: the defaults fit (about 3 min build on 16 cores).
#
# Before: run tests/gpu/prepare.sh HERE (it fetches Debian's Abseil, GoogleTest, nlohmann-json
# and ICU into build-gpu/deps.tar.xz, and copies the trained checkpoint to build-gpu/models);
# carry build-gpu to the GPU machine. Then, there:
#   tests/gpu/run.sh                   # OUT defaults to build-gpu/out
# Without a GPU (to check this script itself, e.g. with build-cuda/torch-venv's torch plus
# transformers): tests/gpu/run.sh --cpu  (device cpu for both sides; nothing is a GPU number)
#
# Knobs (environment): PYTHON (python3), BUILD_DIR (build-gpu/build), OUT, JOBS (nproc),
# BATCHES ("1,8,64"; --cpu "1,4"), NEW_TOKENS (128; 16), RUNS (3; 1), DTYPES ("f32 bf16"; f32),
# PROMPT_LEN (32), MODELS (folders; default: build-gpu/models/* plus a random
# pythia-160m-shaped checkpoint).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"

device=cuda
if [[ "${1:-}" == "--cpu" ]]; then device=cpu; fi
PYTHON="${PYTHON:-python3}"
BUILD_DIR="${BUILD_DIR:-$repo/build-gpu/build}"
OUT="${OUT:-$repo/build-gpu/out}"
JOBS="${JOBS:-$(nproc)}"
if [[ "$device" == cuda ]]; then
  BATCHES="${BATCHES:-1,8,64}" NEW_TOKENS="${NEW_TOKENS:-128}" RUNS="${RUNS:-3}" DTYPES="${DTYPES:-f32 bf16}"
else  # the script's own check: small, f32 only (the CPU engine runs f32, bf16 and int8 weights)
  BATCHES="${BATCHES:-1,4}" NEW_TOKENS="${NEW_TOKENS:-16}" RUNS="${RUNS:-1}" DTYPES="${DTYPES:-f32}"
fi
PROMPT_LEN="${PROMPT_LEN:-32}"
DEADLINE_S="${DEADLINE_S:-560}"  # the whole run; the device tool allows 600 s a command
# CMake 4 (PyPI's cmake) refuses packages' config files that ask for policies older than 3.5.
export CMAKE_POLICY_VERSION_MINIMUM="${CMAKE_POLICY_VERSION_MINIMUM:-3.5}"
mkdir -p "$OUT"
log="$OUT/run.log"
: >"$log"
results=()  # pairs of JSON files (ours, Hugging Face's) measured so far
report_args=()
say() { echo "gpu/run.sh: $*" | tee -a "$log"; }
die() {
  echo "gpu/run.sh: FAILED: $*" | tee -a "$log" >&2
  local partial=""
  if [[ ${#results[@]} -gt 0 ]] &&
     "$PYTHON" "$repo/tests/gpu/report.py" --out "$OUT/partial.md" "${report_args[@]}" \
       "${results[@]}" >>"$log" 2>&1; then
    partial="$OUT/partial.md"
  fi
  {
    echo "# GPU check: FAILED (incomplete; what was measured before the failure follows)"
    echo
    echo "$*"
    echo
    echo '```'
    tail -n 60 "$log"
    echo '```'
    [[ -n "$partial" ]] && sed 's/^# GPU check/## Measured before the failure:/' "$partial"
  } >"$OUT/gpu.md"
  exit 1
}
step() {  # step NAME COMMAND...: runs it within the deadline, output to the log; dies on failure
  local name=$1
  shift
  local left=$((DEADLINE_S - SECONDS))
  [[ $left -gt 5 ]] || die "out of time (DEADLINE_S=$DEADLINE_S) before: $name"
  say "$name"
  local start=$SECONDS status=0
  timeout "$left" "$@" >>"$log" 2>&1 || status=$?
  if [[ $status -ne 0 ]]; then
    tail -n 40 "$log" >&2
    [[ $status -eq 124 ]] && die "$name ran past the deadline (DEADLINE_S=$DEADLINE_S)"
    die "$name (exit $status; command: $*)"
  fi
  say "$name: done in $((SECONDS - start)) s"
}

# ---- what this machine is
if [[ "$device" == cuda ]]; then
  command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver on this machine"
  gpu_name="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -n1)"
  [[ -n "$gpu_name" ]] || die "nvidia-smi lists no GPU"
else
  gpu_name="none (--cpu: the script's own check, CPU numbers only)"
fi
torch_info="$("$PYTHON" -W ignore -c 'import torch, torch.utils; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.utils.cmake_prefix_path)')" ||
  die "$PYTHON cannot import torch"
read -r torch_version torch_cuda torch_sees_gpu torch_prefix <<<"$torch_info"
say "GPU: $gpu_name; torch $torch_version (CUDA $torch_cuda, sees a GPU: $torch_sees_gpu)"
if [[ "$device" == cuda && "$torch_sees_gpu" != True ]]; then
  die "torch $torch_version sees no GPU (torch.cuda.is_available() is False)"
fi
transformers_version="$("$PYTHON" -c 'import transformers; print(transformers.__version__)' 2>/dev/null)" ||
  die "$PYTHON cannot import transformers (needed for the side-by-side comparison)"

# ---- 1. build the libtorch-only variant against this machine's torch
prefix_path=""
if [[ -f "$repo/build-gpu/deps.tar.xz" ]]; then
  deps=/tmp/specdec-gpu-deps
  rm -rf "$deps" && mkdir -p "$deps"
  tar -C "$deps" -xJf "$repo/build-gpu/deps.tar.xz" || die "cannot unpack build-gpu/deps.tar.xz"
  prefix_path="$deps/usr;$deps/usr/lib/x86_64-linux-gnu/cmake;$deps/usr/share/cmake"
  say "C++ libraries: Debian's, from build-gpu/deps.tar.xz (tests/gpu/prepare.sh)"
else
  say "C++ libraries: this machine's own (no build-gpu/deps.tar.xz)"
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
step "configure (model-only, torch $torch_version)" \
  cmake -S "$repo" -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSPECDEC_MODEL_ONLY=ON -DSPECDEC_TORCH_PYTHON="$(command -v "$PYTHON")" \
    ${prefix_path:+-DCMAKE_PREFIX_PATH="$prefix_path"} ${prefix_path:+-DICU_ROOT="$deps/usr"}
step "build (-j$JOBS)" cmake --build "$BUILD_DIR" -j "$JOBS"

# ---- 2. the model tests on the device
gtest_out="$OUT/tests"
mkdir -p "$gtest_out"
if [[ "$device" == cuda ]]; then
  filter='*Cuda*'
else
  filter='*CpuLibtorch*'
fi
for t in model_test generation_test; do
  bin="$(find "$BUILD_DIR" -type f -name "$t" -perm -u+x | head -n1)"
  [[ -n "$bin" ]] || die "test binary $t not built"
  step "$t --gtest_filter=$filter" "$bin" --gtest_filter="$filter" --gtest_output="json:$gtest_out/$t.json"
  ran="$("$PYTHON" -c 'import json, sys
d = json.load(open(sys.argv[1]))
cases = [c for s in d["testsuites"] for c in s["testsuite"]]
print(len(cases), sum(c.get("result") == "SKIPPED" for c in cases))' "$gtest_out/$t.json")" ||
    die "cannot read $gtest_out/$t.json"
  read -r total skipped <<<"$ran"
  [[ "$total" -gt 0 ]] || die "$t ran no test matching $filter"
  [[ "$skipped" -eq 0 ]] || die "$t skipped $skipped of $total tests on $device; here they must run"
done
# The whole CPU suite of this build too (CTest), so a libtorch 2.x regression on the CPU shows.
step "ctest (the whole suite of this build)" ctest --test-dir "$BUILD_DIR" -j "$JOBS" --output-on-failure --timeout 600

# ---- 3. side by side: Hugging Face generate vs ours, on each checkpoint and dtype
models=()
if [[ -n "${MODELS:-}" ]]; then
  read -r -a models <<<"$MODELS"
else
  for m in "$repo"/build-gpu/models/*/; do [[ -f "$m/config.json" ]] && models+=("${m%/}"); done
  random="$BUILD_DIR/pythia-160m-random"
  step "random pythia-160m-shaped checkpoint" "$BUILD_DIR/tools/make_model/specdec-make-model" \
    --preset pythia-160m --out "$random"
  models+=("$random")
fi
report_args=(--gpu "$gpu_name" --torch "$torch_version (CUDA $torch_cuda)"
  --transformers "$transformers_version" --tests "$gtest_out" --device "$device"
  --commit "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)")
for dtype in $DTYPES; do  # every checkpoint in f32 first: what matters most comes first
  for model in "${models[@]}"; do
    name="$(basename "$model")"
    draft_layers="0,1"
    draft_vocab=0
    if [[ "$name" == specdec-tiny-py ]]; then draft_layers=""; draft_vocab=4096; fi  # its calibrated draft
    ours="$OUT/ours-$name-$dtype.json"
    theirs="$OUT/hf-$name-$dtype.json"
    step "ours: $name $dtype" "$BUILD_DIR/tests/gpu/gpu_bench" --model_dir "$model" --device "$device" \
      --dtype "$dtype" --batches "$BATCHES" --new_tokens "$NEW_TOKENS" --prompt_len "$PROMPT_LEN" \
      --runs "$RUNS" --k 4 --draft_layers "$draft_layers" --draft_vocab "$draft_vocab" --json "$ours"
    step "hf: $name $dtype" "$PYTHON" "$repo/tests/gpu/hf_bench.py" --model_dir "$model" \
      --device "$device" --dtype "$dtype" --batches "$BATCHES" --new_tokens "$NEW_TOKENS" \
      --prompt_len "$PROMPT_LEN" --runs "$RUNS" --json "$theirs"
    results+=("$ours" "$theirs")
  done
done

# ---- 4. the report
DEADLINE_S=$((DEADLINE_S + 30)) step "report" "$PYTHON" "$repo/tests/gpu/report.py" \
  --out "$OUT/gpu.md" "${report_args[@]}" "${results[@]}"
say "wrote $OUT/gpu.md"
cat "$OUT/gpu.md"
