// A fork-join pool: the caller publishes a job (a generation number), workers take fixed
// slices of it, and the caller waits for the count of finished slices.
#include "common/cpu_kernels/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <immintrin.h>

namespace specdec {
namespace {

class Pool {
 public:
  static Pool& Instance() {
    static Pool* pool = new Pool();  // never destroyed: workers may outlive static teardown
    return *pool;
  }

  void SetThreads(int threads) {
    std::lock_guard<std::mutex> job_lock(job_mutex_);
    threads = std::max(1, threads);
    while (static_cast<int>(workers_.size()) < threads - 1) {
      const int index = static_cast<int>(workers_.size()) + 1;  // slice 0 is the caller's
      // The worker starts from the current generation: no job runs while job_mutex_ is held.
      const uint64_t start = generation_.load(std::memory_order_acquire);
      workers_.emplace_back([this, index, start] { WorkerLoop(index, start); });
      workers_.back().detach();
    }
    threads_.store(threads);
  }

  int threads() const { return threads_.load(); }

  void Run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    const int threads = threads_.load();
    const int64_t slices = std::min<int64_t>(threads, n / std::max<int64_t>(1, grain));
    std::unique_lock<std::mutex> job_lock(job_mutex_, std::try_to_lock);
    if (slices <= 1 || !job_lock.owns_lock()) {
      fn(0, n);
      return;
    }
    fn_ = &fn;
    n_ = n;
    slices_ = static_cast<int>(slices);
    const int workers = static_cast<int>(workers_.size());
    done_.store(0, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(wake_mutex_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    RunSlice(0);
    // Every worker acknowledges every job, even one with no slice for it, so no worker can
    // still be reading this job's fields when the next one is published.
    while (done_.load(std::memory_order_acquire) < workers) _mm_pause();
    fn_ = nullptr;
  }

 private:
  void RunSlice(int index) {
    const int64_t begin = n_ * index / slices_;
    const int64_t end = n_ * (index + 1) / slices_;
    if (begin < end) (*fn_)(begin, end);
  }

  void WorkerLoop(int index, uint64_t seen) {
    for (;;) {
      // Spin a little (about 50-100 us) before sleeping: the next kernel call is usually near.
      uint64_t now = seen;
      for (int spin = 0; spin < 20000; ++spin) {
        now = generation_.load(std::memory_order_acquire);
        if (now != seen) break;
        _mm_pause();
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(wake_mutex_);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        now = generation_.load(std::memory_order_acquire);
      }
      seen = now;
      if (index < slices_) RunSlice(index);
      done_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  std::mutex job_mutex_;  // one job at a time
  std::atomic<int> threads_{1};
  std::vector<std::thread> workers_;
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> done_{0};
  const std::function<void(int64_t, int64_t)>* fn_ = nullptr;
  int64_t n_ = 0;
  int slices_ = 0;
};

}  // namespace

void SetComputeThreads(int threads) { Pool::Instance().SetThreads(threads); }
int ComputeThreads() { return Pool::Instance().threads(); }

void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  Pool::Instance().Run(n, grain, fn);
}

}  // namespace specdec
