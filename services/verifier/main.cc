// specdec-verifier: flags -> VerifierServerConfig -> RunVerifierServer.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/rpc/server.h"
#include "services/verifier/verifier_service.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "HOST:PORT to serve on");
ABSL_FLAG(std::string, model_dir, "", "Hugging Face GPT-NeoX checkpoint folder");
ABSL_FLAG(std::string, device, "auto", "auto, cpu or cuda");
ABSL_FLAG(std::string, dtype, "f32", "compute dtype: f32, f16 or bf16");
ABSL_FLAG(int, threads, 0, "compute threads (0: half the cores, or one per --cpus CPU)");
ABSL_FLAG(std::string, cpus, "",
          "pin the process to these CPUs, e.g. 0 or 2-3 (empty: no pinning)");
ABSL_FLAG(int, shutdown_grace_ms, 5000, "in-flight streams get this long after SIGTERM");
ABSL_FLAG(std::string, kv_policy, "full",
          "KV cache policy: full, int8, sink_window:sink=S,window=W, h2o:budget=B,recent=R, "
          "hierarchical:..., query_aware:pages=P; int8+POLICY combines (docs/kv_cache.md)");
ABSL_FLAG(int64_t, kv_pool_blocks, 0,
          "KV pool size in 16-token blocks (0: 8 full-length sequences)");
ABSL_FLAG(int, debug_delay_ms, 0, "TEST ONLY: sleep this long before each verification");
ABSL_FLAG(std::string, metrics_listen, "", "HOST:PORT for Prometheus /metrics (empty: off)");

int main(int argc, char** argv) {
  specdec::BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "Verifier service: specdec-verifier --model_dir DIR [--listen HOST:PORT] [--device auto]");
  absl::ParseCommandLine(argc, argv);
  specdec::VerifierServerConfig config;
  config.listen = absl::GetFlag(FLAGS_listen);
  config.model_dir = absl::GetFlag(FLAGS_model_dir);
  config.device = absl::GetFlag(FLAGS_device);
  config.dtype = absl::GetFlag(FLAGS_dtype);
  config.threads = absl::GetFlag(FLAGS_threads);
  config.cpus = absl::GetFlag(FLAGS_cpus);
  config.shutdown_grace_ms = absl::GetFlag(FLAGS_shutdown_grace_ms);
  config.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  config.kv_policy = absl::GetFlag(FLAGS_kv_policy);
  config.kv_pool_blocks = absl::GetFlag(FLAGS_kv_pool_blocks);
  config.debug_delay_ms = absl::GetFlag(FLAGS_debug_delay_ms);
  absl::Status status = specdec::RunVerifierServer(config);
  if (!status.ok()) {
    std::fprintf(stderr, "specdec-verifier: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
