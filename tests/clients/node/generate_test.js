// A client of the specdec gateway written in Node (@grpc/grpc-js + @grpc/proto-loader), loading
// the project's .proto files as any third-party client would. Starts the three services on
// loopback ports (binaries from SPECDEC_BINARY_DIR), runs Generate and GetInfo, checks the
// results, and stops the services. Exit 0 on success, 1 on failure.
'use strict';

const assert = require('assert');
const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PROTO_DIR = path.join(ROOT, 'proto');
const BIN = process.env.SPECDEC_BINARY_DIR || path.join(ROOT, 'build');

const loaderOptions = {keepCase: true, longs: String, enums: String, defaults: true, oneofs: true,
                       includeDirs: [PROTO_DIR]};
const specdec = grpc.loadPackageDefinition(
    protoLoader.loadSync('specdec/v1/gateway.proto', loaderOptions)).specdec.v1;
const health = grpc.loadPackageDefinition(
    protoLoader.loadSync('grpc/health/v1/health.proto', loaderOptions)).grpc.health.v1;

const children = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address();
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function start(name, binary, args, dir) {
  const address = `127.0.0.1:${await freePort()}`;
  const log = fs.openSync(path.join(dir, `${name}.log`), 'w');
  const child = childProcess.spawn(binary, [`--listen=${address}`, ...args],
                                   {stdio: ['ignore', log, log]});
  children.push(child);
  const client = new health.Health(address, grpc.credentials.createInsecure());
  const deadline = Date.now() + 60000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`${name} exited: ${fs.readFileSync(path.join(dir, `${name}.log`))}`);
    const serving = await new Promise((resolve) => {
      client.check({service: ''}, {deadline: Date.now() + 1000},
                   (err, res) => resolve(!err && res.status === 'SERVING'));
    });
    if (serving) {
      client.close();
      return address;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} never became SERVING`);
}

function generate(client, request) {
  return new Promise((resolve, reject) => {
    const result = {ids: [], text: '', rounds: [], last: null, messages: 0};
    const call = client.Generate(request, {deadline: Date.now() + 60000});
    call.on('data', (msg) => {
      result.ids.push(...msg.token_ids);
      result.text += msg.text;
      result.rounds.push(...msg.rounds);
      if (msg.finish_reason !== 'FINISH_REASON_UNSPECIFIED') result.last = msg;
      result.messages++;
    });
    call.on('error', reject);
    call.on('end', () => resolve(result));
  });
}

async function main() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'specdec-node-'));
  const modelDir = path.join(dir, 'model');
  childProcess.execFileSync(path.join(BIN, 'tools/make_model/specdec-make-model'),
                            ['--preset', 'tiny', '--out', modelDir], {stdio: 'ignore'});
  const verifier = await start('verifier', path.join(BIN, 'services/verifier/specdec-verifier'),
                               [`--model_dir=${modelDir}`, '--device=cpu', '--threads=1'], dir);
  const draft = await start('draft', path.join(BIN, 'services/draft/specdec-draft'),
                            [`--model_dir=${modelDir}`, '--device=cpu', '--threads=1',
                             '--draft_layers=0'], dir);
  const gateway = await start('gateway', path.join(BIN, 'services/gateway/specdec-gateway'),
                              [`--model_dir=${modelDir}`, `--verifier=${verifier}`,
                               `--draft=${draft}`], dir);
  const client = new specdec.Gateway(gateway, grpc.credentials.createInsecure());

  const request = {prompt: 'Hello from Node,', max_new_tokens: 16,
                   speculation: {num_draft_tokens: 3}, include_rounds: true};
  const speculative = await generate(client, request);
  assert.ok(speculative.last, 'the last message carries finish_reason');
  assert.ok(['FINISH_REASON_LENGTH', 'FINISH_REASON_EOS'].includes(speculative.last.finish_reason));
  assert.strictEqual(speculative.ids.length, speculative.last.usage.generated_tokens);
  assert.ok(speculative.ids.length > 0 && speculative.ids.length <= 16);
  assert.ok(speculative.rounds.length > 0, 'rounds were asked for');
  assert.strictEqual(typeof speculative.text, 'string');
  // Speculation changes speed only: the verifier alone gives the same greedy tokens.
  const plain = await generate(client, {...request, speculation: {num_draft_tokens: 0}});
  assert.deepStrictEqual(plain.ids, speculative.ids);
  assert.strictEqual(plain.text, speculative.text);

  // Errors keep their codes across languages.
  await assert.rejects(generate(client, {prompt: '', max_new_tokens: 4}),
                       (err) => err.code === grpc.status.INVALID_ARGUMENT);

  const info = await new Promise((resolve, reject) =>
    client.GetInfo({}, (err, res) => (err ? reject(err) : resolve(res))));
  assert.strictEqual(info.model_name, 'model');
  assert.ok(info.draft_available);
  client.close();
  console.log(`node client ok: ${speculative.ids.length} tokens in ${speculative.rounds.length} ` +
              `rounds, text ${JSON.stringify(speculative.text)}`);
  fs.rmSync(dir, {recursive: true, force: true});
}

function stopAll() {
  for (const child of children) {
    if (child.exitCode === null) child.kill('SIGTERM');
  }
}

main().then(() => {
  stopAll();
  process.exit(0);
}, (err) => {
  console.error(`node client FAILED: ${err.stack || err}`);
  stopAll();
  process.exit(1);
});
