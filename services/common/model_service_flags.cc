#include "services/common/model_service_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "common/model/model.h"

ABSL_FLAG(std::string, model_dir, "", "Hugging Face GPT-NeoX checkpoint folder");
ABSL_FLAG(std::string, device, "auto", "auto, cpu or cuda");
ABSL_FLAG(std::string, dtype, "f32",
          specdec::kDtypeFlagHelp);
ABSL_FLAG(int, threads, 0, "compute threads (0: half the cores, or one per --cpus CPU)");
ABSL_FLAG(std::string, cpus, "",
          "pin the process to these CPUs, e.g. 0 or 2-3 (empty: no pinning)");
ABSL_FLAG(int, shutdown_grace_ms, 5000, "in-flight streams get this long after SIGTERM");
ABSL_FLAG(int, max_sessions, 256,
          "session streams served at once; more are refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(int, session_threads, specdec::kDefaultSessionThreads,
          "threads that run the session streams' model work (the streams take none); a "
          "batched pass holds at most this many sessions");
ABSL_FLAG(std::string, metrics_listen, "", "HOST:PORT for Prometheus /metrics (empty: off)");
ABSL_FLAG(std::string, otlp_endpoint, "",
          "HOST:PORT of an OTLP/gRPC collector: spans of the session streams that carry a W3C "
          "traceparent (empty: off)");
ABSL_FLAG(int, max_batch_tokens, 512,
          "batch concurrent sessions' forward passes, at most this many tokens a pass "
          "(0: no batching)");
ABSL_FLAG(int, batch_wait_us, 300,
          "a batched pass waits up to this long for the sessions it expects");
ABSL_FLAG(int, batch_passes, 0,
          "batched passes that may run at once (0: usable cores / --threads on a CPU, 1 on a "
          "GPU)");
// Fault injection for tests/reliability; not for production use.
ABSL_FLAG(int, debug_delay_ms, 0,
          "TEST ONLY: sleep this long before each proposed token (draft) or verification "
          "(verifier)");

namespace specdec {

void ReadModelServiceFlags(ModelServiceOptions* options) {
  options->model_dir = absl::GetFlag(FLAGS_model_dir);
  options->device = absl::GetFlag(FLAGS_device);
  options->dtype = absl::GetFlag(FLAGS_dtype);
  options->threads = absl::GetFlag(FLAGS_threads);
  options->cpus = absl::GetFlag(FLAGS_cpus);
  options->shutdown_grace_ms = absl::GetFlag(FLAGS_shutdown_grace_ms);
  options->max_sessions = absl::GetFlag(FLAGS_max_sessions);
  options->session_threads = absl::GetFlag(FLAGS_session_threads);
  options->metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  options->otlp_endpoint = absl::GetFlag(FLAGS_otlp_endpoint);
  options->debug_delay_ms = absl::GetFlag(FLAGS_debug_delay_ms);
  options->max_batch_tokens = absl::GetFlag(FLAGS_max_batch_tokens);
  options->batch_wait_us = absl::GetFlag(FLAGS_batch_wait_us);
  options->batch_passes = absl::GetFlag(FLAGS_batch_passes);
}

}  // namespace specdec
