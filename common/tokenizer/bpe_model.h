// The BPE model of a byte-level tokenizer.json: vocab and ranked merges, applied to one
// pre-tokenized word at a time exactly as HF tokenizers' BPE does, with a per-word cache.
#ifndef SPECDEC_COMMON_TOKENIZER_BPE_MODEL_H_
#define SPECDEC_COMMON_TOKENIZER_BPE_MODEL_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "nlohmann/json.hpp"

namespace specdec {

// Largest token id accepted from a file; keeps a hostile file from making us allocate id tables
// of billions of entries.
inline constexpr int32_t kMaxTokenId = (1 << 24) - 1;

class BpeModel {
 public:
  // `model` is the "model" object of tokenizer.json. Errors are INVALID_ARGUMENT.
  static absl::StatusOr<std::unique_ptr<BpeModel>> FromJson(const nlohmann::json& model);

  // Appends the ids of `word`, given as raw bytes (the byte-level mapping is folded into the
  // vocab at load time).
  void EncodeWord(std::string_view word, std::vector<int32_t>* ids) const;

  // Vocab string (byte-level form, e.g. "Ġthe") -> id.
  std::optional<int32_t> TokenToId(std::string_view token) const;
  // The vocab strings by id; an empty optional marks an id the vocab does not use.
  const std::vector<std::optional<std::string>>& id_to_token() const { return id_to_token_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void MergeWord(std::string_view word, std::vector<int32_t>* ids) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::optional<std::string>> id_to_token_;
  // Raw-bytes form of every vocab token that is pure byte-level, for ignore_merges lookups.
  absl::flat_hash_map<std::string, int32_t> bytes_to_id_;
  std::array<int32_t, 256> byte_ids_;  // -1 when the byte's character is not in the vocab
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;

  static constexpr size_t kMaxCachedWordBytes = 256;
  static constexpr size_t kMaxCacheEntries = 1 << 18;
  mutable absl::Mutex cache_mu_;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache_ ABSL_GUARDED_BY(cache_mu_);
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_TOKENIZER_BPE_MODEL_H_
