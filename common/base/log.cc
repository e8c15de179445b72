// Implementation of the project's logger (see log.h).
#include "common/base/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sys/time.h>

namespace specdec {
namespace {

LogLevel ThresholdFromEnv() {
  const char* env = std::getenv("SPECDEC_LOG_LEVEL");
  if (env == nullptr) return LogLevel::kInfo;
  if (std::strcmp(env, "debug") == 0) return LogLevel::kDebug;
  if (std::strcmp(env, "warning") == 0) return LogLevel::kWarning;
  if (std::strcmp(env, "error") == 0) return LogLevel::kError;
  return LogLevel::kInfo;
}

}  // namespace

bool LogEnabled(LogLevel level) {
  static const LogLevel threshold = ThresholdFromEnv();
  return level >= threshold;
}

void LogLine(LogLevel level, const char* file, int line, const std::string& message) {
  static const char kLetters[] = {'D', 'I', 'W', 'E'};
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm utc;
  gmtime_r(&tv.tv_sec, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &utc);
  const char* base = std::strrchr(file, '/');
  base = base ? base + 1 : file;
  // One fprintf per line so concurrent threads do not interleave within a line.
  std::fprintf(stderr, "%s.%03dZ %c %s:%d] %s\n", stamp, static_cast<int>(tv.tv_usec / 1000),
               kLetters[static_cast<int>(level)], base, line, message.c_str());
}

}  // namespace specdec
