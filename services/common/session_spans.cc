// Spans of draft and verifier session streams (see session_spans.h).
#include "services/common/session_spans.h"

#include <algorithm>

#include "common/base/log.h"
#include "common/tracing/otlp_exporter.h"

namespace specdec {

std::optional<TraceContext> IncomingTraceContext(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find(kTraceparentKey);
  if (it == metadata.end()) return std::nullopt;
  return ParseTraceparent(std::string_view(it->second.data(), it->second.size()));
}

std::unique_ptr<Tracer> MakeServiceTracer(const std::string& otlp_endpoint,
                                          const std::string& service_name,
                                          const std::string& model_name) {
  if (otlp_endpoint.empty()) return nullptr;
  OtlpExporterOptions otlp;
  otlp.endpoint = otlp_endpoint;
  otlp.service_name = service_name;
  otlp.resource_attributes = {{"specdec.model", model_name}};
  std::vector<std::unique_ptr<SpanExporter>> exporters;
  exporters.push_back(std::make_unique<OtlpExporter>(std::move(otlp)));
  SPECDEC_LOG(Info) << "tracing: OTLP/gRPC spans to " << otlp_endpoint << " as " << service_name
                    << " (for streams that carry a traceparent)";
  return std::make_unique<Tracer>(std::move(exporters));
}

SessionSpans::SessionSpans(Tracer* tracer, const grpc::ServerContextBase& context,
                           std::string rpc_method) {
  if (tracer == nullptr) return;
  const std::optional<TraceContext> parent = IncomingTraceContext(context);
  // Unsampled: the caller records nothing of this trace, so neither do we.
  if (!parent.has_value() || !parent->sampled) return;
  tracer_ = tracer;
  session_.trace_id = parent->trace_id;
  session_.parent_span_id = parent->span_id;
  session_.span_id = NewSpanId();
  session_.name = std::move(rpc_method);
  session_.kind = SpanKind::kServer;
  session_.start_unix_ns = clock_(Clock::now());
  session_.Set("rpc.system", "grpc");
  session_.Set("rpc.method", session_.name);
}

SessionSpans::~SessionSpans() {
  if (tracer_ == nullptr) return;
  session_.end_unix_ns = std::max(session_.start_unix_ns, UnixNanosNow());
  tracer_->Submit(std::move(session_));
}

void SessionSpans::SetSessionId(const std::string& session_id) {
  if (tracer_ != nullptr) session_.Set("specdec.session_id", session_id);
}

void SessionSpans::Step(const char* name, Clock::time_point start, int64_t round, int64_t tokens,
                        int64_t committed_length, const std::string& traceparent) {
  if (tracer_ == nullptr) return;
  SpanData step;
  step.trace_id = session_.trace_id;
  step.span_id = NewSpanId();
  step.parent_span_id = session_.span_id;
  // A message's own context counts only within the stream's trace: a step in another trace
  // would leave this stream's trace with a gap.
  if (!traceparent.empty()) {
    const std::optional<TraceContext> parent = ParseTraceparent(traceparent);
    if (parent.has_value() && parent->trace_id == session_.trace_id) {
      step.parent_span_id = parent->span_id;
    }
  }
  step.name = name;
  step.start_unix_ns = clock_(start);
  step.end_unix_ns = std::max(step.start_unix_ns, clock_(Clock::now()));
  step.Set("specdec.round", round);
  step.Set("specdec.tokens", tokens);
  step.Set("specdec.committed_length", committed_length);
  tracer_->Submit(std::move(step));
}

void SessionSpans::Finish(const absl::Status& status) {
  if (tracer_ == nullptr) return;
  session_.Set("rpc.grpc.status_code", static_cast<int64_t>(status.code()));
  if (!status.ok()) {
    session_.error = true;
    session_.status_message = status.ToString();
  }
}

}  // namespace specdec
