// Parsing and validation of GPT-NeoX config.json (see config.h).
#include "common/model/config.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

using nlohmann::json;

// Reads `key` into `out` when present; a wrong type is an error naming the key.
template <typename T>
absl::Status ReadField(const json& root, const char* key, bool required, T* out,
                       absl::string_view source) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) {
    if (required) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": missing required field \"", key, "\""));
    }
    return absl::OkStatus();
  }
  bool ok;
  if constexpr (std::is_same_v<T, bool>) {
    ok = it->is_boolean();
  } else if constexpr (std::is_integral_v<T>) {
    ok = it->is_number_integer();
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = it->is_number();
  } else {
    ok = it->is_string();
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": field \"", key, "\" has the wrong type (", it->type_name(), ")"));
  }
  *out = it->get<T>();
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text, absl::string_view source) {
  json root = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": not a JSON object"));
  ModelConfig c;
#define SPECDEC_READ(key, required)                                               \
  if (auto s = ReadField(root, #key, required, &c.key, source); !s.ok()) return s
  SPECDEC_READ(model_type, false);
  SPECDEC_READ(vocab_size, true);
  SPECDEC_READ(hidden_size, true);
  SPECDEC_READ(num_hidden_layers, true);
  SPECDEC_READ(num_attention_heads, true);
  SPECDEC_READ(intermediate_size, true);
  SPECDEC_READ(max_position_embeddings, true);
  SPECDEC_READ(rotary_pct, false);
  SPECDEC_READ(rotary_emb_base, false);
  SPECDEC_READ(layer_norm_eps, false);
  SPECDEC_READ(hidden_act, false);
  SPECDEC_READ(use_parallel_residual, false);
  SPECDEC_READ(tie_word_embeddings, false);
  SPECDEC_READ(attention_bias, false);
  SPECDEC_READ(bos_token_id, false);
  SPECDEC_READ(eos_token_id, false);
  SPECDEC_READ(torch_dtype, false);
#undef SPECDEC_READ

  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  if (c.model_type != "gpt_neox") {
    return bad(absl::StrCat("model_type \"", c.model_type, "\" is not supported (only gpt_neox)"));
  }
  auto in_range = [](int64_t v, int64_t lo, int64_t hi) { return v >= lo && v <= hi; };
  if (!in_range(c.vocab_size, 1, 1 << 22)) return bad("vocab_size must be in [1, 4194304]");
  if (!in_range(c.hidden_size, 1, 1 << 16)) return bad("hidden_size must be in [1, 65536]");
  if (!in_range(c.num_hidden_layers, 1, 1024)) return bad("num_hidden_layers must be in [1, 1024]");
  if (!in_range(c.num_attention_heads, 1, 1024)) return bad("num_attention_heads must be in [1, 1024]");
  if (c.hidden_size % c.num_attention_heads != 0) {
    return bad("hidden_size must be divisible by num_attention_heads");
  }
  if (!in_range(c.intermediate_size, 1, 1 << 18)) return bad("intermediate_size must be in [1, 262144]");
  if (!in_range(c.max_position_embeddings, 1, 1 << 20)) {
    return bad("max_position_embeddings must be in [1, 1048576]");
  }
  if (!(c.rotary_pct >= 0.0 && c.rotary_pct <= 1.0)) return bad("rotary_pct must be in [0, 1]");
  if (c.rotary_dims() % 2 != 0) return bad("rotary dimensions (head_dim * rotary_pct) must be even");
  if (!(c.rotary_emb_base > 0.0)) return bad("rotary_emb_base must be positive");
  if (!(c.layer_norm_eps > 0.0 && c.layer_norm_eps < 1.0)) return bad("layer_norm_eps must be in (0, 1)");
  if (c.hidden_act != "gelu" && c.hidden_act != "gelu_new" && c.hidden_act != "gelu_fast" &&
      c.hidden_act != "relu") {
    return bad(absl::StrCat("hidden_act \"", c.hidden_act,
                            "\" is not supported (gelu, gelu_new, gelu_fast, relu)"));
  }
  if (auto rope = root.find("rope_scaling"); rope != root.end() && !rope->is_null()) {
    return bad("rope_scaling is not supported");
  }
  return c;
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseModelConfig(text.str(), path);
}

std::string ModelConfig::Summary() const {
  return absl::StrFormat(
      "gpt_neox layers=%d hidden=%d heads=%d mlp=%d vocab=%d max_pos=%d rotary_pct=%g %s "
      "act=%s dtype=%s",
      num_hidden_layers, hidden_size, num_attention_heads, intermediate_size, vocab_size,
      max_position_embeddings, rotary_pct,
      use_parallel_residual ? "parallel_residual" : "sequential_residual", hidden_act,
      torch_dtype);
}

std::string ModelConfig::ToJson() const {
  nlohmann::ordered_json j;
  j["architectures"] = {"GPTNeoXForCausalLM"};
  j["attention_bias"] = attention_bias;
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = bos_token_id;
  j["classifier_dropout"] = 0.1;
  j["eos_token_id"] = eos_token_id;
  j["hidden_act"] = hidden_act;
  j["hidden_dropout"] = 0.0;
  j["hidden_size"] = hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = intermediate_size;
  j["layer_norm_eps"] = layer_norm_eps;
  j["max_position_embeddings"] = max_position_embeddings;
  j["model_type"] = "gpt_neox";
  j["num_attention_heads"] = num_attention_heads;
  j["num_hidden_layers"] = num_hidden_layers;
  j["rope_scaling"] = nullptr;
  j["rotary_emb_base"] = rotary_emb_base;
  j["rotary_pct"] = rotary_pct;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = torch_dtype;
  j["transformers_version"] = "4.40.2";
  j["use_cache"] = true;
  j["use_parallel_residual"] = use_parallel_residual;
  j["vocab_size"] = vocab_size;
  return j.dump(2);
}

}  // namespace specdec
