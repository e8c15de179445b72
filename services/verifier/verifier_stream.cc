// A verifier session stream (see verifier_service.h): the handler that SessionReactor runs on
// the service's workers, one request at a time. A verification is the same steps as
// GenerateSpeculative's verify phase.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/kv_cache/kv_cache_config.h"
#include "common/speculative/acceptance.h"
#include "services/common/debug_delay.h"
#include "services/common/model_session.h"
#include "services/common/proto_convert.h"
#include "services/common/session_reactor.h"
#include "services/common/session_stream_state.h"
#include "services/verifier/scoring.h"
#include "services/verifier/verifier_service.h"

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

void Echo(const v1::VerifierRequest& request, v1::VerifierResponse* response) {
  response->set_session_id(request.session_id());
  response->set_committed_length(request.committed_length());
  response->set_round(request.round());
}

// One verification pass; the same steps as GenerateSpeculative's verify phase.
absl::Status Verify(const v1::VerifierRequest& request, ModelSession* session,
                    v1::VerifierResponse* response) {
  const auto start = Clock::now();
  const v1::VerifyRequest& verify = request.verify();
  const v1::TokenSpan& span = verify.tokens();
  if (span.tokens_size() == 0) {
    return absl::InvalidArgumentError("a verification needs at least the pending token");
  }
  if (verify.drafts_size() > kMaxDraftTokensPerRound) {
    return absl::InvalidArgumentError(absl::StrCat("at most ", kMaxDraftTokensPerRound,
                                                   " draft tokens, got ", verify.drafts_size()));
  }
  if (verify.has_logprobs()) RETURN_IF_ERROR(CheckLogprobRequest(verify.logprobs()));
  if (span.start_position() + span.tokens_size() != request.committed_length()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokens [", span.start_position(), ", +", span.tokens_size(),
                     ") do not end at committed_length ", request.committed_length()));
  }
  std::vector<int32_t> draft_tokens;
  std::vector<TokenDistribution> draft_dists;
  for (const v1::DraftedToken& drafted : verify.drafts()) {
    if (drafted.q().ids_size() != drafted.q().probs_size()) {
      return absl::InvalidArgumentError(
          "a draft distribution has ids and probs of different sizes");
    }
    draft_tokens.push_back(drafted.token());
    draft_dists.push_back(FromProto(drafted.q()));
  }
  if (std::optional<v1::SessionLost> lost = session->Rewind(span.start_position())) {
    *response->mutable_session_lost() = *std::move(lost);
    return absl::OkStatus();
  }
  // Catch-up tokens need no logits; the pending token and the drafts need one row each. All
  // but the drafts are committed: the catch-up is committed as it runs, so that the
  // verification starts with everything before the pending token committed.
  const int n = span.tokens_size();
  if (n > 1) {
    RETURN_IF_ERROR(session
                        ->ForwardCommitted(absl::MakeConstSpan(span.tokens().data(), n - 1),
                                           LogitsWanted::kLast)
                        .status());
  }
  if (const KvCacheConfig* kv = session->view().kv_cache_config()) {
    const int64_t most = kv->Boundaries().MaxDraftTokens(session->length());
    if (static_cast<int64_t>(draft_tokens.size()) > most) {
      return absl::InvalidArgumentError(absl::StrCat(
          draft_tokens.size(), " draft tokens after the pending token at position ",
          session->length(), " would cross a compression boundary of KV policy ", kv->ToString(),
          ": at most ", most, " here (Prefilled.kv_boundary_first/period say where they are)"));
    }
  }
  std::vector<int32_t> input = {span.tokens(n - 1)};
  input.insert(input.end(), draft_tokens.begin(), draft_tokens.end());
  ASSIGN_OR_RETURN(Logits logits, session->Forward(input, LogitsWanted::kAll));  // [K+1, cols]
  std::vector<VerifiedPosition> verified = VerifyProposals(
      logits.values.data(), logits.cols, logits.vocab_ids ? logits.vocab_ids->data() : nullptr,
      session->sampling(), request.committed_length(), draft_tokens, draft_dists,
      verify.up_to_first_rejection());
  v1::VerifyResult* result = response->mutable_verified();
  for (const VerifiedPosition& position : verified) {
    v1::VerifiedPosition* out = result->add_positions();
    out->set_p_prob_of_draft(position.p_prob_of_draft);
    out->set_fallback_token(position.fallback_token);
  }
  if (verify.has_logprobs()) {
    AddVerifyLogprobs(logits, draft_tokens, verify.logprobs().top_n(), result);
  }
  result->set_cache_length(session->length());
  result->set_compute_ms(MsSince(start));
  return absl::OkStatus();
}

}  // namespace

// One session stream: each request is one step on the session's KV cache (prefill, verify or
// release); SessionStreamState registers the session on the first and closes it at the end.
class VerifierServiceImpl::Stream final
    : public SessionHandler<v1::VerifierRequest, v1::VerifierResponse> {
 public:
  Stream(VerifierServiceImpl* service, const grpc::CallbackServerContext& context)
      : service_(service),
        state_("verifier", &service->registry_, service->batcher_.get(), service->tracer_, context,
               "specdec.v1.Verifier/Session") {}

  absl::StatusOr<SessionNext> Handle(const v1::VerifierRequest& request,
                                     SessionOutput<v1::VerifierResponse>& out) override {
    RETURN_IF_ERROR(state_.Open(request.session_id(), [this] { return service_->view_; }));
    v1::VerifierResponse response;
    Echo(request, &response);
    absl::Status status;
    switch (request.kind_case()) {
      case v1::VerifierRequest::kPrefill:
        status = Prefill(request, &response);
        break;
      case v1::VerifierRequest::kVerify: {
        const int delay_ms = service_->debug_delay_ms_;
        if (delay_ms > 0 && !DebugDelay([&out] { return out.IsCancelled(); }, delay_ms)) {
          return absl::CancelledError("the gateway cancelled the stream");
        }
        status = VerifyStep(request, &response);
        break;
      }
      case v1::VerifierRequest::kRelease:
        state_.set_released();
        response.mutable_released();
        break;
      default:
        status = absl::InvalidArgumentError("a VerifierRequest needs prefill, verify or release");
    }
    RETURN_IF_ERROR(status);
    if (out.IsCancelled()) return absl::CancelledError("cancelled");
    out.Write(std::move(response));
    return state_.released() ? SessionNext::kEnd : SessionNext::kRead;
  }

  void End(const absl::Status& status) override { state_.End(status); }

 private:
  absl::Status Prefill(const v1::VerifierRequest& request, v1::VerifierResponse* response) {
    const auto start = Clock::now();
    const absl::Status status =
        request.prefill().has_prompt_logprobs()
            ? PrefillScored(request.prefill(), state_.session(), response->mutable_prefilled())
            : state_.session()->Prefill(request.prefill().tokens(),
                                        FromProto(request.prefill().sampling()));
    response->mutable_prefilled()->set_cache_length(state_.session()->length());
    if (const KvCacheConfig* kv = service_->view_->kv_cache_config()) {
      const KvBoundaries bounds = kv->Boundaries();
      response->mutable_prefilled()->set_kv_boundary_first(bounds.first);
      response->mutable_prefilled()->set_kv_boundary_period(bounds.period);
    }
    response->mutable_prefilled()->set_compute_ms(MsSince(start));
    if (service_->metrics_ != nullptr && status.ok()) {
      service_->metrics_->ObserveStep(ModelStep::kPrefill, response->prefilled().compute_ms() / 1e3,
                                      request.prefill().tokens().tokens_size());
    }
    state_.spans().Step("verifier.prefill", start, request.round(),
                        request.prefill().tokens().tokens_size(), request.committed_length(),
                        request.traceparent());
    return status;
  }

  absl::Status VerifyStep(const v1::VerifierRequest& request, v1::VerifierResponse* response) {
    const auto start = Clock::now();
    const absl::Status status = Verify(request, state_.session(), response);
    const int64_t tokens = request.verify().tokens().tokens_size() + request.verify().drafts_size();
    if (service_->metrics_ != nullptr && status.ok() && response->has_verified()) {
      service_->metrics_->ObserveStep(ModelStep::kVerify, response->verified().compute_ms() / 1e3,
                                      tokens);
    }
    state_.spans().Step("verifier.verify", start, request.round(), tokens,
                        request.committed_length(), request.traceparent());
    return status;
  }

  VerifierServiceImpl* const service_;
  SessionStreamState state_;
};

grpc::ServerBidiReactor<v1::VerifierRequest, v1::VerifierResponse>* VerifierServiceImpl::Session(
    grpc::CallbackServerContext* context) {
  return new SessionReactor<v1::VerifierRequest, v1::VerifierResponse>(
      &workers_, std::make_unique<Stream>(this, *context));
}

}  // namespace specdec
