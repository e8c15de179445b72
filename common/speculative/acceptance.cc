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

RoundOutcome AcceptProposals(const SamplingParams& params, int64_t first_position,
                             absl::Span<const DraftProposal> proposals,
                             absl::Span<const VerifiedPosition> verified) {
  if (verified.empty()) return RoundOutcome{0, -1};
  const size_t k = std::min(proposals.size(), verified.size() - 1);
  for (size_t i = 0; i < k; ++i) {
    const DraftProposal& x = proposals[i];
    const VerifiedPosition& v = verified[i];
    bool accept;
    if (params.greedy() || params.shared_noise()) {
      accept = x.token == v.fallback_token;
    } else {
      const double q = x.q_prob;
      const double p = v.p_prob_of_draft;
      // A token the draft claims it could not have drawn is never accepted (and the test is
      // written as u * q < p so q = 0 never divides).
      const double u =
          UniformAt(params.seed, first_position + static_cast<int64_t>(i), RandomPurpose::kAccept);
      accept = q > 0.0 && u * q < p;
    }
    if (!accept) return RoundOutcome{static_cast<int>(i), v.fallback_token};
  }
  return RoundOutcome{static_cast<int>(k), verified[k].fallback_token};
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
                                              absl::Span<const TokenDistribution> draft_dists) {
  const size_t k = draft_tokens.size();
  std::vector<VerifiedPosition> out(k + 1);
  for (size_t i = 0; i <= k; ++i) {
    const float* row = logits + static_cast<int64_t>(i) * cols;
    const int64_t position = first_position + static_cast<int64_t>(i);
    VerifiedPosition& v = out[i];
    if (params.greedy()) {
      v.fallback_token = ArgmaxToken(row, cols, vocab_ids);
      v.p_prob_of_draft = i < k && draft_tokens[i] == v.fallback_token ? 1.0f : 0.0f;
      continue;
    }
    const TokenDistribution p = ToDistribution(row, cols, vocab_ids, params);
    if (params.shared_noise()) {
      v.fallback_token = RaceToken(p, params.seed, position);
      if (i < k) v.p_prob_of_draft = p.ProbOf(draft_tokens[i]);
      continue;
    }
    const double u = UniformAt(params.seed, position, RandomPurpose::kTarget);
    if (i == k) {
      v.fallback_token = SampleToken(p, u);  // the bonus token
      break;
    }
    v.p_prob_of_draft = p.ProbOf(draft_tokens[i]);
    static const TokenDistribution kNoDraft;
    const TokenDistribution& q = i < draft_dists.size() ? draft_dists[i] : kNoDraft;
    v.fallback_token = SampleToken(ResidualDistribution(p, q), u);
  }
  return out;
}

RoundOutcome VerifyAndAccept(const float* logits, int64_t cols, const int32_t* vocab_ids,
                             const SamplingParams& params, int64_t first_position,
                             absl::Span<const DraftProposal> proposals,
                             absl::Span<const TokenDistribution> draft_dists) {
  const size_t k = proposals.size();
  for (size_t i = 0; i <= k; ++i) {
    const float* row = logits + static_cast<int64_t>(i) * cols;
    const int64_t position = first_position + static_cast<int64_t>(i);
    if (params.greedy()) {
      const int32_t argmax = ArgmaxToken(row, cols, vocab_ids);
      if (i == k || proposals[i].token != argmax) return RoundOutcome{static_cast<int>(i), argmax};
      continue;
    }
    const TokenDistribution p = ToDistribution(row, cols, vocab_ids, params);
    if (params.shared_noise()) {
      const int32_t drawn = RaceToken(p, params.seed, position);
      if (i == k || proposals[i].token != drawn) return RoundOutcome{static_cast<int>(i), drawn};
      continue;
    }
    const double u = UniformAt(params.seed, position, RandomPurpose::kTarget);
    if (i == k) return RoundOutcome{static_cast<int>(k), SampleToken(p, u)};  // the bonus token
    // The acceptance test of AcceptProposals, on the same p_i(x_i) VerifyProposals reports.
    const double q = proposals[i].q_prob;
    const double p_x = static_cast<double>(p.ProbOf(proposals[i].token));
    const double accept_u = UniformAt(params.seed, position, RandomPurpose::kAccept);
    if (q > 0.0 && accept_u * q < p_x) continue;
    static const TokenDistribution kNoDraft;
    const TokenDistribution& qd = i < draft_dists.size() ? draft_dists[i] : kNoDraft;
    return RoundOutcome{static_cast<int>(i), SampleToken(ResidualDistribution(p, qd), u)};
  }
  return RoundOutcome{0, -1};  // not reached: i == k always returns
}

}  // namespace specdec
