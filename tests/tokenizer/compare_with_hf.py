# Differential test: specdec-tokenize against Hugging Face tokenizers (PyPI `tokenizers`, the
# Rust library's official Python binding) on thousands of generated strings and id sequences:
# the same ids for every string, the same text for every id list. Also times both on the same
# strings (printed, never asserted).
# Usage: compare_with_hf.py --bin specdec-tokenize [--tokenizer FILE] [--count N] [--seed S...]
# Run it with the test venv's python (tests/python/setup_venv.sh); exits 77 without `tokenizers`.
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SKIP = 77
REPO = Path(__file__).resolve().parents[2]
MASK = 0xFFFFFFFF


def parse_args():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bin", required=True, help="specdec-tokenize binary")
    p.add_argument("--tokenizer", default=str(REPO / "assets" / "gpt-neox-20b" / "tokenizer.json"))
    p.add_argument("--count", type=int, default=5000, help="strings per seed")
    p.add_argument("--seed", type=int, nargs="+", default=[1, 2, 3], help="PRNG seeds")
    return p.parse_args()


def imul(a, b):
    """JavaScript's Math.imul: 32-bit multiplication, as an unsigned result."""
    return (a * b) & MASK


class Rng:
    """mulberry32: a small seeded PRNG so failures reproduce with the same --seed."""

    def __init__(self, seed):
        self.a = seed & MASK

    def __call__(self):
        self.a = (self.a + 0x6D2B79F5) & MASK
        t = self.a
        t = imul(t ^ (t >> 15), t | 1)
        t ^= (t + imul(t ^ (t >> 7), t | 61)) & MASK
        return ((t ^ (t >> 14)) & MASK) / 4294967296

    def int(self, n):
        return int(self() * n)

    def pick(self, xs):
        return xs[self.int(len(xs))]


# Blocks from many scripts, plus marks and symbols, including characters newer than Unicode 9
# (the reference's NFC tables) and Unicode 16 letters (its regex tables).
SCRIPT_RANGES = [
    (0x41, 0x5A), (0x61, 0x7A), (0xC0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x531, 0x58F),
    (0x5D0, 0x5EA), (0x600, 0x6FF), (0x750, 0x77F), (0x7C0, 0x7FF), (0x860, 0x8FF), (0x900, 0x97F),
    (0x980, 0x9FF), (0xB80, 0xBFF), (0xC00, 0xD7F), (0xE00, 0xE7F), (0xF00, 0xFFF),
    (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1200, 0x137F), (0x13A0, 0x13FF), (0x1780, 0x17FF),
    (0x1AB0, 0x1AFF), (0x1C80, 0x1CBF), (0x1DC0, 0x1DFF), (0x1E00, 0x1FFF), (0x2000, 0x206F),
    (0x20A0, 0x20FF), (0x2100, 0x21FF), (0x2460, 0x24FF), (0x2500, 0x27BF), (0x3000, 0x30FF),
    (0x3130, 0x318F), (0x4E00, 0x9FFF), (0xA640, 0xA69F), (0xA7C0, 0xA7FF), (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF), (0xFB00, 0xFB4F), (0xFE00, 0xFE0F), (0xFE70, 0xFEFF), (0xFF00, 0xFFEF),
    (0x10000, 0x100FF), (0x105C0, 0x105FF), (0x10D00, 0x10D8F), (0x10EC0, 0x10EFF),
    (0x10F30, 0x10F8F), (0x11000, 0x1107F), (0x11100, 0x1114F), (0x11900, 0x1195F),
    (0x11F00, 0x11F5F), (0x16100, 0x1613F), (0x16D40, 0x16D7F), (0x1D400, 0x1D7FF),
    (0x1E000, 0x1E02F), (0x1E4D0, 0x1E4FF), (0x1E900, 0x1E95F), (0x1F300, 0x1FAFF),
    (0x20000, 0x2A6DF), (0x31350, 0x323AF), (0xE0000, 0xE007F),
]
MARK_RANGES = [
    (0x300, 0x36F), (0x483, 0x489), (0x591, 0x5C7), (0x610, 0x61A), (0x64B, 0x65F), (0x7EB, 0x7FD),
    (0x898, 0x89F), (0x8CA, 0x8FF), (0x93C, 0x94D), (0x9BC, 0x9FE), (0xC3C, 0xC4D), (0xD3B, 0xD4D),
    (0xE31, 0xE4E), (0x1AB0, 0x1ACE), (0x1DC0, 0x1DFF), (0x20D0, 0x20F0), (0x3099, 0x309A),
    (0xFE20, 0xFE2F), (0x10D24, 0x10D27), (0x10F46, 0x10F50), (0x11930, 0x11943),
    (0x1D165, 0x1D1AD), (0x1E8D0, 0x1E8D6), (0x1E944, 0x1E94A), (0x0345, 0x0345),
]
SPACES = [" ", " ", " ", " ", "\t", "\n", "\r\n", "\r", "\u000b", "\u000c", "\u0085",
          "\u00a0", "\u1680", "\u2000", "\u2007", "\u200a", "\u2028", "\u2029", "\u202f", "\u205f",
          "\u3000", "\u200b", "\ufeff", "\u180e"]
WORDS = ["the", "The", "hello", "world", "token", "GPT", "NeoX", "café", "naïve", "Straße",
         "über", "don", "isn", "you", "I", "a", "x", "über", "ÅNGSTRÖM", "ﬁ", "Ⅻ", "½", "٣", "߀"]
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M",
                "'LL", "'D", "'", "''", "'x", "’s"]
CODE = ["def", "return", "(", ")", "{", "}", "[", "]", ";", "->", "=>", "==", "!=", "&&",
        "||", "::", "<<", ">>", "/*", "*/", "//", "#include", "<stdio.h>", "0x1F", '"str"', "'c'",
        "\\n", "\\", "`", "${x}", "    ", "\t", "\n", "std::vector<int>", "fn main()", "@decorator"]
SPECIAL = ["<|endoftext|>", "<|padding|>", "<|endoftext", "|>", "<|", "<|prompt|>",
           "<|endoftext|><|endoftext|>", "<|ENDOFTEXT|>"]
EMOJI = ["👋", "🌍", "😀", "👨\u200d👩\u200d👧\u200d👦", "👍🏽", "1\ufe0f\u20e3", "❤\ufe0f",
         "🇺🇸", "🏳️‍🌈", "🤣", "\U0001FAE8", "\U0001F9D1\u200d\U0001F4BB"]
MARK_BASES = list("aeiouAEOnNcCsSzZ") + ["ᄀ", "가", "क", "ا", "α", "ω", "\U00011935", "x"]


class Generator:
    """The differential test's strings: random code points over all planes, lossily decoded
    random bytes, whitespace soup, contractions, code, digits, emoji, combining marks and
    <|endoftext|>-like text."""

    def __init__(self, rng):
        self.r = rng
        self.parts = [
            lambda: self.r.pick(WORDS), lambda: " " + self.r.pick(WORDS), self.space_run,
            self.space_run, self.digits, lambda: self.r.pick(CONTRACTIONS),
            lambda: self.r.pick(CODE), lambda: self.r.pick(SPECIAL), lambda: self.r.pick(EMOJI),
            lambda: self.script_text(1 + self.r.int(8)), self.any_code_point, self.with_marks,
            self.lossy_bytes, lambda: self.r.pick([".", ",", "!", "?", "-", '"', "…"]),
        ]

    def from_range(self, lo_hi):
        lo, hi = lo_hi
        return chr(lo + self.r.int(hi - lo + 1))

    def digits(self):
        return "".join(str(self.r.int(10)) for _ in range(1 + self.r.int(25)))

    def space_run(self):
        n = 1 + self.r.int(60 if self.r() < 0.2 else 4)
        return "".join(" " if self.r() < 0.6 else self.r.pick(SPACES) for _ in range(n))

    def script_text(self, n):
        return "".join(self.from_range(self.r.pick(SCRIPT_RANGES)) for _ in range(n))

    def any_code_point(self):
        while True:
            plane = 0 if self.r() < 0.7 else self.r.int(17)
            c = plane * 0x10000 + self.r.int(0x10000)
            if c < 0xD800 or c > 0xDFFF:
                return chr(c)

    def with_marks(self):
        s = self.r.pick(MARK_BASES)
        for _ in range(self.r.int(6)):
            s += "\U00011930" if self.r() < 0.15 else self.from_range(self.r.pick(MARK_RANGES))
        return s

    def lossy_bytes(self):
        n = 1 + self.r.int(40)
        data = bytes(0x20 + self.r.int(0x60) if self.r() < 0.5 else self.r.int(256)
                     for _ in range(n))
        return data.decode("utf-8", errors="replace")

    def __call__(self, i):
        kind = i % 8
        if kind == 0:  # pure random code points over all planes
            n = 1 + self.r.int(30)
            return "".join(self.r.pick(SPACES) if self.r() < 0.3 else self.any_code_point()
                           for _ in range(n))
        if kind == 1:
            return self.lossy_bytes()
        if kind == 2:  # whitespace soup
            n = 1 + self.r.int(12)
            return "".join(self.space_run() if self.r() < 0.5 else self.r.pick(WORDS)
                           for _ in range(n))
        if kind == 3:  # combining marks and composition
            n = 1 + self.r.int(8)
            return "".join(self.with_marks() + (" " if self.r() < 0.3 else "") for _ in range(n))
        n = 1 + self.r.int(80 if kind == 7 else 20)
        parts = [self.r.pick(self.parts)() for _ in range(n)]
        return ("" if self.r() < 0.5 else " ").join(parts)


def run_ours(binary, tokenizer, lines, decode):
    """Runs specdec-tokenize over JSON lines; returns (answers, wall seconds)."""
    cmd = [binary, "--tokenizer", tokenizer] + (["--decode"] if decode else [])
    start = time.perf_counter()
    r = subprocess.run(cmd, input=("\n".join(lines) + "\n").encode("utf-8"), capture_output=True)
    seconds = time.perf_counter() - start
    if r.stderr:
        sys.stderr.write(r.stderr.decode("utf-8", errors="replace")[:2000])
    # Not splitlines(): U+2028, U+0085... inside the JSON strings are not line ends.
    out = [json.loads(l) for l in r.stdout.decode("utf-8").split("\n") if l]
    if len(out) != len(lines):
        raise RuntimeError(f"specdec-tokenize answered {len(out)} of {len(lines)} lines "
                           f"(exit {r.returncode})")
    return out, seconds


def escape(s):
    return json.dumps(s, ensure_ascii=True)


def rate(tokens, seconds):
    return f"{tokens / seconds / 1e6:.2f} M tokens/s" if seconds > 0 else "-"


def compare(args, hf, seed, load_seconds):
    rng = Rng(seed)
    gen = Generator(rng)
    vocab_size = hf.get_vocab_size(with_added_tokens=True)
    mismatches = 0

    def report(what, shown, want, got):
        nonlocal mismatches
        mismatches += 1
        if mismatches <= 20:
            print(f"MISMATCH {what}\n  input: {shown}\n  hf:    {want}\n  ours:  {got}")

    # Encode.
    texts = [gen(i) for i in range(args.count)]
    ours, ours_seconds = run_ours(args.bin, args.tokenizer,
                                  [json.dumps({"text": t}, ensure_ascii=False) for t in texts],
                                  decode=False)
    start = time.perf_counter()
    wants = [hf.encode(t).ids for t in texts]
    hf_seconds = time.perf_counter() - start
    tokens = 0
    for text, want, got in zip(texts, wants, ours):
        tokens += len(want)
        if want != got.get("ids"):
            report("encode", escape(text), json.dumps(want), json.dumps(got.get("ids")))

    # Decode: random ids (many of them byte tokens that cut characters) and special tokens.
    id_lists = []
    for _ in range(max(200, args.count // 5)):
        ids = []
        for _ in range(rng.int(12)):
            r = rng()
            ids.append(rng.int(256) if r < 0.3 else
                       rng.pick([0, 1, 50254, 50270, 50276]) if r < 0.4 else rng.int(vocab_size))
        id_lists.append(ids)
    decoded, _ = run_ours(args.bin, args.tokenizer, [json.dumps({"ids": ids}) for ids in id_lists],
                          decode=True)
    for ids, got in zip(id_lists, decoded):
        want = hf.decode(ids, skip_special_tokens=False)
        if want != got.get("text"):
            report("decode", json.dumps(ids), escape(want), escape(got.get("text")))

    print(f"seed {seed}: {len(texts)} texts ({tokens} tokens), {len(id_lists)} id lists, "
          f"{mismatches} mismatches")
    # Timing, one thread each, the same strings. Ours is the whole process (start, loading
    # tokenizer.json, JSON in and out), so the load alone is measured and taken off too.
    print(f"  time: HF tokenizers {hf_seconds * 1e3:.0f} ms encode ({rate(tokens, hf_seconds)}); "
          f"specdec-tokenize {ours_seconds * 1e3:.0f} ms whole process "
          f"({rate(tokens, ours_seconds)}), {max(ours_seconds - load_seconds, 0) * 1e3:.0f} ms "
          f"without its {load_seconds * 1e3:.0f} ms start and load "
          f"({rate(tokens, ours_seconds - load_seconds)})")
    return mismatches


def main():
    args = parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # one thread, as ours
    try:
        from tokenizers import Tokenizer
        import tokenizers
    except ImportError:
        print(f"SKIP: Python package 'tokenizers' is not installed for {sys.executable}: "
              "run tests/python/setup_venv.sh")
        return SKIP
    if not os.access(args.bin, os.X_OK):
        print(f"missing {args.bin}; build it with: cmake --build build --target specdec-tokenize",
              file=sys.stderr)
        return 2
    hf = Tokenizer.from_file(args.tokenizer)
    # Our start and tokenizer.json load, with no work: subtracted from its timings.
    _, load_seconds = run_ours(args.bin, args.tokenizer, [], decode=False)
    print(f"reference: tokenizers {tokenizers.__version__} (Python binding of the Rust library)")
    mismatches = sum(compare(args, hf, seed, load_seconds) for seed in args.seed)
    return 0 if mismatches == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
