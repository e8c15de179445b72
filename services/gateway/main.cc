// specdec-gateway: flags -> GatewayConfig -> RunGatewayServer.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/rpc/server.h"
#include "services/gateway/gateway_service.h"

ABSL_FLAG(std::string, listen, "0.0.0.0:50050", "HOST:PORT to serve the public API on");
ABSL_FLAG(std::string, draft, "",
          "draft replicas: comma-separated addresses and/or dns:///name:port (every address of "
          "the name); empty: decode with the verifier alone");
ABSL_FLAG(std::string, verifier, "localhost:50051",
          "verifier replicas: comma-separated addresses and/or dns:///name:port");
ABSL_FLAG(std::string, model_dir, "", "checkpoint folder: config.json and tokenizer.json");
ABSL_FLAG(int, draft_deadline_ms, 500,
          "per round: a draft later than this is skipped (verifier alone for that round)");
ABSL_FLAG(int, draft_tokens_per_message, 64,
          "the most proposals the draft sends in one message (1: a message per proposal, as "
          "each is drawn; a draft that predates batches sends one per proposal whatever this "
          "says)");
ABSL_FLAG(bool, overlap_rounds, true,
          "draft round r+1 while round r is verified (requests can opt out with "
          "speculation.sequential); the output is the same either way");
ABSL_FLAG(int, speculation_max_sessions, 0,
          "while more Generate streams than this run, rounds decode without the draft "
          "(speculation trades throughput for latency; 0: always speculate)");
ABSL_FLAG(int, max_sessions, 64, "concurrent Generate streams (more: RESOURCE_EXHAUSTED)");
ABSL_FLAG(int, session_threads, 32,
          "threads that run the gRPC Generate streams' rounds (a stream holds none while it "
          "waits; docs/reliability.md, \"Threads\")");
ABSL_FLAG(int, max_new_tokens_cap, 4096, "largest max_new_tokens a request may ask for");
ABSL_FLAG(int, default_max_new_tokens, 64, "max_new_tokens of requests that leave it at 0");
ABSL_FLAG(int, max_adaptive_draft_tokens, 16, "K bound of adaptive requests that set none");
ABSL_FLAG(int, shutdown_grace_ms, 5000, "in-flight streams get this long after SIGTERM");
ABSL_FLAG(int64_t, default_deadline_ms, 300000,
          "deadline of requests that set none, milliseconds (0: none)");
ABSL_FLAG(int, verifier_timeout_ms, 30000,
          "one verifier call taking longer fails its replica (the session moves on)");
ABSL_FLAG(int, max_prompt_bytes, 1 << 20, "text prompts longer than this are refused");
ABSL_FLAG(std::string, metrics_listen, "", "HOST:PORT for Prometheus /metrics (empty: off)");
ABSL_FLAG(std::string, otlp_endpoint, "", "OTLP/gRPC collector HOST:PORT for spans (empty: off)");
ABSL_FLAG(std::string, trace_file, "", "write spans as Chrome trace-event JSON here (empty: off)");
ABSL_FLAG(std::string, http_listen, "", "HOST:PORT of the OpenAI-compatible HTTP API (empty: off)");
ABSL_FLAG(int, http_num_draft_tokens, 4, "K of HTTP completions that do not send num_draft_tokens");
ABSL_FLAG(std::string, default_coupling, "rejection",
          "coupling of sampled requests that leave it unspecified: rejection or shared_noise "
          "(shared_noise: the output equals plain decoding's for the seed; docs/pipeline.md)");

int main(int argc, char** argv) {
  specdec::BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "Gateway: specdec-gateway --model_dir DIR --verifier ADDR [--draft ADDR] "
      "[--listen HOST:PORT]");
  absl::ParseCommandLine(argc, argv);
  specdec::GatewayConfig config;
  config.listen = absl::GetFlag(FLAGS_listen);
  config.draft = absl::GetFlag(FLAGS_draft);
  config.verifier = absl::GetFlag(FLAGS_verifier);
  config.model_dir = absl::GetFlag(FLAGS_model_dir);
  config.draft_deadline_ms = absl::GetFlag(FLAGS_draft_deadline_ms);
  config.draft_tokens_per_message = absl::GetFlag(FLAGS_draft_tokens_per_message);
  config.overlap_rounds = absl::GetFlag(FLAGS_overlap_rounds);
  config.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  config.session_threads = absl::GetFlag(FLAGS_session_threads);
  config.speculation_max_sessions = absl::GetFlag(FLAGS_speculation_max_sessions);
  config.max_new_tokens_cap = absl::GetFlag(FLAGS_max_new_tokens_cap);
  config.default_max_new_tokens = absl::GetFlag(FLAGS_default_max_new_tokens);
  config.max_adaptive_draft_tokens = absl::GetFlag(FLAGS_max_adaptive_draft_tokens);
  config.shutdown_grace_ms = absl::GetFlag(FLAGS_shutdown_grace_ms);
  config.default_deadline_ms = absl::GetFlag(FLAGS_default_deadline_ms);
  config.verifier_timeout_ms = absl::GetFlag(FLAGS_verifier_timeout_ms);
  config.max_prompt_bytes = absl::GetFlag(FLAGS_max_prompt_bytes);
  config.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  config.otlp_endpoint = absl::GetFlag(FLAGS_otlp_endpoint);
  config.trace_file = absl::GetFlag(FLAGS_trace_file);
  config.http_listen = absl::GetFlag(FLAGS_http_listen);
  config.http_num_draft_tokens = absl::GetFlag(FLAGS_http_num_draft_tokens);
  absl::StatusOr<specdec::Coupling> coupling =
      specdec::ParseCoupling(absl::GetFlag(FLAGS_default_coupling));
  absl::Status status = coupling.status();
  if (status.ok()) {
    config.default_coupling = *coupling;
    status = specdec::RunGatewayServer(config);
  }
  if (!status.ok()) {
    std::fprintf(stderr, "specdec-gateway: %s\n", status.ToString().c_str());
    return 1;
  }
  return 0;
}
