#!/usr/bin/env bash
# Creates the virtual environment the anchors benchmark runs in (tests/bench/anchors/run.sh) and
# installs the pinned engines from requirements.txt. llama-cpp-python compiles llama.cpp for this
# CPU (GGML_NATIVE), which takes several minutes on two cores. Re-running skips what is installed.
# Usage: tests/bench/anchors/setup_venv.sh      env: SPECDEC_ANCHORS_VENV (default build/anchors-venv),
#        JOBS (compile parallelism, default 2)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
VENV=${SPECDEC_ANCHORS_VENV:-$ROOT/build/anchors-venv}
case $VENV in /*) ;; *) VENV=$ROOT/$VENV ;; esac
REQ=$HERE/requirements.txt

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  echo "setup_venv: python3-venv is missing; installing it" >&2
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get install -y python3-venv || { $SUDO apt-get update && $SUDO apt-get install -y python3-venv; }
fi
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi

# Every pinned requirement already installed at its version: nothing to do (and no network).
satisfied() {
  "$VENV/bin/python" - "$REQ" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}
if satisfied; then
  echo "setup_venv: $VENV has every package in $REQ"
  exit 0
fi

JOBS=${JOBS:-2}
"$VENV/bin/python" -m pip install --upgrade --quiet pip
# llama.cpp for this CPU only, without BLAS, tests, examples or the server.
export CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=ON -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF"}
export CMAKE_BUILD_PARALLEL_LEVEL=$JOBS
export MAKEFLAGS=-j$JOBS
echo "setup_venv: installing into $VENV (CMAKE_ARGS=$CMAKE_ARGS, $JOBS jobs)"
"$VENV/bin/python" -m pip install -r "$REQ"
satisfied || { echo "setup_venv: FAILED: installed versions differ from $REQ" >&2; exit 1; }
echo "setup_venv: done ($VENV)"
