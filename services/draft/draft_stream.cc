// A draft session stream (see draft_service.h): the handler that SessionReactor runs on the
// service's workers, one request at a time. Mirrors GenerateSpeculative's draft loop, so outputs
// match in-process runs.
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/speculative/acceptance.h"
#include "services/common/debug_delay.h"
#include "services/common/model_session.h"
#include "services/common/proto_convert.h"
#include "services/common/session_reactor.h"
#include "services/common/session_stream_state.h"
#include "services/draft/draft_service.h"

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

// Runs the newly committed tokens and sends K proposals (one message each, or in DraftTokens
// messages of tokens_per_message). Mirrors GenerateSpeculative's draft loop exactly (same
// positions, same q, same random stream), so outputs match in-process runs.
// `plan`: the service's plan as the round starts; a session on another plan moves to it first.
absl::Status Propose(const v1::DraftRequest& request, int32_t max_support, int debug_delay_ms,
                     const DraftPlan& plan, CommittedText* committed_text, ModelSession* session,
                     SessionOutput<v1::DraftResponse>& output) {
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
  const int per_message = propose.tokens_per_message();
  if (per_message < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokens_per_message must be >= 0, got ", per_message));
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
    output.Write(std::move(response));
    return absl::OkStatus();
  }
  if (committed_text != nullptr) {
    // The cache now holds exactly the committed tokens before the span, proposals the gateway
    // accepted included (it does not send those again).
    const std::vector<int32_t>& held = session->tokens();
    const int64_t start = span.start_position();
    const int64_t from = std::max<int64_t>(0, start - committed_text->tokens_per_session());
    if (static_cast<int64_t>(held.size()) == start && from < start) {
      committed_text->Update(request.session_id(), from,
                             absl::MakeConstSpan(held).subspan(from, start - from));
    }
    committed_text->Update(request.session_id(), start, span.tokens());
  }
  // Between rounds, never within one: the new view re-runs the tokens the cache held (exact),
  // so the round drafts wholly on the new plan.
  RETURN_IF_ERROR(session->SwitchView(plan.view));
  const SamplingParams& params = session->sampling();
  ASSIGN_OR_RETURN(Logits logits, session->Forward(span.tokens(), LogitsWanted::kLast));
  v1::DraftResponse batch;  // with per_message >= 1: the proposals not sent yet
  for (int i = 0; i < k; ++i) {
    // A write that failed cancels too (the synchronous Write's false).
    if (output.IsCancelled()) return absl::CancelledError("the gateway cancelled the stream");
    if (debug_delay_ms > 0 &&
        !DebugDelay([&output] { return output.IsCancelled(); }, debug_delay_ms)) {
      return absl::CancelledError("the gateway cancelled the stream");
    }
    const int64_t position = request.committed_length() + i;
    TokenDistribution q =
        ToDistribution(logits.row(logits.rows - 1), logits.cols,
                       logits.vocab_ids ? logits.vocab_ids->data() : nullptr, params, max_support);
    const int32_t token = DrawToken(q, params, position, RandomPurpose::kDraft);
    v1::DraftToken out;
    out.set_index(i);
    out.set_token(token);
    // Shared noise accepts by token equality: nobody reads q, so it is not sent.
    if (!params.shared_noise()) ToProto(q, out.mutable_q());
    out.set_last(i + 1 == k);
    out.set_cache_length(session->length());
    out.set_compute_ms(MsSince(start));
    if (i == 0) {  // a round drafts on one plan: said once
      out.set_plan_id(plan.id);
      out.set_plan(plan.summary);
    }
    if (per_message == 0) {  // a message per proposal
      v1::DraftResponse single;
      Echo(request, &single);
      *single.mutable_token() = std::move(out);
      output.Write(std::move(single));
    } else {
      if (!batch.has_tokens()) Echo(request, &batch);
      *batch.mutable_tokens()->add_tokens() = std::move(out);
      if (batch.tokens().tokens_size() == per_message || i + 1 == k) {
        output.Write(std::move(batch));
        batch.Clear();
      }
    }
    if (i + 1 < k) {
      ASSIGN_OR_RETURN(logits, session->Forward({token}, LogitsWanted::kLast));
    }
  }
  return absl::OkStatus();
}

}  // namespace

// One session stream: each request is one step on the session's KV cache (prefill, propose (K
// proposals, in one or more responses) or release); SessionStreamState registers the session on
// the first and closes it at the end.
class DraftServiceImpl::Stream final : public SessionHandler<v1::DraftRequest, v1::DraftResponse> {
 public:
  Stream(DraftServiceImpl* service, const grpc::CallbackServerContext& context)
      : service_(service),
        state_("draft", &service->registry_, service->batcher_.get(), service->tracer_, context,
               "specdec.v1.Draft/Session") {}

  absl::StatusOr<SessionNext> Handle(const v1::DraftRequest& request,
                                     SessionOutput<v1::DraftResponse>& out) override {
    RETURN_IF_ERROR(state_.Open(request.session_id(), [this] { return service_->plan().view; }));
    switch (request.kind_case()) {
      case v1::DraftRequest::kPrefill:
        RETURN_IF_ERROR(Prefill(request, out));
        return SessionNext::kRead;
      case v1::DraftRequest::kPropose:
        RETURN_IF_ERROR(ProposeStep(request, out));
        return SessionNext::kRead;
      case v1::DraftRequest::kRelease: {
        state_.set_released();
        v1::DraftResponse response;
        Echo(request, &response);
        response.mutable_released();
        out.Write(std::move(response));
        return SessionNext::kEnd;
      }
      default:
        return absl::InvalidArgumentError("a DraftRequest needs prefill, propose or release");
    }
  }

  void End(const absl::Status& status) override { state_.End(status); }

 private:
  absl::Status Prefill(const v1::DraftRequest& request, SessionOutput<v1::DraftResponse>& out) {
    const auto start = Clock::now();
    RETURN_IF_ERROR(state_.session()->Prefill(request.prefill().tokens(),
                                              FromProto(request.prefill().sampling()),
                                              service_->plan().view));
    if (service_->committed_text_ != nullptr) {
      service_->committed_text_->Update(state_.id(), 0, request.prefill().tokens().tokens());
    }
    v1::DraftResponse response;
    Echo(request, &response);
    response.mutable_prefilled()->set_cache_length(state_.session()->length());
    response.mutable_prefilled()->set_compute_ms(MsSince(start));
    if (service_->metrics_ != nullptr) {
      service_->metrics_->ObserveStep(ModelStep::kPrefill, response.prefilled().compute_ms() / 1e3,
                                      request.prefill().tokens().tokens_size());
    }
    out.Write(std::move(response));
    state_.spans().Step("draft.prefill", start, request.round(),
                        request.prefill().tokens().tokens_size(), request.committed_length(),
                        request.traceparent());
    return absl::OkStatus();
  }

  absl::Status ProposeStep(const v1::DraftRequest& request, SessionOutput<v1::DraftResponse>& out) {
    const auto start = Clock::now();
    service_->MaybeDebugSwitch();
    const absl::Status status =
        Propose(request, service_->max_support_, service_->debug_delay_ms_, service_->plan(),
                service_->committed_text_, state_.session(), out);
    const int64_t tokens =
        request.propose().tokens().tokens_size() + request.propose().num_draft_tokens() - 1;
    if (service_->metrics_ != nullptr && status.ok()) {
      service_->metrics_->ObserveStep(ModelStep::kPropose, MsSince(start) / 1e3, tokens);
    }
    state_.spans().Step("draft.propose", start, request.round(), tokens, request.committed_length(),
                        request.traceparent());
    return status;
  }

  DraftServiceImpl* const service_;
  SessionStreamState state_;
};

grpc::ServerBidiReactor<v1::DraftRequest, v1::DraftResponse>* DraftServiceImpl::Session(
    grpc::CallbackServerContext* context) {
  return new SessionReactor<v1::DraftRequest, v1::DraftResponse>(
      &workers_, std::make_unique<Stream>(this, *context));
}

}  // namespace specdec
