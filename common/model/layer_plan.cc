// LayerPlan parsing, validation and JSON (see layer_plan.h).
#include "common/model/layer_plan.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/status_macros.h"
#include "common/model/config.h"
#include "nlohmann/json.hpp"

namespace specdec {

absl::Status LayerPlan::Validate(const ModelConfig& config) const {
  std::set<int> seen;
  for (int layer : layers) {
    if (layer < 0 || layer >= config.num_hidden_layers) {
      return absl::InvalidArgumentError(absl::StrCat("layer plan: layer ", layer,
                                                     " is out of range (the model has ",
                                                     config.num_hidden_layers, " layers)"));
    }
    if (!seen.insert(layer).second) {
      return absl::InvalidArgumentError(absl::StrCat("layer plan: layer ", layer, " is listed twice"));
    }
  }
  for (const auto& [layer, heads] : masked_heads) {
    if (layer < 0 || layer >= config.num_hidden_layers) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer plan: masked_heads names layer ", layer, ", which does not exist"));
    }
    std::set<int> unique(heads.begin(), heads.end());
    if (static_cast<int64_t>(unique.size()) >= config.num_attention_heads) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer plan: layer ", layer, " masks every head; drop the layer from `layers` instead"));
    }
    for (int head : heads) {
      if (head < 0 || head >= config.num_attention_heads) {
        return absl::InvalidArgumentError(absl::StrCat("layer plan: head ", head, " of layer ",
                                                       layer, " is out of range (",
                                                       config.num_attention_heads, " heads)"));
      }
    }
  }
  if (vocab_size < 0 || vocab_size > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("layer plan: vocab_size ", vocab_size,
                                                   " must be in [0, ", config.vocab_size, "]"));
  }
  return absl::OkStatus();
}

std::vector<int> LayerPlan::LayersToRun(int num_layers) const {
  if (!layers.empty()) {
    std::vector<int> sorted = layers;
    std::sort(sorted.begin(), sorted.end());
    return sorted;
  }
  std::vector<int> all(num_layers);
  for (int i = 0; i < num_layers; ++i) all[i] = i;
  return all;
}

std::string LayerPlan::Summary() const {
  std::string out = layers.empty() ? "layers=all" : absl::StrCat("layers=", absl::StrJoin(layers, ","));
  absl::StrAppend(&out, " vocab=", vocab_size == 0 ? std::string("full") : absl::StrCat(vocab_size));
  for (const auto& [layer, heads] : masked_heads) {
    absl::StrAppend(&out, " masked=", layer, ":[", absl::StrJoin(heads, ","), "]");
  }
  return out;
}

std::string LayerPlan::ToJson() const {
  nlohmann::ordered_json j;
  j["layers"] = layers;
  nlohmann::ordered_json masked = nlohmann::ordered_json::object();
  for (const auto& [layer, heads] : masked_heads) masked[std::to_string(layer)] = heads;
  j["masked_heads"] = masked;
  j["vocab_size"] = vocab_size;
  if (!note.empty()) j["note"] = note;
  return j.dump(2);
}

absl::StatusOr<LayerPlan> ParseLayerPlanJson(absl::string_view json_text, absl::string_view source) {
  auto root = nlohmann::json::parse(json_text.begin(), json_text.end(), nullptr, false);
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  if (root.is_discarded() || !root.is_object()) return bad("not a JSON object");
  // A calibration report holds the plan under "plan".
  if (root.contains("plan") && root["plan"].is_object()) root = root["plan"];
  LayerPlan plan;
  if (auto it = root.find("layers"); it != root.end()) {
    if (!it->is_array()) return bad("\"layers\" must be an array of layer indices");
    for (const auto& v : *it) {
      if (!v.is_number_integer()) return bad("\"layers\" must hold integers");
      plan.layers.push_back(v.get<int>());
    }
  }
  if (auto it = root.find("masked_heads"); it != root.end()) {
    if (!it->is_object()) return bad("\"masked_heads\" must map layer -> [heads]");
    for (auto m = it->begin(); m != it->end(); ++m) {
      int layer;
      if (!absl::SimpleAtoi(m.key(), &layer)) return bad("\"masked_heads\" keys must be layer numbers");
      if (!m.value().is_array()) return bad("\"masked_heads\" values must be arrays");
      for (const auto& h : m.value()) {
        if (!h.is_number_integer()) return bad("\"masked_heads\" must hold integers");
        plan.masked_heads[layer].push_back(h.get<int>());
      }
    }
  }
  if (auto it = root.find("vocab_size"); it != root.end()) {
    if (!it->is_number_integer()) return bad("\"vocab_size\" must be an integer");
    plan.vocab_size = it->get<int64_t>();
  }
  if (auto it = root.find("note"); it != root.end() && it->is_string()) plan.note = it->get<std::string>();
  return plan;
}

absl::StatusOr<LayerPlan> LoadLayerPlan(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open layer plan"));
  std::ostringstream text;
  text << in.rdbuf();
  return ParseLayerPlanJson(text.str(), path);
}

absl::StatusOr<std::vector<int>> ParseLayerList(absl::string_view text) {
  std::vector<int> layers;
  text = absl::StripAsciiWhitespace(text);
  if (text.empty() || text == "all") return layers;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int layer;
    if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(part), &layer)) {
      return absl::InvalidArgumentError(
          absl::StrCat("layer list \"", text, "\": \"", part, "\" is not a layer number"));
    }
    layers.push_back(layer);
  }
  return layers;
}

absl::StatusOr<LayerPlan> LayerPlanFromFlags(absl::string_view layers, const std::string& plan_path,
                                             int64_t vocab_size) {
  LayerPlan plan;
  if (!plan_path.empty()) {
    ASSIGN_OR_RETURN(plan, LoadLayerPlan(plan_path));
  } else {
    ASSIGN_OR_RETURN(plan.layers, ParseLayerList(layers));
  }
  if (vocab_size > 0) plan.vocab_size = vocab_size;
  return plan;
}

}  // namespace specdec
