// The session's draft link: open, back off, propose, re-prefill (see draft_connection.h).
#include "services/gateway/draft_connection.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "services/common/proto_convert.h"

namespace specdec {

DraftConnection::DraftConnection(SessionState* state, SessionBackends* backends,
                                 const ClientWatch* client, const SessionClock* clock,
                                 absl::Duration draft_deadline, int tokens_per_message)
    : state_(state),
      backends_(backends),
      client_(client),
      clock_(clock),
      draft_deadline_(draft_deadline),
      tokens_per_message_(tokens_per_message) {}

double DraftConnection::MsSince(absl::Time start) const {
  return absl::ToDoubleMilliseconds(clock_->Now() - start);
}

void DraftConnection::Close(bool release) {
  if (link_ == nullptr) return;
  link_->Close(release, state_->session_id);
  link_.reset();
}

v1::DraftRequest DraftConnection::PrefillRequest() {
  v1::DraftRequest request;
  request.set_session_id(state_->session_id);
  request.set_committed_length(state_->length());
  request.set_round(++seq_);
  request.set_traceparent(traceparent_);
  v1::DraftPrefill* prefill = request.mutable_prefill();
  // Every committed token but the pending one, which opens the next proposal.
  prefill->mutable_tokens()->set_start_position(0);
  prefill->mutable_tokens()->mutable_tokens()->Add(state_->committed.begin(),
                                                   state_->committed.end() - 1);
  *prefill->mutable_sampling() = ToProto(state_->request->sampling);
  return request;
}

void DraftConnection::Drop(const std::string& why, bool replica_failed) {
  std::string detail;
  if (link_ != nullptr) {
    link_->Close(false, state_->session_id);
    if (!link_->final_error().empty()) detail = ": " + link_->final_error();
    link_.reset();
  }
  // A stream ended by the client's cancellation or deadline (they propagate to the draft call)
  // says nothing about the replica: blaming it would send the next requests to the verifier
  // alone for the backoff. Asked after the stream is closed: the draft call can see the
  // propagated cancellation before the client's call reports it, and the close waits for the
  // call's end.
  if (!client_->Check().ok()) replica_failed = false;
  if (replica_failed && !replica_.empty()) {
    backends_->ReportDraftFailure(replica_, absl::UnavailableError(why + detail));
  }
  replica_.clear();
  unread_.clear();
  failed_ = true;
  backoff_ = std::min(kMaxBackoff, std::max(kMinBackoff, 2 * backoff_));
  retry_at_ = clock_->Now() + backoff_;
  SPECDEC_LOG(Warning) << "session " << state_->session_id << ": draft unavailable (" << why
                       << detail << "), decoding with the verifier alone; asking again in "
                       << absl::FormatDuration(backoff_);
}

bool DraftConnection::Open(int64_t round) {
  const std::string address = backends_->PickDraft(state_->session_id);
  if (address.empty()) {
    // Nothing healthy (the prober re-admits a replica): looking again costs nothing.
    failed_ = true;
    retry_at_ = clock_->Now() + kMinBackoff;
    return false;
  }
  const bool again = failed_;
  replica_ = address;
  link_ = backends_->OpenDraft(address);
  // Not awaited: the draft prefills while the verifier works, and its acknowledgement is
  // skipped when the proposals are read.
  if (!link_->Send(PrefillRequest())) {
    Drop(absl::StrCat("the prefill could not be sent to ", address));
    return false;
  }
  state_->draft_valid = state_->length() - 1;
  failed_ = false;
  if (again) {
    SPECDEC_LOG(Info) << "session " << state_->session_id << ": draft " << address
                      << " in use again (re-prefilled at round " << round << ")";
  }
  return true;
}

Proposals DraftConnection::Propose(int64_t round, int k) {
  Proposals out;
  // A dropped draft is asked again after its backoff: a restarted or another healthy replica.
  if (link_ == nullptr && failed_ && backends_->has_drafts() && clock_->Now() >= retry_at_) {
    Open(round);
  }
  if (link_ == nullptr) {
    out.fallback = failed_ ? v1::FALLBACK_DRAFT_UNAVAILABLE : v1::FALLBACK_NO_DRAFT;
    return out;
  }
  const std::vector<int32_t> span(state_->committed.begin() + state_->draft_valid,
                                  state_->committed.end());
  // From here the draft was asked: its work is timed (a re-opened stream's prefill, sent just
  // before, named the same span).
  out.start = clock_->Now();
  std::optional<PendingProposal> pending = Send(state_->draft_valid, span, k, traceparent_);
  if (!pending.has_value()) {
    out.fallback = v1::FALLBACK_DRAFT_UNAVAILABLE;
    out.end = clock_->Now();
    return out;
  }
  out.asked = true;
  Read(round, k, /*may_re_prefill=*/true, &*pending, &out);
  out.end = clock_->Now();
  out.wall_ms = absl::ToDoubleMilliseconds(out.end - out.start);
  return out;
}

std::optional<PendingProposal> DraftConnection::Send(int64_t start_position,
                                                     const std::vector<int32_t>& tokens, int k,
                                                     const std::string& traceparent) {
  if (link_ == nullptr) return std::nullopt;
  PendingProposal pending;
  pending.traceparent = traceparent;
  pending.seq = ++seq_;
  pending.committed_length = start_position + static_cast<int64_t>(tokens.size());
  pending.num_tokens = k;
  pending.sent = clock_->Now();
  pending.deadline = pending.sent + draft_deadline_;
  v1::DraftRequest request;
  request.set_session_id(state_->session_id);
  request.set_committed_length(pending.committed_length);
  request.set_round(pending.seq);
  request.set_traceparent(traceparent);
  v1::TokenSpan* span = request.mutable_propose()->mutable_tokens();
  span->set_start_position(start_position);
  span->mutable_tokens()->Add(tokens.begin(), tokens.end());
  request.mutable_propose()->set_num_draft_tokens(k);
  if (tokens_per_message_ > 1) {
    request.mutable_propose()->set_tokens_per_message(std::min(k, tokens_per_message_));
  }
  unread_.clear();  // a new request: what the last one proposed is stale
  if (!link_->Send(request)) {
    Drop("the proposal request could not be sent");
    return std::nullopt;
  }
  return pending;
}

bool DraftConnection::RePrefill(PendingProposal* pending) {
  const absl::Time deadline = pending->deadline;
  const absl::Time sent = pending->sent;
  traceparent_ = pending->traceparent;  // the re-prefill serves the same work
  if (!link_->Send(PrefillRequest())) {
    Drop("the re-prefill could not be sent");
    return false;
  }
  std::optional<PendingProposal> again = Send(state_->length() - 1, {state_->committed.back()},
                                              pending->num_tokens, pending->traceparent);
  if (!again.has_value()) return false;
  *pending = *again;
  pending->deadline = deadline;  // the round's wait does not start over
  pending->sent = sent;          // nor does its work
  return true;
}

void DraftConnection::Read(int64_t round, int k, bool may_re_prefill, PendingProposal* pending,
                           Proposals* out) {
  const absl::Time start = clock_->Now();
  const size_t wanted = out->proposals.size() + static_cast<size_t>(k);
  bool re_prefilled = false;
  while (out->proposals.size() < wanted && link_ != nullptr) {
    if (!unread_.empty()) {
      const v1::DraftToken token = std::move(unread_.front());
      unread_.pop_front();
      if (!Take(token, pending, out)) break;
      continue;
    }
    v1::DraftResponse response;
    const DraftLink::ReadResult read = link_->Read(&response, pending->deadline);
    if (read == DraftLink::ReadResult::kTimeout) {
      if (out->proposals.empty()) out->fallback = v1::FALLBACK_DRAFT_DEADLINE;
      SPECDEC_LOG(Debug) << "session " << state_->session_id << " round " << round
                         << ": draft late, " << out->proposals.size() << " of " << wanted
                         << " proposals in time";
      break;
    }
    if (read == DraftLink::ReadResult::kClosed) {
      Drop("its stream ended");
      break;
    }
    // Acknowledgements and answers to requests given up on are stale.
    if (response.round() != pending->seq || response.has_prefilled() || response.has_released()) {
      continue;
    }
    if (response.has_session_lost()) {
      if (!may_re_prefill) break;
      if (re_prefilled) {
        Drop("the draft lost the session again after a re-prefill", false);
        break;
      }
      re_prefilled = true;
      SPECDEC_LOG(Info) << "session " << state_->session_id << ": draft lost the session ("
                        << response.session_lost().reason() << "), re-prefilling";
      if (!RePrefill(pending)) break;
      continue;
    }
    if (response.has_tokens() && response.tokens().tokens_size() > 0) {
      for (v1::DraftToken& token : *response.mutable_tokens()->mutable_tokens()) {
        unread_.push_back(std::move(token));
      }
      continue;
    }
    if (!response.has_token()) {
      Drop("the draft sent an unexpected message", false);
      break;
    }
    if (!Take(response.token(), pending, out)) break;
  }
  if (out->proposals.empty() && out->fallback == v1::FALLBACK_UNSPECIFIED) {
    out->fallback = v1::FALLBACK_DRAFT_UNAVAILABLE;
  }
  if (!out->proposals.empty()) backoff_ = absl::ZeroDuration();  // the draft works again
  out->wall_ms += MsSince(start);
}

bool DraftConnection::Take(const v1::DraftToken& token, PendingProposal* pending,
                           Proposals* out) {
  if (token.index() != pending->next_index) {
    Drop("the draft sent an unexpected message", false);
    return false;
  }
  ++pending->next_index;
  TokenDistribution q = FromProto(token.q());
  out->proposals.push_back(MakeProposal(token.token(), q));
  out->dists.push_back(std::move(q));
  out->compute_ms = token.compute_ms();
  if (token.index() == 0) {  // the plan comes with the first token only
    pending->plan_id = token.plan_id();
    pending->plan = token.plan();
  }
  out->plan_id = pending->plan_id;
  out->plan = pending->plan;
  return true;
}

bool DraftConnection::GuessedBonus(int64_t round, int32_t bonus, PendingProposal* predraft) {
  if (link_ == nullptr) return false;
  Proposals guess;
  Read(round, 1, /*may_re_prefill=*/false, predraft, &guess);
  return guess.proposals.size() == 1 && guess.proposals[0].token == bonus;
}

}  // namespace specdec
