#include "common/affinity/cpu_affinity.h"

#include <sched.h>
#include <sys/sysinfo.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace specdec {
namespace {

constexpr int kMaxCpu = 1024;  // CPU_SETSIZE

absl::StatusOr<int> ParseCpu(absl::string_view text, absl::string_view list) {
  int cpu = -1;
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(text, &cpu) || cpu >= kMaxCpu) {
    return absl::InvalidArgumentError(absl::StrCat("--cpus \"", std::string(list), "\": \"",
                                                   std::string(text),
                                                   "\" is not a CPU number below 1024"));
  }
  return cpu;
}

}  // namespace

absl::StatusOr<std::vector<int>> ParseCpuList(absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("--cpus is empty; use a list like 0,2-3");
  std::vector<int> cpus;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    const size_t dash = part.find('-');
    if (dash == absl::string_view::npos) {
      absl::StatusOr<int> cpu = ParseCpu(part, text);
      if (!cpu.ok()) return cpu.status();
      cpus.push_back(*cpu);
      continue;
    }
    absl::StatusOr<int> first = ParseCpu(part.substr(0, dash), text);
    if (!first.ok()) return first.status();
    absl::StatusOr<int> last = ParseCpu(part.substr(dash + 1), text);
    if (!last.ok()) return last.status();
    if (*last < *first) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--cpus \"", std::string(text), "\": the range ", std::string(part), " runs backwards"));
    }
    for (int cpu = *first; cpu <= *last; ++cpu) cpus.push_back(cpu);
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < kMaxCpu; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

absl::Status PinProcessToCpus(const std::vector<int>& cpus) {
  if (cpus.empty()) return absl::InvalidArgumentError("--cpus names no CPU");
  const int configured = get_nprocs_conf();
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : cpus) {
    if (cpu < 0 || cpu >= configured || cpu >= kMaxCpu) {
      return absl::InvalidArgumentError(
          absl::StrCat("--cpus: CPU ", cpu, " does not exist (this machine has ", configured, ")"));
    }
    CPU_SET(cpu, &set);
  }
  // sched_setaffinity(0) changes only the calling thread: walk every thread of the process, so
  // pools started before this call (OpenBLAS starts its own at load time) are pinned too.
  std::error_code error;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", error)) {
    int tid = 0;
    if (!absl::SimpleAtoi(task.path().filename().string(), &tid)) continue;
    if (sched_setaffinity(tid, sizeof(set), &set) == 0 || errno == ESRCH) continue;
    if (errno == EINVAL) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--cpus: none of CPUs ", absl::StrJoin(cpus, ","), " is available to this process"));
    }
    return absl::InternalError(absl::StrCat("sched_setaffinity(", tid, ") failed: errno ", errno));
  }
  if (error) {
    return absl::InternalError(absl::StrCat("cannot list /proc/self/task: ", error.message()));
  }
  // The kernel silently drops CPUs a cpuset (a container's limit) does not allow: say so.
  if (const std::vector<int> now = AllowedCpus(); now != cpus) {
    return absl::InvalidArgumentError(absl::StrCat("--cpus: only CPUs ", absl::StrJoin(now, ","),
                                                   " of ", absl::StrJoin(cpus, ","),
                                                   " are available to this process"));
  }
  return absl::OkStatus();
}

}  // namespace specdec
