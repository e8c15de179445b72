// The project's one logger: timestamped lines on stderr, level filtered by SPECDEC_LOG_LEVEL.
// Debian's Abseil has no absl/log; this keeps services and tools consistent and greppable.
#ifndef SPECDEC_COMMON_BASE_LOG_H_
#define SPECDEC_COMMON_BASE_LOG_H_

#include <sstream>
#include <string>

namespace specdec {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// True when a message at `level` would be printed (SPECDEC_LOG_LEVEL=debug|info|warning|error).
bool LogEnabled(LogLevel level);
// Writes one line atomically: "2026-11-23T16:40:01.123Z I component] message".
void LogLine(LogLevel level, const char* file, int line, const std::string& message);

namespace internal {
class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line) : level_(level), file_(file), line_(line) {}
  ~LogMessage() { LogLine(level_, file_, line_, stream_.str()); }
  std::ostream& stream() { return stream_; }

 private:
  LogLevel level_;
  const char* file_;
  int line_;
  std::ostringstream stream_;
};
}  // namespace internal

}  // namespace specdec

#define SPECDEC_LOG(level)                                                         \
  if (!::specdec::LogEnabled(::specdec::LogLevel::k##level)) {                     \
  } else                                                                           \
    ::specdec::internal::LogMessage(::specdec::LogLevel::k##level, __FILE__, __LINE__) \
        .stream()

#endif  // SPECDEC_COMMON_BASE_LOG_H_
