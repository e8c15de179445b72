// Pins a whole process to a set of CPUs (--cpus on the draft and the verifier). When both run on
// one machine, giving each its own cores keeps their caches warm and keeps the scheduler from
// stacking both on one core while the other idles (docs/benchmarks/pinning.md measures it).
#ifndef SPECDEC_COMMON_AFFINITY_CPU_AFFINITY_H_
#define SPECDEC_COMMON_AFFINITY_CPU_AFFINITY_H_

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace specdec {

// Parses a Linux CPU list ("0", "2-3", "0,2-3"): sorted, without duplicates. Empty, malformed
// or reversed ranges and CPUs >= 1024 are INVALID_ARGUMENT.
absl::StatusOr<std::vector<int>> ParseCpuList(absl::string_view text);

// The CPUs this process may run on now.
std::vector<int> AllowedCpus();

// Restricts every thread of the process (those that exist now, e.g. a BLAS pool started at load
// time, and through inheritance those started later) to `cpus`. A CPU the machine does not
// have, or one the process may not use (a container's cpuset), is INVALID_ARGUMENT, naming it.
absl::Status PinProcessToCpus(const std::vector<int>& cpus);

}  // namespace specdec

#endif  // SPECDEC_COMMON_AFFINITY_CPU_AFFINITY_H_
