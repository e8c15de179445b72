#!/usr/bin/env python3
"""Hugging Face transformers' own greedy generate on a GPT-NeoX checkpoint, timed the way
tests/gpu/gpu_bench times ours (same prompts, same token counts, EOS ignored, one warm-up run,
median of --runs), for tests/gpu/run.sh's side-by-side table. Exits 1 when anything fails; it
never prints a number it did not measure.

Usage: hf_bench.py --model_dir DIR [--device cuda] [--dtype f32] [--attn eager,sdpa]
                   [--batches 1,8,64] [--prompt_len 32] [--new_tokens 128] [--runs 3] [--json F]
Prompts: sequence b's token j is (1000 + 37 * j + 101 * b) mod vocab_size (gpu_bench.cc too).
"""
import argparse
import json
import statistics
import sys
import time

DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model_dir", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    ap.add_argument("--attn", default="eager,sdpa")
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--prompt_len", type=int, default=32)
    ap.add_argument("--new_tokens", type=int, default=128)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tf32", action="store_true", help="allow TF32 for f32 products")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("hf_bench: --device %s but torch sees no GPU" % args.device)
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    torch.backends.cudnn.allow_tf32 = args.tf32
    dtype = getattr(torch, DTYPES[args.dtype])
    batches = [int(b) for b in args.batches.split(",")]
    report = {
        "engine": "transformers",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "device": args.device,
        "gpu": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "",
        "dtype": args.dtype,
        "prompt_len": args.prompt_len,
        "new_tokens": args.new_tokens,
        "results": [],
    }

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    for attn in args.attn.split(","):
        model = AutoModelForCausalLM.from_pretrained(
            args.model_dir, dtype=dtype, attn_implementation=attn).to(args.device).eval()
        config = model.config
        # Generate exactly new_tokens (our side ignores EOS too) and pad with a real id.
        model.generation_config.eos_token_id = None
        model.generation_config.pad_token_id = 0
        single = None
        for batch in batches:
            ids = torch.tensor(
                [[(1000 + 37 * j + 101 * b) % config.vocab_size for j in range(args.prompt_len)]
                 for b in range(batch)], dtype=torch.long, device=args.device)
            mask = torch.ones_like(ids)
            seconds = []
            out = None
            for run in range(args.runs + 1):  # run 0 warms up
                sync()
                start = time.perf_counter()
                with torch.inference_mode():
                    out = model.generate(input_ids=ids, attention_mask=mask, do_sample=False,
                                         max_new_tokens=args.new_tokens,
                                         min_new_tokens=args.new_tokens, use_cache=True)
                sync()
                if run > 0:
                    seconds.append(time.perf_counter() - start)
            new = out[:, args.prompt_len:].tolist()
            if any(len(row) != args.new_tokens for row in new):
                sys.exit("hf_bench: generate returned %s new tokens, not %d"
                         % (sorted({len(r) for r in new}), args.new_tokens))
            if batch == 1:
                single = new[0]
            median = statistics.median(seconds)
            row = {
                "mode": "hf_" + attn,
                "attn": attn,
                "batch": batch,
                "seconds": seconds,
                "tokens_per_s": batch * args.new_tokens / median,
                "tokens_seq0": new[0],
                "seq0_equals_single_plain": single is not None and new[0] == single,
            }
            report["results"].append(row)
            print("hf %-5s batch %3d: %9.1f tokens/s (median of %d, %s)"
                  % (attn, batch, row["tokens_per_s"], args.runs, args.device), flush=True)
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
