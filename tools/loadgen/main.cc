// specdec-loadgen: N concurrent Generate streams against a gateway on loopback for T seconds
// (and at most --max_requests), then reports tokens/s, time to first token and inter-token
// latency (p50/p99), errors by status code, each service's resident memory before, at peak and
// after the load, and the sessions still open afterwards (there must be none).
// Bounded by design: loopback addresses only, a duration, a request cap, a per-request deadline.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/procfs/proc_status.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/gateway.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"

ABSL_FLAG(std::string, server, "127.0.0.1:50050", "gateway address (loopback only)");
ABSL_FLAG(std::string, draft, "", "draft address(es), comma-separated: sessions checked after");
ABSL_FLAG(std::string, verifier, "", "verifier address(es), comma-separated: sessions checked after");
ABSL_FLAG(std::string, pids, "",
          "NAME=PID,... of the services whose RSS is reported (e.g. gateway=1,draft=2,verifier=3)");
ABSL_FLAG(int, streams, 4, "concurrent streams");
ABSL_FLAG(double, duration_s, 10, "seconds of load (no new request starts after)");
ABSL_FLAG(int, max_requests, 100000, "requests at most (all streams together)");
ABSL_FLAG(int, max_new_tokens, 64, "tokens per request");
ABSL_FLAG(int, prompt_len, 16, "prompt length in tokens (random ids, seeded per request)");
ABSL_FLAG(int, k, 4, "draft tokens per round (0: no speculation)");
ABSL_FLAG(bool, adaptive, false, "adaptive K (--k is the bound)");
ABSL_FLAG(float, temperature, 0.0f, "0: greedy");
ABSL_FLAG(int, timeout_ms, 60000, "per-request deadline");
ABSL_FLAG(int, read_delay_ms, 0,
          "a slow reader: pause this long after each message before reading the next");
ABSL_FLAG(double, settle_s, 2, "seconds to wait after the load before measuring RSS again");
ABSL_FLAG(int, repeat, 1, "load phases (RSS after each: steady memory means no growth)");
ABSL_FLAG(bool, json, false, "also print one JSON line with the results");
ABSL_FLAG(bool, quiet, false, "no per-phase report (exit code only)");

namespace {

using Clock = std::chrono::steady_clock;
using ::specdec::RssKib;
using ::specdec::ThreadCount;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

bool IsLoopback(const std::string& address) {
  absl::string_view host = address;
  absl::ConsumePrefix(&host, "ipv4:");
  absl::ConsumePrefix(&host, "ipv6:");
  return absl::StartsWith(host, "127.") || absl::StartsWith(host, "localhost:") ||
         absl::StartsWith(host, "[::1]:");
}

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t i = std::min(values.size() - 1, static_cast<size_t>(p * (values.size() - 1) + 0.5));
  return values[i];
}

struct Stats {
  absl::Mutex mu;
  std::vector<double> ttft_ms, itl_ms, gap_ms;
  std::map<std::string, int> errors;
  int64_t tokens = 0;
  int ok = 0;
};

struct Service {
  std::string name;
  int pid = 0;
  int64_t before = 0, peak = 0, after = 0;  // RSS, KiB
  int64_t threads_before = 0, threads_peak = 0, threads_after = 0;
};

void RunStream(specdec::v1::Gateway::Stub* stub, int vocab, std::atomic<int>* started,
               absl::Time stop_at, Stats* stats) {
  const int max_requests = absl::GetFlag(FLAGS_max_requests);
  const int read_delay_ms = absl::GetFlag(FLAGS_read_delay_ms);
  while (absl::Now() < stop_at) {
    const int n = started->fetch_add(1);
    if (n >= max_requests) return;
    specdec::v1::GenerateRequest request;
    std::mt19937 rng(static_cast<uint32_t>(n) * 2654435761u + 1);
    for (int i = 0; i < absl::GetFlag(FLAGS_prompt_len); ++i) {
      request.add_prompt_ids(static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab)));
    }
    request.set_max_new_tokens(absl::GetFlag(FLAGS_max_new_tokens));
    request.mutable_speculation()->set_num_draft_tokens(absl::GetFlag(FLAGS_k));
    request.mutable_speculation()->set_adaptive(absl::GetFlag(FLAGS_adaptive));
    request.mutable_sampling()->set_temperature(absl::GetFlag(FLAGS_temperature));
    request.mutable_sampling()->set_seed(n);
    request.set_request_id(absl::StrCat("loadgen-", getpid(), "-", n));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(absl::GetFlag(FLAGS_timeout_ms)));
    const auto start = Clock::now();
    auto reader = stub->Generate(&context, request);
    specdec::v1::GenerateResponse response;
    std::vector<double> itl, gaps;
    double ttft = -1;
    int64_t tokens = 0;
    Clock::time_point last;
    while (reader->Read(&response)) {
      const int count = response.token_ids_size();
      if (count == 0) continue;
      const auto now = Clock::now();
      if (ttft < 0) {
        ttft = Ms(now - start);
      } else {
        const double gap = Ms(now - last);
        gaps.push_back(gap);
        for (int i = 0; i < count; ++i) itl.push_back(gap / count);  // per token, amortised
      }
      last = now;
      tokens += count;
      if (read_delay_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(read_delay_ms));
    }
    const grpc::Status status = reader->Finish();
    absl::MutexLock lock(&stats->mu);
    stats->tokens += tokens;
    if (status.ok()) {
      ++stats->ok;
      if (ttft >= 0) stats->ttft_ms.push_back(ttft);
      stats->itl_ms.insert(stats->itl_ms.end(), itl.begin(), itl.end());
      stats->gap_ms.insert(stats->gap_ms.end(), gaps.begin(), gaps.end());
    } else {
      ++stats->errors[absl::StrCat(static_cast<int>(status.error_code()), " ",
                                   status.error_message().substr(0, 80))];
    }
  }
}

int ActiveSessions(const std::string& kind, const std::string& address) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  specdec::v1::GetStatsResponse stats;
  grpc::Status status =
      kind == "draft"
          ? specdec::v1::Draft::NewStub(channel)->GetStats(&context, {}, &stats)
          : specdec::v1::Verifier::NewStub(channel)->GetStats(&context, {}, &stats);
  return status.ok() ? static_cast<int>(stats.active_sessions()) : -1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "specdec-loadgen --server 127.0.0.1:50050 --streams 4 --duration_s 10 "
      "[--pids gateway=PID,...] [--draft ADDR] [--verifier ADDR] [--json]");
  absl::ParseCommandLine(argc, argv);
  const std::string server = absl::GetFlag(FLAGS_server);
  if (!IsLoopback(server)) {
    std::fprintf(stderr, "specdec-loadgen: %s is not a loopback address (127.x, localhost, [::1])\n",
                 server.c_str());
    return 2;
  }
  const int streams = absl::GetFlag(FLAGS_streams);
  const double duration_s = absl::GetFlag(FLAGS_duration_s);
  if (streams < 1 || streams > 4096 || duration_s <= 0 || duration_s > 24 * 3600) {
    std::fprintf(stderr, "specdec-loadgen: --streams in [1, 4096], --duration_s in (0, 86400]\n");
    return 2;
  }
  std::vector<Service> services;
  for (absl::string_view item : absl::StrSplit(absl::GetFlag(FLAGS_pids), ',', absl::SkipEmpty())) {
    std::pair<std::string, std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    Service service;
    service.name = kv.first;
    if (!absl::SimpleAtoi(kv.second, &service.pid)) {
      std::fprintf(stderr, "specdec-loadgen: bad --pids entry %s\n", std::string(item).c_str());
      return 2;
    }
    services.push_back(service);
  }
  const bool quiet = absl::GetFlag(FLAGS_quiet);

  auto channel = grpc::CreateChannel(server, grpc::InsecureChannelCredentials());
  auto stub = specdec::v1::Gateway::NewStub(channel);
  int vocab = 50000;
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    specdec::v1::GetInfoResponse info;
    grpc::Status status = stub->GetInfo(&context, {}, &info);
    if (!status.ok()) {
      std::fprintf(stderr, "specdec-loadgen: GetInfo: %s\n", status.error_message().c_str());
      return 1;
    }
    vocab = std::max(1, std::min(info.vocab_size(), 50277));  // ids the tokenizer knows
  }

  int exit_code = 0;
  std::string json_phases;
  for (int phase = 0; phase < absl::GetFlag(FLAGS_repeat); ++phase) {
    for (Service& s : services) {
      s.before = s.peak = RssKib(s.pid);
      s.threads_before = s.threads_peak = ThreadCount(s.pid);
    }
    Stats stats;
    std::atomic<int> started{0};
    const absl::Time stop_at = absl::Now() + absl::Seconds(duration_s);
    const auto start = Clock::now();
    std::vector<std::thread> threads;
    for (int i = 0; i < streams; ++i) {
      threads.emplace_back(RunStream, stub.get(), vocab, &started, stop_at, &stats);
    }
    std::atomic<bool> done{false};
    std::thread sampler([&] {
      while (!done) {
        for (Service& s : services) {
          s.peak = std::max(s.peak, RssKib(s.pid));
          s.threads_peak = std::max(s.threads_peak, ThreadCount(s.pid));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    });
    for (auto& t : threads) t.join();
    const double wall_s = Ms(Clock::now() - start) / 1000;
    done = true;
    sampler.join();
    std::this_thread::sleep_for(
        std::chrono::milliseconds(static_cast<int>(absl::GetFlag(FLAGS_settle_s) * 1000)));
    for (Service& s : services) {
      s.after = RssKib(s.pid);
      s.threads_after = ThreadCount(s.pid);
    }

    // Nothing may be left open once the load is over.
    int gateway_sessions = -1;
    {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      specdec::v1::GetInfoResponse info;
      if (stub->GetInfo(&context, {}, &info).ok()) gateway_sessions = info.active_sessions();
    }
    std::vector<std::string> leftovers;
    if (gateway_sessions != 0) leftovers.push_back(absl::StrCat("gateway ", gateway_sessions));
    for (const std::string kind : {"draft", "verifier"}) {
      const std::string list =
          kind == "draft" ? absl::GetFlag(FLAGS_draft) : absl::GetFlag(FLAGS_verifier);
      for (absl::string_view address : absl::StrSplit(list, ',', absl::SkipEmpty())) {
        const int n = ActiveSessions(kind, std::string(address));
        if (n != 0) leftovers.push_back(absl::StrCat(kind, " ", address, " ", n));
      }
    }

    int errors = 0;
    for (const auto& [what, n] : stats.errors) errors += n;
    const double tokens_per_s = wall_s > 0 ? stats.tokens / wall_s : 0;
    if (!quiet) {
      std::printf("phase %d: %d streams, %.1f s: %d ok, %d errors, %lld tokens, %.1f tokens/s\n",
                  phase, streams, wall_s, stats.ok, errors,
                  static_cast<long long>(stats.tokens), tokens_per_s);
      std::printf("  ttft ms p50 %.1f p99 %.1f | itl ms p50 %.2f p99 %.2f | round gap ms p50 %.1f p99 %.1f\n",
                  Percentile(stats.ttft_ms, 0.5), Percentile(stats.ttft_ms, 0.99),
                  Percentile(stats.itl_ms, 0.5), Percentile(stats.itl_ms, 0.99),
                  Percentile(stats.gap_ms, 0.5), Percentile(stats.gap_ms, 0.99));
      for (const auto& [what, n] : stats.errors) std::printf("  error x%d: %s\n", n, what.c_str());
      for (const Service& s : services) {
        std::printf("  rss %-9s before %7.1f MiB  peak %7.1f MiB  after %7.1f MiB\n",
                    s.name.c_str(), s.before / 1024.0, s.peak / 1024.0, s.after / 1024.0);
        std::printf("  threads %-9s before %lld  peak %lld  after %lld\n", s.name.c_str(),
                    static_cast<long long>(s.threads_before),
                    static_cast<long long>(s.threads_peak),
                    static_cast<long long>(s.threads_after));
      }
      std::printf("  sessions left: %s\n",
                  leftovers.empty() ? "none" : absl::StrJoin(leftovers, ", ").c_str());
      std::fflush(stdout);
    }
    std::string rss_json;
    for (const Service& s : services) {
      absl::StrAppend(&rss_json, rss_json.empty() ? "" : ",",
                      absl::StrFormat("\"%s\":{\"before_kib\":%d,\"peak_kib\":%d,\"after_kib\":%d,"
                                      "\"threads_before\":%d,\"threads_peak\":%d,"
                                      "\"threads_after\":%d}",
                                      s.name, s.before, s.peak, s.after, s.threads_before,
                                      s.threads_peak, s.threads_after));
    }
    absl::StrAppend(
        &json_phases, json_phases.empty() ? "" : ",",
        absl::StrFormat(
            "{\"streams\":%d,\"wall_s\":%.3f,\"ok\":%d,\"errors\":%d,\"tokens\":%d,"
            "\"tokens_per_s\":%.2f,\"ttft_p50_ms\":%.2f,\"ttft_p99_ms\":%.2f,\"itl_p50_ms\":%.3f,"
            "\"itl_p99_ms\":%.3f,\"gap_p50_ms\":%.2f,\"gap_p99_ms\":%.2f,\"sessions_left\":%d,"
            "\"rss\":{%s}}",
            streams, wall_s, stats.ok, errors, stats.tokens, tokens_per_s,
            Percentile(stats.ttft_ms, 0.5), Percentile(stats.ttft_ms, 0.99),
            Percentile(stats.itl_ms, 0.5), Percentile(stats.itl_ms, 0.99),
            Percentile(stats.gap_ms, 0.5), Percentile(stats.gap_ms, 0.99),
            static_cast<int>(leftovers.size()), rss_json));
    if (errors > 0 || !leftovers.empty()) exit_code = 1;
  }
  if (absl::GetFlag(FLAGS_json)) std::printf("{\"phases\":[%s]}\n", json_phases.c_str());
  return exit_code;
}
