// Test helper: runs a service binary as a child process on a loopback port, waits until its
// gRPC health service says SERVING, and stops it (SIGTERM, then SIGKILL) when destroyed.
#ifndef SPECDEC_TESTS_INTEGRATION_SERVICE_PROCESS_H_
#define SPECDEC_TESTS_INTEGRATION_SERVICE_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace specdec::testing {

// A free TCP port on 127.0.0.1 (bound and released; the OS will not hand it out again soon).
int PickFreePort();

// Waits until the server at `address` reports SERVING on the standard health service.
absl::Status WaitServing(const std::string& address, absl::Duration timeout);

class ServiceProcess {
 public:
  // Starts `binary` with `args` plus --listen=127.0.0.1:PORT (a free port), stdout and stderr
  // to `log_path`, and waits for SERVING. FAILED_PRECONDITION (with the log's tail) when the
  // process dies or never gets there.
  static absl::StatusOr<std::unique_ptr<ServiceProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args,
      const std::string& log_path, absl::Duration timeout = absl::Seconds(60));
  ~ServiceProcess();

  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  // Sends `signal` and, for SIGKILL/SIGTERM, waits for the exit. Returns the wait status.
  int Signal(int signal);
  // The process's log so far (for failure messages).
  std::string Log() const;

 private:
  ServiceProcess() = default;
  pid_t pid_ = -1;
  bool reaped_ = false;
  std::string address_;
  std::string log_path_;
};

}  // namespace specdec::testing

#endif  // SPECDEC_TESTS_INTEGRATION_SERVICE_PROCESS_H_
