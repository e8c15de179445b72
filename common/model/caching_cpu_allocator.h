// A caching allocator for libtorch's CPU tensors (UseCachingCpuAllocator in model.h). A decode
// step allocates the same tensors every token (~20 per layer: projections, attention scores,
// activations, the logits); with the system allocator each is a malloc/free and the big ones can
// be fresh mmap()s. This allocator keeps freed blocks in per-size free lists and hands them out
// again, so a steady-state decode loop makes no system allocations: sizes up to 1 MiB are
// rounded up to a power of two (attention scores grow by a row per token and then hit the same
// block until the size doubles), larger ones to 64 KiB (weights loaded afterwards waste little).
// Internal to common/model: includes libtorch.
#ifndef SPECDEC_COMMON_MODEL_CACHING_CPU_ALLOCATOR_H_
#define SPECDEC_COMMON_MODEL_CACHING_CPU_ALLOCATOR_H_

#include <c10/core/Allocator.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "common/model/model.h"

namespace specdec {

class CachingCpuAllocator final : public c10::Allocator {
 public:
  // Free blocks kept beyond this are returned to the system.
  static constexpr size_t kMaxCachedBytes = size_t{256} << 20;

  static CachingCpuAllocator& Instance();

  // libtorch 1.13 declares `allocate(size_t) const`; 2.x declares it non-const and adds a pure
  // `copy_data`. Both overloads and copy_data are declared (without `override`, which one of
  // them could not carry) so that the same source overrides whichever the headers have.
  c10::DataPtr allocate(size_t bytes) const;
  c10::DataPtr allocate(size_t bytes) { return static_cast<const CachingCpuAllocator*>(this)->allocate(bytes); }
  void copy_data(void* dest, const void* src, std::size_t count) const { std::memcpy(dest, src, count); }
  c10::DeleterFnPtr raw_deleter() const override { return &Free; }
  CpuAllocatorStats stats() const;

  // The block size `bytes` is served from.
  static size_t BlockSize(size_t bytes);

 private:
  static void Free(void* data);
  void Release(void* data);

  mutable std::mutex mu_;
  mutable std::map<size_t, std::vector<void*>> free_;  // block size -> free blocks
  mutable size_t cached_bytes_ = 0;
  mutable CpuAllocatorStats stats_;
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_MODEL_CACHING_CPU_ALLOCATOR_H_
