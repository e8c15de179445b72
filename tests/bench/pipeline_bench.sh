#!/usr/bin/env bash
# Tokens/s through the gRPC pipeline (gateway + draft + verifier on loopback) vs the in-process
# speculative generator vs plain decoding, same checkpoint, same run; per-round network and
# gateway overhead (p50, p99) from the round records.
# Usage: tests/bench/pipeline_bench.sh [BUILD_DIR] [MODEL_DIR]
#   env: K (4), TOKENS (128), DRAFT_LAYERS ("0"), DRAFT_VOCAB (0), THREADS (1), PROMPT, RUNS (3),
#        VERIFIER_CPUS / DRAFT_CPUS (--cpus of each service; empty: not pinned),
#        JSON_OUT (a file: also write the medians and each run's figures there as JSON)
# Without MODEL_DIR a random tiny checkpoint is written (numbers then say nothing about
# acceptance, only about overhead).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
MODEL=${2:-}
K=${K:-4}
TOKENS=${TOKENS:-128}
DRAFT_LAYERS=${DRAFT_LAYERS:-0}
DRAFT_VOCAB=${DRAFT_VOCAB:-0}
THREADS=${THREADS:-1}
RUNS=${RUNS:-3}
VERIFIER_PIN=${VERIFIER_CPUS:+--cpus=$VERIFIER_CPUS}
DRAFT_PIN=${DRAFT_CPUS:+--cpus=$DRAFT_CPUS}
PROMPT=${PROMPT:-"The history of speculative decoding begins with"}
JSON_OUT=${JSON_OUT:-}
. tests/bench/lib.sh
bench_work pipeline

if [ -z "$MODEL" ]; then
  MODEL=$WORK/model
  "$BUILD/tools/make_model/specdec-make-model" --preset tiny --out "$MODEL" >/dev/null
fi
V=127.0.0.1:$(port); D=127.0.0.1:$(port); G=127.0.0.1:$(port)
"$BUILD/services/verifier/specdec-verifier" --model_dir "$MODEL" --listen "$V" --threads "$THREADS" \
  $VERIFIER_PIN >"$WORK/verifier.log" 2>&1 & PIDS+=($!); VPID=$!
"$BUILD/services/draft/specdec-draft" --model_dir "$MODEL" --listen "$D" --threads "$THREADS" \
  --draft_layers "$DRAFT_LAYERS" --draft_vocab "$DRAFT_VOCAB" $DRAFT_PIN >"$WORK/draft.log" 2>&1 & PIDS+=($!); DPID=$!
"$BUILD/services/gateway/specdec-gateway" --model_dir "$MODEL" --listen "$G" --verifier "$V" \
  --draft "$D" --draft_deadline_ms 10000 >"$WORK/gateway.log" 2>&1 & PIDS+=($!); GPID=$!
wait_serving "$V" "$VPID" verifier; wait_serving "$D" "$DPID" draft; wait_serving "$G" "$GPID" gateway

GEN="$BUILD/tools/generate/specdec-generate --model_dir $MODEL --threads $THREADS --ignore_eos --json"
CLIENT="$BUILD/services/client/specdec generate --server $G --max_new_tokens $TOKENS --k $K --rounds"
"$BUILD/services/client/specdec" generate --server "$G" --max_new_tokens 8 --k "$K" "$PROMPT" \
  >/dev/null 2>"$WORK/warmup.log" || { tail -n 5 "$WORK"/*.log >&2; exit 1; }  # warm-up
for run in $(seq "$RUNS"); do
  $GEN --prompt "$PROMPT" --max_new_tokens "$TOKENS" >"$WORK/plain.$run.json"
  $GEN --prompt "$PROMPT" --max_new_tokens "$TOKENS" --speculate --k "$K" \
    --draft_layers "$DRAFT_LAYERS" --draft_vocab "$DRAFT_VOCAB" >"$WORK/inproc.$run.json"
  $CLIENT "$PROMPT" >/dev/null 2>"$WORK/pipeline.$run.txt"
  $CLIENT --sequential "$PROMPT" >/dev/null 2>"$WORK/sequential.$run.txt"
done

python3 - "$WORK" "$RUNS" "$K" "$TOKENS" "$JSON_OUT" "$DRAFT_LAYERS" "$DRAFT_VOCAB" "$THREADS" \
  "$PROMPT" <<'PY'
import json, re, statistics, sys
work, runs, k, tokens = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
json_out, draft_layers, draft_vocab, threads, prompt = sys.argv[5:10]
# Generated tokens over prefill + decode time: the pipeline's figure (the client's) also counts
# from the request to the last token, so both include the prompt's prefill.
def tps(kind):
    out = []
    for r in range(1, runs + 1):
        d = json.load(open(f"{work}/{kind}.{r}.json"))
        out.append(len(d["ids"]) * 1000.0 / (d["prefill_ms"] + d["decode_ms"]))
    return out
def client(kind):
    tps, net, gw, overlapped, rounds = [], [], [], 0, 0
    global accepted, drafted
    for r in range(1, runs + 1):
        text = open(f"{work}/{kind}.{r}.txt").read()
        if kind == "sequential":
            m = re.search(r"(\d+)/(\d+) drafts accepted", text)
            accepted, drafted = accepted + int(m.group(1)), drafted + int(m.group(2))
        tps.append(float(re.search(r"([\d.]+) tokens/s\]", text).group(1)))
        net += [float(x) for x in re.findall(r"network=([\d.]+)ms", text)]
        gw += [float(x) for x in re.findall(r"gateway=([\d.]+)ms", text)]
        overlapped += len(re.findall(r"ms overlapped", text))
        rounds += len(re.findall(r"\[round ", text))
    return tps, net, gw, overlapped / max(rounds, 1)
accepted = drafted = 0
pipeline_runs, net, gw, overlapped = client("pipeline")
sequential_runs, seq_net, seq_gw, _ = client("sequential")
pipeline, sequential = statistics.median(pipeline_runs), statistics.median(sequential_runs)
def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")
plain_runs, inproc_runs = tps("plain"), tps("inproc")
plain, inproc = statistics.median(plain_runs), statistics.median(inproc_runs)
acceptance = accepted / max(drafted, 1)
print(f"K={k} tokens={tokens} runs={runs} (medians); draft acceptance {100 * acceptance:.0f}% "
      f"({accepted}/{drafted})")
print(f"  plain decoding        {plain:8.1f} tokens/s")
print(f"  in-process speculative{inproc:8.1f} tokens/s")
print(f"  gRPC pipeline         {pipeline:8.1f} tokens/s  ({100 * pipeline / inproc:.0f}% of in-process; goal >= 90%; "
      f"{100 * overlapped:.0f}% of rounds overlapped)")
print(f"  pipeline, sequential  {sequential:8.1f} tokens/s  ({100 * sequential / inproc:.0f}% of in-process; "
      f"overlap gains {pipeline / sequential:.2f}x)")
print(f"  per round (sequential): network p50 {pct(seq_net, 50):.2f} ms p99 {pct(seq_net, 99):.2f} ms; "
      f"gateway p50 {pct(seq_gw, 50):.3f} ms p99 {pct(seq_gw, 99):.3f} ms ({len(seq_net)} rounds)")
if json_out:
    def pct(xs, p, pct=pct):  # JSON has no NaN: null where there were no rounds
        return pct(xs, p) if xs else None
    with open(json_out, "w") as f:
        json.dump({
            "k": int(k), "tokens": int(tokens), "runs": runs, "threads": int(threads),
            "draft_layers": draft_layers, "draft_vocab": int(draft_vocab), "prompt": prompt,
            "plain_tps": plain, "inproc_tps": inproc, "pipeline_tps": pipeline,
            "sequential_tps": sequential, "overlapped_fraction": overlapped,
            "acceptance": acceptance,
            "network_p50_ms": pct(seq_net, 50), "network_p99_ms": pct(seq_net, 99),
            "gateway_p50_ms": pct(seq_gw, 50), "gateway_p99_ms": pct(seq_gw, 99),
            "rounds": len(seq_net),
            "pipeline_network_p50_ms": pct(net, 50), "pipeline_network_p99_ms": pct(net, 99),
            # each run's figures (runs interleave the four, so per-run ratios are side by side)
            "per_run": {"plain": plain_runs, "inproc": inproc_runs, "pipeline": pipeline_runs,
                        "sequential": sequential_runs},
        }, f, indent=1)
        f.write("\n")
PY
