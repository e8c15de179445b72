// Accuracy of the CPU engine's weight dtypes against f32 (not a pass/fail test): on held-out
// text, the logit error, the perplexity each dtype gives, how often its argmax equals f32's,
// and how long greedy generations from the same prompts stay identical.
// Usage: dtype_accuracy --model_dir DIR [--text FILE] [--tokens 1024] [--out FILE]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/generation/generator.h"
#include "common/model/model.h"
#include "common/tokenizer/tokenizer.h"

ABSL_FLAG(std::string, model_dir, SPECDEC_SHARED_DIR "/models/specdec-tiny-py",
          "a trained checkpoint with its tokenizer.json");
ABSL_FLAG(std::string, text, "/usr/share/common-licenses/GPL-3", "held-out text");
ABSL_FLAG(int, tokens, 1024, "tokens of the text scored (in windows of 256)");
ABSL_FLAG(int, prompts, 8, "greedy generations compared (prompts spread over the text)");
ABSL_FLAG(int, new_tokens, 64, "tokens per greedy generation");
ABSL_FLAG(std::string, out, "", "write the markdown report here too");

namespace specdec {
namespace {

struct Scores {
  double nll_sum = 0;
  int64_t scored = 0;
  std::vector<int32_t> argmax;       // per position
  std::vector<std::vector<float>> logits;  // per window, kept for the error against f32
};

Scores Score(const ModelView& view, const std::vector<int32_t>& ids) {
  Scores s;
  const size_t window = 256;
  for (size_t start = 0; start + 1 < ids.size(); start += window) {
    const size_t end = std::min(ids.size(), start + window + 1);
    std::vector<int32_t> chunk(ids.begin() + start, ids.begin() + end - 1);
    auto seq = view.NewSequence();
    auto logits = seq->Forward(chunk, LogitsWanted::kAll);
    if (!logits.ok()) {
      std::fprintf(stderr, "%s\n", logits.status().ToString().c_str());
      std::exit(1);
    }
    for (int64_t r = 0; r < logits->rows; ++r) {
      const float* row = logits->row(r);
      const float max = *std::max_element(row, row + logits->cols);
      double z = 0;
      for (int64_t c = 0; c < logits->cols; ++c) z += std::exp(static_cast<double>(row[c]) - max);
      const int32_t next = ids[start + r + 1];
      s.nll_sum += -(row[next] - max - std::log(z));
      s.scored += 1;
      s.argmax.push_back(static_cast<int32_t>(std::max_element(row, row + logits->cols) - row));
    }
    s.logits.push_back(std::move(logits->values));
  }
  return s;
}

int Main() {
  const std::string dir = absl::GetFlag(FLAGS_model_dir);
  auto tokenizer = Tokenizer::FromFile(dir + "/tokenizer.json");
  if (!tokenizer.ok()) {
    std::fprintf(stderr, "%s\n", tokenizer.status().ToString().c_str());
    return 1;
  }
  std::ifstream in(absl::GetFlag(FLAGS_text));
  std::stringstream text;
  text << in.rdbuf();
  auto all = (*tokenizer)->Encode(text.str());
  if (!all.ok() || all->size() < 64) {
    std::fprintf(stderr, "cannot tokenize %s\n", absl::GetFlag(FLAGS_text).c_str());
    return 1;
  }
  std::vector<int32_t> ids(all->begin(), all->begin() + std::min<size_t>(all->size(), absl::GetFlag(FLAGS_tokens) + 1));
  ConfigureComputeThreads(1);
  std::map<std::string, Scores> scores;
  std::map<std::string, std::vector<std::vector<int32_t>>> generations;
  const std::vector<std::string> dtypes = {"f32", "bf16", "int8", "bf16_dot"};
  std::string kernels;
  for (const std::string& dtype : dtypes) {
    auto model = Model::Load(dir, LoadOptions{"cpu", dtype});
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
      return 1;
    }
    kernels = (*model)->cpu_kernels();
    auto view = (*model)->FullView();
    scores[dtype] = Score(*view, ids);
    GenerateOptions options;
    options.max_new_tokens = absl::GetFlag(FLAGS_new_tokens);
    const int prompts = absl::GetFlag(FLAGS_prompts);
    for (int p = 0; p < prompts; ++p) {
      const size_t at = all->size() * p / prompts;
      std::vector<int32_t> prompt(all->begin() + at, all->begin() + std::min(all->size(), at + 16));
      auto r = GeneratePlain(*view, prompt, options);
      if (!r.ok()) return 1;
      generations[dtype].push_back(r->tokens);
    }
  }
  std::string report = absl::StrFormat(
      "Checkpoint `%s`, %d tokens of `%s` scored in windows of 256 (teacher-forced), %zu "
      "greedy generations of %d tokens from 16-token prompts spread over the same text; %s.\n\n"
      "| weights | perplexity | vs f32 | max abs logit error | mean abs logit error | argmax == f32's | greedy tokens identical to f32 before the first difference (mean of prompts) |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n",
      dir, static_cast<int>(ids.size() - 1), absl::GetFlag(FLAGS_text), generations["f32"].size(),
      absl::GetFlag(FLAGS_new_tokens), kernels.substr(0, kernels.rfind(',')));
  const Scores& ref = scores["f32"];
  const double ref_ppl = std::exp(ref.nll_sum / ref.scored);
  for (const std::string& dtype : dtypes) {
    const Scores& s = scores[dtype];
    double max_err = 0, sum_err = 0;
    int64_t count = 0;
    for (size_t w = 0; w < s.logits.size(); ++w) {
      for (size_t i = 0; i < s.logits[w].size(); ++i) {
        const double e = std::fabs(s.logits[w][i] - ref.logits[w][i]);
        max_err = std::max(max_err, e);
        sum_err += e;
        ++count;
      }
    }
    int64_t same = 0;
    for (size_t i = 0; i < s.argmax.size(); ++i) same += s.argmax[i] == ref.argmax[i];
    double prefix = 0;
    for (size_t p = 0; p < generations[dtype].size(); ++p) {
      const auto& a = generations[dtype][p];
      const auto& b = generations["f32"][p];
      size_t k = 0;
      while (k < a.size() && k < b.size() && a[k] == b[k]) ++k;
      prefix += static_cast<double>(k);
    }
    prefix /= std::max<size_t>(1, generations[dtype].size());
    const double ppl = std::exp(s.nll_sum / s.scored);
    absl::StrAppendFormat(&report, "| %s | %.3f | %+.2f%% | %.4f | %.5f | %.2f%% | %.1f of %d |\n", dtype,
                          ppl, 100 * (ppl / ref_ppl - 1), max_err, sum_err / std::max<int64_t>(1, count),
                          100.0 * same / std::max<size_t>(1, s.argmax.size()), prefix,
                          absl::GetFlag(FLAGS_new_tokens));
  }
  std::printf("%s", report.c_str());
  if (!absl::GetFlag(FLAGS_out).empty()) std::ofstream(absl::GetFlag(FLAGS_out)) << report;
  return 0;
}

}  // namespace
}  // namespace specdec

int main(int argc, char** argv) {
  specdec::NormalizeFlagSpelling(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return specdec::Main();
}
