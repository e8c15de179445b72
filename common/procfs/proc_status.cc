#include "common/procfs/proc_status.h"

#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace specdec {

namespace {

// The number in the line that starts with `key` ("VmRSS:"), without a "kB" unit; -1 if none.
int64_t StatusField(int pid, absl::string_view key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, key)) continue;
    rest = absl::StripSuffix(absl::StripAsciiWhitespace(rest), "kB");
    int64_t value = -1;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &value)) return value;
  }
  return -1;
}

}  // namespace

int64_t RssKib(int pid) { return StatusField(pid, "VmRSS:"); }

int64_t ThreadCount(int pid) { return StatusField(pid, "Threads:"); }

}  // namespace specdec
