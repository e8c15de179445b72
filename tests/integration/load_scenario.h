// Many concurrent slow Generate streams against the three services as real processes: what
// load_test checks and tests/bench/load_bench reports (docs/benchmarks/load.md). Every stream
// reads its first message, then waits until all the others have theirs, so all are open at once
// while their sessions run on; the verifier sleeps before each verification
// (--debug_delay_ms), so the rounds are slow and the sessions stay alive while the gateway's
// threads are counted. Each stream's tokens are compared with what the same request gets alone.
#ifndef SPECDEC_TESTS_INTEGRATION_LOAD_SCENARIO_H_
#define SPECDEC_TESTS_INTEGRATION_LOAD_SCENARIO_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace specdec::testing {

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

LoadResult RunLoad(const LoadOptions& options);

}  // namespace specdec::testing

#endif  // SPECDEC_TESTS_INTEGRATION_LOAD_SCENARIO_H_
