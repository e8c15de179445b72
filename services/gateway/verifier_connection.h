// The session's link to the verifier: which replica serves it, the prefill that builds the
// replica's cache from the committed tokens, and what happens when a call fails: a transport
// failure (replica_failure.h) reports the replica and moves the session to the next one in its
// rendezvous order by re-prefill; a replica that lost the session (evicted) is re-prefilled
// once; any other error goes back to the client as it is.
#ifndef SPECDEC_SERVICES_GATEWAY_VERIFIER_CONNECTION_H_
#define SPECDEC_SERVICES_GATEWAY_VERIFIER_CONNECTION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "common/tokenizer/tokenizer.h"
#include "services/gateway/session_backends.h"
#include "services/gateway/session_state.h"
#include "specdec/v1/verifier.pb.h"

namespace specdec {

class VerifierConnection {
 public:
  // Builds a verify request whose token span starts at `start_position`.
  using BuildRequest = std::function<v1::VerifierRequest(int64_t start_position)>;

  // `tokenizer` (nullable) decodes the prompt's log-probabilities.
  VerifierConnection(SessionState* state, SessionBackends* backends, const ClientWatch* client,
                     const Tokenizer* tokenizer);
  ~VerifierConnection() { Close(false); }

  // The W3C traceparent of the gateway span that the calls from now on belong to (the request's
  // prefill span, then each round's verify span; empty: none): every request carries it, a
  // re-prefill's or a move's included, so the verifier's spans of the work are its children.
  void SetTraceparent(std::string traceparent) { traceparent_ = std::move(traceparent); }
  // Opens a stream to the best verifier replica this session has not tried yet and prefills it
  // with every committed token (scoring the prompt the first time when the request asks).
  // UNAVAILABLE when no replica is left; a replica's non-transport error as it is.
  absl::Status Open(int64_t round);
  // One verification: `build(verifier_valid)` first; after a move or a re-prefill the span
  // starts at the pending token. Returns the verifier's answer (never session_lost).
  absl::StatusOr<v1::VerifierResponse> Verify(int64_t round, const BuildRequest& build);
  // Ends the stream, releasing the session on the replica when `release`.
  void Close(bool release);

  // The prompt's entries (logprobs.prompt), once; empty afterwards.
  std::vector<v1::TokenLogprob> TakePromptLogprobs() { return std::move(prompt_logprobs_); }

 private:
  // After a failed call: the client's own status if it is gone, `status` when it is not a
  // replica failure, else Open on the next replica.
  absl::Status FailOver(int64_t round, const absl::Status& status);
  // Re-prefills a replica that lost the session (moving on if that fails).
  absl::Status RePrefill(int64_t round, const std::string& reason);
  v1::VerifierRequest PrefillRequest(int64_t round, bool score_prompt) const;

  SessionState* state_;
  SessionBackends* backends_;
  const ClientWatch* client_;
  const Tokenizer* tokenizer_;
  std::unique_ptr<VerifierLink> link_;
  std::string replica_;  // the address link_ goes to
  absl::flat_hash_set<std::string> tried_;
  std::vector<v1::TokenLogprob> prompt_logprobs_;
  bool prompt_scored_ = false;
  std::string traceparent_;  // SetTraceparent
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_VERIFIER_CONNECTION_H_
