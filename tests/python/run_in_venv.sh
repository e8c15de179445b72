#!/bin/sh
# CTest entry of the Python-based tests: runs a script with the test venv's interpreter
# (tests/python/setup_venv.sh makes it), or skips (77) when the venv is not there. A package
# missing from the venv is the script's own skip.
# Usage: tests/python/run_in_venv.sh PYTHON SCRIPT [ARGS...]
python=$1
shift
if [ ! -x "$python" ]; then
  echo "SKIP: no test venv ($python does not exist): run tests/python/setup_venv.sh"
  exit 77
fi
exec "$python" "$@"
