// One Generate request on the gateway: the session's committed tokens, its streams to the
// verifier and the draft, and the round loop (propose, verify, accept, commit) with rollback by
// committed length, re-prefill of a side that lost the session, and the verifier-alone fallback.
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

#include <cstdint>
#include <functional>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/speculative/acceptance.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tracing/span.h"
#include "services/gateway/backend_streams.h"
#include "services/gateway/gateway_service.h"
#include "services/gateway/replica_set.h"
#include "specdec/v1/gateway.pb.h"

namespace specdec {

class RequestTrace;  // services/gateway/trace_observer.h

struct SessionEnvironment {
  ReplicaSet* verifiers = nullptr;
  ReplicaSet* drafts = nullptr;  // null: no draft configured
  const Tokenizer* tokenizer = nullptr;
  int draft_deadline_ms = 500;
  int max_adaptive_draft_tokens = 16;
  // Generate streams running on the gateway now; above speculation_max_sessions (> 0) rounds
  // run without the draft (FALLBACK_BUSY).
  const std::atomic<int>* active_sessions = nullptr;
  int speculation_max_sessions = 0;
  int32_t eos_token_id = -1;
  int64_t max_positions = 0;
  RequestTrace* trace = nullptr;  // metrics and spans of the rounds; may be null
  // The session's own deadline (the gateway's default when the client set none); the client's
  // deadline applies besides.
  absl::Time deadline = absl::InfiniteFuture();
  // The longest one verifier call may take before its replica counts as failed.
  absl::Duration verifier_timeout = absl::Seconds(30);
};

class GenerationSession {
 public:
  using Clock = std::chrono::steady_clock;
  // Sends one message to the client; false when the client is gone.
  using Emit = std::function<bool(const v1::GenerateResponse&)>;

  GenerationSession(std::string session_id, const GenerationRequest& request,
                    const SessionEnvironment& env, const grpc::ServerContext* context);
  ~GenerationSession();

  // Runs the request to its end; every message, the last with finish_reason and usage, goes
  // through `emit`. Both services' sessions are released whatever happens.
  absl::Status Run(const Emit& emit);

  const v1::Usage& usage() const { return usage_; }
  v1::FinishReason finish_reason() const { return finish_reason_; }

 private:
  struct Proposals {
    std::vector<DraftProposal> proposals;
    std::vector<TokenDistribution> dists;
    v1::Fallback fallback = v1::FALLBACK_UNSPECIFIED;
    double wall_ms = 0;
    double compute_ms = 0;
    bool overlapped = false;  // drafted while the previous round was verified
    // The draft work: from sending the request to reading the last proposal (start unset: the
    // draft was not asked). An overlapped round's started in the previous round.
    Clock::time_point start{};
    Clock::time_point end{};
  };
  // A DraftPropose sent and not yet fully read.
  struct PendingProposal {
    int64_t seq = 0;               // the request's number; its answers echo it
    int64_t committed_length = 0;  // of the request: proposal i is at this position + i
    int num_tokens = 0;            // asked for
    int next_index = 0;            // the first token not read yet
    absl::Time deadline;           // for its proposals
    Clock::time_point sent;
    SpanId span{};  // the gateway span its work belongs to (its traceparent names it)
  };
  struct Verdict {
    std::vector<VerifiedPosition> positions;
    // The verifier's answer as sent, for its log-probabilities (only when the request asks).
    std::vector<v1::VerifiedPosition> scored;
    double wall_ms = 0;
    double compute_ms = 0;
    Clock::time_point start{};  // request sent (a re-prefill or fail-over on the way included)
    Clock::time_point end{};    // answer read
  };

  absl::Status Prefill();
  // Opens a stream to the best verifier replica not yet tried by this session and prefills it
  // with every committed token; UNAVAILABLE when no replica is left.
  absl::Status OpenVerifier(int64_t round);
  // After a failed verifier call: the client's own status if it is gone, `status` when it is
  // not a replica failure, else moves the session to another replica (OpenVerifier).
  absl::Status FailOver(int64_t round, const absl::Status& status);
  // Opens a stream to the best healthy draft replica and sends it a prefill; false when there
  // is none or it fails at once.
  bool OpenDraft(int64_t round);
  // Asks the draft for k tokens; never fails (a failing draft becomes a fallback).
  Proposals Propose(int64_t round, int k);
  // Sends a DraftPropose whose span is `tokens` from `start_position`, its work belonging to the
  // gateway span `trace_span`; nullopt (and the draft dropped) when it cannot be sent.
  std::optional<PendingProposal> SendProposal(int64_t start_position,
                                              const std::vector<int32_t>& tokens, int k,
                                              const SpanId& trace_span);
  // Reads up to `k` more proposals of `pending` into `out` (until its deadline); re-prefills
  // once when the draft lost the session and `may_re_prefill`, else leaves `out` short.
  void ReadProposals(int64_t round, int k, bool may_re_prefill, PendingProposal* pending,
                     Proposals* out);
  // After round r committed all of its k proposals and `bonus`: whether the draft's guess for
  // the bonus (the overlapped request's first token) is right, so its other tokens are round
  // r+1's proposals.
  bool PredraftGuessedBonus(int64_t round, int32_t bonus, PendingProposal* predraft);
  absl::StatusOr<Verdict> Verify(int64_t round, const Proposals& proposals);
  // `replica_failed`: the draft's stream broke (the replica is reported to the set).
  void DropDraft(const std::string& why, bool replica_failed = true);
  absl::Status CheckClient() const;
  // Numbered with the next draft_seq_.
  v1::DraftRequest DraftPrefillRequest();
  // `score_prompt`: ask for the prompt's log-probabilities (the first prefill of a request
  // with logprobs.prompt).
  v1::VerifierRequest VerifierPrefillRequest(int64_t round, bool score_prompt = false) const;
  void CloseStreams(bool release);
  // The traceparent for a message whose work belongs to the gateway span `span` (empty when the
  // gateway exports no spans: the stream's own context applies).
  std::string TraceparentFor(const SpanId& span) const;

  std::string session_id_;
  const GenerationRequest& request_;
  SessionEnvironment env_;
  const grpc::ServerContext* context_;
  // W3C trace context sent with the draft and verifier streams (empty: none).
  const std::string traceparent_;
  // The round times (RoundRecord's *_unix_nanos): the trace's clock, so spans and records agree.
  const SteadyToUnix clock_;
  // The gateway spans that the draft's prefills and the verifier's messages belong to now (the
  // prefill span, then each round's draft and verify spans): named in each message's
  // traceparent so that the services' spans of the work are their children.
  SpanId draft_span_{};
  SpanId verifier_span_{};
  std::unique_ptr<VerifierStream> verifier_;
  std::shared_ptr<Replica> verifier_replica_;
  absl::flat_hash_set<std::string> tried_verifiers_;
  std::unique_ptr<DraftStream> draft_;
  std::shared_ptr<Replica> draft_replica_;
  bool draft_failed_ = false;
  int64_t draft_seq_ = 0;  // number of the last request sent to the draft
  // A dropped draft is asked again from this time on (backoff doubles per failure).
  absl::Time draft_retry_at_ = absl::InfinitePast();
  absl::Duration draft_backoff_ = absl::ZeroDuration();
  // Every committed token: the prompt and what was generated. The last one is "pending": the
  // caches hold positions before it, and it is the first input of the next round.
  std::vector<int32_t> committed_;
  // Committed positions each side is known to hold (the speculative tail beyond is stale).
  int64_t verifier_valid_ = 0;
  int64_t draft_valid_ = 0;
  // With logprobs.prompt: the prompt's entries, sent with the first message.
  std::vector<v1::TokenLogprob> prompt_logprobs_;
  bool prompt_scored_ = false;
  v1::Usage usage_;
  v1::FinishReason finish_reason_ = v1::FINISH_REASON_UNSPECIFIED;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_GENERATION_SESSION_H_
