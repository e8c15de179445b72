// One Generate request on the gateway: the round loop (plan, propose, verify, accept, commit,
// report) over a SessionState that its backend connections share. The loop decides what to do;
// VerifierConnection and DraftConnection carry it out against the backends (open, fail over,
// back off, re-prefill), and SessionBackends / SessionClock (session_backends.h) are the only
// ways out, so the whole state machine runs in unit tests against fakes.
// Overlapped rounds (docs/pipeline.md): once round r's proposals are in, the draft is asked for
// round r+1 at once, as if all of round r were accepted; its first token is its guess at the
// verifier's bonus token. The gateway uses that work only when all of round r is accepted and
// the guess equals the bonus, so the proposals, and hence the output, are exactly those of
// sequential rounds: only the waiting changes.
// A session sticks to one verifier and one draft replica (ReplicaSet's rendezvous hash); when its
// verifier replica fails it moves to the next one by re-prefill, and a failed draft is picked
// up again (possibly another replica) after a backoff.
#ifndef SPECDEC_SERVICES_GATEWAY_GENERATION_SESSION_H_
#define SPECDEC_SERVICES_GATEWAY_GENERATION_SESSION_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/speculative/acceptance.h"
#include "common/speculative/round_planner.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tracing/span.h"
#include "services/gateway/draft_connection.h"
#include "services/gateway/finish_reason.h"
#include "services/gateway/gateway_service.h"
#include "services/gateway/session_backends.h"
#include "services/gateway/session_state.h"
#include "services/gateway/text_output.h"
#include "services/gateway/trace_observer.h"
#include "services/gateway/verifier_connection.h"
#include "specdec/v1/gateway.pb.h"

namespace specdec {

struct SessionEnvironment {
  const Tokenizer* tokenizer = nullptr;
  int draft_deadline_ms = 500;
  // The most proposals the draft sends in one message (1: a message per proposal).
  int draft_tokens_per_message = 1;
  int max_adaptive_draft_tokens = 16;
  // Generate streams running on the gateway now; above speculation_max_sessions (> 0) rounds
  // run without the draft (FALLBACK_BUSY).
  const std::atomic<int>* active_sessions = nullptr;
  int speculation_max_sessions = 0;
  int32_t eos_token_id = -1;
  int64_t max_positions = 0;
  RequestTrace* trace = nullptr;  // metrics and spans of the rounds; may be null
  // The session's own deadline (the gateway's default when the client set none), and the
  // client's; SessionClock time.
  absl::Time deadline = absl::InfiniteFuture();
  absl::Time client_deadline = absl::InfiniteFuture();
  // Whether the client cancelled the call (null: it cannot).
  std::function<bool()> client_cancelled;
};

class GenerationSession {
 public:
  // Sends one message to the client; false when the client is gone.
  using Emit = std::function<bool(const v1::GenerateResponse&)>;

  // `backends` and `clock` outlive the session.
  GenerationSession(std::string session_id, const GenerationRequest& request,
                    const SessionEnvironment& env, SessionBackends* backends,
                    const SessionClock* clock);
  ~GenerationSession();

  // Runs the request to its end; every message, the last with finish_reason and usage, goes
  // through `emit`. Both services' sessions are released whatever happens.
  absl::Status Run(const Emit& emit);
  // The same, one step at a time, for a runner that interleaves many sessions on a few threads
  // (session_runner.h): each call runs the prefill, one round, or the finish, and returns false
  // once the session has ended; status() is then Run's result. Between steps the session
  // holds no thread, so its client may be slow to read without costing one.
  bool Step(const Emit& emit);
  const absl::Status& status() const { return status_; }

  const v1::Usage& usage() const { return usage_; }
  v1::FinishReason finish_reason() const { return ToProto(finish_reason_); }

 private:
  struct Verdict {
    std::vector<VerifiedPosition> positions;
    // The verifier's answer as sent, for its log-probabilities (only when the request asks).
    std::vector<v1::VerifiedPosition> scored;
    double wall_ms = 0;
    double compute_ms = 0;
    // From sending the request (a re-prefill or a move on the way included) to reading the
    // answer, in SessionClock time.
    absl::Time start;
    absl::Time end;
  };
  // One round as it goes: the plan, the proposals, the verdict and what it committed.
  struct Round {
    int64_t number = 0;
    int64_t length = 0;  // committed length at its start, the pending token included
    int k = 0;
    absl::Time start;
    Proposals proposals;
    Verdict verdict;
    RoundOutcome outcome;
    int tokens_emitted = 0;
    // Its spans' ids, named by its messages (a used pre-draft named its draft span already).
    RequestTrace::RoundSpanIds spans;
  };

  // Checks the client, opens both streams and prefills (the first step).
  absl::Status Start();
  absl::Status Prefill();
  // Plans round `number`, runs it and sends its message.
  absl::Status RunRound(int64_t number, const Emit& emit);
  // The round's proposals: the pre-draft's when the previous round made it usable, else asked
  // for now, else none with the reason (a fallback).
  Proposals Draft(Round* round, bool busy);
  // With every proposal in, asks the draft for the next round (planner_.PredraftK).
  void MaybePredraft(const Round& round);
  absl::StatusOr<Verdict> Verify(const Round& round);
  // Rollback by committed length and the pre-draft's fate.
  void Settle(const Round& round);
  // Drops a pending pre-draft, which then shows as a "predraft" span under the round that sent
  // it (its draft's spans are children of it).
  void GiveUpPredraft();
  // The traceparent for messages whose work belongs to this request's span `span` (empty when
  // the gateway exports no spans: the stream's own context applies).
  std::string TraceparentFor(const SpanId& span) const;
  // Appends the round's tokens to the committed ones and `response`, up to EOS or a stop string.
  void Commit(Round* round, v1::GenerateResponse* response);
  // Usage, the round record (trace, log, response) and the planner's feedback.
  void Report(const Round& round, v1::GenerateResponse* response);
  absl::Status Finish(int64_t rounds, const Emit& emit);
  void CloseStreams(bool release);
  double MsSince(absl::Time start) const;
  // The most drafts a verification whose pending token is at `pending_position` may carry
  // without crossing one of the verifier's KV compression boundaries.
  int MaxDraftTokensAt(int64_t pending_position) const;

  const GenerationRequest& request_;
  SessionEnvironment env_;
  const SessionClock* clock_;
  ClientWatch client_;
  SessionState state_;
  VerifierConnection verifier_;
  DraftConnection draft_;
  RoundPlanner planner_;
  TextOutput text_;
  const bool speculate_;
  const bool backends_has_drafts_;
  absl::Time run_start_;
  enum class Phase { kStart, kRounds, kDone };
  Phase phase_ = Phase::kStart;
  int64_t rounds_ = 0;
  absl::Status status_;
  int64_t generated_ = 0;
  // Round r+1's proposals, asked for while round r is verified (overlapped rounds); usable
  // once the draft's guess at round r's bonus is known to be right.
  std::optional<PendingProposal> predraft_;
  bool predraft_usable_ = false;
  // The pre-draft's span (the next round's draft span when used), the round that sent it and
  // that round's span.
  SpanId predraft_span_{};
  int64_t predraft_round_ = 0;
  SpanId predraft_round_span_{};
  std::vector<v1::TokenLogprob> prompt_logprobs_;
  v1::Usage usage_;
  FinishReason finish_reason_ = FinishReason::kNone;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_GENERATION_SESSION_H_
