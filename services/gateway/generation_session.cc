// The gateway's round loop (see generation_session.h). The steps and their positions mirror
// GenerateSpeculative (common/generation/speculative_generator.cc), and both plan their rounds
// with one RoundPlanner, so that outputs match the in-process generator token for token.
#include "services/gateway/generation_session.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "services/common/proto_convert.h"
#include "services/gateway/token_logprobs.h"
#include "services/gateway/trace_observer.h"

namespace specdec {
namespace {

int MaxDraftTokens(const GenerationRequest& request, const SessionEnvironment& env) {
  return request.num_draft_tokens > 0 ? request.num_draft_tokens : env.max_adaptive_draft_tokens;
}

uint64_t UnixNanos(absl::Time t) { return static_cast<uint64_t>(absl::ToUnixNanos(t)); }

}  // namespace

GenerationSession::GenerationSession(std::string session_id, const GenerationRequest& request,
                                     const SessionEnvironment& env, SessionBackends* backends,
                                     const SessionClock* clock)
    : request_(request),
      env_(env),
      clock_(clock),
      client_(clock, env.deadline, env.client_deadline, env.client_cancelled),
      state_{std::move(session_id), &request, request.prompt},
      verifier_(&state_, backends, &client_, env.tokenizer),
      draft_(&state_, backends, &client_, clock, absl::Milliseconds(env.draft_deadline_ms),
             env.draft_tokens_per_message),
      planner_(RoundPlanner::PolicyFor(request.num_draft_tokens, request.adaptive,
                                       MaxDraftTokens(request, env)),
               request.max_new_tokens, env.max_positions),
      text_(env.tokenizer, request.stop),
      speculate_(request.num_draft_tokens > 0 || request.adaptive),
      backends_has_drafts_(backends->has_drafts()) {}

GenerationSession::~GenerationSession() { CloseStreams(false); }

int GenerationSession::MaxDraftTokensAt(int64_t pending_position) const {
  return static_cast<int>(std::min<int64_t>(
      RoundPlanner::kNoCap, state_.verifier_kv_boundaries.MaxDraftTokens(pending_position)));
}

std::string GenerationSession::TraceparentFor(const SpanId& span) const {
  return env_.trace != nullptr ? env_.trace->TraceparentFor(span) : "";
}

double GenerationSession::MsSince(absl::Time start) const {
  return absl::ToDoubleMilliseconds(clock_->Now() - start);
}

void GenerationSession::CloseStreams(bool release) {
  draft_.Close(release);
  verifier_.Close(release);
}

absl::Status GenerationSession::Prefill() {
  if (backends_has_drafts_ && speculate_ && !request_.prompt_only) draft_.Open(0);
  RETURN_IF_ERROR(verifier_.Open(0));
  prompt_logprobs_ = verifier_.TakePromptLogprobs();
  return absl::OkStatus();
}

absl::Status GenerationSession::Run(const Emit& emit) {
  while (Step(emit)) {
  }
  return status_;
}

absl::Status GenerationSession::Start() {
  run_start_ = clock_->Now();
  usage_.set_prompt_tokens(static_cast<int32_t>(request_.prompt.size()));
  RETURN_IF_ERROR(client_.Check());
  // Both prefills belong to the request's prefill span (a draft's, sent on, too).
  const SpanId prefill_span = NewSpanId();
  draft_.SetTraceparent(TraceparentFor(prefill_span));
  verifier_.SetTraceparent(TraceparentFor(prefill_span));
  const absl::Status prefilled = Prefill();
  if (env_.trace != nullptr) {
    env_.trace->OnPrefill(prefill_span, UnixNanos(run_start_), UnixNanos(clock_->Now()),
                          static_cast<int64_t>(request_.prompt.size()), prefilled.ok());
  }
  RETURN_IF_ERROR(prefilled);
  usage_.set_prefill_ms(MsSince(run_start_));
  return absl::OkStatus();
}

bool GenerationSession::Step(const Emit& emit) {
  switch (phase_) {
    case Phase::kStart:
      status_ = Start();
      if (status_.ok()) {
        phase_ = Phase::kRounds;
        return true;
      }
      break;
    case Phase::kRounds:
      // A round that committed EOS or a stop string decided the finish already.
      if (finish_reason_ == FinishReason::kNone) {
        status_ = client_.Check();
        if (status_.ok()) finish_reason_ = planner_.BeforeRound(state_.length(), generated_);
      }
      if (status_.ok() && finish_reason_ == FinishReason::kNone) {
        status_ = RunRound(rounds_++, emit);
        if (status_.ok()) return true;
      }
      GiveUpPredraft();  // the request ended with one pending
      if (status_.ok()) {
        status_ = Finish(rounds_, emit);
        phase_ = Phase::kDone;
        return false;
      }
      break;
    case Phase::kDone:
      return false;
  }
  CloseStreams(false);
  phase_ = Phase::kDone;
  return false;
}

absl::Status GenerationSession::RunRound(int64_t number, const Emit& emit) {
  Round round;
  round.number = number;
  round.length = state_.length();
  round.start = clock_->Now();
  // A saturated gateway stops speculating: the draft's passes would cost the others more than
  // they save this session (docs/benchmarks/summary.md).
  const bool busy = speculate_ && env_.speculation_max_sessions > 0 &&
                    env_.active_sessions != nullptr &&
                    env_.active_sessions->load() > env_.speculation_max_sessions;
  // The verification (pending token at length - 1, then K drafts) never crosses a KV
  // compression boundary of the verifier; cutting drafts is lossless.
  round.k = planner_.PlanK(round.length, generated_, speculate_ && !busy,
                           MaxDraftTokensAt(round.length - 1));
  round.proposals = Draft(&round, busy);
  MaybePredraft(round);
  ASSIGN_OR_RETURN(round.verdict, Verify(round));
  absl::StatusOr<RoundOutcome> outcome = DecideRound(
      request_.sampling, round.length, round.proposals.proposals, round.verdict.positions);
  if (!outcome.ok()) {
    return absl::InternalError(absl::StrCat("malformed verifier answer: ", outcome.status().message()));
  }
  round.outcome = *outcome;
  Settle(round);
  v1::GenerateResponse response;
  Commit(&round, &response);
  Report(round, &response);
  if (number == 0) {
    response.set_request_id(request_.request_id);
    for (v1::TokenLogprob& entry : prompt_logprobs_) {
      *response.add_prompt_logprobs() = std::move(entry);
    }
    prompt_logprobs_.clear();
  }
  if (!emit(response)) return absl::CancelledError("the client went away");
  return absl::OkStatus();
}

Proposals GenerationSession::Draft(Round* round, bool busy) {
  Proposals proposals;
  const bool use_predraft = round->k > 0 && predraft_usable_;
  if (use_predraft) round->spans.draft = predraft_span_;  // its messages named that span
  draft_.SetTraceparent(TraceparentFor(round->spans.draft));
  if (use_predraft) {
    // The guess at the bonus token (index 0) was right: the rest is this round's proposals.
    round->k = std::min(round->k, predraft_->num_tokens - 1);
    const absl::Time start = clock_->Now();
    draft_.Read(round->number, round->k, /*may_re_prefill=*/false, &*predraft_, &proposals);
    proposals.wall_ms = MsSince(start);
    proposals.overlapped = true;
    proposals.asked = true;
    proposals.start = predraft_->sent;  // the draft worked on it during the previous round
    proposals.end = clock_->Now();
    predraft_.reset();
  } else if (round->k > 0) {
    proposals = draft_.Propose(round->number, round->k);
  } else if (!speculate_ || !backends_has_drafts_) {
    proposals.fallback = v1::FALLBACK_NO_DRAFT;
  } else if (busy) {
    proposals.fallback = v1::FALLBACK_BUSY;
  } else if (draft_.failed()) {
    proposals.fallback = v1::FALLBACK_DRAFT_UNAVAILABLE;
  } else if (planner_.paused()) {
    proposals.fallback = v1::FALLBACK_PAUSED;
  }  // else K was cut to 0 by the token budget or the context: not a fallback
  GiveUpPredraft();  // one this round did not use
  return proposals;
}

void GenerationSession::MaybePredraft(const Round& round) {
  // As if all of this round were accepted: the pending token becomes x_K and the draft's first
  // token guesses the bonus.
  if (!request_.overlap || !draft_.connected()) return;
  const int next_k =
      planner_.PredraftK(round.k, static_cast<int>(round.proposals.proposals.size()),
                         round.length, generated_, MaxDraftTokensAt(round.length + round.k));
  if (next_k <= 0) return;
  // Its work belongs to the next round's draft span (or, unused, to a "predraft" span).
  predraft_span_ = NewSpanId();
  predraft_round_ = round.number;
  predraft_round_span_ = round.spans.round;
  predraft_ = draft_.Send(round.length + round.k - 1, {round.proposals.proposals.back().token},
                          next_k + 1, TraceparentFor(predraft_span_));
}

void GenerationSession::GiveUpPredraft() {
  if (predraft_.has_value() && env_.trace != nullptr) {
    env_.trace->OnUnusedPredraft(predraft_round_, predraft_round_span_, predraft_span_,
                                 UnixNanos(predraft_->sent), UnixNanos(clock_->Now()));
  }
  predraft_.reset();
  predraft_usable_ = false;
}

absl::StatusOr<GenerationSession::Verdict> GenerationSession::Verify(const Round& round) {
  verifier_.SetTraceparent(TraceparentFor(round.spans.verify));
  const absl::Time start = clock_->Now();
  const Proposals& proposals = round.proposals;
  auto build = [&](int64_t start_position) {
    v1::VerifierRequest request;
    request.set_session_id(state_.session_id);
    request.set_committed_length(round.length);
    request.set_round(round.number);
    v1::VerifyRequest* verify = request.mutable_verify();
    verify->mutable_tokens()->set_start_position(start_position);
    verify->mutable_tokens()->mutable_tokens()->Add(state_.committed.begin() + start_position,
                                                    state_.committed.end());
    for (size_t i = 0; i < proposals.proposals.size(); ++i) {
      v1::DraftedToken* drafted = verify->add_drafts();
      drafted->set_token(proposals.proposals[i].token);
      // Shared noise decides by token equality: q is not needed.
      if (!request_.sampling.shared_noise()) ToProto(proposals.dists[i], drafted->mutable_q());
    }
    // Rows after the first rejection are never read: the verifier need not sample them.
    verify->set_up_to_first_rejection(true);
    if (request_.logprobs_top_n >= 0) verify->mutable_logprobs()->set_top_n(request_.logprobs_top_n);
    return request;
  };
  ASSIGN_OR_RETURN(v1::VerifierResponse response, verifier_.Verify(round.number, build));
  if (!response.has_verified()) {
    return absl::InternalError("the verifier answered a verification with something else");
  }
  if (request_.logprobs_top_n >= 0 && !response.verified().has_logprobs()) {
    return absl::UnimplementedError(
        "the verifier returned no log-probabilities (a version that predates them?)");
  }
  Verdict verdict;
  for (const v1::VerifiedPosition& position : response.verified().positions()) {
    verdict.positions.push_back({position.p_prob_of_draft(), position.fallback_token()});
    if (request_.logprobs_top_n >= 0) verdict.scored.push_back(position);
  }
  verdict.compute_ms = response.verified().compute_ms();
  verdict.start = start;
  verdict.end = clock_->Now();
  verdict.wall_ms = absl::ToDoubleMilliseconds(verdict.end - start);
  return verdict;
}

void GenerationSession::Settle(const Round& round) {
  const int accepted = round.outcome.num_accepted;
  // Rollback by committed length: the next messages start where each side's committed part
  // ends (the draft holds accepted drafts but never x_K; the verifier holds all of them).
  state_.verifier_valid = round.length + accepted;
  if (round.k > 0 && round.proposals.asked) {
    state_.draft_valid = round.length + std::min(accepted, round.k - 1);
  }
  if (predraft_.has_value() && accepted == round.k) {
    // The draft runs requests in order: whatever comes next finds x_K in its cache.
    state_.draft_valid = round.length + round.k;
    predraft_usable_ = draft_.GuessedBonus(round.number, round.outcome.next_token, &*predraft_);
  }
  planner_.ObservePredraft(predraft_.has_value(), predraft_usable_);
  if (!predraft_usable_) GiveUpPredraft();
}

void GenerationSession::Commit(Round* round, v1::GenerateResponse* response) {
  const RoundOutcome& outcome = round->outcome;
  std::vector<int32_t> tokens;
  for (int i = 0; i < outcome.num_accepted; ++i) {
    tokens.push_back(round->proposals.proposals[i].token);
  }
  tokens.push_back(outcome.next_token);
  bool eos = false;
  tokens.resize(RoundPlanner::CutAtEos(tokens, env_.eos_token_id, &eos));
  for (int32_t token : tokens) {
    state_.committed.push_back(token);
    if (!round->verdict.scored.empty()) {
      // Token i of the round stands at verified position i; the last one is the fallback.
      const int i = round->tokens_emitted;
      *response->add_logprobs() = RoundTokenLogprob(round->verdict.scored[i], token,
                                                    i < outcome.num_accepted, env_.tokenizer);
    }
    ++generated_;
    ++round->tokens_emitted;
    response->add_token_ids(token);
    if (eos && round->tokens_emitted == static_cast<int>(tokens.size())) {
      finish_reason_ = FinishReason::kEos;
      break;
    }
    bool stopped = false;
    response->mutable_text()->append(text_.Add(token, &stopped));
    if (stopped) {
      finish_reason_ = FinishReason::kStop;
      break;
    }
  }
}

void GenerationSession::Report(const Round& round, v1::GenerateResponse* response) {
  const Proposals& proposals = round.proposals;
  const Verdict& verdict = round.verdict;
  const int proposed = static_cast<int>(proposals.proposals.size());
  // An overlapped round's draft work was hidden behind the previous verification; its cost
  // still counts, or K would grow as if drafting were free.
  planner_.ObserveRound(proposed, round.outcome.num_accepted,
                        proposals.overlapped ? proposals.compute_ms : proposals.wall_ms,
                        verdict.wall_ms);
  usage_.set_rounds(usage_.rounds() + 1);
  if (proposals.overlapped) usage_.set_overlapped_rounds(usage_.overlapped_rounds() + 1);
  usage_.set_drafted_tokens(usage_.drafted_tokens() + proposed);
  usage_.set_accepted_tokens(usage_.accepted_tokens() + round.outcome.num_accepted);

  v1::RoundRecord record;
  record.set_round(round.number);
  record.set_num_draft_tokens(round.k);
  record.set_num_proposed(proposed);
  record.set_num_accepted(round.outcome.num_accepted);
  record.set_tokens_emitted(round.tokens_emitted);
  record.set_draft_ms(proposals.compute_ms);
  record.set_verify_ms(verdict.compute_ms);
  record.set_network_ms(std::max(0.0, proposals.wall_ms - proposals.compute_ms) +
                        std::max(0.0, verdict.wall_ms - verdict.compute_ms));
  record.set_fallback(proposals.fallback);
  record.set_overlapped(proposals.overlapped);
  record.set_gateway_ms(
      std::max(0.0, MsSince(round.start) - proposals.wall_ms - verdict.wall_ms));
  // The real times of the work (an overlapped round's draft began in the previous round).
  if (proposals.start != absl::InfinitePast()) {
    record.set_draft_start_unix_nanos(absl::ToUnixNanos(proposals.start));
    record.set_draft_end_unix_nanos(absl::ToUnixNanos(proposals.end));
  }
  record.set_verify_start_unix_nanos(absl::ToUnixNanos(verdict.start));
  record.set_verify_end_unix_nanos(absl::ToUnixNanos(verdict.end));
  if (!proposals.plan.empty()) {
    record.set_draft_plan_id(proposals.plan_id);
    record.set_draft_plan(proposals.plan);
  }
  SPECDEC_LOG(Debug) << "session " << state_.session_id << " round " << round.number
                     << " K=" << round.k << " proposed=" << proposed
                     << " accepted=" << round.outcome.num_accepted
                     << " emitted=" << round.tokens_emitted << " draft_ms=" << record.draft_ms()
                     << " verify_ms=" << record.verify_ms()
                     << " network_ms=" << record.network_ms()
                     << " gateway_ms=" << record.gateway_ms()
                     << " fallback=" << v1::Fallback_Name(record.fallback());
  if (env_.trace != nullptr) env_.trace->OnRound(record, UnixNanos(round.start), round.spans);
  if (request_.include_rounds) *response->add_rounds() = record;
}

absl::Status GenerationSession::Finish(int64_t rounds, const Emit& emit) {
  // Release both sides before the last message, so a client that saw it sees no live session.
  CloseStreams(true);
  v1::GenerateResponse last;
  if (finish_reason_ != FinishReason::kStop) {
    bool stopped = false;
    last.set_text(text_.Finish(&stopped));
    if (stopped) finish_reason_ = FinishReason::kStop;
  }
  if (rounds == 0) {
    last.set_request_id(request_.request_id);
    for (v1::TokenLogprob& entry : prompt_logprobs_) *last.add_prompt_logprobs() = std::move(entry);
  }
  last.set_finish_reason(ToProto(finish_reason_));
  usage_.set_generated_tokens(static_cast<int32_t>(generated_));
  usage_.set_total_ms(MsSince(run_start_));
  *last.mutable_usage() = usage_;
  if (!emit(last)) return absl::CancelledError("the client went away");
  SPECDEC_LOG(Debug) << "session " << state_.session_id
                     << " finished: " << FinishReasonName(finish_reason_);
  return absl::OkStatus();
}

}  // namespace specdec
