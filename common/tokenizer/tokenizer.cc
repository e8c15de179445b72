// Loading tokenizer.json and the encode pipeline: added tokens in the raw text, NFC, added tokens
// in the normalized text, ByteLevel split, BPE per word (the order HF tokenizers uses).
#include "common/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/tokenizer/bpe_model.h"
#include "common/tokenizer/byte_level.h"
#include "common/tokenizer/unicode_text.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

using nlohmann::json;

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", message));
}

std::string TypeOf(const json& component) {
  if (!component.is_object() || !component.contains("type") || !component["type"].is_string()) {
    return "";
  }
  return component["type"].get<std::string>();
}

absl::StatusOr<bool> OptionalBool(const json& object, const char* key, bool fallback,
                                  const std::string& where) {
  if (!object.contains(key) || object[key].is_null()) return fallback;
  if (!object[key].is_boolean())
    return Invalid(absl::StrCat(where, ".", key, " must be a boolean"));
  return object[key].get<bool>();
}

// Truncation, padding or a post-processor that adds tokens would change encode()'s output;
// refusing them beats silently giving different ids.
absl::Status CheckUnsupportedTopLevel(const json& root) {
  for (const char* key : {"truncation", "padding"}) {
    if (root.contains(key) && !root[key].is_null()) {
      return Invalid(absl::StrCat(key, " is not supported (must be null)"));
    }
  }
  if (root.contains("post_processor") && !root["post_processor"].is_null()) {
    const std::string type = TypeOf(root["post_processor"]);
    if (type != "ByteLevel") {
      return Invalid(absl::StrCat("post_processor type \"", type,
                                  "\" is not supported (only ByteLevel or null)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

Tokenizer::Tokenizer() = default;
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("cannot read tokenizer file ", path));
  return FromJson(buffer.str());
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view text) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception& e) {
    return Invalid(absl::StrCat("not valid JSON: ", e.what()));
  }
  if (!root.is_object()) return Invalid("the top level must be an object");
  auto tokenizer = std::unique_ptr<Tokenizer>(new Tokenizer());

  // Model.
  if (!root.contains("model") || !root["model"].is_object()) {
    return Invalid("\"model\" must be an object");
  }
  const std::string model_type = TypeOf(root["model"]);
  if (model_type != "BPE") {
    return Invalid(absl::StrCat("model type \"", model_type, "\" is not supported (only BPE)"));
  }
  ASSIGN_OR_RETURN(tokenizer->model_, BpeModel::FromJson(root["model"]));

  // Normalizer.
  if (root.contains("normalizer") && !root["normalizer"].is_null()) {
    const std::string type = TypeOf(root["normalizer"]);
    if (type != "NFC") {
      return Invalid(
          absl::StrCat("normalizer type \"", type, "\" is not supported (only NFC or null)"));
    }
    tokenizer->nfc_ = true;
  }

  // Pre-tokenizer: the byte-level mapping is folded into the BPE vocab, so it is required.
  const json pre = root.contains("pre_tokenizer") ? root["pre_tokenizer"] : json();
  if (TypeOf(pre) != "ByteLevel") {
    return Invalid(
        absl::StrCat("pre_tokenizer type \"", TypeOf(pre), "\" is not supported (only ByteLevel)"));
  }
  ASSIGN_OR_RETURN(tokenizer->add_prefix_space_,
                   OptionalBool(pre, "add_prefix_space", true, "pre_tokenizer"));
  ASSIGN_OR_RETURN(tokenizer->use_regex_, OptionalBool(pre, "use_regex", true, "pre_tokenizer"));

  const json decoder = root.contains("decoder") ? root["decoder"] : json();
  if (TypeOf(decoder) != "ByteLevel") {
    return Invalid(
        absl::StrCat("decoder type \"", TypeOf(decoder), "\" is not supported (only ByteLevel)"));
  }
  RETURN_IF_ERROR(CheckUnsupportedTopLevel(root));

  // Bytes of every vocab token, for decoding.
  std::string bytes;
  const auto& vocab = tokenizer->model_->id_to_token();
  tokenizer->token_bytes_.resize(vocab.size());
  for (size_t id = 0; id < vocab.size(); ++id) {
    if (!vocab[id].has_value()) continue;
    tokenizer->token_bytes_[id] = ByteLevelToBytes(*vocab[id], &bytes) ? bytes : *vocab[id];
  }

  // Added tokens.
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    const json& added = root["added_tokens"];
    if (!added.is_array()) return Invalid("added_tokens must be an array");
    absl::flat_hash_map<int32_t, std::string> added_contents;
    for (size_t i = 0; i < added.size(); ++i) {
      const json& token = added[i];
      const std::string where = absl::StrCat("added_tokens[", i, "]");
      if (!token.is_object()) return Invalid(absl::StrCat(where, " must be an object"));
      if (!token.contains("id") || !token["id"].is_number_integer()) {
        return Invalid(absl::StrCat(where, ".id must be an integer"));
      }
      const int64_t id = token["id"].get<int64_t>();
      if (id < 0 || id > kMaxTokenId) {
        return Invalid(
            absl::StrCat(where, ".id = ", id, " is out of range [0, ", kMaxTokenId, "]"));
      }
      if (!token.contains("content") || !token["content"].is_string() ||
          token["content"].get_ref<const std::string&>().empty()) {
        return Invalid(absl::StrCat(where, ".content must be a non-empty string"));
      }
      const std::string& content = token["content"].get_ref<const std::string&>();
      ASSIGN_OR_RETURN(const bool special, OptionalBool(token, "special", false, where));
      ASSIGN_OR_RETURN(const bool normalized, OptionalBool(token, "normalized", !special, where));
      for (const char* flag : {"lstrip", "rstrip", "single_word"}) {
        ASSIGN_OR_RETURN(const bool set, OptionalBool(token, flag, false, where));
        if (set) return Invalid(absl::StrCat(where, ".", flag, " = true is not supported"));
      }
      // HF gives a token that is also in the vocab the vocab's id; a file that disagrees is
      // inconsistent, and guessing which id it meant would silently change encodings.
      const std::optional<int32_t> vocab_id = tokenizer->model_->TokenToId(content);
      if (vocab_id.has_value() && *vocab_id != id) {
        return Invalid(absl::StrCat(where, " \"", content, "\" has id ", id,
                                    " but the vocab gives it id ", *vocab_id));
      }
      if (!vocab_id.has_value() && static_cast<size_t>(id) < vocab.size() &&
          vocab[id].has_value()) {
        return Invalid(absl::StrCat(where, " \"", content, "\" has id ", id,
                                    ", which the vocab already gives to \"", *vocab[id], "\""));
      }
      auto [it, inserted] = tokenizer->added_ids_.emplace(content, static_cast<int32_t>(id));
      if (!inserted && it->second != id) {
        return Invalid(absl::StrCat(where, " \"", content, "\" is listed twice with ids ",
                                    it->second, " and ", id));
      }
      auto [owner, fresh] = added_contents.emplace(static_cast<int32_t>(id), content);
      if (!fresh && owner->second != content) {
        return Invalid(absl::StrCat(where, " \"", content, "\" reuses id ", id, " of \"",
                                    owner->second, "\""));
      }
      if (static_cast<size_t>(id) >= tokenizer->token_bytes_.size()) {
        tokenizer->token_bytes_.resize(static_cast<size_t>(id) + 1);
      }
      tokenizer->token_bytes_[id] = ByteLevelToBytes(content, &bytes) ? bytes : content;
      // Normalized tokens are looked for in NFC text, so their own content is normalized too.
      if (normalized && tokenizer->nfc_) {
        std::string nfc;
        AppendNfc(content, &nfc);
        tokenizer->normalized_added_.Add(nfc, static_cast<int32_t>(id));
      } else if (normalized) {
        tokenizer->normalized_added_.Add(content, static_cast<int32_t>(id));
      } else {
        tokenizer->raw_added_.Add(content, static_cast<int32_t>(id));
      }
    }
  }
  if (tokenizer->token_bytes_.empty()) return Invalid("the vocabulary is empty");
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text) const {
  if (!IsValidUtf8(text)) return absl::InvalidArgumentError("text is not valid UTF-8");
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  thread_local std::string normalized;
  raw_added_.Split(
      text,
      [&](std::string_view piece) {
        std::string_view input = piece;
        if (nfc_) {
          normalized.clear();
          AppendNfc(piece, &normalized);
          input = normalized;
        }
        normalized_added_.Split(
            input, [&](std::string_view part) { EncodeNormalized(part, &ids); },
            [&](int32_t id) { ids.push_back(id); });
      },
      [&](int32_t id) { ids.push_back(id); });
  return ids;
}

void Tokenizer::EncodeNormalized(std::string_view text, std::vector<int32_t>* ids) const {
  std::string prefixed;
  if (add_prefix_space_ && !text.empty() && text[0] != ' ') {
    prefixed = std::string(" ").append(text);
    text = prefixed;
  }
  if (!use_regex_) {
    model_->EncodeWord(text, ids);
    return;
  }
  thread_local std::vector<std::string_view> words;
  words.clear();
  SplitGpt2(text, &words);
  for (std::string_view word : words) model_->EncodeWord(word, ids);
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out;
  for (int32_t id : ids) AppendTokenBytes(id, &out);
  return out;
}

bool Tokenizer::AppendTokenBytes(int32_t id, std::string* out) const {
  if (id < 0 || static_cast<size_t>(id) >= token_bytes_.size() || !token_bytes_[id]) return false;
  out->append(*token_bytes_[id]);
  return true;
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  auto it = added_ids_.find(absl::string_view(token.data(), token.size()));
  if (it != added_ids_.end()) return it->second;
  return model_->TokenToId(token);
}

}  // namespace specdec
