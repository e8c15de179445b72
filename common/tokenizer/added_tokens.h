// Finds added tokens (e.g. "<|endoftext|>", runs of spaces) in text before pre-tokenization,
// leftmost-longest like the Aho-Corasick matcher HF tokenizers uses.
#ifndef SPECDEC_COMMON_TOKENIZER_ADDED_TOKENS_H_
#define SPECDEC_COMMON_TOKENIZER_ADDED_TOKENS_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace specdec {

class AddedTokenMatcher {
 public:
  // `content` must be non-empty. A repeated content keeps the first id.
  void Add(std::string_view content, int32_t id);
  bool empty() const { return nodes_.size() <= 1; }

  // Calls on_text(piece) for each stretch of text between matches (never empty) and
  // on_token(id) for each match, in order.
  template <typename OnText, typename OnToken>
  void Split(std::string_view text, OnText on_text, OnToken on_token) const {
    if (empty()) {
      if (!text.empty()) on_text(text);
      return;
    }
    size_t last = 0;
    size_t i = 0;
    while (i < text.size()) {
      size_t len;
      int32_t id;
      if (first_byte_[static_cast<unsigned char>(text[i])] && LongestAt(text, i, &len, &id)) {
        if (i > last) on_text(text.substr(last, i - last));
        on_token(id);
        i += len;
        last = i;
      } else {
        ++i;
      }
    }
    if (last < text.size()) on_text(text.substr(last));
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // sorted by byte
    int32_t token_id = -1;
  };
  bool LongestAt(std::string_view text, size_t start, size_t* len, int32_t* id) const;
  int32_t Child(int32_t node, unsigned char byte) const;

  std::vector<Node> nodes_ = std::vector<Node>(1);
  std::array<bool, 256> first_byte_{};
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_TOKENIZER_ADDED_TOKENS_H_
