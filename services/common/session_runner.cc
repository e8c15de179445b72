// The session runner (see session_runner.h).
#include "services/common/session_runner.h"

#include <algorithm>

namespace specdec {

SessionRunner::SessionRunner(int threads) {
  const int n = std::max(1, threads);
  workers_.reserve(n);
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { Loop(); });
}

SessionRunner::~SessionRunner() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& worker : workers_) worker.join();
}

void SessionRunner::Submit(std::shared_ptr<Task> task) {
  absl::MutexLock lock(&mu_);
  Task* raw = task.get();
  Entry& entry = tasks_[raw];
  entry.task = std::move(task);
  ready_.push_back(raw);
}

namespace {

class OneStep : public SessionRunner::Task {
 public:
  explicit OneStep(std::function<void()> work) : work_(std::move(work)) {}
  Next Step(absl::Time*) override {
    work_();
    return Next::kDone;
  }

 private:
  std::function<void()> work_;
};

}  // namespace

void SessionRunner::Run(std::function<void()> work) {
  Submit(std::make_shared<OneStep>(std::move(work)));
}

void SessionRunner::Wake(const Task* task) {
  absl::MutexLock lock(&mu_);
  auto it = tasks_.find(task);
  if (it == tasks_.end()) return;
  Entry& entry = it->second;
  if (entry.running) {
    entry.wake_pending = true;
  } else if (entry.parked) {
    UnparkLocked(&entry);
  }  // else: queued already
}

int64_t SessionRunner::tasks() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(tasks_.size());
}

void SessionRunner::UnparkLocked(Entry* entry) {
  if (entry->park_until != absl::InfiniteFuture()) {
    deadlines_.erase({entry->park_until, entry->task.get()});
  }
  entry->parked = false;
  entry->park_until = absl::InfiniteFuture();
  ready_.push_back(entry->task.get());
}

void SessionRunner::Loop() {
  absl::MutexLock lock(&mu_);
  while (true) {
    // Parked tasks whose deadline passed are ready again (their step sees the deadline).
    const absl::Time now = absl::Now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      UnparkLocked(&tasks_.at(deadlines_.begin()->second));
    }
    if (ready_.empty()) {
      if (stopping_) return;
      const absl::Time next =
          deadlines_.empty() ? absl::InfiniteFuture() : deadlines_.begin()->first;
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !ready_.empty() || stopping_;
      };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next);
      continue;
    }
    Task* task = ready_.front();
    ready_.pop_front();
    Entry& entry = tasks_.at(task);
    entry.running = true;
    // The entry stays in tasks_ while its step runs (Wake finds it); the map may rehash, so it
    // is looked up again afterwards.
    std::shared_ptr<Task> hold = entry.task;
    absl::Time park_until = absl::InfiniteFuture();
    mu_.Unlock();
    const Task::Next next = hold->Step(&park_until);
    mu_.Lock();
    Entry& after = tasks_.at(task);
    after.running = false;
    if (next == Task::Next::kDone) {
      tasks_.erase(task);
      mu_.Unlock();
      hold.reset();  // may destroy the task: outside the lock
      mu_.Lock();
      continue;
    }
    if (next == Task::Next::kReady || after.wake_pending) {
      after.wake_pending = false;
      ready_.push_back(task);
      continue;
    }
    after.parked = true;
    after.park_until = park_until;
    if (park_until != absl::InfiniteFuture()) deadlines_.insert({park_until, task});
  }
}

}  // namespace specdec
