// One Generate request on the gateway: the session's committed tokens, its streams to the
// verifier and the draft, and the round loop (propose, verify, accept, commit) with rollback by
// committed length, re-prefill of a side that lost the session, and the verifier-alone fallback.
#ifndef SPECDEC_SERVICES_GATEWAY_GENERATION_SESSION_H_
#define SPECDEC_SERVICES_GATEWAY_GENERATION_SESSION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "common/speculative/acceptance.h"
#include "common/tokenizer/tokenizer.h"
#include "services/gateway/backend_streams.h"
#include "services/gateway/gateway_service.h"
#include "specdec/v1/gateway.pb.h"

namespace specdec {

struct SessionEnvironment {
  v1::Verifier::Stub* verifier = nullptr;
  v1::Draft::Stub* draft = nullptr;  // null: no draft configured
  const Tokenizer* tokenizer = nullptr;
  int draft_deadline_ms = 500;
  int max_adaptive_draft_tokens = 16;
  int32_t eos_token_id = -1;
  int64_t max_positions = 0;
};

class GenerationSession {
 public:
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
  };
  struct Verdict {
    std::vector<VerifiedPosition> positions;
    double wall_ms = 0;
    double compute_ms = 0;
  };

  absl::Status Prefill();
  // Asks the draft for k tokens; never fails (a failing draft becomes a fallback).
  Proposals Propose(int64_t round, int k);
  absl::StatusOr<Verdict> Verify(int64_t round, const Proposals& proposals);
  void DropDraft(const std::string& why);
  absl::Status CheckClient() const;
  v1::DraftRequest DraftPrefillRequest(int64_t round) const;
  v1::VerifierRequest VerifierPrefillRequest(int64_t round) const;
  void CloseStreams(bool release);

  std::string session_id_;
  const GenerationRequest& request_;
  SessionEnvironment env_;
  const grpc::ServerContext* context_;
  std::unique_ptr<VerifierStream> verifier_;
  std::unique_ptr<DraftStream> draft_;
  bool draft_failed_ = false;
  // Every committed token: the prompt and what was generated. The last one is "pending": the
  // caches hold positions before it, and it is the first input of the next round.
  std::vector<int32_t> committed_;
  // Committed positions each side is known to hold (the speculative tail beyond is stale).
  int64_t verifier_valid_ = 0;
  int64_t draft_valid_ = 0;
  v1::Usage usage_;
  v1::FinishReason finish_reason_ = v1::FINISH_REASON_UNSPECIFIED;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_GENERATION_SESSION_H_
