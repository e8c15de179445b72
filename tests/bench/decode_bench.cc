// Decode benchmark (not a pass/fail test): plain decode tokens/s, the cost of one forward over
// K+1 positions relative to one position, and the machine's memory read bandwidth measured in
// the same run, so tokens/s is also a fraction of the bandwidth limit.
// Usage: decode_bench [--model_dir DIR] [--out docs/benchmarks/decode.md]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "common/base/flags.h"
#include "common/generation/generator.h"
#include "common/model/checkpoint_writer.h"
#include "common/model/model.h"

ABSL_FLAG(std::string, model_dir, "", "checkpoint (default: a generated Pythia-70M-shaped one)");
ABSL_FLAG(std::string, out, "", "write the markdown report here too");
ABSL_FLAG(int, new_tokens, 128, "tokens to decode per run");
ABSL_FLAG(int, repeats, 3, "runs per measurement (the median is reported)");
ABSL_FLAG(int, threads, 0, "compute threads (0: all cores)");

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;
double Seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Read bandwidth in GB/s: every core sums its slice of a 512 MiB buffer (far larger than cache).
double MeasureReadBandwidth(int threads) {
  const size_t n = (512ull << 20) / sizeof(float);
  std::vector<float> data(n, 1.0f);
  std::vector<double> results;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<double> sums(threads);
    auto start = Clock::now();
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
      workers.emplace_back([&, t] {
        const size_t begin = n / threads * t, end = t + 1 == threads ? n : n / threads * (t + 1);
        float acc[8] = {0};
        for (size_t i = begin; i + 8 <= end; i += 8) {
          for (int j = 0; j < 8; ++j) acc[j] += data[i + j];
        }
        sums[t] = std::accumulate(acc, acc + 8, 0.0);
      });
    }
    for (auto& w : workers) w.join();
    const double s = Seconds(start);
    if (std::accumulate(sums.begin(), sums.end(), 0.0) < 0) std::printf("impossible\n");
    results.push_back(n * sizeof(float) / s / 1e9);
  }
  return *std::max_element(results.begin(), results.end());
}

int Main() {
  const int threads = absl::GetFlag(FLAGS_threads) > 0 ? absl::GetFlag(FLAGS_threads)
                                                       : static_cast<int>(std::thread::hardware_concurrency());
  ConfigureComputeThreads(threads);
  std::string dir = absl::GetFlag(FLAGS_model_dir);
  if (dir.empty()) {
    dir = "/tmp/specdec_decode_bench_pythia70m";
    auto status = WriteRandomCheckpoint(*PresetConfig("pythia-70m"), CheckpointOptions{1, "f32", 1, ""}, dir);
    if (!status.ok()) {
      std::fprintf(stderr, "%s\n", status.ToString().c_str());
      return 1;
    }
  }
  auto model = Model::Load(dir, LoadOptions{"cpu", "f32"});
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  const ModelConfig& c = (*model)->config();
  auto view = (*model)->FullView();

  // Bytes of weights read per decoded token: every layer matrix, the LM head, norms/biases.
  const double h = c.hidden_size, i = c.intermediate_size, v = c.vocab_size;
  const double layer_params = 3 * h * h + 3 * h + h * h + h + 2 * h * i + i + h + 4 * h;
  const double bytes_per_token = 4 * (c.num_hidden_layers * layer_params + v * h + 2 * h + h);

  const double bandwidth = MeasureReadBandwidth(threads);

  std::vector<int32_t> prompt(32);
  for (int k = 0; k < 32; ++k) prompt[k] = 1000 + 37 * k;
  GenerateOptions options;
  options.max_new_tokens = absl::GetFlag(FLAGS_new_tokens);
  std::vector<double> rates;
  for (int rep = 0; rep < absl::GetFlag(FLAGS_repeats); ++rep) {
    auto result = GeneratePlain(*view, prompt, options);
    if (!result.ok()) return 1;
    rates.push_back(result->tokens.size() / (result->decode_ms / 1000.0));
  }
  const double tokens_per_s = Median(rates);
  const double limit = bandwidth * 1e9 / bytes_per_token;

  // Cost of one forward over n = K+1 positions after a 64-token context, relative to n = 1.
  std::vector<double> cost(10, 0);
  for (int n = 1; n <= 9; ++n) {
    std::vector<double> times;
    for (int rep = 0; rep < 7; ++rep) {
      auto seq = view->NewSequence();
      std::vector<int32_t> context(64, 500);
      (void)seq->Forward(context, LogitsWanted::kLast);
      std::vector<int32_t> chunk(n, 42);
      auto start = Clock::now();
      (void)seq->Forward(chunk, LogitsWanted::kAll);
      times.push_back(Seconds(start));
    }
    cost[n] = Median(times);
  }

  std::string report = absl::StrFormat(
      "| measure | value |\n|---|---|\n"
      "| checkpoint | %s (%s) |\n| threads | %d |\n"
      "| memory read bandwidth | %.1f GB/s |\n| weight bytes read per token | %.1f MB |\n"
      "| bandwidth limit | %.1f tokens/s |\n| plain greedy decode (32-token prompt, %d new) | %.1f tokens/s |\n"
      "| fraction of the bandwidth limit | %.0f%% |\n| vs Hugging Face transformers (about 43 tokens/s on this kind of machine) | %.2fx |\n\n"
      "Cost of one forward over K+1 positions relative to one position:\n\n| K | K+1 positions | ms | relative |\n|---|---|---|---|\n",
      dir, c.Summary(), threads, bandwidth, bytes_per_token / 1e6, limit, options.max_new_tokens,
      tokens_per_s, 100 * tokens_per_s / limit, tokens_per_s / 43.0);
  for (int n = 1; n <= 9; ++n) {
    absl::StrAppendFormat(&report, "| %d | %d | %.2f | %.2f |\n", n - 1, n, cost[n] * 1e3, cost[n] / cost[1]);
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
