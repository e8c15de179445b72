// The session's link to the draft: which replica drafts for it, the prefill (not awaited: the
// draft prefills while the verifier works), proposal requests and their answers read against a
// per-round deadline, the re-prefill of a draft that lost the session, and the backoff after a
// draft fails (200 ms doubling to 5 s, reset by a round with proposals). The draft never fails
// a request: whatever goes wrong, the round runs with fewer proposals or none (a fallback).
#ifndef SPECDEC_SERVICES_GATEWAY_DRAFT_CONNECTION_H_
#define SPECDEC_SERVICES_GATEWAY_DRAFT_CONNECTION_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "common/speculative/acceptance.h"
#include "services/gateway/session_backends.h"
#include "services/gateway/session_state.h"
#include "specdec/v1/gateway.pb.h"

namespace specdec {

// A round's draft tokens, as read so far.
struct Proposals {
  std::vector<DraftProposal> proposals;
  std::vector<TokenDistribution> dists;
  v1::Fallback fallback = v1::FALLBACK_UNSPECIFIED;
  double wall_ms = 0;
  double compute_ms = 0;
  bool overlapped = false;  // drafted while the previous round was verified
  bool asked = false;       // a proposal request reached the draft (its cache moves on)
  // The draft plan that proposed them (DraftToken.plan_id, plan); "" before the first.
  int64_t plan_id = 0;
  std::string plan;
  // The draft work, in SessionClock time: from sending the request to reading the last proposal
  // (InfinitePast: the draft was not asked). An overlapped round's began in the previous round.
  absl::Time start = absl::InfinitePast();
  absl::Time end = absl::InfinitePast();
};

// A DraftPropose sent and not yet fully read.
struct PendingProposal {
  int64_t seq = 0;               // the request's number; its answers echo it
  int64_t committed_length = 0;  // of the request: proposal i is at this position + i
  int num_tokens = 0;            // asked for
  int next_index = 0;            // the first token not read yet
  absl::Time deadline;           // for its proposals
  absl::Time sent;               // when it was sent (a re-prefill on the way keeps it)
  // W3C traceparent of the gateway span its work belongs to (empty: none), named by its
  // messages, a re-prefill's included.
  std::string traceparent;
  // The plan it is drafted with, from its first token (the draft says it once).
  int64_t plan_id = 0;
  std::string plan;
};

class DraftConnection {
 public:
  // `draft_deadline`: how long a round waits for its proposals. `tokens_per_message`: the most
  // proposals the draft puts in one message (DraftPropose.tokens_per_message; 1 or less: one
  // message per proposal, as each is drawn).
  DraftConnection(SessionState* state, SessionBackends* backends, const ClientWatch* client,
                  const SessionClock* clock, absl::Duration draft_deadline,
                  int tokens_per_message = 1);
  ~DraftConnection() { Close(false); }

  // A stream is open (it may still break).
  bool connected() const { return link_ != nullptr; }
  // The last stream failed (or no replica was healthy): rounds fall back until the backoff
  // passes and Propose opens a stream again.
  bool failed() const { return failed_; }

  // The W3C traceparent of the gateway span that the work asked from now on belongs to (the
  // request's prefill span, then each round's draft span; empty: none): prefills and Propose's
  // requests carry it, so the draft's spans of the work are its children.
  void SetTraceparent(std::string traceparent) { traceparent_ = std::move(traceparent); }
  // Opens a stream to the best healthy draft replica and sends it a prefill; false when there
  // is none or it fails at once.
  bool Open(int64_t round);
  // Asks the draft for k tokens after the committed ones (reopening a failed draft once its
  // backoff passed); never fails: a failing draft becomes a fallback.
  Proposals Propose(int64_t round, int k);
  // Sends a DraftPropose whose span is `tokens` from `start_position`, its work belonging to the
  // gateway span `traceparent` names; nullopt (and the draft dropped) when it cannot be sent.
  std::optional<PendingProposal> Send(int64_t start_position, const std::vector<int32_t>& tokens,
                                      int k, const std::string& traceparent);
  // Reads up to `k` more proposals of `pending` into `out` (until its deadline); re-prefills
  // once when the draft lost the session and `may_re_prefill`, else leaves `out` short.
  void Read(int64_t round, int k, bool may_re_prefill, PendingProposal* pending, Proposals* out);
  // After a round committed all of its proposals and `bonus`: whether the draft's guess for the
  // bonus (the pre-draft's first token) is right, so its other tokens are the next proposals.
  bool GuessedBonus(int64_t round, int32_t bonus, PendingProposal* predraft);
  // Ends the stream, releasing the session on the replica when `release`.
  void Close(bool release);

  // Backoff bounds after a failed draft.
  static constexpr absl::Duration kMinBackoff = absl::Milliseconds(200);
  static constexpr absl::Duration kMaxBackoff = absl::Seconds(5);

 private:
  // `replica_failed`: the stream broke (the replica is reported to the set).
  void Drop(const std::string& why, bool replica_failed = true);
  // Answers a session_lost: a prefill and the same proposal request again; false when dropped.
  bool RePrefill(PendingProposal* pending);
  // Adds proposal `token` of `pending` to `out`; false (and the draft dropped) when it is not
  // the one expected next.
  bool Take(const v1::DraftToken& token, PendingProposal* pending, Proposals* out);
  // Numbered with the next seq_.
  v1::DraftRequest PrefillRequest();
  double MsSince(absl::Time start) const;

  SessionState* state_;
  SessionBackends* backends_;
  const ClientWatch* client_;
  const SessionClock* clock_;
  absl::Duration draft_deadline_;
  int tokens_per_message_;
  std::unique_ptr<DraftLink> link_;
  // Proposals of the last request sent that came in a DraftTokens message and were not read yet
  // (GuessedBonus reads one of them, the next Read the rest).
  std::deque<v1::DraftToken> unread_;
  std::string replica_;  // the address link_ goes to
  bool failed_ = false;
  int64_t seq_ = 0;  // number of the last request sent
  std::string traceparent_;  // SetTraceparent
  // A dropped draft is asked again from this time on (backoff doubles per failure).
  absl::Time retry_at_ = absl::InfinitePast();
  absl::Duration backoff_ = absl::ZeroDuration();
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_DRAFT_CONNECTION_H_
