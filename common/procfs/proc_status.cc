#include "common/procfs/proc_status.h"

#include <fstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace specdec {
namespace {

// The number in the `field` line ("VmRSS:", "Threads:") of /proc/PID/status, without its
// unit; -1 when it cannot be read.
int64_t StatusNumber(int pid, absl::string_view field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, field)) continue;
    rest = absl::StripSuffix(absl::StripAsciiWhitespace(rest), "kB");
    int64_t value = -1;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &value)) return value;
  }
  return -1;
}

}  // namespace

int64_t RssKib(int pid) { return StatusNumber(pid, "VmRSS:"); }

int64_t ThreadCount(int pid) { return StatusNumber(pid, "Threads:"); }

}  // namespace specdec
