#include "tests/integration/test_checkpoint.h"

#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/model/checkpoint_writer.h"
#include "gtest/gtest.h"

namespace specdec::testing {

absl::StatusOr<std::unique_ptr<TinyCheckpointDir>> TinyCheckpointDir::Create(
    const std::string& name) {
  std::unique_ptr<TinyCheckpointDir> out(new TinyCheckpointDir(
      absl::StrCat(::testing::TempDir(), "/specdec_", name, "_", getpid())));
  std::filesystem::create_directories(out->dir_);
  ASSIGN_OR_RETURN(ModelConfig config, PresetConfig("tiny"));
  CheckpointOptions options;
  options.tokenizer_path = SPECDEC_TOKENIZER_JSON;
  RETURN_IF_ERROR(WriteRandomCheckpoint(config, options, out->model_dir()));
  return out;
}

TinyCheckpointDir::~TinyCheckpointDir() {
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace specdec::testing
