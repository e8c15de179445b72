// specdec-gateway: the public Generate API. Owns each request's token sequence, runs
// speculation rounds against the draft and verifier services (propose, verify, accept,
// commit), streams tokens and text, and decodes with the verifier alone when the draft is
// absent, failing or late (docs/pipeline.md).
#ifndef SPECDEC_SERVICES_GATEWAY_GATEWAY_SERVICE_H_
#define SPECDEC_SERVICES_GATEWAY_GATEWAY_SERVICE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/model/config.h"
#include "common/sampling/sampling.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tracing/trace_context.h"
#include "services/gateway/replica_set.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/gateway.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"

namespace specdec {

struct GatewayConfig {
  std::string listen = "0.0.0.0:50050";
  // Backend replicas: comma-separated addresses and/or dns:///name:port (every A/AAAA record).
  std::string draft;     // draft service(s); empty: no draft (verifier alone)
  std::string verifier = "localhost:50051";
  std::string model_dir;  // config.json (+ tokenizer.json for text)
  int draft_deadline_ms = 500;      // per round; a later draft is skipped for the round
  // The most proposals the draft sends in one message (DraftPropose.tokens_per_message; 1: one
  // message per proposal, as each is drawn).
  int draft_tokens_per_message = 64;
  bool overlap_rounds = true;       // draft round r+1 while round r is verified
  int speculation_max_sessions = 0;  // more running streams: rounds without the draft; 0: never
  int max_sessions = 64;            // concurrent Generate streams
  int max_new_tokens_cap = 4096;
  int default_max_new_tokens = 64;  // when a request leaves max_new_tokens at 0
  int max_adaptive_draft_tokens = 16;  // K bound for adaptive requests that give none
  int shutdown_grace_ms = 5000;
  // Threads that run the gRPC Generate streams' rounds, a step of one stream at a time: the
  // streams themselves hold no thread (docs/reliability.md, "Threads").
  int session_threads = 32;
  // Limits (docs/reliability.md), all reported by GetInfo.
  int64_t default_deadline_ms = 300000;  // requests without a deadline get this one; 0: none
  int verifier_timeout_ms = 30000;  // one verifier call longer than this fails its replica
  int max_prompt_bytes = 1 << 20;   // text prompts longer than this are refused unread
  // Observability (docs/observability.md); empty: off.
  std::string metrics_listen;  // Prometheus text at http://HOST:PORT/metrics
  std::string otlp_endpoint;   // OTLP/gRPC collector for spans
  std::string trace_file;      // Chrome trace-event JSON
  std::string http_listen;     // OpenAI-compatible HTTP API
  int http_num_draft_tokens = 4;  // K of HTTP requests that do not say
  // Coupling of sampled requests that leave it unspecified (docs/pipeline.md).
  Coupling default_coupling = Coupling::kRejection;
};

struct GatewayObservability;

// A request after validation: what the round loop needs.
struct GenerationRequest {
  std::string request_id;
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 0;
  SamplingParams sampling;
  int num_draft_tokens = 0;
  bool adaptive = false;
  bool overlap = true;  // draft the next round while this one is verified
  std::vector<std::string> stop;
  bool include_rounds = false;
  // Log-probabilities (LogprobParameters): -1 none, else the alternatives per position.
  int logprobs_top_n = -1;
  bool prompt_logprobs = false;  // score the prompt too
  bool prompt_only = false;      // prefill only, generate nothing
};

// One Generate call as the transport (gRPC, or the HTTP API) sees it: what Serve needs from the
// caller besides the request itself.
struct CallContext {
  // The caller's W3C trace context (a valid traceparent), if it sent one.
  std::optional<TraceContext> trace_parent;
  // The client's deadline (InfiniteFuture: it set none, and the gateway's default applies).
  absl::Time client_deadline = absl::InfiniteFuture();
  // Whether the client has gone away or the call was cancelled (null: never).
  std::function<bool()> cancelled;
  // Ends the call from the outside: run when the session outlives its deadline, since a client
  // that stops reading blocks Emit where the rounds cannot see the deadline (null: none).
  std::function<void()> cancel;
  // gRPC only (null otherwise): the call whose deadline and cancellation propagate to the draft
  // and verifier streams at once. Without it the streams are still bounded by the session's
  // deadline and the per-call timeouts, and the session ends at its next check of `cancelled`.
  const grpc::CallbackServerContext* grpc_call = nullptr;
  // The door it came in through, for specdec_gateway_generate_calls_total: "grpc" or "http".
  const char* transport = "grpc";
};

// Sends one message to the client; false when the client is gone (GenerationSession::Emit).
using GenerateEmit = std::function<bool(const v1::GenerateResponse&)>;

class SessionRunner;

// Generate on gRPC's callback API (generate_reactor.h; raw bytes, so that a request that does
// not parse gets INVALID_ARGUMENT and a message, where gRPC's own parsing would answer
// UNIMPLEMENTED), GetInfo synchronous.
class GatewayServiceImpl final
    : public v1::Gateway::WithRawCallbackMethod_Generate<v1::Gateway::Service> {
 public:
  // `tokenizer` may be null: then only prompt_ids are accepted and no text is produced.
  // `verifiers` and `drafts` (null: no draft) are the backend replica sets.
  GatewayServiceImpl(GatewayConfig config, ModelConfig model_config,
                     std::unique_ptr<Tokenizer> tokenizer, std::unique_ptr<ReplicaSet> verifiers,
                     std::unique_ptr<ReplicaSet> drafts);

  ~GatewayServiceImpl() override;

  // The gRPC door: a reactor whose session runs in steps on the service's SessionRunner.
  grpc::ServerWriteReactor<grpc::ByteBuffer>* Generate(grpc::CallbackServerContext* context,
                                                      const grpc::ByteBuffer* request) override;

  // One Generate call whatever its transport (gRPC, the HTTP API): validation, the session
  // limit (--max_sessions), metrics and the request's span, then the session, whose messages go
  // through the `emit` of each Step. Begun by BeginCall; stepped until Step returns false; End
  // returns the call's status (its code is the gRPC code) once, after the last step.
  class Call;
  std::unique_ptr<Call> BeginCall(const v1::GenerateRequest& request, CallContext call);
  // A call run to its end on the caller's thread (the HTTP API).
  absl::Status Serve(const v1::GenerateRequest& request, const CallContext& call,
                     const GenerateEmit& emit);
  grpc::Status GetInfo(grpc::ServerContext* context, const v1::GetInfoRequest* request,
                       v1::GetInfoResponse* response) override;

  // INVALID_ARGUMENT / FAILED_PRECONDITION for a request that cannot run.
  absl::StatusOr<GenerationRequest> Validate(const v1::GenerateRequest& request) const;

 private:
  GatewayConfig config_;
  ModelConfig model_config_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<ReplicaSet> verifiers_;
  std::unique_ptr<ReplicaSet> drafts_;  // null without a draft
  std::atomic<int> active_sessions_{0};
  std::atomic<uint64_t> next_session_{0};
  const GatewayObservability* observability_ = nullptr;  // null: no metrics, no spans
  std::unique_ptr<SessionRunner> runner_;  // the gRPC streams' sessions

 public:
  // Metrics and spans of every request go to `observability` (outlives the service).
  void set_observability(const GatewayObservability* observability) {
    observability_ = observability;
  }
};

class GatewayServiceImpl::Call {
 public:
  ~Call();
  // Runs the next step (the prefill, one round, the finish); false once the call has ended (at
  // once for a request that was refused).
  bool Step(const GenerateEmit& emit);
  // The call's status, logged and recorded; once, after Step returned false.
  absl::Status End();
  // The session's own deadline (InfiniteFuture: none beyond the client's): a call waiting for a
  // slow client must end by then.
  absl::Time deadline() const;

 private:
  friend class GatewayServiceImpl;
  struct State;
  explicit Call(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// The model's name as the API reports it: the checkpoint folder's name.
std::string ModelName(const std::string& model_dir);

// Loads config.json and tokenizer.json, serves until SIGTERM/SIGINT.
absl::Status RunGatewayServer(const GatewayConfig& config);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_GATEWAY_SERVICE_H_
