// Free-list caching of CPU tensor memory (see caching_cpu_allocator.h).
#include "common/model/caching_cpu_allocator.h"

#include <cstdlib>
#include <new>

namespace specdec {
namespace {

// Every block starts with a header holding its size; the tensor's data follows, aligned as
// libtorch's own allocator aligns it.
constexpr size_t kAlignment = 64;
constexpr size_t kHeader = kAlignment;

struct Header {
  size_t block_size;
};

}  // namespace

CachingCpuAllocator& CachingCpuAllocator::Instance() {
  static CachingCpuAllocator* allocator = new CachingCpuAllocator;  // lives with the process
  return *allocator;
}

size_t CachingCpuAllocator::BlockSize(size_t bytes) {
  if (bytes <= (size_t{1} << 20)) {
    size_t size = 256;
    while (size < bytes) size <<= 1;
    return size;
  }
  constexpr size_t kGranule = size_t{64} << 10;
  return (bytes + kGranule - 1) / kGranule * kGranule;
}

c10::DataPtr CachingCpuAllocator::allocate(size_t bytes) const {
  const size_t block = BlockSize(bytes);
  void* base = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.find(block);
    if (it != free_.end() && !it->second.empty()) {
      base = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= block;
      ++stats_.reused;
    } else {
      ++stats_.system_allocations;
    }
    stats_.cached_bytes = static_cast<int64_t>(cached_bytes_);
  }
  if (base == nullptr) {
    base = std::aligned_alloc(kAlignment, kHeader + block);
    if (base == nullptr) throw std::bad_alloc();
    static_cast<Header*>(base)->block_size = block;
  }
  void* data = static_cast<char*>(base) + kHeader;
  return {data, data, &Free, c10::Device(c10::DeviceType::CPU)};
}

void CachingCpuAllocator::Free(void* data) { Instance().Release(data); }

void CachingCpuAllocator::Release(void* data) {
  if (data == nullptr) return;
  void* base = static_cast<char*>(data) - kHeader;
  const size_t block = static_cast<Header*>(base)->block_size;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_bytes_ + block <= kMaxCachedBytes) {
      free_[block].push_back(base);
      cached_bytes_ += block;
      stats_.cached_bytes = static_cast<int64_t>(cached_bytes_);
      return;
    }
  }
  std::free(base);
}

CpuAllocatorStats CachingCpuAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

}  // namespace specdec
