// The draft service (see draft_service.h). Synchronous gRPC: one thread per session stream,
// which runs that session's model work in order (docs/pipeline.md, "Threading").
#include "services/draft/draft_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/model/layer_plan.h"
#include "common/rpc/server.h"
#include "common/rpc/status.h"
#include "common/speculative/acceptance.h"
#include "services/common/compute_threads.h"
#include "services/common/debug_delay.h"
#include "services/common/model_session.h"
#include "services/common/proto_convert.h"
#include "services/common/service_info.h"
#include "services/common/session_spans.h"

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

void Echo(const v1::DraftRequest& request, v1::DraftResponse* response) {
  response->set_session_id(request.session_id());
  response->set_committed_length(request.committed_length());
  response->set_round(request.round());
}

// Runs the newly committed tokens and streams K proposals. Mirrors GenerateSpeculative's draft
// loop exactly (same positions, same q, same random stream), so outputs match in-process runs.
absl::Status Propose(grpc::ServerContext* context, const v1::DraftRequest& request,
                     int32_t max_support, int debug_delay_ms, ModelSession* session,
                     grpc::ServerReaderWriter<v1::DraftResponse, v1::DraftRequest>* stream) {
  const auto start = Clock::now();
  const v1::DraftPropose& propose = request.propose();
  const v1::TokenSpan& span = propose.tokens();
  const int k = propose.num_draft_tokens();
  if (span.tokens_size() == 0) {
    return absl::InvalidArgumentError("a proposal needs at least the pending token");
  }
  if (k < 1 || k > kMaxDraftTokensPerRound) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_draft_tokens must be in [1, ", kMaxDraftTokensPerRound, "], got ", k));
  }
  if (span.start_position() + span.tokens_size() != request.committed_length()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokens [", span.start_position(), ", +", span.tokens_size(),
                     ") do not end at committed_length ", request.committed_length()));
  }
  if (std::optional<v1::SessionLost> lost = session->Rewind(span.start_position())) {
    v1::DraftResponse response;
    Echo(request, &response);
    *response.mutable_session_lost() = *std::move(lost);
    stream->Write(response);
    return absl::OkStatus();
  }
  const SamplingParams& params = session->sampling();
  ASSIGN_OR_RETURN(Logits logits, session->Forward(span.tokens(), LogitsWanted::kLast));
  for (int i = 0; i < k; ++i) {
    if (context->IsCancelled()) return absl::CancelledError("the gateway cancelled the stream");
    if (debug_delay_ms > 0 && !DebugDelay(context, debug_delay_ms)) {
      return absl::CancelledError("the gateway cancelled the stream");
    }
    const int64_t position = request.committed_length() + i;
    TokenDistribution q =
        ToDistribution(logits.row(logits.rows - 1), logits.cols,
                       logits.vocab_ids ? logits.vocab_ids->data() : nullptr, params, max_support);
    const int32_t token = DrawToken(q, params, position, RandomPurpose::kDraft);
    v1::DraftResponse response;
    Echo(request, &response);
    v1::DraftToken* out = response.mutable_token();
    out->set_index(i);
    out->set_token(token);
    // Shared noise accepts by token equality: nobody reads q, so it is not sent.
    if (!params.shared_noise()) ToProto(q, out->mutable_q());
    out->set_last(i + 1 == k);
    out->set_cache_length(session->length());
    out->set_compute_ms(MsSince(start));
    if (!stream->Write(response)) return absl::CancelledError("the gateway went away");
    if (i + 1 < k) {
      ASSIGN_OR_RETURN(logits, session->Forward({token}, LogitsWanted::kLast));
    }
  }
  return absl::OkStatus();
}

}  // namespace

DraftServiceImpl::DraftServiceImpl(std::shared_ptr<Model> model,
                                   std::shared_ptr<const ModelView> view, int32_t max_support,
                                   int max_sessions)
    : model_(std::move(model)),
      view_(std::move(view)),
      max_support_(max_support),
      registry_("draft", max_sessions) {}

grpc::Status DraftServiceImpl::Session(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::DraftResponse, v1::DraftRequest>* stream) {
  std::string id;
  std::unique_ptr<ModelSession> session;
  SessionSpans spans(tracer_, *context, "specdec.v1.Draft/Session");
  bool released = false;
  absl::Status status;
  v1::DraftRequest request;
  while (status.ok() && !released && stream->Read(&request)) {
    if (id.empty()) {
      if (request.session_id().empty()) {
        status = absl::InvalidArgumentError("session_id is empty");
        break;
      }
      absl::StatusOr<std::shared_ptr<SessionSlot>> slot = registry_.Open(request.session_id());
      if (!slot.ok()) {
        status = slot.status();
        break;
      }
      id = request.session_id();
      session = std::make_unique<ModelSession>(view_, *std::move(slot), &registry_, batcher_.get());
      spans.SetSessionId(id);
      SPECDEC_LOG(Debug) << "draft session " << id << " opened";
    } else if (request.session_id() != id) {
      status = absl::InvalidArgumentError(
          absl::StrCat("stream of session ", id, " got a message for ", request.session_id()));
      break;
    }
    switch (request.kind_case()) {
      case v1::DraftRequest::kPrefill: {
        const auto start = Clock::now();
        status =
            session->Prefill(request.prefill().tokens(), FromProto(request.prefill().sampling()));
        if (!status.ok()) break;
        v1::DraftResponse response;
        Echo(request, &response);
        response.mutable_prefilled()->set_cache_length(session->length());
        response.mutable_prefilled()->set_compute_ms(MsSince(start));
        if (metrics_ != nullptr) {
          metrics_->ObserveStep(ModelStep::kPrefill, response.prefilled().compute_ms() / 1e3,
                                request.prefill().tokens().tokens_size());
        }
        stream->Write(response);
        spans.Step("draft.prefill", start, request.round(),
                   request.prefill().tokens().tokens_size(), request.committed_length(),
                   request.traceparent());
        break;
      }
      case v1::DraftRequest::kPropose: {
        const auto start = Clock::now();
        status = Propose(context, request, max_support_, debug_delay_ms_, session.get(), stream);
        const int64_t tokens =
            request.propose().tokens().tokens_size() + request.propose().num_draft_tokens() - 1;
        if (metrics_ != nullptr && status.ok()) {
          metrics_->ObserveStep(ModelStep::kPropose, MsSince(start) / 1e3, tokens);
        }
        spans.Step("draft.propose", start, request.round(), tokens, request.committed_length(),
                   request.traceparent());
        break;
      }
      case v1::DraftRequest::kRelease: {
        released = true;
        v1::DraftResponse response;
        Echo(request, &response);
        response.mutable_released();
        stream->Write(response);
        break;
      }
      default:
        status = absl::InvalidArgumentError("a DraftRequest needs prefill, propose or release");
    }
  }
  spans.Finish(status);
  if (!id.empty()) {
    registry_.Close(id, released ? SessionRegistry::CloseReason::kReleased
                                 : SessionRegistry::CloseReason::kAbandoned);
    SPECDEC_LOG(Debug) << "draft session " << id << (released ? " released" : " abandoned")
                       << (status.ok() ? "" : absl::StrCat(": ", status.ToString()));
  }
  return ToGrpcStatus(status);
}

v1::GetStatsResponse DraftServiceImpl::Stats() const {
  v1::GetStatsResponse stats = registry_.Stats();
  AddBatchStats(batcher_.get(), &stats);
  return stats;
}

grpc::Status DraftServiceImpl::GetStats(grpc::ServerContext*, const v1::GetStatsRequest*,
                                        v1::GetStatsResponse* response) {
  *response = Stats();
  return grpc::Status::OK;
}

grpc::Status DraftServiceImpl::GetInfo(grpc::ServerContext*, const v1::ServiceInfoRequest*,
                                       v1::ServiceInfoResponse* response) {
  *response = MakeServiceInfo(*model_, *view_, "full", max_support_);
  return grpc::Status::OK;
}

grpc::Status DraftServiceImpl::EvictSession(grpc::ServerContext*,
                                            const v1::EvictSessionRequest* request,
                                            v1::EvictSessionResponse* response) {
  response->set_evicted(registry_.Evict(request->session_id()));
  return grpc::Status::OK;
}

absl::Status RunDraftServer(const DraftServerConfig& config) {
  BlockShutdownSignals();
  if (config.model_dir.empty()) return absl::InvalidArgumentError("--model_dir is required");
  if (config.draft_top_k < 0) return absl::InvalidArgumentError("--draft_top_k must be >= 0");
  RETURN_IF_ERROR(SetUpModelServiceProcess(config, "draft"));
  ASSIGN_OR_RETURN(LayerPlan plan,
                   LayerPlanFromFlags(config.draft_layers, config.draft_plan, config.draft_vocab));
  SPECDEC_LOG(Info) << "draft: loading " << config.model_dir << " on " << config.device;
  ASSIGN_OR_RETURN(std::shared_ptr<Model> model,
                   Model::Load(config.model_dir, LoadOptions{config.device, config.dtype}));
  RETURN_IF_ERROR(plan.Validate(model->config()));
  ASSIGN_OR_RETURN(std::shared_ptr<const ModelView> view, model->View(plan));
  SPECDEC_LOG(Info) << "draft: model " << model->config().Summary() << ", plan "
                    << (plan.IsFull() ? std::string("full") : plan.Summary()) << ", device "
                    << model->device() << ", q support " << config.draft_top_k;
  DraftServiceImpl service(model, view, config.draft_top_k, config.max_sessions);
  service.set_batcher(MakeBatcher(config, model->device()));
  if (config.debug_delay_ms > 0) {
    SPECDEC_LOG(Warning) << "draft: --debug_delay_ms=" << config.debug_delay_ms
                         << " (test only: every proposed token is delayed)";
    service.set_debug_delay_ms(config.debug_delay_ms);
  }
  std::unique_ptr<ModelServiceMetrics> metrics;
  if (!config.metrics_listen.empty()) {
    ASSIGN_OR_RETURN(
        metrics, ModelServiceMetrics::Serve(config.metrics_listen, "draft", "full",
                                            [&service] { return SnapshotOf(service.Stats()); }));
    service.set_metrics(metrics.get());
  }
  const std::unique_ptr<Tracer> tracer = MakeServiceTracer(
      config.otlp_endpoint, "specdec-draft", MakeServiceInfo(*model, *view, "", 0).model_name());
  service.set_tracer(tracer.get());
  ServerOptions options;
  options.listen = config.listen;
  options.name = "draft";
  options.health_service_names = {"specdec.v1.Draft"};
  options.shutdown_grace_ms = config.shutdown_grace_ms;
  return ServeUntilSignal(options, {&service});
}

}  // namespace specdec
