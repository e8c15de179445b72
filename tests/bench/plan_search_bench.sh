#!/usr/bin/env bash
# The draft that re-plans itself while it serves (--plan_search on) against fixed plans, on a
# traffic shift: the same services serve PROMPTS prompts of held-out Python stdlib docstrings
# (phase A), then PROMPTS prompts of licence texts (phase B, not in the training corpus), greedy,
# adaptive K. Configurations, over the same request sequence in one run (each run goes through
# the configurations one after another, in a rotated order): the self-planning draft (starting
# from the plan calibrated on phase A's kind of text), the plan specdec-calibrate picks on
# docstrings, the plan it picks on a licence (Apache-2.0, not among the prompts), and the full
# model. Checks that every configuration's greedy text is the same. Not a pass/fail test.
# Usage: tests/bench/plan_search_bench.sh [BUILD_DIR] [MODEL_DIR]
#   env: PROMPTS (8 per phase), TOKENS (128), RUNS (3), K (8: the bound of adaptive K),
#        DUTY (0.05), CUTS (vocabulary cuts, calibration and search alike), SETTLE_S (45: wait
#        after start-up), SEARCH_ARGS (more flags for the self-planning draft, e.g.
#        "--plan_search_margin 0.03"), OUT (a markdown file: also write the report there), LOGS
#        (a folder: keep the services' logs there)
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
MODEL=${2:-../shared/models/specdec-tiny-py}
PROMPTS=${PROMPTS:-8}
TOKENS=${TOKENS:-128}
RUNS=${RUNS:-3}
K=${K:-8}
DUTY=${DUTY:-0.05}
CUTS=${CUTS:-0,8192,4096,2048,1024,512,256}
SETTLE_S=${SETTLE_S:-45}
SEARCH_ARGS=${SEARCH_ARGS:-}
OUT=${OUT:-}
. tests/bench/lib.sh
bench_work plan_search
[ -f "$MODEL/config.json" ] || { echo "plan_search_bench: no checkpoint at $MODEL" >&2; exit 1; }
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# Texts. A: docstrings of the Python standard library (this interpreter's), alternately for
# calibration and prompts. B: licences; calibration on Apache-2.0, prompts from the others.
python3 - "$WORK" "$PROMPTS" <<'PY'
import importlib, inspect, sys
work, n = sys.argv[1], int(sys.argv[2])
mods = ["collections", "itertools", "functools", "pathlib", "json", "argparse", "textwrap",
        "string", "heapq", "bisect", "shutil", "subprocess", "logging", "datetime", "random",
        "statistics", "fractions", "decimal", "csv", "configparser", "tempfile", "glob",
        "fnmatch", "difflib", "enum", "dataclasses", "typing", "contextlib", "abc", "threading",
        "queue", "socket", "urllib.parse", "http.client", "email.message", "zipfile", "tarfile",
        "gzip", "pickle", "copy", "pprint", "inspect", "ast", "tokenize", "unittest", "doctest",
        "timeit", "operator", "re", "os"]
docs = []
for name in mods:
    mod = importlib.import_module(name)
    for attr, obj in sorted(vars(mod).items()):
        if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) != mod.__name__:
            continue
        doc = inspect.getdoc(obj)
        if doc and len(doc) >= 300:
            docs.append(doc.replace("\n", " "))
open(f"{work}/calib_a.txt", "w").write("\n\n".join(docs[1::2]))
held = docs[0::2]
open(f"{work}/prompts_a.txt", "w").write(
    "\n".join(held[i * len(held) // n][:160] for i in range(n)) + "\n")
paras = []
for lic in ["GPL-3", "LGPL-2.1", "MPL-2.0", "Artistic", "GFDL-1.3", "GPL-2", "LGPL-3", "CC0-1.0"]:
    text = open(f"/usr/share/common-licenses/{lic}", errors="replace").read()
    paras += [p.strip().replace("\n", " ") for p in text.split("\n\n") if len(p.strip()) >= 160]
open(f"{work}/prompts_b.txt", "w").write(
    "\n".join(" ".join(paras[i * len(paras) // n].split())[:160] for i in range(n)) + "\n")
PY
calibrate() {
  "$BUILD/tools/calibrate/specdec-calibrate" --threads 1 --model_dir "$MODEL" --text_file "$1" \
    --budget_s 30 --vocab_cuts "$CUTS" --probe_heads=false --out "$2" >"$2.log" 2>&1 ||
    { tail -n 20 "$2.log" >&2; exit 1; }
}
calibrate "$WORK/calib_a.txt" "$WORK/plan_a.json"
calibrate /usr/share/common-licenses/Apache-2.0 "$WORK/plan_b.json"
echo '{"plan": {"layers": [], "masked_heads": {}, "vocab_size": 0}}' >"$WORK/plan_full.json"

V=127.0.0.1:$(port)
"$BUILD/services/verifier/specdec-verifier" --model_dir "$MODEL" --listen "$V" --threads 1 \
  >"$WORK/verifier.log" 2>&1 & PIDS+=($!); wait_serving "$V" $! verifier
CONFIGS=(self fixed_a fixed_b full)
declare -A GATEWAY
SELF_METRICS=127.0.0.1:$(port)
for c in "${CONFIGS[@]}"; do
  D=127.0.0.1:$(port); G=127.0.0.1:$(port)
  case $c in
    self) args=(--draft_plan "$WORK/plan_a.json" --plan_search on --plan_search_duty "$DUTY"
                --plan_search_vocab_cuts "$CUTS" --metrics_listen "$SELF_METRICS" $SEARCH_ARGS) ;;
    fixed_a) args=(--draft_plan "$WORK/plan_a.json") ;;
    fixed_b) args=(--draft_plan "$WORK/plan_b.json") ;;
    full) args=(--draft_plan "$WORK/plan_full.json") ;;
  esac
  SPECDEC_LOG_LEVEL=${SPECDEC_LOG_LEVEL:-info} "$BUILD/services/draft/specdec-draft" \
    --model_dir "$MODEL" --listen "$D" --threads 1 "${args[@]}" >"$WORK/draft_$c.log" 2>&1 &
  PIDS+=($!); wait_serving "$D" $! "draft_$c"
  "$BUILD/services/gateway/specdec-gateway" --model_dir "$MODEL" --listen "$G" --verifier "$V" \
    --draft "$D" >"$WORK/gateway_$c.log" 2>&1 & PIDS+=($!); wait_serving "$G" $! "gateway_$c"
  GATEWAY[$c]=$G
  "$BUILD/services/client/specdec" generate --server "$G" --max_new_tokens 8 "warm up" >/dev/null 2>&1
done
sleep "$SETTLE_S"  # the self-planning draft measures its candidates' costs meanwhile

metric() {  # metric NAME: the self draft's value (first sample)
  curl -s "http://$SELF_METRICS/metrics" | awk -v n="$1" '$1 ~ "^"n"({|$)" {print $NF; exit}'
}
plan_label() { curl -s "http://$SELF_METRICS/metrics" | sed -n 's/^specdec_draft_plan{.*plan="\([^"]*\)".*/\1/p' | head -1; }
for run in $(seq "$RUNS"); do
  for i in "${!CONFIGS[@]}"; do
    c=${CONFIGS[$(( (i + run - 1) % ${#CONFIGS[@]} ))]}
    for phase in a b; do
      p=0
      while IFS= read -r prompt; do
        p=$((p + 1))
        "$BUILD/services/client/specdec" generate --server "${GATEWAY[$c]}" --max_new_tokens "$TOKENS" \
          --k "$K" --adaptive --rounds "$prompt" >"$WORK/out.$c.$run.$phase.$p.txt" \
          2>"$WORK/log.$c.$run.$phase.$p.txt"
      done <"$WORK/prompts_$phase.txt"
      if [ "$c" = self ]; then
        echo "$run $phase $(metric specdec_draft_plan_switches_total) $(metric specdec_plan_search_busy_fraction) $(metric specdec_plan_search_evaluations_total) $(plan_label)" >>"$WORK/self_state.txt"
      fi
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
[ -n "${LOGS:-}" ] && mkdir -p "$LOGS" && cp "$WORK"/*.log "$WORK"/*.json "$LOGS"/

python3 - "$WORK" "$RUNS" "$PROMPTS" "$TOKENS" "$K" "$MODEL" "$DUTY" "$CUTS" "$LOAD_START" "$LOAD_END" "$OUT" "$SEARCH_ARGS" <<'PY'
import json, re, statistics, subprocess, sys
work, runs, prompts, tokens, k, model, duty, cuts, load_start, load_end, out, search_args = sys.argv[1:13]
runs, prompts = int(runs), int(prompts)
configs = ["self", "fixed_a", "fixed_b", "full"]
def plan(name):
    p = json.load(open(f"{work}/plan_{name}.json"))["plan"]
    return f"layers={','.join(map(str, p['layers'])) or 'all'} vocab={p['vocab_size'] or 'full'}"
label = {"self": f"self-planning (starts on {plan('a')})", "fixed_a": f"fixed: docstring-calibrated ({plan('a')})",
         "fixed_b": f"fixed: licence-calibrated ({plan('b')})", "full": "fixed: full model (layers=all vocab=full)"}
def phase(c, run, ph):
    n = ms = acc = drafted = 0
    for p in range(1, prompts + 1):
        text = open(f"{work}/log.{c}.{run}.{ph}.{p}.txt").read()
        m = re.search(r"(\d+) generated tokens, .*?, ([\d.]+) ms, [\d.]+ tokens/s\]", text)
        n += int(m.group(1)); ms += float(m.group(2))
        for r in re.finditer(r"proposed=(\d+) accepted=(\d+)", text):
            drafted += int(r.group(1)); acc += int(r.group(2))
    return n * 1000.0 / ms, acc / max(drafted, 1)
mismatch = 0
for run in range(1, runs + 1):
    for ph in "ab":
        for p in range(1, prompts + 1):
            outs = {open(f"{work}/out.{c}.{run}.{ph}.{p}.txt").read() for c in configs}
            mismatch += len(outs) > 1
rates = {(c, ph): [phase(c, r, ph)[0] for r in range(1, runs + 1)] for c in configs for ph in "ab"}
accept = {(c, ph): statistics.median(phase(c, r, ph)[1] for r in range(1, runs + 1)) for c in configs for ph in "ab"}
both = {c: [2 / (1 / rates[(c, "a")][i] + 1 / rates[(c, "b")][i]) for i in range(runs)] for c in configs}
def spread(xs): return f"{statistics.median(xs):.0f} ({min(xs):.0f}-{max(xs):.0f})"
cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
field = lambda name: next((l.split(":", 1)[1].strip() for l in cpu.splitlines() if l.startswith(name)), "?")
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
tree = "clean" if subprocess.run(["git", "diff", "--quiet", "HEAD"]).returncode == 0 else "uncommitted changes"
lines = [f"- checkpoint `{model}`, f32, one compute thread per service; greedy, adaptive K up to {k}; "
         f"{prompts} prompts per phase, {tokens} new tokens each (EOS ends a generation), {runs} runs",
         f"- phase A: held-out Python stdlib docstrings; phase B: licences (GPL-3, LGPL, MPL-2.0, ...); "
         f"calibration (and the search) over vocabulary cuts {cuts}",
         f"- self-planning: `{' '.join(['--plan_search on --plan_search_duty', duty, search_args]).strip()}`, "
         "other search flags at their defaults",
         f"- CPU: {field('Model name')}, {field('CPU(s)')} CPUs; flags: {field('Flags')}",
         f"- load average {load_start} at the start, {load_end} at the end; commit {commit} ({tree})",
         f"- greedy outputs that differ between configurations: {mismatch} of {runs * 2 * prompts} prompts", "",
         "| draft | phase A tokens/s | phase B tokens/s | both phases (harmonic mean) | acceptance A | acceptance B |",
         "|---|---:|---:|---:|---:|---:|"]
for c in configs:
    lines.append(f"| {label[c]} | {spread(rates[(c, 'a')])} | {spread(rates[(c, 'b')])} | {spread(both[c])} | "
                 f"{100 * accept[(c, 'a')]:.0f}% | {100 * accept[(c, 'b')]:.0f}% |")
ratio = lambda c, d, ph: [x / y for x, y in zip(rates[(c, ph)], rates[(d, ph)])]
best_fixed = max(configs[1:], key=lambda c: statistics.median(both[c]))
lines += ["", "Tokens/s: median (min-max) over runs, each the generated tokens of a phase over the client-measured"
          " time of its requests.", "",
          f"- self-planning / docstring-calibrated plan on phase B: {spread([100 * x for x in ratio('self', 'fixed_a', 'b')])} % "
          "(median (min-max) of run-by-run ratios, in percent)",
          f"- best fixed plan in hindsight (both phases): {label[best_fixed]}; self-planning / it over both phases: "
          f"{spread([100 * x / y for x, y in zip(both['self'], both[best_fixed])])} %", "",
          "The self-planning draft after each phase (run, phase, switches so far, measured busy fraction of the search,"
          " evaluations, plan in use):", "", "```"]
lines += open(f"{work}/self_state.txt").read().splitlines()
lines += ["```"]
switches = [l for l in open(f"{work}/draft_self.log") if "switching from" in l]
lines += ["", "Its switches (draft log):", "", "```"] + [l.rstrip() for l in switches] + ["```"]
report = "\n".join(lines) + "\n"
print(report)
if out:
    open(out, "w").write(report)
PY
