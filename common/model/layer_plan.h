// LayerPlan: what a "shrunken self" of the model runs. Which layers, which heads of each layer
// are masked, and which vocabulary rows the LM head scores. The full model is the empty plan.
#ifndef SPECDEC_COMMON_MODEL_LAYER_PLAN_H_
#define SPECDEC_COMMON_MODEL_LAYER_PLAN_H_

#include <cstdint>
#include <map>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace specdec {

struct ModelConfig;

struct LayerPlan {
  // Layers to run, ascending. Empty means every layer.
  std::vector<int> layers;
  // layer -> heads whose attention output is dropped (not computed) in that layer.
  std::map<int, std::vector<int>> masked_heads;
  // Number of vocabulary ids the LM head scores: the first `vocab_size` ids of the frequency
  // ranking. 0 means the full vocabulary.
  int64_t vocab_size = 0;
  // Free-form note (how the plan was chosen); carried through JSON.
  std::string note;

  bool IsFull() const { return layers.empty() && masked_heads.empty() && vocab_size == 0; }
  // Checks the plan against a model config (layer and head indices in range, vocab size).
  absl::Status Validate(const ModelConfig& config) const;
  // Layers to run for a model with `num_layers` layers (expands the empty list).
  std::vector<int> LayersToRun(int num_layers) const;
  // "layers=0,1,4,5 vocab=4096 masked=2:[1,3]" for logs and GetInfo.
  std::string Summary() const;
  std::string ToJson() const;
};

absl::StatusOr<LayerPlan> ParseLayerPlanJson(absl::string_view json_text, absl::string_view source);
absl::StatusOr<LayerPlan> LoadLayerPlan(const std::string& path);
// Parses "0,1,4,5" (also accepts an empty string as "all layers").
absl::StatusOr<std::vector<int>> ParseLayerList(absl::string_view text);

// The plan the draft flags describe, as every tool and service reads them: `plan_path`
// (--draft_plan) when set, else `layers` (--draft_layers); `vocab_size` (--draft_vocab) > 0
// overrides the plan's vocabulary cut.
absl::StatusOr<LayerPlan> LayerPlanFromFlags(absl::string_view layers, const std::string& plan_path,
                                             int64_t vocab_size);

}  // namespace specdec

#endif  // SPECDEC_COMMON_MODEL_LAYER_PLAN_H_
