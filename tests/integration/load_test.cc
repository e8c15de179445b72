// The gateway under 256 concurrent slow streams (issue: a thread per stream): its thread count
// stays bounded by its pool (--session_threads), not by the streams, and every stream gets the
// tokens the same request gets alone (tests/integration/load_scenario.h says how the streams
// are made slow). The figures with timings: tests/bench/load_bench, docs/benchmarks/load.md.
#include <unistd.h>

#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/integration/load_scenario.h"

namespace specdec::testing {
namespace {

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
