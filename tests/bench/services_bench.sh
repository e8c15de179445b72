#!/usr/bin/env bash
# The product at an equal CPU budget: speculative decoding through the three services (draft and
# verifier one compute thread each: the machine's two cores) against plain in-process decoding
# with 2 threads and with 1, on held-out prompts, greedy and sampled (temperature 0.8, top_p
# 0.95), runs interleaved prompt by prompt. Not a pass/fail test.
# Usage: tests/bench/services_bench.sh [BUILD_DIR] [MODEL_DIR]
#   env: PROMPTS (8), TOKENS (128), K (16: the bound of adaptive K, the gateway's default),
#        RUNS (3), PLAN (a LayerPlan JSON for the draft; empty: calibrate on CALIBRATION_TEXT
#        here), CALIBRATION_TEXT (Apache-2.0), TEXT (the held-out text prompts come from: GPL-3),
#        DTYPE (f32), OUT (a markdown file: also write the report there), DRAFT_TOP_K (512, the
#        draft's default: the most tokens of each proposal's q the draft sends);
#        ALT_VERIFIER_FLAGS, ALT_DRAFT_FLAGS, ALT_GATEWAY_FLAGS (any of them set: a second set of
#        the three services, started like the first plus these flags, e.g.
#        ALT_GATEWAY_FLAGS=--draft_tokens_per_message=1; every prompt runs through it right
#        after the first and the report sets the two side by side), ALT_LABEL (its name in the
#        report)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
MODEL=${2:-../shared/models/specdec-tiny-py}
PROMPTS=${PROMPTS:-8}
TOKENS=${TOKENS:-128}
K=${K:-16}
RUNS=${RUNS:-3}
PLAN=${PLAN:-}
DTYPE=${DTYPE:-f32}
DRAFT_TOP_K=${DRAFT_TOP_K:-512}
CALIBRATION_TEXT=${CALIBRATION_TEXT:-/usr/share/common-licenses/Apache-2.0}
TEXT=${TEXT:-/usr/share/common-licenses/GPL-3}
OUT=${OUT:-}
ALT_VERIFIER_FLAGS=${ALT_VERIFIER_FLAGS:-}
ALT_DRAFT_FLAGS=${ALT_DRAFT_FLAGS:-}
ALT_GATEWAY_FLAGS=${ALT_GATEWAY_FLAGS:-}
ALT_FLAGS="$ALT_VERIFIER_FLAGS${ALT_VERIFIER_FLAGS:+ (verifier) }$ALT_DRAFT_FLAGS${ALT_DRAFT_FLAGS:+ (draft) }$ALT_GATEWAY_FLAGS${ALT_GATEWAY_FLAGS:+ (gateway)}"
ALT_FLAGS=${ALT_FLAGS% }
ALT_LABEL=${ALT_LABEL:-$ALT_FLAGS}
. tests/bench/lib.sh
bench_work services
[ -f "$MODEL/config.json" ] || { echo "services_bench: no checkpoint at $MODEL" >&2; exit 1; }

if [ -z "$PLAN" ]; then
  PLAN=$WORK/plan.json
  "$BUILD/tools/calibrate/specdec-calibrate" --threads 1 --model_dir "$MODEL" \
    --text_file "$CALIBRATION_TEXT" --budget_s 60 --out "$PLAN" >"$WORK/calibrate.log" 2>&1
fi
# Prompts: the first 160 characters of paragraphs spread evenly over the held-out text.
python3 - "$TEXT" "$PROMPTS" >"$WORK/prompts.txt" <<'PY'
import sys
paras = [p.strip().replace("\n", " ") for p in open(sys.argv[1]).read().split("\n\n")]
paras = [p for p in paras if len(p) >= 160]
n = int(sys.argv[2])
for i in range(n):
    print(paras[i * len(paras) // n][:160])
PY

V=127.0.0.1:$(port); D=127.0.0.1:$(port); G=127.0.0.1:$(port)
"$BUILD/services/verifier/specdec-verifier" --model_dir "$MODEL" --listen "$V" --threads 1 \
  --dtype "$DTYPE" >"$WORK/verifier.log" 2>&1 & PIDS+=($!); VPID=$!
"$BUILD/services/draft/specdec-draft" --model_dir "$MODEL" --listen "$D" --threads 1 \
  --dtype "$DTYPE" --draft_plan "$PLAN" --draft_top_k "$DRAFT_TOP_K" >"$WORK/draft.log" 2>&1 & PIDS+=($!); DPID=$!
"$BUILD/services/gateway/specdec-gateway" --model_dir "$MODEL" --listen "$G" --verifier "$V" \
  --draft "$D" >"$WORK/gateway.log" 2>&1 & PIDS+=($!); GPID=$!
wait_serving "$V" "$VPID" verifier; wait_serving "$D" "$DPID" draft; wait_serving "$G" "$GPID" gateway
if [ -n "$ALT_FLAGS" ]; then
  AV=127.0.0.1:$(port); AD=127.0.0.1:$(port); A=127.0.0.1:$(port)
  # shellcheck disable=SC2086  # the flags are words
  "$BUILD/services/verifier/specdec-verifier" --model_dir "$MODEL" --listen "$AV" --threads 1 \
    --dtype "$DTYPE" $ALT_VERIFIER_FLAGS >"$WORK/verifier_alt.log" 2>&1 & PIDS+=($!); AVPID=$!
  # shellcheck disable=SC2086
  "$BUILD/services/draft/specdec-draft" --model_dir "$MODEL" --listen "$AD" --threads 1 \
    --dtype "$DTYPE" --draft_plan "$PLAN" --draft_top_k "$DRAFT_TOP_K" $ALT_DRAFT_FLAGS \
    >"$WORK/draft_alt.log" 2>&1 & PIDS+=($!); ADPID=$!
  # shellcheck disable=SC2086
  "$BUILD/services/gateway/specdec-gateway" --model_dir "$MODEL" --listen "$A" --verifier "$AV" \
    --draft "$AD" $ALT_GATEWAY_FLAGS >"$WORK/gateway_alt.log" 2>&1 & PIDS+=($!); APID=$!
  wait_serving "$AV" "$AVPID" "verifier ($ALT_LABEL)"; wait_serving "$AD" "$ADPID" "draft ($ALT_LABEL)"
  wait_serving "$A" "$APID" "gateway ($ALT_LABEL)"
fi

GEN="$BUILD/tools/generate/specdec-generate --model_dir $MODEL --dtype $DTYPE --json --max_new_tokens $TOKENS"
CLIENT="$BUILD/services/client/specdec generate --server $G --max_new_tokens $TOKENS --k $K --adaptive"
SAMPLED="--temperature 0.8 --top_p 0.95"
"$BUILD/services/client/specdec" generate --server "$G" --max_new_tokens 8 "warm up" >/dev/null 2>&1
if [ -n "$ALT_FLAGS" ]; then
  "$BUILD/services/client/specdec" generate --server "$A" --max_new_tokens 8 "warm up" >/dev/null 2>&1
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq "$RUNS"); do
  p=0
  while IFS= read -r prompt; do
    p=$((p + 1))
    for mode in greedy sampled shared_noise; do
      args=""
      [ "$mode" = sampled ] && args="$SAMPLED --seed $((run * 100 + p))"
      [ "$mode" = shared_noise ] && args="$SAMPLED --coupling shared_noise --seed $((run * 100 + p))"
      $GEN --threads 1 $args --prompt "$prompt" >"$WORK/plain1.$mode.$run.$p.json"
      $GEN --threads 2 $args --prompt "$prompt" >"$WORK/plain2.$mode.$run.$p.json"
      $CLIENT $args "$prompt" >"$WORK/services.$mode.$run.$p.txt" 2>"$WORK/services.$mode.$run.$p.log"
      if [ -n "$ALT_FLAGS" ]; then
        ${CLIENT/--server $G/--server $A} $args "$prompt" >"$WORK/alt.$mode.$run.$p.txt" \
          2>"$WORK/alt.$mode.$run.$p.log"
      fi
    done
  done <"$WORK/prompts.txt"
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$WORK" "$RUNS" "$PROMPTS" "$TOKENS" "$K" "$MODEL" "$PLAN" "$DTYPE" "$OUT" "$LOAD_START" "$LOAD_END" "$ALT_FLAGS" "$ALT_LABEL" <<'PY'
import json, re, statistics, subprocess, sys, time
work, runs, prompts, tokens, k, model, plan, dtype, out, load_start, load_end, alt_flags, alt_label = sys.argv[1:14]
runs, prompts = int(runs), int(prompts)
def rate(kind, mode, run):
    """Tokens/s over all prompts of one run: generated tokens / (prefill + decode) time."""
    n = ms = 0.0
    for p in range(1, prompts + 1):
        if kind in ("services", "alt"):
            text = open(f"{work}/{kind}.{mode}.{run}.{p}.log").read()
            m = re.search(r"(\d+) generated tokens, .*?, ([\d.]+) ms, [\d.]+ tokens/s\]", text)
            n += int(m.group(1)); ms += float(m.group(2))
        else:
            d = json.load(open(f"{work}/{kind}.{mode}.{run}.{p}.json"))
            n += len(d["ids"]); ms += d["prefill_ms"] + d["decode_ms"]
    return n * 1000.0 / ms
def accepted(mode, kind="services"):
    a = d = 0
    for f in range(1, runs + 1):
        for p in range(1, prompts + 1):
            m = re.search(r"(\d+)/(\d+) drafts accepted", open(f"{work}/{kind}.{mode}.{f}.{p}.log").read())
            a += int(m.group(1)); d += int(m.group(2))
    return a / max(d, 1)
def spread(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}-{max(xs):.2f})"
cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
field = lambda name: next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith(name)), "?")
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
draft = json.load(open(plan)).get("plan", {})
lines = [f"- checkpoint `{model}`, weights {dtype}; draft plan: layers {draft.get('layers') or 'all'}, "
         f"vocabulary {draft.get('vocab_size') or 'full'} (calibrated on other text); adaptive K up to {k}",
         f"- {prompts} held-out prompts, {tokens} new tokens each (EOS ends a generation), {runs} runs, "
         "every prompt's three configurations run back to back",
         f"- CPU: {field('Model name')}, {field('CPU(s)')} CPUs; flags: {field('Flags')}",
         f"- commit {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average "
         f"{load_start} before the runs, {load_end} after", "",
         "| decoding | plain, 1 thread (tokens/s) | plain, 2 threads (tokens/s) | three services, 1 + 1 threads (tokens/s) | services / plain 2 threads | services / plain 1 thread | draft acceptance |",
         "|---|---:|---:|---:|---:|---:|---:|"]
MODES = {"greedy": "greedy", "sampled": "sampled (T 0.8, top_p 0.95)",
         "shared_noise": "sampled, shared_noise coupling"}
rates = {(kind, mode): [rate(kind, mode, r) for r in range(1, runs + 1)]
         for mode in MODES for kind in ("plain1", "plain2", "services") + (("alt",) if alt_flags else ())}
for mode, label in MODES.items():
    p1, p2, sv = rates["plain1", mode], rates["plain2", mode], rates["services", mode]
    lines.append(f"| {label} | {spread(p1)} | {spread(p2)} | {spread(sv)} | "
                 f"{spread([s / q for s, q in zip(sv, p2)])}x | {spread([s / q for s, q in zip(sv, p1)])}x | "
                 f"{100 * accepted(mode):.0f}% |")
if alt_flags:
    lines += ["", f"A second set of the three services, started the same way plus `{alt_flags}` "
              f"({alt_label}), each prompt run through it right after the first set:", "",
              f"| decoding | three services (tokens/s) | {alt_label} (tokens/s) | first set / {alt_label} | "
              f"{alt_label} / plain 2 threads | draft acceptance, first / {alt_label} |",
              "|---|---:|---:|---:|---:|---:|"]
    for mode, label in MODES.items():
        p2, sv, alt = rates["plain2", mode], rates["services", mode], rates["alt", mode]
        lines.append(f"| {label} | {spread(sv)} | {spread(alt)} | "
                     f"{spread([s / a for s, a in zip(sv, alt)])}x | {spread([a / q for a, q in zip(alt, p2)])}x | "
                     f"{100 * accepted(mode):.0f}% / {100 * accepted(mode, 'alt'):.0f}% |")
lines.append("")
lines.append("Figures are medians (min-max) over runs; ratios are taken run by run, side by side. "
             "Under shared_noise plain decoding samples by the same race, so the services' tokens "
             "equal plain decoding's for each seed (docs/pipeline.md).")
report = "\n".join(lines) + "\n"
print(report)
if out:
    open(out, "w").write(report)
PY
