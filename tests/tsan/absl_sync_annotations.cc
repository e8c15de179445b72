// Happens-before annotations for Debian's prebuilt (uninstrumented) Abseil synchronization, linked
// into every target of a SPECDEC_TSAN build (tests/tsan.sh, tests/README.md).
//
// Why: ThreadSanitizer learns about a lock only from instrumented code or from the pthread calls
// it intercepts. absl::Mutex locks with atomics inside libabsl_synchronization.so, which is not
// built with -fsanitize=thread, so without this file every field guarded by an absl::Mutex is
// reported as a data race. Each function below interposes the library's own symbol (the
// executable's definition wins over the shared library's), calls the real one through
// dlsym(RTLD_NEXT), and tells TSan what it did: a release of the mutex's address before a lock is
// given up, an acquire after it is taken. A reader lock is treated like a writer lock: that adds
// edges between readers (it can hide a race between two readers' writes, never invent one).
//
// Conditions (Await, LockWhen) are evaluated by whichever thread holds or releases the mutex, so
// a waiter's Condition is wrapped in one that acquires before and releases after evaluating.
//
// Notification::HasBeenNotified() is inline in the header and cannot be interposed; our code
// uses only WaitForNotification*, which is.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/base/options.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

extern "C" {
// Exported by the TSan runtime (the dynamic-annotations interface).
void AnnotateHappensBefore(const char* file, int line, const volatile void* addr);
void AnnotateHappensAfter(const char* file, int line, const volatile void* addr);
}

#define SPECDEC_STRINGIZE_(x) #x
#define SPECDEC_STRINGIZE(x) SPECDEC_STRINGIZE_(x)

namespace {

void Release(const void* addr) { AnnotateHappensBefore(__FILE__, __LINE__, addr); }
void Acquire(const void* addr) { AnnotateHappensAfter(__FILE__, __LINE__, addr); }

// The real symbol `absl::<inline namespace>::<rest>`; `cnst` for const member functions.
void* Real(const char* rest, bool cnst = false) {
  const std::string ns = SPECDEC_STRINGIZE(ABSL_OPTION_INLINE_NAMESPACE_NAME);
  const std::string name = std::string(cnst ? "_ZNK4absl" : "_ZN4absl") +
                           std::to_string(ns.size()) + ns + rest;
  void* fn = dlsym(RTLD_NEXT, name.c_str());
  if (fn == nullptr) {
    std::fprintf(stderr, "absl_sync_annotations: %s not found\n", name.c_str());
    std::abort();
  }
  return fn;
}

template <typename Fn>
Fn RealAs(const char* rest, bool cnst = false) {
  return reinterpret_cast<Fn>(Real(rest, cnst));
}

// A waiter's condition, evaluated as a critical section of `mu` on whatever thread evaluates it.
struct Annotated {
  const absl::Mutex* mu;
  const absl::Condition* cond;
};
bool EvalAnnotated(Annotated* a) {
  Acquire(a->mu);
  const bool result = a->cond->Eval();
  Release(a->mu);
  return result;
}

}  // namespace

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<void (*)(Mutex*)>("5Mutex4LockEv");
  real(this);
  Acquire(this);
}
void Mutex::ReaderLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<void (*)(Mutex*)>("5Mutex10ReaderLockEv");
  real(this);
  Acquire(this);
}
bool Mutex::TryLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<bool (*)(Mutex*)>("5Mutex7TryLockEv");
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}
bool Mutex::ReaderTryLock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<bool (*)(Mutex*)>("5Mutex13ReaderTryLockEv");
  const bool locked = real(this);
  if (locked) Acquire(this);
  return locked;
}
void Mutex::Unlock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<void (*)(Mutex*)>("5Mutex6UnlockEv");
  Release(this);
  real(this);
}
void Mutex::ReaderUnlock() ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<void (*)(Mutex*)>("5Mutex12ReaderUnlockEv");
  Release(this);
  real(this);
}

void Mutex::LockWhen(const Condition& cond) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<void (*)(Mutex*, const Condition&)>("5Mutex8LockWhenERKNS0_9ConditionE");
  Annotated a{this, &cond};
  real(this, Condition(&EvalAnnotated, &a));
  Acquire(this);
}
void Mutex::ReaderLockWhen(const Condition& cond) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real =
      RealAs<void (*)(Mutex*, const Condition&)>("5Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Annotated a{this, &cond};
  real(this, Condition(&EvalAnnotated, &a));
  Acquire(this);
}
bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Annotated a{this, &cond};
  const bool result = real(this, Condition(&EvalAnnotated, &a), timeout);
  Acquire(this);
  return result;
}
bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Time)>(
      "5Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Annotated a{this, &cond};
  const bool result = real(this, Condition(&EvalAnnotated, &a), deadline);
  Acquire(this);
  return result;
}
bool Mutex::ReaderLockWhenWithTimeout(const Condition& cond, Duration timeout)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex25ReaderLockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Annotated a{this, &cond};
  const bool result = real(this, Condition(&EvalAnnotated, &a), timeout);
  Acquire(this);
  return result;
}
bool Mutex::ReaderLockWhenWithDeadline(const Condition& cond, Time deadline)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Time)>(
      "5Mutex26ReaderLockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Annotated a{this, &cond};
  const bool result = real(this, Condition(&EvalAnnotated, &a), deadline);
  Acquire(this);
  return result;
}

void Mutex::Await(const Condition& cond) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<void (*)(Mutex*, const Condition&)>("5Mutex5AwaitERKNS0_9ConditionE");
  Annotated a{this, &cond};
  Release(this);
  real(this, Condition(&EvalAnnotated, &a));
  Acquire(this);
}
bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Duration)>(
      "5Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Annotated a{this, &cond};
  Release(this);
  const bool result = real(this, Condition(&EvalAnnotated, &a), timeout);
  Acquire(this);
  return result;
}
bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static auto real = RealAs<bool (*)(Mutex*, const Condition&, Time)>(
      "5Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Annotated a{this, &cond};
  Release(this);
  const bool result = real(this, Condition(&EvalAnnotated, &a), deadline);
  Acquire(this);
  return result;
}

void CondVar::Wait(Mutex* mu) {
  static auto real = RealAs<void (*)(CondVar*, Mutex*)>("7CondVar4WaitEPNS0_5MutexE");
  Release(mu);
  real(this, mu);
  Acquire(mu);
}
bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  static auto real = RealAs<bool (*)(CondVar*, Mutex*, Duration)>(
      "7CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Release(mu);
  const bool result = real(this, mu, timeout);
  Acquire(mu);
  return result;
}
bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  static auto real = RealAs<bool (*)(CondVar*, Mutex*, Time)>(
      "7CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Release(mu);
  const bool result = real(this, mu, deadline);
  Acquire(mu);
  return result;
}

void Notification::Notify() {
  static auto real = RealAs<void (*)(Notification*)>("12Notification6NotifyEv");
  Release(this);
  real(this);
}
void Notification::WaitForNotification() const {
  static auto real =
      RealAs<void (*)(const Notification*)>("12Notification19WaitForNotificationEv", true);
  real(this);
  Acquire(this);
}
bool Notification::WaitForNotificationWithTimeout(Duration timeout) const {
  static auto real = RealAs<bool (*)(const Notification*, Duration)>(
      "12Notification30WaitForNotificationWithTimeoutENS0_8DurationE", true);
  const bool notified = real(this, timeout);
  if (notified) Acquire(this);
  return notified;
}
bool Notification::WaitForNotificationWithDeadline(Time deadline) const {
  static auto real = RealAs<bool (*)(const Notification*, Time)>(
      "12Notification31WaitForNotificationWithDeadlineENS0_4TimeE", true);
  const bool notified = real(this, deadline);
  if (notified) Acquire(this);
  return notified;
}

ABSL_NAMESPACE_END
}  // namespace absl
