#include "services/common/compute_threads.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/affinity/cpu_affinity.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/model/model.h"
#include "services/common/malloc_tuning.h"

namespace specdec {

absl::Status PinCpusAndConfigureThreads(const std::string& cpus, int threads,
                                        const std::string& role) {
  if (threads < 0) return absl::InvalidArgumentError("--threads must be >= 0");
  if (!cpus.empty()) {
    ASSIGN_OR_RETURN(std::vector<int> list, ParseCpuList(cpus));
    RETURN_IF_ERROR(PinProcessToCpus(list));
    if (threads == 0) threads = static_cast<int>(list.size());
    SPECDEC_LOG(Info) << role << ": pinned to CPUs " << absl::StrJoin(list, ",") << ", " << threads
                      << " compute thread(s)";
  }
  ConfigureComputeThreads(threads);
  return absl::OkStatus();
}

absl::Status SetUpModelServiceProcess(const ModelServiceOptions& options, const std::string& role) {
  if (options.max_sessions < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_sessions must be >= 1, got ", options.max_sessions));
  }
  if (options.session_threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--session_threads must be >= 1, got ", options.session_threads));
  }
  RETURN_IF_ERROR(PinCpusAndConfigureThreads(options.cpus, options.threads, role));
  KeepLargeBuffersOnTheHeap();
  UseCachingCpuAllocator();
  return absl::OkStatus();
}

}  // namespace specdec
