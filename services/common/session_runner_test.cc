// SessionRunner: every task runs to its end on the runner's few threads, one step at a time and
// never two steps of a task at once; parked tasks run again only when woken or when their
// deadline passes; a wake-up that races with parking is not lost.
#include "services/common/session_runner.h"

#include <atomic>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

using Next = SessionRunner::Task::Next;

// Counts its steps; done after `steps`; checks it is never stepped twice at once.
class CountingTask : public SessionRunner::Task {
 public:
  CountingTask(int steps, absl::Notification* done) : steps_(steps), done_(done) {}
  Next Step(absl::Time*) override {
    EXPECT_FALSE(in_step_.exchange(true)) << "two steps of one task at once";
    const int n = ++count_;
    in_step_ = false;
    if (n < steps_) return Next::kReady;
    done_->Notify();
    return Next::kDone;
  }
  int count() const { return count_; }

 private:
  const int steps_;
  absl::Notification* done_;
  std::atomic<int> count_{0};
  std::atomic<bool> in_step_{false};
};

TEST(SessionRunnerTest, RunsManyMoreTasksThanThreadsToTheirEnd) {
  std::vector<std::unique_ptr<absl::Notification>> done;
  std::vector<std::shared_ptr<CountingTask>> tasks;
  {
    SessionRunner runner(3);
    EXPECT_EQ(runner.threads(), 3);
    for (int i = 0; i < 200; ++i) {
      done.push_back(std::make_unique<absl::Notification>());
      tasks.push_back(std::make_shared<CountingTask>(1 + i % 7, done.back().get()));
      runner.Submit(tasks.back());
    }
    for (auto& d : done) d->WaitForNotification();
    // The runner lets go of a task once it is done (the last step has returned by then, so
    // give the step's thread a moment to drop its hold: wait for the count, not for time).
    while (runner.tasks() != 0) absl::SleepFor(absl::Milliseconds(1));
  }
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(tasks[i]->count(), 1 + i % 7) << i;
    EXPECT_EQ(tasks[i].use_count(), 1) << "the runner still holds task " << i;
  }
}

// Parks after each step until woken; done after `steps` steps.
class ParkingTask : public SessionRunner::Task {
 public:
  explicit ParkingTask(int steps) : steps_(steps) {}
  Next Step(absl::Time*) override {
    const int n = ++count_;
    if (n >= steps_) return Next::kDone;
    return Next::kPark;
  }
  std::atomic<int> count_{0};

 private:
  const int steps_;
};

TEST(SessionRunnerTest, ParkedTaskRunsOnlyWhenWoken) {
  SessionRunner runner(2);
  auto task = std::make_shared<ParkingTask>(3);
  runner.Submit(task);
  while (task->count_ < 1) absl::SleepFor(absl::Milliseconds(1));
  // Parked with no deadline: only Wake runs it again.
  EXPECT_EQ(runner.tasks(), 1);
  runner.Wake(task.get());
  while (task->count_ < 2) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(task->count_, 2);
  runner.Wake(task.get());
  while (runner.tasks() != 0) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(task->count_, 3);
  runner.Wake(task.get());  // finished: ignored
}

// Wakes itself from inside its step, then asks to park: the wake-up must not be lost.
class SelfWakingTask : public SessionRunner::Task {
 public:
  SelfWakingTask(SessionRunner* runner, int steps) : runner_(runner), steps_(steps) {}
  Next Step(absl::Time*) override {
    if (++count_ >= steps_) return Next::kDone;
    runner_->Wake(this);  // as if its client's read completed right now, on another thread
    return Next::kPark;
  }
  std::atomic<int> count_{0};

 private:
  SessionRunner* runner_;
  const int steps_;
};

TEST(SessionRunnerTest, WakeDuringStepIsNotLost) {
  SessionRunner runner(1);
  auto task = std::make_shared<SelfWakingTask>(&runner, 50);
  runner.Submit(task);
  while (runner.tasks() != 0) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(task->count_, 50);
}

// Parks with a deadline just ahead; done on the step after it.
class DeadlineTask : public SessionRunner::Task {
 public:
  Next Step(absl::Time* park_until) override {
    if (++count_ >= 2) return Next::kDone;
    *park_until = absl::Now() + absl::Milliseconds(5);
    return Next::kPark;
  }
  std::atomic<int> count_{0};
};

TEST(SessionRunnerTest, ParkedTaskRunsAgainAtItsDeadline) {
  SessionRunner runner(1);
  auto task = std::make_shared<DeadlineTask>();
  runner.Submit(task);
  // Nobody wakes it: only its deadline can.
  while (runner.tasks() != 0) absl::SleepFor(absl::Milliseconds(1));
  EXPECT_EQ(task->count_, 2);
}

}  // namespace
}  // namespace specdec
