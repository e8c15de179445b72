// Which backend errors say that a replica (or the way to it) is broken, and which belong to the
// request. Only the first kind counts against a replica's health and moves a session elsewhere;
// the second goes back to the client with its code, so that back-pressure stays back-pressure.
#ifndef SPECDEC_SERVICES_GATEWAY_REPLICA_FAILURE_H_
#define SPECDEC_SERVICES_GATEWAY_REPLICA_FAILURE_H_

#include "absl/status/status.h"

namespace specdec {

// True for transport failures only: UNAVAILABLE (down, unreachable, a broken stream: the stream
// wrappers report those as UNAVAILABLE), DEADLINE_EXCEEDED (no answer in time) and CANCELLED (a
// draining replica cancels its calls; the caller checks its own client first, so a client's
// cancellation never reaches here).
// False for everything else, notably:
//  - RESOURCE_EXHAUSTED: a full KV pool is back-pressure; marking the replica unhealthy would
//    turn a busy replica into an "outage" and push its load onto the next one in turn.
//  - INTERNAL, UNKNOWN, INVALID_ARGUMENT, FAILED_PRECONDITION...: one request's problem (a
//    poison request, a bug) would otherwise mark every replica unhealthy as it moved along.
//  - ABORTED: gRPC's meaning is "this operation was aborted (a conflict); retry at a higher
//    level", and no transport produces it: it is the request's outcome, not the replica's
//    health. None of our services sends it today; if one ever does, the client sees it.
bool IsReplicaFailure(const absl::Status& status);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_REPLICA_FAILURE_H_
