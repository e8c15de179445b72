// Server setup shared by the three services: listen, standard health service, server
// reflection, and a graceful shutdown on SIGTERM/SIGINT (health NOT_SERVING, in-flight calls
// get a grace period, then are cancelled).
#ifndef SPECDEC_COMMON_RPC_SERVER_H_
#define SPECDEC_COMMON_RPC_SERVER_H_

#include <functional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"

namespace specdec {

struct ServerOptions {
  // HOST:PORT to listen on (port 0 picks a free port; the log says which).
  std::string listen;
  // For logs ("draft", "verifier", "gateway").
  std::string name;
  // Fully qualified service names reported SERVING by the health service (the overall ""
  // status is always reported).
  std::vector<std::string> health_service_names;
  // How long in-flight calls may run after SIGTERM before they are cancelled.
  int shutdown_grace_ms = 5000;
};

// Blocks SIGTERM and SIGINT in the calling thread and in every thread it creates later, so
// that ServeUntilSignal() receives them with sigwait. Call first thing in main(), before
// libtorch or gRPC start threads.
void BlockShutdownSignals();

// Builds and starts a server with `services`, reports SERVING on the health service (the
// caller has loaded its model before calling), and blocks until SIGTERM or SIGINT. Then:
// NOT_SERVING, `on_shutdown` (e.g. stop taking new work), Shutdown with the grace deadline,
// and returns. UNAVAILABLE when the address cannot be bound.
absl::Status ServeUntilSignal(const ServerOptions& options,
                              const std::vector<grpc::Service*>& services,
                              const std::function<void()>& on_shutdown = nullptr);

}  // namespace specdec

#endif  // SPECDEC_COMMON_RPC_SERVER_H_
