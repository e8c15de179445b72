// Writes random GPT-NeoX checkpoints in exactly the Hugging Face folder layout (config.json,
// model.safetensors or shards with an index, tokenizer.json), so that the quick start and the
// tests never need a download.
#ifndef SPECDEC_COMMON_MODEL_CHECKPOINT_WRITER_H_
#define SPECDEC_COMMON_MODEL_CHECKPOINT_WRITER_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "common/model/config.h"

namespace specdec {

// "pythia-70m", "pythia-160m", "pythia-14m" or "tiny" (2 layers, hidden 64, full vocabulary).
absl::StatusOr<ModelConfig> PresetConfig(absl::string_view preset);

struct CheckpointOptions {
  uint64_t seed = 0;
  std::string dtype = "f32";  // "f32", "f16" or "bf16"
  int num_shards = 1;         // > 1 writes model-0000X-of-0000Y.safetensors plus the index
  std::string tokenizer_path;  // copied to tokenizer.json when not empty
};

// Weights are normal(0, 0.02), LayerNorm weights 1 + 0.1 * normal, biases 0.02 * normal.
absl::Status WriteRandomCheckpoint(const ModelConfig& config, const CheckpointOptions& options,
                                   const std::string& out_dir);

}  // namespace specdec

#endif  // SPECDEC_COMMON_MODEL_CHECKPOINT_WRITER_H_
