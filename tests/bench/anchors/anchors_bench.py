#!/usr/bin/env python3
"""Greedy CPU decode speed of specdec-generate beside the engines a CPU user would pick instead:
llama.cpp (llama-cpp-python, GGUF f32/f16), CTranslate2 (float32/int8/bfloat16) and Hugging Face
transformers (f32, eager and sdpa attention), same checkpoint, prompt ids and thread count, runs
interleaved engine by engine. Writes a markdown report (tests/bench/anchors/README.md).

Run with the virtual environment's python (tests/bench/anchors/setup_venv.sh, or run.sh). Each
engine other than ours runs in its own worker process (this file with --worker), loaded once per
thread count and asked for one generation per run, so loading never counts and engines do not
share a process's thread pools.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import resource
import select
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
DEFAULT_PROMPT = "11735,757,310,247,1959,6498,985,326"
AGREE_TOKENS = 32
RUN_TIMEOUT_S = 600  # one generation of one engine
BUSY_CORES = 0.5  # others' CPU above this (in cores, worst run) puts a caveat atop the report
PAUSE_S = 0.5  # between engines: idle OpenMP / ggml threads of the previous one stop spinning
PACKAGES = ["llama_cpp_python", "ctranslate2", "transformers", "torch", "numpy", "safetensors"]


# ------------------------------------------------------------------------------------- workers
# A worker prints one JSON line when loaded ({"ready": ..., "info": ...} or {"error": ...}), then
# answers each {"cmd": "run"} line with {"ids", "prefill_s", "decode_s", "decode_steps", ...}.

class LlamaCppEngine:
    def __init__(self, spec):
        import llama_cpp
        import numpy as np
        self.np = np
        self.llama_cpp = llama_cpp
        kw = dict(model_path=spec["gguf"], n_ctx=spec["n_ctx"], n_batch=max(64, len(spec["prompt"])),
                  n_threads=spec["threads"], n_threads_batch=spec["threads"], logits_all=False,
                  seed=0, verbose=False, flash_attn=spec.get("flash_attn", False))
        if spec.get("kv") == "f32":
            kw["type_k"] = llama_cpp.GGML_TYPE_F32
            kw["type_v"] = llama_cpp.GGML_TYPE_F32
        self.llm = llama_cpp.Llama(**kw)
        self.ctx = self.llm._ctx.ctx
        self.n_vocab = self.llm.n_vocab()
        self.info = {"system_info": llama_cpp.llama_print_system_info().decode().strip(),
                     "kv": spec.get("kv", "f16")}

    def _perf(self):
        try:
            p = self.llama_cpp.llama_perf_context(self.ctx)
            return {"t_eval_ms": p.t_eval_ms, "n_eval": p.n_eval, "t_p_eval_ms": p.t_p_eval_ms,
                    "n_p_eval": p.n_p_eval}
        except Exception as e:  # an older binding without llama_perf
            return {"perf_error": repr(e)}

    def _argmax(self):
        # Llama.eval no longer keeps logits (logits_all=False): read the last row from llama.cpp.
        row = self.llama_cpp.llama_get_logits_ith(self.ctx, -1)
        return int(self.np.argmax(self.np.ctypeslib.as_array(row, shape=(self.n_vocab,))))

    def run(self, prompt, n):
        llm = self.llm
        llm.reset()  # n_tokens = 0; eval() drops the KV cells past it
        try:
            self.llama_cpp.llama_perf_context_reset(self.ctx)
        except Exception:
            pass
        t0 = time.perf_counter()
        llm.eval(prompt)
        tok = self._argmax()
        t1 = time.perf_counter()
        perf0 = self._perf()
        ids = [tok]
        for _ in range(n - 1):  # EOS ignored
            llm.eval([tok])
            tok = self._argmax()
            ids.append(tok)
        t2 = time.perf_counter()
        perf = self._perf()
        out = {"ids": ids, "prefill_s": t1 - t0, "decode_s": t2 - t1, "decode_steps": n - 1}
        if "t_eval_ms" in perf:
            out["eval_timer_s"] = (perf["t_eval_ms"] - perf0.get("t_eval_ms", 0.0)) / 1000.0
            # llama_perf reports max(1, n_eval): before the loop it says 1 even when the prompt
            # (more than one token) went through the prompt-eval counter instead.
            out["eval_timer_steps"] = perf["n_eval"] - (perf0.get("n_eval", 0) if len(prompt) == 1 else 0)
            out["prefill_timer_s"] = perf["t_p_eval_ms"] / 1000.0
        else:
            out.update(perf)
        return out


class CTranslate2Engine:
    def __init__(self, spec):
        import ctranslate2
        self.gen = ctranslate2.Generator(spec["ct2_dir"], device="cpu", compute_type=spec["compute_type"],
                                         intra_threads=spec["threads"], inter_threads=1)
        # generate_batch takes token strings: map the ids through the converted vocabulary.
        with open(os.path.join(spec["ct2_dir"], "vocabulary.json")) as f:
            self.vocab = json.load(f)
        self.info = {"compute_type": self.gen.compute_type,
                     "supported_cpu_compute_types": sorted(ctranslate2.get_supported_compute_types("cpu"))}

    def run(self, prompt, n):
        tokens = [self.vocab[i] for i in prompt]
        ids, stamps = [], []

        def on_step(step):  # called from the decoding loop as each token is chosen
            stamps.append(time.perf_counter())
            ids.append(step.token_id)
            return False

        t0 = time.perf_counter()
        # min_length = max_length: EOS cannot end it early (as min_new_tokens does for transformers).
        self.gen.generate_batch([tokens], max_length=n, min_length=n, sampling_topk=1, beam_size=1,
                                include_prompt_in_result=False, callback=on_step)
        if len(ids) != n:
            raise RuntimeError(f"CTranslate2 returned {len(ids)} tokens, asked for {n}")
        return {"ids": ids, "prefill_s": stamps[0] - t0, "decode_s": stamps[-1] - stamps[0],
                "decode_steps": n - 1}


class TransformersEngine:
    def __init__(self, spec):
        import torch
        import transformers
        from transformers import GPTNeoXForCausalLM
        self.torch = torch
        torch.set_num_threads(spec["threads"])
        kw = {"attn_implementation": spec["attn"]}
        try:
            self.model = GPTNeoXForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32, **kw)
        except TypeError:  # transformers < 4.56 spells it torch_dtype
            self.model = GPTNeoXForCausalLM.from_pretrained(spec["model_dir"], torch_dtype=torch.float32, **kw)
        self.model.eval()
        self.eos = self.model.config.eos_token_id
        self.info = {"attn_implementation": getattr(self.model.config, "_attn_implementation", spec["attn"]),
                     "torch_threads": torch.get_num_threads(),
                     "transformers": transformers.__version__}

    def run(self, prompt, n):
        torch = self.torch
        from transformers.generation.streamers import BaseStreamer
        stamps = []

        class Stamps(BaseStreamer):  # put() gets the prompt first, then each new token
            def put(self, value):
                stamps.append(time.perf_counter())

            def end(self):
                pass

        ids = torch.tensor([prompt], dtype=torch.long)
        mask = torch.ones_like(ids)
        with torch.inference_mode():
            t = time.perf_counter()
            self.model(input_ids=ids, attention_mask=mask, use_cache=True)
            prefill_s = time.perf_counter() - t
            t0 = time.perf_counter()
            out = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                      do_sample=False, num_beams=1, pad_token_id=self.eos, streamer=Stamps())
            t_end = time.perf_counter()
        new = out[0, len(prompt):].tolist()
        if len(new) != n or len(stamps) < 2:
            raise RuntimeError(f"generate returned {len(new)} tokens, asked for {n}")
        ttft = stamps[1] - t0
        return {"ids": new, "prefill_s": prefill_s, "ttft_s": ttft, "decode_s": (t_end - t0) - ttft,
                "decode_steps": n - 1}


WORKER_ENGINES = {"llamacpp": LlamaCppEngine, "ct2": CTranslate2Engine, "hf": TransformersEngine}


def worker_main(spec_json):
    spec = json.loads(spec_json)
    # The protocol keeps the real stdout; anything a library prints goes to stderr (the log).
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    try:
        engine = WORKER_ENGINES[spec["kind"]](spec)
        engine.run(spec["prompt"], min(4, spec["new_tokens"]))  # warm-up, not measured
    except Exception as e:
        proto.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        return 1
    proto.write(json.dumps({"ready": True, "info": engine.info}) + "\n")
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd.get("cmd") != "run":
            break
        try:
            res = engine.run(spec["prompt"], spec["new_tokens"])
        except Exception as e:
            res = {"error": f"{type(e).__name__}: {e}"}
        proto.write(json.dumps(res) + "\n")
    proto.flush()
    os._exit(0)  # skip interpreter teardown (ctranslate2 4.8 can abort in it)


# --------------------------------------------------------------------------------- orchestrator

def tail(path, n=6):
    try:
        with open(path, errors="replace") as f:
            lines = [l.rstrip() for l in f if l.strip()]
        return " | ".join(lines[-n:])
    except OSError:
        return ""


class Engine:
    """One row of the table: a name, how it runs, and its measured runs (or why it has none)."""

    def __init__(self, name, weights, timer, family):
        self.name, self.weights, self.timer, self.family = name, weights, timer, family
        self.runs = []  # dicts from run()
        self.error = None
        self.status = "failed"  # or "refused"
        self.info = {}

    def own_cpu_s(self):
        return 0.0

    def measured_run(self):
        """run(), plus how many cores other processes kept busy meanwhile (machine-wide busy CPU
        time less this engine's own, over the wall time)."""
        busy0, own0, t0 = cpu_busy_s(), self.own_cpu_s(), time.perf_counter()
        ok = self.run()
        busy1, own1, wall = cpu_busy_s(), self.own_cpu_s(), time.perf_counter() - t0
        if ok and None not in (busy0, busy1, own0, own1) and wall > 0:
            self.runs[-1]["others_cores"] = max(0.0, (busy1 - busy0) - (own1 - own0)) / wall
        return ok

    def rates(self, key="decode_s", steps="decode_steps"):
        return [r[steps] / r[key] for r in self.runs if r.get(key)]


class WorkerEngine(Engine):
    def __init__(self, name, weights, timer, family, spec, log_dir, env):
        super().__init__(name, weights, timer, family)
        self.spec = spec
        self.log = os.path.join(log_dir, name.replace(" ", "_").replace("/", "_") + f"_t{spec['threads']}.log")
        self.proc = None
        self.env = env

    def start(self):
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", json.dumps(self.spec)],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                                         env=self.env)

    def wait_ready(self):
        line = self.proc.stdout.readline()
        if not line:
            self.error = f"worker exited (rc {self.proc.wait()}): {tail(self.log)}"
            return False
        msg = json.loads(line)
        if "error" in msg:
            self.error = msg["error"]
            self.stop()
            return False
        self.info = msg.get("info", {})
        return True

    def run(self):
        try:
            self.proc.stdin.write(json.dumps({"cmd": "run"}) + "\n")
            self.proc.stdin.flush()
            ready, _, _ = select.select([self.proc.stdout], [], [], RUN_TIMEOUT_S)
            if not ready:
                self.proc.kill()
                self.error = f"no answer within {RUN_TIMEOUT_S} s (killed): {tail(self.log)}"
                return False
            line = self.proc.stdout.readline()
        except OSError as e:
            line = ""
            self.error = repr(e)
        if not line:
            why = f", {self.error}" if self.error else ""
            self.error = f"worker died (rc {self.proc.poll()}{why}): {tail(self.log)}"
            return False
        res = json.loads(line)
        if "error" in res:
            self.error = res["error"]
            return False
        self.runs.append(res)
        return True

    def own_cpu_s(self):
        return proc_cpu_s(self.proc.pid) if self.proc else None

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class OursEngine(Engine):
    def __init__(self, name, binary, model_dir, dtype, threads, prompt, n):
        super().__init__(name, dtype, "decode_ms of --json", "ours")
        self.cmd = [binary, "--model_dir", model_dir, "--prompt_ids", ",".join(map(str, prompt)),
                    "--max_new_tokens", str(n), "--ignore_eos", "--json", "--device", "cpu",
                    "--threads", str(threads), "--dtype", dtype]
        self.dtype = dtype

    def _exec(self, cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return None, -1, f"no answer within {RUN_TIMEOUT_S} s (killed)"
        if p.returncode != 0:
            msg = (p.stderr.strip().splitlines() or [f"exit status {p.returncode}"])[-1]
            return None, p.returncode, msg
        return json.loads(p.stdout.strip().splitlines()[-1]), 0, ""

    def start(self):
        pass

    def own_cpu_s(self):  # the finished specdec-generate processes' CPU time
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        return ru.ru_utime + ru.ru_stime

    def wait_ready(self):
        # A short probe: a dtype the binary does not take is "refused" (exit 2, invalid argument).
        probe = list(self.cmd)
        probe[probe.index("--max_new_tokens") + 1] = "2"
        out, rc, msg = self._exec(probe)
        if out is None:
            self.status = "refused" if rc == 2 else "failed"
            self.error = msg
            return False
        return True

    def run(self):
        out, rc, msg = self._exec(self.cmd)
        if out is None:
            self.error = msg
            return False
        ids = out["ids"]
        self.runs.append({"ids": ids, "prefill_s": out["prefill_ms"] / 1000.0, "decode_s": out["decode_ms"] / 1000.0,
                          "decode_steps": len(ids) - 1, "tool_tokens_per_s": out.get("tokens_per_s")})
        return True

    def stop(self):
        pass


def sh(cmd, **kw):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, **kw).stdout.strip()
    except OSError:
        return ""


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_busy_s():
    """Seconds of CPU time the whole machine has spent busy (all processes, all CPUs)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK  # less idle and iowait
    except (OSError, ValueError, IndexError):
        return None


def proc_cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
    except (OSError, ValueError, IndexError):
        return None


def loadavg():
    try:
        return tuple(float(x) for x in open("/proc/loadavg").read().split()[:3])
    except OSError:
        return (0.0, 0.0, 0.0)


def versions():
    out = {}
    for p in PACKAGES:
        try:
            out[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


def cpu_info():
    model, flags = "", ""
    for line in sh(["lscpu"]).splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
        elif line.startswith("Flags:"):
            flags = line.split(":", 1)[1].strip()
    return model, flags, os.cpu_count()


def git_head(path, ignore=None):
    """HEAD, and whether tracked files differ from it (ignore: a file that does not count, the
    report itself when it is tracked and left modified by an earlier run)."""
    head = sh(["git", "-C", path, "rev-parse", "HEAD"])
    if not head:
        return "unknown"
    spec = ["--", "."] + ([f":(exclude){os.path.relpath(ignore, path)}"] if ignore else [])
    dirty = sh(["git", "-C", path, "status", "--porcelain", "--untracked-files=no"] + spec)
    return head + (" (with uncommitted changes)" if dirty else "")


def build_source(build):
    try:
        for line in open(os.path.join(build, "CMakeCache.txt")):
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def snapshot_binary(binary, work):
    """Copies specdec-generate into the work folder once it is complete (executable, size and
    mtime steady for 2 s), so a rebuild during the benchmark cannot change or break it halfway.
    Returns (copy, what it is) or (None, why there is none)."""
    if not os.path.exists(binary):
        return None, f"{binary} not found"
    import hashlib
    deadline = time.time() + 120
    while True:
        try:
            st1 = os.stat(binary)
            time.sleep(2)
            st2 = os.stat(binary)
            if os.access(binary, os.X_OK) and (st1.st_size, st1.st_mtime) == (st2.st_size, st2.st_mtime):
                copy = os.path.join(work, "specdec-generate")
                shutil.copy2(binary, copy)
                if os.stat(binary).st_mtime == st2.st_mtime:
                    break
        except OSError:
            pass
        if time.time() > deadline:
            return None, f"{binary} kept changing (a build is writing it)"
    digest = hashlib.sha256(open(copy, "rb").read()).hexdigest()[:16]
    built = datetime.datetime.fromtimestamp(st2.st_mtime, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return copy, f"`{binary}` (built {built}, sha256 {digest}…, copied once and run from the copy)"


def checkpoint_summary(model_dir):
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    dtypes, params = set(), 0
    st = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(st):
        with open(st, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n))
        for k, v in header.items():
            if k == "__metadata__":
                continue
            dtypes.add(v["dtype"])
            c = 1
            for d in v["shape"]:
                c *= d
            params += c
    return cfg, sorted(dtypes), params


def find_tokenizer(model_dir, given):
    if given:
        return given
    for p in [os.path.join(model_dir, "tokenizer.json"),
              os.path.join(ROOT, "..", "shared", "models", "gpt-neox-20b", "tokenizer.json"),
              os.path.join(ROOT, "assets", "gpt-neox-20b", "tokenizer.json")]:
        if os.path.exists(p):
            return os.path.abspath(p)
    return None


def convert_ct2(model_dir, tokenizer, out_dir, quantization):
    """TransformersConverter on a copy of the folder that has a tokenizer (the converter reads the
    vocabulary from it). Shims for ctranslate2 4.8's GPT-NeoX loader, inert where not needed:
    transformers 5 keeps the rotary fraction in rope_parameters (the loader reads
    config.rotary_pct) and names the output layer lm_head (the loader reads embed_out); a tokenizer larger
    than the checkpoint's vocabulary (the 512-id fixtures) is cut to it, as to_gguf.py does."""
    import ctranslate2
    from ctranslate2.converters import transformers as ct2t
    src = os.path.join(os.path.dirname(out_dir), "hf_src")
    if not os.path.exists(src):
        os.makedirs(src)
        for f in os.listdir(model_dir):
            if f.endswith((".json", ".safetensors")):
                os.symlink(os.path.join(model_dir, f), os.path.join(src, f))
        if tokenizer and not os.path.exists(os.path.join(src, "tokenizer.json")):
            os.symlink(tokenizer, os.path.join(src, "tokenizer.json"))

    class Converter(ct2t.TransformersConverter):
        def load_model(self, model_class, path, **kwargs):
            model = super().load_model(model_class, path, **kwargs)
            cfg = model.config
            if getattr(cfg, "rotary_pct", None) is None:
                rope = getattr(cfg, "rope_parameters", None) or {}
                cfg.rotary_pct = rope.get("partial_rotary_factor", 1.0)
            if not hasattr(model, "embed_out"):  # transformers 5 calls the output layer lm_head
                model.embed_out = model.get_output_embeddings()
            return model

    loader = ct2t.GPTNeoXLoader
    full = loader.get_vocabulary
    loader.get_vocabulary = lambda self, model, tok: full(self, model, tok)[:model.config.vocab_size]
    try:
        Converter(src, load_as_float16=False).convert(out_dir, quantization=quantization, force=True)
    finally:
        loader.get_vocabulary = full
    return out_dir


def median(xs):
    return statistics.median(xs) if xs else None


def fmt(x, d=1):
    return "—" if x is None else f"{x:,.{d}f}"


def leading_match(a, b, n=AGREE_TOKENS):
    k = 0
    for x, y in zip(a[:n], b[:n]):
        if x != y:
            break
        k += 1
    return k


def run_section(args, model_dir, label, work):
    """Measures every engine on one checkpoint; returns markdown lines."""
    cfg, st_dtypes, params = checkpoint_summary(model_dir)
    vocab, max_pos = cfg["vocab_size"], cfg.get("max_position_embeddings", 2048)
    notes = []
    prompt = [int(x) for x in args.prompt_ids.split(",")]
    if any(p >= vocab for p in prompt):
        mapped = [p % vocab for p in prompt]
        notes.append(f"prompt ids {prompt} do not fit the vocabulary ({vocab}); used each id mod {vocab}: {mapped}")
        prompt = mapped
    n = args.new_tokens
    if len(prompt) + n > max_pos:
        n = max_pos - len(prompt)
        notes.append(f"new tokens cut to {n} (max_position_embeddings {max_pos})")
    tokenizer = find_tokenizer(model_dir, args.tokenizer)
    mwork = tempfile.mkdtemp(prefix="model_", dir=work)
    log_dir = os.path.join(mwork, "logs")
    os.makedirs(log_dir)
    print(f"== {label}: {model_dir} (prompt {len(prompt)} ids, {n} new tokens)", flush=True)

    # Conversions, once per checkpoint. A failure is recorded against the engines that need it.
    conv = {}
    want = set(args.engines.split(","))
    if "llamacpp" in want:
        for outtype in ["f32", "f16"]:
            path = os.path.join(mwork, f"model-{outtype}.gguf")
            cmd = [sys.executable, args.to_gguf, model_dir, path, "--outtype", outtype]
            if tokenizer:
                cmd += ["--tokenizer", tokenizer]
            p = subprocess.run(cmd, capture_output=True, text=True)
            conv[f"gguf-{outtype}"] = (path, None) if p.returncode == 0 else \
                (None, f"to_gguf.py failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
    if "ct2" in want:
        try:
            import ctranslate2
            cpu_types = ctranslate2.get_supported_compute_types("cpu")
        except Exception as e:
            cpu_types = None
        for q in ["float32", "int8", "bfloat16"]:
            out = os.path.join(mwork, f"ct2-{q}")
            if cpu_types is not None and q not in cpu_types:
                conv[f"ct2-{q}"] = (None, f"not supported on this CPU (ctranslate2 supports "
                                          f"{', '.join(sorted(cpu_types))} here)")
                continue
            try:
                convert_ct2(model_dir, tokenizer, out, q)
                conv[f"ct2-{q}"] = (out, None)
            except Exception as e:
                conv[f"ct2-{q}"] = (None, f"conversion failed: {type(e).__name__}: {e}")
    print(f"   conversions: " + ", ".join(f"{k}: {'ok' if v[0] else v[1]}" for k, v in conv.items()), flush=True)

    binary, binary_note = args.binary, args.binary_note
    lines = []
    load_start = loadavg()
    loads = [load_start[0]]
    reference_name = "transformers f32 eager"
    for threads in [int(t) for t in args.threads.split(",")]:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        engines = []
        if "ours" in want:
            for dt in args.ours_dtypes.split(","):
                if binary is None:
                    e = Engine(f"specdec {dt}", dt, "decode_ms of --json", "ours")
                    e.error = f"{binary_note} (--specdec_build {args.specdec_build})"
                    engines.append(e)
                    continue
                engines.append(OursEngine(f"specdec {dt}", binary, model_dir, dt, threads, prompt, n))
        base = {"threads": threads, "prompt": prompt, "new_tokens": n, "n_ctx": len(prompt) + n + 16}
        if "llamacpp" in want:
            for outtype, kv in [("f32", "f32"), ("f16", "f16")]:
                name = f"llama.cpp {outtype}"
                path, err = conv[f"gguf-{outtype}"]
                fa = args.llama_flash_attn == "on"
                e = WorkerEngine(name, f"GGUF {outtype}, KV cache {kv}, flash attention {args.llama_flash_attn}",
                                 "wall per step (llama_decode + argmax)", "llamacpp",
                                 dict(base, kind="llamacpp", gguf=path, kv=kv, flash_attn=fa), log_dir, env)
                e.error = err
                engines.append(e)
        if "ct2" in want:
            for q in ["float32", "int8", "bfloat16"]:
                path, err = conv[f"ct2-{q}"]
                e = WorkerEngine(f"CTranslate2 {q}", f"converted {q}", "wall between the first and the last step callback",
                                 "ct2", dict(base, kind="ct2", ct2_dir=path, compute_type=q), log_dir, env)
                e.error = err
                engines.append(e)
        if "hf" in want:
            for attn in ["eager", "sdpa"]:
                e = WorkerEngine(f"transformers f32 {attn}", f"f32, {attn} attention", "(N-1)/(total − time to first token)",
                                 "hf", dict(base, kind="hf", model_dir=model_dir, attn=attn), log_dir, env)
                engines.append(e)

        # Load all (the workers load concurrently), then run interleaved: A1 B1 C1 ... A2 B2 ...
        live = [e for e in engines if e.error is None]
        for e in live:
            e.start()
        live = [e for e in live if e.wait_ready()]
        print(f"   threads={threads}: running " + ", ".join(e.name for e in live), flush=True)
        for r in range(args.runs):
            for e in list(live):
                time.sleep(PAUSE_S)
                try:
                    ok = e.measured_run()
                except Exception as ex:  # one engine's trouble never ends the benchmark
                    e.error, ok = f"{type(ex).__name__}: {ex}", False
                if not ok:
                    e.stop()
                    live.remove(e)
                    continue
                loads.append(loadavg()[0])
                rate = e.runs[-1]["decode_steps"] / e.runs[-1]["decode_s"]
                print(f"   threads={threads} run {r + 1}/{args.runs} {e.name}: {rate:,.1f} tokens/s", flush=True)
        for e in live:
            e.stop()
        lines += table(engines, threads, n, reference_name)
        args.others_max = max([args.others_max] + [r["others_cores"] for e in engines for r in e.runs
                                                    if "others_cores" in r])
    load_end = loadavg()

    head = [f"## {label}", ""]
    head.append(f"- checkpoint: `{model_dir}`: GPT-NeoX, {cfg['num_hidden_layers']} layers, hidden "
                f"{cfg['hidden_size']}, {cfg['num_attention_heads']} heads, intermediate "
                f"{cfg.get('intermediate_size')}, vocab {vocab}, max positions {max_pos}, rotary_pct "
                f"{cfg.get('rotary_pct')}, parallel residual {cfg.get('use_parallel_residual')}; "
                f"safetensors {'/'.join(st_dtypes)}, {params:,} values")
    head.append(f"- prompt ids ({len(prompt)}): `{','.join(map(str, prompt))}`; {n} new tokens, greedy, EOS ignored; "
                f"{args.runs} runs per engine, interleaved")
    head.append(f"- tokenizer for the conversions: `{tokenizer}`")
    loads.append(load_end[0])
    head.append(f"- 1-minute load average: {load_start[0]:.2f} at start, {max(loads):.2f} at most (sampled after "
                f"every run; the benchmark's own threads count), {load_end[0]:.2f} at end"
                + (" (**the machine was busy**: other work ran beside the benchmark; figures are noisier and lower)"
                   if max(loads) > 2.5 else ""))
    for note in notes:
        head.append(f"- note: {note}")
    head.append("")
    return head + lines


def table(engines, threads, n, reference_name):
    ref = next((e for e in engines if e.name == reference_name and e.runs), None)
    ours = {e.weights: e for e in engines if e.family == "ours"}
    ours_med = {dt: median(e.rates()) for dt, e in ours.items() if e.runs}
    cols = [dt for dt in ours]
    out = [f"### {threads} thread{'s' if threads > 1 else ''}", ""]
    hdr = ["engine", "weights / compute", "decode tokens/s min", "median", "max", "prefill ms (median)"]
    hdr += [f"specdec {dt} ÷ this" for dt in cols]
    hdr += [f"greedy match, first {AGREE_TOKENS} vs {reference_name}", "others' CPU, cores (max)", "decode timed by"]
    out.append("| " + " | ".join(hdr) + " |")
    out.append("|" + "---|" * len(hdr))
    rows = []
    for e in engines:
        rows.append((e, "decode_s", "decode_steps", e.name, e.timer))
        if e.family == "llamacpp" and e.runs and "eval_timer_s" in e.runs[0]:
            rows.append((e, "eval_timer_s", "eval_timer_steps", f"{e.name} (eval timer)",
                         "llama.cpp's own eval timer (llama_perf t_eval)"))
    for e, key, steps, name, timer in rows:
        weights = e.weights
        if e.family == "ct2" and e.info.get("compute_type"):
            weights += f", compute {e.info['compute_type']}"
        if not e.runs:
            what = "refused" if e.status == "refused" else "failed"
            msg = (e.error or "no run").replace("|", "\\|")
            out.append(f"| {name} | {weights} | **{what}**: {msg} |" + " |" * (len(hdr) - 3))
            continue
        rates = e.rates(key, steps)
        med = median(rates)
        prefill = median([r["prefill_s"] * 1000 for r in e.runs])
        cells = [name, weights, fmt(min(rates)), fmt(med), fmt(max(rates)), fmt(prefill, 2)]
        for dt in cols:
            om = ours_med.get(dt)
            cells.append("—" if om is None or (e.family == "ours" and e.weights == dt) else f"{om / med:.2f}×")
        if ref is None:
            cells.append("no reference")
        else:
            k = leading_match(e.runs[0]["ids"], ref.runs[0]["ids"])
            cells.append(f"{k}/{min(AGREE_TOKENS, n)}")
        others = [r["others_cores"] for r in e.runs if "others_cores" in r]
        cells.append(fmt(max(others), 2) if others else "—")
        if e.error:  # failed after some runs
            timer += f"; stopped: {e.error}"
        cells.append(timer)
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out.append("")
    # Engine details the reader may want (the compute type CTranslate2 really used, llama.cpp's build).
    info = []
    for e in engines:
        if e.family == "ours" and e.runs and e.runs[0].get("tool_tokens_per_s"):
            info.append(f"{e.name}: the tool's own tokens_per_s (N tokens / decode_ms) was "
                        f"{median([r['tool_tokens_per_s'] for r in e.runs]):,.1f}; the table uses (N−1)/decode_ms")
        if e.family == "ct2" and e.info:
            info.append(f"{e.name}: compute type {e.info.get('compute_type')} (CPU supports "
                        f"{', '.join(e.info.get('supported_cpu_compute_types', []))})")
        if e.family == "hf" and e.info:
            info.append(f"{e.name}: attn_implementation {e.info.get('attn_implementation')}, "
                        f"torch threads {e.info.get('torch_threads')}")
        if e.family == "llamacpp" and e.runs:
            steps = {r.get("eval_timer_steps") for r in e.runs}
            info.append(f"{e.name}: llama.cpp counted {', '.join(map(str, sorted(s for s in steps if s is not None)))} "
                        f"eval steps per run")
        ids = [tuple(r["ids"]) for r in e.runs]
        if len(set(ids)) > 1:
            info.append(f"{e.name}: greedy ids differed between runs")
    sysinfo = next((e.info["system_info"] for e in engines if e.family == "llamacpp" and e.info.get("system_info")), None)
    if sysinfo:
        info.append(f"llama.cpp system info: `{sysinfo}`")
    out += [f"- {i}" for i in info] + [""]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--model_dir", action="append",
                    help="Hugging Face GPT-NeoX folder (config.json, model.safetensors); repeat for one "
                         "section per checkpoint")
    ap.add_argument("--label", action="append", help="section title, one per --model_dir in the same order (default: the folder names)")
    ap.add_argument("--specdec_build", default=os.path.join(ROOT, "build"),
                    help="build folder with tools/generate/specdec-generate")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--new_tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompt_ids", default=DEFAULT_PROMPT)
    ap.add_argument("--ours_dtypes", default="f32,bf16,int8")
    ap.add_argument("--engines", default="ours,llamacpp,ct2,hf", help="subset of ours,llamacpp,ct2,hf")
    ap.add_argument("--llama_flash_attn", choices=["off", "on"], default="off",
                    help="llama.cpp flash attention (off: llama-cpp-python's default)")
    ap.add_argument("--to_gguf", default=os.path.join(ROOT, "..", "shared", "anchors", "llamacpp", "to_gguf.py"))
    ap.add_argument("--tokenizer", help="tokenizer.json for the conversions (default: MODEL_DIR's, else GPT-NeoX-20B's)")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks", "anchors.md"))
    ap.add_argument("--keep_work", action="store_true", help="keep the converted models and worker logs")
    args = ap.parse_args()
    if args.worker:
        return worker_main(args.worker)
    if not args.model_dir:
        ap.error("--model_dir is required")
    args.to_gguf = os.path.abspath(args.to_gguf)
    args.specdec_build = os.path.abspath(args.specdec_build)
    labels = args.label or []
    if labels and len(labels) != len(args.model_dir):
        ap.error("give one --label per --model_dir (in the same order), or none")
    command = os.environ.get("ANCHORS_COMMAND") or shlex.join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])

    work = tempfile.mkdtemp(prefix="specdec_anchors.")
    started = datetime.datetime.now(datetime.timezone.utc)
    binary = os.path.realpath(os.path.join(args.specdec_build, "tools", "generate", "specdec-generate"))
    args.binary, args.binary_note = snapshot_binary(binary, work)
    args.others_max = 0.0
    sections = []
    try:
        for i, md in enumerate(args.model_dir):
            label = labels[i] if i < len(labels) else os.path.basename(os.path.normpath(md))
            sections += run_section(args, os.path.abspath(md), label, work)
    finally:
        if args.keep_work:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    model, flags, ncpu = cpu_info()
    vers = versions()
    src = build_source(args.specdec_build)
    doc = ["# Side by side on CPU: specdec against llama.cpp, CTranslate2 and transformers", ""]
    doc.append("Greedy decoding from the same prompt ids on the same checkpoint, one engine at a time, runs "
               "interleaved (every engine's run 1, then every engine's run 2, ...), each engine loaded once per "
               "thread count with one untimed warm-up generation. **Decode tokens/s counts decode only**: the "
               "N−1 single-token steps after the prompt's forward pass (which yields the first token), divided by "
               "their time; prefill is excluded and shown apart. Ratios are specdec's median over the other "
               "engine's median, from this same run (> 1: specdec is faster). The greedy-match column counts "
               "how many of the first 32 greedy tokens equal those of transformers f32 eager before the first "
               "difference (on random weights, tiny float differences can flip a near-tie late; not a failure). "
               "\"Others' CPU\" is how many cores other processes kept busy during an engine's runs (the "
               "machine's busy CPU time from /proc/stat less the engine's own, over the wall time; the worst "
               "run): where it nears the CPU count less the threads used, the engine shared its cores.")
    doc.append("")
    if args.others_max > BUSY_CORES:
        doc.append(f"**Caveat: measured on a shared machine.** Other processes kept up to {args.others_max:.1f} of "
                   f"its {os.cpu_count()} CPUs busy during the runs (column \"others' CPU\"). Every engine ran in "
                   "the same conditions, interleaved, but the figures are lower and noisier than on a quiet "
                   "machine, and runs with as many threads as CPUs mostly measure how each engine's thread pool "
                   "copes with preemption (pools that spin at barriers suffer most). Re-run on a quiet machine "
                   "before drawing conclusions from the absolute figures or the multi-thread ratios.")
        doc.append("")
    doc.append("How each engine is timed: specdec: `decode_ms` from `specdec-generate --json` (the loop of "
               "single-token forwards and argmax after prefill). llama.cpp (llama-cpp-python, `Llama.eval` from "
               "token ids, argmax over the last logits in numpy, EOS ignored, `n_threads` = `n_threads_batch` = "
               "threads): the wall time of the step loop, compared in the main row; llama.cpp's own eval timer "
               "(`llama_perf_context` t_eval, no Python overhead) in an extra row. CTranslate2 "
               "(`Generator(intra_threads=threads)`, `generate_batch` greedy, `min_length` = `max_length` = N, with "
               "a per-step callback): wall time between the first and the last step's callback (`generate_tokens` "
               "streams through a queue, so its arrival times do not time the steps). transformers (`GPTNeoXForCausalLM`, "
               "f32, `generate` greedy with `min_new_tokens` = N): (N−1) / (total − time to first token, taken "
               "from a streamer), prefill from a separate forward pass of the prompt.")
    doc.append("")
    doc.append(f"- date: {started.strftime('%Y-%m-%d %H:%M UTC')}")
    doc.append(f"- machine: {model}, {ncpu} CPUs (`lscpu`)")
    doc.append(f"- CPU flags: `{flags}`")
    doc.append(f"- this benchmark's commit: {git_head(ROOT, ignore=os.path.abspath(args.out))}")
    doc.append(f"- specdec-generate: {args.binary_note}"
               + (f"; source `{src}` at {git_head(src)} when the report was written" if src else ""))
    doc.append("- packages: " + ", ".join(f"{k} {v}" for k, v in vers.items()) + f"; Python {sys.version.split()[0]}")
    doc.append(f"- command: `{command}`")
    doc.append("")
    doc += sections
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(doc).rstrip() + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
