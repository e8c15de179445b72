# Runs the two scripts the image ships, as the containers run them:
# specdec-healthcheck against an open and a closed local port, and specdec-init-model with
# the project's own specdec-make-model (SPECDEC_MAKE_MODEL, set by CTest): it writes a
# checkpoint once, leaves a folder that already has config.json alone.
# Standard library only: any python3 runs it, no test venv needed.
import os
import shutil
import socket
import subprocess
import tempfile
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


def open_port():
    r = run("specdec-healthcheck", [f"127.0.0.1:{port}"])
    check_that(r.returncode == 0, f"exit {r.returncode} {r.stderr}")
checks.check("specdec-healthcheck: exit 0 on a listening port", open_port)
server.close()


def closed_port():
    r = run("specdec-healthcheck", [f"127.0.0.1:{port}"])
    check_that(r.returncode != 0, "exit 0")
checks.check("specdec-healthcheck: non-zero on a closed port", closed_port)

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
