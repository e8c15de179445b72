// Quest selection and the gathered attention (query_aware.h).
#include "common/cpu_kernels/query_aware.h"

#include <algorithm>

#include "common/cpu_kernels/ops.h"

namespace specdec {

int64_t SelectPages(const float* bounds, int64_t position, int64_t block, int64_t keep,
                    std::vector<int32_t>* order, std::vector<int32_t>* chosen) {
  const int64_t eligible = position / block;
  chosen->clear();
  if (eligible <= keep) {
    for (int64_t j = 0; j < eligible; ++j) chosen->push_back(static_cast<int32_t>(j));
    return eligible;
  }
  order->resize(static_cast<size_t>(eligible));
  for (int64_t j = 0; j < eligible; ++j) (*order)[j] = static_cast<int32_t>(j);
  // A strict total order (bound descending, then page ascending), so the choice is unique: the
  // torch path's selection must break ties the same way.
  auto before = [bounds](int32_t a, int32_t b) {
    return bounds[a] > bounds[b] || (bounds[a] == bounds[b] && a < b);
  };
  std::nth_element(order->begin(), order->begin() + (keep - 1), order->end(), before);
  chosen->assign(order->begin(), order->begin() + keep);
  std::sort(chosen->begin(), chosen->end());  // position order
  return eligible;
}

void QueryAwareAttention(const float* q, int64_t q_stride, int64_t q_head_stride, int64_t n,
                         int64_t first_pos, const float* const* key_rows,
                         const float* const* value_rows, int64_t kv_head_stride,
                         const float* const* summaries, int64_t block, int64_t keep,
                         int64_t heads, int64_t head_dim, float* out, int64_t out_stride,
                         QueryAwareScratch* scratch, int64_t* bytes_read) {
  QueryAwareScratch& s = *scratch;
  const int64_t most = std::max<int64_t>((keep + 1) * block, first_pos + n);
  if (static_cast<int64_t>(s.scores.size()) < most) s.scores.resize(static_cast<size_t>(most));
  std::vector<int32_t>& chosen = s.chosen;
  int64_t read = 0;  // floats
  for (int64_t i = 0; i < n; ++i) {
    const int64_t position = first_pos + i;
    const int64_t eligible = position / block;
    for (int64_t h = 0; h < heads; ++h) {
      const float* qi = q + i * q_stride + h * q_head_stride;
      float* o = out + i * out_stride + h * head_dim;
      const int64_t kv = h * kv_head_stride;
      if (eligible <= keep) {  // everything up to the position, as the full cache reads it
        RowAttention(qi, key_rows, value_rows, kv, position + 1, head_dim, o, s.scores.data());
        read += 2 * (position + 1) * head_dim;
        continue;
      }
      if (static_cast<int64_t>(s.bounds.size()) < eligible) s.bounds.resize(static_cast<size_t>(eligible));
      PageBounds(qi, summaries[h], eligible, head_dim, s.bounds.data());
      read += eligible * 2 * head_dim;
      SelectPages(s.bounds.data(), position, block, keep, &s.order, &chosen);
      s.key_rows.clear();
      s.value_rows.clear();
      for (int32_t page : chosen) {
        for (int64_t slot = page * block; slot < (page + 1) * block; ++slot) {
          s.key_rows.push_back(key_rows[slot]);
          s.value_rows.push_back(value_rows[slot]);
        }
      }
      for (int64_t slot = eligible * block; slot <= position; ++slot) {
        s.key_rows.push_back(key_rows[slot]);
        s.value_rows.push_back(value_rows[slot]);
      }
      const int64_t count = static_cast<int64_t>(s.key_rows.size());
      RowAttention(qi, s.key_rows.data(), s.value_rows.data(), kv, count, head_dim, o, s.scores.data());
      read += 2 * count * head_dim;
    }
  }
  if (bytes_read != nullptr) *bytes_read += read * static_cast<int64_t>(sizeof(float));
}

}  // namespace specdec
