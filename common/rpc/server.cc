// Server setup and graceful shutdown (see server.h).
#include "common/rpc/server.h"

#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <memory>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/server_interceptor.h>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "grpc/health/v1/health.pb.h"

namespace specdec {
namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// gRPC answers a request it cannot parse (malformed protobuf, or a proto3 string field that is
// not valid UTF-8, e.g. a raw-bytes prompt) with INTERNAL and an empty message. It is the
// caller's mistake: say so with INVALID_ARGUMENT. Only for calls whose single request gRPC
// parses before the handler runs (unary and server-streaming), where a missing message after
// the receive means exactly that.
class ParseErrorInterceptor : public grpc::experimental::Interceptor {
 public:
  explicit ParseErrorInterceptor(grpc::experimental::ServerRpcInfo* info) : info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    const auto type = info_->type();
    const bool single_request =
        type == grpc::experimental::ServerRpcInfo::Type::UNARY ||
        type == grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING;
    if (single_request &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() == nullptr) {
      parse_failed_ = true;
    }
    if (parse_failed_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS) &&
        methods->GetSendStatus().error_code() == grpc::StatusCode::INTERNAL) {
      methods->ModifySendStatus(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("the request to ", info_->method(),
                       " could not be parsed: malformed protobuf, or a string field that is not "
                       "valid UTF-8 (send raw bytes as token ids)")));
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  bool parse_failed_ = false;
};

class ParseErrorInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new ParseErrorInterceptor(info);
  }
};

}  // namespace

void BlockShutdownSignals() {
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

absl::Status ServeUntilSignal(const ServerOptions& options,
                              const std::vector<grpc::Service*>& services,
                              const std::function<void()>& on_shutdown) {
  // Idempotent; makes sure sigwait below sees the signals even if main() forgot.
  BlockShutdownSignals();
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  // gRPC's default health service is not generated code: reflection lists it but can describe
  // it only if the generated health messages are in the process. A service that never calls
  // Health itself (draft, verifier) would not link them, and `grpcurl describe
  // grpc.health.v1.Health` would answer "Symbol not found" (reflection_test).
  (void)grpc::health::v1::HealthCheckRequest::descriptor();

  grpc::ServerBuilder builder;
  // A second process on the same port must fail, not share it silently.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int selected_port = 0;
  builder.AddListeningPort(options.listen, grpc::InsecureServerCredentials(), &selected_port);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(std::make_unique<ParseErrorInterceptorFactory>());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || selected_port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  health->SetServingStatus(true);
  for (const std::string& name : options.health_service_names) {
    health->SetServingStatus(name, true);
  }
  SPECDEC_LOG(Info) << options.name << " serving on " << options.listen << " (port "
                    << selected_port << ")";

  sigset_t set = ShutdownSignals();
  int signal_number = 0;
  sigwait(&set, &signal_number);
  SPECDEC_LOG(Info) << options.name << " got signal " << signal_number
                    << ", shutting down (grace " << options.shutdown_grace_ms << " ms)";
  health->SetServingStatus(false);
  if (on_shutdown) on_shutdown();
  server->Shutdown(std::chrono::system_clock::now() +
                   std::chrono::milliseconds(options.shutdown_grace_ms));
  server->Wait();
  SPECDEC_LOG(Info) << options.name << " stopped";
  return absl::OkStatus();
}

}  // namespace specdec
