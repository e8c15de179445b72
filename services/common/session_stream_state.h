// What the draft's and the verifier's session streams share around their steps: the stream's
// first request registers its session (admission: --max_sessions) and creates its KV cache,
// later requests must name the same session, and the end of the stream (End, exactly once)
// reports the stream's span, frees the cache and closes the session in the registry, released
// or abandoned. Used by one stream's handler, one step at a time (not thread-safe).
#ifndef SPECDEC_SERVICES_COMMON_SESSION_STREAM_STATE_H_
#define SPECDEC_SERVICES_COMMON_SESSION_STREAM_STATE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "common/batching/forward_batcher.h"
#include "common/model/model.h"
#include "common/tracing/tracer.h"
#include "services/common/model_session.h"
#include "services/common/session_registry.h"
#include "services/common/session_spans.h"

namespace specdec {

class SessionStreamState {
 public:
  // `role` names the service in logs ("draft"); `rpc_method` the stream's span
  // ("specdec.v1.Draft/Session"). `registry`, `batcher` (nullable) and `tracer` (nullable)
  // outlive the stream.
  SessionStreamState(std::string role, SessionRegistry* registry, ForwardBatcher* batcher,
                     Tracer* tracer, const grpc::ServerContextBase& context,
                     std::string rpc_method);

  // Before each request: the first opens `session_id` with a cache on `view()`; INVALID_ARGUMENT
  // for an empty id or one that is not the stream's, the registry's error (RESOURCE_EXHAUSTED,
  // ALREADY_EXISTS) when it cannot be opened.
  absl::Status Open(const std::string& session_id,
                    absl::FunctionRef<std::shared_ptr<const ModelView>()> view);
  // The stream ended with `status` (SessionHandler::End).
  void End(const absl::Status& status);

  ModelSession* session() { return session_.get(); }
  SessionSpans& spans() { return *spans_; }
  const std::string& id() const { return id_; }
  // The session was released (closed as released, not abandoned).
  void set_released() { released_ = true; }
  bool released() const { return released_; }

 private:
  const std::string role_;
  SessionRegistry* const registry_;
  ForwardBatcher* const batcher_;
  std::unique_ptr<SessionSpans> spans_;  // null after End
  std::string id_;                       // empty until the first request opened the session
  std::unique_ptr<ModelSession> session_;
  bool released_ = false;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_COMMON_SESSION_STREAM_STATE_H_
