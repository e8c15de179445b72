// Encode throughput, single thread: HF tokenizers (npm binding of the Rust library) and
// specdec's tokenizer_bench on the same corpus, written as a markdown table row set.
// Usage: node tokenize_throughput.js --tokenizer FILE --bench BIN --out corpus.jsonl [--mb 4]
'use strict';
const fs = require('fs');
const path = require('path');
const { execFileSync } = require('child_process');
const { Tokenizer } = require('tokenizers');

const args = { mb: 4, repeats: 3 };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
const target = Number(args.mb) * 1e6;

// Corpus: English prose (Debian copyright/README files), source code and markdown from this
// repository, and multilingual text from the tokenizer fixture; files in sorted order, so the
// same machine always builds the same corpus.
function listFiles(dir, accept, out = []) {
  let entries;
  try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch (e) { return out; }
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const p = path.join(dir, e.name);
    if (e.isDirectory() && !e.name.startsWith('.') && !e.name.startsWith('build') &&
        e.name !== 'node_modules') {
      listFiles(p, accept, out);
    } else if (e.isFile() && accept(p)) {
      out.push(p);
    }
  }
  return out;
}
const repo = path.resolve(__dirname, '../..');
const docs = [];
let bytes = 0;
function addFiles(files, budget) {
  let used = 0;
  for (const f of files) {
    if (used >= budget) break;
    const text = fs.readFileSync(f, 'utf8');
    if (text.includes('\ufffd') || text.length === 0) continue;  // binary or not UTF-8
    for (let i = 0; i < text.length && used < budget; i += 16384) {
      const chunk = text.slice(i, i + 16384);
      docs.push(chunk);
      const n = Buffer.byteLength(chunk);
      used += n;
      bytes += n;
    }
  }
}
addFiles(listFiles(repo, (p) => /\.(md|cc|h|txt|proto|py|js|sh)$/.test(p) &&
                                !p.includes('/assets/')), target * 0.25);
const fixture = fs.readFileSync(path.join(repo, 'tests/data/tokenizer/gpt-neox-20b.jsonl'), 'utf8')
  .split('\n').filter((l) => l).map((l) => JSON.parse(l).text).join('\n');
for (let i = 0; bytes < target * 0.35; i++) {
  docs.push(fixture);
  bytes += Buffer.byteLength(fixture);
}
addFiles(listFiles('/usr/share/doc', (p) => /(copyright|README[^/]*|\.md|\.txt)$/.test(p) &&
                                           !p.endsWith('.gz')), target - bytes);
fs.writeFileSync(args.out, docs.map((t) => JSON.stringify({ text: t })).join('\n') + '\n');

async function main() {
  const hf = Tokenizer.fromFile(args.tokenizer);
  let best = Infinity, first = 0, tokens = 0, checksum = 0n;
  for (let r = 0; r < Number(args.repeats); r++) {
    tokens = 0;
    const ids = [];
    const start = process.hrtime.bigint();
    for (const d of docs) ids.push((await hf.encode(d)).getIds());
    const s = Number(process.hrtime.bigint() - start) / 1e9;
    if (r === 0) {
      first = s;
      checksum = 0n;
      for (const list of ids) {
        for (const id of list) checksum = (checksum * 1000003n + BigInt(id)) & 0xffffffffffffffffn;
      }
    }
    for (const list of ids) tokens += list.length;
    best = Math.min(best, s);
  }
  const ours = JSON.parse(execFileSync(args.bench, [args.tokenizer, args.out, String(args.repeats)],
                                       { encoding: 'utf8' }));
  const same = ours.checksum === checksum.toString() && ours.tokens === tokens;
  const mb = bytes / 1e6;
  console.log(`corpus: ${docs.length} documents, ${mb.toFixed(2)} MB, ${tokens} tokens; ` +
              `ids identical: ${same ? 'yes' : 'NO'}`);
  console.log('| implementation | first pass MB/s | best of ' + args.repeats + ' MB/s | tokens/s (best) |');
  console.log('| --- | ---: | ---: | ---: |');
  console.log(`| HF tokenizers 0.23.2 (npm, Rust) | ${(mb / first).toFixed(2)} | ` +
              `${(mb / best).toFixed(2)} | ${(tokens / best / 1e6).toFixed(2)} M |`);
  console.log(`| specdec_tokenizer | ${ours.first_pass_mb_s.toFixed(2)} | ` +
              `${ours.best_mb_s.toFixed(2)} | ${(ours.tokens / ours.best_s / 1e6).toFixed(2)} M |`);
  process.exit(same ? 0 : 1);
}
main().catch((e) => { console.error(e); process.exit(2); });
