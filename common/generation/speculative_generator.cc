// In-process speculative decoding (see generator.h): the draft view proposes K tokens, the
// target verifies them in one forward pass over K+1 positions, and the acceptance rule of
// common/speculative decides. Both caches hold every committed token but the last one (the
// "pending" token), which is the first input of the next round; a rejection is a Truncate.
#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/generation/generator.h"
#include "common/speculative/acceptance.h"
#include "common/speculative/round_planner.h"

namespace specdec {
namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

const int32_t* IdsOf(const Logits& logits) {
  return logits.vocab_ids ? logits.vocab_ids->data() : nullptr;
}

}  // namespace

absl::StatusOr<GenerateResult> GenerateSpeculative(const ModelView& target, const ModelView& draft,
                                                   absl::Span<const int32_t> prompt,
                                                   const GenerateOptions& options,
                                                   const TokenCallback& on_tokens) {
  if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  RETURN_IF_ERROR(options.sampling.Validate());
  if (options.num_draft_tokens <= 0 && !options.adaptive) {
    return GeneratePlain(target, prompt, options, on_tokens);
  }
  const SamplingParams& params = options.sampling;
  RoundPlanner planner(
      RoundPlanner::PolicyFor(options.num_draft_tokens, options.adaptive, options.max_draft_tokens),
      options.max_new_tokens, target.model().config().max_position_embeddings);
  // No verification may cross one of the target's KV compression boundaries.
  const KvBoundaries bounds =
      target.kv_cache_config() ? target.kv_cache_config()->Boundaries() : KvBoundaries{};

  GenerateResult result;
  auto target_seq = target.NewSequence();
  auto draft_seq = draft.NewSequence();
  std::vector<int32_t> committed(prompt.begin(), prompt.end());

  auto start = Clock::now();
  if (committed.size() > 1) {
    auto head = absl::MakeConstSpan(committed).subspan(0, committed.size() - 1);
    RETURN_IF_ERROR(ForwardCommitted(*target_seq, head, LogitsWanted::kLast).status());
    RETURN_IF_ERROR(ForwardCommitted(*draft_seq, head, LogitsWanted::kLast).status());
  }
  result.prefill_ms = MsSince(start);
  start = Clock::now();

  int64_t round = 0;
  while (true) {
    const int64_t length = static_cast<int64_t>(committed.size());  // L, pending included
    const int64_t generated = static_cast<int64_t>(result.tokens.size());
    result.finish_reason = planner.BeforeRound(length, generated);
    if (result.finish_reason != FinishReason::kNone) break;
    // The policy's K within the budget and the context, then cut to the KV boundaries
    // (lossless: fewer proposals).
    const int requested = planner.PlanK(length, generated);
    const int k = planner.PlanK(
        length, generated, true,
        static_cast<int>(std::min<int64_t>(RoundPlanner::kNoCap, bounds.MaxDraftTokens(length - 1))));

    RoundRecord record;
    record.round = round++;
    record.num_draft_tokens = k;
    record.requested_draft_tokens = requested;

    // Draft: catch up on committed tokens it has not seen, then propose k tokens.
    auto phase = Clock::now();
    std::vector<int32_t> draft_tokens;
    std::vector<TokenDistribution> draft_dists;
    std::vector<DraftProposal> proposals;
    if (k > 0) {
      // The catch-up ends at the pending token: all committed (a draft view with a KV policy
      // commits them); the draft's own tokens after it are speculative.
      std::vector<int32_t> feed(committed.begin() + draft_seq->length(), committed.end());
      for (int i = 0; i < k; ++i) {
        ASSIGN_OR_RETURN(Logits logits, i == 0 ? ForwardCommitted(*draft_seq, feed, LogitsWanted::kLast)
                                               : draft_seq->Forward(feed, LogitsWanted::kLast));
        const int64_t position = length + i;
        TokenDistribution q = ToDistribution(logits.row(0), logits.cols, IdsOf(logits), params,
                                             options.draft_max_support);
        const int32_t token = DrawToken(q, params, position, RandomPurpose::kDraft);
        proposals.push_back(MakeProposal(token, q));
        draft_tokens.push_back(token);
        draft_dists.push_back(std::move(q));
        feed = {token};
      }
    }
    record.draft_ms = MsSince(phase);

    // Verify: one forward over [pending, x_1 .. x_k].
    phase = Clock::now();
    std::vector<int32_t> verify_input = {committed.back()};
    verify_input.insert(verify_input.end(), draft_tokens.begin(), draft_tokens.end());
    ASSIGN_OR_RETURN(Logits target_logits, target_seq->Forward(verify_input, LogitsWanted::kAll));
    // Both sides are here: distributions only up to the first rejection (VerifyAndAccept).
    RoundOutcome outcome = VerifyAndAccept(target_logits.values.data(), target_logits.cols,
                                           IdsOf(target_logits), params, length, proposals,
                                           draft_dists);
    record.verify_ms = MsSince(phase);
    if (options.on_target_row) {
      for (int i = 0; i <= outcome.num_accepted; ++i) options.on_target_row(length + i, target_logits, i);
    }

    phase = Clock::now();
    record.num_accepted = outcome.num_accepted;
    // Roll back what was not accepted; both caches keep all but the new pending token.
    RETURN_IF_ERROR(target_seq->Truncate(length + outcome.num_accepted));
    RETURN_IF_ERROR(draft_seq->Truncate(std::min(draft_seq->length(), length + outcome.num_accepted)));
    // Everything the target holds now is committed: the policy may compress it (at a boundary).
    RETURN_IF_ERROR(target_seq->Commit(target_seq->length()));
    std::vector<int32_t> emitted(draft_tokens.begin(), draft_tokens.begin() + outcome.num_accepted);
    emitted.push_back(outcome.next_token);
    // EOS inside the round ends generation at the EOS token.
    bool eos = false;
    emitted.resize(RoundPlanner::CutAtEos(emitted, options.eos_token_id, &eos));
    committed.insert(committed.end(), emitted.begin(), emitted.end());
    result.tokens.insert(result.tokens.end(), emitted.begin(), emitted.end());
    record.tokens_emitted = static_cast<int>(emitted.size());
    planner.ObserveRound(k, outcome.num_accepted, record.draft_ms, record.verify_ms);
    record.accept_ms = MsSince(phase);
    result.rounds.push_back(record);
    if (on_tokens && !on_tokens(emitted)) {
      result.finish_reason = FinishReason::kStop;
      break;
    }
    if (eos) {
      result.finish_reason = FinishReason::kEos;
      break;
    }
  }
  result.decode_ms = MsSince(start);
  return result;
}

}  // namespace specdec
