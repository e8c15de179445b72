// The gateway under 256 concurrent slow streams: its thread count stays bounded by its pool
// (--session_threads), not by the streams, and every stream gets the tokens the same request gets
// alone. Every stream reads its first message, then waits until all the others have theirs, so
// all are open at once while their sessions run on; the verifier sleeps before each verification
// (--debug_delay_ms), so the rounds are slow and the sessions stay alive while the gateway's
// threads are counted. The figures with timings: tools/loadgen/load_bench.sh,
// docs/benchmarks/load.md.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/model/checkpoint_writer.h"
#include "common/model/config.h"
#include "common/procfs/proc_status.h"
#include "gtest/gtest.h"
#include "tests/integration/gateway_generate.h"
#include "tests/integration/service_process.h"

namespace specdec::testing {
namespace {

struct LoadOptions {
  std::string dir;  // scratch folder (checkpoint, logs)
  int streams = 256;
  int prompts = 8;  // distinct prompts, stream i uses prompt i % prompts
  int new_tokens = 24;
  int num_draft_tokens = 3;
  int verifier_delay_ms = 20;
  int gateway_session_threads = 32;  // the gateway's default
};

struct LoadResult {
  absl::Status status;  // the services could not start, or a stream failed
  int streams_equal = 0;  // streams whose tokens equal the request's alone
  std::vector<std::string> mismatches;
  // Threads of each process: idle (before the load), and the most seen while it ran.
  int64_t gateway_threads_idle = 0;
  int64_t gateway_threads_peak = 0;
  int64_t draft_threads_peak = 0;
  int64_t verifier_threads_peak = 0;
  // Threads when every stream was open with its first message read.
  int64_t gateway_threads_all_open = 0;
  double wall_s = 0;  // from the first stream's start to the last one's end
  int64_t tokens = 0;
};

const std::string kBin = SPECDEC_BINARY_DIR;

v1::GenerateRequest Request(const LoadOptions& options, int prompt) {
  v1::GenerateRequest request;
  for (int i = 0; i < 6; ++i) request.add_prompt_ids(1 + (prompt * 37 + i * 11) % 900);
  request.set_max_new_tokens(options.new_tokens);
  request.mutable_speculation()->set_num_draft_tokens(options.num_draft_tokens);
  return request;
}

// Polls the processes' thread counts until stopped, keeping the peaks.
class ThreadSampler {
 public:
  ThreadSampler(int gateway, int draft, int verifier)
      : pids_{gateway, draft, verifier}, thread_([this] { Loop(); }) {}
  ~ThreadSampler() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int64_t peak(int i) const { return peaks_[i]; }

 private:
  void Loop() {
    while (!stop_) {
      for (int i = 0; i < 3; ++i) {
        peaks_[i] = std::max<int64_t>(peaks_[i], ThreadCount(pids_[i]));
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
  }
  const int pids_[3];
  std::atomic<int64_t> peaks_[3] = {0, 0, 0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

LoadResult RunLoad(const LoadOptions& options) {
  LoadResult result;
  std::filesystem::create_directories(options.dir);
  const std::string model_dir = options.dir + "/model";
  ModelConfig config = *PresetConfig("tiny");
  config.vocab_size = 1000;
  config.num_hidden_layers = 3;
  config.max_position_embeddings = 256;
  CheckpointOptions checkpoint;
  checkpoint.seed = 5;
  if (absl::Status written = WriteRandomCheckpoint(config, checkpoint, model_dir); !written.ok()) {
    result.status = written;
    return result;
  }
  const std::string sessions = absl::StrCat("--max_sessions=", options.streams + 16);
  const std::vector<std::string> common = {"--model_dir=" + model_dir, "--device=cpu",
                                           "--threads=1", sessions};
  std::vector<std::string> verifier_args = common;
  verifier_args.push_back(absl::StrCat("--debug_delay_ms=", options.verifier_delay_ms));
  // Its KV pool holds every stream at once (the default holds 8 full-length sequences).
  const int blocks_per_stream = (6 + options.new_tokens + options.num_draft_tokens + 16) / 16 + 1;
  verifier_args.push_back(absl::StrCat("--kv_policy=full:pool_blocks=",
                                       (options.streams + 16) * blocks_per_stream));
  auto verifier = ServiceProcess::Start(kBin + "/services/verifier/specdec-verifier",
                                        verifier_args, options.dir + "/verifier.log");
  auto draft = ServiceProcess::Start(kBin + "/services/draft/specdec-draft", common,
                                     options.dir + "/draft.log");
  if (!verifier.ok() || !draft.ok()) {
    result.status = !verifier.ok() ? verifier.status() : draft.status();
    return result;
  }
  auto gateway = ServiceProcess::Start(
      kBin + "/services/gateway/specdec-gateway",
      {"--model_dir=" + model_dir, "--verifier=" + (*verifier)->address(),
       "--draft=" + (*draft)->address(), "--draft_deadline_ms=10000", sessions,
       absl::StrCat("--session_threads=", options.gateway_session_threads)},
      options.dir + "/gateway.log");
  if (!gateway.ok()) {
    result.status = gateway.status();
    return result;
  }
  const std::string address = (*gateway)->address();

  // Each prompt alone first: the reference, and the services warmed up.
  std::vector<std::vector<int32_t>> alone(options.prompts);
  for (int p = 0; p < options.prompts; ++p) {
    Generated one = GenerateThroughGateway(address, Request(options, p));
    if (!one.status.ok()) {
      result.status = absl::InternalError(absl::StrCat("alone: ", one.status.error_message()));
      return result;
    }
    alone[p] = one.ids;
  }
  result.gateway_threads_idle = ThreadCount((*gateway)->pid());

  ThreadSampler sampler((*gateway)->pid(), (*draft)->pid(), (*verifier)->pid());
  absl::Mutex mu;
  int open = 0;
  bool counted = false;
  std::vector<Generated> outputs(options.streams);
  const absl::Time start = absl::Now();
  std::vector<std::thread> clients;
  for (int s = 0; s < options.streams; ++s) {
    clients.emplace_back([&, s] {
      bool waited = false;
      outputs[s] = GenerateThroughGateway(
          address, Request(options, s % options.prompts), [&](size_t) {
            if (waited) return;
            waited = true;
            // A slow reader: nothing more is read until every stream is open.
            absl::MutexLock lock(&mu);
            ++open;
            mu.Await(absl::Condition(&counted));
          });
      if (!waited) {  // failed before its first message: do not hold the others up
        absl::MutexLock lock(&mu);
        ++open;
      }
    });
  }
  {
    absl::MutexLock lock(&mu);
    auto all_open = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return open == options.streams; };
    mu.Await(absl::Condition(&all_open));
    result.gateway_threads_all_open = ThreadCount((*gateway)->pid());
    counted = true;
  }
  for (std::thread& client : clients) client.join();
  result.wall_s = absl::ToDoubleSeconds(absl::Now() - start);
  sampler.Stop();
  result.gateway_threads_peak = sampler.peak(0);
  result.draft_threads_peak = sampler.peak(1);
  result.verifier_threads_peak = sampler.peak(2);
  for (int s = 0; s < options.streams; ++s) {
    const Generated& out = outputs[s];
    result.tokens += static_cast<int64_t>(out.ids.size());
    if (!out.status.ok()) {
      if (result.status.ok()) {
        result.status = absl::InternalError(
            absl::StrCat("stream ", s, ": ", out.status.error_message()));
      }
      continue;
    }
    if (out.ids == alone[s % options.prompts]) {
      ++result.streams_equal;
    } else {
      result.mismatches.push_back(absl::StrCat("stream ", s, " (prompt ", s % options.prompts,
                                               "): ", out.ids.size(), " tokens"));
    }
  }
  return result;
}

TEST(LoadTest, ManySlowStreamsKeepTheGatewaysThreadsBoundedAndTheirTokens) {
  LoadOptions options;
  options.dir = ::testing::TempDir() + "/specdec_load_" + std::to_string(getpid());
  options.streams = 256;
  const LoadResult result = RunLoad(options);
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(result.streams_equal, options.streams) << absl::StrJoin(result.mismatches, "; ");
  std::cout << "gateway threads: idle " << result.gateway_threads_idle << ", all "
            << options.streams << " streams open " << result.gateway_threads_all_open
            << ", peak " << result.gateway_threads_peak << "; draft peak "
            << result.draft_threads_peak << ", verifier peak " << result.verifier_threads_peak
            << std::endl;
  EXPECT_GT(result.gateway_threads_all_open, 0);
  EXPECT_LT(result.gateway_threads_peak, 64);
  EXPECT_LT(result.gateway_threads_all_open, 64);
}

}  // namespace
}  // namespace specdec::testing
