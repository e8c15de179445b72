// Public log-probability messages (see token_logprobs.h).
#include "services/gateway/token_logprobs.h"

#include "absl/strings/str_cat.h"

namespace specdec {
namespace {

std::string Bytes(const Tokenizer* tokenizer, int32_t token) {
  std::string out;
  if (tokenizer != nullptr) tokenizer->AppendTokenBytes(token, &out);
  return out;
}

template <typename Scored>
void AddTop(const Scored& scored, const Tokenizer* tokenizer, v1::TokenLogprob* out) {
  for (int i = 0; i < scored.top_ids_size() && i < scored.top_logprobs_size(); ++i) {
    v1::TopLogprob* top = out->add_top();
    top->set_token_id(scored.top_ids(i));
    top->set_logprob(scored.top_logprobs(i));
    top->set_token(Bytes(tokenizer, scored.top_ids(i)));
  }
}

}  // namespace

v1::TokenLogprob RoundTokenLogprob(const v1::VerifiedPosition& position, int32_t token,
                                   bool accepted_draft, const Tokenizer* tokenizer) {
  v1::TokenLogprob out;
  out.set_token_id(token);
  out.set_logprob(accepted_draft ? position.draft_logprob() : position.fallback_logprob());
  out.set_token(Bytes(tokenizer, token));
  AddTop(position, tokenizer, &out);
  return out;
}

absl::StatusOr<std::vector<v1::TokenLogprob>> PromptLogprobs(const std::vector<int32_t>& prompt,
                                                             const v1::Prefilled& prefilled,
                                                             const Tokenizer* tokenizer) {
  if (prompt.empty()) return std::vector<v1::TokenLogprob>();
  if (prefilled.prompt_scores_size() != static_cast<int>(prompt.size()) - 1) {
    return absl::UnimplementedError(
        absl::StrCat("the verifier scored ", prefilled.prompt_scores_size(), " of ",
                     prompt.size() - 1, " prompt tokens (a verifier older than prompt logprobs?)"));
  }
  std::vector<v1::TokenLogprob> out(prompt.size());
  for (size_t i = 0; i < prompt.size(); ++i) {
    out[i].set_token_id(prompt[i]);
    out[i].set_token(Bytes(tokenizer, prompt[i]));
    if (i == 0) continue;  // no context, no log-probability
    const v1::PositionScore& score = prefilled.prompt_scores(static_cast<int>(i) - 1);
    out[i].set_logprob(score.logprob());
    AddTop(score, tokenizer, &out[i]);
  }
  return out;
}

}  // namespace specdec
