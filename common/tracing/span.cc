// Span ids and clocks (see span.h).
#include "common/tracing/span.h"

#include <chrono>
#include <random>

#include "absl/synchronization/mutex.h"

namespace specdec {
namespace {

template <size_t N>
std::array<uint8_t, N> RandomId() {
  static absl::Mutex* mu = new absl::Mutex;
  static std::mt19937_64* rng = new std::mt19937_64(std::random_device{}());
  std::array<uint8_t, N> id{};
  absl::MutexLock lock(mu);
  do {
    for (size_t i = 0; i < N; i += 8) {
      uint64_t bits = (*rng)();
      for (size_t j = 0; j < 8 && i + j < N; ++j) id[i + j] = static_cast<uint8_t>(bits >> (8 * j));
    }
  } while (id == std::array<uint8_t, N>{});
  return id;
}

}  // namespace

bool SpanData::is_root() const { return parent_span_id == SpanId{}; }

TraceId NewTraceId() { return RandomId<16>(); }
SpanId NewSpanId() { return RandomId<8>(); }

std::string ToHex(const uint8_t* data, size_t size) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(2 * size, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = kDigits[data[i] >> 4];
    out[2 * i + 1] = kDigits[data[i] & 15];
  }
  return out;
}

uint64_t UnixNanosNow() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace specdec
