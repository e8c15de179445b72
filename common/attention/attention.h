// The libtorch path's attention maths (GPT-NeoX, as Hugging Face's GPTNeoXForCausalLM): rotary
// embeddings, the causal mask, scores and probabilities. Written once for both caches: the
// contiguous one (common/model) and the paged one (common/kv_cache), which only store and
// select keys and values. The CPU engine's float kernels are common/cpu_kernels. Includes
// libtorch: include only from .cc files.
#ifndef SPECDEC_COMMON_ATTENTION_ATTENTION_H_
#define SPECDEC_COMMON_ATTENTION_ATTENTION_H_

#include <cstdint>

#include <torch/torch.h>

namespace specdec {

// q or k: [heads, n, head_dim]; cos/sin: [n, rot]. GPT-NeoX (HF) rotary on the first `rot` dims.
torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                          int64_t rot);

// Rows of a causal mask for `n` new queries that see every one of `total - n` older keys (true:
// masked).
torch::Tensor CausalMask(int64_t n, int64_t total, const torch::Device& device);

// q [heads, n, hd] . keys [heads, total, hd]^T / sqrt(hd): [heads, n, total], in q's dtype.
torch::Tensor AttentionScores(const torch::Tensor& q, const torch::Tensor& keys);

// Softmax over the last dimension of `scores` ([heads, n, total], the n queries being the last
// n of the total positions), causally masked, in float.
torch::Tensor CausalProbs(const torch::Tensor& scores);

// probs [heads, n, total] . values [heads, total, hd]: [heads, n, hd] in values' dtype.
torch::Tensor AttendValues(const torch::Tensor& probs, const torch::Tensor& values);

}  // namespace specdec

#endif  // SPECDEC_COMMON_ATTENTION_ATTENTION_H_
