// A session stream's registration and end (see session_stream_state.h).
#include "services/common/session_stream_state.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"

namespace specdec {

SessionStreamState::SessionStreamState(std::string role, SessionRegistry* registry,
                                       ForwardBatcher* batcher, Tracer* tracer,
                                       const grpc::ServerContextBase& context,
                                       std::string rpc_method)
    : role_(std::move(role)),
      registry_(registry),
      batcher_(batcher),
      spans_(std::make_unique<SessionSpans>(tracer, context, std::move(rpc_method))) {}

absl::Status SessionStreamState::Open(const std::string& session_id,
                                      absl::FunctionRef<std::shared_ptr<const ModelView>()> view) {
  if (!id_.empty()) {
    if (session_id == id_) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("stream of session ", id_, " got a message for ", session_id));
  }
  if (session_id.empty()) return absl::InvalidArgumentError("session_id is empty");
  ASSIGN_OR_RETURN(std::shared_ptr<SessionSlot> slot, registry_->Open(session_id));
  id_ = session_id;
  session_ = std::make_unique<ModelSession>(view(), std::move(slot), registry_, batcher_);
  spans_->SetSessionId(id_);
  SPECDEC_LOG(Debug) << role_ << " session " << id_ << " opened";
  return absl::OkStatus();
}

void SessionStreamState::End(const absl::Status& status) {
  spans_->Finish(status);
  spans_.reset();  // submits the stream's span
  session_.reset();
  if (id_.empty()) return;
  registry_->Close(id_, released_ ? SessionRegistry::CloseReason::kReleased
                                  : SessionRegistry::CloseReason::kAbandoned);
  SPECDEC_LOG(Debug) << role_ << " session " << id_ << (released_ ? " released" : " abandoned")
                     << (status.ok() ? "" : absl::StrCat(": ", status.ToString()));
}

}  // namespace specdec
