#!/usr/bin/env bash
# One command for the side-by-side CPU benchmark (README.md here): installs the engines into a
# virtual environment (setup_venv.sh), makes a random Pythia-70M-shaped checkpoint when none is
# given, and writes docs/benchmarks/anchors.md with one section per checkpoint.
# Usage: tests/bench/anchors/run.sh [MODEL_DIR|random ...] [-- anchors_bench.py options]
#   MODEL_DIR: a Hugging Face GPT-NeoX folder; `random` (or no MODEL_DIR at all): a random
#              checkpoint from `specdec-make-model --preset pythia-70m`.
#   env: BUILD (the specdec build folder, default build), SPECDEC_ANCHORS_VENV (build/anchors-venv)
#   Options after -- go to anchors_bench.py (relative paths there are from the project root).
# Example: tests/bench/anchors/run.sh ../shared/models/specdec-tiny-py random -- --runs 3 --threads 1,2 --new_tokens 128
set -euo pipefail
INVOCATION="${BUILD:+BUILD=$BUILD }tests/bench/anchors/run.sh $*"
CALLER=$PWD
cd "$(dirname "$0")/../../.."
ROOT=$PWD
abspath() { case $1 in /*) echo "$1" ;; *) echo "$CALLER/$1" ;; esac; }
BUILD=$(abspath "${BUILD:-$ROOT/build}")
VENV=${SPECDEC_ANCHORS_VENV:-$ROOT/build/anchors-venv}
case $VENV in /*) ;; *) VENV=$ROOT/$VENV ;; esac
. tests/bench/lib.sh

MODELS=()
while [ $# -gt 0 ]; do
  case $1 in
    --) shift; break ;;
    *) MODELS+=("$1"); shift ;;
  esac
done
[ ${#MODELS[@]} -gt 0 ] || MODELS=(random)

SPECDEC_ANCHORS_VENV=$VENV tests/bench/anchors/setup_venv.sh

bench_work anchors
ARGS=()
for m in "${MODELS[@]}"; do
  if [ "$m" = random ]; then
    make_model=$(readlink -f "$BUILD/tools/make_model/specdec-make-model" || true)
    [ -x "$make_model" ] || { echo "run.sh: $BUILD/tools/make_model/specdec-make-model not found (set BUILD)" >&2; exit 1; }
    "$make_model" --preset pythia-70m --out "$WORK/pythia-70m-random" >/dev/null
    ARGS+=(--model_dir "$WORK/pythia-70m-random" --label "random Pythia-70M shape (specdec-make-model --preset pythia-70m)")
  else
    ARGS+=(--model_dir "$(abspath "$m")" --label "$(basename "$(abspath "$m")")")
  fi
done

ANCHORS_COMMAND=$INVOCATION \
  "$VENV/bin/python" tests/bench/anchors/anchors_bench.py --specdec_build "$BUILD" "${ARGS[@]}" "$@"
