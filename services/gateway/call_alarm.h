// Runs a callback at a deadline unless disarmed first, on gRPC's timers (no thread of its own):
// the HTTP door uses it to cancel a completion whose client stopped reading past its deadline.
#ifndef SPECDEC_SERVICES_GATEWAY_CALL_ALARM_H_
#define SPECDEC_SERVICES_GATEWAY_CALL_ALARM_H_

#include <functional>
#include <memory>

#include <grpcpp/alarm.h>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace specdec {

class CallAlarm {
 public:
  CallAlarm() = default;
  ~CallAlarm() { Disarm(); }
  CallAlarm(const CallAlarm&) = delete;
  CallAlarm& operator=(const CallAlarm&) = delete;

  // `fire` runs once at `deadline` on a gRPC thread; it must be quick. Once per alarm.
  void Set(absl::Time deadline, std::function<void()> fire) {
    shared_ = std::make_shared<Shared>();
    shared_->fire = std::move(fire);
    alarm_ = std::make_unique<grpc::Alarm>();
    alarm_->Set(absl::ToChronoTime(deadline), [shared = shared_](bool ok) {
      if (!ok) return;  // cancelled
      absl::MutexLock lock(&shared->mu);
      if (shared->fire) shared->fire();
    });
  }
  // After Disarm returns, the callback is not running and will not run.
  void Disarm() {
    if (shared_ == nullptr) return;
    {
      absl::MutexLock lock(&shared_->mu);
      shared_->fire = nullptr;
    }
    alarm_->Cancel();
    shared_.reset();
  }

 private:
  // Outlives the alarm's callback, which may run after the alarm is gone.
  struct Shared {
    absl::Mutex mu;
    std::function<void()> fire ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<Shared> shared_;
  std::unique_ptr<grpc::Alarm> alarm_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_CALL_ALARM_H_
