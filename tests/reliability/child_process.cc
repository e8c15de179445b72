// Child processes for the reliability tests (see child_process.h).
#include "tests/reliability/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "tests/integration/service_process.h"

namespace specdec::testing {

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Start(
    const std::string& binary, const std::vector<std::string>& args, const std::string& log_path,
    int port, absl::Duration timeout) {
  std::unique_ptr<ChildProcess> process(new ChildProcess);
  process->log_path_ = log_path;
  process->port_ = port;
  std::vector<std::string> argv_strings = {binary};
  if (port > 0) {
    process->address_ = absl::StrCat("127.0.0.1:", port);
    argv_strings.push_back("--listen=" + process->address_);
  }
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  process->pid_ = pid;
  if (port <= 0) return process;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (!process->running()) {
      return absl::FailedPreconditionError(
          absl::StrCat(binary, " exited during startup:\n", process->Log()));
    }
    if (WaitServing(process->address_, absl::Milliseconds(200)).ok()) return process;
    if (absl::Now() > deadline) {
      return absl::FailedPreconditionError(
          absl::StrCat(binary, " not SERVING in time:\n", process->Log()));
    }
  }
}

bool ChildProcess::running() {
  if (reaped_) return false;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

int ChildProcess::Wait(absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  while (running()) {
    if (absl::Now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

int ChildProcess::Signal(int signal, absl::Duration wait) {
  if (!running()) return status_;
  kill(pid_, signal);
  if (signal != SIGKILL && signal != SIGTERM) return 0;
  if (Wait(wait) != -1) return status_;
  kill(pid_, SIGKILL);
  waitpid(pid_, &status_, 0);
  reaped_ = true;
  return status_;
}

std::string ChildProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream text;
  text << in.rdbuf();
  std::string log = text.str();
  return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
}

ChildProcess::~ChildProcess() { Signal(SIGTERM); }

int64_t RssKib(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "VmRSS:")) continue;
    rest = absl::StripSuffix(absl::StripAsciiWhitespace(rest), "kB");
    int64_t kib = -1;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) return kib;
  }
  return -1;
}

}  // namespace specdec::testing
