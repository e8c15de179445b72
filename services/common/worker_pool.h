// A fixed set of threads that run queued tasks in submission order: where the draft and the
// verifier run their session streams' model work. gRPC's callback threads must never block
// (a forward pass can take hundreds of milliseconds), so a stream's reactor hands each request
// to this pool; the pool's size, not the number of streams, bounds the threads.
#ifndef SPECDEC_SERVICES_COMMON_WORKER_POOL_H_
#define SPECDEC_SERVICES_COMMON_WORKER_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace specdec {

class WorkerPool {
 public:
  // Starts `threads` (at least 1) threads.
  explicit WorkerPool(int threads);
  // Runs every task still queued, then joins the threads.
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`; a free thread runs it. Tasks may block (they are model work).
  void Submit(std::function<void()> task);
  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void Work();
  bool HasWorkOrStops() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_WORKER_POOL_H_
