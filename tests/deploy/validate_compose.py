# Validates docker-compose.yml with a real Compose implementation: `docker-compose config`
# (Debian's docker-compose 1.29, which parses, interpolates and schema-checks the file
# without a Docker engine), then checks the rendered result: the start order and health
# checks, ports that agree with the flags, the model volume (named volume by default, a bind
# mount with SPECDEC_MODEL_DIR), the `observe` profile and Prometheus' scrape targets.
# Skips (77) without docker-compose or PyYAML.
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from deploy_lib import REPO, Checks, check_that, import_or_skip, parse_flag_lines, port_of, skip

yaml = import_or_skip("yaml", "PyYAML")
COMPOSE = os.environ.get("DOCKER_COMPOSE") or shutil.which("docker-compose")
if not COMPOSE:
    skip("docker-compose is not installed (Debian package 'docker-compose')")

checks = Checks()
FILE = REPO / "docker-compose.yml"


def compose_config(args, env=None, file=FILE, quiet=False):
    """`docker-compose config` in a clean environment (no SPECDEC_* from the caller), offline.
    Returns its stdout; raises with its stderr on a non-zero exit."""
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    cmd = [COMPOSE, "-f", str(file), "--project-directory", str(REPO), *args, "config"]
    if quiet:
        cmd.append("-q")
    r = subprocess.run(cmd, capture_output=True, text=True, env={**base, **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])}: exit {r.returncode}\n{r.stderr.strip()}")
    return r.stdout


try:
    version = subprocess.run([COMPOSE, "version", "--short"], capture_output=True,
                             text=True).stdout.strip()
except OSError:
    version = ""  # older/newer CLIs: not needed
print(f"docker-compose: {COMPOSE} {version}")

state = {}
checks.check("docker-compose config accepts docker-compose.yml",
             lambda: state.update(cfg=yaml.safe_load(compose_config([]))))
checks.check("docker-compose --profile observe config accepts it",
             lambda: state.update(observe=yaml.safe_load(compose_config(["--profile", "observe"]))))


def rejects_broken_copy():
    text = FILE.read_text().replace("start_period:", "start_periodd:")
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="specdec-compose-") as tmp:
        tmp.write(text)
        tmp.flush()
        try:
            compose_config([], file=tmp.name, quiet=True)
        except RuntimeError as e:
            check_that("start_periodd" in str(e), f"rejected for another reason: {e}")
            return
    raise RuntimeError("accepted an unknown healthcheck key")
checks.check("docker-compose config rejects a broken copy (negative control)", rejects_broken_copy)

if "cfg" not in state or "observe" not in state:
    checks.finish()
cfg, observe = state["cfg"], state["observe"]
svc = cfg["services"]
flags = {}
for name in ["verifier", "draft", "gateway"]:
    def runs_binary(name=name):
        cmd = (svc.get(name) or {}).get("command")
        check_that(isinstance(cmd, list) and cmd and cmd[0] == f"specdec-{name}",
                   f"command {json.dumps(cmd)}")
        flags[name] = parse_flag_lines(cmd[1:])
        for f in ["listen", "metrics_listen", "model_dir"]:
            check_that(flags[name].get(f), f"no --{f}")
    checks.check(f"service {name} runs specdec-{name} with flags", runs_binary)


def model_service():
    m = svc.get("model")
    check_that(m and (m.get("command") or [None])[0] == "specdec-init-model",
               json.dumps(m and m.get("command")))
    check_that(m.get("restart") == "no", f"restart: {m.get('restart')}")
checks.check("the model service writes the checkpoint and runs once", model_service)

for name in ["verifier", "draft", "gateway"]:
    def health(name=name):
        hc = svc[name].get("healthcheck")
        check_that(hc and isinstance(hc.get("test"), list), "no healthcheck")
        port = port_of((flags.get(name) or {}).get("listen"))
        test = hc["test"]
        check_that("specdec-healthcheck" in test, f"test {json.dumps(test)}")
        args = test[test.index("specdec-healthcheck") + 1:]
        check_that(args and port_of(args[0]) == port, f"probes {test}, listens on {port}")
        # gRPC health by default, for the service's own name (SERVING once its model is loaded).
        service = f"specdec.v1.{name.capitalize()}"
        check_that(args[1:] == [service], f"checks {args[1:]}, not {service}")
        env = svc[name].get("environment") or {}
        check_that(str(env.get("SPECDEC_HEALTHCHECK_GRPC")) == "1",
                   f"SPECDEC_HEALTHCHECK_GRPC={env.get('SPECDEC_HEALTHCHECK_GRPC')}")
    checks.check(f"{name} has a gRPC health check of its service on its --listen port", health)


def tcp_override():
    cfg0 = yaml.safe_load(compose_config([], env={"SPECDEC_HEALTHCHECK_GRPC": "0"}))
    env = cfg0["services"]["verifier"].get("environment") or {}
    check_that(str(env.get("SPECDEC_HEALTHCHECK_GRPC")) == "0", json.dumps(env))
checks.check("SPECDEC_HEALTHCHECK_GRPC=0 switches the health checks to TCP", tcp_override)
for name in ["verifier", "draft"]:
    def after_model(name=name):
        d = svc[name].get("depends_on") or {}
        check_that(isinstance(d, dict) and (d.get("model") or {}).get("condition") ==
                   "service_completed_successfully", json.dumps(d))
    checks.check(f"{name} starts after the model service completed", after_model)


def gateway_after_backends():
    d = svc["gateway"].get("depends_on") or {}
    for n in ["verifier", "draft"]:
        check_that(isinstance(d, dict) and (d.get(n) or {}).get("condition") == "service_healthy",
                   json.dumps(d))
checks.check("gateway starts after verifier and draft are healthy", gateway_after_backends)


def gateway_targets():
    g = flags["gateway"]
    check_that(g.get("draft") == f"draft:{port_of(flags['draft']['listen'])}", f"--draft={g.get('draft')}")
    check_that(g.get("verifier") == f"verifier:{port_of(flags['verifier']['listen'])}",
               f"--verifier={g.get('verifier')}")
    check_that(port_of(g.get("http_listen")), "no --http_listen")
checks.check("gateway's --draft/--verifier name the services' --listen ports", gateway_targets)


def published_ports():
    ports = svc["gateway"].get("ports") or []
    targets = [int(p["target"]) if isinstance(p, dict) else int(str(p).split(":")[-1].split("/")[0])
               for p in ports]
    check_that(port_of(flags["gateway"]["listen"]) in targets, f"ports {json.dumps(ports)}")
    check_that(port_of(flags["gateway"]["http_listen"]) in targets, f"ports {json.dumps(ports)}")
checks.check("gateway publishes its gRPC and HTTP ports", published_ports)


def model_mount(s):
    return next((str(v) for v in s.get("volumes") or [] if re.search(r":/model(:r[ow])?$", str(v))),
                None)


def named_volume():
    check_that("specdec-model" in (cfg.get("volumes") or {}), "volume not declared")
    for n in ["model", "verifier", "draft", "gateway"]:
        m = model_mount(svc[n])
        check_that(m and m.startswith("specdec-model:"), f"{n}: {m}")
checks.check("by default every service mounts the named volume specdec-model", named_volume)


def bind_mount():
    c = yaml.safe_load(compose_config([], {"SPECDEC_MODEL_DIR": "/srv/models/pythia-70m"}))
    for n in ["model", "verifier", "draft", "gateway"]:
        m = model_mount(c["services"][n])
        check_that(m and m.startswith("/srv/models/pythia-70m:/model"), f"{n}: {m}")
        if n != "model":
            check_that(m.endswith(":ro"), f"{n} mounts it writable")
checks.check("SPECDEC_MODEL_DIR bind-mounts a model folder (read-only for the services)", bind_mount)


def env_overrides():
    c = yaml.safe_load(compose_config([], {"SPECDEC_VERIFIER_DEVICE": "cuda",
                                           "SPECDEC_KV_POLICY": "int8"}))
    f = parse_flag_lines(c["services"]["verifier"]["command"][1:])
    check_that(f.get("device") == "cuda" and f.get("kv_policy") == "int8", json.dumps(f))
checks.check("environment overrides reach the flags (SPECDEC_VERIFIER_DEVICE, SPECDEC_KV_POLICY)",
             env_overrides)


def observe_profile():
    for n in ["prometheus", "jaeger"]:
        s = observe["services"].get(n)
        check_that(s, f"{n} missing")
        check_that(s.get("profiles") == ["observe"], f"{n} profiles {json.dumps(s.get('profiles'))}")
    for n in ["model", "verifier", "draft", "gateway"]:
        check_that(not svc[n].get("profiles"), f"{n} is behind a profile")
checks.check("prometheus and jaeger exist only behind the observe profile", observe_profile)


def jaeger_otlp():
    j = observe["services"]["jaeger"]
    check_that(str(j.get("environment", {}).get("COLLECTOR_OTLP_ENABLED")).lower() == "true", "OTLP off")
    check_that(any(isinstance(p, dict) and int(p.get("target", 0)) == 4317 for p in j.get("ports") or []),
               "no 4317")
checks.check("jaeger takes OTLP (COLLECTOR_OTLP_ENABLED, port 4317)", jaeger_otlp)


def prometheus_targets():
    p = observe["services"]["prometheus"]
    mount = next((str(v) for v in p.get("volumes") or [] if "/etc/prometheus/prometheus.yml" in str(v)),
                 None)
    check_that(mount, "prometheus.yml not mounted")
    prom = yaml.safe_load((REPO / mount.split(":")[0]).read_text())
    targets = [t for s in prom["scrape_configs"] for c in s["static_configs"] for t in c["targets"]]
    for n in ["verifier", "draft", "gateway"]:
        want = f"{n}:{port_of(flags[n]['metrics_listen'])}"
        check_that(want in targets, f"no target {want} in {targets}")
checks.check("prometheus.yml scrapes each service at its --metrics_listen port", prometheus_targets)

checks.finish()
