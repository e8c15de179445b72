#!/usr/bin/env bash
# Regenerates docs/benchmarks/decode.md: the CPU engine on the random Pythia-70M shape and on the
# trained specdec-tiny-py (tests/bench/decode_bench), and the accuracy of its weight dtypes
# against f32 on held-out text (tests/bench/dtype_accuracy). Not a pass/fail test.
# Usage: tests/bench/decode_report.sh [BUILD_DIR]   env: RUNS (5), THREADS (1,2), OUT
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
RUNS=${RUNS:-5}
THREADS=${THREADS:-1,2}
OUT=${OUT:-docs/benchmarks/decode.md}
TINY=../shared/models/specdec-tiny-py
. tests/bench/lib.sh
bench_work decode_report
COMMIT=$(git rev-parse --short HEAD)
TREE=$(git diff --quiet HEAD && echo clean || echo "uncommitted changes")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
"$BUILD/tests/bench/decode_bench" --runs "$RUNS" --threads "$THREADS" --commit "$COMMIT ($TREE)" \
  --out "$WORK/p70m.md" >"$WORK/p70m.log" 2>&1 || { tail -n 20 "$WORK/p70m.log" >&2; exit 1; }
if [ -f "$TINY/config.json" ]; then
  # The trained model decodes after 32 tokens of held-out text (GPL-3's preamble), as a user's
  # prompt would be: after synthetic ids its next-token distribution is flat, and sampling from
  # a flat distribution costs several times more than from a text continuation's.
  PROMPT_IDS=$(python3 -c '
import json, sys
text = open("/usr/share/common-licenses/GPL-3").read()
start = text.find("The GNU General Public License is a free")
print(json.dumps({"text": text[start:start + 400]}))' |
    "$BUILD/tools/tokenize/specdec-tokenize" --tokenizer "$TINY/tokenizer.json" |
    python3 -c 'import json, sys; print(",".join(map(str, json.load(sys.stdin)["ids"][:32])))')
  "$BUILD/tests/bench/decode_bench" --model_dir "$TINY" --runs "$RUNS" --threads "$THREADS" \
    --prompt_ids "$PROMPT_IDS" \
    --commit "$COMMIT ($TREE)" --out "$WORK/tiny.md" >"$WORK/tiny.log" 2>&1 ||
    { tail -n 20 "$WORK/tiny.log" >&2; exit 1; }
  "$BUILD/tests/bench/dtype_accuracy" --model_dir "$TINY" --out "$WORK/accuracy.md" \
    >"$WORK/accuracy.log" 2>&1 || { tail -n 20 "$WORK/accuracy.log" >&2; exit 1; }
else
  echo "(no $TINY: the trained checkpoint's sections are not measured)" >"$WORK/tiny.md"
  cp "$WORK/tiny.md" "$WORK/accuracy.md"
fi
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "# Decode speed and accuracy of the CPU engine"
  echo
  echo "Written by \`tests/bench/decode_report.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit"
  echo "\`$COMMIT\` ($TREE); load average $LOAD_START at the start, $LOAD_END at the end. What the"
  echo "engine is: [../cpu_engine.md](../cpu_engine.md). Every figure below was measured in this run;"
  echo "ratios compare figures of the same run. The random Pythia-70M shape has real Pythia-70M's"
  echo "sizes (a forward's cost does not depend on the weights' values; real weights cannot be"
  echo "downloaded here); specdec-tiny-py is a small trained GPT-NeoX (hidden 128, 6 layers, the"
  echo "full 50,304-token head)."
  echo
  cat "$WORK/p70m.md"
  echo
  cat "$WORK/tiny.md"
  echo
  echo "## Accuracy of the weight dtypes"
  echo
  cat "$WORK/accuracy.md"
} >"$OUT"
echo "wrote $OUT"
