#!/usr/bin/env bash
# Makes the virtual environment of the Python-based tests (tests/deploy, tests/tokenizer) and
# installs tests/python/requirements.txt into it. Idempotent: does nothing when the venv already
# holds exactly these requirements. Quiet unless something goes wrong.
#
# Usage: tests/python/setup_venv.sh
#   SPECDEC_TEST_VENV  where the venv goes (default: build/test-venv in the repository)
#   SPECDEC_PYTHON     the interpreter that makes it (default: Debian's /usr/bin/python3)
# Exit status: 0 when the venv is ready, 1 when it could not be made (no registry, no venv
# module); the tests that need it then skip.
set -euo pipefail

repo="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${SPECDEC_TEST_VENV:-$repo/build/test-venv}"
requirements="$repo/tests/python/requirements.txt"
python="${SPECDEC_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; else python=python3; fi
fi
stamp="$venv/.specdec-requirements"

if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$stamp" "$requirements"; then
  exit 0
fi

if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  # Debian splits ensurepip out of the interpreter.
  if command -v apt-get >/dev/null && command -v dpkg-query >/dev/null &&
     [[ "$python" == /usr/bin/* ]]; then
    SUDO=""
    [[ "$(id -u)" -ne 0 ]] && SUDO=sudo
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      python3-venv >/dev/null 2>&1 ||
      { $SUDO apt-get update -qq >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
          python3-venv >/dev/null; } || true
  fi
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "setup_venv: $python has no venv/ensurepip (Debian package python3-venv)" >&2
    exit 1
  fi
fi

if [[ ! -x "$venv/bin/python" ]]; then
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
fi
rm -f "$stamp"
log="$venv/pip-install.log"
if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
       -r "$requirements" >"$log" 2>&1; then
  echo "setup_venv: pip install -r tests/python/requirements.txt failed (see $log):" >&2
  tail -n 5 "$log" >&2
  exit 1
fi
cp "$requirements" "$stamp"
