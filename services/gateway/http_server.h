// The gateway's OpenAI-compatible HTTP API (--http_listen): POST /v1/completions (JSON or
// server-sent events with "stream": true) and GET /v1/models, on civetweb. Each completion is a
// client of the gateway's own gRPC Generate on loopback, so HTTP requests share the session
// limit, validation, metrics and traces of gRPC ones (docs/observability.md).
#ifndef SPECDEC_SERVICES_GATEWAY_HTTP_SERVER_H_
#define SPECDEC_SERVICES_GATEWAY_HTTP_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "services/gateway/gateway_service.h"
#include "services/gateway/trace_observer.h"
#include "specdec/v1/gateway.grpc.pb.h"

struct mg_context;
struct mg_connection;

namespace specdec {

struct HttpServerOptions {
  std::string listen;           // HOST:PORT
  std::string gateway_address;  // the gateway's gRPC address, as this process reaches it
  std::string model_name;       // the one model of GET /v1/models
  int num_draft_tokens = 4;     // K of requests that do not send "num_draft_tokens"
  int num_threads = 64;         // concurrent HTTP requests (beyond: queued by civetweb)
  const GatewayObservability* observability = nullptr;  // http request counter; may be null
};

// Options for `config` (gRPC on loopback at config.listen's port).
HttpServerOptions HttpServerOptionsFor(const GatewayConfig& config, const std::string& model_name,
                                       const GatewayObservability* observability);

class HttpServer {
 public:
  // UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  // Stops listening and waits for running requests.
  ~HttpServer();

  // From now on, new requests get 503 (the gateway is shutting down).
  void Drain() { draining_ = true; }
  int port() const { return port_; }

 private:
  HttpServer() = default;
  static int Handle(mg_connection* conn, void* self);
  int HandleRequest(mg_connection* conn);
  int Completions(mg_connection* conn, const std::string& body);
  int Models(mg_connection* conn);
  void Count(const std::string& path, int status);

  HttpServerOptions options_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
  std::atomic<bool> draining_{false};
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Gateway::Stub> stub_;
};

// HTTP status for a gRPC status code of Generate (400, 404, 429, 503, 504, 500).
int HttpStatusFor(grpc::StatusCode code);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_HTTP_SERVER_H_
