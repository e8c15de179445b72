// Test helper: a folder of its own under the test temp dir holding a random tiny GPT-NeoX
// checkpoint with the real tokenizer, for tests that start the services on a model and need
// nothing of its weights but a valid file; removed with the object.
#ifndef SPECDEC_TESTS_INTEGRATION_TEST_CHECKPOINT_H_
#define SPECDEC_TESTS_INTEGRATION_TEST_CHECKPOINT_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace specdec::testing {

class TinyCheckpointDir {
 public:
  // `name` names the folder (with the process id, so concurrent test binaries do not meet).
  static absl::StatusOr<std::unique_ptr<TinyCheckpointDir>> Create(const std::string& name);
  ~TinyCheckpointDir();

  // The folder: for the services' logs too.
  const std::string& dir() const { return dir_; }
  // The checkpoint (the services' --model_dir).
  std::string model_dir() const { return dir_ + "/model"; }

 private:
  explicit TinyCheckpointDir(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace specdec::testing

#endif  // SPECDEC_TESTS_INTEGRATION_TEST_CHECKPOINT_H_
