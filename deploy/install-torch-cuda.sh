#!/usr/bin/env bash
# Makes a Python virtual environment holding PyPI's torch wheel (the CUDA build) so that the
# project can be built against libtorch 2.x instead of Debian's libtorch 1.13 (docs/gpu.md).
# Idempotent: does nothing when the venv already holds the pinned version.
#
# Usage: deploy/install-torch-cuda.sh
#   SPECDEC_TORCH_VENV     where the venv goes (default: build-cuda/torch-venv in the repository)
#   SPECDEC_TORCH_VERSION  the torch version (default: the pin below)
#   SPECDEC_PYTHON         the interpreter that makes it (default: Debian's /usr/bin/python3)
# The wheel pulls NVIDIA's CUDA runtime, cuBLAS and cuDNN wheels (about 4 GB installed); pip's
# cache keeps the download for the next venv.
# Prints the CMake prefix path of the installed torch (torch.utils.cmake_prefix_path) last.
# Exit status: 0 ready; 3 when the package registry cannot be reached (no torch installed);
# 1 for any other failure (pip's last lines are printed).
set -euo pipefail

# The torch of the GPU machines this project is measured on (tests/gpu/run.sh): 2.11.0, CUDA 13.0,
# C++11 ABI. Wheels from 2.7 on use the C++11 ABI, the one Debian's gRPC, Abseil and protobuf
# use; 2.6 and older used the pre-C++11 ABI and cannot share a binary with them.
pin=2.11.0

repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${SPECDEC_TORCH_VENV:-$repo/build-cuda/torch-venv}"
version="${SPECDEC_TORCH_VERSION:-$pin}"
python="${SPECDEC_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; else python=python3; fi
fi
stamp="$venv/.specdec-torch"

report() { "$venv/bin/python" -W ignore -c 'import torch.utils; print(torch.utils.cmake_prefix_path)'; }

if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "torch==$version" ]]; then
  report
  exit 0
fi

if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  # Debian splits ensurepip out of the interpreter.
  if command -v apt-get >/dev/null && [[ "$python" == /usr/bin/* ]]; then
    SUDO=""
    [[ "$(id -u)" -ne 0 ]] && SUDO=sudo
    { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        --no-install-recommends python3-venv; } >/dev/null 2>&1 || true
  fi
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "install-torch-cuda: $python has no venv/ensurepip (Debian package python3-venv)" >&2
    exit 1
  fi
fi

if [[ ! -x "$venv/bin/python" ]]; then
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
# Reachability first (the venv's own pip, its configured index), so that an offline machine
# says so in one line instead of pip's retries.
if ! timeout 90 "$venv/bin/python" -m pip index versions torch --disable-pip-version-check \
       --retries 0 --timeout 20 >/dev/null 2>&1; then
  echo "install-torch-cuda: the package registry cannot be reached (pip index versions torch failed)" >&2
  exit 3
fi
rm -f "$stamp"
log="$venv/pip-install.log"
echo "install-torch-cuda: pip install torch==$version into $venv (several GB on first use)" >&2
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input --progress-bar off \
       "torch==$version" >"$log" 2>&1; then
  echo "install-torch-cuda: pip install torch==$version failed (see $log):" >&2
  tail -n 5 "$log" >&2
  exit 1
fi
echo "torch==$version" >"$stamp"
report
