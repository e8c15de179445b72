// ModelConfig: the fields of a Hugging Face GPT-NeoX config.json that change the math.
// Parsed and validated here once, so the runtime can trust every number it reads from it.
#ifndef SPECDEC_COMMON_MODEL_CONFIG_H_
#define SPECDEC_COMMON_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"

namespace specdec {

struct ModelConfig {
  std::string model_type = "gpt_neox";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t intermediate_size = 0;
  int64_t max_position_embeddings = 0;
  double rotary_pct = 0.25;
  double rotary_emb_base = 10000.0;
  double layer_norm_eps = 1e-5;
  std::string hidden_act = "gelu";
  bool use_parallel_residual = true;
  bool tie_word_embeddings = false;
  bool attention_bias = true;
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 0;
  std::string torch_dtype = "float32";

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
  // Dimensions of each head that get rotary embeddings (HF: int(head_dim * rotary_pct)).
  int64_t rotary_dims() const { return static_cast<int64_t>(head_dim() * rotary_pct); }
  // A one-line summary for logs and GetInfo.
  std::string Summary() const;
  // Serialises back to a config.json that Hugging Face reads.
  std::string ToJson() const;
};

// Parses and validates config.json text; `source` names the file in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text, absl::string_view source);
// Reads `path` and parses it.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& path);

}  // namespace specdec

#endif  // SPECDEC_COMMON_MODEL_CONFIG_H_
