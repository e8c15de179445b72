# Runs the two scripts the image ships, as the containers run them:
# specdec-healthcheck in its default gRPC mode against a real verifier (SPECDEC_VERIFIER, with
# the `specdec` client SPECDEC_CLIENT on PATH, both set by CTest): SERVING for the server and
# for specdec.v1.Verifier, not for another service name, nor for a plain TCP listener that is
# not gRPC, nor for a closed port; and in TCP mode (SPECDEC_HEALTHCHECK_GRPC=0) against an
# open and a closed port. Then specdec-init-model with the project's own specdec-make-model
# (SPECDEC_MAKE_MODEL): it writes a checkpoint once, leaves a folder that already has
# config.json alone.
# Standard library only: any python3 runs it, no test venv needed.
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from deploy_lib import REPO, Checks, check_that, skip

SCRIPTS = REPO / "deploy" / "docker"
make_model = os.environ.get("SPECDEC_MAKE_MODEL")
if not shutil.which("bash") or not shutil.which("timeout"):
    skip("bash and timeout are needed")
checks = Checks()


def run(script, args, env=None):
    return subprocess.run([str(SCRIPTS / script), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120)


server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.bind(("127.0.0.1", 0))
server.listen(8)
port = server.getsockname()[1]


TCP = {"SPECDEC_HEALTHCHECK_GRPC": "0"}


def open_port():
    r = run("specdec-healthcheck", [f"127.0.0.1:{port}"], TCP)
    check_that(r.returncode == 0, f"exit {r.returncode} {r.stderr}")
checks.check("specdec-healthcheck (TCP mode): exit 0 on a listening port", open_port)

client = os.environ.get("SPECDEC_CLIENT")
verifier = os.environ.get("SPECDEC_VERIFIER")
grpc_env = {"PATH": f"{os.path.dirname(client or '')}:{os.environ.get('PATH', '')}"}
have_grpc = bool(client and os.path.exists(client) and shutil.which("specdec", path=grpc_env["PATH"]))


def grpc_not_tcp():
    r = run("specdec-healthcheck", [f"127.0.0.1:{port}"], grpc_env)
    check_that(r.returncode != 0, "exit 0 for a port that does not speak gRPC health")
if have_grpc:
    checks.check("specdec-healthcheck (default, gRPC): non-zero on a listener that is not gRPC",
                 grpc_not_tcp)
server.close()


def closed_port():
    for env in (TCP, grpc_env):
        r = run("specdec-healthcheck", [f"127.0.0.1:{port}"], env)
        check_that(r.returncode != 0, f"exit 0 with {env}")
checks.check("specdec-healthcheck: non-zero on a closed port (both modes)", closed_port)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serving_verifier(tmp):
    """A real specdec-verifier on a tiny checkpoint; returns (process, address)."""
    model = Path(tmp, "tiny")
    subprocess.run([make_model, "--preset", "tiny", "--out", str(model)], check=True,
                   capture_output=True, timeout=120)
    address = f"127.0.0.1:{free_port()}"
    log = open(Path(tmp, "verifier.log"), "w")
    proc = subprocess.Popen([verifier, f"--model_dir={model}", f"--listen={address}",
                             "--threads=1"], stdout=log, stderr=subprocess.STDOUT)
    return proc, address


if have_grpc and verifier and os.path.exists(verifier) and make_model and os.path.exists(make_model):
    with tempfile.TemporaryDirectory(prefix="specdec-healthcheck-") as tmp:
        proc, address = serving_verifier(tmp)
        try:
            def becomes_serving():
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    check_that(proc.poll() is None, "the verifier exited")
                    if run("specdec-healthcheck", [address], grpc_env).returncode == 0:
                        return
                    time.sleep(0.2)
                raise RuntimeError("never SERVING")
            checks.check("specdec-healthcheck (gRPC): exit 0 once the verifier serves",
                         becomes_serving)

            def own_service():
                r = run("specdec-healthcheck", [address, "specdec.v1.Verifier"], grpc_env)
                check_that(r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}")
            checks.check("specdec-healthcheck (gRPC): exit 0 for specdec.v1.Verifier", own_service)

            def other_service():
                r = run("specdec-healthcheck", [address, "specdec.v1.Draft"], grpc_env)
                check_that(r.returncode != 0, "exit 0 for a service the verifier does not run")
            checks.check("specdec-healthcheck (gRPC): non-zero for another service's name",
                         other_service)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
else:
    print("note: SPECDEC_CLIENT / SPECDEC_VERIFIER / SPECDEC_MAKE_MODEL not built: "
          "gRPC health checks not run against a verifier")

if not make_model or not os.path.exists(make_model):
    print(f"note: SPECDEC_MAKE_MODEL ({make_model}) not built: specdec-init-model not run")
    checks.finish()

env = {
    "PATH": f"{os.path.dirname(make_model)}:{os.environ.get('PATH', '')}",
    "SPECDEC_MODEL_PRESET": "tiny",
    "SPECDEC_TOKENIZER": str(REPO / "assets" / "gpt-neox-20b" / "tokenizer.json"),
}
with tempfile.TemporaryDirectory(prefix="specdec-init-model-") as tmp:
    model = Path(tmp, "model")
    model.mkdir()  # an empty volume mount point

    def writes_checkpoint():
        r = run("specdec-init-model", [str(model)], env)
        check_that(r.returncode == 0, f"exit {r.returncode}: {r.stdout}{r.stderr}")
        files = sorted(os.listdir(model))
        for f in ["config.json", "model.safetensors", "tokenizer.json"]:
            check_that(f in files, f"no {f} in {files}")
        check_that(not any(f.startswith(".incoming") for f in files), f"left {files}")
    checks.check("specdec-init-model: writes a checkpoint into an empty folder", writes_checkpoint)

    def same_seed_same_weights():
        model2 = Path(tmp, "model2")
        model2.mkdir()
        r = run("specdec-init-model", [str(model2)], env)
        check_that(r.returncode == 0, f"exit {r.returncode}: {r.stderr}")
        check_that((model / "model.safetensors").read_bytes() ==
                   (model2 / "model.safetensors").read_bytes(), "weights differ")
    checks.check("specdec-init-model: the same seed writes the same weights (replicas agree)",
                 same_seed_same_weights)

    def leaves_existing():
        before = (model / "model.safetensors").stat().st_mtime_ns
        r = run("specdec-init-model", [str(model)], env)
        check_that(r.returncode == 0 and "already" in r.stdout, f"exit {r.returncode}: {r.stdout}")
        check_that((model / "model.safetensors").stat().st_mtime_ns == before, "rewritten")
    checks.check("specdec-init-model: leaves a folder with config.json alone", leaves_existing)

checks.finish()
