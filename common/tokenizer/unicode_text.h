// UTF-8 and Unicode helpers for the tokenizer: validation, lossy repair, the character classes of
// the GPT-2 split regex, and NFC exactly as Hugging Face tokenizers computes it.
#ifndef SPECDEC_COMMON_TOKENIZER_UNICODE_TEXT_H_
#define SPECDEC_COMMON_TOKENIZER_UNICODE_TEXT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace specdec {

// True when `text` is well-formed UTF-8 (no surrogates, no overlongs, nothing above U+10FFFF).
bool IsValidUtf8(std::string_view text);

// Appends `in` to `out` with every ill-formed subsequence replaced by U+FFFD, one replacement per
// maximal subpart, which is what Rust's String::from_utf8_lossy (and so HF decode) does.
// When `final` is false, an incomplete but so-far-valid sequence at the end is left unconsumed so a
// stream can complete it later. Returns the number of bytes of `in` consumed.
size_t AppendUtf8Lossy(std::string_view in, bool final, std::string* out);

// Convenience: the whole of `in` repaired.
std::string Utf8Lossy(std::string_view in);

// Decodes the code point starting at in[*pos] (which must be valid UTF-8) and advances *pos.
inline char32_t NextCodePoint(std::string_view in, size_t* pos) {
  const auto* p = reinterpret_cast<const unsigned char*>(in.data()) + *pos;
  if (p[0] < 0x80) {
    *pos += 1;
    return p[0];
  }
  if (p[0] < 0xE0) {
    *pos += 2;
    return ((p[0] & 0x1Fu) << 6) | (p[1] & 0x3Fu);
  }
  if (p[0] < 0xF0) {
    *pos += 3;
    return ((p[0] & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu);
  }
  *pos += 4;
  return ((p[0] & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu);
}

void AppendUtf8(char32_t cp, std::string* out);

// The classes the GPT-2 split regex distinguishes: \p{L}, \p{N}, \s, and everything else.
enum class CharClass : uint8_t { kLetter, kNumber, kSpace, kOther };

// As the reference's Oniguruma (Unicode 16.0) sees the code point; ICU supplies the data and a
// small table adds the Unicode 16.0 letters and numbers an older ICU does not know yet.
CharClass ClassifyCodePoint(char32_t cp);

// NFC of valid UTF-8 `in`, appended to `out`, matching HF tokenizers' NFC normalizer. That one
// uses the unicode-normalization-alignments crate, whose tables are Unicode 9.0: characters
// assigned later are opaque starters to it (no reordering, no composition), so they are copied
// through and split the text into independently normalized runs.
void AppendNfc(std::string_view in, std::string* out);

}  // namespace specdec

#endif  // SPECDEC_COMMON_TOKENIZER_UNICODE_TEXT_H_
