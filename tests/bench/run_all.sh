#!/usr/bin/env bash
# The whole performance comparison in one command: a single stream (plain decoding, speculative
# in process, speculative through the gRPC pipeline with overlapped and with sequential rounds:
# tests/bench/pipeline_bench.sh) and N concurrent streams through the gateway, speculative
# against K=0 (the verifier alone behind the same gateway) for each N (tools/loadgen/load_bench.sh),
# all on one checkpoint in one run; then the equal-CPU-budget comparison of the three services
# with plain decoding (tests/bench/services_bench.sh, trained checkpoint), the CPU engine's own
# figures (tests/bench/decode_bench) and, when their environment is installed, the other CPU
# engines (tests/bench/anchors). Writes OUT_DIR/summary.md (side-by-side ratios, absolute
# tokens/s, the machine, the command) and OUT_DIR/summary.png (two panels).
# Usage: tests/bench/run_all.sh [BUILD_DIR] [MODEL_DIR]
#   MODEL_DIR: default ../shared/models/specdec-tiny-py (the trained checkpoint) when it exists,
#              else a random checkpoint from `specdec-make-model --preset tiny`.
#   env: K (4), RUNS (3), TOKENS (128), PROMPT (pipeline_bench's), STREAMS ("1 4 16 64"),
#        DURATION (10 s of load per run), MAX_NEW (64 tokens per loadgen request), TIMEOUT_MS
#        (60000), THREADS (1, --threads of every service and of specdec-generate),
#        DRAFT_LAYERS / DRAFT_VOCAB (all layers / 4096 and K=8, the calibrated plan, when the
#        checkpoint has vocab_rank.json,
#        else 0 / 0), VERIFIER_CPUS / DRAFT_CPUS (pinning, passed on), OUT_DIR (docs/benchmarks)
# Quick check: RUNS=1 TOKENS=32 DURATION=3 STREAMS="1 4" tests/bench/run_all.sh
# Exit status: non-zero, with the failing step's output and service logs, when a step fails;
# 1 after writing the summary when a load run had errors or left sessions open.
set -euo pipefail
CALLER=$PWD
cd "$(dirname "$0")/../.."
ROOT=$PWD
abspath() { case $1 in /*) echo "$1" ;; *) echo "$CALLER/$1" ;; esac; }
BUILD=$(abspath "${1:-$ROOT/build}")
K_SET=${K:-}
K=${K:-4}
RUNS=${RUNS:-3}
TOKENS=${TOKENS:-128}
STREAMS=${STREAMS:-"1 4 16 64"}
DURATION=${DURATION:-10}
MAX_NEW=${MAX_NEW:-64}
THREADS=${THREADS:-1}
OUT_DIR=$(abspath "${OUT_DIR:-$ROOT/docs/benchmarks}")
WORK=$(mktemp -d /tmp/specdec_all.XXXXXX)
CHILD=
cleanup() {
  if [ -n "$CHILD" ]; then  # the step's own EXIT trap stops its services
    kill -TERM "$CHILD" 2>/dev/null || true
    wait "$CHILD" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() { echo "run_all: FAILED: $*" >&2; exit 1; }
# step LOG CMD...: runs CMD in the background (so a signal stops it at once), output in LOG.
step() {
  local log=$1 rc=0
  shift
  "$@" >"$log" 2>&1 &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  return $rc
}

for bin in services/verifier/specdec-verifier services/draft/specdec-draft \
  services/gateway/specdec-gateway services/client/specdec tools/generate/specdec-generate \
  tools/loadgen/specdec-loadgen tools/make_model/specdec-make-model; do
  [ -x "$BUILD/$bin" ] || fail "$BUILD/$bin is missing (build the project first)"
done

START_S=$(date +%s)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
TRAINED_DIR=$ROOT/../shared/models/specdec-tiny-py
if [ -n "${2:-}" ]; then
  MODEL=$(abspath "$2"); MODEL_KIND=given
  # The trained checkpoint named on the command line (as the summary prints the command) is
  # the trained checkpoint: it gets the equal-budget services comparison too.
  if [ -d "$TRAINED_DIR" ] && [ "$(cd "$MODEL" && pwd -P)" = "$(cd "$TRAINED_DIR" && pwd -P)" ]; then
    MODEL_KIND=trained
  fi
elif [ -d "$ROOT/../shared/models/specdec-tiny-py" ]; then
  MODEL=$(cd "$ROOT/../shared/models/specdec-tiny-py" && pwd); MODEL_KIND=trained
else
  MODEL=$WORK/model; MODEL_KIND=random
  "$BUILD/tools/make_model/specdec-make-model" --preset tiny --out "$MODEL" >"$WORK/make_model.log" 2>&1 ||
    { cat "$WORK/make_model.log" >&2; fail "specdec-make-model --preset tiny"; }
fi
[ -f "$MODEL/config.json" ] || fail "$MODEL has no config.json"
if [ -f "$MODEL/vocab_rank.json" ]; then
  # The plan specdec-calibrate chose for the trained checkpoint (docs/benchmarks/speculative.md):
  # every layer, the 4096 most frequent tokens, K=8.
  DRAFT_LAYERS=${DRAFT_LAYERS:-$(. tests/bench/lib.sh && all_layers "$MODEL")}; DRAFT_VOCAB=${DRAFT_VOCAB:-4096}; K=${K_SET:-8}
else
  DRAFT_LAYERS=${DRAFT_LAYERS:-0}; DRAFT_VOCAB=${DRAFT_VOCAB:-0}
fi

GPU="no GPU on this machine"
if command -v nvidia-smi >/dev/null 2>&1 && GPUS=$(timeout 20 nvidia-smi -L 2>/dev/null) &&
  [ -n "$GPUS" ]; then
  GPU="GPU present ($(echo "$GPUS" | head -n 1 | sed 's/ (UUID.*//'); $(echo "$GPUS" | wc -l) in all), but the GPU comparison is not part of this script yet: every figure here is CPU"
fi

echo "# run_all: checkpoint $MODEL, K=$K, draft layers=$DRAFT_LAYERS vocab=$DRAFT_VOCAB, --threads $THREADS"
echo "## single stream: tests/bench/pipeline_bench.sh (RUNS=$RUNS, TOKENS=$TOKENS)"
step "$WORK/pipeline.log" env JSON_OUT="$WORK/pipeline.json" K="$K" RUNS="$RUNS" TOKENS="$TOKENS" \
  DRAFT_LAYERS="$DRAFT_LAYERS" DRAFT_VOCAB="$DRAFT_VOCAB" THREADS="$THREADS" \
  tests/bench/pipeline_bench.sh "$BUILD" "$MODEL" ||
  { tail -n 40 "$WORK/pipeline.log" >&2; fail "tests/bench/pipeline_bench.sh (output above)"; }
cat "$WORK/pipeline.log"
[ -s "$WORK/pipeline.json" ] || fail "pipeline_bench.sh wrote no JSON"

# Speculative and K=0 back to back for each stream count (fresh services each run; which goes
# first alternates), so every ratio compares two runs minutes apart at most.
echo "## concurrent streams: tools/loadgen/load_bench.sh, ${DURATION}s per run, K=$K vs K=0"
LOAD_ERRORS=0
i=0
for n in $STREAMS; do
  if [ $((i % 2)) -eq 0 ]; then ORDER="$K 0"; else ORDER="0 $K"; fi
  i=$((i + 1))
  for k in $ORDER; do
    log=$WORK/load.k$k.n$n.log
    rc=0
    step "$log" env MODEL_DIR="$MODEL" STREAMS="$n" K="$k" DURATION="$DURATION" MAX_NEW="$MAX_NEW" \
      THREADS="$THREADS" DRAFT_LAYERS="$DRAFT_LAYERS" DRAFT_VOCAB="$DRAFT_VOCAB" REPEAT=1 \
      tools/loadgen/load_bench.sh "$BUILD" || rc=$?
    if ! grep -q '^{"phases"' "$log"; then
      tail -n 40 "$log" >&2
      fail "tools/loadgen/load_bench.sh, $n stream(s), K=$k (exit $rc; output above)"
    fi
    if [ "$rc" -ne 0 ]; then LOAD_ERRORS=$((LOAD_ERRORS + 1)); fi
    echo "$n stream(s), K=$k: $(grep -m1 '^phase 0' "$log" | sed 's/^phase 0: //')"
  done
done

echo "## the CPU engine: tests/bench/decode_bench (random Pythia-70M shape, threads 1,2, f32/bf16/int8)"
step "$WORK/decode.log" "$BUILD/tests/bench/decode_bench" --runs "$RUNS" --threads 1,2 \
  --dtypes f32,bf16,int8 --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  --out "$WORK/decode.md" || { tail -n 40 "$WORK/decode.log" >&2; fail "decode_bench"; }
cat "$WORK/decode.md"

if [ "$MODEL_KIND" = trained ]; then
  echo "## equal CPU budget: tests/bench/services_bench.sh (three services vs plain, 2 and 1 threads)"
  step "$WORK/services.log" env RUNS="$RUNS" TOKENS="$TOKENS" OUT="$WORK/services.md" \
    tests/bench/services_bench.sh "$BUILD" "$MODEL" ||
    { tail -n 40 "$WORK/services.log" >&2; fail "tests/bench/services_bench.sh"; }
  cat "$WORK/services.md"
fi

# The engines a CPU user would pick instead, when their environment is installed
# (tests/bench/anchors/setup_venv.sh; never installed by this script).
ANCHORS_VENV=${SPECDEC_ANCHORS_VENV:-$ROOT/build/anchors-venv}
if [ -x "$ANCHORS_VENV/bin/python" ] && [ -f tests/bench/anchors/anchors_bench.py ]; then
  echo "## other engines: tests/bench/anchors/anchors_bench.py"
  step "$WORK/anchors.log" "$ANCHORS_VENV/bin/python" tests/bench/anchors/anchors_bench.py \
    --model_dir "$MODEL" --specdec_build "$BUILD" --threads 1,2 --runs "$RUNS" \
    --new_tokens "$TOKENS" --out "$WORK/anchors.md" ||
    { tail -n 40 "$WORK/anchors.log" >&2; fail "tests/bench/anchors/anchors_bench.py"; }
else
  echo "## other engines: skipped (no $ANCHORS_VENV; tests/bench/anchors/setup_venv.sh makes it)" |
    tee "$WORK/anchors.md"
fi

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(($(date +%s) - START_S))
mkdir -p "$OUT_DIR"
# The command that reproduces this run: every knob, paths relative to the repo root.
rel() { python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$ROOT"; }
COMMAND="K=$K RUNS=$RUNS TOKENS=$TOKENS STREAMS=\"$STREAMS\" DURATION=$DURATION MAX_NEW=$MAX_NEW"
COMMAND+=" THREADS=$THREADS DRAFT_LAYERS=$DRAFT_LAYERS DRAFT_VOCAB=$DRAFT_VOCAB"
for knob in PROMPT TIMEOUT_MS VERIFIER_CPUS DRAFT_CPUS; do
  if [ -n "${!knob:-}" ]; then COMMAND+=" $knob=$(printf '%q' "${!knob}")"; fi
done
COMMAND+=" tests/bench/run_all.sh $(rel "$BUILD")"
if [ "$MODEL_KIND" != random ]; then COMMAND+=" $(rel "$MODEL")"; fi
pinned() { if [ -n "$1" ]; then echo "on CPUs $1"; else echo "not pinned"; fi; }

CPU_MODEL=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
CORES=$(nproc)
MEM_GIB=$(free -g | awk '/^Mem:/ {print $2}')
OS_NAME="$(sed -n 's/^PRETTY_NAME="\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' /etc/os-release 2>/dev/null), kernel $(uname -r)"
if COMMIT=$(git rev-parse --short HEAD 2>/dev/null); then
  TREE=$(git diff --quiet HEAD && echo clean || echo "uncommitted changes in the working tree")
else
  COMMIT=unknown TREE="not a git checkout"
fi
PINNING="verifier $(pinned "${VERIFIER_CPUS:-}"), draft $(pinned "${DRAFT_CPUS:-}")"
OMP="OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
export WORK OUT_DIR ROOT MODEL MODEL_KIND K STREAMS DURATION MAX_NEW THREADS DRAFT_LAYERS \
  DRAFT_VOCAB DATE LOAD_START LOAD_END ELAPSED GPU COMMAND CPU_MODEL CORES MEM_GIB OS_NAME COMMIT \
  TREE PINNING OMP
python3 - <<'PY'
import glob, json, os, re, statistics

e = os.environ
work, out = e["WORK"], e["OUT_DIR"]
pipe = json.load(open(f"{work}/pipeline.json"))
k = int(e["K"])
streams = e["STREAMS"].split()

def phase(kk, n):
    text = open(f"{work}/load.k{kk}.n{n}.log").read()
    line = [l for l in text.splitlines() if l.startswith('{"phases"')][-1]
    return json.loads(line)["phases"][0]
load = {n: {"spec": phase(k, n), "k0": phase(0, n)} for n in streams}

def ratio(a, b):
    return a / b if a and b else float("nan")
def runs_ratio(a, b):  # median over runs of the per-run ratio: each pair ran back to back
    pr = pipe["per_run"]
    return statistics.median(x / y for x, y in zip(pr[a], pr[b]))
def x(r):
    return "n/a" if r != r else f"{r:.2f}x"
def tps(v):
    return f"{v:,.1f}"
def ms(v, places=1):
    return "n/a" if v is None else f"{v:.{places}f}"

# Checkpoint description.
model = e["MODEL"]
cfg = json.load(open(f"{model}/config.json"))
shape = (f"{cfg.get('num_hidden_layers')} layers, hidden {cfg.get('hidden_size')}, "
         f"vocab {cfg.get('vocab_size')}")
rel_model = os.path.relpath(model, e["ROOT"])
if e["MODEL_KIND"] == "random":
    checkpoint = (f"random weights from `specdec-make-model --preset tiny` ({shape}): acceptance "
                  "is meaningless, the figures measure overhead only")
    short_model = "random tiny checkpoint"
else:
    title = ""
    readme = f"{model}/README.md"
    if os.path.exists(readme):
        title = open(readme).readline().strip().lstrip("# ").strip()
    checkpoint = f"`{rel_model}` ({shape})" + (f": {title}" if title else "")
    short_model = os.path.basename(model.rstrip("/"))
draft = (f"layers {e['DRAFT_LAYERS'] or 'all'}, vocabulary "
         f"{e['DRAFT_VOCAB'] if e['DRAFT_VOCAB'] != '0' else 'full'} "
         "(a shrunken view of the same checkpoint: `--draft_layers`, `--draft_vocab`)")

plain, inproc, pl, seq = (pipe[f] for f in ("plain_tps", "inproc_tps", "pipeline_tps", "sequential_tps"))
lines = []
w = lines.append
w("# Performance summary")
w("")
w(f"Written by `tests/bench/run_all.sh` on {e['DATE']}, commit `{e['COMMIT']}` ({e['TREE']}); "
  f"the run took {int(e['ELAPSED']) // 60} min {int(e['ELAPSED']) % 60} s. Every ratio below "
  "compares measurements taken side by side in this one run, on the same checkpoint; absolute "
  "tokens/s are alongside, and depend on the machine and on whatever else ran on it.")
w("")
w("```sh")
w(e["COMMAND"])
w("```")
w("")
w("## Machine")
w("")
w("| | |")
w("|---|---|")
w(f"| CPU (`lscpu` model name) | {e['CPU_MODEL'] or 'unknown'} |")
w(f"| cores (`nproc`) | {e['CORES']} |")
w(f"| memory (`free -g`) | {e['MEM_GIB']} GiB |")
w(f"| OS | {e['OS_NAME']} |")
w(f"| GPU | {e['GPU']} |")
w(f"| load average (1, 5, 15 min) | {e['LOAD_START']} at the start, {e['LOAD_END']} at the end |")
w(f"| threads | `--threads {e['THREADS']}` for the verifier, the draft and `specdec-generate`; "
  f"{e['PINNING']}; {e['OMP']} |")
w(f"| checkpoint | {checkpoint} |")
w(f"| draft | {draft} |")
w("")
w("## Single stream (`tests/bench/pipeline_bench.sh`)")
w("")
w(f"K={pipe['k']}, {pipe['tokens']} new tokens (EOS ignored), prompt \"{pipe['prompt']}\", "
  f"{pipe['runs']} run(s); each run measures the four in turn. Tokens/s count prefill + decode; "
  "tokens/s = median over runs; a ratio = median over runs of that run's ratio.")
w("")
w("| measurement | tokens/s | vs plain decoding | vs in-process speculative |")
w("|---|---:|---:|---:|")
w(f"| plain decoding, in process (`specdec-generate`) | {tps(plain)} | 1.00x | |")
w(f"| speculative, in process (`specdec-generate --speculate`) | {tps(inproc)} | "
  f"**{x(runs_ratio('inproc', 'plain'))}** | 1.00x |")
w(f"| speculative through the gRPC pipeline, overlapped rounds | {tps(pl)} | "
  f"{x(runs_ratio('pipeline', 'plain'))} | **{x(runs_ratio('pipeline', 'inproc'))}** |")
w(f"| speculative through the gRPC pipeline, sequential rounds | {tps(seq)} | "
  f"{x(runs_ratio('sequential', 'plain'))} | {x(runs_ratio('sequential', 'inproc'))} |")
w("")
w(f"Overlapped / sequential rounds: **{x(runs_ratio('pipeline', 'sequential'))}** "
  f"({100 * pipe['overlapped_fraction']:.0f}% of the overlapped run's rounds overlapped). "
  f"Per round (sequential run, {pipe['rounds']} rounds): network p50 / p99 "
  f"{ms(pipe['network_p50_ms'], 2)} / {ms(pipe['network_p99_ms'], 2)} ms, gateway "
  f"{ms(pipe['gateway_p50_ms'], 3)} / {ms(pipe['gateway_p99_ms'], 3)} ms.")
w("")
w("## Concurrent streams through the gateway (`tools/loadgen/load_bench.sh`)")
w("")
w(f"For each stream count two runs back to back, each on freshly started services (which goes "
  f"first alternates): speculative with K={k}, and K=0, the verifier alone behind the same "
  f"gateway (no draft calls). {e['DURATION']} s of load per run, prompts of 16 random token ids, "
  f"{e['MAX_NEW']} new tokens per request, greedy (random prompts: the draft's acceptance is "
  "lower than on text). Tokens/s = all streams' tokens over the run's "
  "wall time; TTFT = time to the first token; ITL = inter-token latency.")
w("")
w(f"| streams | K={k} tokens/s | K=0 tokens/s | K={k} / K=0 | TTFT p50 ms K={k} / K=0 | "
  f"ITL p50 ms K={k} / K=0 | requests ok K={k} / K=0 | errors, sessions left |")
w("|---:|---:|---:|---:|---:|---:|---:|---|")
problems = 0
for n in streams:
    s, z = load[n]["spec"], load[n]["k0"]
    bad = s["errors"] + z["errors"] + s["sessions_left"] + z["sessions_left"]
    problems += bad
    w(f"| {n} | {tps(s['tokens_per_s'])} | {tps(z['tokens_per_s'])} | "
      f"**{x(ratio(s['tokens_per_s'], z['tokens_per_s']))}** | "
      f"{ms(s['ttft_p50_ms'])} / {ms(z['ttft_p50_ms'])} | {ms(s['itl_p50_ms'], 2)} / "
      f"{ms(z['itl_p50_ms'], 2)} | {s['ok']} / {z['ok']} | "
      + ("none" if not bad else f"**errors {s['errors']} / {z['errors']}, sessions left "
         f"{s['sessions_left']} / {z['sessions_left']}**") + " |")
w("")
if problems:
    w("**Some load runs had errors or left sessions open** (see the raw output below); their "
      "tokens/s count only the tokens that arrived.")
    w("")
w("![tokens/s: single stream and concurrent streams](summary.png)")
w("")
def section(title, path):
    if os.path.exists(path):
        w(title)
        w("")
        w(("\n" + open(path).read()).replace("\n## ", "\n### ").strip())
        w("")
section("## Equal CPU budget: the three services against plain decoding (`tests/bench/services_bench.sh`)",
        f"{work}/services.md")
section("## The CPU engine (`tests/bench/decode_bench`, random Pythia-70M shape)", f"{work}/decode.md")
section("## Other engines on the same machine (`tests/bench/anchors/anchors_bench.py`)", f"{work}/anchors.md")
w("## Raw output")
w("")
w("```")
w("\n".join(l for l in open(f"{work}/pipeline.log").read().splitlines()
            if not re.match(r"\d{4}-\d\d-\d\dT", l)))  # not the runtime's log lines
for n in streams:
    for kk in (k, 0):
        text = open(f"{work}/load.k{kk}.n{n}.log").read()
        w(f"## {n} stream(s), K={kk}")
        w("\n".join(l for l in text.splitlines() if not l.startswith(("{", "#"))).rstrip())
w("```")
open(f"{out}/summary.md", "w").write("\n".join(lines) + "\n")

note = (f"{e['CPU_MODEL'] or 'CPU'}, {e['CORES']} cores, --threads {e['THREADS']}; {short_model}; "
        f"draft layers {e['DRAFT_LAYERS'] or 'all'}, vocab {e['DRAFT_VOCAB']}; {e['DATE']}, "
        f"commit {e['COMMIT']}")
chart = {"width": 960, "panels": [
    {"title": f"Single stream, K={pipe['k']}: tokens/s (median of {pipe['runs']} "
              f"run{'s' if pipe['runs'] != 1 else ''})",
     "ylabel": "tokens/s",
     "groups": ["plain decoding", "speculative in process", "pipeline, overlapped rounds",
                "pipeline, sequential rounds"],
     "series": [{"name": f"{short_model}, {pipe['tokens']} tokens", "values": [plain, inproc, pl, seq]}],
     "note": note},
    {"title": f"Concurrent streams through the gateway: tokens/s",
     "ylabel": "tokens/s",
     "groups": [f"{n} stream" + ("s" if n != "1" else "") for n in streams],
     "series": [{"name": f"speculative K={k}", "values": [load[n]["spec"]["tokens_per_s"] for n in streams]},
                {"name": "K=0 (verifier alone)", "values": [load[n]["k0"]["tokens_per_s"] for n in streams]}],
     "note": f"{e['DURATION']} s per run, {e['MAX_NEW']} tokens per request, random 16-id prompts"},
]}
json.dump(chart, open(f"{work}/chart.json", "w"))
PY
python3 tests/bench/plot_png.py "$WORK/chart.json" "$OUT_DIR/summary.png"
echo "wrote $(rel "$OUT_DIR/summary.md") and $(rel "$OUT_DIR/summary.png") (${ELAPSED}s)"
if [ "$LOAD_ERRORS" -gt 0 ]; then
  echo "run_all: $LOAD_ERRORS load run(s) reported errors or sessions left open (see the summary)" >&2
  exit 1
fi
