// What the gateway reports about its requests: Prometheus metrics (requests by outcome and
// code, tokens, acceptance, round latency by phase, time to first token, sessions, fallbacks)
// and OpenTelemetry spans (a request span; per round a "round" span with "draft", "verify" and
// "accept" children). One RequestTrace per Generate call turns the round records into both.
#ifndef SPECDEC_SERVICES_GATEWAY_TRACE_OBSERVER_H_
#define SPECDEC_SERVICES_GATEWAY_TRACE_OBSERVER_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/metrics/decaying_ratio.h"
#include "common/metrics/metrics_server.h"
#include "common/tracing/span.h"
#include "common/tracing/trace_context.h"
#include "common/tracing/tracer.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "specdec/v1/gateway.pb.h"

namespace specdec {

class GatewayMetrics {
 public:
  explicit GatewayMetrics(prometheus::Registry& registry);

  prometheus::Family<prometheus::Counter>& requests;  // {outcome, code}
  prometheus::Counter& prompt_tokens;
  prometheus::Counter& generated_tokens;
  prometheus::Counter& drafted_tokens;
  prometheus::Counter& accepted_tokens;
  prometheus::Counter& rounds;
  prometheus::Gauge& acceptance_rate;  // accepted / drafted since start
  // accepted / drafted, exponentially decayed: {window="1m"} and {window="5m"} (time constants),
  // added at the first round with proposals (no series before: 0 would read as "none accepted").
  prometheus::Family<prometheus::Gauge>& acceptance_rate_window;
  struct Window {
    const char* label;
    DecayingRatio ratio;
    std::atomic<prometheus::Gauge*> gauge{nullptr};  // set at the first observation
  };
  Window windows[2] = {{"1m", DecayingRatio(absl::Minutes(1))},
                       {"5m", DecayingRatio(absl::Minutes(5))}};
  // Feeds one round's drafted and accepted tokens to the windows (thread-safe).
  void ObserveAcceptance(int accepted, int drafted);
  prometheus::Gauge& active_sessions;
  prometheus::Family<prometheus::Counter>& fallbacks;        // {reason}
  prometheus::Family<prometheus::Histogram>& phase_seconds;  // {phase}
  prometheus::Histogram& round_seconds;
  prometheus::Histogram& time_to_first_token;
  prometheus::Histogram& request_seconds;
  prometheus::Histogram& tokens_per_second;
  prometheus::Histogram& round_accepted;                   // accepted drafts per round
  prometheus::Family<prometheus::Counter>& http_requests;  // {path, status}
  prometheus::Family<prometheus::Counter>& generate_calls;  // {transport}: grpc or http

  prometheus::Histogram* phase[4];  // draft, verify, gateway, network
};

// What every request of the gateway reports to; members may be null (that output is off).
struct GatewayObservability {
  GatewayMetrics* metrics = nullptr;
  Tracer* tracer = nullptr;
  std::string model_name;
};

// One Generate call, from arrival to its status. Not thread-safe: used by the call's thread.
class RequestTrace {
 public:
  using Clock = std::chrono::steady_clock;

  // `obs` may be null (nothing reported).
  explicit RequestTrace(const GatewayObservability* obs);
  ~RequestTrace();

  // The caller's W3C trace context: the request span joins its trace, as a child of its span.
  // Before Start.
  void Continue(const TraceContext& parent);
  // The traceparent for the draft and verifier streams: the request span when spans are
  // exported, else the caller's own (passed through), else empty.
  std::string traceparent() const;
  // The request was accepted and runs as `session_id`.
  void Start(const std::string& session_id, const std::string& request_id, int64_t prompt_tokens,
             int num_draft_tokens, bool adaptive);
  // One round: its record, when it started, and the wall time of its draft and verify phases
  // (the accept phase runs from the end of verify to now).
  void OnRound(const v1::RoundRecord& record, Clock::time_point round_start, double draft_wall_ms,
               double verify_wall_ms);
  // The request's end (before Done): usage and finish reason.
  void Finish(const v1::Usage& usage, v1::FinishReason finish_reason);
  // The status returned to the client; returns it.
  grpc::Status Done(grpc::Status status);

 private:
  uint64_t ToUnixNs(Clock::time_point t) const;
  SpanData Child(const SpanId& parent, std::string name, uint64_t start_ns, uint64_t end_ns) const;

  const GatewayObservability* obs_;
  const Clock::time_point start_;
  const uint64_t start_unix_ns_;
  bool started_ = false;
  bool first_token_seen_ = false;
  v1::FinishReason finish_reason_ = v1::FINISH_REASON_UNSPECIFIED;
  std::optional<TraceContext> caller_;
  SpanData request_span_;  // submitted at Done; round spans go out as each round ends
};

// Everything the gateway's flags turn on: the metrics registry and its /metrics endpoint
// (--metrics_listen), the span exporters (--otlp_endpoint, --trace_file).
struct GatewayTelemetryOptions {
  std::string metrics_listen;  // empty: no metrics endpoint
  std::string otlp_endpoint;   // empty: no OTLP export
  std::string trace_file;      // empty: no Chrome trace file
  std::string model_name;
  std::string service_name = "specdec-gateway";
};

class GatewayTelemetry {
 public:
  static absl::StatusOr<std::unique_ptr<GatewayTelemetry>> Start(
      const GatewayTelemetryOptions& options);
  ~GatewayTelemetry();
  // Valid while this lives; its members are null for what is off.
  const GatewayObservability* observability() const { return &observability_; }
  Tracer* tracer() const { return tracer_.get(); }

 private:
  GatewayTelemetry() = default;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<MetricsServer> metrics_server_;
  std::unique_ptr<GatewayMetrics> metrics_;
  std::unique_ptr<Tracer> tracer_;
  GatewayObservability observability_;
};

// Names used in metrics and span attributes.
const char* FinishReasonLabel(v1::FinishReason reason);
const char* FallbackLabel(v1::Fallback fallback);
std::string GrpcCodeName(grpc::StatusCode code);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_TRACE_OBSERVER_H_
