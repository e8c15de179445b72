// Helpers shared by the deploy tests: CTest's skip code, named checks that report one line
// each, and loading the npm packages (tests/deploy/package.json) or skipping without them.
'use strict';
const fs = require('fs');
const path = require('path');

const SKIP = 77;  // SKIP_RETURN_CODE in tests/deploy/CMakeLists.txt
const REPO = path.resolve(__dirname, '..', '..');

function skip(why) {
  console.log(`SKIP: ${why}`);
  process.exit(SKIP);
}

// require() from tests/deploy/node_modules, or skip with the command that installs it.
function requireOrSkip(name) {
  try {
    return require(name);
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e;
    skip(`npm package '${name}' is not installed: run ` +
         `'(cd tests/deploy && npm install --no-audit --no-fund)'`);
  }
}

// An executable on PATH (or null).
function which(name) {
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch (_) { /* not here */ }
  }
  return null;
}

class Checks {
  constructor() { this.passed = 0; this.failed = 0; }
  // Records one named check; `fn` throws (or returns a string) to fail it.
  check(name, fn) {
    let err;
    try {
      const r = fn();
      if (typeof r === 'string' && r) err = r;
    } catch (e) {
      err = e.message || String(e);
    }
    if (err) {
      this.failed++;
      console.log(`FAIL ${name}\n     ${err.split('\n').join('\n     ')}`);
    } else {
      this.passed++;
      console.log(`ok   ${name}`);
    }
  }
  finish() {
    console.log(`${this.passed} passed, ${this.failed} failed`);
    process.exit(this.failed ? 1 : 0);
  }
}

function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}

// absl flag file ("--name=value" per line, '#' comments) -> {name: value}.
function parseFlagLines(lines) {
  const flags = {};
  for (const raw of lines) {
    const line = String(raw).trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^--?([A-Za-z0-9_]+)(?:=(.*))?$/.exec(line);
    if (!m) throw new Error(`not a flag: '${line}'`);
    flags[m[1]] = m[2] === undefined ? 'true' : m[2];
  }
  return flags;
}

function portOf(hostPort) {
  const m = /:(\d+)$/.exec(hostPort || '');
  return m ? Number(m[1]) : null;
}

module.exports = {SKIP, REPO, skip, requireOrSkip, which, Checks, assert, parseFlagLines, portOf};
