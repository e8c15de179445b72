// --cpus and --threads of the model services: pin first (so every thread, BLAS pool included,
// stays on the chosen CPUs), then size the compute threads to the pinned set. And the whole
// process set-up a model service does before it loads its model.
#ifndef SPECDEC_SERVICES_COMMON_COMPUTE_THREADS_H_
#define SPECDEC_SERVICES_COMMON_COMPUTE_THREADS_H_

#include <string>

#include "absl/status/status.h"
#include "services/common/model_service_options.h"

namespace specdec {

// `cpus` empty: no pinning, `threads` as given (0: the model's default). Otherwise the process
// is pinned to the list and `threads` 0 becomes one thread per listed CPU.
absl::Status PinCpusAndConfigureThreads(const std::string& cpus, int threads,
                                        const std::string& role);

// Before a draft or verifier loads its model: pins and sizes threads (above), keeps large
// buffers on the heap (malloc_tuning.h) and installs the caching tensor allocator (the model's
// own tensors then come from it too).
absl::Status SetUpModelServiceProcess(const ModelServiceOptions& options, const std::string& role);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_COMPUTE_THREADS_H_
