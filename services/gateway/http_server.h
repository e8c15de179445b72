// The gateway's OpenAI-compatible HTTP API (--http_listen): POST /v1/completions (JSON or
// server-sent events with "stream": true) and GET /v1/models, on civetweb. Each completion runs
// through GatewayServiceImpl::Serve on the civetweb worker thread, as gRPC's Generate does, so
// HTTP requests share the session limit, validation, metrics and traces of gRPC ones, with no
// gRPC hop in between (docs/observability.md).
#ifndef SPECDEC_SERVICES_GATEWAY_HTTP_SERVER_H_
#define SPECDEC_SERVICES_GATEWAY_HTTP_SERVER_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "services/gateway/gateway_service.h"
#include "services/gateway/trace_observer.h"

struct mg_context;
struct mg_connection;

namespace specdec {

struct HttpServerOptions {
  std::string listen;           // HOST:PORT
  std::string model_name;       // the one model of GET /v1/models
  int num_draft_tokens = 4;     // K of requests that do not send "num_draft_tokens"
  int num_threads = 64;         // concurrent HTTP requests (beyond: queued by civetweb)
  const GatewayObservability* observability = nullptr;  // http request counter; may be null
};

// Options for `config`.
HttpServerOptions HttpServerOptionsFor(const GatewayConfig& config, const std::string& model_name,
                                       const GatewayObservability* observability);

class HttpServer {
 public:
  // Completions run on `service` (outlives the server). UNAVAILABLE when the address cannot be
  // bound.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(HttpServerOptions options,
                                                           GatewayServiceImpl* service);
  // Stops listening and waits for running requests.
  ~HttpServer();

  // From now on, new requests get 503 (the gateway is shutting down).
  void Drain() { draining_ = true; }
  // After Drain: waits for running completions until `grace_end`, then cancels the rest (each
  // ends at its session's next check; a backend call in flight is bounded by its timeout).
  void Shutdown(absl::Time grace_end);
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
  GatewayServiceImpl* service_ = nullptr;
  std::atomic<bool> draining_{false};
  std::atomic<bool> cancel_all_{false};  // past the shutdown grace
  absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_) = 0;  // completions in Serve
};

// HTTP status for a status code of Generate (400, 404, 429, 503, 504, 499, 500).
int HttpStatusFor(absl::StatusCode code);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_HTTP_SERVER_H_
