// BPE loading and merging (see bpe_model.h). The merge loop mirrors HF's Word::merge_all: a
// min-heap of (rank, position) candidates, stale entries skipped when popped.
#include "common/tokenizer/bpe_model.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/tokenizer/byte_level.h"
#include "common/tokenizer/unicode_text.h"

namespace specdec {
namespace {

using nlohmann::json;

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", message));
}

// Merges come as "a b" strings (classic format) or ["a", "b"] pairs (tokenizers >= 0.20).
absl::Status ParseMergeEntry(const json& entry, size_t index, std::string* a, std::string* b) {
  if (entry.is_string()) {
    const std::string& s = entry.get_ref<const std::string&>();
    const size_t space = s.find(' ');
    if (space == std::string::npos || s.find(' ', space + 1) != std::string::npos) {
      return Invalid(absl::StrCat("model.merges[", index, "] is not of the form \"a b\""));
    }
    *a = s.substr(0, space);
    *b = s.substr(space + 1);
    return absl::OkStatus();
  }
  if (entry.is_array() && entry.size() == 2 && entry[0].is_string() && entry[1].is_string()) {
    *a = entry[0].get<std::string>();
    *b = entry[1].get<std::string>();
    return absl::OkStatus();
  }
  return Invalid(absl::StrCat("model.merges[", index, "] must be \"a b\" or [\"a\", \"b\"]"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const json& model) {
  auto bpe = std::unique_ptr<BpeModel>(new BpeModel());

  // Options this implementation does not reproduce are refused rather than ignored.
  if (model.contains("dropout") && !model["dropout"].is_null()) {
    if (!model["dropout"].is_number() || model["dropout"].get<double>() != 0.0) {
      return Invalid("model.dropout is not supported (must be null)");
    }
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() &&
        !(model[key].is_string() && model[key].get_ref<const std::string&>().empty())) {
      return Invalid(absl::StrCat("model.", key, " is not supported (must be null)"));
    }
  }
  for (const char* key : {"fuse_unk", "byte_fallback", "ignore_merges"}) {
    if (model.contains(key) && !model[key].is_null() && !model[key].is_boolean()) {
      return Invalid(absl::StrCat("model.", key, " must be a boolean"));
    }
  }
  if (model.contains("byte_fallback") && model["byte_fallback"].is_boolean() &&
      model["byte_fallback"].get<bool>()) {
    return Invalid("model.byte_fallback is not supported");
  }
  bpe->fuse_unk_ =
      model.contains("fuse_unk") && model["fuse_unk"].is_boolean() && model["fuse_unk"].get<bool>();
  bpe->ignore_merges_ = model.contains("ignore_merges") && model["ignore_merges"].is_boolean() &&
                        model["ignore_merges"].get<bool>();

  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return Invalid("model.vocab must be an object of token -> id");
  }
  const json& vocab = model["vocab"];
  int32_t max_id = -1;
  bpe->vocab_.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) {
      return Invalid(absl::StrCat("model.vocab[\"", it.key(), "\"] is not an integer id"));
    }
    const int64_t id = it.value().get<int64_t>();
    if (id < 0 || id > kMaxTokenId) {
      return Invalid(absl::StrCat("model.vocab[\"", it.key(), "\"] = ", id, " is out of range [0, ",
                                  kMaxTokenId, "]"));
    }
    bpe->vocab_.emplace(it.key(), static_cast<int32_t>(id));
    max_id = std::max(max_id, static_cast<int32_t>(id));
  }
  bpe->id_to_token_.resize(static_cast<size_t>(max_id + 1));
  for (const auto& [token, id] : bpe->vocab_) {
    if (bpe->id_to_token_[id].has_value()) {
      return Invalid(absl::StrCat("model.vocab gives id ", id, " to both \"",
                                  *bpe->id_to_token_[id], "\" and \"", token, "\""));
    }
    bpe->id_to_token_[id] = token;
  }
  std::string bytes;
  for (const auto& [token, id] : bpe->vocab_) {
    if (ByteLevelToBytes(token, &bytes)) bpe->bytes_to_id_.emplace(bytes, id);
  }
  const auto& byte_cp = ByteToCodePoint();
  for (int b = 0; b < 256; ++b) {
    std::string s;
    AppendUtf8(byte_cp[b], &s);
    auto it = bpe->vocab_.find(s);
    bpe->byte_ids_[b] = it == bpe->vocab_.end() ? -1 : it->second;
  }

  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    if (!model["unk_token"].is_string()) return Invalid("model.unk_token must be a string or null");
    const std::string& unk = model["unk_token"].get_ref<const std::string&>();
    auto it = bpe->vocab_.find(unk);
    if (it == bpe->vocab_.end()) {
      return Invalid(absl::StrCat("model.unk_token \"", unk, "\" is not in the vocab"));
    }
    bpe->unk_id_ = it->second;
  }

  if (!model.contains("merges") || !model["merges"].is_array()) {
    return Invalid("model.merges must be an array");
  }
  const json& merges = model["merges"];
  bpe->merges_.reserve(merges.size());
  std::string a, b;
  for (size_t i = 0; i < merges.size(); ++i) {
    if (auto status = ParseMergeEntry(merges[i], i, &a, &b); !status.ok()) return status;
    auto ia = bpe->vocab_.find(a);
    auto ib = bpe->vocab_.find(b);
    auto iab = bpe->vocab_.find(a + b);
    for (auto [it, name] : {std::pair{ia, &a}, std::pair{ib, &b}}) {
      if (it == bpe->vocab_.end()) {
        return Invalid(
            absl::StrCat("model.merges[", i, "] names \"", *name, "\", which is not in the vocab"));
      }
    }
    if (iab == bpe->vocab_.end()) {
      return Invalid(
          absl::StrCat("model.merges[", i, "] makes \"", a, b, "\", which is not in the vocab"));
    }
    // Later duplicates overwrite earlier ones, as when HF collects the merges into a map.
    bpe->merges_[PairKey(ia->second, ib->second)] = Merge{static_cast<int32_t>(i), iab->second};
  }
  return bpe;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(absl::string_view(token.data(), token.size()));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (word.size() <= kMaxCachedWordBytes) {
    {
      absl::ReaderMutexLock lock(&cache_mu_);
      auto it = cache_.find(absl::string_view(word.data(), word.size()));
      if (it != cache_.end()) {
        ids->insert(ids->end(), it->second.begin(), it->second.end());
        return;
      }
    }
    const size_t first = ids->size();
    MergeWord(word, ids);
    absl::MutexLock lock(&cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(ids->begin() + first, ids->end()));
    return;
  }
  MergeWord(word, ids);
}

void BpeModel::MergeWord(std::string_view word, std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    auto it = bytes_to_id_.find(absl::string_view(word.data(), word.size()));
    if (it != bytes_to_id_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  struct Symbol {
    int32_t id;
    int32_t prev;
    int32_t next;
    bool alive;
  };
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  // One symbol per byte; a byte missing from the vocab becomes unk (fused if asked) or, with no
  // unk token, is dropped, which is what HF does.
  for (unsigned char c : word) {
    int32_t id = byte_ids_[c];
    if (id < 0) {
      if (!unk_id_.has_value()) continue;
      if (fuse_unk_ && !symbols.empty() && symbols.back().id == *unk_id_) continue;
      id = *unk_id_;
    }
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, true});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t new_id;
  };
  // Min-heap on (rank, pos): the lowest rank first, the leftmost among equals.
  auto later = [](const Candidate& x, const Candidate& y) {
    return x.rank != y.rank ? x.rank > y.rank : x.pos > y.pos;
  };
  thread_local std::vector<Candidate> heap;
  heap.clear();
  auto push_pair = [&](int32_t pos) {
    const int32_t next = symbols[pos].next;
    if (next < 0) return;
    auto it = merges_.find(PairKey(symbols[pos].id, symbols[next].id));
    if (it == merges_.end()) return;
    heap.push_back({it->second.rank, pos, it->second.new_id});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (!left.alive || left.next < 0) continue;
    const int32_t right_pos = left.next;
    Symbol& right = symbols[right_pos];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.new_id != top.new_id) continue;  // stale candidate
    left.id = top.new_id;
    left.next = right.next;
    right.alive = false;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) ids->push_back(symbols[i].id);
}

}  // namespace specdec
