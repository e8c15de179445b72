// Runs the two scripts the image ships, as the containers run them:
// specdec-healthcheck against an open and a closed local port, and specdec-init-model with
// the project's own specdec-make-model (SPECDEC_MAKE_MODEL, set by CTest): it writes a
// checkpoint once, leaves a folder that already has config.json alone.
'use strict';
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const {spawnSync} = require('child_process');
const {REPO, skip, which, Checks, assert} = require('./lib');

const SCRIPTS = path.join(REPO, 'deploy', 'docker');
const makeModel = process.env.SPECDEC_MAKE_MODEL;
if (!which('bash') || !which('timeout')) skip('bash and timeout are needed');
const checks = new Checks();

function run(script, args, env = {}) {
  return spawnSync(path.join(SCRIPTS, script), args,
                   {encoding: 'utf8', env: {...process.env, ...env}, timeout: 120000});
}

async function main() {
  const server = net.createServer((s) => s.end());
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const port = server.address().port;
  checks.check('specdec-healthcheck: exit 0 on a listening port', () => {
    const r = run('specdec-healthcheck', [`127.0.0.1:${port}`]);
    assert(r.status === 0, `exit ${r.status} ${r.stderr}`);
  });
  await new Promise((r) => server.close(r));
  checks.check('specdec-healthcheck: non-zero on a closed port', () => {
    const r = run('specdec-healthcheck', [`127.0.0.1:${port}`]);
    assert(r.status !== 0, 'exit 0');
  });

  if (!makeModel || !fs.existsSync(makeModel)) {
    console.log(`note: SPECDEC_MAKE_MODEL (${makeModel}) not built: specdec-init-model not run`);
    return checks.finish();
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-init-model-'));
  const env = {
    PATH: `${path.dirname(makeModel)}:${process.env.PATH}`,
    SPECDEC_MODEL_PRESET: 'tiny',
    SPECDEC_TOKENIZER: path.join(REPO, 'assets', 'gpt-neox-20b', 'tokenizer.json'),
  };
  try {
    const dir = path.join(tmp, 'model');
    fs.mkdirSync(dir);  // an empty volume mount point
    checks.check('specdec-init-model: writes a checkpoint into an empty folder', () => {
      const r = run('specdec-init-model', [dir], env);
      assert(r.status === 0, `exit ${r.status}: ${r.stdout}${r.stderr}`);
      const files = fs.readdirSync(dir).sort();
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.json']) {
        assert(files.includes(f), `no ${f} in ${files}`);
      }
      assert(!files.some((f) => f.startsWith('.incoming')), `left ${files}`);
    });
    checks.check('specdec-init-model: the same seed writes the same weights (replicas agree)', () => {
      const dir2 = path.join(tmp, 'model2');
      fs.mkdirSync(dir2);
      const r = run('specdec-init-model', [dir2], env);
      assert(r.status === 0, `exit ${r.status}: ${r.stderr}`);
      const a = fs.readFileSync(path.join(dir, 'model.safetensors'));
      const b = fs.readFileSync(path.join(dir2, 'model.safetensors'));
      assert(a.equals(b), 'weights differ');
    });
    checks.check('specdec-init-model: leaves a folder with config.json alone', () => {
      const before = fs.statSync(path.join(dir, 'model.safetensors')).mtimeMs;
      const r = run('specdec-init-model', [dir], env);
      assert(r.status === 0 && /already/.test(r.stdout), `exit ${r.status}: ${r.stdout}`);
      assert(fs.statSync(path.join(dir, 'model.safetensors')).mtimeMs === before, 'rewritten');
    });
  } finally {
    fs.rmSync(tmp, {recursive: true, force: true});
  }
  checks.finish();
}

main();
