// What the draft and the verifier are both configured with (their --model_dir, --device, ...
// flags, read by ReadModelServiceFlags in model_service_flags.h).
#ifndef SPECDEC_SERVICES_COMMON_MODEL_SERVICE_OPTIONS_H_
#define SPECDEC_SERVICES_COMMON_MODEL_SERVICE_OPTIONS_H_

#include <string>

namespace specdec {

inline constexpr int kDefaultSessionThreads = 64;

struct ModelServiceOptions {
  std::string model_dir;
  std::string device = "auto";
  std::string dtype = "f32";
  int threads = 0;   // 0: half the cores, or one per --cpus CPU
  std::string cpus;  // CPU list to pin the process to ("0", "2-3"); empty: no pinning
  int shutdown_grace_ms = 5000;
  // Session streams served at once; one more is refused with RESOURCE_EXHAUSTED (the gateway
  // treats it as back-pressure, not as a failed replica). Bounds the KV caches a burst of
  // sessions can take.
  int max_sessions = 256;
  // Threads that run the session streams' requests (model work); the streams themselves take no
  // thread (gRPC callback API, services/common/session_reactor.h). The ForwardBatcher batches
  // only the passes that run at once, so this caps a batch at this many sessions: 64 lets a
  // default pass (--max_batch_tokens 512) fill with rounds of K=7 (8 rows each).
  int session_threads = kDefaultSessionThreads;
  std::string metrics_listen;  // Prometheus text at http://HOST:PORT/metrics; empty: off
  // OTLP/gRPC collector for the spans of streams that carry a traceparent; empty: off.
  std::string otlp_endpoint;
  // Cross-session batching (common/batching): rows of one forward pass; 0: every session runs
  // its own passes.
  int max_batch_tokens = 512;
  int batch_wait_us = 300;  // how long a pass waits for the sessions it expects
  int batch_passes = 0;     // passes at once; 0: one per usable core / compute threads (CPU), 1 (GPU)
  // Test only (fault injection, tests/reliability): sleep this long before each proposed token
  // (draft) or each verification (verifier).
  int debug_delay_ms = 0;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_MODEL_SERVICE_OPTIONS_H_
