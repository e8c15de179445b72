// Decode benchmark (not a pass/fail test), everything measured side by side in one run:
// plain decode tokens/s per weight dtype and thread count against the memory bandwidth
// measured in the same run (the bandwidth limit), the cost of one forward over n = 1..16
// positions relative to one position, how a draft's cost scales with the layers it keeps, and
// what sampling (temperature 0.8, top_p 0.95) adds to a decode step. Min / median / max over
// --runs interleaved runs; the CPU (model name and flags) and the kernels used are recorded.
// Usage: decode_bench [--model_dir DIR] [--threads 1,2] [--dtypes f32,bf16,int8,bf16_dot] [--out FILE]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/generation/generator.h"
#include "common/model/checkpoint_writer.h"
#include "common/cpu_kernels/packed_matrix.h"
#include "common/model/model.h"
#include "common/sampling/sampling.h"

ABSL_FLAG(std::string, model_dir, "", "checkpoint (default: a generated Pythia-70M-shaped one)");
ABSL_FLAG(std::string, out, "", "write the markdown report here too");
ABSL_FLAG(int, new_tokens, 128, "tokens to decode per run");
ABSL_FLAG(int, runs, 5, "runs per measurement (min / median / max are reported)");
ABSL_FLAG(std::string, threads, "1,2", "compute thread counts to measure");
ABSL_FLAG(std::string, dtypes, "f32,bf16,int8,bf16_dot", "weight dtypes to measure");
ABSL_FLAG(std::string, commit, "", "commit measured (recorded in the report)");
ABSL_FLAG(std::string, prompt_ids, "",
          "decode after these token ids (a trained checkpoint's text prompt; empty: 32 synthetic "
          "ids, whose continuation a trained model finds flat, which makes sampling costlier)");

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

struct Spread {
  double min = 0, median = 0, max = 0;
};
Spread SpreadOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2], v.back()};
}
std::string Show(const Spread& s, const char* format = "%.1f") {
  return absl::StrFormat(format, s.median) + " (" + absl::StrFormat(format, s.min) + "-" +
         absl::StrFormat(format, s.max) + ")";
}

// Read bandwidth in GB/s: every thread sums its slice of a 512 MiB buffer (far larger than
// cache) with four independent vector sums, so the loop is bound by memory, not by additions.
double MeasureReadBandwidth(int threads) {
  typedef float Vec4 __attribute__((vector_size(16)));
  const size_t n = (512ull << 20) / sizeof(Vec4);
  std::vector<Vec4> data(n, Vec4{1, 1, 1, 1});
  double best = 0;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<double> sums(threads);
    auto start = Clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const size_t begin = n / threads * t, end = t + 1 == threads ? n : n / threads * (t + 1);
        Vec4 a = {}, b = {}, c = {}, d = {};
        for (size_t i = begin; i + 4 <= end; i += 4) {
          a += data[i];
          b += data[i + 1];
          c += data[i + 2];
          d += data[i + 3];
        }
        const Vec4 s = (a + b) + (c + d);
        sums[t] = s[0] + s[1] + s[2] + s[3];
      });
    }
    for (auto& w : workers) w.join();
    const double s = Seconds(start);
    if (std::accumulate(sums.begin(), sums.end(), 0.0) < 0) std::printf("impossible\n");
    best = std::max(best, n * sizeof(Vec4) / s / 1e9);
  }
  return best;
}

std::string CpuInfoField(const std::string& field) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? "" : line.substr(colon + 2);
    }
  }
  return "unknown";
}

// Bytes of weights one decode step streams: the layers and the LM head in the weight dtype
// (plus int8's per-row scales), norms and biases in f32.
double WeightBytesPerToken(const ModelConfig& c, const std::string& dtype) {
  const double h = c.hidden_size, i = c.intermediate_size, v = c.vocab_size;
  const double elem = WeightDtypeBytes(*ParseWeightDtype(dtype));  // the models loaded with it
  const double matrix = c.num_hidden_layers * (3 * h * h + h * h + 2 * h * i) + v * h;
  const double rows = c.num_hidden_layers * (3 * h + h + i + h) + v;  // biases / scales
  const double extra = 4 * (rows * (dtype == "int8" ? 2 : 1) + c.num_hidden_layers * 4 * h + 2 * h);
  return elem * matrix + extra;
}

std::vector<int32_t> Prompt() {
  std::vector<int32_t> prompt;
  for (absl::string_view id : absl::StrSplit(absl::GetFlag(FLAGS_prompt_ids), ',', absl::SkipEmpty())) {
    int32_t value = 0;
    if (!absl::SimpleAtoi(id, &value) || value < 0) {
      std::fprintf(stderr, "--prompt_ids: \"%s\" is not a token id\n", std::string(id).c_str());
      std::exit(2);
    }
    prompt.push_back(value);
  }
  if (!prompt.empty()) return prompt;
  prompt.resize(32);
  for (int k = 0; k < 32; ++k) prompt[k] = 1000 + 37 * k;
  return prompt;
}

// Decode tokens/s of one run.
double DecodeRate(const ModelView& view, const GenerateOptions& options) {
  auto result = GeneratePlain(view, Prompt(), options);
  if (!result.ok()) {
    std::fprintf(stderr, "%s\n", result.status().ToString().c_str());
    std::exit(1);
  }
  return result->tokens.size() / (result->decode_ms / 1000.0);
}

// What drawing one token costs by itself: the rows of logits a greedy run of `view` produced,
// each turned into its temperature / top-p distribution and drawn from, timed apart from any
// forward. Returns the median over `runs` of the mean seconds per row; `support` gets the mean
// size of the distributions drawn from.
double SampleRowSeconds(const ModelView& view, const GenerateOptions& greedy,
                        const SamplingParams& params, int runs, double* support) {
  std::vector<std::vector<float>> rows;
  std::vector<int64_t> positions;
  const int32_t* vocab_ids = nullptr;
  GenerateOptions capture = greedy;
  capture.on_target_row = [&](int64_t position, const Logits& logits, int64_t row) {
    rows.emplace_back(logits.row(row), logits.row(row) + logits.cols);
    positions.push_back(position);
    vocab_ids = logits.vocab_ids ? logits.vocab_ids->data() : nullptr;
  };
  if (!GeneratePlain(view, Prompt(), capture).ok() || rows.empty()) std::exit(1);
  std::vector<double> per_row;
  int64_t kept = 0, checksum = 0;
  for (int run = 0; run < runs; ++run) {
    kept = 0;
    auto start = Clock::now();
    for (size_t i = 0; i < rows.size(); ++i) {
      const TokenDistribution dist = ToDistribution(rows[i].data(), static_cast<int64_t>(rows[i].size()),
                                                    vocab_ids, params);
      checksum += DrawToken(dist, params, positions[i], RandomPurpose::kTarget);
      kept += dist.size();
    }
    per_row.push_back(Seconds(start) / rows.size());
  }
  if (checksum < 0) std::exit(1);  // keeps the draws from being optimised away
  *support = static_cast<double>(kept) / rows.size();
  return SpreadOf(per_row).median;
}

// Seconds of one forward over n positions after a 64-token context: the fastest of 5, each rolled
// back before the next (other processes can only ever add time to a forward).
double ForwardSeconds(const ModelView& view, int n) {
  auto seq = view.NewSequence();
  const std::vector<int32_t> context(64, 500), chunk(n, 42);
  (void)seq->Forward(context, LogitsWanted::kLast);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    auto start = Clock::now();
    (void)seq->Forward(chunk, LogitsWanted::kAll);
    best = std::min(best, Seconds(start));
    (void)seq->Truncate(64);
  }
  return best;
}

std::string Section(const std::string& dir, int threads, const std::vector<std::string>& dtypes) {
  ConfigureComputeThreads(threads);
  std::map<std::string, std::shared_ptr<Model>> models;
  for (const std::string& dtype : dtypes) {
    auto model = Model::Load(dir, LoadOptions{"cpu", dtype});
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
      std::exit(1);
    }
    models[dtype] = *model;
  }
  const ModelConfig& c = models.begin()->second->config();
  const double bandwidth = MeasureReadBandwidth(threads);
  const int runs = absl::GetFlag(FLAGS_runs);
  GenerateOptions greedy;
  greedy.max_new_tokens = absl::GetFlag(FLAGS_new_tokens);
  GenerateOptions sampled = greedy;
  sampled.sampling.temperature = 0.8f;
  sampled.sampling.top_p = 0.95f;
  sampled.sampling.seed = 7;

  // Plain decoding, every dtype (greedy) and f32 sampled, interleaved run by run.
  std::map<std::string, std::vector<double>> rates;
  const std::string first = dtypes.front();
  // The sampled run right after its dtype's greedy one: the runs' ratios compare neighbours.
  for (int run = 0; run < runs; ++run) {
    for (const std::string& dtype : dtypes) {
      rates[dtype].push_back(DecodeRate(*models[dtype]->FullView(), greedy));
      if (dtype == first) rates["sampled"].push_back(DecodeRate(*models[first]->FullView(), sampled));
    }
  }
  std::string out = absl::StrFormat("### %d thread%s\n\n", threads, threads == 1 ? "" : "s");
  absl::StrAppendFormat(&out, "Memory read bandwidth (this run, %d thread%s): %.1f GB/s.\n\n", threads,
                        threads == 1 ? "" : "s", bandwidth);
  out += "| weights | bytes read per token | bandwidth limit (tokens/s) | plain greedy decode, tokens/s: median (min-max) | of the limit |\n|---|---:|---:|---:|---:|\n";
  for (const std::string& dtype : dtypes) {
    const double bytes = WeightBytesPerToken(c, dtype);
    const double limit = bandwidth * 1e9 / bytes;
    const Spread s = SpreadOf(rates[dtype]);
    absl::StrAppendFormat(&out, "| %s | %.1f MB | %.1f | %s | %.0f%% |\n", dtype, bytes / 1e6, limit, Show(s),
                          100 * s.median / limit);
  }
  const Spread greedy_rate = SpreadOf(rates[first]), sampled_rate = SpreadOf(rates["sampled"]);
  std::vector<double> extra;  // run by run: how much longer a sampled step took, in percent
  for (int run = 0; run < runs; ++run) extra.push_back(100 * (rates[first][run] / rates["sampled"][run] - 1));
  absl::StrAppendFormat(&out,
                        "\nSampling (temperature 0.8, top_p 0.95, %s, after %s): %s tokens/s against %s "
                        "greedy: a decode step costs %s%% more (run by run, each sampled run "
                        "right after a greedy one).\n\n",
                        first,
                        absl::GetFlag(FLAGS_prompt_ids).empty()
                            ? "32 synthetic token ids"
                            : absl::StrFormat("a %d-token text prompt", Prompt().size()),
                        Show(sampled_rate), Show(greedy_rate), Show(SpreadOf(extra)));
  double support = 0;
  const double row_seconds =
      SampleRowSeconds(*models[first]->FullView(), greedy, sampled.sampling, runs, &support);
  absl::StrAppendFormat(&out,
                        "Drawing one token by itself (the rows of logits of a greedy run, timed apart "
                        "from the forward): %.1f us a row (a support of %.0f tokens on average), "
                        "%.1f%% of the greedy decode step above.\n\n",
                        row_seconds * 1e6, support, 100 * row_seconds * greedy_rate.median);

  // One forward over n positions relative to one position, per dtype.
  // Every run measures n = 1 .. 16 in turn (each the fastest of 5 forwards), so a ratio compares
  // times taken seconds apart; the table gives the median (min-max) of the runs' ratios.
  out += absl::StrFormat(
      "Cost of one forward over n positions (after 64 cached) relative to one position, the "
      "fastest of 5 forwards per run, median (min-max) over %d runs:\n\n| n |", runs);
  for (const std::string& dtype : dtypes) out += " " + dtype + " ms | " + dtype + " relative |";
  out += "\n|---:|";
  for (size_t d = 0; d < dtypes.size(); ++d) out += "---:|---:|";
  out += "\n";
  std::map<std::string, std::vector<std::vector<double>>> forward;  // [dtype][run][n - 1]
  for (int run = 0; run < runs; ++run) {
    for (const std::string& dtype : dtypes) {
      std::vector<double> times;
      for (int n = 1; n <= 16; ++n) times.push_back(ForwardSeconds(*models[dtype]->FullView(), n));
      forward[dtype].push_back(times);
    }
  }
  for (int n = 1; n <= 16; ++n) {
    absl::StrAppendFormat(&out, "| %d |", n);
    for (const std::string& dtype : dtypes) {
      std::vector<double> ms, ratio;
      for (const std::vector<double>& times : forward[dtype]) {
        ms.push_back(times[n - 1] * 1e3);
        ratio.push_back(times[n - 1] / times[0]);
      }
      absl::StrAppendFormat(&out, " %s | %s |", Show(SpreadOf(ms), "%.3f"),
                            Show(SpreadOf(ratio), "%.2f"));
    }
    out += "\n";
  }

  // A draft's cost against the layers it keeps (f32): decode-step time with 6, 4 and 2 layers.
  if (c.num_hidden_layers == 6) {
    auto& model = *models[first];
    auto step = [&](std::vector<int> layers) {
      LayerPlan plan;
      plan.layers = std::move(layers);
      auto view = model.View(plan);
      std::vector<double> times;
      for (int run = 0; run < runs; ++run) times.push_back(1.0 / DecodeRate(**view, greedy));
      return SpreadOf(times).median;
    };
    const double t6 = step({0, 1, 2, 3, 4, 5}), t4 = step({0, 1, 4, 5}), t2 = step({0, 5});
    const double per_layer = (t6 - t2) / 4, rest = t6 - 6 * per_layer;
    absl::StrAppendFormat(
        &out,
        "\nA draft's decode step against the layers it keeps (%s): 6 layers %.3f ms, 4 layers "
        "%.3f ms, 2 layers %.3f ms. From the 6- and 2-layer steps, a layer costs %.3f ms and "
        "the rest (embedding, final norm, LM head, sampling) %.3f ms; 4 of 6 layers should then "
        "cost %.3f ms, and cost %.3f ms (%.0f%% of that).\n",
        first, t6 * 1e3, t4 * 1e3, t2 * 1e3, per_layer * 1e3, rest * 1e3, (rest + 4 * per_layer) * 1e3,
        t4 * 1e3, 100 * t4 / (rest + 4 * per_layer));
  }
  return out;
}

int Main() {
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) {
    dir = "/tmp/specdec_decode_bench_pythia70m";
    auto status = WriteRandomCheckpoint(*PresetConfig("pythia-70m"), CheckpointOptions{1, "f32", 1, ""}, dir);
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", status.ToString().c_str());
      return 1;
    }
  }
  std::vector<int> thread_counts;
  for (absl::string_view t : absl::StrSplit(absl::GetFlag(FLAGS_threads), ',', absl::SkipEmpty())) {
    int n = 0;
    if (!absl::SimpleAtoi(t, &n) || n <= 0) {
      std::fprintf(stderr, "--threads: \"%s\" is not a positive count\n", std::string(t).c_str());
      return 1;
    }
    thread_counts.push_back(n);
  }
  std::vector<std::string> dtypes = absl::StrSplit(absl::GetFlag(FLAGS_dtypes), ',', absl::SkipEmpty());
  if (dtypes.empty()) return 1;
  auto probe = Model::Load(dir, LoadOptions{"cpu", dtypes.front()});
  if (!probe.ok()) {
    std::fprintf(stderr, "%s\n", probe.status().ToString().c_str());
    return 1;
  }
  std::string report = absl::StrFormat(
      "## %s\n\n- checkpoint: `%s` (%s)\n- CPU: %s; flags: %s\n- kernels: %s\n- commit: %s\n- "
      "%d runs per figure, %d new tokens after a 32-token prompt, runs interleaved across dtypes\n\n",
      dir, dir, (*probe)->config().Summary(), CpuInfoField("model name"), CpuInfoField("flags"),
      (*probe)->cpu_kernels(), absl::GetFlag(FLAGS_commit).empty() ? "not given" : absl::GetFlag(FLAGS_commit),
      absl::GetFlag(FLAGS_runs), absl::GetFlag(FLAGS_new_tokens));
  probe->reset();
  for (int threads : thread_counts) {
    const std::string section = Section(dir, threads, dtypes) + "\n";
    std::printf("%s", (report.size() < 2000 ? report + section : section).c_str());
    report += section;
    std::fflush(stdout);
  }
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
