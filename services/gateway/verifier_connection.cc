// The session's verifier link: open, fail over, re-prefill (see verifier_connection.h).
#include "services/gateway/verifier_connection.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "services/common/proto_convert.h"
#include "services/gateway/replica_failure.h"
#include "services/gateway/token_logprobs.h"

namespace specdec {

VerifierConnection::VerifierConnection(SessionState* state, SessionBackends* backends,
                                       const ClientWatch* client, const Tokenizer* tokenizer)
    : state_(state), backends_(backends), client_(client), tokenizer_(tokenizer) {}

void VerifierConnection::Close(bool release) {
  if (link_ == nullptr) return;
  link_->Close(release, state_->session_id);
  link_.reset();
}

v1::VerifierRequest VerifierConnection::PrefillRequest(int64_t round, bool score_prompt) const {
  const GenerationRequest& request = *state_->request;
  v1::VerifierRequest out;
  out.set_session_id(state_->session_id);
  out.set_committed_length(state_->length());
  out.set_round(round);
  out.set_traceparent(traceparent_);
  v1::VerifierPrefill* prefill = out.mutable_prefill();
  // Every committed token but the pending one, which opens the next verification.
  prefill->mutable_tokens()->set_start_position(0);
  prefill->mutable_tokens()->mutable_tokens()->Add(state_->committed.begin(),
                                                   state_->committed.end() - 1);
  *prefill->mutable_sampling() = ToProto(request.sampling);
  if (score_prompt) {
    prefill->mutable_prompt_logprobs()->set_top_n(std::max(0, request.logprobs_top_n));
    prefill->set_next_token(state_->committed.back());
  }
  return out;
}

namespace {

KvBoundaries BoundariesOf(const v1::Prefilled& prefilled) {
  return KvBoundaries{prefilled.kv_boundary_first(), prefilled.kv_boundary_period()};
}

}  // namespace

absl::Status VerifierConnection::Open(int64_t round) {
  absl::Status last = absl::UnavailableError(
      absl::StrCat("no verifier replica is known for --verifier=", backends_->verifier_target()));
  for (const std::string& address : backends_->RankedVerifiers(state_->session_id)) {
    if (!tried_.insert(address).second) continue;
    Close(false);
    replica_ = address;
    link_ = backends_->OpenVerifier(address);
    const bool score_prompt = state_->request->prompt_logprobs && !prompt_scored_;
    absl::StatusOr<v1::VerifierResponse> response = link_->Call(PrefillRequest(round, score_prompt));
    if (response.ok() && response->has_prefilled()) {
      if (score_prompt) {
        ASSIGN_OR_RETURN(prompt_logprobs_, PromptLogprobs(state_->request->prompt,
                                                          response->prefilled(), tokenizer_));
        prompt_scored_ = true;
      }
      state_->verifier_valid = state_->length() - 1;
      state_->verifier_kv_boundaries = BoundariesOf(response->prefilled());
      if (round > 0) {
        SPECDEC_LOG(Info) << "session " << state_->session_id << ": moved to verifier " << address
                          << " (re-prefilled at round " << round << ")";
      }
      return absl::OkStatus();
    }
    absl::Status status =
        response.ok() ? absl::InternalError(absl::StrCat("verifier ", address,
                                                         " did not acknowledge the prefill"))
                      : response.status();
    RETURN_IF_ERROR(client_->Check());
    // Back-pressure (a full KV pool) and per-request errors go to the client with their code.
    if (!IsReplicaFailure(status)) return status;
    backends_->ReportVerifierFailure(address, status);
    SPECDEC_LOG(Warning) << "session " << state_->session_id << ": verifier " << address
                         << " failed the prefill (" << status.ToString() << ")";
    last = status;
  }
  Close(false);
  return absl::UnavailableError(absl::StrCat("no verifier replica could serve the session (",
                                             tried_.size(), " tried): ", last.message()));
}

absl::Status VerifierConnection::FailOver(int64_t round, const absl::Status& status) {
  RETURN_IF_ERROR(client_->Check());
  if (!IsReplicaFailure(status)) return status;
  backends_->ReportVerifierFailure(replica_, status);
  SPECDEC_LOG(Warning) << "session " << state_->session_id << ": verifier " << replica_
                       << " failed at round " << round << " (" << status.ToString()
                       << "), moving the session";
  return Open(round);
}

absl::Status VerifierConnection::RePrefill(int64_t round, const std::string& reason) {
  SPECDEC_LOG(Info) << "session " << state_->session_id << ": verifier lost the session ("
                    << reason << "), re-prefilling";
  absl::StatusOr<v1::VerifierResponse> prefilled = link_->Call(PrefillRequest(round, false));
  if (!prefilled.ok()) return FailOver(round, prefilled.status());
  if (!prefilled->has_prefilled()) {
    return absl::InternalError("the verifier did not acknowledge the re-prefill");
  }
  state_->verifier_valid = state_->length() - 1;
  state_->verifier_kv_boundaries = BoundariesOf(prefilled->prefilled());
  return absl::OkStatus();
}

absl::StatusOr<v1::VerifierResponse> VerifierConnection::Verify(int64_t round,
                                                                const BuildRequest& build) {
  if (link_ == nullptr) return absl::FailedPreconditionError("no verifier stream is open");
  bool re_prefilled = false;
  while (true) {
    // After a move or a re-prefill, verifier_valid is the pending token's position.
    v1::VerifierRequest request = build(state_->verifier_valid);
    request.set_traceparent(traceparent_);
    absl::StatusOr<v1::VerifierResponse> answer = link_->Call(request);
    if (!answer.ok()) {
      RETURN_IF_ERROR(FailOver(round, answer.status()));
      continue;
    }
    if (!answer->has_session_lost()) return answer;
    if (re_prefilled) {
      return absl::UnavailableError("the verifier lost the session again after a re-prefill");
    }
    re_prefilled = true;
    RETURN_IF_ERROR(RePrefill(round, answer->session_lost().reason()));
  }
}

}  // namespace specdec
