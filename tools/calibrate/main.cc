// specdec-calibrate: picks the draft plan ("shrunken self") for a checkpoint on this machine.
// Tries candidate plans on a text, prints the table it chose from, and writes the best plan as
// LayerPlan JSON for --draft_plan (with the table, the chosen K and the head probe).
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/calibration/calibrator.h"
#include "common/model/model.h"
#include "common/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model_dir, "", "Hugging Face GPT-NeoX checkpoint folder");
ABSL_FLAG(std::string, text_file, "",
          "calibration text (tokenized with the checkpoint's tokenizer.json)");
ABSL_FLAG(double, budget_s, 120, "wall-clock budget for trying candidates");
ABSL_FLAG(std::string, out, "", "write the best plan (LayerPlan JSON with the table) here");
ABSL_FLAG(int64_t, max_tokens, 512, "calibration tokens used for agreement");
ABSL_FLAG(int, k_max, 8, "largest draft length considered");
ABSL_FLAG(std::string, vocab_cuts, "0,8192,4096,2048", "LM head cuts to try (0: full vocabulary)");
ABSL_FLAG(bool, probe_heads, true, "probe attention heads and try plans that mask dead ones");
ABSL_FLAG(int, cost_repeats, 15, "timed repeats per plan (medians are used)");
ABSL_FLAG(std::string, device, "auto", "auto, cpu or cuda");
ABSL_FLAG(std::string, dtype, "f32",
          specdec::kDtypeFlagHelp);
ABSL_FLAG(int, threads, 0, "compute threads (0: all cores)");

namespace specdec {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "specdec-calibrate: %s\n", status.ToString().c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

absl::StatusOr<std::vector<int64_t>> ParseCuts(const std::string& text) {
  std::vector<int64_t> cuts;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int64_t cut;
    if (!absl::SimpleAtoi(part, &cut) || cut < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--vocab_cuts: \"", std::string(part), "\" is not a non-negative integer"));
    }
    cuts.push_back(cut);
  }
  if (cuts.empty()) cuts.push_back(0);
  return cuts;
}

int Main() {
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  const std::string text_file = absl::GetFlag(FLAGS_text_file);
  if (model_dir.empty() || text_file.empty()) {
    return Fail(absl::InvalidArgumentError("--model_dir and --text-file are required"));
  }
  CalibrationOptions options;
  options.budget_s = absl::GetFlag(FLAGS_budget_s);
  options.max_tokens = absl::GetFlag(FLAGS_max_tokens);
  options.k_max = absl::GetFlag(FLAGS_k_max);
  options.probe_heads = absl::GetFlag(FLAGS_probe_heads);
  options.cost_repeats = absl::GetFlag(FLAGS_cost_repeats);
  auto cuts = ParseCuts(absl::GetFlag(FLAGS_vocab_cuts));
  if (!cuts.ok()) return Fail(cuts.status());
  options.vocab_cuts = *cuts;
  if (options.k_max < 1 || options.max_tokens < 2) {
    return Fail(absl::InvalidArgumentError("--k_max must be >= 1 and --max_tokens >= 2"));
  }

  std::ifstream in(text_file, std::ios::binary);
  if (!in) return Fail(absl::NotFoundError(absl::StrCat(text_file, ": cannot open")));
  std::ostringstream text;
  text << in.rdbuf();
  auto tokenizer = Tokenizer::FromFile(model_dir + "/tokenizer.json");
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  auto tokens = (*tokenizer)->Encode(text.str());
  if (!tokens.ok()) return Fail(tokens.status());

  ConfigureComputeThreads(absl::GetFlag(FLAGS_threads));
  auto model =
      Model::Load(model_dir, LoadOptions{absl::GetFlag(FLAGS_device), absl::GetFlag(FLAGS_dtype)});
  if (!model.ok()) return Fail(model.status());
  // Keep only ids the model can embed (a tokenizer may know more ids than a small model).
  std::vector<int32_t> ids;
  for (int32_t t : *tokens) {
    if (t >= 0 && t < (*model)->config().vocab_size) ids.push_back(t);
  }
  auto report = Calibrate(**model, ids, options);
  if (!report.ok()) return Fail(report.status());

  std::cout << "Calibration of " << model_dir << " on " << text_file << " (" << ids.size()
            << " tokens in the file)\n\n"
            << report->FormatTables() << "\n";
  const PlanScore& best = report->best();
  std::cout << "Chosen: " << best.plan.Summary() << " with K=" << best.best_k << " (expected "
            << best.expected_speedup << "x)\n";
  if (best.expected_speedup <= 1.0) {
    std::cout << "No candidate is expected to beat plain decoding on this machine.\n";
  }
  if (!absl::GetFlag(FLAGS_out).empty()) {
    std::ofstream out(absl::GetFlag(FLAGS_out));
    out << report->ToJson() << "\n";
    if (!out)
      return Fail(absl::InternalError(absl::StrCat(absl::GetFlag(FLAGS_out), ": cannot write")));
    std::cout << "Wrote " << absl::GetFlag(FLAGS_out) << "\n";
  }
  return 0;
}

}  // namespace
}  // namespace specdec

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Chooses a draft plan: specdec-calibrate --model_dir DIR --text-file F [--out plan.json]");
  specdec::NormalizeFlagSpelling(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return specdec::Main();
}
