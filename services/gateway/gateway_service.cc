// The gateway service (see gateway_service.h). Each gRPC Generate stream is a reactor whose
// session steps run on the service's SessionRunner; each HTTP completion runs on its civetweb
// worker thread through Serve (docs/pipeline.md, "Threading").
#include "services/gateway/gateway_service.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/rpc/server.h"
#include "common/rpc/status.h"
#include "common/sampling/logprobs.h"
#include "common/tracing/trace_context.h"
#include "services/common/proto_convert.h"
#include "absl/memory/memory.h"
#include "services/common/session_runner.h"
#include "services/gateway/call_alarm.h"
#include "services/gateway/generate_reactor.h"
#include "services/gateway/generation_session.h"
#include "services/gateway/grpc_backends.h"
#include "services/gateway/http_server.h"
#include "services/gateway/trace_observer.h"

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 256;

std::string RandomHex() {
  static std::mt19937_64* rng = new std::mt19937_64(std::random_device{}());
  static absl::Mutex* mu = new absl::Mutex;
  absl::MutexLock lock(mu);
  return absl::StrFormat("%016x", (*rng)());
}

}  // namespace

std::string ModelName(const std::string& model_dir) {
  std::filesystem::path dir(model_dir);
  if (!dir.has_filename()) dir = dir.parent_path();
  return dir.filename().string();
}

GatewayServiceImpl::GatewayServiceImpl(GatewayConfig config, ModelConfig model_config,
                                       std::unique_ptr<Tokenizer> tokenizer,
                                       std::unique_ptr<ReplicaSet> verifiers,
                                       std::unique_ptr<ReplicaSet> drafts)
    : config_(std::move(config)),
      model_config_(std::move(model_config)),
      tokenizer_(std::move(tokenizer)),
      verifiers_(std::move(verifiers)),
      drafts_(std::move(drafts)),
      runner_(std::make_unique<SessionRunner>(config_.session_threads)) {}

absl::StatusOr<GenerationRequest> GatewayServiceImpl::Validate(
    const v1::GenerateRequest& request) const {
  GenerationRequest out;
  out.request_id = request.request_id().empty() ? absl::StrCat("req-", RandomHex())
                                                : request.request_id();
  if (!request.prompt().empty() && request.prompt_ids_size() > 0) {
    return absl::InvalidArgumentError("give prompt or prompt_ids, not both");
  }
  if (request.prompt().size() > static_cast<size_t>(config_.max_prompt_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", request.prompt().size(),
                                                   " bytes; this gateway takes at most ",
                                                   config_.max_prompt_bytes));
  }
  if (!request.prompt().empty()) {
    if (tokenizer_ == nullptr) {
      return absl::FailedPreconditionError(
          "this gateway has no tokenizer.json: send prompt_ids instead of prompt");
    }
    ASSIGN_OR_RETURN(out.prompt, tokenizer_->Encode(request.prompt()));
  } else {
    out.prompt.assign(request.prompt_ids().begin(), request.prompt_ids().end());
  }
  if (out.prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  for (int32_t id : out.prompt) {
    if (id < 0 || id >= model_config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token id ", id, " is outside [0, ",
                                                     model_config_.vocab_size, ")"));
    }
  }
  if (static_cast<int64_t>(out.prompt.size()) >= model_config_.max_position_embeddings) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt has ", out.prompt.size(), " tokens; the model's context is ",
                     model_config_.max_position_embeddings, " (the prompt must leave room)"));
  }
  if (request.max_new_tokens() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 0, got ", request.max_new_tokens()));
  }
  if (request.prompt_only() && request.max_new_tokens() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt_only generates nothing: max_new_tokens must be 0, got ", request.max_new_tokens()));
  }
  if (request.max_new_tokens() > config_.max_new_tokens_cap) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens ", request.max_new_tokens(),
                                                   " is above this gateway's cap of ",
                                                   config_.max_new_tokens_cap));
  }
  out.max_new_tokens = request.max_new_tokens() > 0
                           ? request.max_new_tokens()
                           : std::min(config_.default_max_new_tokens, config_.max_new_tokens_cap);
  out.prompt_only = request.prompt_only();
  if (out.prompt_only) out.max_new_tokens = 0;
  if (request.has_logprobs()) {
    const int top_n = request.logprobs().top_n();
    if (top_n < 0 || top_n > kMaxTopLogprobs) {
      return absl::InvalidArgumentError(
          absl::StrCat("logprobs.top_n must be in [0, ", kMaxTopLogprobs, "], got ", top_n));
    }
    out.logprobs_top_n = top_n;
    out.prompt_logprobs = request.logprobs().prompt();
  }
  const v1::SamplingParameters& sampling = request.sampling();
  out.sampling.temperature = sampling.temperature();
  out.sampling.top_k = sampling.top_k();
  out.sampling.top_p = sampling.top_p() == 0.0f ? 1.0f : sampling.top_p();
  out.sampling.seed = sampling.seed();
  switch (sampling.coupling()) {
    case v1::SAMPLING_COUPLING_UNSPECIFIED:
      out.sampling.coupling = config_.default_coupling;
      break;
    case v1::SAMPLING_COUPLING_REJECTION:
      out.sampling.coupling = Coupling::kRejection;
      break;
    case v1::SAMPLING_COUPLING_SHARED_NOISE:
      out.sampling.coupling = Coupling::kSharedNoise;
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("sampling.coupling ", static_cast<int>(sampling.coupling()),
                       " is not a SamplingCoupling (0 default, 1 rejection, 2 shared_noise)"));
  }
  if (std::isnan(sampling.top_p()) || sampling.top_p() < 0.0f) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in [0, 1], got ", sampling.top_p()));
  }
  RETURN_IF_ERROR(out.sampling.Validate());
  const v1::SpeculationParameters& speculation = request.speculation();
  if (speculation.num_draft_tokens() < 0 ||
      speculation.num_draft_tokens() > kMaxDraftTokensPerRound) {
    return absl::InvalidArgumentError(absl::StrCat("num_draft_tokens must be in [0, ",
                                                   kMaxDraftTokensPerRound, "], got ",
                                                   speculation.num_draft_tokens()));
  }
  out.num_draft_tokens = speculation.num_draft_tokens();
  out.adaptive = speculation.adaptive();
  out.overlap = config_.overlap_rounds && !speculation.sequential();
  if (request.stop_size() > kMaxStopStrings) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxStopStrings, " stop strings"));
  }
  for (const std::string& stop : request.stop()) {
    if (stop.empty() || stop.size() > kMaxStopBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("stop strings must have 1 to ", kMaxStopBytes, " bytes"));
    }
    if (tokenizer_ == nullptr) {
      return absl::FailedPreconditionError("stop strings need tokenizer.json on the gateway");
    }
    out.stop.push_back(stop);
  }
  out.include_rounds = request.include_rounds();
  return out;
}

GatewayServiceImpl::~GatewayServiceImpl() = default;

grpc::ServerWriteReactor<grpc::ByteBuffer>* GatewayServiceImpl::Generate(
    grpc::CallbackServerContext* context, const grpc::ByteBuffer* request) {
  return GenerateReactor::Start(this, runner_.get(), context, request);
}

// Everything one call holds from its validation to its end.
struct GatewayServiceImpl::Call::State {
  explicit State(const GatewayObservability* observability) : trace(observability) {}

  GatewayServiceImpl* service = nullptr;
  CallContext call;
  RequestTrace trace;  // metrics and spans; Done() records the outcome
  absl::Status refused;  // validation or admission failed: the call's status
  GenerationRequest request;
  bool admitted = false;  // holds one of --max_sessions
  SessionEnvironment env;
  std::unique_ptr<GrpcSessionBackends> backends;
  std::unique_ptr<SteadySessionClock> clock;
  std::unique_ptr<GenerationSession> session;
  bool ended = false;
};

GatewayServiceImpl::Call::Call(std::unique_ptr<State> state) : state_(std::move(state)) {}

GatewayServiceImpl::Call::~Call() {
  if (state_->session != nullptr) state_->session.reset();  // releases both backend streams
  if (state_->admitted) state_->service->active_sessions_.fetch_sub(1);
}

absl::Time GatewayServiceImpl::Call::deadline() const { return state_->env.deadline; }

bool GatewayServiceImpl::Call::Step(const GenerateEmit& emit) {
  return state_->session != nullptr && state_->session->Step(emit);
}

absl::Status GatewayServiceImpl::Call::End() {
  State& s = *state_;
  s.ended = true;
  if (s.session == nullptr) {
    s.trace.Done(ToGrpcStatus(s.refused));
    return s.refused;
  }
  const absl::Status status = s.session->status();
  const v1::Usage& usage = s.session->usage();
  const double tokens_per_s =
      usage.total_ms() > 0 ? usage.generated_tokens() / (usage.total_ms() / 1000.0) : 0.0;
  SPECDEC_LOG(Info) << "request " << s.request.request_id << ": prompt " << usage.prompt_tokens()
                    << " tokens, generated " << usage.generated_tokens() << " in "
                    << usage.rounds() << " rounds, accepted " << usage.accepted_tokens() << "/"
                    << usage.drafted_tokens() << " drafted, "
                    << absl::StrFormat("%.1f tokens/s", tokens_per_s) << ", finish "
                    << v1::FinishReason_Name(s.session->finish_reason())
                    << (status.ok() ? "" : absl::StrCat(", error ", status.ToString()));
  s.trace.Finish(usage, s.session->finish_reason());
  s.trace.Done(ToGrpcStatus(status));
  return status;
}

std::unique_ptr<GatewayServiceImpl::Call> GatewayServiceImpl::BeginCall(
    const v1::GenerateRequest& request, CallContext call) {
  if (observability_ != nullptr && observability_->metrics != nullptr) {
    observability_->metrics->generate_calls.Add({{"transport", call.transport}}).Increment();
  }
  auto state = std::make_unique<Call::State>(observability_);
  Call::State& s = *state;
  s.service = this;
  s.call = std::move(call);
  if (s.call.trace_parent.has_value()) s.trace.Continue(*s.call.trace_parent);
  absl::StatusOr<GenerationRequest> validated = Validate(request);
  if (!validated.ok()) {
    SPECDEC_LOG(Info) << "rejected request: " << validated.status();
    s.refused = validated.status();
    return absl::WrapUnique(new Call(std::move(state)));
  }
  s.request = *std::move(validated);
  if (active_sessions_.fetch_add(1) >= config_.max_sessions) {
    active_sessions_.fetch_sub(1);
    SPECDEC_LOG(Info) << "request " << s.request.request_id << " rejected: "
                      << config_.max_sessions << " sessions active";
    s.refused = absl::ResourceExhaustedError(absl::StrCat(
        "the gateway is at its limit of ", config_.max_sessions, " concurrent sessions"));
    return absl::WrapUnique(new Call(std::move(state)));
  }
  s.admitted = true;

  SessionEnvironment& env = s.env;
  // The client's deadline propagates to every backend call; a request without one gets the
  // gateway's default, so no session can live forever.
  env.client_deadline = s.call.client_deadline;
  if (s.call.client_deadline == absl::InfiniteFuture() && config_.default_deadline_ms > 0) {
    env.deadline = absl::Now() + absl::Milliseconds(config_.default_deadline_ms);
  }
  env.client_cancelled = s.call.cancelled;
  env.tokenizer = tokenizer_.get();
  env.draft_deadline_ms = config_.draft_deadline_ms;
  env.draft_tokens_per_message = config_.draft_tokens_per_message;
  env.max_adaptive_draft_tokens = config_.max_adaptive_draft_tokens;
  env.active_sessions = &active_sessions_;
  env.speculation_max_sessions = config_.speculation_max_sessions;
  env.eos_token_id = static_cast<int32_t>(model_config_.eos_token_id);
  env.max_positions = model_config_.max_position_embeddings;
  const std::string session_id =
      absl::StrCat(s.request.request_id, "-", next_session_.fetch_add(1), "-", RandomHex());
  s.trace.Start(session_id, s.request.request_id, static_cast<int64_t>(s.request.prompt.size()),
                s.request.num_draft_tokens, s.request.adaptive);
  env.trace = &s.trace;

  GrpcBackendsOptions links;
  links.verifiers = verifiers_.get();
  links.drafts = drafts_.get();
  // A gRPC call propagates its deadline and cancellation itself; without one, the client's
  // deadline bounds the backend streams directly.
  links.parent = s.call.grpc_call;
  links.deadline = s.call.grpc_call != nullptr ? env.deadline
                                               : std::min(env.deadline, env.client_deadline);
  links.verifier_timeout = absl::Milliseconds(config_.verifier_timeout_ms);
  // Opening a draft stream and sending to it are bounded like the round's wait for proposals.
  links.draft_op_timeout = absl::Milliseconds(std::max(config_.draft_deadline_ms, 100));
  links.traceparent = s.trace.traceparent();
  s.backends = std::make_unique<GrpcSessionBackends>(std::move(links));
  // The session times its rounds on the trace's clock: records and spans agree exactly.
  s.clock = std::make_unique<SteadySessionClock>(s.trace.clock());
  s.session = std::make_unique<GenerationSession>(session_id, s.request, env, s.backends.get(),
                                                  s.clock.get());
  return absl::WrapUnique(new Call(std::move(state)));
}

absl::Status GatewayServiceImpl::Serve(const v1::GenerateRequest& request, const CallContext& call,
                                       const GenerateEmit& emit) {
  std::unique_ptr<Call> running = BeginCall(request, call);
  // The rounds check the session's deadline, but a client that stops reading blocks Emit: past
  // the deadline the call is cancelled, which unblocks it (no session outlives its deadline).
  CallAlarm overdue;
  if (running->deadline() != absl::InfiniteFuture() && call.cancel) {
    overdue.Set(running->deadline() + absl::Seconds(1), call.cancel);
  }
  while (running->Step(emit)) {
  }
  overdue.Disarm();
  return running->End();
}

grpc::Status GatewayServiceImpl::GetInfo(grpc::ServerContext*, const v1::GetInfoRequest*,
                                         v1::GetInfoResponse* response) {
  response->set_model_name(ModelName(config_.model_dir));
  response->set_model_config(model_config_.Summary());
  response->set_version(SpecdecVersion());
  response->set_vocab_size(static_cast<int32_t>(model_config_.vocab_size));
  response->set_max_position_embeddings(
      static_cast<int32_t>(model_config_.max_position_embeddings));
  response->set_eos_token_id(static_cast<int32_t>(model_config_.eos_token_id));
  response->set_max_new_tokens_cap(config_.max_new_tokens_cap);
  response->set_max_sessions(config_.max_sessions);
  response->set_active_sessions(active_sessions_.load());
  response->set_default_deadline_ms(config_.default_deadline_ms);
  response->set_default_max_new_tokens(config_.default_max_new_tokens);
  response->set_draft_deadline_ms(config_.draft_deadline_ms);
  response->set_verifier_timeout_ms(config_.verifier_timeout_ms);
  response->set_max_prompt_bytes(config_.max_prompt_bytes);
  response->set_overlap_rounds(config_.overlap_rounds);
  response->set_speculation_max_sessions(config_.speculation_max_sessions);
  auto add_replicas = [](const ReplicaSet& set,
                         google::protobuf::RepeatedPtrField<v1::ReplicaStatus>* out) {
    for (const ReplicaState& state : set.States()) {
      v1::ReplicaStatus* replica = out->Add();
      replica->set_address(state.address);
      replica->set_healthy(state.healthy);
      replica->set_failures(state.failures);
    }
  };
  add_replicas(*verifiers_, response->mutable_verifier_replicas());
  if (drafts_ != nullptr) add_replicas(*drafts_, response->mutable_draft_replicas());
  // The first healthy replica of each side describes it (replicas serve the same checkpoint).
  const auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(2);
  if (std::shared_ptr<Replica> verifier = verifiers_->PickHealthy("")) {
    grpc::ClientContext context;
    context.set_deadline(deadline);
    v1::ServiceInfoResponse info;
    if (verifier->verifier()->GetInfo(&context, v1::ServiceInfoRequest(), &info).ok()) {
      response->set_verifier_kv_policy(info.kv_policy());
      response->set_verifier_device(info.device());
    }
  }
  if (std::shared_ptr<Replica> draft = drafts_ != nullptr ? drafts_->PickHealthy("") : nullptr) {
    grpc::ClientContext context;
    context.set_deadline(deadline);
    v1::ServiceInfoResponse info;
    if (draft->draft()->GetInfo(&context, v1::ServiceInfoRequest(), &info).ok()) {
      response->set_draft_plan(info.plan());
      response->set_draft_device(info.device());
      response->set_draft_available(true);
    }
  }
  return grpc::Status::OK;
}

absl::Status RunGatewayServer(const GatewayConfig& config) {
  BlockShutdownSignals();
  if (config.model_dir.empty()) {
    return absl::InvalidArgumentError("--model_dir is required (config.json, tokenizer.json)");
  }
  if (config.verifier.empty()) return absl::InvalidArgumentError("--verifier is required");
  if (config.max_sessions < 1) return absl::InvalidArgumentError("--max_sessions must be >= 1");
  if (config.session_threads < 1) {
    return absl::InvalidArgumentError("--session_threads must be >= 1");
  }
  if (config.max_new_tokens_cap < 1) {
    return absl::InvalidArgumentError("--max_new_tokens_cap must be >= 1");
  }
  if (config.default_deadline_ms < 0) {
    return absl::InvalidArgumentError("--default_deadline_ms must be >= 0 (0: none)");
  }
  if (config.verifier_timeout_ms < 1) {
    return absl::InvalidArgumentError("--verifier_timeout_ms must be >= 1");
  }
  if (config.max_prompt_bytes < 1) return absl::InvalidArgumentError("--max_prompt_bytes must be >= 1");
  if (config.draft_tokens_per_message < 1) {
    return absl::InvalidArgumentError(
        "--draft_tokens_per_message must be >= 1 (1: a message per proposal)");
  }
  ReplicaSetOptions verifier_options;
  verifier_options.target = config.verifier;
  verifier_options.kind = "verifier";
  verifier_options.health_service = "specdec.v1.Verifier";
  ASSIGN_OR_RETURN(std::unique_ptr<ReplicaSet> verifiers, ReplicaSet::Create(verifier_options));
  std::unique_ptr<ReplicaSet> drafts;
  if (!config.draft.empty()) {
    ReplicaSetOptions draft_options = verifier_options;
    draft_options.target = config.draft;
    draft_options.kind = "draft";
    draft_options.health_service = "specdec.v1.Draft";
    ASSIGN_OR_RETURN(drafts, ReplicaSet::Create(draft_options));
  }
  ASSIGN_OR_RETURN(ModelConfig model_config, LoadModelConfig(config.model_dir + "/config.json"));
  std::unique_ptr<Tokenizer> tokenizer;
  const std::string tokenizer_path = config.model_dir + "/tokenizer.json";
  if (std::filesystem::exists(tokenizer_path)) {
    ASSIGN_OR_RETURN(tokenizer, Tokenizer::FromFile(tokenizer_path));
  } else {
    SPECDEC_LOG(Warning) << "gateway: no " << tokenizer_path
                         << "; only prompt_ids requests, no text output";
  }
  SPECDEC_LOG(Info) << "gateway: model " << model_config.Summary() << ", verifier "
                    << config.verifier << ", draft "
                    << (config.draft.empty() ? std::string("none") : config.draft)
                    << ", draft deadline " << config.draft_deadline_ms
                    << " ms, up to " << config.draft_tokens_per_message
                    << " proposal(s) a draft message, max sessions "
                    << config.max_sessions;
  SPECDEC_LOG(Info) << "gateway: " << verifiers->size() << " verifier replica(s), "
                    << (drafts != nullptr ? drafts->size() : 0)
                    << " draft replica(s); default deadline " << config.default_deadline_ms
                    << " ms, verifier timeout " << config.verifier_timeout_ms << " ms";
  GatewayServiceImpl service(config, model_config, std::move(tokenizer), std::move(verifiers),
                             std::move(drafts));
  // Metrics, spans and the HTTP API (docs/observability.md); each is off when its flag is empty.
  GatewayTelemetryOptions telemetry_options;
  telemetry_options.metrics_listen = config.metrics_listen;
  telemetry_options.otlp_endpoint = config.otlp_endpoint;
  telemetry_options.trace_file = config.trace_file;
  telemetry_options.model_name = ModelName(config.model_dir);
  ASSIGN_OR_RETURN(std::unique_ptr<GatewayTelemetry> telemetry,
                   GatewayTelemetry::Start(telemetry_options));
  service.set_observability(telemetry->observability());
  // The HTTP API drives sessions through `service` directly (no gRPC hop), so it needs nothing
  // from the gRPC server and starts first; it is stopped before `service` goes away.
  std::unique_ptr<HttpServer> http;
  if (!config.http_listen.empty()) {
    ASSIGN_OR_RETURN(http,
                     HttpServer::Start(HttpServerOptionsFor(config, telemetry_options.model_name,
                                                            telemetry->observability()),
                                       &service));
  }
  ServerOptions options;
  options.listen = config.listen;
  options.name = "gateway";
  options.health_service_names = {"specdec.v1.Gateway"};
  options.shutdown_grace_ms = config.shutdown_grace_ms;
  absl::Time grace_end = absl::InfinitePast();  // no signal (gRPC failed to start): at once
  const absl::Status status = ServeUntilSignal(options, {&service}, [&] {
    grace_end = absl::Now() + absl::Milliseconds(config.shutdown_grace_ms);
    if (http != nullptr) http->Drain();  // new HTTP requests get 503 while gRPC drains
  });
  // HTTP completions get the same grace as gRPC streams, then are cancelled.
  if (http != nullptr) http->Shutdown(grace_end);
  return status;
}

}  // namespace specdec
