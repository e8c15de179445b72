// Test helper: the three services of one test suite as child processes on loopback (gateway,
// draft, verifier over tests/integration/service_process), on a tiny random checkpoint made by
// specdec-make-model in a directory of the suite's own. Each suite adds its own flags; the
// common ones (model, device, one thread, the gateway's backends) are set here. Failures are
// reported as test failures and leave the process null, so SetUpTestSuite can ASSERT on it.
#ifndef SPECDEC_TESTS_OBSERVE_SERVICE_STACK_H_
#define SPECDEC_TESTS_OBSERVE_SERVICE_STACK_H_

#include <memory>
#include <string>
#include <vector>

#include "tests/integration/service_process.h"

namespace specdec::testing {

// The build tree the tests run from (SPECDEC_BINARY_DIR).
std::string BinaryDir();
// Runs `command` through the shell; its exit code (-1 when it did not exit).
int RunCommand(const std::string& command);

class ServiceStack {
 public:
  // Creates TempDir()/specdec_<name>_<pid> (logs, the model, files the suite wants there).
  explicit ServiceStack(const std::string& name);
  // Stops the gateway, the draft and the verifier (in that order) and removes the directory.
  ~ServiceStack();

  // Makes the tiny checkpoint in dir()/tinymodel (`seed` < 0: the tool's default); false (and
  // a test failure) when the tool fails.
  bool MakeModel(int seed = -1);
  // Starts the verifier and the draft with `--model_dir --device=cpu --threads=1` plus their
  // `*_args`, then the gateway with `--model_dir --verifier --draft` plus `gateway_args`.
  // Stops at the first that does not come up; false then.
  bool StartServices(const std::vector<std::string>& verifier_args,
                     const std::vector<std::string>& draft_args,
                     const std::vector<std::string>& gateway_args);
  // `binary` (relative to the build tree, e.g. "/services/draft/specdec-draft") with its log
  // in dir()/<log_name>.log; null (and a test failure) when it does not come up.
  std::unique_ptr<ServiceProcess> Start(const std::string& binary,
                                        const std::vector<std::string>& args,
                                        const std::string& log_name) const;

  const std::string& dir() const { return dir_; }
  const std::string& model_dir() const { return model_dir_; }
  ServiceProcess* verifier() const { return verifier_.get(); }
  ServiceProcess* draft() const { return draft_.get(); }
  ServiceProcess* gateway() const { return gateway_.get(); }

 private:
  std::string dir_;
  std::string model_dir_;
  std::unique_ptr<ServiceProcess> verifier_;
  std::unique_ptr<ServiceProcess> draft_;
  std::unique_ptr<ServiceProcess> gateway_;
};

}  // namespace specdec::testing

#endif  // SPECDEC_TESTS_OBSERVE_SERVICE_STACK_H_
