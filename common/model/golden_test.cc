// Holds the runtime against Hugging Face's GPTNeoXForCausalLM: fixtures in tests/data/gptneox
// (logits, the cached chunk, hidden states and greedy tokens computed by transformers 4.40.2).
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <tuple>

#include "common/model/model.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

using nlohmann::json;

constexpr double kLogitTolerance = 1e-4;

std::string FixtureDir(const std::string& name) {
  return std::string(SPECDEC_TEST_DATA_DIR) + "/gptneox/" + name;
}

json LoadGolden(const std::string& name) {
  std::ifstream in(FixtureDir(name) + "/golden.json");
  std::stringstream text;
  text << in.rdbuf();
  return json::parse(text.str());
}

std::vector<int32_t> Ids(const json& j) {
  const json& flat = j.is_array() && !j.empty() && j[0].is_array() ? j[0] : j;
  return flat.get<std::vector<int32_t>>();
}

// Max |a - b| over a [rows, cols] logits block against nested JSON rows.
double MaxDiff(const Logits& logits, const json& rows) {
  double worst = 0;
  for (int64_t r = 0; r < logits.rows; ++r) {
    for (int64_t c = 0; c < logits.cols; ++c) {
      worst = std::max(worst, std::abs(static_cast<double>(logits.row(r)[c]) - rows[r][c].get<double>()));
    }
  }
  return worst;
}

// (fixture, device): every fixture on the CPU engine, on libtorch's forward on the CPU (the
// code path GPUs run) and, where a GPU is visible, on CUDA in f32 with TF32 off.
class GoldenTest : public ::testing::TestWithParam<std::tuple<std::string, std::string>> {
 protected:
  void SetUp() override {
    const auto& [fixture, device] = GetParam();
    if (device == "cuda") {
      if (!CudaAvailable()) GTEST_SKIP() << "no GPU visible to libtorch (or a CPU-only libtorch)";
      AllowTf32OnCuda(false);
    }
    auto model = Model::Load(FixtureDir(fixture), LoadOptions{device, "f32"});
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = *model;
    golden_ = LoadGolden(fixture);
  }
  std::shared_ptr<Model> model_;
  json golden_;
};

TEST_P(GoldenTest, FullForwardLogitsMatchHuggingFace) {
  ASSERT_FALSE(golden_["forward"].empty());
  for (const json& run : golden_["forward"]) {
    std::vector<int32_t> ids = Ids(run["input_ids"]);
    auto seq = model_->FullView()->NewSequence();
    auto logits = seq->Forward(ids);
    ASSERT_TRUE(logits.ok()) << logits.status();
    const json& expected = run["logits"];  // [positions, vocab]
    ASSERT_EQ(logits->rows, static_cast<int64_t>(expected.size()));
    ASSERT_EQ(logits->cols, static_cast<int64_t>(expected[0].size()));
    EXPECT_LT(MaxDiff(*logits, expected), kLogitTolerance);
  }
}

TEST_P(GoldenTest, CachedChunkMatchesHuggingFace) {
  const json& chunk = golden_["cached_chunk"];
  std::vector<int32_t> ids = Ids(chunk["input_ids"]);
  const int prefix = chunk["prefix_len"].get<int>();
  auto seq = model_->FullView()->NewSequence();
  ASSERT_TRUE(seq->Forward(absl::MakeConstSpan(ids).subspan(0, prefix)).ok());
  auto logits = seq->Forward(absl::MakeConstSpan(ids).subspan(prefix));
  ASSERT_TRUE(logits.ok()) << logits.status();
  const json& expected = chunk["chunk_logits"].size() == 1 && chunk["chunk_logits"][0][0].is_array()
                             ? chunk["chunk_logits"][0]
                             : chunk["chunk_logits"];
  ASSERT_EQ(logits->rows, static_cast<int64_t>(expected.size()));
  EXPECT_LT(MaxDiff(*logits, expected), kLogitTolerance);
}

TEST_P(GoldenTest, HiddenStatesMatchHuggingFace) {
  const json& hs = golden_["hidden_states"];
  std::vector<int32_t> ids = Ids(hs["input_ids"]);
  auto states = model_->HiddenStates(ids);
  ASSERT_TRUE(states.ok()) << states.status();
  const int layers = static_cast<int>(model_->config().num_hidden_layers);
  ASSERT_EQ(states->size(), static_cast<size_t>(layers + 2));  // embeddings, layers, final norm
  auto compare = [&](const std::vector<float>& ours, const json& theirs, const std::string& what) {
    const json& rows = theirs.size() == 1 && theirs[0][0].is_array() ? theirs[0] : theirs;
    double worst = 0;
    const size_t hidden = rows[0].size();
    for (size_t r = 0; r < rows.size(); ++r) {
      for (size_t c = 0; c < hidden; ++c) {
        worst = std::max(worst, std::abs(ours[r * hidden + c] - rows[r][c].get<double>()));
      }
    }
    EXPECT_LT(worst, kLogitTolerance) << what;
  };
  // HF: entry 0 embeddings, entry i < L output of layer i-1, entry L the final norm.
  for (int i = 0; i < layers; ++i) compare((*states)[i], hs["values"][i], "entry " + std::to_string(i));
  compare((*states)[layers], hs["last_layer_output"], "last layer output");
  compare((*states)[layers + 1], hs["values"][layers], "after final norm");
}

TEST_P(GoldenTest, GreedyTokensMatchHuggingFace) {
  ASSERT_FALSE(golden_["greedy"]["runs"].empty());
  for (const json& run : golden_["greedy"]["runs"]) {
    std::vector<int32_t> prompt = Ids(run["prompt"]);
    std::vector<int32_t> expected = run["new_tokens"].get<std::vector<int32_t>>();
    auto seq = model_->FullView()->NewSequence();
    auto logits = seq->Forward(prompt, LogitsWanted::kLast);
    ASSERT_TRUE(logits.ok());
    std::vector<int32_t> produced;
    for (size_t step = 0; step < expected.size(); ++step) {
      const float* row = logits->row(logits->rows - 1);
      int32_t best = static_cast<int32_t>(std::max_element(row, row + logits->cols) - row);
      produced.push_back(best);
      logits = seq->Forward({best}, LogitsWanted::kLast);
      ASSERT_TRUE(logits.ok());
    }
    EXPECT_EQ(produced, expected);
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenTest,
                         ::testing::Combine(::testing::Values("tiny", "tiny-seq"),
                                            ::testing::Values("cpu", "cpu-libtorch", "cuda")),
                         [](const auto& info) {
                           const std::string fixture = std::get<0>(info.param);
                           const std::string device = std::get<1>(info.param);
                           return std::string(fixture == "tiny" ? "Parallel" : "Sequential") +
                                  (device == "cpu"            ? "_CpuEngine"
                                   : device == "cpu-libtorch" ? "_CpuLibtorch"
                                                              : "_Cuda");
                         });

}  // namespace
}  // namespace specdec
