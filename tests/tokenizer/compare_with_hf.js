// Differential test: specdec-tokenize against Hugging Face tokenizers (npm `tokenizers`, the
// Rust library's official Node binding) on thousands of generated strings and id sequences.
// Usage: node compare_with_hf.js --tokenizer FILE --bin specdec-tokenize [--count N] [--seed S]
// Needs NODE_PATH (or a node_modules above) to resolve `tokenizers`; see compare_with_hf.sh.
'use strict';
const { spawnSync } = require('child_process');
const { Tokenizer } = require('tokenizers');

function parseArgs() {
  const args = { count: 5000, seed: 1 };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];
  args.count = Number(args.count);
  args.seed = Number(args.seed);
  if (!args.tokenizer || !args.bin) throw new Error('need --tokenizer FILE --bin PATH');
  return args;
}

// mulberry32: a small seeded PRNG so failures reproduce with the same --seed.
function makeRng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const args = parseArgs();
const rnd = makeRng(args.seed);
const int = (n) => Math.floor(rnd() * n);
const pick = (xs) => xs[int(xs.length)];
const cp = (c) => String.fromCodePoint(c);
const fromRange = ([lo, hi]) => cp(lo + int(hi - lo + 1));

// Blocks from many scripts, plus marks and symbols, including characters newer than Unicode 9
// (the reference's NFC tables) and Unicode 16 letters (its regex tables).
const SCRIPT_RANGES = [
  [0x41, 0x5a], [0x61, 0x7a], [0xc0, 0x24f], [0x370, 0x3ff], [0x400, 0x4ff], [0x531, 0x58f],
  [0x5d0, 0x5ea], [0x600, 0x6ff], [0x750, 0x77f], [0x7c0, 0x7ff], [0x860, 0x8ff], [0x900, 0x97f],
  [0x980, 0x9ff], [0xb80, 0xbff], [0xc00, 0xd7f], [0xe00, 0xe7f], [0xf00, 0xfff],
  [0x10a0, 0x10ff], [0x1100, 0x11ff], [0x1200, 0x137f], [0x13a0, 0x13ff], [0x1780, 0x17ff],
  [0x1ab0, 0x1aff], [0x1c80, 0x1cbf], [0x1dc0, 0x1dff], [0x1e00, 0x1fff], [0x2000, 0x206f],
  [0x20a0, 0x20ff], [0x2100, 0x21ff], [0x2460, 0x24ff], [0x2500, 0x27bf], [0x3000, 0x30ff],
  [0x3130, 0x318f], [0x4e00, 0x9fff], [0xa640, 0xa69f], [0xa7c0, 0xa7ff], [0xac00, 0xd7a3],
  [0xf900, 0xfaff], [0xfb00, 0xfb4f], [0xfe00, 0xfe0f], [0xfe70, 0xfeff], [0xff00, 0xffef],
  [0x10000, 0x100ff], [0x105c0, 0x105ff], [0x10d00, 0x10d8f], [0x10ec0, 0x10eff],
  [0x10f30, 0x10f8f], [0x11000, 0x1107f], [0x11100, 0x1114f], [0x11900, 0x1195f],
  [0x11f00, 0x11f5f], [0x16100, 0x1613f], [0x16d40, 0x16d7f], [0x1d400, 0x1d7ff],
  [0x1e000, 0x1e02f], [0x1e4d0, 0x1e4ff], [0x1e900, 0x1e95f], [0x1f300, 0x1faff],
  [0x20000, 0x2a6df], [0x31350, 0x323af], [0xe0000, 0xe007f],
];
const MARK_RANGES = [
  [0x300, 0x36f], [0x483, 0x489], [0x591, 0x5c7], [0x610, 0x61a], [0x64b, 0x65f], [0x7eb, 0x7fd],
  [0x898, 0x89f], [0x8ca, 0x8ff], [0x93c, 0x94d], [0x9bc, 0x9fe], [0xc3c, 0xc4d], [0xd3b, 0xd4d],
  [0xe31, 0xe4e], [0x1ab0, 0x1ace], [0x1dc0, 0x1dff], [0x20d0, 0x20f0], [0x3099, 0x309a],
  [0xfe20, 0xfe2f], [0x10d24, 0x10d27], [0x10f46, 0x10f50], [0x11930, 0x11943],
  [0x1d165, 0x1d1ad], [0x1e8d0, 0x1e8d6], [0x1e944, 0x1e94a], [0x0345, 0x0345],
];
const SPACES = [' ', ' ', ' ', ' ', '\t', '\n', '\r\n', '\r', '\u000b', '\u000c', '\u0085',
  '\u00a0', '\u1680', '\u2000', '\u2007', '\u200a', '\u2028', '\u2029', '\u202f', '\u205f',
  '\u3000', '\u200b', '\ufeff', '\u180e'];
const WORDS = ['the', 'The', 'hello', 'world', 'token', 'GPT', 'NeoX', 'café', 'naïve', 'Straße',
  'über', 'don', 'isn', 'you', 'I', 'a', 'x', 'über', 'ÅNGSTRÖM', 'ﬁ', 'Ⅻ', '½', '٣', '߀'];
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M",
  "'LL", "'D", "'", "''", "'x", "’s"];
const CODE = ['def', 'return', '(', ')', '{', '}', '[', ']', ';', '->', '=>', '==', '!=', '&&',
  '||', '::', '<<', '>>', '/*', '*/', '//', '#include', '<stdio.h>', '0x1F', '"str"', "'c'",
  '\\n', '\\', '`', '${x}', '    ', '\t', '\n', 'std::vector<int>', 'fn main()', '@decorator'];
const SPECIAL = ['<|endoftext|>', '<|padding|>', '<|endoftext', '|>', '<|', '<|prompt|>',
  '<|endoftext|><|endoftext|>', '<|ENDOFTEXT|>'];
const EMOJI = ['👋', '🌍', '😀', '👨\u200d👩\u200d👧\u200d👦', '👍🏽', '1\ufe0f\u20e3', '❤\ufe0f',
  '🇺🇸', '🏳️‍🌈', '🤣', '\u{1FAE8}', '\u{1F9D1}\u200d\u{1F4BB}'];

function digits() {
  let s = '';
  const n = 1 + int(25);
  for (let i = 0; i < n; i++) s += String(int(10));
  return s;
}
function spaceRun() {
  let s = '';
  const n = 1 + int(rnd() < 0.2 ? 60 : 4);
  for (let i = 0; i < n; i++) s += rnd() < 0.6 ? ' ' : pick(SPACES);
  return s;
}
function scriptText(n) {
  let s = '';
  for (let i = 0; i < n; i++) s += fromRange(pick(SCRIPT_RANGES));
  return s;
}
function anyCodePoint() {
  for (;;) {
    const plane = rnd() < 0.7 ? 0 : int(17);
    const c = plane * 0x10000 + int(0x10000);
    if (c < 0xd800 || c > 0xdfff) return cp(c);
  }
}
function withMarks() {
  let s = pick([...'aeiouAEOnNcCsSzZ', 'ᄀ', '가', 'क', 'ا', 'α', 'ω', '\u{11935}', 'x']);
  const n = int(6);
  for (let i = 0; i < n; i++) s += rnd() < 0.15 ? '\u{11930}' : fromRange(pick(MARK_RANGES));
  return s;
}
function lossyBytes() {
  const bytes = new Uint8Array(1 + int(40));
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = rnd() < 0.5 ? 0x20 + int(0x60) : int(256);
  }
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes);
}

const PARTS = [
  () => pick(WORDS), () => ' ' + pick(WORDS), spaceRun, spaceRun, digits, () => pick(CONTRACTIONS),
  () => pick(CODE), () => pick(SPECIAL), () => pick(EMOJI), () => scriptText(1 + int(8)),
  () => anyCodePoint(), withMarks, lossyBytes, () => pick(['.', ',', '!', '?', '-', '"', '…']),
];

function generate(i) {
  const kind = i % 8;
  const parts = [];
  if (kind === 0) {  // pure random code points over all planes
    const n = 1 + int(30);
    let s = '';
    for (let k = 0; k < n; k++) s += rnd() < 0.3 ? pick(SPACES) : anyCodePoint();
    return s;
  }
  if (kind === 1) return lossyBytes();
  if (kind === 2) {  // whitespace soup
    let s = '';
    const n = 1 + int(12);
    for (let k = 0; k < n; k++) s += rnd() < 0.5 ? spaceRun() : pick(WORDS);
    return s;
  }
  if (kind === 3) {  // combining marks and composition
    let s = '';
    const n = 1 + int(8);
    for (let k = 0; k < n; k++) s += withMarks() + (rnd() < 0.3 ? ' ' : '');
    return s;
  }
  const n = 1 + int(kind === 7 ? 80 : 20);
  for (let k = 0; k < n; k++) parts.push(pick(PARTS)());
  return parts.join(rnd() < 0.5 ? '' : ' ');
}

function runOurs(lines, decode) {
  const cmd = [args.bin, '--tokenizer', args.tokenizer].concat(decode ? ['--decode'] : []);
  const r = spawnSync(cmd[0], cmd.slice(1), {
    input: lines.join('\n') + '\n', maxBuffer: 1 << 30, encoding: 'utf8' });
  if (r.error) throw r.error;
  if (r.stderr) process.stderr.write(r.stderr.slice(0, 2000));
  const out = r.stdout.split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));
  if (out.length !== lines.length) {
    throw new Error(`specdec-tokenize answered ${out.length} of ${lines.length} lines`);
  }
  return out;
}

function escape(s) {
  return JSON.stringify(s).replace(/[\u007f-\uffff]/g,
    (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

async function main() {
  const hf = Tokenizer.fromFile(args.tokenizer);
  const vocabSize = hf.getVocabSize(true);
  let mismatches = 0;
  const report = (what, input, want, got) => {
    if (++mismatches <= 20) {
      console.log(`MISMATCH ${what}\n  input: ${input}\n  hf:    ${want}\n  ours:  ${got}`);
    }
  };

  // Encode.
  const texts = [];
  for (let i = 0; i < args.count; i++) texts.push(generate(i));
  const ours = runOurs(texts.map((t) => JSON.stringify({ text: t })), false);
  let tokens = 0;
  for (let i = 0; i < texts.length; i++) {
    const want = (await hf.encode(texts[i])).getIds();
    tokens += want.length;
    const got = ours[i].ids;
    if (JSON.stringify(want) !== JSON.stringify(got)) {
      report('encode', escape(texts[i]), JSON.stringify(want), JSON.stringify(got));
    }
  }

  // Decode: random ids (many of them byte tokens that cut characters) and special tokens.
  const idLists = [];
  for (let i = 0; i < Math.max(200, args.count / 5); i++) {
    const n = int(12);
    const ids = [];
    for (let k = 0; k < n; k++) {
      const r = rnd();
      ids.push(r < 0.3 ? int(256) + 0 : r < 0.4 ? pick([0, 1, 50254, 50270, 50276]) : int(vocabSize));
    }
    idLists.push(ids);
  }
  const decoded = runOurs(idLists.map((ids) => JSON.stringify({ ids })), true);
  for (let i = 0; i < idLists.length; i++) {
    const want = await hf.decode(idLists[i], false);
    if (want !== decoded[i].text) {
      report('decode', JSON.stringify(idLists[i]), escape(want), escape(decoded[i].text));
    }
  }

  console.log(`seed ${args.seed}: ${texts.length} texts (${tokens} tokens), ` +
              `${idLists.length} id lists, ${mismatches} mismatches`);
  process.exit(mismatches === 0 ? 0 : 1);
}

main().catch((e) => { console.error(e); process.exit(2); });
