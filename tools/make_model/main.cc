// specdec-make-model: writes a random GPT-NeoX checkpoint in the Hugging Face folder layout,
// tokenizer included, so the quick start and the tests never need a download.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/base/flags.h"
#include "common/model/checkpoint_writer.h"

ABSL_FLAG(std::string, preset, "pythia-70m", "pythia-70m, pythia-160m, pythia-14m or tiny");
ABSL_FLAG(uint64_t, seed, 0, "random seed for the weights");
ABSL_FLAG(std::string, dtype, "f32", "weight dtype: f32, f16 or bf16");
ABSL_FLAG(int, shards, 1, "number of safetensors shards (> 1 also writes the index)");
ABSL_FLAG(std::string, tokenizer, SPECDEC_DEFAULT_TOKENIZER,
          "tokenizer.json to copy into the checkpoint (empty: none)");
ABSL_FLAG(std::string, out, "", "output folder (created)");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Writes a random GPT-NeoX checkpoint: specdec-make-model --out DIR");
  specdec::NormalizeFlagSpelling(argc, argv);
  absl::ParseCommandLine(argc, argv);
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) {
    std::fprintf(stderr, "specdec-make-model: --out DIR is required\n");
    return 2;
  }
  auto config = specdec::PresetConfig(absl::GetFlag(FLAGS_preset));
  if (!config.ok()) {
    std::fprintf(stderr, "specdec-make-model: %s\n", config.status().ToString().c_str());
    return 2;
  }
  specdec::CheckpointOptions options;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.dtype = absl::GetFlag(FLAGS_dtype);
  options.num_shards = absl::GetFlag(FLAGS_shards);
  options.tokenizer_path = absl::GetFlag(FLAGS_tokenizer);
  if (auto status = specdec::WriteRandomCheckpoint(*config, options, out); !status.ok()) {
    std::fprintf(stderr, "specdec-make-model: %s\n", status.ToString().c_str());
    return 1;
  }
  std::printf("wrote %s checkpoint (%s, seed %llu) to %s\n", absl::GetFlag(FLAGS_preset).c_str(),
              options.dtype.c_str(), static_cast<unsigned long long>(options.seed), out.c_str());
  return 0;
}
