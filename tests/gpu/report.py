#!/usr/bin/env python3
"""Writes tests/gpu/run.sh's gpu.md from gpu_bench's and hf_bench.py's JSON files and the
GoogleTest JSON of the device tests. Standard library only. Exits 1 when an input is missing or
malformed: the report holds only numbers that were measured in this run."""
import argparse
import glob
import json
import os
import sys


def load(path):
    with open(path) as f:
        return json.load(f)


def common_prefix(a, b):
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--gpu", required=True)
    ap.add_argument("--torch", required=True)
    ap.add_argument("--transformers", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--tests", required=True, help="folder of GoogleTest JSON files")
    ap.add_argument("--device", required=True)
    ap.add_argument("results", nargs="+", help="pairs: ours.json hf.json")
    args = ap.parse_args()
    if len(args.results) % 2:
        sys.exit("report.py: results come in pairs (ours, hf)")

    lines = []
    w = lines.append
    w("# GPU check (tests/gpu/run.sh)")
    w("")
    if args.device != "cuda":
        w("**Run with --cpu: the script's own check on a machine without a GPU. No number here "
          "is a GPU number.**")
        w("")
    w("| | |")
    w("|---|---|")
    w("| GPU (nvidia-smi) | %s |" % args.gpu)
    w("| device measured | %s |" % args.device)
    w("| torch | %s |" % args.torch)
    w("| transformers | %s |" % args.transformers)
    w("| commit | %s |" % args.commit)
    w("")
    w("## Device tests")
    w("")
    w("| binary | tests | passed | failed | skipped |")
    w("|---|---:|---:|---:|---:|")
    files = sorted(glob.glob(os.path.join(args.tests, "*.json")))
    if not files:
        sys.exit("report.py: no GoogleTest JSON in %s" % args.tests)
    for path in files:
        d = load(path)
        cases = [c for s in d["testsuites"] for c in s["testsuite"]]
        failed = sum(1 for c in cases if c.get("failures"))
        skipped = sum(1 for c in cases if c.get("result") == "SKIPPED")
        w("| %s | %d | %d | %d | %d |" % (os.path.basename(path)[:-5], len(cases),
                                          len(cases) - failed - skipped, failed, skipped))
    w("")
    w("Test names: %s." % ", ".join(sorted(
        "%s.%s" % (s["name"], c["name"]) for path in files for s in load(path)["testsuites"]
        for c in s["testsuite"])))
    w("")

    w("## Decoding throughput, side by side")
    w("")
    w("Greedy, EOS ignored, every sequence generates the same number of tokens; tokens/s = "
      "sequences x new tokens / wall time of the whole generation (prefill included), median "
      "of the timed runs after one warm-up. Ours: `plain` (one forward per token; batches as "
      "one `Sequence::ForwardBatch` per step) and `speculative` (draft view of the same "
      "checkpoint, K draft tokens per round, one batched verification). Hugging Face: "
      "`model.generate` with eager or sdpa attention, the same dtype.")
    for i in range(0, len(args.results), 2):
        ours, hf = load(args.results[i]), load(args.results[i + 1])
        if ours["new_tokens"] != hf["new_tokens"] or ours["prompt_len"] != hf["prompt_len"]:
            sys.exit("report.py: %s and %s measured different lengths" % tuple(args.results[i:i + 2]))
        w("")
        w("### %s, %s" % (os.path.basename(ours["model_dir"].rstrip("/")), ours["dtype"]))
        w("")
        w("Ours on %s (%s); draft %s, K=%d; prompt %d tokens, %d new tokens per sequence." % (
            ours["device"], ours["runs_on"], ours["draft"], ours["k"], ours["prompt_len"],
            ours["new_tokens"]))
        w("")
        rows = ours["results"] + hf["results"]
        batches = sorted({r["batch"] for r in rows})
        modes = []
        for r in rows:
            if r["mode"] not in modes:
                modes.append(r["mode"])
        by = {(r["mode"], r["batch"]): r for r in rows}
        w("| batch | " + " | ".join("%s tokens/s" % m for m in modes) +
          " | plain / hf_sdpa | speculative / hf_sdpa |")
        w("|---:|" + "---:|" * (len(modes) + 2))
        for b in batches:
            cells = []
            for m in modes:
                r = by.get((m, b))
                if r is None:
                    cells.append("-")
                else:
                    extra = ""
                    if "mean_accepted" in r:
                        extra = " (%.2f acc/round; %d/%d seqs = plain)" % (
                            r["mean_accepted"], r["sequences_equal_plain"], r["batch"])
                    cells.append("%.1f%s" % (r["tokens_per_s"], extra))
            ratio = []
            for m in ("plain", "speculative"):
                r, h = by.get((m, b)), by.get(("hf_sdpa", b))
                ratio.append("%.2fx" % (r["tokens_per_s"] / h["tokens_per_s"]) if r and h else "-")
            w("| %d | %s | %s |" % (b, " | ".join(cells), " | ".join(ratio)))
        ref = by.get(("hf_eager", 1)) or by.get(("hf_sdpa", 1))
        mine = by.get(("plain", 1))
        if ref and mine:
            same = common_prefix(mine["tokens_seq0"], ref["tokens_seq0"])
            w("")
            w("Greedy tokens of sequence 0, ours (plain, one stream) against %s (one stream): "
              "the first %d of %d identical." % (ref["mode"], same, len(ref["tokens_seq0"])))
        diverged = ["%s batch %d" % (r["mode"], r["batch"]) for r in rows
                    if not r.get("seq0_equals_single_plain")]
        if diverged:
            w("")
            w("Sequence 0's tokens differ from its own one-stream plain run in: %s (float "
              "rounding of products over other row counts can flip a near-tie)." %
              ", ".join(diverged))
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
