// GPT-2 byte-level pieces: the byte <-> printable-character mapping that vocab strings use, and
// the hand-written equivalent of the GPT-2 split regex (RE2 has no lookahead).
#ifndef SPECDEC_COMMON_TOKENIZER_BYTE_LEVEL_H_
#define SPECDEC_COMMON_TOKENIZER_BYTE_LEVEL_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace specdec {

// The code point GPT-2's bytes_to_unicode() assigns to each byte.
const std::array<char32_t, 256>& ByteToCodePoint();

// Maps a vocab string back to raw bytes. Returns false when some character is not one of the 256
// byte characters (HF's ByteLevel decoder then keeps that token's own UTF-8 bytes).
bool ByteLevelToBytes(std::string_view token, std::string* bytes);

// Splits valid UTF-8 `text` like
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// under Oniguruma's leftmost-first semantics, appending the pieces (views into `text`).
void SplitGpt2(std::string_view text, std::vector<std::string_view>* pieces);

}  // namespace specdec

#endif  // SPECDEC_COMMON_TOKENIZER_BYTE_LEVEL_H_
