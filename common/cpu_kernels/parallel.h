// The CPU engine's compute threads: a small persistent pool that splits one kernel call (a
// matrix product's panels) across threads. Workers spin briefly before sleeping, because a
// decode step makes dozens of calls of tens of microseconds each, too short for a wake-up.
#ifndef SPECDEC_COMMON_CPU_KERNELS_PARALLEL_H_
#define SPECDEC_COMMON_CPU_KERNELS_PARALLEL_H_

#include <cstdint>
#include <functional>

namespace specdec {

// Threads kernel calls use (including the caller's). 1 runs everything on the caller.
void SetComputeThreads(int threads);
int ComputeThreads();

// Calls fn(begin, end) over disjoint ranges covering [0, n), on up to ComputeThreads() threads,
// each range at least `grain` long; returns when all are done. Calls from several threads at
// once are serialised (one kernel at a time owns the pool); a call made while the pool is busy
// runs on its caller alone.
void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace specdec

#endif  // SPECDEC_COMMON_CPU_KERNELS_PARALLEL_H_
