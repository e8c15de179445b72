// Byte-level BPE tokenizer read from a Hugging Face tokenizer.json (GPT-NeoX-20B, GPT-2 style),
// giving the same ids as HF tokenizers' encode() with special tokens recognised in the text and
// no BOS/EOS added. No libtorch, no Python: ICU, Abseil and nlohmann_json only.
#ifndef SPECDEC_COMMON_TOKENIZER_TOKENIZER_H_
#define SPECDEC_COMMON_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/tokenizer/added_tokens.h"

namespace specdec {

class BpeModel;

// Immutable after loading; Encode/Decode may be called from many threads at once.
class Tokenizer {
 public:
  // Reads a tokenizer.json. NOT_FOUND when unreadable; INVALID_ARGUMENT when the file is not
  // valid JSON, is malformed, or asks for something this implementation does not do (a model
  // other than BPE, a pre-tokenizer other than ByteLevel, ...), the message saying which.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view json);

  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Text -> ids. INVALID_ARGUMENT when `text` is not valid UTF-8.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text) const;

  // Ids -> bytes, special tokens included. The result can be invalid UTF-8 when `ids` cut a
  // character (use Utf8Lossy() from unicode_text.h or IncrementalDecoder for display). Ids that
  // name no token are skipped, as HF's decode does.
  std::string Decode(absl::Span<const int32_t> ids) const;
  // Appends the bytes of one token; false (nothing appended) when `id` names no token.
  bool AppendTokenBytes(int32_t id, std::string* out) const;

  // One more than the largest id (50277 for GPT-NeoX-20B).
  int vocab_size() const { return static_cast<int>(token_bytes_.size()); }

  // Id of an added token ("<|endoftext|>") or of a vocab entry in its byte-level spelling
  // ("Ġthe"); nullopt when there is none.
  std::optional<int32_t> TokenId(std::string_view token) const;

 private:
  Tokenizer();
  void EncodeNormalized(std::string_view text, std::vector<int32_t>* ids) const;

  std::unique_ptr<BpeModel> model_;
  // Added tokens matched in the raw text ("normalized": false) and in the NFC text.
  AddedTokenMatcher raw_added_;
  AddedTokenMatcher normalized_added_;
  absl::flat_hash_map<std::string, int32_t> added_ids_;
  bool nfc_ = false;
  bool add_prefix_space_ = false;
  bool use_regex_ = true;
  std::vector<std::optional<std::string>> token_bytes_;  // by id; nullopt for unused ids
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_TOKENIZER_TOKENIZER_H_
