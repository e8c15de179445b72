#include "services/common/debug_delay.h"

#include <algorithm>
#include <chrono>
#include <thread>

namespace specdec {

bool DebugDelay(absl::FunctionRef<bool()> cancelled, int ms) {
  using Clock = std::chrono::steady_clock;
  const auto until = Clock::now() + std::chrono::milliseconds(ms);
  while (Clock::now() < until) {
    if (cancelled()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(ms, 10)));
  }
  return true;
}

}  // namespace specdec
