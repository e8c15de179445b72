// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` value that carries
// a trace across processes, "00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>". The
// gateway reads it from gRPC metadata or the HTTP header and sends its own to the draft and the
// verifier, so one request is one trace across the three services.
#ifndef SPECDEC_COMMON_TRACING_TRACE_CONTEXT_H_
#define SPECDEC_COMMON_TRACING_TRACE_CONTEXT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/tracing/span.h"

namespace specdec {

// The metadata key / HTTP header (lower case, as gRPC requires).
inline constexpr char kTraceparentKey[] = "traceparent";

struct TraceContext {
  TraceId trace_id{};
  SpanId span_id{};  // the caller's span: the parent of the receiver's
  bool sampled = true;
};

// nullopt for anything the specification says to ignore: wrong length or layout, upper-case or
// non-hex digits, version ff, all-zero ids; a version-00 value with trailing data. Later
// versions are read by their version-00 prefix, as the specification asks.
std::optional<TraceContext> ParseTraceparent(std::string_view value);
std::string FormatTraceparent(const TraceContext& context);

}  // namespace specdec

#endif  // SPECDEC_COMMON_TRACING_TRACE_CONTEXT_H_
