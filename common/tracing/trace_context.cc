// W3C traceparent parsing and formatting (see trace_context.h).
#include "common/tracing/trace_context.h"

#include <algorithm>

namespace specdec {
namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is invalid in traceparent
}

template <size_t N>
bool ParseHex(std::string_view text, std::array<uint8_t, N>* out) {
  if (text.size() != 2 * N) return false;
  for (size_t i = 0; i < N; ++i) {
    const int hi = HexDigit(text[2 * i]), lo = HexDigit(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    (*out)[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return true;
}

template <size_t N>
bool AllZero(const std::array<uint8_t, N>& id) {
  return std::all_of(id.begin(), id.end(), [](uint8_t b) { return b == 0; });
}

}  // namespace

std::optional<TraceContext> ParseTraceparent(std::string_view value) {
  // version "-" trace-id "-" parent-id "-" flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 = 55 characters.
  constexpr size_t kLength = 55;
  if (value.size() < kLength || value[2] != '-' || value[35] != '-' || value[52] != '-') {
    return std::nullopt;
  }
  std::array<uint8_t, 1> version{}, flags{};
  TraceContext context;
  if (!ParseHex(value.substr(0, 2), &version) || version[0] == 0xff ||
      !ParseHex(value.substr(3, 32), &context.trace_id) ||
      !ParseHex(value.substr(36, 16), &context.span_id) || !ParseHex(value.substr(53, 2), &flags)) {
    return std::nullopt;
  }
  // Version 00 is exactly 55 characters; a later version may append "-..." fields.
  if (value.size() > kLength && (version[0] == 0 || value[kLength] != '-')) return std::nullopt;
  if (AllZero(context.trace_id) || AllZero(context.span_id)) return std::nullopt;
  context.sampled = (flags[0] & 0x01) != 0;
  return context;
}

std::string FormatTraceparent(const TraceContext& context) {
  return "00-" + ToHex(context.trace_id) + "-" + ToHex(context.span_id) +
         (context.sampled ? "-01" : "-00");
}

}  // namespace specdec
