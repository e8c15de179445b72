// specdec-draft: flags -> DraftServerConfig -> RunDraftServer.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/rpc/server.h"
#include "services/draft/draft_service.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50052", "HOST:PORT to serve on");
ABSL_FLAG(std::string, model_dir, "", "Hugging Face GPT-NeoX checkpoint folder");
ABSL_FLAG(std::string, device, "auto", "auto, cpu or cuda");
ABSL_FLAG(std::string, dtype, "f32", "compute dtype: f32, f16 or bf16");
ABSL_FLAG(int, threads, 0, "compute threads (0: half the cores, or one per --cpus CPU)");
ABSL_FLAG(std::string, cpus, "",
          "pin the process to these CPUs, e.g. 0 or 2-3 (empty: no pinning)");
ABSL_FLAG(std::string, draft_layers, "", "draft layers to run, e.g. 0,1,4,5 (empty: all)");
ABSL_FLAG(std::string, draft_plan, "", "draft LayerPlan JSON (overrides --draft_layers)");
ABSL_FLAG(int64_t, draft_vocab, 0, "draft LM head scores the N most frequent ids (0: all)");
ABSL_FLAG(int32_t, draft_top_k, 64, "most tokens in each proposal's q, sent sparse (0: all)");
ABSL_FLAG(int, shutdown_grace_ms, 5000, "in-flight streams get this long after SIGTERM");
ABSL_FLAG(std::string, metrics_listen, "", "HOST:PORT for Prometheus /metrics (empty: off)");
// Fault injection for tests/reliability (a slow draft); not for production use.
ABSL_FLAG(int, debug_delay_ms, 0, "TEST ONLY: sleep this long before each proposed token");

int main(int argc, char** argv) {
  specdec::BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "Draft service: specdec-draft --model_dir DIR [--draft_layers 0,1 | --draft_plan F] "
      "[--listen HOST:PORT]");
  absl::ParseCommandLine(argc, argv);
  specdec::DraftServerConfig config;
  config.listen = absl::GetFlag(FLAGS_listen);
  config.model_dir = absl::GetFlag(FLAGS_model_dir);
  config.device = absl::GetFlag(FLAGS_device);
  config.dtype = absl::GetFlag(FLAGS_dtype);
  config.threads = absl::GetFlag(FLAGS_threads);
  config.cpus = absl::GetFlag(FLAGS_cpus);
  config.draft_layers = absl::GetFlag(FLAGS_draft_layers);
  config.draft_plan = absl::GetFlag(FLAGS_draft_plan);
  config.draft_vocab = absl::GetFlag(FLAGS_draft_vocab);
  config.draft_top_k = absl::GetFlag(FLAGS_draft_top_k);
  config.shutdown_grace_ms = absl::GetFlag(FLAGS_shutdown_grace_ms);
  config.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  config.debug_delay_ms = absl::GetFlag(FLAGS_debug_delay_ms);
  absl::Status status = specdec::RunDraftServer(config);
  if (!status.ok()) {
    std::fprintf(stderr, "specdec-draft: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
