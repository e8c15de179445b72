// UTF-8 validation/repair, regex character classes and HF-compatible NFC (see unicode_text.h).
// ICU provides the Unicode data; the tables here only bridge version differences with the
// reference implementation.
#include "common/tokenizer/unicode_text.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>

#include <algorithm>
#include <iterator>

namespace specdec {
namespace {

// Length of the well-formed prefix of the sequence starting at in[i], following the Unicode
// "maximal subpart" rules. Sets *complete when a full character was read, else returns the
// length of the invalid (or truncated) subpart, at least 1.
size_t ScanSequence(const unsigned char* p, size_t avail, bool* complete, bool* truncated) {
  *complete = false;
  *truncated = false;
  const unsigned char b = p[0];
  if (b < 0x80) {
    *complete = true;
    return 1;
  }
  size_t width;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds for the second byte
  if (b >= 0xC2 && b <= 0xDF) {
    width = 2;
  } else if (b >= 0xE0 && b <= 0xEF) {
    width = 3;
    if (b == 0xE0) lo = 0xA0;
    if (b == 0xED) hi = 0x9F;
  } else if (b >= 0xF0 && b <= 0xF4) {
    width = 4;
    if (b == 0xF0) lo = 0x90;
    if (b == 0xF4) hi = 0x8F;
  } else {
    return 1;
  }
  for (size_t k = 1; k < width; ++k) {
    if (k >= avail) {
      *truncated = true;
      return k;
    }
    const unsigned char c = p[k];
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (c < l || c > h) return k;
  }
  *complete = true;
  return width;
}

}  // namespace

bool IsValidUtf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    bool complete, truncated;
    const size_t len = ScanSequence(p + i, n - i, &complete, &truncated);
    if (!complete) return false;
    i += len;
  }
  return true;
}

size_t AppendUtf8Lossy(std::string_view in, bool final, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  const size_t n = in.size();
  size_t i = 0;
  while (i < n) {
    bool complete, truncated;
    const size_t len = ScanSequence(p + i, n - i, &complete, &truncated);
    if (complete) {
      out->append(in.data() + i, len);
    } else if (truncated && !final) {
      return i;  // may still complete with the next bytes
    } else {
      out->append("\xEF\xBF\xBD");
    }
    i += len;
  }
  return n;
}

std::string Utf8Lossy(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  AppendUtf8Lossy(in, /*final=*/true, &out);
  return out;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

struct ClassRange {
  char32_t first;
  char32_t last;
  CharClass cls;
};

constexpr CharClass kL = CharClass::kLetter;
constexpr CharClass kN = CharClass::kNumber;

// Code points that are letters or numbers in Unicode 16.0 (the reference's Oniguruma 6.9.10)
// but unassigned in Unicode 15.0 (ICU 72, Debian bookworm). Found by classifying every code
// point with both; consulted only when ICU says "unassigned", so a newer ICU makes it moot.
constexpr ClassRange kUnicode16Additions[] = {
    {0x1C89, 0x1C8A, kL},   {0xA7CB, 0xA7CD, kL},   {0xA7DA, 0xA7DC, kL},   {0x105C0, 0x105F3, kL},
    {0x10D40, 0x10D49, kN}, {0x10D4A, 0x10D65, kL}, {0x10D6F, 0x10D85, kL}, {0x10EC2, 0x10EC4, kL},
    {0x11380, 0x11389, kL}, {0x1138B, 0x1138B, kL}, {0x1138E, 0x1138E, kL}, {0x11390, 0x113B5, kL},
    {0x113B7, 0x113B7, kL}, {0x113D1, 0x113D1, kL}, {0x113D3, 0x113D3, kL}, {0x116D0, 0x116E3, kN},
    {0x11BC0, 0x11BE0, kL}, {0x11BF0, 0x11BF9, kN}, {0x13460, 0x143FA, kL}, {0x16100, 0x1611D, kL},
    {0x16130, 0x16139, kN}, {0x16D40, 0x16D6C, kL}, {0x16D70, 0x16D79, kN}, {0x18CFF, 0x18CFF, kL},
    {0x1CCF0, 0x1CCF9, kN}, {0x1E5D0, 0x1E5ED, kL}, {0x1E5F0, 0x1E5F0, kL}, {0x1E5F1, 0x1E5FA, kN},
    {0x2EBF0, 0x2EE5D, kL},
};

CharClass ClassFromIcu(char32_t cp) {
  const int8_t type = u_charType(static_cast<UChar32>(cp));
  switch (type) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      return CharClass::kLetter;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      return CharClass::kNumber;
    case U_UNASSIGNED: {
      const auto* end = std::end(kUnicode16Additions);
      const auto* it =
          std::upper_bound(std::begin(kUnicode16Additions), end, cp,
                           [](char32_t c, const ClassRange& r) { return c < r.first; });
      if (it != std::begin(kUnicode16Additions) && cp <= std::prev(it)->last) {
        return std::prev(it)->cls;
      }
      return CharClass::kOther;
    }
    default:
      // Oniguruma's \s is exactly the White_Space property (25 code points).
      return u_hasBinaryProperty(static_cast<UChar32>(cp), UCHAR_WHITE_SPACE) ? CharClass::kSpace
                                                                              : CharClass::kOther;
  }
}

struct AsciiClasses {
  CharClass cls[128];
  AsciiClasses() {
    for (int c = 0; c < 128; ++c) cls[c] = ClassFromIcu(static_cast<char32_t>(c));
  }
};

// True when the reference's Unicode 9.0 tables do not know `cp` while ICU might.
bool NewerThanUnicode9(char32_t cp) {
  UVersionInfo age;
  u_charAge(static_cast<UChar32>(cp), age);
  return age[0] > 9;
}

const icu::Normalizer2& Nfc() {
  static const icu::Normalizer2* nfc = [] {
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* n = icu::Normalizer2::getNFCInstance(status);
    // ICU's NFC data is built into libicuuc; failure means a broken installation.
    if (U_FAILURE(status) || n == nullptr) std::abort();
    return n;
  }();
  return *nfc;
}

void AppendIcuNfc(std::string_view run, std::string* out) {
  if (run.empty()) return;
  UErrorCode status = U_ZERO_ERROR;
  icu::StringByteSink<std::string> sink(out, static_cast<int32_t>(run.size()));
  Nfc().normalizeUTF8(0, icu::StringPiece(run.data(), static_cast<int32_t>(run.size())), sink,
                      nullptr, status);
  if (U_FAILURE(status)) out->append(run);  // only on allocation failure; keep the text
}

}  // namespace

CharClass ClassifyCodePoint(char32_t cp) {
  static const AsciiClasses* ascii = new AsciiClasses();
  if (cp < 128) return ascii->cls[cp];
  return ClassFromIcu(cp);
}

void AppendNfc(std::string_view in, std::string* out) {
  // Below U+0300 every character is NFC-stable and composes with nothing that follows it, so
  // text without a lead byte >= 0xCC (U+0300) is already normalized.
  const bool trivial = std::none_of(in.begin(), in.end(),
                                    [](char c) { return static_cast<unsigned char>(c) >= 0xCC; });
  if (trivial) {
    out->append(in);
    return;
  }
  size_t run_start = 0;
  size_t pos = 0;
  while (pos < in.size()) {
    const size_t start = pos;
    const char32_t cp = NextCodePoint(in, &pos);
    if (cp >= 0x300 && NewerThanUnicode9(cp)) {
      AppendIcuNfc(in.substr(run_start, start - run_start), out);
      out->append(in.substr(start, pos - start));
      run_start = pos;
    }
  }
  AppendIcuNfc(in.substr(run_start), out);
}

}  // namespace specdec
