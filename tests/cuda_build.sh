#!/usr/bin/env bash
# The libtorch 2.x variant, checked on a machine without a GPU (docs/gpu.md): makes the venv of
# PyPI's torch wheel (CUDA build; deploy/install-torch-cuda.sh), configures build-cuda/ with it
# and the libtorch-only option (SPECDEC_MODEL_ONLY), builds, and runs that build's CTest suite:
# every CPU test against libtorch 2.x, the CUDA instances skipped (no GPU here).
# tests/run.sh runs it unless SPECDEC_SKIP_CUDA_BUILD=1.
# Exit status: 0 when it passed, or when it cannot run here (no package registry, no CUDA
# toolkit: it says which in one line); 1 when the venv, the build or a test failed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
build="${SPECDEC_CUDA_BUILD_DIR:-$repo/build-cuda}"
venv="${SPECDEC_TORCH_VENV:-$build/torch-venv}"
start=$SECONDS

# TorchConfig of a CUDA torch needs the CUDA toolkit (nvcc) to configure, though nothing of ours
# is compiled with it.
if ! command -v nvcc >/dev/null && [[ ! -x /usr/local/cuda/bin/nvcc ]]; then
  echo "cuda_build: SKIPPED: no CUDA toolkit (nvcc) on this machine"
  exit 0
fi

status=0
SPECDEC_TORCH_VENV="$venv" bash deploy/install-torch-cuda.sh >/dev/null || status=$?
if [[ $status -eq 3 ]]; then
  echo "cuda_build: SKIPPED: the package registry cannot be reached (no torch wheel)"
  exit 0
elif [[ $status -ne 0 ]]; then
  echo "cuda_build: FAILED: deploy/install-torch-cuda.sh exited $status" >&2
  exit 1
fi
venv_s=$((SECONDS - start))

mkdir -p "$build"
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSPECDEC_MODEL_ONLY=ON \
  -DSPECDEC_TORCH_PYTHON="$venv/bin/python" >"$build/configure.log" 2>&1 || {
  tail -n 30 "$build/configure.log" >&2
  echo "cuda_build: FAILED: cmake configure (log: $build/configure.log)" >&2
  exit 1
}
cmake --build "$build" -j2
build_s=$((SECONDS - start - venv_s))
ctest --test-dir "$build" --output-on-failure -j2 --timeout 900
echo "cuda_build: passed (torch venv ${venv_s} s, configure + build ${build_s} s," \
     "ctest $((SECONDS - start - venv_s - build_s)) s)"
