// A byte trie for the handful of added tokens; a first-byte filter keeps the scan cheap.
#include "common/tokenizer/added_tokens.h"

#include <algorithm>

namespace specdec {

int32_t AddedTokenMatcher::Child(int32_t node, unsigned char byte) const {
  const auto& children = nodes_[node].children;
  auto it = std::lower_bound(children.begin(), children.end(), byte,
                             [](const auto& c, unsigned char b) { return c.first < b; });
  return it != children.end() && it->first == byte ? it->second : -1;
}

void AddedTokenMatcher::Add(std::string_view content, int32_t id) {
  if (content.empty()) return;
  first_byte_[static_cast<unsigned char>(content[0])] = true;
  int32_t node = 0;
  for (unsigned char c : content) {
    int32_t next = Child(node, c);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
      auto& children = nodes_[node].children;
      children.insert(std::lower_bound(children.begin(), children.end(), c,
                                       [](const auto& x, unsigned char b) { return x.first < b; }),
                      {c, next});
    }
    node = next;
  }
  if (nodes_[node].token_id < 0) nodes_[node].token_id = id;
}

bool AddedTokenMatcher::LongestAt(std::string_view text, size_t start, size_t* len,
                                  int32_t* id) const {
  int32_t node = 0;
  bool found = false;
  for (size_t i = start; i < text.size(); ++i) {
    node = Child(node, static_cast<unsigned char>(text[i]));
    if (node < 0) break;
    if (nodes_[node].token_id >= 0) {
      found = true;
      *len = i + 1 - start;
      *id = nodes_[node].token_id;
    }
  }
  return found;
}

}  // namespace specdec
