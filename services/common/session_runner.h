// Runs many resumable sessions on a few threads: the gateway's Generate streams as Tasks of many
// steps, the draft's and the verifier's session requests as single pieces of work (Run). A
// session is a Task that does its work in
// steps (the gateway: a prefill, then one round a step); between steps it holds no thread. After
// a step it is ready again (queued behind the others: every session gets a step in turn), done,
// or parked until something wakes it (its client read a message, or cancelled) or a deadline
// passes. So the threads a service needs follow this pool's size, not how many streams are open
// or how slowly their clients read (docs/reliability.md, "Threads").
#ifndef SPECDEC_SERVICES_COMMON_SESSION_RUNNER_H_
#define SPECDEC_SERVICES_COMMON_SESSION_RUNNER_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace specdec {

class SessionRunner {
 public:
  class Task {
   public:
    enum class Next { kReady, kPark, kDone };
    virtual ~Task() = default;
    // One step, on one of the runner's threads (never two steps of a task at once). kPark:
    // run again after Wake, or once `*park_until` passes (left at InfiniteFuture: only Wake).
    virtual Next Step(absl::Time* park_until) = 0;
  };

  // `threads` >= 1.
  explicit SessionRunner(int threads);
  // Stops the threads once the ready tasks have run to their end or parked; parked tasks are
  // dropped (a server stops its calls first, which wakes and ends them).
  ~SessionRunner();
  SessionRunner(const SessionRunner&) = delete;
  SessionRunner& operator=(const SessionRunner&) = delete;

  // Queues the task's first step. The runner holds `task` until its step returns kDone.
  void Submit(std::shared_ptr<Task> task);
  // Runs `work` once on one of the threads, queued behind what is ready now (a task of one step).
  // It may block (model work).
  void Run(std::function<void()> work);
  // Makes a parked task ready; a task that is running is stepped again when its step returns
  // (even if it asks to park), so a wake-up between its check and its parking is never lost.
  // Unknown (finished) tasks are ignored.
  void Wake(const Task* task);

  int threads() const { return static_cast<int>(workers_.size()); }
  // Tasks submitted and not done (queued, running or parked).
  int64_t tasks() const;

 private:
  struct Entry {
    std::shared_ptr<Task> task;
    bool running = false;
    bool wake_pending = false;
    bool parked = false;
    absl::Time park_until = absl::InfiniteFuture();
  };

  void Loop();
  // Moves a parked task to the ready queue.
  void UnparkLocked(Entry* entry) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::deque<Task*> ready_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<const Task*, Entry> tasks_ ABSL_GUARDED_BY(mu_);
  // Parked tasks with a deadline, earliest first.
  std::set<std::pair<absl::Time, const Task*>> deadlines_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_SESSION_RUNNER_H_
