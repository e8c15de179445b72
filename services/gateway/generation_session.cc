// The gateway's round loop (see generation_session.h). The steps and their positions mirror
// GenerateSpeculative (common/generation/speculative_generator.cc) so that outputs match the
// in-process generator token for token.
#include "services/gateway/generation_session.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/speculative/draft_length.h"
#include "services/common/proto_convert.h"
#include "services/gateway/text_output.h"
#include "services/gateway/token_logprobs.h"
#include "services/gateway/trace_observer.h"

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

void SetSpan(const std::vector<int32_t>& committed, int64_t start, v1::TokenSpan* span) {
  span->set_start_position(start);
  for (size_t i = static_cast<size_t>(start); i < committed.size(); ++i) span->add_tokens(committed[i]);
}

// Failures that say the replica (or the way to it) is broken: another replica may serve the
// session. INVALID_ARGUMENT and the like are bugs on our side and would fail anywhere.
bool IsReplicaFailure(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kCancelled:  // the replica shut down and cancelled its calls
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kResourceExhausted:
      return true;
    default:
      return false;
  }
}

// Overlap pays only when the draft's next-round work is used: all of a round accepted and its
// guess at the bonus token right. Below this rate of use (a moving average) the gateway stops
// asking for it, except one probe every kPredraftProbeEvery rounds to notice when it pays again:
// a wasted pre-draft delays the draft's next real request and takes CPU from the verifier
// (measured: 0.94x of sequential rounds with a draft whose rounds never fully accepted).
constexpr double kMinPredraftUseRate = 0.25;
constexpr int kPredraftProbeEvery = 8;

constexpr absl::Duration kMinDraftBackoff = absl::Milliseconds(200);
constexpr absl::Duration kMaxDraftBackoff = absl::Seconds(5);

const char* FinishName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_LENGTH: return "length";
    case v1::FINISH_REASON_EOS: return "eos";
    case v1::FINISH_REASON_STOP: return "stop";
    case v1::FINISH_REASON_CONTEXT: return "context";
    default: return "none";
  }
}

}  // namespace

GenerationSession::GenerationSession(std::string session_id, const GenerationRequest& request,
                                     const SessionEnvironment& env,
                                     const grpc::ServerContext* context)
    : session_id_(std::move(session_id)),
      request_(request),
      env_(env),
      context_(context),
      traceparent_(env.trace != nullptr ? env.trace->traceparent() : ""),
      clock_(env.trace != nullptr ? env.trace->clock() : SteadyToUnix()),
      committed_(request.prompt) {}

std::string GenerationSession::TraceparentFor(const SpanId& span) const {
  return env_.trace != nullptr ? env_.trace->TraceparentFor(span) : "";
}

GenerationSession::~GenerationSession() { CloseStreams(false); }

void GenerationSession::CloseStreams(bool release) {
  if (draft_ != nullptr) {
    draft_->Close(release, session_id_);
    draft_.reset();
  }
  if (verifier_ != nullptr) {
    verifier_->Close(release, session_id_);
    verifier_.reset();
  }
}

absl::Status GenerationSession::CheckClient() const {
  if (env_.deadline != absl::InfiniteFuture() && absl::Now() > env_.deadline) {
    return absl::DeadlineExceededError("the request's deadline (the gateway's default) passed");
  }
  if (context_ == nullptr) return absl::OkStatus();
  if (context_->deadline() < std::chrono::system_clock::now()) {
    return absl::DeadlineExceededError("the request's deadline passed");
  }
  if (context_->IsCancelled()) return absl::CancelledError("the client cancelled the request");
  return absl::OkStatus();
}

v1::DraftRequest GenerationSession::DraftPrefillRequest() {
  v1::DraftRequest request;
  request.set_session_id(session_id_);
  request.set_committed_length(static_cast<int64_t>(committed_.size()));
  request.set_round(++draft_seq_);
  request.set_traceparent(TraceparentFor(draft_span_));
  v1::DraftPrefill* prefill = request.mutable_prefill();
  // Every committed token but the pending one, which opens the next proposal.
  prefill->mutable_tokens()->set_start_position(0);
  for (size_t i = 0; i + 1 < committed_.size(); ++i) prefill->mutable_tokens()->add_tokens(committed_[i]);
  *prefill->mutable_sampling() = ToProto(request_.sampling);
  return request;
}

v1::VerifierRequest GenerationSession::VerifierPrefillRequest(int64_t round,
                                                             bool score_prompt) const {
  v1::VerifierRequest request;
  request.set_session_id(session_id_);
  request.set_committed_length(static_cast<int64_t>(committed_.size()));
  request.set_round(round);
  request.set_traceparent(TraceparentFor(verifier_span_));
  v1::VerifierPrefill* prefill = request.mutable_prefill();
  prefill->mutable_tokens()->set_start_position(0);
  for (size_t i = 0; i + 1 < committed_.size(); ++i) prefill->mutable_tokens()->add_tokens(committed_[i]);
  *prefill->mutable_sampling() = ToProto(request_.sampling);
  if (score_prompt) {
    prefill->mutable_prompt_logprobs()->set_top_n(std::max(0, request_.logprobs_top_n));
    prefill->set_next_token(committed_.back());
  }
  return request;
}

void GenerationSession::DropDraft(const std::string& why, bool replica_failed) {
  // A stream ended by the client's cancellation or deadline (they propagate to the draft call)
  // says nothing about the replica: blaming it would send the next requests to the verifier
  // alone for the backoff.
  if (!CheckClient().ok()) replica_failed = false;
  std::string detail;
  if (draft_ != nullptr) {
    draft_->Close(false, session_id_);
    if (!draft_->final_status().ok()) detail = ": " + draft_->final_status().error_message();
    draft_.reset();
  }
  if (replica_failed && draft_replica_ != nullptr && env_.drafts != nullptr) {
    env_.drafts->ReportFailure(draft_replica_.get(), absl::UnavailableError(why + detail));
  }
  draft_replica_.reset();
  draft_failed_ = true;
  draft_backoff_ = std::min(kMaxDraftBackoff, std::max(kMinDraftBackoff, 2 * draft_backoff_));
  draft_retry_at_ = absl::Now() + draft_backoff_;
  SPECDEC_LOG(Warning) << "session " << session_id_ << ": draft unavailable (" << why << detail
                       << "), decoding with the verifier alone; asking again in "
                       << absl::FormatDuration(draft_backoff_);
}

bool GenerationSession::OpenDraft(int64_t round) {
  std::shared_ptr<Replica> replica = env_.drafts->PickHealthy(session_id_);
  if (replica == nullptr) {
    // Nothing healthy (the prober re-admits a replica): looking again costs nothing.
    draft_failed_ = true;
    draft_retry_at_ = absl::Now() + kMinDraftBackoff;
    return false;
  }
  const bool again = draft_failed_;
  draft_replica_ = replica;
  // Opening the stream and sending are bounded like the round's wait for proposals.
  const absl::Duration op_timeout =
      absl::Milliseconds(std::max(env_.draft_deadline_ms, 100));
  draft_ = std::make_unique<DraftStream>(replica->draft(), context_, env_.deadline, op_timeout,
                                         traceparent_);
  // Not awaited: the draft prefills while the verifier works, and its acknowledgement is
  // skipped when the proposals are read.
  if (!draft_->Send(DraftPrefillRequest())) {
    DropDraft(absl::StrCat("the prefill could not be sent to ", replica->address()));
    return false;
  }
  draft_valid_ = static_cast<int64_t>(committed_.size()) - 1;
  draft_failed_ = false;
  if (again) {
    SPECDEC_LOG(Info) << "session " << session_id_ << ": draft " << replica->address()
                      << " in use again (re-prefilled at round " << round << ")";
  }
  return true;
}

namespace {

// A replica that came up after the gateway, or restarted, may leave its channel in reconnect
// backoff (up to 2 s, replica_set.cc), and gRPC fails calls on such a channel at once: the first
// requests after a verifier starts would be refused although it serves. Wait for the connection
// briefly instead (bounded by the session's and the client's deadlines); a replica that is really
// down still fails within kConnectWait.
constexpr absl::Duration kConnectWait = absl::Seconds(2);

void WaitBrieflyForConnection(grpc::Channel* channel, absl::Time session_deadline,
                              const grpc::ServerContext* context) {
  if (channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY) return;
  absl::Time until = std::min(session_deadline, absl::Now() + kConnectWait);
  if (context != nullptr) until = std::min(until, absl::FromChrono(context->deadline()));
  channel->WaitForConnected(absl::ToChronoTime(until));
}

}  // namespace

absl::Status GenerationSession::OpenVerifier(int64_t round) {
  absl::Status last = absl::UnavailableError(
      absl::StrCat("no verifier replica is known for --verifier=", env_.verifiers->target()));
  for (const std::shared_ptr<Replica>& replica : env_.verifiers->Ranked(session_id_)) {
    if (!tried_verifiers_.insert(replica->address()).second) continue;
    if (verifier_ != nullptr) {
      verifier_->Close(false, session_id_);
      verifier_.reset();
    }
    verifier_replica_ = replica;
    WaitBrieflyForConnection(replica->channel(), env_.deadline, context_);
    verifier_ = std::make_unique<VerifierStream>(replica->verifier(), context_, env_.deadline,
                                                 env_.verifier_timeout, traceparent_);
    const bool score_prompt = request_.prompt_logprobs && !prompt_scored_;
    absl::StatusOr<v1::VerifierResponse> response =
        verifier_->Call(VerifierPrefillRequest(round, score_prompt));
    if (response.ok() && response->has_prefilled()) {
      if (score_prompt) {
        ASSIGN_OR_RETURN(prompt_logprobs_,
                         PromptLogprobs(request_.prompt, response->prefilled(), env_.tokenizer));
        prompt_scored_ = true;
      }
      verifier_valid_ = static_cast<int64_t>(committed_.size()) - 1;
      if (round > 0) {
        SPECDEC_LOG(Info) << "session " << session_id_ << ": moved to verifier "
                          << replica->address() << " (re-prefilled at round " << round << ")";
      }
      return absl::OkStatus();
    }
    absl::Status status = response.ok() ? absl::InternalError(absl::StrCat(
                                              "verifier ", replica->address(),
                                              " did not acknowledge the prefill"))
                                        : response.status();
    RETURN_IF_ERROR(CheckClient());
    if (!IsReplicaFailure(status)) return status;
    env_.verifiers->ReportFailure(replica.get(), status);
    SPECDEC_LOG(Warning) << "session " << session_id_ << ": verifier " << replica->address()
                         << " failed the prefill (" << status.ToString() << ")";
    last = status;
  }
  if (verifier_ != nullptr) {
    verifier_->Close(false, session_id_);
    verifier_.reset();
  }
  const std::string why = absl::StrCat("no verifier replica could serve the session (",
                                       tried_verifiers_.size(), " tried): ", last.message());
  // Every replica being full (KV pool) is back-pressure the client can act on, not an outage.
  if (last.code() == absl::StatusCode::kResourceExhausted) return absl::ResourceExhaustedError(why);
  return absl::UnavailableError(why);
}

absl::Status GenerationSession::FailOver(int64_t round, const absl::Status& status) {
  RETURN_IF_ERROR(CheckClient());
  if (!IsReplicaFailure(status)) return status;
  if (verifier_replica_ != nullptr) {
    env_.verifiers->ReportFailure(verifier_replica_.get(), status);
    SPECDEC_LOG(Warning) << "session " << session_id_ << ": verifier "
                         << verifier_replica_->address() << " failed at round " << round << " ("
                         << status.ToString() << "), moving the session";
  }
  return OpenVerifier(round);
}

absl::Status GenerationSession::Prefill() {
  const bool wants_draft =
      !request_.prompt_only && (request_.num_draft_tokens > 0 || request_.adaptive);
  if (env_.drafts != nullptr && wants_draft) OpenDraft(0);
  return OpenVerifier(0);
}

GenerationSession::Proposals GenerationSession::Propose(int64_t round, int k) {
  Proposals out;
  // A dropped draft is asked again after its backoff: a restarted or another healthy replica.
  if (draft_ == nullptr && draft_failed_ && env_.drafts != nullptr &&
      absl::Now() >= draft_retry_at_) {
    OpenDraft(round);
  }
  if (draft_ == nullptr) {
    out.fallback = draft_failed_ ? v1::FALLBACK_DRAFT_UNAVAILABLE : v1::FALLBACK_NO_DRAFT;
    return out;
  }
  const std::vector<int32_t> span(committed_.begin() + draft_valid_, committed_.end());
  // From here the draft was asked: its span is drawn (a re-opened stream's prefill, sent just
  // before, names it too).
  const auto start = Clock::now();
  out.start = start;
  std::optional<PendingProposal> pending = SendProposal(draft_valid_, span, k, draft_span_);
  if (!pending.has_value()) {
    out.fallback = v1::FALLBACK_DRAFT_UNAVAILABLE;
    out.end = Clock::now();
    return out;
  }
  ReadProposals(round, k, /*may_re_prefill=*/true, &*pending, &out);
  out.end = Clock::now();
  out.wall_ms = MsSince(start);
  return out;
}

std::optional<GenerationSession::PendingProposal> GenerationSession::SendProposal(
    int64_t start_position, const std::vector<int32_t>& tokens, int k, const SpanId& trace_span) {
  PendingProposal pending;
  pending.span = trace_span;
  pending.seq = ++draft_seq_;
  pending.committed_length = start_position + static_cast<int64_t>(tokens.size());
  pending.num_tokens = k;
  pending.sent = Clock::now();
  pending.deadline = absl::Now() + absl::Milliseconds(env_.draft_deadline_ms);
  v1::DraftRequest request;
  request.set_session_id(session_id_);
  request.set_committed_length(pending.committed_length);
  request.set_round(pending.seq);
  request.set_traceparent(TraceparentFor(trace_span));
  v1::TokenSpan* span = request.mutable_propose()->mutable_tokens();
  span->set_start_position(start_position);
  span->mutable_tokens()->Add(tokens.begin(), tokens.end());
  request.mutable_propose()->set_num_draft_tokens(k);
  if (!draft_->Send(request)) {
    DropDraft("the proposal request could not be sent");
    return std::nullopt;
  }
  return pending;
}

void GenerationSession::ReadProposals(int64_t round, int k, bool may_re_prefill,
                                      PendingProposal* pending, Proposals* out) {
  const auto start = Clock::now();
  const size_t wanted = out->proposals.size() + static_cast<size_t>(k);
  bool re_prefilled = false;
  while (out->proposals.size() < wanted && draft_ != nullptr) {
    v1::DraftResponse response;
    const DraftStream::ReadResult read = draft_->Read(&response, pending->deadline);
    if (read == DraftStream::ReadResult::kTimeout) {
      if (out->proposals.empty()) out->fallback = v1::FALLBACK_DRAFT_DEADLINE;
      SPECDEC_LOG(Debug) << "session " << session_id_ << " round " << round << ": draft late, "
                         << out->proposals.size() << " of " << wanted << " proposals in time";
      break;
    }
    if (read == DraftStream::ReadResult::kClosed) {
      DropDraft("its stream ended");
      break;
    }
    // Acknowledgements and answers to requests given up on are stale.
    if (response.round() != pending->seq || response.has_prefilled() || response.has_released()) {
      continue;
    }
    if (response.has_session_lost()) {
      if (!may_re_prefill) break;
      if (re_prefilled) {
        DropDraft("the draft lost the session again after a re-prefill", false);
        break;
      }
      re_prefilled = true;
      SPECDEC_LOG(Info) << "session " << session_id_ << ": draft lost the session ("
                        << response.session_lost().reason() << "), re-prefilling";
      const absl::Time deadline = pending->deadline;
      const Clock::time_point sent = pending->sent;
      draft_span_ = pending->span;  // the re-prefill serves the same work
      std::optional<PendingProposal> again;
      if (draft_->Send(DraftPrefillRequest())) {
        again = SendProposal(static_cast<int64_t>(committed_.size()) - 1, {committed_.back()},
                             pending->num_tokens, pending->span);
      } else {
        DropDraft("the re-prefill could not be sent");
      }
      if (!again.has_value()) break;
      *pending = *again;
      pending->deadline = deadline;
      pending->sent = sent;
      continue;
    }
    if (!response.has_token() || response.token().index() != pending->next_index) {
      DropDraft("the draft sent an unexpected message", false);
      break;
    }
    ++pending->next_index;
    TokenDistribution q = FromProto(response.token().q());
    out->proposals.push_back(MakeProposal(response.token().token(), q));
    out->dists.push_back(std::move(q));
    out->compute_ms = response.token().compute_ms();
  }
  if (out->proposals.empty() && out->fallback == v1::FALLBACK_UNSPECIFIED) {
    out->fallback = v1::FALLBACK_DRAFT_UNAVAILABLE;
  }
  if (!out->proposals.empty()) draft_backoff_ = absl::ZeroDuration();  // the draft works again
  out->wall_ms += MsSince(start);
}

bool GenerationSession::PredraftGuessedBonus(int64_t round, int32_t bonus,
                                             PendingProposal* predraft) {
  if (draft_ == nullptr) return false;
  Proposals guess;
  ReadProposals(round, 1, /*may_re_prefill=*/false, predraft, &guess);
  return guess.proposals.size() == 1 && guess.proposals[0].token == bonus;
}

absl::StatusOr<GenerationSession::Verdict> GenerationSession::Verify(int64_t round,
                                                                     const Proposals& proposals) {
  const auto start = Clock::now();
  const int64_t length = static_cast<int64_t>(committed_.size());
  auto verify_request = [&](int64_t start_position) {
    v1::VerifierRequest request;
    request.set_session_id(session_id_);
    request.set_committed_length(length);
    request.set_round(round);
    request.set_traceparent(TraceparentFor(verifier_span_));
    v1::VerifyRequest* verify = request.mutable_verify();
    SetSpan(committed_, start_position, verify->mutable_tokens());
    for (size_t i = 0; i < proposals.proposals.size(); ++i) {
      v1::DraftedToken* drafted = verify->add_drafts();
      drafted->set_token(proposals.proposals[i].token);
      ToProto(proposals.dists[i], drafted->mutable_q());
    }
    if (request_.logprobs_top_n >= 0) {
      verify->mutable_logprobs()->set_top_n(request_.logprobs_top_n);
    }
    return request;
  };
  // A broken replica moves the session to the next one (re-prefill there, then the same
  // verification); a replica that lost the session is re-prefilled once.
  int64_t start_position = verifier_valid_;
  bool re_prefilled = false;
  v1::VerifierResponse response;
  while (true) {
    absl::StatusOr<v1::VerifierResponse> answer = verifier_->Call(verify_request(start_position));
    if (!answer.ok()) {
      RETURN_IF_ERROR(FailOver(round, answer.status()));
      start_position = length - 1;
      continue;
    }
    if (!answer->has_session_lost()) {
      response = *std::move(answer);
      break;
    }
    if (re_prefilled) {
      return absl::UnavailableError("the verifier lost the session again after a re-prefill");
    }
    re_prefilled = true;
    SPECDEC_LOG(Info) << "session " << session_id_ << ": verifier lost the session ("
                      << answer->session_lost().reason() << "), re-prefilling";
    absl::StatusOr<v1::VerifierResponse> prefilled = verifier_->Call(VerifierPrefillRequest(round));
    if (!prefilled.ok()) {
      RETURN_IF_ERROR(FailOver(round, prefilled.status()));
    } else if (!prefilled->has_prefilled()) {
      return absl::InternalError("the verifier did not acknowledge the re-prefill");
    }
    start_position = length - 1;
  }
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
  verdict.wall_ms = MsSince(start);
  verdict.start = start;
  verdict.end = Clock::now();
  return verdict;
}

absl::Status GenerationSession::Run(const Emit& emit) {
  const auto run_start = Clock::now();
  usage_.set_prompt_tokens(static_cast<int32_t>(request_.prompt.size()));
  // The rounds check the session's deadline, but a client that stops reading blocks emit():
  // past the deadline the call is cancelled, which unblocks it (no session outlives its deadline).
  std::optional<Watchdog::Scoped> overdue;
  if (context_ != nullptr && env_.deadline != absl::InfiniteFuture()) {
    overdue.emplace(env_.deadline + absl::Seconds(1), [context = context_] { context->TryCancel(); });
  }
  RETURN_IF_ERROR(CheckClient());
  // Both prefills (and a draft prefill's span on the draft) belong to the request's prefill span.
  const SpanId prefill_span = NewSpanId();
  draft_span_ = verifier_span_ = prefill_span;
  const auto prefill_start = Clock::now();
  const absl::Status prefilled = Prefill();
  if (env_.trace != nullptr) {
    env_.trace->OnPrefill(prefill_span, prefill_start, Clock::now(),
                          static_cast<int64_t>(request_.prompt.size()), prefilled.ok());
  }
  if (!prefilled.ok()) {
    CloseStreams(false);
    return prefilled;
  }
  usage_.set_prefill_ms(MsSince(run_start));

  const bool speculate = request_.num_draft_tokens > 0 || request_.adaptive;
  const int max_k =
      request_.num_draft_tokens > 0 ? request_.num_draft_tokens : env_.max_adaptive_draft_tokens;
  DraftLengthPolicy policy = request_.adaptive ? DraftLengthPolicy::ExpectedThroughput(max_k)
                                               : DraftLengthPolicy::Constant(request_.num_draft_tokens);
  TextOutput text(env_.tokenizer, request_.stop);
  int64_t generated = 0;
  int64_t round = 0;
  double cost_ratio_ema = -1;
  absl::Status status;
  // Round r+1's proposals, asked for while round r is verified (overlapped rounds); usable
  // once PredraftGuessedBonus says so.
  std::optional<PendingProposal> predraft;
  bool predraft_usable = false;
  double predraft_use_rate = 1.0;  // moving average of predrafts used; starts hopeful
  int rounds_without_predraft = 0;
  // The round that sent `predraft`, for the span of one that goes unused (its draft's spans are
  // children of it: every span the services make has its parent in the trace).
  int64_t predraft_round = 0;
  SpanId predraft_round_span{};
  auto give_up_predraft = [&] {
    if (predraft.has_value() && env_.trace != nullptr) {
      env_.trace->OnUnusedPredraft(predraft_round, predraft_round_span, predraft->span,
                                   predraft->sent, Clock::now());
    }
    predraft.reset();
    predraft_usable = false;
  };

  while (finish_reason_ == v1::FINISH_REASON_UNSPECIFIED) {
    status = CheckClient();
    if (!status.ok()) break;
    const int64_t length = static_cast<int64_t>(committed_.size());  // L, pending included
    const int64_t remaining = request_.max_new_tokens - generated;
    if (remaining <= 0) {
      finish_reason_ = v1::FINISH_REASON_LENGTH;
      break;
    }
    if (length >= env_.max_positions) {
      finish_reason_ = v1::FINISH_REASON_CONTEXT;
      break;
    }
    // A saturated gateway stops speculating: the draft's passes would cost the others more
    // than they save this session (docs/benchmarks/summary.md).
    const bool busy = speculate && env_.speculation_max_sessions > 0 &&
                      env_.active_sessions != nullptr &&
                      env_.active_sessions->load() > env_.speculation_max_sessions;
    // A round commits accepted + 1 tokens: K stays inside the budget and the context (for this
    // round, and for the next one when it is drafted ahead).
    auto fit_k = [&](int64_t wanted, int64_t at_length, int64_t budget) {
      return std::max<int64_t>(
          0, std::min<int64_t>({wanted, budget - 1, env_.max_positions - at_length - 1}));
    };
    int k = static_cast<int>(fit_k(speculate && !busy ? policy.NextK() : 0, length, remaining));

    const auto round_start = Clock::now();
    // The round's span ids, named in its messages; a used pre-draft's work was named already.
    RequestTrace::RoundSpanIds span_ids;
    const bool use_predraft = k > 0 && predraft_usable;
    if (use_predraft) span_ids.draft = predraft->span;
    draft_span_ = span_ids.draft;
    verifier_span_ = span_ids.verify;
    Proposals proposals;
    if (use_predraft) {
      // The guess at the bonus token (index 0) was right: the rest is this round's proposals.
      k = std::min(k, predraft->num_tokens - 1);
      const auto start = Clock::now();
      ReadProposals(round, k, /*may_re_prefill=*/false, &*predraft, &proposals);
      proposals.wall_ms = MsSince(start);
      proposals.overlapped = true;
      proposals.start = predraft->sent;  // the draft worked on it during the previous round
      proposals.end = Clock::now();
      predraft.reset();
    } else if (k > 0) {
      proposals = Propose(round, k);
    } else if (!speculate || env_.drafts == nullptr) {
      proposals.fallback = v1::FALLBACK_NO_DRAFT;
    } else if (busy) {
      proposals.fallback = v1::FALLBACK_BUSY;
    } else if (draft_failed_) {
      proposals.fallback = v1::FALLBACK_DRAFT_UNAVAILABLE;
    } else if (policy.paused()) {
      proposals.fallback = v1::FALLBACK_PAUSED;
    }  // else K was cut to 0 by the token budget or the context: not a fallback
    const bool draft_asked = k > 0 && (proposals.wall_ms > 0 || proposals.overlapped);
    give_up_predraft();  // one not used by this round
    // Overlap: with every proposal in, ask for the next round now, as if all of this one were
    // accepted: the pending token becomes x_K and the draft's first token guesses the bonus.
    const int proposed_now = static_cast<int>(proposals.proposals.size());
    // An adaptive request also has its acceptance estimate a: a pre-draft is used only when all
    // k proposals are accepted (about a^k), so below the same threshold it is not even tried
    // (on a random checkpoint the first rounds' pre-drafts only took CPU from the verifier).
    const bool predraft_likely =
        !request_.adaptive || std::pow(policy.acceptance_rate(), k) >= kMinPredraftUseRate;
    const bool predraft_pays = predraft_likely &&
                               (predraft_use_rate >= kMinPredraftUseRate ||
                                rounds_without_predraft + 1 >= kPredraftProbeEvery);
    if (request_.overlap && draft_ != nullptr && k > 0 && proposed_now == k && predraft_pays) {
      DraftLengthPolicy next_policy = policy;
      next_policy.Observe(k, k);
      const int64_t next_k = fit_k(next_policy.NextK(), length + k + 1, remaining - (k + 1));
      if (next_k > 0) {
        // Its work belongs to the next round's draft span (or, unused, to a "predraft" span).
        predraft = SendProposal(length + k - 1, {proposals.proposals.back().token},
                                static_cast<int>(next_k) + 1, NewSpanId());
        predraft_round = round;
        predraft_round_span = span_ids.round;
      }
    }
    absl::StatusOr<Verdict> verdict = Verify(round, proposals);
    if (!verdict.ok()) {
      status = verdict.status();
      break;
    }
    if (absl::Status valid = ValidateRound(proposals.proposals, verdict->positions); !valid.ok()) {
      status = absl::InternalError(absl::StrCat("malformed verifier answer: ", valid.message()));
      break;
    }
    const RoundOutcome outcome =
        AcceptProposals(request_.sampling, length, proposals.proposals, verdict->positions);
    // Rollback by committed length: the next messages start where each side's committed part
    // ends (the draft holds accepted drafts but never x_K; the verifier holds all of them).
    verifier_valid_ = length + outcome.num_accepted;
    if (draft_asked) draft_valid_ = length + std::min(outcome.num_accepted, k - 1);
    if (predraft.has_value() && outcome.num_accepted == k) {
      // The draft runs requests in order: whatever comes next finds x_K in its cache.
      draft_valid_ = length + k;
      predraft_usable = PredraftGuessedBonus(round, outcome.next_token, &*predraft);
    }
    if (predraft.has_value()) {
      predraft_use_rate = 0.8 * predraft_use_rate + 0.2 * (predraft_usable ? 1.0 : 0.0);
      rounds_without_predraft = 0;
    } else {
      ++rounds_without_predraft;
    }
    if (!predraft_usable) give_up_predraft();

    std::vector<int32_t> emitted;
    for (int i = 0; i < outcome.num_accepted; ++i) emitted.push_back(proposals.proposals[i].token);
    emitted.push_back(outcome.next_token);
    v1::GenerateResponse response;
    int tokens_emitted = 0;
    for (int32_t token : emitted) {
      committed_.push_back(token);
      if (!verdict->scored.empty()) {
        // Token i of the round stands at verified position i; the last one is the fallback.
        const bool accepted_draft = tokens_emitted < outcome.num_accepted;
        *response.add_logprobs() = RoundTokenLogprob(verdict->scored[tokens_emitted], token,
                                                     accepted_draft, env_.tokenizer);
      }
      ++generated;
      ++tokens_emitted;
      response.add_token_ids(token);
      if (token == env_.eos_token_id) {
        finish_reason_ = v1::FINISH_REASON_EOS;
        break;
      }
      bool stopped = false;
      response.mutable_text()->append(text.Add(token, &stopped));
      if (stopped) {
        finish_reason_ = v1::FINISH_REASON_STOP;
        break;
      }
    }
    const int proposed = static_cast<int>(proposals.proposals.size());
    // Every round, those without proposals too: a paused policy counts them towards its probe.
    policy.Observe(proposed, outcome.num_accepted);
    if (proposed > 0) {
      // An overlapped round's draft work was hidden behind the previous verification; its cost
      // still counts, or K would grow as if drafting were free.
      const double draft_ms = proposals.overlapped ? proposals.compute_ms : proposals.wall_ms;
      const double c = (draft_ms / proposed) / std::max(verdict->wall_ms, 1e-3);
      cost_ratio_ema = cost_ratio_ema < 0 ? c : 0.8 * cost_ratio_ema + 0.2 * c;
      policy.SetCostRatio(cost_ratio_ema);
    }
    usage_.set_rounds(usage_.rounds() + 1);
    if (proposals.overlapped) usage_.set_overlapped_rounds(usage_.overlapped_rounds() + 1);
    usage_.set_drafted_tokens(usage_.drafted_tokens() + proposed);
    usage_.set_accepted_tokens(usage_.accepted_tokens() + outcome.num_accepted);

    v1::RoundRecord record;
    record.set_round(round);
    record.set_num_draft_tokens(k);
    record.set_num_proposed(proposed);
    record.set_num_accepted(outcome.num_accepted);
    record.set_tokens_emitted(tokens_emitted);
    record.set_draft_ms(proposals.compute_ms);
    record.set_verify_ms(verdict->compute_ms);
    record.set_network_ms(std::max(0.0, proposals.wall_ms - proposals.compute_ms) +
                          std::max(0.0, verdict->wall_ms - verdict->compute_ms));
    record.set_fallback(proposals.fallback);
    record.set_overlapped(proposals.overlapped);
    record.set_gateway_ms(std::max(
        0.0, MsSince(round_start) - proposals.wall_ms - verdict->wall_ms));
    if (proposals.start != Clock::time_point{}) {
      record.set_draft_start_unix_nanos(static_cast<int64_t>(clock_(proposals.start)));
      record.set_draft_end_unix_nanos(static_cast<int64_t>(clock_(proposals.end)));
    }
    record.set_verify_start_unix_nanos(static_cast<int64_t>(clock_(verdict->start)));
    record.set_verify_end_unix_nanos(static_cast<int64_t>(clock_(verdict->end)));
    // The request ends with this round: a pre-draft for the next one goes unused.
    if (finish_reason_ != v1::FINISH_REASON_UNSPECIFIED) give_up_predraft();
    SPECDEC_LOG(Debug) << "session " << session_id_ << " round " << round << " K=" << k
                       << " proposed=" << proposed << " accepted=" << outcome.num_accepted
                       << " emitted=" << tokens_emitted << " draft_ms=" << record.draft_ms()
                       << " verify_ms=" << record.verify_ms() << " network_ms="
                       << record.network_ms() << " gateway_ms=" << record.gateway_ms()
                       << " fallback=" << v1::Fallback_Name(record.fallback());
    if (env_.trace != nullptr) {
      env_.trace->OnRound(record, round_start, span_ids);
    }
    if (request_.include_rounds) *response.add_rounds() = record;
    if (round == 0) {
      response.set_request_id(request_.request_id);
      for (v1::TokenLogprob& entry : prompt_logprobs_) {
        *response.add_prompt_logprobs() = std::move(entry);
      }
    }
    ++round;
    if (!emit(response)) {
      status = absl::CancelledError("the client went away");
      break;
    }
  }
  give_up_predraft();  // the loop ended with one pending (an error, the budget)
  if (!status.ok()) {
    CloseStreams(false);
    return status;
  }
  // Release both sides before the last message, so a client that saw it sees no live session.
  CloseStreams(true);
  v1::GenerateResponse last;
  if (finish_reason_ != v1::FINISH_REASON_STOP) {
    bool stopped = false;
    last.set_text(text.Finish(&stopped));
    if (stopped) finish_reason_ = v1::FINISH_REASON_STOP;
  }
  if (round == 0) {
    last.set_request_id(request_.request_id);
    for (v1::TokenLogprob& entry : prompt_logprobs_) {
      *last.add_prompt_logprobs() = std::move(entry);
    }
  }
  last.set_finish_reason(finish_reason_);
  usage_.set_generated_tokens(static_cast<int32_t>(generated));
  usage_.set_total_ms(MsSince(run_start));
  *last.mutable_usage() = usage_;
  if (!emit(last)) return absl::CancelledError("the client went away");
  SPECDEC_LOG(Debug) << "session " << session_id_ << " finished: " << FinishName(finish_reason_);
  return absl::OkStatus();
}

}  // namespace specdec
