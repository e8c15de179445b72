# The Python client (examples/python/generate.py, stubs generated from proto/ at build time)
# against the real services on loopback ports: starts verifier, draft and gateway on a random
# tiny checkpoint, then checks that the example's output equals the C++ client's (`specdec
# generate`) token for token, greedy and seeded sampling, and that it reports rounds, the finish
# reason and INVALID_ARGUMENT. Stops the services. Exit 0 on success, 1 on failure, 77 (skip)
# without Python gRPC or the generated stubs.
# Usage: generate_test.py --make_model BIN --verifier BIN --draft BIN --gateway BIN --client BIN
#                         --stubs BUILD_DIR/python
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SKIP = 77
REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "python" / "generate.py"
PROMPT = "Hello from Python,"


def parse_args():
    p = argparse.ArgumentParser()
    for name in ["make_model", "verifier", "draft", "gateway", "client", "stubs"]:
        p.add_argument(f"--{name}", required=True)
    return p.parse_args()


def served_port(log_path):
    """The port a service took for --listen=127.0.0.1:0, from its "serving on ... (port N)" line."""
    match = re.search(r" serving on \S+ \(port (\d+)\)", Path(log_path).read_text())
    return int(match.group(1)) if match else None


class Services:
    """The three services as child processes; stop() ends them all."""

    def __init__(self, args, workdir):
        self.args, self.dir, self.children = args, workdir, []

    def start(self, name, binary, flags):
        # Port 0: the service binds a free port itself and logs it (no bind-close-reuse race).
        log_path = Path(self.dir, f"{name}.log")
        log = open(log_path, "w")
        child = subprocess.Popen([binary, "--listen=127.0.0.1:0", *flags], stdout=log,
                                 stderr=subprocess.STDOUT)
        self.children.append(child)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited ({child.returncode}):\n"
                                   f"{log_path.read_text()[-3000:]}")
            port = served_port(log_path)
            if port is None:
                time.sleep(0.1)
                continue
            address = f"127.0.0.1:{port}"
            health = subprocess.run([self.args.client, "health", f"--server={address}",
                                     "--timeout_ms=1000"], capture_output=True, text=True)
            if health.returncode == 0:
                return address
            time.sleep(0.1)
        raise RuntimeError(f"{name} never became SERVING")

    def stop(self):
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"ok   {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}\n     {detail}", flush=True)


def main():
    args = parse_args()
    try:
        import grpc  # noqa: F401: only whether it is there
        import google.protobuf  # noqa: F401
    except ImportError:
        print(f"SKIP: Python gRPC is not installed for {sys.executable} "
              "(Debian packages python3-grpcio python3-protobuf; deploy/install-deps.sh)")
        return SKIP
    if not Path(args.stubs, "specdec", "v1", "gateway_pb2_grpc.py").exists():
        print(f"SKIP: no Python stubs in {args.stubs}: build the target specdec_python_stubs "
              "(needs grpc_python_plugin, Debian package protobuf-compiler-grpc)")
        return SKIP

    env = {**os.environ, "SPECDEC_PYTHON_STUBS": args.stubs}

    def python_client(*flags):
        return subprocess.run([sys.executable, str(EXAMPLE), *flags], capture_output=True,
                              text=True, env=env, timeout=120)

    def cpp_client(*flags):
        return subprocess.run([args.client, "generate", *flags], capture_output=True, text=True,
                              timeout=120)

    checks = Checks()
    with tempfile.TemporaryDirectory(prefix="specdec-python-") as workdir:
        services = Services(args, workdir)
        try:
            model = str(Path(workdir, "model"))
            subprocess.run([args.make_model, "--preset", "tiny", "--out", model], check=True,
                           capture_output=True)
            verifier = services.start("verifier", args.verifier,
                                      [f"--model_dir={model}", "--device=cpu", "--threads=1"])
            draft = services.start("draft", args.draft, [f"--model_dir={model}", "--device=cpu",
                                                         "--threads=1", "--draft_layers=0"])
            gateway = services.start("gateway", args.gateway, [f"--model_dir={model}",
                                                               f"--verifier={verifier}",
                                                               f"--draft={draft}"])
            common = ["--max_new_tokens", "16", "--k", "3"]

            def py_json(*flags):
                r = python_client("--target", gateway, "--prompt", PROMPT, *common, *flags, "--json")
                if r.returncode != 0:
                    raise RuntimeError(f"generate.py {flags}: exit {r.returncode}\n{r.stderr}")
                return json.loads(r.stdout)

            def cpp_ids(*flags):
                r = cpp_client(PROMPT, f"--server={gateway}", "--max_new_tokens=16", "--k=3",
                               "--ids", *flags)
                if r.returncode != 0:
                    raise RuntimeError(f"specdec generate: exit {r.returncode}\n{r.stderr}")
                return [int(x) for x in r.stdout.split()]

            greedy = py_json()
            ids = greedy["token_ids"]
            cpp_greedy = cpp_ids()
            checks.check("greedy: Python and C++ clients get the same tokens",
                         ids == cpp_greedy, f"python {ids}\n     c++    {cpp_greedy}")
            cpp_text = cpp_client(PROMPT, f"--server={gateway}", "--max_new_tokens=16", "--k=3")
            checks.check("greedy: the same text", cpp_text.returncode == 0 and
                         cpp_text.stdout[:-1] == greedy["text"] and cpp_text.stdout.endswith("\n"),
                         f"python {greedy['text']!r}\n     c++    {cpp_text.stdout!r}")
            checks.check("the last message carries the finish reason and usage",
                         greedy["finish_reason"] in ("FINISH_REASON_LENGTH", "FINISH_REASON_EOS")
                         and greedy["usage"]["generated_tokens"] == len(ids)
                         and 0 < len(ids) <= 16, json.dumps(greedy))
            # K is 3 but fits the tokens left near max_new_tokens.
            checks.check("per-round records were streamed (K=3, their tokens add up)",
                         greedy["rounds"] and greedy["rounds"][0]["num_draft_tokens"] == 3
                         and all(0 <= r["num_draft_tokens"] <= 3 for r in greedy["rounds"])
                         and sum(r["tokens_emitted"] for r in greedy["rounds"]) == len(ids),
                         json.dumps(greedy["rounds"]))
            plain = py_json("--k", "0")
            checks.check("speculation changes speed only: K=0 gives the same tokens",
                         plain["token_ids"] == ids, f"{plain['token_ids']} != {ids}")

            sampled_flags = ["--temperature", "0.8", "--top_p", "0.9", "--seed", "7"]
            sampled = py_json(*sampled_flags)["token_ids"]
            cpp_sampled = cpp_ids("--temperature=0.8", "--top_p=0.9", "--seed=7")
            checks.check("seeded sampling: Python and C++ clients get the same tokens",
                         sampled == cpp_sampled, f"python {sampled}\n     c++    {cpp_sampled}")
            shared = ["--coupling", "shared_noise"]
            shared_k3 = py_json(*sampled_flags, *shared)["token_ids"]
            shared_k0 = py_json(*sampled_flags, *shared, "--k", "0")["token_ids"]
            checks.check("shared-noise sampling: the same tokens with and without a draft",
                         shared_k3 == shared_k0 and len(shared_k3) > 0,
                         f"K=3 {shared_k3}\n     K=0 {shared_k0}")

            streamed = python_client("--target", gateway, "--prompt", PROMPT, *common)
            checks.check("streaming mode prints the text and the round records",
                         streamed.returncode == 0 and streamed.stdout == greedy["text"] + "\n"
                         and "[round 0] K=3" in streamed.stderr
                         and "[FINISH_REASON_" in streamed.stderr,
                         f"exit {streamed.returncode}\n{streamed.stdout!r}\n{streamed.stderr}")
            bad = python_client("--target", gateway, "--prompt", "", "--max_new_tokens", "4")
            checks.check("an empty prompt is INVALID_ARGUMENT (exit 2)",
                         bad.returncode == 2 and "INVALID_ARGUMENT" in bad.stderr,
                         f"exit {bad.returncode}: {bad.stderr}")
            print(f"python client: {len(ids)} tokens in {len(greedy['rounds'])} rounds, "
                  f"text {json.dumps(greedy['text'])}")
        except Exception as e:  # noqa: BLE001: reported as a failure with the services' logs
            checks.check("services and clients ran", False, str(e))
        finally:
            services.stop()
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
