// A process's /proc/PID/status, as far as the project reads it.
#ifndef SPECDEC_COMMON_PROCFS_PROC_STATUS_H_
#define SPECDEC_COMMON_PROCFS_PROC_STATUS_H_

#include <cstdint>

namespace specdec {

// Resident set size (VmRSS) of process `pid` in KiB; -1 when it cannot be read (no such
// process, or no /proc).
int64_t RssKib(int pid);

// Threads of process `pid` ("Threads:"); -1 when it cannot be read.
int64_t ThreadCount(int pid);

}  // namespace specdec

#endif  // SPECDEC_COMMON_PROCFS_PROC_STATUS_H_
