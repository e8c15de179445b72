// The spans a draft or verifier session stream reports, when the process exports spans
// (--otlp_endpoint) and the gateway sent a sampled W3C traceparent with the stream: one SERVER
// span for the stream ("specdec.v1.Verifier/Session"), a child of the gateway's request span,
// and one span per model step ("verifier.verify", "draft.propose", ...). The stream lives as
// long as the session, so the gateway names the span a step serves (its round's draft or verify
// span, or its prefill span) in each message's own `traceparent`; a step is that span's child,
// or the stream span's when the message names none. They join the gateway's trace, so one
// request is one trace across the three services.
#ifndef SPECDEC_SERVICES_COMMON_SESSION_SPANS_H_
#define SPECDEC_SERVICES_COMMON_SESSION_SPANS_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tracing/span.h"
#include "common/tracing/trace_context.h"
#include "common/tracing/tracer.h"

namespace specdec {

// The traceparent a stream's caller sent (gRPC metadata), if any and valid.
std::optional<TraceContext> IncomingTraceContext(const grpc::ServerContextBase& context);

// A tracer exporting over OTLP/gRPC as `service_name` ("specdec-verifier"); null when
// `otlp_endpoint` is empty (tracing off).
std::unique_ptr<Tracer> MakeServiceTracer(const std::string& otlp_endpoint,
                                          const std::string& service_name,
                                          const std::string& model_name);

// One session stream. Not thread-safe: used by the stream's handler, one step at a time.
// Inactive (every call a no-op) without a tracer or a sampled incoming traceparent.
class SessionSpans {
 public:
  using Clock = std::chrono::steady_clock;

  // `rpc_method`: "specdec.v1.Verifier/Session". `tracer` may be null.
  SessionSpans(Tracer* tracer, const grpc::ServerContextBase& context, std::string rpc_method);
  // Submits the stream's span (Finish() sets its status first).
  ~SessionSpans();

  bool active() const { return tracer_ != nullptr; }
  void SetSessionId(const std::string& session_id);
  // A step that ran from `start` to now: `name` ("verifier.verify"), the round it served, the
  // tokens it ran, and the message's own traceparent (empty, malformed, or of another trace: the
  // step is a child of the stream's span).
  void Step(const char* name, Clock::time_point start, int64_t round, int64_t tokens,
            int64_t committed_length, const std::string& traceparent = "");
  void Finish(const absl::Status& status);

 private:
  Tracer* tracer_ = nullptr;
  SteadyToUnix clock_;
  SpanData session_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_SESSION_SPANS_H_
