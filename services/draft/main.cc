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
ABSL_FLAG(std::string, plan_search, "off",
          "on: re-plan the draft while serving, from the sessions' committed text "
          "(docs/shrunken_self.md)");
ABSL_FLAG(double, plan_search_duty, 0.05, "most of the time the plan search may be busy");
ABSL_FLAG(int32_t, plan_search_layer_sets, 3, "layer sets the search tries (CandidateLayerSets order)");
ABSL_FLAG(std::string, plan_search_vocab_cuts, "0,8192,4096,2048",
          "vocabulary cuts the search crosses them with (0: the full vocabulary)");
ABSL_FLAG(double, plan_search_margin, 0.05,
          "a plan replaces the current one when its expected speedup is this much higher");
ABSL_FLAG(double, plan_search_dwell_s, 5, "least seconds between plan switches");
ABSL_FLAG(int32_t, plan_search_sessions, 4, "recent sessions whose committed text the search uses");
ABSL_FLAG(int64_t, plan_search_tokens, 128, "last committed tokens of each of those sessions");
ABSL_FLAG(int32_t, debug_plan_switch_every, 0,
          "test only: every N proposals flip between the plan and the debug plan");
ABSL_FLAG(std::string, debug_switch_layers, "", "test only: the debug plan's layers (empty: all)");
ABSL_FLAG(int64_t, debug_switch_vocab, 0, "test only: the debug plan's vocabulary cut (0: all)");

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
  config.plan_search = absl::GetFlag(FLAGS_plan_search);
  config.plan_search_duty = absl::GetFlag(FLAGS_plan_search_duty);
  config.plan_search_layer_sets = absl::GetFlag(FLAGS_plan_search_layer_sets);
  config.plan_search_vocab_cuts = absl::GetFlag(FLAGS_plan_search_vocab_cuts);
  config.plan_search_margin = absl::GetFlag(FLAGS_plan_search_margin);
  config.plan_search_dwell_s = absl::GetFlag(FLAGS_plan_search_dwell_s);
  config.plan_search_sessions = absl::GetFlag(FLAGS_plan_search_sessions);
  config.plan_search_tokens = absl::GetFlag(FLAGS_plan_search_tokens);
  config.debug_plan_switch_every = absl::GetFlag(FLAGS_debug_plan_switch_every);
  config.debug_switch_layers = absl::GetFlag(FLAGS_debug_switch_layers);
  config.debug_switch_vocab = absl::GetFlag(FLAGS_debug_switch_vocab);
  absl::Status status = specdec::RunDraftServer(config);
  if (!status.ok()) {
    std::fprintf(stderr, "specdec-draft: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
