// specdec-verifier: flags -> VerifierServerConfig -> RunVerifierServer.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/rpc/server.h"
#include "services/common/model_service_flags.h"
#include "services/verifier/verifier_service.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50051", "HOST:PORT to serve on");
ABSL_FLAG(std::string, kv_policy, "full",
          "KV cache policy: full, int8, sink_window:sink=S,window=W, h2o:budget=B,recent=R, "
          "hierarchical:..., query_aware:pages=P; int8+POLICY combines (docs/kv_cache.md)");
ABSL_FLAG(int64_t, kv_pool_blocks, 0,
          "KV pool size in 16-token blocks (0: 8 full-length sequences)");

int main(int argc, char** argv) {
  specdec::BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "Verifier service: specdec-verifier --model_dir DIR [--listen HOST:PORT] [--device auto]");
  absl::ParseCommandLine(argc, argv);
  specdec::VerifierServerConfig config;
  specdec::ReadModelServiceFlags(&config);
  config.listen = absl::GetFlag(FLAGS_listen);
  config.kv_policy = absl::GetFlag(FLAGS_kv_policy);
  config.kv_pool_blocks = absl::GetFlag(FLAGS_kv_pool_blocks);
  absl::Status status = specdec::RunVerifierServer(config);
  if (!status.ok()) {
    std::fprintf(stderr, "specdec-verifier: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
