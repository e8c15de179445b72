// specdec-draft: flags -> DraftServerConfig -> RunDraftServer.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/rpc/server.h"
#include "common/speculative/acceptance.h"
#include "services/common/model_service_flags.h"
#include "services/draft/draft_service.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50052", "HOST:PORT to serve on");
ABSL_FLAG(std::string, draft_layers, "", "draft layers to run, e.g. 0,1,4,5 (empty: all)");
ABSL_FLAG(std::string, draft_plan, "", "draft LayerPlan JSON (overrides --draft_layers)");
ABSL_FLAG(int64_t, draft_vocab, 0, "draft LM head scores the N most frequent ids (0: all)");
ABSL_FLAG(int32_t, draft_top_k, specdec::kDefaultDraftSupport,
          "most tokens in each proposal's q, sent sparse (0: all)");

int main(int argc, char** argv) {
  specdec::BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "Draft service: specdec-draft --model_dir DIR [--draft_layers 0,1 | --draft_plan F] "
      "[--listen HOST:PORT]");
  absl::ParseCommandLine(argc, argv);
  specdec::DraftServerConfig config;
  specdec::ReadModelServiceFlags(&config);
  config.listen = absl::GetFlag(FLAGS_listen);
  config.draft_layers = absl::GetFlag(FLAGS_draft_layers);
  config.draft_plan = absl::GetFlag(FLAGS_draft_plan);
  config.draft_vocab = absl::GetFlag(FLAGS_draft_vocab);
  config.draft_top_k = absl::GetFlag(FLAGS_draft_top_k);
  absl::Status status = specdec::RunDraftServer(config);
  if (!status.ok()) {
    std::fprintf(stderr, "specdec-draft: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
