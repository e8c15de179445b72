// In-process generation: plain autoregressive decoding with the full model, and speculative
// decoding with a draft view of the same model in the same process. The services split these
// same steps across processes; this is the reference they are tested against.
#ifndef SPECDEC_COMMON_GENERATION_GENERATOR_H_
#define SPECDEC_COMMON_GENERATION_GENERATOR_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/model/model.h"
#include "common/sampling/sampling.h"
#include "common/speculative/acceptance.h"
#include "common/speculative/round_planner.h"

namespace specdec {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  SamplingParams sampling;
  // Generation stops after emitting this token (it is included); -1: never.
  int32_t eos_token_id = -1;
  // Speculation: 0 decodes with the full model alone.
  int num_draft_tokens = 0;
  bool adaptive = false;       // adapt K per round (expected-throughput policy)
  int max_draft_tokens = 16;   // bound for adaptive K
  // Most tokens in the draft's q (0: its whole distribution); the draft service's
  // --draft_top_k has the same default, so both draw the same tokens.
  int32_t draft_max_support = kDefaultDraftSupport;
  // Tests and tools: called with every target logits row that decided a token, in position
  // order; `position` is where the decided token goes (row `row` of `logits`).
  std::function<void(int64_t position, const Logits& logits, int64_t row)> on_target_row;
};

// One speculation round as the trace reports it.
struct RoundRecord {
  int64_t round = 0;
  int num_draft_tokens = 0;        // verified (after fitting the KV policy's boundaries)
  int requested_draft_tokens = 0;  // what the draft-length policy asked for
  int num_accepted = 0;
  int tokens_emitted = 0;
  double draft_ms = 0;
  double verify_ms = 0;
  double accept_ms = 0;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // new tokens only
  std::vector<RoundRecord> rounds;
  // kLength, kEos, kContext, or kStop (the callback asked to stop).
  FinishReason finish_reason = FinishReason::kLength;
  double prefill_ms = 0;
  double decode_ms = 0;
};

// Called with each batch of new tokens; return false to stop (the tokens stay emitted).
using TokenCallback = std::function<bool(absl::Span<const int32_t>)>;

// Plain decoding with `target` (usually the full view). Under a view's KV policy every decided
// token is committed before the next forward (ForwardCommitted).
absl::StatusOr<GenerateResult> GeneratePlain(const ModelView& target,
                                             absl::Span<const int32_t> prompt,
                                             const GenerateOptions& options,
                                             const TokenCallback& on_tokens = nullptr);

// Speculative decoding: `draft` proposes, `target` verifies. Output is exactly what
// GeneratePlain gives for greedy, and has its distribution when sampling, under the target's KV
// policy too: K is cut so that no verification crosses a compression boundary
// (KvBoundaries::MaxDraftTokens), and committed tokens are committed before each round. The
// draft may be a view with a KV policy as well.
absl::StatusOr<GenerateResult> GenerateSpeculative(const ModelView& target, const ModelView& draft,
                                                   absl::Span<const int32_t> prompt,
                                                   const GenerateOptions& options,
                                                   const TokenCallback& on_tokens = nullptr);

}  // namespace specdec

#endif  // SPECDEC_COMMON_GENERATION_GENERATOR_H_
