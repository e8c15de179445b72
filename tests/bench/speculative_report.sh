#!/usr/bin/env bash
# Regenerates docs/benchmarks/speculative.md: speculative decoding in process against plain
# decoding on the trained specdec-tiny-py, greedy and sampled (temperature 0.8, top_p 0.95),
# with the plan specdec-calibrate picks on other text. Not a pass/fail test.
# Usage: tests/bench/speculative_report.sh [BUILD_DIR]   env: REPEATS (3), THREADS (1), OUT,
#        DTYPE (f32: the weights of the model and its drafts, calibration included)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
REPEATS=${REPEATS:-3}
THREADS=${THREADS:-1}
DTYPE=${DTYPE:-f32}
OUT=${OUT:-docs/benchmarks/speculative.md}
MODEL=../shared/models/specdec-tiny-py
. tests/bench/lib.sh
bench_work speculative_report
[ -f "$MODEL/config.json" ] || { echo "speculative_report: needs $MODEL" >&2; exit 1; }
COMMIT=$(git rev-parse --short HEAD)
TREE=$(git diff --quiet HEAD && echo clean || echo "uncommitted changes")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
"$BUILD/tools/calibrate/specdec-calibrate" --threads "$THREADS" --dtype "$DTYPE" --model_dir "$MODEL" \
  --text_file /usr/share/common-licenses/Apache-2.0 --budget_s 60 --out "$WORK/plan.json" \
  >"$WORK/calibrate.log" 2>&1 || { tail -n 20 "$WORK/calibrate.log" >&2; exit 1; }
for mode in greedy sampled shared_noise; do
  args=""
  [ "$mode" = sampled ] && args="--temperature 0.8 --top_p 0.95"
  [ "$mode" = shared_noise ] && args="--temperature 0.8 --top_p 0.95 --coupling shared_noise"
  "$BUILD/tests/bench/speculative_bench/speculative_bench" --threads "$THREADS" --dtype "$DTYPE" --plan "$WORK/plan.json" \
    --repeats "$REPEATS" --random_70m=false $args --out "$WORK/$mode.md" >"$WORK/$mode.log" 2>&1 ||
    { tail -n 20 "$WORK/$mode.log" >&2; exit 1; }
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "# Speculative decoding in process (CPU engine)"
  echo
  echo "Written by \`tests/bench/speculative_report.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit"
  echo "\`$COMMIT\` ($TREE), \`--threads $THREADS --dtype $DTYPE\`; load average $LOAD_START at the start, $LOAD_END at"
  echo "the end; CPU: $(lscpu | sed -n 's/^Model name: *//p'), flags: $(lscpu | sed -n 's/^Flags: *//p')."
  echo "Plain decoding against speculative decoding with draft views of the same trained checkpoint"
  echo "(specdec-tiny-py), side by side on the same held-out prompts; the calibrated plan comes from"
  echo "\`specdec-calibrate\` on a different text (Apache-2.0; the prompts are from GPL-3). Greedy"
  echo "outputs are checked token for token against plain decoding; sampled runs use the same seed"
  echo "for every configuration of a prompt and are lossless in distribution, not token for token,"
  echo "under the default rejection coupling; under the shared_noise coupling (docs/pipeline.md)"
  echo "they are checked token for token against plain sampling with the same seed."
  echo
  echo "## Greedy"
  echo
  cat "$WORK/greedy.md"
  echo
  echo "## Sampled (temperature 0.8, top_p 0.95)"
  echo
  cat "$WORK/sampled.md"
  echo
  echo "## Sampled with the shared_noise coupling (temperature 0.8, top_p 0.95)"
  echo
  cat "$WORK/shared_noise.md"
} >"$OUT"
echo "wrote $OUT"
