// The lossless speculative-sampling rule (Leviathan et al. 2023; Chen et al. 2023), split
// between the verifier (which sees p) and the gateway (which owns the random acceptance draws).
#include "common/speculative/acceptance.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"

namespace specdec {
namespace {

bool IsProbability(float x) { return std::isfinite(x) && x >= 0.0f && x <= 1.0f; }

}  // namespace

DraftProposal MakeProposal(int32_t token, const TokenDistribution& q) {
  return DraftProposal{token, q.ProbOf(token)};
}

DraftProposal DrawDraftToken(const TokenDistribution& q, const SamplingParams& params,
                             int64_t position) {
  return MakeProposal(DrawToken(q, params, position, RandomPurpose::kDraft), q);
}

absl::Status ValidateRound(absl::Span<const DraftProposal> proposals,
                           absl::Span<const VerifiedPosition> verified) {
  if (verified.size() != proposals.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("expected ", proposals.size() + 1,
                                                   " verified positions for ", proposals.size(),
                                                   " draft tokens, got ", verified.size()));
  }
  for (size_t i = 0; i < proposals.size(); ++i) {
    if (proposals[i].token < 0 || !IsProbability(proposals[i].q_prob)) {
      return absl::InvalidArgumentError(absl::StrCat("draft proposal ", i, " is invalid: token ",
                                                     proposals[i].token, ", q ",
                                                     proposals[i].q_prob));
    }
  }
  for (size_t i = 0; i < verified.size(); ++i) {
    if (verified[i].fallback_token < 0 || !IsProbability(verified[i].p_prob_of_draft)) {
      return absl::InvalidArgumentError(
          absl::StrCat("verified position ", i, " is invalid: fallback token ",
                       verified[i].fallback_token, ", p ", verified[i].p_prob_of_draft));
    }
  }
  return absl::OkStatus();
}

bool AcceptsDraftToken(const SamplingParams& params, int64_t position, const DraftProposal& x,
                       const VerifiedPosition& v) {
  if (params.greedy() || params.shared_noise()) return x.token == v.fallback_token;
  const double q = x.q_prob;
  const double p = v.p_prob_of_draft;
  // A token the draft claims it could not have drawn is never accepted (and the test is written
  // as u * q < p so q = 0 never divides).
  const double u = UniformAt(params.seed, position, RandomPurpose::kAccept);
  return q > 0.0 && u * q < p;
}

RoundOutcome AcceptProposals(const SamplingParams& params, int64_t first_position,
                             absl::Span<const DraftProposal> proposals,
                             absl::Span<const VerifiedPosition> verified) {
  if (verified.empty()) return RoundOutcome{0, -1};
  const size_t k = std::min(proposals.size(), verified.size() - 1);
  for (size_t i = 0; i < k; ++i) {
    if (!AcceptsDraftToken(params, first_position + static_cast<int64_t>(i), proposals[i],
                           verified[i])) {
      return RoundOutcome{static_cast<int>(i), verified[i].fallback_token};
    }
  }
  return RoundOutcome{static_cast<int>(k), verified[k].fallback_token};
}

absl::StatusOr<RoundOutcome> DecideRound(const SamplingParams& params, int64_t first_position,
                                         absl::Span<const DraftProposal> proposals,
                                         absl::Span<const VerifiedPosition> verified) {
  const size_t m = verified.size();
  if (m == 0 || m > proposals.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("expected 1 to ", proposals.size() + 1,
                                                   " verified positions for ", proposals.size(),
                                                   " draft tokens, got ", m));
  }
  // The values as ValidateRound checks them, on the proposals the answer covers.
  RETURN_IF_ERROR(ValidateRound(proposals.subspan(0, m - 1), verified));
  const RoundOutcome outcome = AcceptProposals(params, first_position, proposals, verified);
  if (m <= proposals.size() && outcome.num_accepted == static_cast<int>(m - 1) &&
      AcceptsDraftToken(params, first_position + static_cast<int64_t>(m - 1), proposals[m - 1],
                        verified[m - 1])) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the verifier stopped at position ", m - 1, " of ", proposals.size(),
        " draft tokens, which the acceptance rule accepts"));
  }
  return outcome;
}

TokenDistribution ResidualDistribution(const TokenDistribution& p, const TokenDistribution& q) {
  std::vector<double> r(p.probs.begin(), p.probs.end());
  if (p.dense()) {
    for (int64_t j = 0; j < q.size(); ++j) {
      const int32_t id = q.IdAt(j);
      if (id >= 0 && id < p.size()) r[id] -= q.probs[j];
    }
  } else {
    absl::flat_hash_map<int32_t, int64_t> index;
    index.reserve(p.ids.size());
    for (int64_t i = 0; i < p.size(); ++i) index.emplace(p.ids[i], i);
    for (int64_t j = 0; j < q.size(); ++j) {
      auto it = index.find(q.IdAt(j));
      if (it != index.end()) r[it->second] -= q.probs[j];
    }
  }
  double mass = 0.0;
  for (double& x : r) {
    if (!(x > 0.0)) x = 0.0;
    mass += x;
  }
  if (!(mass > 0.0)) return p;

  TokenDistribution out;
  if (p.dense()) {
    out.probs.resize(r.size());
    for (size_t i = 0; i < r.size(); ++i) out.probs[i] = static_cast<float>(r[i] / mass);
  } else {
    for (size_t i = 0; i < r.size(); ++i) {
      if (r[i] > 0.0) {
        out.ids.push_back(p.ids[i]);
        out.probs.push_back(static_cast<float>(r[i] / mass));
      }
    }
  }
  return out;
}

std::vector<VerifiedPosition> VerifyProposals(const float* logits, int64_t cols,
                                              const int32_t* vocab_ids,
                                              const SamplingParams& params, int64_t first_position,
                                              absl::Span<const int32_t> draft_tokens,
                                              absl::Span<const TokenDistribution> draft_dists,
                                              bool up_to_first_rejection) {
  static const TokenDistribution kNoDraft;
  const size_t k = draft_tokens.size();
  std::vector<VerifiedPosition> out(k + 1);
  for (size_t i = 0; i <= k; ++i) {
    const float* row = logits + static_cast<int64_t>(i) * cols;
    const int64_t position = first_position + static_cast<int64_t>(i);
    const TokenDistribution& q = i < draft_dists.size() ? draft_dists[i] : kNoDraft;
    // The proposal as the gateway sees it (q(x) found once: a sparse q is a linear search).
    const DraftProposal x =
        up_to_first_rejection && i < k ? MakeProposal(draft_tokens[i], q) : DraftProposal{};
    VerifiedPosition& v = out[i];
    if (params.greedy()) {
      v.fallback_token = ArgmaxToken(row, cols, vocab_ids);
      v.p_prob_of_draft = i < k && draft_tokens[i] == v.fallback_token ? 1.0f : 0.0f;
    } else {
      const TokenDistribution p = ToDistribution(row, cols, vocab_ids, params);
      if (i < k) v.p_prob_of_draft = p.ProbOf(draft_tokens[i]);
      if (params.shared_noise()) {
        v.fallback_token = RaceToken(p, params.seed, position);
      } else {
        const double u = UniformAt(params.seed, position, RandomPurpose::kTarget);
        if (i == k) {
          v.fallback_token = SampleToken(p, u);  // the bonus token
        } else if (up_to_first_rejection && AcceptsDraftToken(params, position, x, v)) {
          v.fallback_token = draft_tokens[i];  // accepted: no residual is ever read
        } else {
          v.fallback_token = SampleToken(ResidualDistribution(p, q), u);
        }
      }
    }
    if (up_to_first_rejection && i < k && !AcceptsDraftToken(params, position, x, v)) {
      out.resize(i + 1);
      break;
    }
  }
  return out;
}

RoundOutcome VerifyAndAccept(const float* logits, int64_t cols, const int32_t* vocab_ids,
                             const SamplingParams& params, int64_t first_position,
                             absl::Span<const DraftProposal> proposals,
                             absl::Span<const TokenDistribution> draft_dists) {
  std::vector<int32_t> tokens;
  tokens.reserve(proposals.size());
  for (const DraftProposal& x : proposals) tokens.push_back(x.token);
  return AcceptProposals(params, first_position, proposals,
                         VerifyProposals(logits, cols, vocab_ids, params, first_position, tokens,
                                         draft_dists, /*up_to_first_rejection=*/true));
}

}  // namespace specdec
