// tests/tsan.sh's check of itself: `race_canary race` writes one int from two threads with no
// lock and must be reported; `race_canary guarded` does the same under an absl::Mutex (Lock,
// Await on a Condition, CondVar) and must not be, which fails if TSan cannot see Debian's
// prebuilt Abseil locks (tests/tsan/absl_sync_annotations.cc).
#include <cstdio>
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

namespace {

int counter = 0;

void Race() {
  std::thread a([] { for (int i = 0; i < 1000; ++i) ++counter; });
  std::thread b([] { for (int i = 0; i < 1000; ++i) ++counter; });
  a.join();
  b.join();
}

void Guarded() {
  absl::Mutex mu;
  absl::CondVar cv;
  bool ready = false;
  int turn = 0;
  absl::Notification done;
  std::thread a([&] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&mu);
      ++counter;
    }
    absl::MutexLock lock(&mu);
    ready = true;
    ++turn;
    cv.Signal();
  });
  std::thread b([&] {
    for (int i = 0; i < 1000; ++i) {
      absl::MutexLock lock(&mu);
      ++counter;
    }
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(+[](bool* r) { return *r; }, &ready));
      ++turn;
    }
    ++counter;  // after the Await, outside the lock: ordered by the notification below
    done.Notify();
  });
  {
    absl::MutexLock lock(&mu);
    while (turn < 2) cv.WaitWithTimeout(&mu, absl::Milliseconds(10));
  }
  done.WaitForNotification();
  ++counter;
  a.join();
  b.join();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "race") == 0) {
    Race();
  } else if (argc == 2 && std::strcmp(argv[1], "guarded") == 0) {
    Guarded();
  } else {
    std::fprintf(stderr, "usage: race_canary race|guarded\n");
    return 2;
  }
  std::printf("%d\n", counter);
  return 0;
}
