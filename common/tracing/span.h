// A finished span as the exporters see it: OpenTelemetry's data model (trace and span ids,
// parent, name, start and end in Unix nanoseconds, typed attributes, status), without an
// OpenTelemetry SDK (Debian has none): the spans are built by the code that times the work.
#ifndef SPECDEC_COMMON_TRACING_SPAN_H_
#define SPECDEC_COMMON_TRACING_SPAN_H_

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace specdec {

using TraceId = std::array<uint8_t, 16>;
using SpanId = std::array<uint8_t, 8>;

using AttributeValue = std::variant<std::string, int64_t, double, bool>;

enum class SpanKind { kInternal, kServer, kClient };

struct SpanData {
  TraceId trace_id{};
  SpanId span_id{};
  SpanId parent_span_id{};  // all zero: a root span
  std::string name;
  SpanKind kind = SpanKind::kInternal;
  uint64_t start_unix_ns = 0;
  uint64_t end_unix_ns = 0;
  std::vector<std::pair<std::string, AttributeValue>> attributes;
  bool error = false;
  std::string status_message;  // with error

  bool is_root() const;
  void Set(std::string key, AttributeValue value) {
    attributes.emplace_back(std::move(key), std::move(value));
  }
  // Typed overloads so that string literals and ints pick the intended alternative.
  void Set(std::string key, const char* value) { Set(std::move(key), std::string(value)); }
  void Set(std::string key, int value) {
    Set(std::move(key), AttributeValue(static_cast<int64_t>(value)));  // not Set(int): recursion
  }
};

// Random, non-zero ids (W3C / OpenTelemetry: all-zero ids are invalid).
TraceId NewTraceId();
SpanId NewSpanId();
// Lower-case hex, as W3C traceparent and Jaeger show them.
std::string ToHex(const uint8_t* data, size_t size);
template <size_t N>
std::string ToHex(const std::array<uint8_t, N>& id) {
  return ToHex(id.data(), N);
}
uint64_t UnixNanosNow();

// Steady-clock time points as Unix nanoseconds: the wall clock is read once, at construction,
// so times taken with the steady clock keep their order and lengths (a wall clock that steps
// meanwhile moves none of them). One per request or stream: spans of it share one origin.
class SteadyToUnix {
 public:
  using Clock = std::chrono::steady_clock;
  SteadyToUnix() : origin_(Clock::now()), origin_unix_ns_(UnixNanosNow()) {}
  uint64_t operator()(Clock::time_point t) const {
    const int64_t offset =
        std::chrono::duration_cast<std::chrono::nanoseconds>(t - origin_).count();
    return static_cast<uint64_t>(static_cast<int64_t>(origin_unix_ns_) + offset);
  }
  Clock::time_point origin() const { return origin_; }
  uint64_t origin_unix_ns() const { return origin_unix_ns_; }

 private:
  Clock::time_point origin_;
  uint64_t origin_unix_ns_;
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_TRACING_SPAN_H_
