#!/usr/bin/env bash
# Regenerates docs/benchmarks/query_aware.md: decode tokens/s of query_aware against full at 2,048
# positions on the Pythia-70M shape with 1 and 16 sessions, the cache bytes read per token, and
# perplexity / greedy agreement on held-out text with the trained specdec-tiny-py
# (tests/bench/query_aware_bench). Not a pass/fail test. Needs the query_aware_bench target built.
# Usage: tests/bench/query_aware_report.sh [BUILD_DIR]
#   env: RUNS (3), PAGES (the speed part's pages; default: the policy's default), QUALITY_PAGES
#        (4,8,16,32), DECODE (32 tokens per session and run), THREADS (0: the default), OUT
# The held-out text is GPL-3 (Debian's license texts; the calibrator's text is Apache-2.0).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
RUNS=${RUNS:-3}
PAGES=${PAGES:-$(sed -n 's/^  int64_t pages = \([0-9]*\);.*/\1/p' common/kv_cache/kv_cache_config.h)}
QUALITY_PAGES=${QUALITY_PAGES:-4,8,16,32}
OUT=${OUT:-docs/benchmarks/query_aware.md}
TINY=../shared/models/specdec-tiny-py
TEXT=${TEXT:-/usr/share/common-licenses/GPL-3}
. tests/bench/lib.sh
bench_work query_aware_report
COMMIT=$(git rev-parse --short HEAD)
TREE=$(git diff --quiet HEAD -- . ":(exclude)$OUT" && echo clean || echo "uncommitted changes")
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
QUALITY=()
if [ -f "$TINY/config.json" ] && [ -f "$TEXT" ]; then
  QUALITY=(--quality_model_dir "$TINY" --text_file "$TEXT" --quality_pages "$QUALITY_PAGES")
fi
"$BUILD/tests/bench/query_aware_bench" --runs "$RUNS" --pages "$PAGES" --decode_tokens "${DECODE:-32}" \
  --threads "${THREADS:-0}" "${QUALITY[@]}" --out "$WORK/bench.md" >"$WORK/bench.log" 2>&1 ||
  { tail -n 20 "$WORK/bench.log" >&2; exit 1; }
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
{
  echo "# query_aware: selecting pages before reading them"
  echo
  echo "Written by \`tests/bench/query_aware_report.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), commit"
  echo "\`$COMMIT\` ($TREE); load average $LOAD_START at the start, $LOAD_END at the end"
  echo "($(nproc) CPUs). CPU: $(lscpu | sed -n 's/^Model name: *//p'); flags: $(lscpu | sed -n 's/^Flags: *//p')."
  echo "Every figure below comes from this run; ratios compare arms of the same run. What the policy"
  echo "computes and how: [../kv_cache.md](../kv_cache.md#query_aware-on-the-cpu-engine)."
  echo
  echo "Reading the figures: a load average above the CPU count means other work shared the CPUs"
  echo "during the run (the arms are interleaved, so each ratio compares runs under similar load;"
  echo "absolute tokens/s are low under contention). specdec-tiny-py was trained on 256-token"
  echo "sequences: at 2,048 positions every policy that keeps absolute positions (full, query_aware)"
  echo "is far outside its training, so its perplexity here is much higher than on its validation"
  echo "split, and sink_window, which rotates keys by cache slot and so keeps positions below its"
  echo "budget, scores better than full whenever that budget stays near 256. The quality goal compares"
  echo "query_aware with full at the same positions."
  echo
  cat "$WORK/bench.md"
  [ ${#QUALITY[@]} -gt 0 ] || echo "(no $TINY or $TEXT: quality not measured)"
} >"$OUT"
echo "wrote $OUT"
