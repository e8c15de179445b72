// What the gateway reports about its requests: Prometheus metrics (requests by outcome and
// code, tokens, acceptance, round latency by phase, time to first token, sessions, fallbacks)
// and OpenTelemetry spans (a request span with a "prefill" child; per round a "round" span with
// "draft", "verify" and "accept" children at the times the work really ran, so overlapped rounds
// overlap). One RequestTrace per Generate call turns the round records into both.
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
  // The traceparent naming `span`, a span of this request whose id the session chose before the
  // work (a round's draft or verify span, the prefill span), for the draft's and the verifier's
  // messages of that work: their spans become its children. Empty when spans are not exported.
  std::string TraceparentFor(const SpanId& span) const;
  // The clock of this request's spans (the steady clock mapped to Unix time once): the session's
  // clock runs on it (SteadySessionClock), so the times it hands in below and the spans' own
  // agree exactly.
  const SteadyToUnix& clock() const { return clock_; }
  // The request was accepted and runs as `session_id`.
  void Start(const std::string& session_id, const std::string& request_id, int64_t prompt_tokens,
             int num_draft_tokens, bool adaptive);
  // The prefill of both services ran from `start_ns` to `end_ns` (Unix nanoseconds); `span` is
  // the id its messages named.
  void OnPrefill(const SpanId& span, uint64_t start_ns, uint64_t end_ns, int64_t prompt_tokens,
                 bool ok);
  // The ids of one round's spans, chosen before its work so that its messages can name them.
  struct RoundSpanIds {
    SpanId round = NewSpanId();
    SpanId draft = NewSpanId();
    SpanId verify = NewSpanId();
  };
  // One round ended now: its record (whose *_unix_nanos say when its draft and verify work ran;
  // the accept phase runs from the end of verify to now), when it started (Unix nanoseconds), its
  // span ids. An overlapped round's span starts with its draft work, in the previous round.
  void OnRound(const v1::RoundRecord& record, uint64_t round_start_ns, const RoundSpanIds& ids);
  // Round `round` asked the draft for the next round ahead (overlapped rounds) at `start_ns`,
  // and the gateway gave that up at `end_ns` (the round was not all accepted, the guess at the
  // bonus token was wrong, or the request ended): a "predraft" span under that round's span.
  void OnUnusedPredraft(int64_t round, const SpanId& round_span, const SpanId& span,
                        uint64_t start_ns, uint64_t end_ns);
  // The request's end (before Done): usage and finish reason.
  void Finish(const v1::Usage& usage, v1::FinishReason finish_reason);
  // The status returned to the client; returns it.
  grpc::Status Done(grpc::Status status);

 private:
  SpanData Child(const SpanId& parent, std::string name, uint64_t start_ns, uint64_t end_ns) const;

  const GatewayObservability* obs_;
  const SteadyToUnix clock_;
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
