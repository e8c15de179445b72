// Log-probabilities on the verifier (see scoring.h).
#include "services/verifier/scoring.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/sampling/logprobs.h"
#include "services/common/proto_convert.h"

namespace specdec {
namespace {

// Rows of one scoring forward: [256, 50304] floats is 51 MB, a whole 2048-token prompt would be
// 412 MB. The cache seen by a position does not depend on how positions are grouped into
// forwards (DESIGN.md), so chunking changes no number.
constexpr int64_t kScoreChunk = 256;

void AddTop(const RowLogprobs& row, int top_n, google::protobuf::RepeatedField<int32_t>* ids,
            google::protobuf::RepeatedField<float>* logprobs) {
  for (const TopLogprob& top : row.Top(top_n)) {
    ids->Add(top.token);
    logprobs->Add(top.logprob);
  }
}

}  // namespace

absl::Status CheckLogprobRequest(const v1::LogprobRequest& request) {
  if (request.top_n() < 0 || request.top_n() > kMaxTopLogprobs) {
    return absl::InvalidArgumentError(absl::StrCat("logprobs top_n must be in [0, ",
                                                   kMaxTopLogprobs, "], got ", request.top_n()));
  }
  return absl::OkStatus();
}

void AddVerifyLogprobs(const Logits& logits, absl::Span<const int32_t> draft_tokens, int top_n,
                       v1::VerifyResult* result) {
  const int32_t* vocab_ids = logits.vocab_ids ? logits.vocab_ids->data() : nullptr;
  for (int i = 0; i < result->positions_size() && i < logits.rows; ++i) {
    const RowLogprobs row(logits.row(i), logits.cols, vocab_ids);
    v1::VerifiedPosition* position = result->mutable_positions(i);
    if (i < static_cast<int>(draft_tokens.size())) {
      position->set_draft_logprob(row.Of(draft_tokens[i]));
    }
    position->set_fallback_logprob(row.Of(position->fallback_token()));
    AddTop(row, top_n, position->mutable_top_ids(), position->mutable_top_logprobs());
  }
  result->set_has_logprobs(true);
}

absl::Status PrefillScored(const v1::VerifierPrefill& prefill, ModelSession* session,
                           v1::Prefilled* out) {
  RETURN_IF_ERROR(CheckLogprobRequest(prefill.prompt_logprobs()));
  const int top_n = prefill.prompt_logprobs().top_n();
  const int64_t vocab = session->view().model().config().vocab_size;
  if (prefill.next_token() < 0 || prefill.next_token() >= vocab) {
    return absl::InvalidArgumentError(
        absl::StrCat("next_token ", prefill.next_token(), " is outside [0, ", vocab, ")"));
  }
  v1::TokenSpan empty;
  empty.set_start_position(prefill.tokens().start_position());
  RETURN_IF_ERROR(session->Prefill(empty, FromProto(prefill.sampling())));
  const auto& tokens = prefill.tokens().tokens();
  const int64_t n = tokens.size();
  for (int64_t begin = 0; begin < n; begin += kScoreChunk) {
    const int64_t end = std::min(n, begin + kScoreChunk);
    ASSIGN_OR_RETURN(Logits logits,
                     session->ForwardCommitted(absl::MakeConstSpan(tokens.data() + begin, end - begin),
                                               LogitsWanted::kAll));  // [end - begin, cols]
    const int32_t* vocab_ids = logits.vocab_ids ? logits.vocab_ids->data() : nullptr;
    for (int64_t r = 0; r < logits.rows; ++r) {
      const int64_t next = begin + r + 1;
      const int32_t token = next < n ? tokens[next] : prefill.next_token();
      const RowLogprobs row(logits.row(r), logits.cols, vocab_ids);
      v1::PositionScore* score = out->add_prompt_scores();
      score->set_logprob(row.Of(token));
      AddTop(row, top_n, score->mutable_top_ids(), score->mutable_top_logprobs());
    }
  }
  return absl::OkStatus();
}

}  // namespace specdec
