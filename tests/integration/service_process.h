// Test helper: runs a service binary as a child process on a loopback port (port 0, read back
// from the service's log, or one the test chooses so that it can kill and restart the service on
// the same address), waits until
// its gRPC health service says SERVING, and stops it (SIGTERM, then SIGKILL) when destroyed. A
// plain child (a client to kill mid-stream) is started without a port.
#ifndef SPECDEC_TESTS_INTEGRATION_SERVICE_PROCESS_H_
#define SPECDEC_TESTS_INTEGRATION_SERVICE_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/procfs/proc_status.h"

namespace specdec::testing {

// A free TCP port on 127.0.0.1 (bound and released; the OS will not hand it out again soon).
// Only for a port a test must know before the service starts (a restart on the same address,
// an HTTP or metrics port): it can race with another process; Start(port = 0) cannot.
int PickFreePort();

// Waits until the server at `address` reports SERVING on the standard health service.
absl::Status WaitServing(const std::string& address, absl::Duration timeout);

class ServiceProcess {
 public:
  // Starts `binary` with `args` plus --listen=127.0.0.1:PORT (`port`; 0: the kernel picks one
  // and the service's "serving on ... (port N)" log line tells it), stdout and stderr appended
  // to `log_path`, and waits for SERVING. FAILED_PRECONDITION (with
  // the log's tail) when the process dies or never gets there.
  static absl::StatusOr<std::unique_ptr<ServiceProcess>> Start(
      const std::string& binary, const std::vector<std::string>& args, const std::string& log_path,
      absl::Duration timeout = absl::Seconds(60), int port = 0);
  // Starts `binary args...` as a plain child (no port, nothing waited for).
  static absl::StatusOr<std::unique_ptr<ServiceProcess>> StartClient(
      const std::string& binary, const std::vector<std::string>& args, const std::string& log_path);
  ~ServiceProcess();  // SIGTERM, then SIGKILL after 10 s

  const std::string& address() const { return address_; }
  pid_t pid() const { return pid_; }
  bool running();
  // Sends `signal`; for SIGKILL/SIGTERM waits (up to `wait`, then SIGKILL) and returns the wait
  // status.
  int Signal(int signal, absl::Duration wait = absl::Seconds(10));
  // Waits for the exit (up to `wait`); -1 when still running.
  int Wait(absl::Duration wait);
  // The process's log so far (for failure messages).
  std::string Log() const;

 private:
  ServiceProcess() = default;
  static absl::StatusOr<std::unique_ptr<ServiceProcess>> Launch(const std::string& binary,
                                                                std::vector<std::string> argv,
                                                                const std::string& log_path);
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string address_;
  std::string log_path_;
};

// VmRSS of a process in KiB (common/procfs).
using ::specdec::RssKib;

}  // namespace specdec::testing

#endif  // SPECDEC_TESTS_INTEGRATION_SERVICE_PROCESS_H_
