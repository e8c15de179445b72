# Encode throughput, single thread: HF tokenizers (PyPI, the Python binding of the Rust library)
# and specdec's tokenizer_bench on the same corpus, written as markdown table rows.
# Usage: tokenize_throughput.py --tokenizer FILE --bench BIN --out corpus.jsonl [--mb 4]
# Run it with the test venv's python (tests/python/setup_venv.sh); see tokenize_throughput.sh.
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one thread for the reference too
from tokenizers import Tokenizer  # noqa: E402
import tokenizers  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--tokenizer", required=True)
p.add_argument("--bench", required=True, help="tokenizer_bench binary")
p.add_argument("--out", required=True, help="where the corpus (JSON lines) is written")
p.add_argument("--mb", type=float, default=4)
p.add_argument("--repeats", type=int, default=3)
args = p.parse_args()
target = args.mb * 1e6

# Corpus: English prose (Debian copyright/README files), source code and markdown from this
# repository, and multilingual text from the tokenizer fixture; files in sorted order, so the
# same machine always builds the same corpus.
def list_files(directory, accept):
    out = []
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and
                             not d.startswith("build") and d != "node_modules")
        out.extend(os.path.join(dirpath, f) for f in sorted(filenames) if accept(os.path.join(dirpath, f)))
    return out


repo = Path(__file__).resolve().parents[2]
docs = []
total_bytes = 0


def add_files(files, budget):
    global total_bytes
    used = 0
    for f in files:
        if used >= budget:
            break
        try:
            text = Path(f).read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        if "\ufffd" in text or not text:  # binary or not UTF-8
            continue
        for i in range(0, len(text), 16384):
            if used >= budget:
                break
            chunk = text[i:i + 16384]
            docs.append(chunk)
            n = len(chunk.encode("utf-8"))
            used += n
            total_bytes += n


add_files(list_files(repo, lambda f: f.endswith((".md", ".cc", ".h", ".txt", ".proto", ".py", ".js", ".sh"))
                     and "/assets/" not in f), target * 0.25)
fixture = "\n".join(json.loads(l)["text"] for l in
                    (repo / "tests/data/tokenizer/gpt-neox-20b.jsonl").read_text().split("\n") if l)
while total_bytes < target * 0.35:
    docs.append(fixture)
    total_bytes += len(fixture.encode("utf-8"))
add_files(list_files("/usr/share/doc", lambda f: not f.endswith(".gz") and
                     (os.path.basename(f) == "copyright" or os.path.basename(f).startswith("README")
                      or f.endswith((".md", ".txt")))), target - total_bytes)
Path(args.out).write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in docs))

hf = Tokenizer.from_file(args.tokenizer)
best, first, tokens, checksum = float("inf"), 0.0, 0, 0
for r in range(args.repeats):
    start = time.perf_counter()
    ids = [hf.encode(d).ids for d in docs]
    seconds = time.perf_counter() - start
    if r == 0:
        first = seconds
        for id_list in ids:
            for i in id_list:
                checksum = (checksum * 1000003 + i) & 0xFFFFFFFFFFFFFFFF
    tokens = sum(len(x) for x in ids)
    best = min(best, seconds)

ours = json.loads(subprocess.run([args.bench, args.tokenizer, args.out, str(args.repeats)],
                                 capture_output=True, text=True, check=True).stdout)
same = ours["checksum"] == str(checksum) and ours["tokens"] == tokens
mb = total_bytes / 1e6
print(f"corpus: {len(docs)} documents, {mb:.2f} MB, {tokens} tokens; "
      f"ids identical: {'yes' if same else 'NO'}")
print(f"| implementation | first pass MB/s | best of {args.repeats} MB/s | tokens/s (best) |")
print("| --- | ---: | ---: | ---: |")
print(f"| HF tokenizers {tokenizers.__version__} (PyPI, Rust) | {mb / first:.2f} | {mb / best:.2f} | "
      f"{tokens / best / 1e6:.2f} M |")
print(f"| specdec_tokenizer | {ours['first_pass_mb_s']:.2f} | {ours['best_mb_s']:.2f} | "
      f"{ours['tokens'] / ours['best_s'] / 1e6:.2f} M |")
sys.exit(0 if same else 1)
