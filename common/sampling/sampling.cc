// Token sampling without libtorch. Runs once per generated token on rows of ~50k logits, so
// it avoids full sorts: top-k is an nth_element, top-p first drops the tokens that provably
// cannot reach the nucleus and then sorts only as long a prefix as it needs, and the maximum
// and the softmax weights come from the CPU kernels (common/cpu_kernels/softmax.h).
#include "common/sampling/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/cpu_kernels/softmax.h"

namespace specdec {
namespace {

// SplitMix64's finaliser: a bijective, well-mixing 64-bit hash.
uint64_t SplitMix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// The hash every draw at (seed, position, purpose) starts from.
uint64_t StreamHash(uint64_t seed, int64_t position, RandomPurpose purpose) {
  uint64_t h = SplitMix64(seed);
  h = SplitMix64(h ^ static_cast<uint64_t>(position));
  return SplitMix64(h ^ static_cast<uint64_t>(purpose));
}

// Token `id`'s race noise at the position whose stream hash is `stream`: a uniform in (0, 1)
// (never 0, so -log is finite).
double TokenUniform(uint64_t stream, int32_t id) {
  const uint64_t h = SplitMix64(stream ^ static_cast<uint64_t>(static_cast<uint32_t>(id)));
  return (static_cast<double>(h >> 11) + 0.5) * 0x1.0p-53;
}

TokenDistribution OneHot(int32_t token) {
  TokenDistribution dist;
  dist.ids.push_back(token);
  dist.probs.push_back(1.0f);
  return dist;
}

int32_t MapColumn(int64_t col, const int32_t* vocab_ids) {
  return vocab_ids != nullptr ? vocab_ids[col] : static_cast<int32_t>(col);
}

// A weight that every token of the top-p nucleus reaches (w: a row's softmax weights, z their
// sum). Let w_m be the lightest token the nucleus keeps. The tokens before it carry less than
// top_p * z, so w_m and everything lighter carry more than (1 - top_p) * z. For any t <= w_m,
// that tail is the mass B(t) below t plus at most N(t) tokens (those at or above t) of weight
// <= w_m each: w_m >= ((1 - top_p) * z - B(t)) / N(t). Starting from t = (1 - top_p) * z / cols
// (N <= cols, B >= 0), each vector pass raises the floor, and on a flat row (thousands of
// tokens in the nucleus) cuts the candidates the exact selection must handle several times over.
// z and B are float sums of up to `cols` terms: the margins below cover their rounding.
float NucleusFloor(const float* w, int64_t cols, double z, float top_p) {
  // Four times the float sums' worst relative error: cols / 8 terms a lane, 2^-24 each.
  const double sum_error = static_cast<double>(cols) * 0x1.0p-25;
  const double tail = (1.0 - top_p - sum_error) * z;
  double floor = 0.5 * (1.0 - top_p) * z / static_cast<double>(cols);
  for (int pass = 0; pass < 8 && tail > 0.0; ++pass) {
    int64_t at_least = 0;
    const double below = MassBelow(w, cols, static_cast<float>(floor), &at_least);
    if (at_least == 0) break;
    const double raised = (tail - below * (1.0 + sum_error)) / static_cast<double>(at_least);
    if (!(raised > floor * 1.05)) break;  // converged: another pass would not pay
    floor = raised;
  }
  // Rounded down to a float so that the comparisons in float never exclude a nucleus token.
  float f = static_cast<float>(floor);
  if (static_cast<double>(f) > floor) f = std::nextafter(f, 0.0f);
  return f;
}

}  // namespace

absl::StatusOr<Coupling> ParseCoupling(absl::string_view name) {
  if (name == "rejection") return Coupling::kRejection;
  if (name == "shared_noise") return Coupling::kSharedNoise;
  return absl::InvalidArgumentError(
      absl::StrCat("coupling must be rejection or shared_noise, got \"", name, "\""));
}

const char* CouplingName(Coupling coupling) {
  return coupling == Coupling::kSharedNoise ? "shared_noise" : "rejection";
}

absl::Status SamplingParams::Validate() const {
  if (std::isnan(temperature) || temperature < 0.0f || std::isinf(temperature)) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be finite and >= 0, got ", temperature));
  }
  if (top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", top_k));
  }
  if (!(top_p > 0.0f && top_p <= 1.0f)) {  // also rejects NaN
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", top_p));
  }
  return absl::OkStatus();
}

float TokenDistribution::ProbOf(int32_t token) const {
  if (dense()) {
    return token >= 0 && token < size() ? probs[token] : 0.0f;
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] == token) return probs[i];
  }
  return 0.0f;
}

double UniformAt(uint64_t seed, int64_t position, RandomPurpose purpose) {
  // The top 53 bits fill a double's mantissa exactly: a multiple of 2^-53 in [0, 1).
  return static_cast<double>(StreamHash(seed, position, purpose) >> 11) * 0x1.0p-53;
}

int32_t ArgmaxToken(const float* logits, int64_t cols, const int32_t* vocab_ids) {
  if (cols <= 0) return -1;
  // NaN never wins unless the whole row is NaN (then column 0).
  return MapColumn(ArgMax(logits, cols), vocab_ids);
}

TokenDistribution ToDistribution(const float* logits, int64_t cols, const int32_t* vocab_ids,
                                 const SamplingParams& params, int32_t max_support) {
  if (cols <= 0) return {};
  if (params.greedy()) return OneHot(ArgmaxToken(logits, cols, vocab_ids));

  // Unnormalised softmax weights after temperature; NaN logits weigh nothing.
  const float max_logit = MaxLogit(logits, cols);
  // +inf, or a row without one finite logit: the only sensible answer is the argmax.
  if (!std::isfinite(max_logit)) return OneHot(ArgmaxToken(logits, cols, vocab_ids));
  const float inv_t = 1.0f / params.temperature;
  // A temperature so small that 1/T overflows is greedy in all but name.
  if (!std::isfinite(inv_t)) return OneHot(ArgmaxToken(logits, cols, vocab_ids));
  // Scratch kept per thread: a row's weights and candidate columns are ~400 KB, which a fresh
  // allocation per token would page-fault in again and again.
  static thread_local std::vector<float> w;
  static thread_local std::vector<int32_t> order;
  if (w.size() < static_cast<size_t>(cols)) w.resize(static_cast<size_t>(cols));
  const double total = SoftmaxWeights(logits, cols, max_logit, inv_t, w.data());

  const bool cut_k = params.top_k > 0 && params.top_k < cols;
  const bool cut_p = params.top_p < 1.0f;
  const bool cut_support = max_support > 0 && max_support < cols;

  if (!cut_k && !cut_p && !cut_support) {
    const double z = total;
    TokenDistribution dist;
    dist.probs.resize(static_cast<size_t>(cols));
    for (int64_t i = 0; i < cols; ++i) dist.probs[i] = static_cast<float>(w[i] / z);
    if (vocab_ids != nullptr) dist.ids.assign(vocab_ids, vocab_ids + cols);
    return dist;
  }

  // `order` only grows (shrinking and regrowing it would zero it again every token); its first
  // `n` entries are the candidates.
  if (order.size() < static_cast<size_t>(cols)) order.resize(static_cast<size_t>(cols));
  size_t n = static_cast<size_t>(cols);
  double z = 0.0;
  float floor = 0.0f;  // every candidate's weight is at least this
  if (cut_p && !cut_k) {
    // Only the tokens at or above NucleusFloor can be in the nucleus, so what follows sees those
    // candidates, not the whole vocabulary; the result is the same as sorting everything.
    z = total;
    floor = NucleusFloor(w.data(), cols, z, params.top_p);
    n = static_cast<size_t>(IndicesAtLeast(w.data(), cols, floor, order.data()));
  } else {
    std::iota(order.begin(), order.begin() + cols, 0);
  }
  // Descending weight, ties to the lower column, so truncation is deterministic.
  auto heavier = [](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); };

  // Top-k keeps exactly k columns (HF keeps every tie of the k-th; ties are measure-zero here).
  if (cut_k) {
    const size_t k = static_cast<size_t>(params.top_k);
    std::nth_element(order.begin(), order.begin() + k, order.begin() + n, heavier);
    n = k;
  }
  if (cut_k || !cut_p) {
    z = 0.0;
    for (size_t i = 0; i < n; ++i) z += w[order[i]];
  }

  // Nucleus (HF): the smallest prefix by descending probability whose mass reaches top_p,
  // measured on the top-k renormalised distribution; at least one token. The prefix is sorted
  // in growing chunks so a peaked row costs O(cols), not O(cols log cols).
  const double target =
      cut_p ? static_cast<double>(params.top_p) * z : std::numeric_limits<double>::infinity();
  const size_t limit = cut_support ? std::min(n, static_cast<size_t>(max_support)) : n;
  size_t keep = 0;
  double mass = 0.0;
  bool taken_in_order = false;  // `order` is already the order to take tokens in
  if (n > 256 && cut_p && !cut_k) {
    // A flat row (a weak or random model, a high temperature) keeps thousands of tokens:
    // sorting them would cost more than the forward. Bucket the candidates by weight instead (the
    // float's bits are monotonic in its value; 32 buckets an octave) and find the bucket where
    // the mass from the heaviest down reaches the target. Every lighter-than-it token is out,
    // every heavier one in (kept in column order: the distribution is the same whatever the
    // order of its support); only that bucket is sorted, which decides exactly where the nucleus
    // ends. Two linear passes, no data-dependent branches.
    constexpr int kShift = 18;
    constexpr size_t kBuckets = (0x3f800000u >> kShift) + 1;  // weights are in [0, 1]
    static thread_local std::vector<double> bucket_mass(kBuckets);
    static thread_local std::vector<uint32_t> bucket_count(kBuckets);
    static thread_local std::vector<uint16_t> bucket_at;
    static thread_local std::vector<int32_t> edge;
    // No candidate is lighter than the floor: only the buckets from its one up are used.
    uint32_t floor_bits;
    std::memcpy(&floor_bits, &floor, sizeof(floor_bits));
    const size_t lowest = floor > 0.0f ? floor_bits >> kShift : 0;
    std::fill(bucket_mass.begin() + lowest, bucket_mass.end(), 0.0);
    std::fill(bucket_count.begin() + lowest, bucket_count.end(), 0u);
    if (bucket_at.size() < n) bucket_at.resize(n);
    if (edge.size() < n) edge.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const float weight = w[order[i]];
      uint32_t bits;
      std::memcpy(&bits, &weight, sizeof(bits));
      const uint32_t b = bits >> kShift;
      bucket_at[i] = static_cast<uint16_t>(b);
      bucket_mass[b] += weight;
      bucket_count[b] += 1;
    }
    size_t boundary = kBuckets;
    double above = 0.0;
    size_t above_count = 0;
    while (boundary > lowest) {
      --boundary;
      if (above + bucket_mass[boundary] >= target || above_count + bucket_count[boundary] >= limit) break;
      above += bucket_mass[boundary];
      above_count += bucket_count[boundary];
    }
    // Heavier buckets compacted in place (the write index never passes the read index), the
    // boundary bucket aside, sorted, then appended.
    size_t heavy = 0, edges = 0;
    for (size_t i = 0; i < n; ++i) {
      const int32_t column = order[i];
      const uint32_t b = bucket_at[i];
      order[heavy] = column;
      heavy += b > boundary;
      edge[edges] = column;
      edges += b == boundary;
    }
    std::sort(edge.begin(), edge.begin() + edges, heavier);
    std::copy(edge.begin(), edge.begin() + edges, order.begin() + heavy);
    n = heavy + edges;
    taken_in_order = true;
    // The heavier buckets carry less than the target and fewer tokens than the limit: all of
    // them are kept, and their mass is summed four ways (a single sum waits on every add).
    double part[4] = {0.0, 0.0, 0.0, 0.0};
    for (; keep + 4 <= heavy; keep += 4) {
      for (int j = 0; j < 4; ++j) part[j] += w[order[keep + j]];
    }
    for (; keep < heavy; ++keep) part[0] += w[order[keep]];
    mass = (part[0] + part[1]) + (part[2] + part[3]);
    for (; keep < n && keep < limit && mass < target; ++keep) mass += w[order[keep]];
  }
  size_t chunk = 64;
  while (!taken_in_order && keep < limit && mass < target) {
    const size_t end = std::min(n, keep + chunk);
    if (end < n) std::nth_element(order.begin() + keep, order.begin() + end, order.begin() + n, heavier);
    std::sort(order.begin() + keep, order.begin() + end, heavier);
    for (; keep < end && keep < limit && mass < target; ++keep) mass += w[order[keep]];
    chunk *= 2;
  }
  // Zero-weight tokens (underflow) carry no mass: drop them from the sparse support.
  while (keep > 1 && w[order[keep - 1]] == 0.0f) --keep;

  TokenDistribution dist;
  dist.ids.resize(keep);
  dist.probs.resize(keep);
  const float inv_mass = static_cast<float>(1.0 / mass);  // a product a token, not a division
  for (size_t i = 0; i < keep; ++i) {
    dist.ids[i] = MapColumn(order[i], vocab_ids);
    dist.probs[i] = w[order[i]] * inv_mass;
  }
  return dist;
}

int32_t SampleToken(const TokenDistribution& dist, double u) {
  // Scale u by the actual total, so float sums slightly off 1 still give an exact inverse CDF.
  // Four sums (by index mod 4) so that the adds do not wait on each other.
  double part[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t last_positive = -1;
  for (int64_t i = 0; i < dist.size(); ++i) {
    if (dist.probs[i] > 0.0f) {
      part[i & 3] += dist.probs[i];
      last_positive = i;
    }
  }
  if (last_positive < 0) return -1;
  const double target = u * ((part[0] + part[1]) + (part[2] + part[3]));
  double cum = 0.0;
  for (int64_t i = 0; i < last_positive; ++i) {
    const float p = dist.probs[i];
    if (!(p > 0.0f)) continue;
    cum += p;
    if (target < cum) return dist.IdAt(i);
  }
  // Rounding can leave target at or past the accumulated sum: the last positive token.
  return dist.IdAt(last_positive);
}

int32_t RaceToken(const TokenDistribution& dist, uint64_t seed, int64_t position) {
  int64_t heaviest = -1;
  for (int64_t i = 0; i < dist.size(); ++i) {
    if (dist.probs[i] > 0.0f && (heaviest < 0 || dist.probs[i] > dist.probs[heaviest])) heaviest = i;
  }
  if (heaviest < 0) return -1;
  const uint64_t stream = StreamHash(seed, position, RandomPurpose::kShared);
  // The heaviest token's key bounds the winner's, so one hash and one comparison rule out
  // almost every other token: key_t = -log(U_t) / p_t < best needs -log(U_t) < best * p_t,
  // and as -log(u) >= 1 - u that needs U_t > 1 - best * p_t. Only those pay for a log.
  int32_t best_id = dist.IdAt(heaviest);
  double best = -std::log(TokenUniform(stream, best_id)) / dist.probs[heaviest];
  for (int64_t i = 0; i < dist.size(); ++i) {
    const double p = dist.probs[i];
    if (!(p > 0.0)) continue;
    const int32_t id = dist.IdAt(i);
    const double u = TokenUniform(stream, id);
    if (u <= 1.0 - best * p) continue;
    const double key = -std::log(u) / p;
    if (key < best || (key == best && id < best_id)) {
      best = key;
      best_id = id;
    }
  }
  return best_id;
}

int32_t DrawToken(const TokenDistribution& dist, const SamplingParams& params, int64_t position,
                  RandomPurpose purpose) {
  if (params.shared_noise()) return RaceToken(dist, params.seed, position);
  return SampleToken(dist, UniformAt(params.seed, position, purpose));
}

int32_t PickToken(const float* logits, int64_t cols, const int32_t* vocab_ids,
                  const SamplingParams& params, int64_t position, RandomPurpose purpose) {
  if (params.greedy()) return ArgmaxToken(logits, cols, vocab_ids);
  return DrawToken(ToDistribution(logits, cols, vocab_ids, params), params, position, purpose);
}

}  // namespace specdec
