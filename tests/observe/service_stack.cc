// The services of one test suite (see service_stack.h).
#include "tests/observe/service_stack.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace specdec::testing {

std::string BinaryDir() { return SPECDEC_BINARY_DIR; }

int RunCommand(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

ServiceStack::ServiceStack(const std::string& name)
    : dir_(::testing::TempDir() + "/specdec_" + name + "_" + std::to_string(getpid())),
      model_dir_(dir_ + "/tinymodel") {
  std::filesystem::create_directories(dir_);
}

ServiceStack::~ServiceStack() {
  gateway_.reset();
  draft_.reset();
  verifier_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

bool ServiceStack::MakeModel(int seed) {
  const std::string command =
      absl::StrCat(BinaryDir(), "/tools/make_model/specdec-make-model --preset tiny ",
                   seed >= 0 ? absl::StrCat("--seed ", seed, " ") : "", "--out ", model_dir_, " > ",
                   dir_, "/make_model.log 2>&1");
  const int code = RunCommand(command);
  EXPECT_EQ(code, 0) << command;
  return code == 0;
}

std::unique_ptr<ServiceProcess> ServiceStack::Start(const std::string& binary,
                                                    const std::vector<std::string>& args,
                                                    const std::string& log_name) const {
  auto process = ServiceProcess::Start(BinaryDir() + binary, args, dir_ + "/" + log_name + ".log");
  EXPECT_TRUE(process.ok()) << log_name << ": " << process.status();
  return process.ok() ? *std::move(process) : nullptr;
}

bool ServiceStack::StartServices(const std::vector<std::string>& verifier_args,
                                 const std::vector<std::string>& draft_args,
                                 const std::vector<std::string>& gateway_args) {
  auto with = [](std::vector<std::string> common, const std::vector<std::string>& more) {
    common.insert(common.end(), more.begin(), more.end());
    return common;
  };
  const std::vector<std::string> model = {"--model_dir=" + model_dir_, "--device=cpu",
                                          "--threads=1"};
  verifier_ = Start("/services/verifier/specdec-verifier", with(model, verifier_args), "verifier");
  draft_ = Start("/services/draft/specdec-draft", with(model, draft_args), "draft");
  if (verifier_ == nullptr || draft_ == nullptr) return false;
  gateway_ = Start("/services/gateway/specdec-gateway",
                   with({"--model_dir=" + model_dir_, "--verifier=" + verifier_->address(),
                         "--draft=" + draft_->address()},
                        gateway_args),
                   "gateway");
  return gateway_ != nullptr;
}

}  // namespace specdec::testing
