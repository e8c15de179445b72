// --cpus and --threads of the model services: pin first (so every thread, BLAS pool included,
// stays on the chosen CPUs), then size the compute threads to the pinned set.
#ifndef SPECDEC_SERVICES_COMMON_COMPUTE_THREADS_H_
#define SPECDEC_SERVICES_COMMON_COMPUTE_THREADS_H_

#include <string>

#include "absl/status/status.h"

namespace specdec {

// `cpus` empty: no pinning, `threads` as given (0: the model's default). Otherwise the process
// is pinned to the list and `threads` 0 becomes one thread per listed CPU.
absl::Status PinCpusAndConfigureThreads(const std::string& cpus, int threads,
                                        const std::string& role);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_COMPUTE_THREADS_H_
