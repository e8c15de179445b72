// Test helper for fault injection: a child process (a service on a port the test chooses, so it
// can be killed and restarted on the same address, or a plain client to kill mid-stream), its
// resident memory, and SIGKILL/SIGTERM with a bounded wait.
#ifndef SPECDEC_TESTS_RELIABILITY_CHILD_PROCESS_H_
#define SPECDEC_TESTS_RELIABILITY_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace specdec::testing {

class ChildProcess {
 public:
  // Runs `binary args...` with stdout/stderr to `log_path`. With `port` > 0 it adds
  // --listen=127.0.0.1:PORT and waits until the health service says SERVING.
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args,
      const std::string& log_path, int port = 0, absl::Duration timeout = absl::Seconds(60));
  ~ChildProcess();  // SIGTERM, then SIGKILL after 10 s

  pid_t pid() const { return pid_; }
  const std::string& address() const { return address_; }
  int port() const { return port_; }
  bool running();
  // Sends `signal`; for SIGKILL/SIGTERM waits (up to `wait`, then SIGKILL) and returns the
  // wait status.
  int Signal(int signal, absl::Duration wait = absl::Seconds(10));
  // Waits for the exit (up to `wait`); -1 when still running.
  int Wait(absl::Duration wait);
  std::string Log() const;

 private:
  ChildProcess() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  int port_ = 0;
  std::string address_;
  std::string log_path_;
};

// VmRSS of a process in KiB, from /proc/PID/status (-1 when unknown).
int64_t RssKib(pid_t pid);

}  // namespace specdec::testing

#endif  // SPECDEC_TESTS_RELIABILITY_CHILD_PROCESS_H_
