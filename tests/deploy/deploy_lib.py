# Helpers shared by the deploy tests: CTest's skip code, named checks that report one line
# each, importing the venv's PyPI packages (tests/python/requirements.txt) or skipping without
# them, and the absl flag-file parser the checks compare ports with.
import os
import re
import shutil
import sys
from pathlib import Path

SKIP = 77  # SKIP_RETURN_CODE in tests/deploy/CMakeLists.txt
REPO = Path(__file__).resolve().parents[2]
SETUP_HINT = "run tests/python/setup_venv.sh"


def skip(why):
    print(f"SKIP: {why}", flush=True)
    sys.exit(SKIP)


def import_or_skip(module, package=None):
    """Imports a module of the test venv, or skips with the command that installs it."""
    try:
        return __import__(module)
    except ImportError:
        skip(f"Python package '{package or module}' is not installed for {sys.executable}: "
             f"{SETUP_HINT}")


def venv_tool(name, env_var=None):
    """An executable shipped by a wheel of the venv (beside sys.executable), else on PATH."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


class CheckFailed(Exception):
    pass


def check_that(cond, msg):
    if not cond:
        raise CheckFailed(msg)


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn):
        """Records one named check; `fn` raises (or returns a non-empty string) to fail it.
        Returns True when it passed."""
        err = None
        try:
            r = fn()
            if isinstance(r, str) and r:
                err = r
        except Exception as e:  # noqa: BLE001: every failure is reported, none stops the run
            err = str(e) or type(e).__name__
        if err:
            self.failed += 1
            indented = "\n     ".join(err.split("\n"))
            print(f"FAIL {name}\n     {indented}", flush=True)
            return False
        self.passed += 1
        print(f"ok   {name}", flush=True)
        return True

    def finish(self):
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        sys.exit(1 if self.failed else 0)


def parse_flag_lines(lines):
    """absl flag file ("--name=value" per line, '#' comments) -> {name: value}."""
    flags = {}
    for raw in lines:
        line = str(raw).strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"--?([A-Za-z0-9_]+)(?:=(.*))?", line)
        if not m:
            raise CheckFailed(f"not a flag: '{line}'")
        flags[m.group(1)] = "true" if m.group(2) is None else m.group(2)
    return flags


def port_of(host_port):
    m = re.search(r":(\d+)$", host_port or "")
    return int(m.group(1)) if m else None
