// libFuzzer target: arbitrary bytes as config.json and as a LayerPlan JSON. Parsing must refuse
// or accept without crashing; an accepted config must satisfy the invariants the runtime trusts.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/model/config.h"
#include "common/model/layer_plan.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = specdec::ParseModelConfig(text, "fuzz/config.json");
  if (config.ok()) {
    if (config->hidden_size % config->num_attention_heads != 0) std::abort();
    if (config->rotary_dims() < 0 || config->rotary_dims() > config->head_dim()) std::abort();
    auto again = specdec::ParseModelConfig(config->ToJson(), "again");
    if (!again.ok()) std::abort();
  }
  auto plan = specdec::ParseLayerPlanJson(text, "fuzz/plan.json");
  if (plan.ok() && config.ok()) (void)plan->Validate(*config);
  return 0;
}
