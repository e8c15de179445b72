// Validates docker-compose.yml with a real Compose implementation: `docker-compose config`
// (Debian's docker-compose 1.29, which parses, interpolates and schema-checks the file
// without a Docker engine), then checks the rendered result: the start order and health
// checks, ports that agree with the flags, the model volume (named volume by default, a bind
// mount with SPECDEC_MODEL_DIR), the `observe` profile and Prometheus' scrape targets.
// Skips (77) without docker-compose or the npm 'yaml' package.
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const {execFileSync} = require('child_process');
const {REPO, skip, requireOrSkip, which, Checks, assert, parseFlagLines, portOf} = require('./lib');

const YAML = requireOrSkip('yaml');
const COMPOSE = process.env.DOCKER_COMPOSE || which('docker-compose');
if (!COMPOSE) skip("docker-compose is not installed (Debian package 'docker-compose')");

const checks = new Checks();
const FILE = path.join(REPO, 'docker-compose.yml');

// `docker-compose config` in a clean environment (no SPECDEC_* from the caller), offline.
function composeConfig(args, env = {}) {
  const base = {PATH: process.env.PATH, HOME: process.env.HOME || '/tmp'};
  return execFileSync(COMPOSE, ['-f', FILE, '--project-directory', REPO, ...args, 'config'],
                      {encoding: 'utf8', env: {...base, ...env}, stdio: ['ignore', 'pipe', 'pipe']});
}

let version = '';
try {
  version = execFileSync(COMPOSE, ['version', '--short'], {encoding: 'utf8'}).trim();
} catch (_) { /* older/newer CLIs: not needed */ }
console.log(`docker-compose: ${COMPOSE} ${version}`);

let cfg;
checks.check('docker-compose config accepts docker-compose.yml', () => {
  cfg = YAML.parse(composeConfig([]));
});
let observe;
checks.check('docker-compose --profile observe config accepts it', () => {
  observe = YAML.parse(composeConfig(['--profile', 'observe']));
});
checks.check('docker-compose config rejects a broken copy (negative control)', () => {
  const tmp = path.join(os.tmpdir(), `specdec-compose-${process.pid}.yml`);
  const text = fs.readFileSync(FILE, 'utf8').replace('start_period:', 'start_periodd:');
  fs.writeFileSync(tmp, text);
  try {
    execFileSync(COMPOSE, ['-f', tmp, '--project-directory', REPO, 'config', '-q'],
                 {encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe']});
    throw new Error('accepted an unknown healthcheck key');
  } catch (e) {
    if (!/start_periodd/.test(String(e.stderr || ''))) throw e;
  } finally {
    fs.rmSync(tmp, {force: true});
  }
});
if (!cfg || !observe) checks.finish();

const svc = cfg.services;
const flags = {};
for (const name of ['verifier', 'draft', 'gateway']) {
  checks.check(`service ${name} runs specdec-${name} with flags`, () => {
    const cmd = svc[name] && svc[name].command;
    assert(Array.isArray(cmd) && cmd[0] === `specdec-${name}`, `command ${JSON.stringify(cmd)}`);
    flags[name] = parseFlagLines(cmd.slice(1));
    for (const f of ['listen', 'metrics_listen', 'model_dir']) assert(flags[name][f], `no --${f}`);
  });
}

checks.check('the model service writes the checkpoint and runs once', () => {
  const m = svc.model;
  assert(m && m.command && m.command[0] === 'specdec-init-model', JSON.stringify(m && m.command));
  assert(m.restart === 'no', `restart: ${m.restart}`);
});

for (const name of ['verifier', 'draft', 'gateway']) {
  checks.check(`${name} has a health check on its --listen port`, () => {
    const hc = svc[name].healthcheck;
    assert(hc && Array.isArray(hc.test), 'no healthcheck');
    const port = portOf(flags[name] && flags[name].listen);
    assert(hc.test.includes('specdec-healthcheck'), `test ${JSON.stringify(hc.test)}`);
    assert(portOf(hc.test[hc.test.length - 1]) === port, `probes ${hc.test}, listens on ${port}`);
  });
}
for (const name of ['verifier', 'draft']) {
  checks.check(`${name} starts after the model service completed`, () => {
    const d = svc[name].depends_on || {};
    assert(d.model && d.model.condition === 'service_completed_successfully', JSON.stringify(d));
  });
}
checks.check('gateway starts after verifier and draft are healthy', () => {
  const d = svc.gateway.depends_on || {};
  for (const n of ['verifier', 'draft']) {
    assert(d[n] && d[n].condition === 'service_healthy', JSON.stringify(d));
  }
});
checks.check("gateway's --draft/--verifier name the services' --listen ports", () => {
  const g = flags.gateway;
  assert(g.draft === `draft:${portOf(flags.draft.listen)}`, `--draft=${g.draft}`);
  assert(g.verifier === `verifier:${portOf(flags.verifier.listen)}`, `--verifier=${g.verifier}`);
  assert(portOf(g.http_listen), 'no --http_listen');
});
checks.check('gateway publishes its gRPC and HTTP ports', () => {
  const targets = (svc.gateway.ports || []).map((p) => Number(p.target || String(p).split(':').pop()));
  assert(targets.includes(portOf(flags.gateway.listen)), `ports ${JSON.stringify(svc.gateway.ports)}`);
  assert(targets.includes(portOf(flags.gateway.http_listen)), `ports ${JSON.stringify(svc.gateway.ports)}`);
});

const modelMount = (s) => (s.volumes || []).map(String).find((v) => /:\/model(:r[ow])?$/.test(v));
checks.check('by default every service mounts the named volume specdec-model', () => {
  assert(cfg.volumes && 'specdec-model' in cfg.volumes, 'volume not declared');
  for (const n of ['model', 'verifier', 'draft', 'gateway']) {
    const m = modelMount(svc[n]);
    assert(m && m.startsWith('specdec-model:'), `${n}: ${m}`);
  }
});
checks.check('SPECDEC_MODEL_DIR bind-mounts a model folder (read-only for the services)', () => {
  const c = YAML.parse(composeConfig([], {SPECDEC_MODEL_DIR: '/srv/models/pythia-70m'}));
  for (const n of ['model', 'verifier', 'draft', 'gateway']) {
    const m = modelMount(c.services[n]);
    assert(m && m.startsWith('/srv/models/pythia-70m:/model'), `${n}: ${m}`);
    if (n !== 'model') assert(m.endsWith(':ro'), `${n} mounts it writable`);
  }
});
checks.check('environment overrides reach the flags (SPECDEC_VERIFIER_DEVICE, SPECDEC_KV_POLICY)', () => {
  const c = YAML.parse(composeConfig([], {SPECDEC_VERIFIER_DEVICE: 'cuda', SPECDEC_KV_POLICY: 'int8'}));
  const f = parseFlagLines(c.services.verifier.command.slice(1));
  assert(f.device === 'cuda' && f.kv_policy === 'int8', JSON.stringify(f));
});

checks.check('prometheus and jaeger exist only behind the observe profile', () => {
  for (const n of ['prometheus', 'jaeger']) {
    const s = observe.services[n];
    assert(s, `${n} missing`);
    assert(JSON.stringify(s.profiles) === '["observe"]', `${n} profiles ${JSON.stringify(s.profiles)}`);
  }
  for (const n of ['model', 'verifier', 'draft', 'gateway']) {
    assert(!svc[n].profiles, `${n} is behind a profile`);
  }
});
checks.check('jaeger takes OTLP (COLLECTOR_OTLP_ENABLED, port 4317)', () => {
  const j = observe.services.jaeger;
  assert(String(j.environment.COLLECTOR_OTLP_ENABLED) === 'true', 'OTLP off');
  assert((j.ports || []).some((p) => Number(p.target) === 4317), 'no 4317');
});
checks.check('prometheus.yml scrapes each service at its --metrics_listen port', () => {
  const p = observe.services.prometheus;
  const mount = (p.volumes || []).map(String).find((v) => v.includes('/etc/prometheus/prometheus.yml'));
  assert(mount, 'prometheus.yml not mounted');
  const file = path.resolve(REPO, mount.split(':')[0]);
  const prom = YAML.parse(fs.readFileSync(file, 'utf8'));
  const targets = prom.scrape_configs.flatMap((s) => s.static_configs.flatMap((c) => c.targets));
  for (const n of ['verifier', 'draft', 'gateway']) {
    const want = `${n}:${portOf(flags[n].metrics_listen)}`;
    assert(targets.includes(want), `no target ${want} in ${targets}`);
  }
});

checks.finish();
