#include "common/affinity/cpu_affinity.h"

#include <sched.h>

#include <atomic>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(CpuListTest, ParsesListsAndRanges) {
  EXPECT_THAT(*ParseCpuList("0"), ElementsAre(0));
  EXPECT_THAT(*ParseCpuList("2-4"), ElementsAre(2, 3, 4));
  EXPECT_THAT(*ParseCpuList("5,0,2-3,3"), ElementsAre(0, 2, 3, 5));
}

TEST(CpuListTest, RefusesMalformedLists) {
  for (const char* bad : {"", ",", "a", "1-", "-1", "3-1", "1,,2", "1.5", "1024", "99999999999"}) {
    absl::StatusOr<std::vector<int>> cpus = ParseCpuList(bad);
    EXPECT_EQ(cpus.status().code(), absl::StatusCode::kInvalidArgument) << "\"" << bad << "\"";
  }
  EXPECT_THAT(std::string(ParseCpuList("3-1").status().message()), HasSubstr("backwards"));
}

std::vector<int> CpusOfThread(pid_t tid) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(tid, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

// A thread that exists before the call is pinned too (as OpenBLAS's pool is in a service).
TEST(PinProcessTest, PinsThreadsThatAlreadyRun) {
  const std::vector<int> before = AllowedCpus();
  ASSERT_FALSE(before.empty());
  std::atomic<pid_t> tid{0};
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    tid = static_cast<pid_t>(gettid());
    while (!stop) std::this_thread::yield();
  });
  while (tid == 0) std::this_thread::yield();
  const int chosen = before.back();
  ASSERT_TRUE(PinProcessToCpus({chosen}).ok());
  EXPECT_THAT(CpusOfThread(tid), ElementsAre(chosen));
  EXPECT_THAT(AllowedCpus(), ElementsAre(chosen));
  stop = true;
  worker.join();
  // Back to what the test started with, for the tests after this one.
  ASSERT_TRUE(PinProcessToCpus(before).ok());
  EXPECT_EQ(AllowedCpus(), before);
}

TEST(PinProcessTest, RefusesCpusTheProcessMayNotUse) {
  const std::vector<int> before = AllowedCpus();
  const absl::Status status = PinProcessToCpus({1023});
  if (before.back() == 1023) GTEST_SKIP() << "a machine with 1,024 CPUs";
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("CPU 1023 does not exist"));
  EXPECT_EQ(AllowedCpus(), before) << "a refused list must change nothing";
  EXPECT_EQ(PinProcessToCpus({}).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace specdec
