// Byte-level mapping and the GPT-2 split (see byte_level.h). The split works on a per-code-point
// class array so every alternative of the regex is a short scan.
#include "common/tokenizer/byte_level.h"

#include "common/tokenizer/unicode_text.h"

namespace specdec {

const std::array<char32_t, 256>& ByteToCodePoint() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      t[b] = printable ? static_cast<char32_t>(b) : next++;
    }
    return t;
  }();
  return table;
}

bool ByteLevelToBytes(std::string_view token, std::string* bytes) {
  // Inverse table: the byte characters all lie below U+0144.
  static const std::array<int16_t, 0x144> inverse = [] {
    std::array<int16_t, 0x144> inv;
    inv.fill(-1);
    const auto& fwd = ByteToCodePoint();
    for (int b = 0; b < 256; ++b) inv[fwd[b]] = static_cast<int16_t>(b);
    return inv;
  }();
  bytes->clear();
  size_t pos = 0;
  while (pos < token.size()) {
    const char32_t cp = NextCodePoint(token, &pos);
    if (cp >= inverse.size() || inverse[cp] < 0) return false;
    bytes->push_back(static_cast<char>(inverse[cp]));
  }
  return true;
}

namespace {

struct CodePointInfo {
  char32_t cp;
  CharClass cls;
  uint32_t offset;  // byte offset in the text
};

bool IsContractionTail(const std::vector<CodePointInfo>& cps, size_t i, size_t* len) {
  // After an apostrophe at i-1: s, t, m, d, re, ve, ll (case-sensitive, as in the regex).
  const size_t n = cps.size();
  if (i >= n) return false;
  const char32_t c1 = cps[i].cp;
  if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
    *len = 2;
    return true;
  }
  if (i + 1 < n) {
    const char32_t c2 = cps[i + 1].cp;
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
      *len = 3;
      return true;
    }
  }
  return false;
}

}  // namespace

void SplitGpt2(std::string_view text, std::vector<std::string_view>* pieces) {
  thread_local std::vector<CodePointInfo> cps;
  cps.clear();
  size_t pos = 0;
  while (pos < text.size()) {
    const uint32_t offset = static_cast<uint32_t>(pos);
    const char32_t cp = NextCodePoint(text, &pos);
    cps.push_back({cp, ClassifyCodePoint(cp), offset});
  }
  const size_t n = cps.size();
  auto offset_of = [&](size_t i) { return i < n ? cps[i].offset : text.size(); };
  auto run_end = [&](size_t i, CharClass cls) {
    while (i < n && cps[i].cls == cls) ++i;
    return i;
  };

  size_t i = 0;
  while (i < n) {
    size_t end;
    size_t contraction_len;
    const CodePointInfo& c = cps[i];
    if (c.cp == '\'' && IsContractionTail(cps, i + 1, &contraction_len)) {
      end = i + contraction_len;
    } else if (c.cp == ' ' && i + 1 < n && cps[i + 1].cls != CharClass::kSpace) {
      // " ?\p{L}+", " ?\p{N}+", " ?[^\s\p{L}\p{N}]+" with the optional space taken.
      end = run_end(i + 1, cps[i + 1].cls);
    } else if (c.cls != CharClass::kSpace) {
      end = run_end(i, c.cls);
    } else {
      // "\s+(?!\S)": the run minus its last character when a non-space follows, so that
      // character can lead the next word; "\s+" when the run is a single character.
      const size_t ws_end = run_end(i, CharClass::kSpace);
      if (ws_end == n || ws_end - i == 1) {
        end = ws_end;
      } else {
        end = ws_end - 1;
      }
    }
    pieces->push_back(text.substr(offset_of(i), offset_of(end) - offset_of(i)));
    i = end;
  }
  // Do not keep a huge buffer alive on every thread after one very long input.
  if (cps.capacity() > (size_t{1} << 20)) std::vector<CodePointInfo>().swap(cps);
}

}  // namespace specdec
