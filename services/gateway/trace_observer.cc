// Gateway metrics and spans (see trace_observer.h).
#include "services/gateway/trace_observer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/metrics/metrics_server.h"
#include "common/tracing/chrome_trace_writer.h"
#include "common/tracing/otlp_exporter.h"
#include "services/gateway/finish_reason.h"

namespace specdec {
namespace {

constexpr const char* kPhases[] = {"draft", "verify", "gateway", "network"};

std::vector<double> TokensPerSecondBuckets() {
  return {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000};
}

std::vector<double> AcceptedBuckets() { return {0, 1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32, 64}; }

}  // namespace

const char* FinishReasonLabel(v1::FinishReason reason) {
  return FinishReasonName(FromProto(reason));
}

const char* FallbackLabel(v1::Fallback fallback) {
  switch (fallback) {
    case v1::FALLBACK_NO_DRAFT:
      return "no_draft";
    case v1::FALLBACK_DRAFT_UNAVAILABLE:
      return "draft_unavailable";
    case v1::FALLBACK_DRAFT_DEADLINE:
      return "draft_deadline";
    case v1::FALLBACK_BUSY:
      return "busy";
    case v1::FALLBACK_PAUSED:
      return "paused";
    default:
      return "none";
  }
}

std::string GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return std::to_string(static_cast<int>(code));
  }
}

GatewayMetrics::GatewayMetrics(prometheus::Registry& registry)
    : requests(prometheus::BuildCounter()
                   .Name("specdec_gateway_requests_total")
                   .Help("Generate requests by outcome (finish reason, or error) and gRPC code")
                   .Register(registry)),
      prompt_tokens(prometheus::BuildCounter()
                        .Name("specdec_gateway_prompt_tokens_total")
                        .Help("Prompt tokens of accepted requests")
                        .Register(registry)
                        .Add({})),
      generated_tokens(prometheus::BuildCounter()
                           .Name("specdec_gateway_tokens_generated_total")
                           .Help("Tokens generated (committed and streamed)")
                           .Register(registry)
                           .Add({})),
      drafted_tokens(prometheus::BuildCounter()
                         .Name("specdec_gateway_tokens_drafted_total")
                         .Help("Draft tokens proposed and verified")
                         .Register(registry)
                         .Add({})),
      accepted_tokens(prometheus::BuildCounter()
                          .Name("specdec_gateway_tokens_accepted_total")
                          .Help("Draft tokens accepted by the verifier")
                          .Register(registry)
                          .Add({})),
      rounds(prometheus::BuildCounter()
                 .Name("specdec_gateway_rounds_total")
                 .Help("Speculation rounds (a round without a draft counts too)")
                 .Register(registry)
                 .Add({})),
      acceptance_rate(prometheus::BuildGauge()
                          .Name("specdec_gateway_acceptance_rate")
                          .Help("Accepted / drafted tokens since start (windowed: "
                                "rate(accepted_total) / rate(drafted_total))")
                          .Register(registry)
                          .Add({})),
      acceptance_rate_window(
          prometheus::BuildGauge()
              .Name("specdec_gateway_acceptance_rate_window")
              .Help("Accepted / drafted tokens, each round weighted by exp(-age / window): the "
                    "recent acceptance rate (window 1m or 5m); absent until something is drafted")
              .Register(registry)),
      active_sessions(prometheus::BuildGauge()
                          .Name("specdec_gateway_active_sessions")
                          .Help("Generate requests running now")
                          .Register(registry)
                          .Add({})),
      fallbacks(prometheus::BuildCounter()
                    .Name("specdec_gateway_fallback_rounds_total")
                    .Help("Rounds that ran without (some of) the draft, by reason")
                    .Register(registry)),
      phase_seconds(prometheus::BuildHistogram()
                        .Name("specdec_gateway_round_phase_seconds")
                        .Help("Time of one round's phases: draft and verify compute (as the "
                              "services measured it), gateway bookkeeping, network")
                        .Register(registry)),
      round_seconds(prometheus::BuildHistogram()
                        .Name("specdec_gateway_round_seconds")
                        .Help("Wall time of one round")
                        .Register(registry)
                        .Add({}, LatencyBucketsSeconds())),
      time_to_first_token(prometheus::BuildHistogram()
                              .Name("specdec_gateway_time_to_first_token_seconds")
                              .Help("From a request's arrival to its first token being sent")
                              .Register(registry)
                              .Add({}, LatencyBucketsSeconds())),
      request_seconds(prometheus::BuildHistogram()
                          .Name("specdec_gateway_request_seconds")
                          .Help("From a request's arrival to its last message")
                          .Register(registry)
                          .Add({}, LatencyBucketsSeconds())),
      tokens_per_second(prometheus::BuildHistogram()
                            .Name("specdec_gateway_request_tokens_per_second")
                            .Help("Generated tokens / request time, per finished request")
                            .Register(registry)
                            .Add({}, TokensPerSecondBuckets())),
      round_accepted(prometheus::BuildHistogram()
                         .Name("specdec_gateway_round_accepted_tokens")
                         .Help("Draft tokens accepted per round that had proposals")
                         .Register(registry)
                         .Add({}, AcceptedBuckets())),
      http_requests(prometheus::BuildCounter()
                        .Name("specdec_gateway_http_requests_total")
                        .Help("OpenAI-compatible HTTP API requests by path and HTTP status")
                        .Register(registry)),
      generate_calls(prometheus::BuildCounter()
                         .Name("specdec_gateway_generate_calls_total")
                         .Help("Generate calls by the door they came in through (grpc, http)")
                         .Register(registry)) {
  for (int i = 0; i < 4; ++i) {
    phase[i] = &phase_seconds.Add({{"phase", kPhases[i]}}, LatencyBucketsSeconds());
  }
  // Both series from the start: a test reading "no gRPC call" must not pass on a missing one.
  for (const char* transport : {"grpc", "http"}) generate_calls.Add({{"transport", transport}});
}

void GatewayMetrics::ObserveAcceptance(int accepted, int drafted) {
  if (drafted <= 0) return;
  const absl::Time now = absl::Now();
  for (Window& window : windows) {
    window.ratio.Add(accepted, drafted, now);
    // Family::Add returns the existing series when it is there: racing rounds agree.
    prometheus::Gauge* gauge = window.gauge.load();
    if (gauge == nullptr) {
      gauge = &acceptance_rate_window.Add({{"window", window.label}});
      window.gauge.store(gauge);
    }
    gauge->Set(window.ratio.Ratio());
  }
}

RequestTrace::RequestTrace(const GatewayObservability* obs)
    : obs_(obs), start_(clock_.origin()), start_unix_ns_(clock_.origin_unix_ns()) {
  request_span_.trace_id = NewTraceId();
  request_span_.span_id = NewSpanId();
  request_span_.name = "Generate";
  request_span_.kind = SpanKind::kServer;
  request_span_.start_unix_ns = start_unix_ns_;
  if (obs_ != nullptr) {
    request_span_.Set("rpc.system", "grpc");
    request_span_.Set("rpc.method", "specdec.v1.Gateway/Generate");
    request_span_.Set("specdec.model", obs_->model_name);
  }
}

RequestTrace::~RequestTrace() {
  if (obs_ != nullptr && started_ && obs_->metrics != nullptr)
    obs_->metrics->active_sessions.Decrement();
}

SpanData RequestTrace::Child(const SpanId& parent, std::string name, uint64_t start_ns,
                             uint64_t end_ns) const {
  SpanData span;
  span.trace_id = request_span_.trace_id;
  span.span_id = NewSpanId();
  span.parent_span_id = parent;
  span.name = std::move(name);
  span.start_unix_ns = start_ns;
  span.end_unix_ns = std::max(start_ns, end_ns);
  return span;
}

void RequestTrace::Continue(const TraceContext& parent) {
  caller_ = parent;
  request_span_.trace_id = parent.trace_id;
  request_span_.parent_span_id = parent.span_id;
}

std::string RequestTrace::traceparent() const {
  if (obs_ != nullptr && obs_->tracer != nullptr) {
    return FormatTraceparent({request_span_.trace_id, request_span_.span_id, true});
  }
  return caller_.has_value() ? FormatTraceparent(*caller_) : "";
}

std::string RequestTrace::TraceparentFor(const SpanId& span) const {
  if (obs_ == nullptr || obs_->tracer == nullptr) return "";
  return FormatTraceparent({request_span_.trace_id, span, true});
}

void RequestTrace::Start(const std::string& session_id, const std::string& request_id,
                         int64_t prompt_tokens, int num_draft_tokens, bool adaptive) {
  if (obs_ == nullptr) return;
  started_ = true;
  request_span_.Set("specdec.session_id", session_id);
  request_span_.Set("specdec.request_id", request_id);
  request_span_.Set("specdec.prompt_tokens", prompt_tokens);
  request_span_.Set("specdec.num_draft_tokens", num_draft_tokens);
  request_span_.Set("specdec.adaptive", adaptive);
  if (obs_->metrics != nullptr) {
    obs_->metrics->active_sessions.Increment();
    obs_->metrics->prompt_tokens.Increment(static_cast<double>(prompt_tokens));
  }
}

void RequestTrace::OnRound(const v1::RoundRecord& record, uint64_t round_start_ns,
                           const RoundSpanIds& ids) {
  if (obs_ == nullptr) return;
  const Clock::time_point now = Clock::now();
  const uint64_t now_ns = clock_(now);
  const double round_s =
      static_cast<double>(std::max(now_ns, round_start_ns) - round_start_ns) / 1e9;
  if (GatewayMetrics* m = obs_->metrics) {
    m->rounds.Increment();
    m->drafted_tokens.Increment(record.num_proposed());
    m->accepted_tokens.Increment(record.num_accepted());
    m->generated_tokens.Increment(record.tokens_emitted());
    const double drafted = m->drafted_tokens.Value();
    if (drafted > 0) m->acceptance_rate.Set(m->accepted_tokens.Value() / drafted);
    m->ObserveAcceptance(record.num_accepted(), record.num_proposed());
    if (record.num_proposed() > 0) {
      m->round_accepted.Observe(record.num_accepted());
      m->phase[0]->Observe(record.draft_ms() / 1000.0);
    }
    m->phase[1]->Observe(record.verify_ms() / 1000.0);
    m->phase[2]->Observe(record.gateway_ms() / 1000.0);
    m->phase[3]->Observe(record.network_ms() / 1000.0);
    m->round_seconds.Observe(round_s);
    if (record.fallback() != v1::FALLBACK_UNSPECIFIED) {
      m->fallbacks.Add({{"reason", FallbackLabel(record.fallback())}}).Increment();
    }
    if (!first_token_seen_ && record.tokens_emitted() > 0) {
      m->time_to_first_token.Observe(std::chrono::duration<double>(now - start_).count());
    }
  }
  first_token_seen_ = first_token_seen_ || record.tokens_emitted() > 0;
  if (obs_->tracer == nullptr) return;
  // The real times of the work (trace_observer.h): an overlapped round's draft began in the
  // previous round, so its round starts there too.
  const bool drafted = record.draft_start_unix_nanos() > 0;
  const uint64_t draft_start = static_cast<uint64_t>(record.draft_start_unix_nanos());
  const uint64_t draft_end = static_cast<uint64_t>(record.draft_end_unix_nanos());
  const uint64_t verify_start = static_cast<uint64_t>(record.verify_start_unix_nanos());
  const uint64_t verify_end = static_cast<uint64_t>(record.verify_end_unix_nanos());
  uint64_t round_ns = round_start_ns;
  if (drafted) round_ns = std::min(round_ns, draft_start);
  const uint64_t end_ns = std::max(verify_end, now_ns);
  SpanData round = Child(request_span_.span_id, "round", round_ns, end_ns);
  round.span_id = ids.round;
  round.Set("specdec.round", static_cast<int64_t>(record.round()));
  round.Set("specdec.num_draft_tokens", record.num_draft_tokens());
  round.Set("specdec.num_proposed", record.num_proposed());
  round.Set("specdec.num_accepted", record.num_accepted());
  round.Set("specdec.tokens_emitted", record.tokens_emitted());
  round.Set("specdec.draft_ms", record.draft_ms());
  round.Set("specdec.verify_ms", record.verify_ms());
  round.Set("specdec.gateway_ms", record.gateway_ms());
  round.Set("specdec.network_ms", record.network_ms());
  round.Set("specdec.fallback", FallbackLabel(record.fallback()));
  round.Set("specdec.overlapped", AttributeValue(record.overlapped()));
  std::vector<SpanData> spans;
  if (drafted) {
    SpanData draft = Child(round.span_id, "draft", draft_start, draft_end);
    draft.span_id = ids.draft;
    draft.kind = SpanKind::kClient;
    draft.Set("specdec.round", static_cast<int64_t>(record.round()));
    draft.Set("specdec.num_draft_tokens", record.num_draft_tokens());
    draft.Set("specdec.num_proposed", record.num_proposed());
    draft.Set("specdec.compute_ms", record.draft_ms());
    draft.Set("specdec.overlapped", AttributeValue(record.overlapped()));
    if (!record.draft_plan().empty()) {
      draft.Set("specdec.draft_plan_id", static_cast<int64_t>(record.draft_plan_id()));
      draft.Set("specdec.draft_plan", record.draft_plan());
    }
    spans.push_back(std::move(draft));
  }
  SpanData verify = Child(round.span_id, "verify", verify_start, verify_end);
  verify.span_id = ids.verify;
  verify.kind = SpanKind::kClient;
  verify.Set("specdec.round", static_cast<int64_t>(record.round()));
  verify.Set("specdec.num_proposed", record.num_proposed());
  verify.Set("specdec.compute_ms", record.verify_ms());
  spans.push_back(std::move(verify));
  SpanData accept = Child(round.span_id, "accept", verify_end, end_ns);
  accept.Set("specdec.round", static_cast<int64_t>(record.round()));
  accept.Set("specdec.num_accepted", record.num_accepted());
  accept.Set("specdec.tokens_emitted", record.tokens_emitted());
  spans.push_back(std::move(accept));
  spans.push_back(std::move(round));
  obs_->tracer->Submit(std::move(spans));
}

void RequestTrace::OnPrefill(const SpanId& span, uint64_t start_ns, uint64_t end_ns,
                             int64_t prompt_tokens, bool ok) {
  if (obs_ == nullptr || obs_->tracer == nullptr) return;
  SpanData prefill = Child(request_span_.span_id, "prefill", start_ns, end_ns);
  prefill.span_id = span;
  prefill.Set("specdec.prompt_tokens", prompt_tokens);
  prefill.error = !ok;
  obs_->tracer->Submit(std::move(prefill));
}

void RequestTrace::OnUnusedPredraft(int64_t round, const SpanId& round_span, const SpanId& span,
                                    uint64_t start_ns, uint64_t end_ns) {
  if (obs_ == nullptr || obs_->tracer == nullptr) return;
  SpanData predraft = Child(round_span, "predraft", start_ns, end_ns);
  predraft.span_id = span;
  predraft.kind = SpanKind::kClient;
  predraft.Set("specdec.round", round);
  predraft.Set("specdec.used", AttributeValue(false));
  obs_->tracer->Submit(std::move(predraft));
}

void RequestTrace::Finish(const v1::Usage& usage, v1::FinishReason finish_reason) {
  if (obs_ == nullptr) return;
  finish_reason_ = finish_reason;
  request_span_.Set("specdec.generated_tokens", usage.generated_tokens());
  request_span_.Set("specdec.rounds", usage.rounds());
  request_span_.Set("specdec.drafted_tokens", usage.drafted_tokens());
  request_span_.Set("specdec.accepted_tokens", usage.accepted_tokens());
  request_span_.Set("specdec.finish_reason", FinishReasonLabel(finish_reason));
  if (GatewayMetrics* m = obs_->metrics) {
    const double seconds = std::chrono::duration<double>(Clock::now() - start_).count();
    m->request_seconds.Observe(seconds);
    if (seconds > 0 && usage.generated_tokens() > 0) {
      m->tokens_per_second.Observe(usage.generated_tokens() / seconds);
    }
  }
}

grpc::Status RequestTrace::Done(grpc::Status status) {
  if (obs_ == nullptr) return status;
  const std::string code = GrpcCodeName(status.error_code());
  if (GatewayMetrics* m = obs_->metrics) {
    const char* outcome = status.ok() ? FinishReasonLabel(finish_reason_) : "error";
    m->requests.Add({{"outcome", outcome}, {"code", code}}).Increment();
  }
  if (obs_->tracer != nullptr) {
    request_span_.end_unix_ns = UnixNanosNow();
    request_span_.Set("rpc.grpc.status_code", static_cast<int64_t>(status.error_code()));
    if (!status.ok()) {
      request_span_.error = true;
      request_span_.status_message = code + ": " + status.error_message();
    }
    obs_->tracer->Submit(std::move(request_span_));
  }
  return status;
}

absl::StatusOr<std::unique_ptr<GatewayTelemetry>> GatewayTelemetry::Start(
    const GatewayTelemetryOptions& options) {
  std::unique_ptr<GatewayTelemetry> telemetry(new GatewayTelemetry);
  telemetry->observability_.model_name = options.model_name;
  if (!options.metrics_listen.empty()) {
    telemetry->registry_ = std::make_shared<prometheus::Registry>();
    telemetry->metrics_ = std::make_unique<GatewayMetrics>(*telemetry->registry_);
    ASSIGN_OR_RETURN(telemetry->metrics_server_,
                     MetricsServer::Start(options.metrics_listen, telemetry->registry_));
    telemetry->observability_.metrics = telemetry->metrics_.get();
  }
  std::vector<std::unique_ptr<SpanExporter>> exporters;
  if (!options.otlp_endpoint.empty()) {
    OtlpExporterOptions otlp;
    otlp.endpoint = options.otlp_endpoint;
    otlp.service_name = options.service_name;
    otlp.resource_attributes = {{"specdec.model", options.model_name}};
    exporters.push_back(std::make_unique<OtlpExporter>(std::move(otlp)));
    SPECDEC_LOG(Info) << "tracing: OTLP/gRPC spans to " << options.otlp_endpoint;
  }
  if (!options.trace_file.empty()) {
    ASSIGN_OR_RETURN(std::unique_ptr<ChromeTraceWriter> writer,
                     ChromeTraceWriter::Open(options.trace_file, options.service_name));
    exporters.push_back(std::move(writer));
    SPECDEC_LOG(Info) << "tracing: Chrome trace-event JSON to " << options.trace_file;
  }
  if (!exporters.empty()) {
    telemetry->tracer_ = std::make_unique<Tracer>(std::move(exporters));
    telemetry->observability_.tracer = telemetry->tracer_.get();
  }
  return telemetry;
}

GatewayTelemetry::~GatewayTelemetry() {
  if (tracer_ != nullptr && !tracer_->Flush(absl::Seconds(3))) {
    SPECDEC_LOG(Warning) << "tracing: spans still queued at exit were dropped";
  }
}

}  // namespace specdec
