// Test-only slowness for the reliability tests (--debug_delay_ms on draft and verifier): a slow
// service must not hold a round past its deadline, and a slow stream lets a test restart a
// replica while a request is still running.
#ifndef SPECDEC_SERVICES_COMMON_DEBUG_DELAY_H_
#define SPECDEC_SERVICES_COMMON_DEBUG_DELAY_H_

#include "absl/functional/function_ref.h"

namespace specdec {

// Sleeps `ms` in short steps; false when `cancelled()` became true meanwhile, so a delayed
// service still notices a cancellation within about 10 ms.
bool DebugDelay(absl::FunctionRef<bool()> cancelled, int ms);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_DEBUG_DELAY_H_
