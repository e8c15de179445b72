// Child-process services for integration tests (see service_process.h).
#include "tests/integration/service_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace specdec::testing {

int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

absl::Status WaitServing(const std::string& address, absl::Duration timeout) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  const absl::Time deadline = absl::Now() + timeout;
  std::string last;
  while (absl::Now() < deadline) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = stub->Check(&context, grpc::health::v1::HealthCheckRequest(), &response);
    if (status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::OkStatus();
    }
    last = status.ok() ? "not serving" : status.error_message();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return absl::DeadlineExceededError(absl::StrCat(address, " never became SERVING: ", last));
}

absl::StatusOr<std::unique_ptr<ServiceProcess>> ServiceProcess::Launch(
    const std::string& binary, std::vector<std::string> argv_strings, const std::string& log_path) {
  std::unique_ptr<ServiceProcess> process(new ServiceProcess);
  process->log_path_ = log_path;
  argv_strings.insert(argv_strings.begin(), binary);
  std::vector<char*> argv;
  for (std::string& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    // Appended: a service restarted on the same log keeps its history.
    int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    // Signals blocked in the test runner must not stay blocked in the child.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  process->pid_ = pid;
  return process;
}

namespace {

int64_t FileSize(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  return in ? static_cast<int64_t>(in.tellg()) : 0;
}

// The port in common/rpc's "NAME serving on ADDRESS (port N)" line, written after `offset` of
// the log (earlier lines belong to earlier processes on the same log); 0 while there is none.
int ServingPort(const std::string& log_path, int64_t offset) {
  std::ifstream in(log_path, std::ios::binary);
  in.seekg(offset);
  std::string line;
  while (std::getline(in, line)) {
    const size_t at = line.find(" serving on ");
    const size_t port = line.find("(port ", at == std::string::npos ? line.size() : at);
    if (at != std::string::npos && port != std::string::npos) {
      return std::atoi(line.c_str() + port + 6);
    }
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServiceProcess>> ServiceProcess::Start(
    const std::string& binary, const std::vector<std::string>& args, const std::string& log_path,
    absl::Duration timeout, int port) {
  // Port 0: the service binds a port of the kernel's choosing and logs it; nothing can take it
  // between the choice and the bind (bind-close-reuse could race with other tests).
  std::vector<std::string> argv = {absl::StrCat("--listen=127.0.0.1:", port)};
  argv.insert(argv.end(), args.begin(), args.end());
  const int64_t log_offset = FileSize(log_path);
  absl::StatusOr<std::unique_ptr<ServiceProcess>> process = Launch(binary, argv, log_path);
  if (!process.ok()) return process;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (!(*process)->running()) {
      return absl::FailedPreconditionError(
          absl::StrCat(binary, " exited during startup:\n", (*process)->Log()));
    }
    if (port == 0) port = ServingPort(log_path, log_offset);
    if (port != 0) {
      (*process)->address_ = absl::StrCat("127.0.0.1:", port);
      if (WaitServing((*process)->address_, absl::Milliseconds(200)).ok()) return process;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (absl::Now() > deadline) {
      return absl::FailedPreconditionError(
          absl::StrCat(binary, " not SERVING in time:\n", (*process)->Log()));
    }
  }
}

absl::StatusOr<std::unique_ptr<ServiceProcess>> ServiceProcess::StartClient(
    const std::string& binary, const std::vector<std::string>& args, const std::string& log_path) {
  return Launch(binary, args, log_path);
}

bool ServiceProcess::running() {
  if (reaped_) return false;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

int ServiceProcess::Wait(absl::Duration wait) {
  const absl::Time deadline = absl::Now() + wait;
  while (running()) {
    if (absl::Now() > deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

int ServiceProcess::Signal(int signal, absl::Duration wait) {
  if (!running()) return status_;
  kill(pid_, signal);
  if (signal != SIGKILL && signal != SIGTERM) return 0;
  if (Wait(wait) != -1) return status_;
  kill(pid_, SIGKILL);
  waitpid(pid_, &status_, 0);
  reaped_ = true;
  return status_;
}

std::string ServiceProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream text;
  text << in.rdbuf();
  std::string log = text.str();
  return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
}

ServiceProcess::~ServiceProcess() { Signal(SIGTERM); }

}  // namespace specdec::testing
