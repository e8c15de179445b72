// Speculative decoding benchmark (not a pass/fail test): plain greedy decoding against
// speculative decoding with draft plans of the same model, measured side by side in one run on
// the same prompts (interleaved, so machine load hits both alike), on the trained
// specdec-tiny-py checkpoint; plus the cost side on a Pythia-70M-shaped random checkpoint.
// Usage: speculative_bench [--model_dir DIR] [--plan plan.json] [--threads 1] [--out report.md]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/base/status_macros.h"
#include "common/calibration/calibrator.h"
#include "common/generation/generator.h"
#include "common/model/checkpoint_writer.h"
#include "common/cpu_kernels/packed_matrix.h"
#include "common/model/model.h"
#include "common/sampling/sampling.h"
#include "common/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, model_dir, SPECDEC_SHARED_DIR "/models/specdec-tiny-py",
          "trained checkpoint (the benchmark skips it with a message when absent)");
ABSL_FLAG(std::string, plan, "",
          "calibrated plan JSON (specdec-calibrate --out); empty: calibrate here");
ABSL_FLAG(std::string, calibration_text, "/usr/share/common-licenses/Apache-2.0",
          "text to calibrate on when --plan is empty (not the measured text)");
ABSL_FLAG(double, calibration_budget_s, 90, "calibration budget when --plan is empty");
ABSL_FLAG(std::string, measure_text, "/usr/share/common-licenses/GPL-3",
          "prompts are paragraphs of this text");
ABSL_FLAG(int, prompts, 8, "prompts (paragraphs spread over --measure_text)");
ABSL_FLAG(int, prompt_tokens, 32, "tokens per prompt");
ABSL_FLAG(int, new_tokens, 128, "greedy tokens per prompt (EOS ignored)");
ABSL_FLAG(double, temperature, 0.0,
          "0: greedy; otherwise every configuration samples (plain included) with this temperature");
ABSL_FLAG(double, top_p, 1.0, "nucleus for sampled runs (e.g. 0.95)");
ABSL_FLAG(std::string, coupling, "rejection",
          "sampled runs: rejection, or shared_noise (every output must then equal plain's)");
ABSL_FLAG(int, repeats, 3, "interleaved repeats (medians are reported)");
ABSL_FLAG(int, max_draft_tokens, 16,
          "K bound of the adaptive rows (16: the gateway's default bound for adaptive requests)");
ABSL_FLAG(int, threads, 0, "compute threads (0: all cores)");
ABSL_FLAG(std::string, dtype, "f32", "weights of the model and its drafts: f32, bf16, int8 or bf16_dot");
ABSL_FLAG(bool, random_70m, true, "also measure costs on a Pythia-70M-shaped random checkpoint");
ABSL_FLAG(std::string, out, "", "write the markdown report here too");

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

std::string g_report;
void Emit(const std::string& text) {
  std::printf("%s", text.c_str());
  std::fflush(stdout);
  g_report += text;
}

struct Config {
  std::string name;
  LayerPlan plan;
  int k = 0;  // 0: plain decoding
  bool adaptive = false;
};

struct Tally {
  int64_t tokens = 0;
  double ms = 0;
  int64_t drafted = 0, accepted = 0, rounds = 0;
  int64_t mismatches = 0;  // prompts whose output differs from plain greedy
};

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// `count` prompts of `length` tokens: paragraphs spread evenly over the text.
absl::StatusOr<std::vector<std::vector<int32_t>>> Prompts(const Tokenizer& tokenizer,
                                                          const std::string& text, int count,
                                                          int length) {
  std::vector<std::vector<int32_t>> candidates;
  for (absl::string_view para : absl::StrSplit(text, "\n\n", absl::SkipWhitespace())) {
    auto ids = tokenizer.Encode(std::string(para));
    if (!ids.ok()) return ids.status();
    if (static_cast<int>(ids->size()) >= length) {
      ids->resize(length);
      candidates.push_back(*std::move(ids));
    }
  }
  if (static_cast<int>(candidates.size()) < count) {
    return absl::FailedPreconditionError("the measured text has too few long paragraphs");
  }
  std::vector<std::vector<int32_t>> out;
  for (int i = 0; i < count; ++i) out.push_back(candidates[i * candidates.size() / count]);
  return out;
}

std::string Describe(const LayerPlan& plan) {
  LayerPlan p = plan;
  p.note.clear();
  return p.Summary();
}

// Runs every config on every prompt, `repeats` times, interleaved; prints the table.
absl::Status RunSideBySide(const Model& model, const std::vector<Config>& configs,
                           const std::vector<std::vector<int32_t>>& prompts, int new_tokens,
                           int repeats, std::vector<double>* acceptance_out) {
  auto full = model.FullView();
  std::vector<std::shared_ptr<const ModelView>> views;
  std::vector<DraftCost> costs;
  for (const Config& c : configs) {
    if (c.k == 0 && !c.adaptive) {
      views.push_back(full);
      costs.push_back({});
      continue;
    }
    auto view = model.View(c.plan);
    if (!view.ok()) return view.status();
    views.push_back(*view);
    auto cost = MeasureDraftCost(**view, *full, prompts[0], 21);
    if (!cost.ok()) return cost.status();
    costs.push_back(*cost);
  }
  GenerateOptions base;
  base.max_new_tokens = new_tokens;
  base.eos_token_id = -1;
  base.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  base.sampling.top_p = static_cast<float>(absl::GetFlag(FLAGS_top_p));
  ASSIGN_OR_RETURN(base.sampling.coupling, ParseCoupling(absl::GetFlag(FLAGS_coupling)));
  // Greedy and shared-noise output must equal plain decoding's with the same seed.
  const bool exact = base.sampling.greedy() || base.sampling.shared_noise();
  auto seed_of = [](int rep, size_t p) { return static_cast<uint64_t>(1000 * rep + p + 1); };
  // Plain outputs per repeat and prompt, to check every speculative output against.
  std::vector<std::vector<std::vector<int32_t>>> expected(repeats);
  // (greedy: the seed does not matter, one run per prompt).
  const int plain_repeats = !exact ? 0 : base.sampling.greedy() ? 1 : repeats;
  for (int rep = 0; rep < plain_repeats; ++rep) {
    for (size_t p = 0; p < prompts.size(); ++p) {
      GenerateOptions options = base;
      options.sampling.seed = seed_of(rep, p);
      auto r = GeneratePlain(*full, prompts[p], options);
      if (!r.ok()) return r.status();
      expected[rep].push_back(r->tokens);
    }
  }
  std::vector<std::vector<Tally>> tallies(repeats, std::vector<Tally>(configs.size()));
  for (int rep = 0; rep < repeats; ++rep) {
    for (size_t p = 0; p < prompts.size(); ++p) {
      for (size_t j = 0; j < configs.size(); ++j) {
        const size_t i = (j + p + rep) % configs.size();  // rotate the order
        const Config& c = configs[i];
        GenerateOptions options = base;
        options.num_draft_tokens = c.k;
        options.adaptive = c.adaptive;
        options.max_draft_tokens = absl::GetFlag(FLAGS_max_draft_tokens);
        options.sampling.seed = seed_of(rep, p);  // the same draws for every configuration
        auto r = c.k == 0 && !c.adaptive
                     ? GeneratePlain(*full, prompts[p], options)
                     : GenerateSpeculative(*full, *views[i], prompts[p], options);
        if (!r.ok()) return r.status();
        Tally& t = tallies[rep][i];
        t.tokens += static_cast<int64_t>(r->tokens.size());
        t.ms += r->decode_ms + r->prefill_ms;
        // Greedy and shared-noise output must equal plain decoding token for token; rejection
        // sampling only has its distribution (seeded draws differ once a draft token is accepted).
        if (exact) {
          const auto& want = base.sampling.greedy() ? expected[0][p] : expected[rep][p];
          t.mismatches += r->tokens != want;
        }
        for (const RoundRecord& round : r->rounds) {
          t.drafted += round.num_draft_tokens;
          t.accepted += round.num_accepted;
          t.rounds += 1;
        }
      }
    }
  }
  Emit(
      "| plan | K | acceptance | tokens/round | cost ratio (draft token / full token) | tokens/s | "
      "speedup over plain | output == plain |\n|---|---:|---:|---:|---:|---:|---:|---|\n");
  acceptance_out->assign(configs.size(), 0);
  for (size_t i = 0; i < configs.size(); ++i) {
    std::vector<double> rates, speedups;
    int64_t drafted = 0, accepted = 0, rounds = 0, tokens = 0, mismatches = 0;
    for (int rep = 0; rep < repeats; ++rep) {
      const Tally& t = tallies[rep][i];
      const Tally& plain = tallies[rep][0];
      rates.push_back(t.tokens / (t.ms / 1e3));
      speedups.push_back((t.tokens / t.ms) / (plain.tokens / plain.ms));
      drafted += t.drafted;
      accepted += t.accepted;
      rounds += t.rounds;
      tokens += t.tokens;
      mismatches += t.mismatches;
    }
    const Config& c = configs[i];
    const bool plain = c.k == 0 && !c.adaptive;
    (*acceptance_out)[i] = drafted ? static_cast<double>(accepted) / drafted : 0;
    Emit(absl::StrFormat(
        "| %s | %s | %s | %s | %s | %.0f (%.0f-%.0f) | %.2fx (%.2f-%.2f) | %s |\n", c.name,
        plain ? "-"
              : (c.adaptive ? absl::StrCat("adaptive, <= ", absl::GetFlag(FLAGS_max_draft_tokens))
                            : absl::StrCat(c.k)),
        plain ? "-" : absl::StrFormat("%.3f", (*acceptance_out)[i]),
        plain ? "1"
              : absl::StrFormat("%.2f", static_cast<double>(tokens) / std::max<int64_t>(1, rounds)),
        plain ? "1" : absl::StrFormat("%.3f", costs[i].ratio), Median(rates),
        *std::min_element(rates.begin(), rates.end()), *std::max_element(rates.begin(), rates.end()),
        Median(speedups), *std::min_element(speedups.begin(), speedups.end()),
        *std::max_element(speedups.begin(), speedups.end()),
        !exact ? "n/a (rejection sampling)"
               : mismatches == 0 ? "yes" : absl::StrCat("NO (", mismatches, ")")));
  }
  return absl::OkStatus();
}

// Where the full model's per-token time goes: differences of measured views.
absl::Status CostBreakdown(const Model& model, absl::Span<const int32_t> context) {
  auto full = model.FullView();
  const ModelConfig& c = model.config();
  auto time_of = [&](std::vector<int> layers, int64_t vocab) -> absl::StatusOr<DraftCost> {
    LayerPlan plan;
    plan.layers = std::move(layers);
    plan.vocab_size = vocab;
    auto view = model.View(plan);
    if (!view.ok()) return view.status();
    return MeasureDraftCost(**view, *full, context, 31);
  };
  std::vector<int> all;
  for (int i = 0; i < c.num_hidden_layers; ++i) all.push_back(i);
  auto all_small = time_of({}, 2048);
  auto one_small = time_of({0}, 2048);
  auto one_full = time_of({0}, 0);
  if (!all_small.ok()) return all_small.status();
  if (!one_small.ok()) return one_small.status();
  if (!one_full.ok()) return one_full.status();
  const double full_ms = all_small->full_token_s * 1e3;
  const double head_ms = full_ms - all_small->token_s * 1e3;
  const double layer_ms =
      (all_small->token_s - one_small->token_s) * 1e3 / (c.num_hidden_layers - 1);
  // A difference of two medians: on a noisy machine it can come out slightly negative.
  const double rest_ms = std::max(0.0, one_small->token_s * 1e3 - layer_ms);

  // The host-side pieces on their own: the argmax and a copy of one row of logits.
  std::vector<float> row(c.vocab_size);
  for (size_t i = 0; i < row.size(); ++i) row[i] = static_cast<float>((i * 2654435761u) % 1000);
  std::vector<float> copy(row.size());
  std::vector<double> argmax_s, copy_s;
  for (int rep = 0; rep < 51; ++rep) {
    auto t = Clock::now();
    volatile int32_t token = ArgmaxToken(row.data(), c.vocab_size, nullptr);
    (void)token;
    argmax_s.push_back(std::chrono::duration<double>(Clock::now() - t).count());
    t = Clock::now();
    std::copy(row.begin(), row.end(), copy.begin());
    copy_s.push_back(std::chrono::duration<double>(Clock::now() - t).count() + copy[rep] * 0);
  }
  const std::string dtype = absl::GetFlag(FLAGS_dtype);
  const double elem = WeightDtypeBytes(*ParseWeightDtype(dtype));  // the model loaded with it
  const double head_mb = elem * c.vocab_size * c.hidden_size / 1e6;
  Emit(absl::StrFormat(
      "| part of one full-model token | ms | share |\n|---|---:|---:|\n"
      "| whole token (forward + logits copy + argmax) | %.3f | 100%% |\n"
      "| LM head, %d x %d (%.1f MB of %s weights), beyond a 2048-row head | %.3f | %.0f%% |\n"
      "| one transformer layer (mean of %d) | %.3f | %.0f%% each |\n"
      "| the rest (embedding, final norm, 2048-row head, call overhead) | %.3f | %.0f%% |\n"
      "| of which: argmax over %d logits (host) | %.3f | %.0f%% |\n"
      "| of which: copying one row of %d logits (host) | %.3f | %.0f%% |\n"
      "| head-only bandwidth: %.1f MB in %.3f ms | %.1f GB/s | |\n",
      full_ms, c.vocab_size, c.hidden_size, head_mb, dtype, head_ms, 100 * head_ms / full_ms,
      c.num_hidden_layers, layer_ms, 100 * layer_ms / full_ms, rest_ms, 100 * rest_ms / full_ms,
      c.vocab_size, Median(argmax_s) * 1e3, 100 * Median(argmax_s) * 1e3 / full_ms, c.vocab_size,
      Median(copy_s) * 1e3, 100 * Median(copy_s) * 1e3 / full_ms, head_mb, head_ms,
      head_mb / 1e3 / std::max(head_ms / 1e3, 1e-9)));
  (void)one_full;
  return absl::OkStatus();
}

absl::Status BenchTrained(const std::string& dir, std::vector<LayerPlan>* plans_out,
                          std::vector<int>* ks_out, std::vector<double>* acceptance_out) {
  auto model = Model::Load(dir, LoadOptions{"cpu", absl::GetFlag(FLAGS_dtype)});
  if (!model.ok()) return model.status();
  auto tokenizer = Tokenizer::FromFile(dir + "/tokenizer.json");
  if (!tokenizer.ok()) return tokenizer.status();
  auto measure_text = ReadFile(absl::GetFlag(FLAGS_measure_text));
  if (!measure_text.ok()) return measure_text.status();
  auto prompts = Prompts(**tokenizer, *measure_text, absl::GetFlag(FLAGS_prompts),
                         absl::GetFlag(FLAGS_prompt_tokens));
  if (!prompts.ok()) return prompts.status();

  // The calibrated plan: from --plan, else calibrate here on a different text.
  LayerPlan calibrated;
  int chosen_k = 4;
  if (!absl::GetFlag(FLAGS_plan).empty()) {
    auto text = ReadFile(absl::GetFlag(FLAGS_plan));
    if (!text.ok()) return text.status();
    auto plan = ParseLayerPlanJson(*text, absl::GetFlag(FLAGS_plan));
    if (!plan.ok()) return plan.status();
    calibrated = *plan;
    auto j = nlohmann::json::parse(*text, nullptr, false);
    if (j.is_object() && j.contains("chosen_k") && j["chosen_k"].is_number_integer()) {
      chosen_k = j["chosen_k"].get<int>();
    }
    Emit(absl::StrFormat("Calibrated plan from %s: %s, K=%d.\n\n", absl::GetFlag(FLAGS_plan),
                         Describe(calibrated), chosen_k));
  } else {
    auto text = ReadFile(absl::GetFlag(FLAGS_calibration_text));
    if (!text.ok()) return text.status();
    auto ids = (*tokenizer)->Encode(*text);
    if (!ids.ok()) return ids.status();
    CalibrationOptions options;
    options.budget_s = absl::GetFlag(FLAGS_calibration_budget_s);
    auto report = Calibrate(**model, *ids, options);
    if (!report.ok()) return report.status();
    calibrated = report->best().plan;
    chosen_k = report->best().best_k;
    Emit(absl::StrFormat(
        "Calibrated here on %s (%d tokens, %.0f s): %s, K=%d, expected %.2fx. Top of its "
        "table:\n\n",
        absl::GetFlag(FLAGS_calibration_text), report->tokens_used, report->elapsed_s,
        Describe(calibrated), chosen_k, report->best().expected_speedup));
    Emit(
        "| plan | agreement | cost ratio | best K | expected speedup "
        "|\n|---|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < std::min<size_t>(8, report->table.size()); ++i) {
      const PlanScore& r = report->table[i];
      Emit(absl::StrFormat("| %s | %.3f | %.3f | %d | %.2fx |\n", Describe(r.plan), r.agreement,
                           r.cost_ratio, r.best_k, r.expected_speedup));
    }
    Emit("\n");
  }

  auto plan = [](std::vector<int> layers, int64_t vocab) {
    LayerPlan p;
    p.layers = std::move(layers);
    p.vocab_size = vocab;
    return p;
  };
  std::vector<Config> configs = {
      {"plain (full model)", {}, 0, false},
      {absl::StrCat("calibrated: ", Describe(calibrated)), calibrated, chosen_k, false},
      {absl::StrCat("calibrated: ", Describe(calibrated)), calibrated, 0, true},
      {"layers=all vocab=4096", plan({}, 4096), 4, false},
      {"layers=all vocab=2048", plan({}, 2048), 4, false},
      {"layers=0,1,2,4,5 vocab=4096", plan({0, 1, 2, 4, 5}, 4096), 3, false},
      {"layers=0,1,4,5 vocab=2048", plan({0, 1, 4, 5}, 2048), 2, false},
      {"layers=0,1,2,4,5 vocab=full (layer skip only)", plan({0, 1, 2, 4, 5}, 0), 3, false},
  };
  const ModelConfig& c = (*model)->config();
  Emit(absl::StrFormat(
      "### Trained model: %s\n\n%s. %d prompts of %d tokens (paragraphs of %s), %d new tokens "
      "each (EOS ignored), %d interleaved repeats; tokens/s and speedup are median (min-max) "
      "over the repeats, each speedup against plain decoding in the same repeat, prefill "
      "included.\n\n",
      dir, c.Summary(), static_cast<int>(prompts->size()), absl::GetFlag(FLAGS_prompt_tokens),
      absl::GetFlag(FLAGS_measure_text), absl::GetFlag(FLAGS_new_tokens),
      absl::GetFlag(FLAGS_repeats)));
  std::vector<double> acceptance;
  auto status = RunSideBySide(**model, configs, *prompts, absl::GetFlag(FLAGS_new_tokens),
                              absl::GetFlag(FLAGS_repeats), &acceptance);
  if (!status.ok()) return status;
  Emit("\nWhere a full-model token's time goes (trained model):\n\n");
  status = CostBreakdown(**model, (*prompts)[0]);
  if (!status.ok()) return status;
  for (size_t i = 1; i < configs.size(); ++i) {
    const bool seen = std::any_of(plans_out->begin(), plans_out->end(), [&](const LayerPlan& p) {
      return Describe(p) == Describe(configs[i].plan);
    });
    if (configs[i].adaptive || seen) continue;
    plans_out->push_back(configs[i].plan);
    ks_out->push_back(configs[i].k);
    acceptance_out->push_back(acceptance[i]);
  }
  return absl::OkStatus();
}

// The cost side on a Pythia-70M-shaped checkpoint (random weights: agreement is meaningless
// there, so the expected speedup uses the acceptance measured on the trained model).
absl::Status BenchCost70m(const std::vector<LayerPlan>& plans, const std::vector<int>& ks,
                          const std::vector<double>& acceptance) {
  const std::string dir = "/tmp/specdec_speculative_bench_pythia70m";
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    auto status =
        WriteRandomCheckpoint(*PresetConfig("pythia-70m"), CheckpointOptions{1, "f32", 1, ""}, dir);
    if (!status.ok()) return status;
  }
  auto model = Model::Load(dir, LoadOptions{"cpu", absl::GetFlag(FLAGS_dtype)});
  if (!model.ok()) return model.status();
  auto full = (*model)->FullView();
  std::vector<int32_t> context;
  for (int i = 0; i < 32; ++i) context.push_back(100 + 37 * i);
  auto verify = MeasureVerifyCost(*full, context, 8, 11);
  if (!verify.ok()) return verify.status();
  Emit(absl::StrFormat(
      "\n### Pythia-70M-shaped random checkpoint (cost only)\n\n%s. Full model %.2f ms per token; "
      "verifying K tokens (K+1 positions) costs, in tokens:",
      (*model)->config().Summary(), verify->token_s * 1e3));
  for (int k = 0; k <= 8; ++k) Emit(absl::StrFormat(" K=%d %.2f", k, verify->relative[k]));
  Emit(
      "\n\n| plan | cost ratio | draft ms/token | acceptance (trained model) | best K | expected "
      "speedup |\n|---|---:|---:|---:|---:|---:|\n");
  for (size_t i = 0; i < plans.size(); ++i) {
    auto view = (*model)->View(plans[i]);
    if (!view.ok()) return view.status();
    auto cost = MeasureDraftCost(**view, *full, context, 21);
    if (!cost.ok()) return cost.status();
    const DraftLengthChoice k = ChooseDraftLength(acceptance[i], cost->ratio, *verify, 8);
    Emit(absl::StrFormat("| %s | %.3f | %.2f | %.3f | %d | %.2fx |\n", Describe(plans[i]),
                         cost->ratio, cost->token_s * 1e3, acceptance[i], k.k, k.speedup));
  }
  Emit("\nWhere a full-model token's time goes (Pythia-70M shape):\n\n");
  return CostBreakdown(**model, context);
}

int Main() {
  ConfigureComputeThreads(absl::GetFlag(FLAGS_threads));
  const std::string dir = absl::GetFlag(FLAGS_model_dir);
  std::vector<LayerPlan> plans;
  std::vector<int> ks;
  std::vector<double> acceptance;
  if (!std::filesystem::exists(dir + "/model.safetensors")) {
    Emit(absl::StrFormat(
        "SKIPPED the trained model: %s is absent (see docs/benchmarks/speculative.md).\n", dir));
  } else {
    auto status = BenchTrained(dir, &plans, &ks, &acceptance);
    if (!status.ok()) {
      std::fprintf(stderr, "speculative_bench: %s\n", status.ToString().c_str());
      return 1;
    }
  }
  if (absl::GetFlag(FLAGS_random_70m)) {
    if (plans.empty()) {  // no trained model: the reference plans with an assumed acceptance
      for (int64_t vocab : {4096, 2048}) {
        LayerPlan p;
        p.vocab_size = vocab;
        plans.push_back(p);
        ks.push_back(4);
        acceptance.push_back(0.9);
      }
    }
    auto status = BenchCost70m(plans, ks, acceptance);
    if (!status.ok()) {
      std::fprintf(stderr, "speculative_bench: %s\n", status.ToString().c_str());
      return 1;
    }
  }
  if (!absl::GetFlag(FLAGS_out).empty()) std::ofstream(absl::GetFlag(FLAGS_out)) << g_report;
  return 0;
}

}  // namespace
}  // namespace specdec

int main(int argc, char** argv) {
  specdec::NormalizeFlagSpelling(argc, argv);
  absl::ParseCommandLine(argc, argv);
  return specdec::Main();
}
