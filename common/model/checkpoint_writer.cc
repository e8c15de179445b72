// Random checkpoint writer (see checkpoint_writer.h). Pure C++: no libtorch needed to write.
#include "common/model/checkpoint_writer.h"


#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/status_macros.h"
#include "common/safetensors/safetensors.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

uint16_t FloatToHalf(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000;
  int32_t exp = static_cast<int32_t>((x >> 23) & 0xff) - 127 + 15;
  uint32_t mant = x & 0x7fffff;
  if (exp <= 0) {
    if (exp < -10) return static_cast<uint16_t>(sign);
    mant |= 0x800000;
    const int shift = 14 - exp;
    uint32_t half = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (half & 1))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  if (exp >= 31) return static_cast<uint16_t>(sign | 0x7c00);
  uint32_t half = (static_cast<uint32_t>(exp) << 10) | (mant >> 13);
  const uint32_t rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) ++half;  // may carry into the exponent
  return static_cast<uint16_t>(sign | half);
}

uint16_t FloatToBFloat16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t rounding = 0x7fff + ((x >> 16) & 1);
  return static_cast<uint16_t>((x + rounding) >> 16);
}

class TensorMaker {
 public:
  TensorMaker(uint64_t seed, DType dtype) : rng_(seed), dtype_(dtype) {}

  // normal(mean, std) values of `shape` in the checkpoint dtype.
  TensorToWrite Make(std::string name, std::vector<int64_t> shape, float mean, float std) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::normal_distribution<float> normal(0.0f, 1.0f);
    TensorToWrite t{std::move(name), dtype_, std::move(shape), {}};
    t.bytes.resize(n * DTypeSize(dtype_));
    char* out = t.bytes.data();
    for (int64_t i = 0; i < n; ++i) {
      const float v = mean + std * normal(rng_);
      if (dtype_ == DType::kF32) {
        std::memcpy(out + 4 * i, &v, 4);
      } else {
        const uint16_t h = dtype_ == DType::kF16 ? FloatToHalf(v) : FloatToBFloat16(v);
        std::memcpy(out + 2 * i, &h, 2);
      }
    }
    return t;
  }

 private:
  std::mt19937_64 rng_;
  DType dtype_;
};

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> PresetConfig(absl::string_view preset) {
  ModelConfig c;
  c.vocab_size = 50304;
  c.max_position_embeddings = 2048;
  c.rotary_pct = 0.25;
  c.rotary_emb_base = 10000;
  c.use_parallel_residual = true;
  c.bos_token_id = 0;
  c.eos_token_id = 0;
  if (preset == "pythia-70m") {
    c.hidden_size = 512, c.num_hidden_layers = 6, c.num_attention_heads = 8, c.intermediate_size = 2048;
  } else if (preset == "pythia-160m") {
    c.hidden_size = 768, c.num_hidden_layers = 12, c.num_attention_heads = 12, c.intermediate_size = 3072;
  } else if (preset == "pythia-14m") {
    c.hidden_size = 128, c.num_hidden_layers = 6, c.num_attention_heads = 4, c.intermediate_size = 512;
  } else if (preset == "tiny") {
    c.hidden_size = 64, c.num_hidden_layers = 2, c.num_attention_heads = 4, c.intermediate_size = 256;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown preset \"", preset, "\" (pythia-70m, pythia-160m, pythia-14m, tiny)"));
  }
  return c;
}

absl::Status WriteRandomCheckpoint(const ModelConfig& config, const CheckpointOptions& options,
                                   const std::string& out_dir) {
  DType dtype;
  if (options.dtype == "f32") {
    dtype = DType::kF32;
  } else if (options.dtype == "f16") {
    dtype = DType::kF16;
  } else if (options.dtype == "bf16") {
    dtype = DType::kBF16;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("dtype \"", options.dtype, "\" must be f32, f16 or bf16"));
  }
  if (options.num_shards < 1 || options.num_shards > 99) {
    return absl::InvalidArgumentError("num_shards must be in [1, 99]");
  }
  std::error_code error;
  std::filesystem::create_directories(out_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat(out_dir, ": cannot create the folder: ", error.message()));
  }
  ModelConfig c = config;
  c.torch_dtype = dtype == DType::kF32 ? "float32" : dtype == DType::kF16 ? "float16" : "bfloat16";
  RETURN_IF_ERROR(WriteText(out_dir + "/config.json", c.ToJson()));
  RETURN_IF_ERROR(WriteText(out_dir + "/generation_config.json",
                            absl::StrFormat("{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n"
                                            "  \"transformers_version\": \"4.40.2\"\n}\n",
                                            c.bos_token_id, c.eos_token_id)));

  TensorMaker maker(options.seed, dtype);
  const int64_t h = c.hidden_size, v = c.vocab_size, i = c.intermediate_size;
  std::vector<TensorToWrite> tensors;
  tensors.push_back(maker.Make("gpt_neox.embed_in.weight", {v, h}, 0, 0.02f));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = absl::StrCat("gpt_neox.layers.", l, ".");
    tensors.push_back(maker.Make(p + "input_layernorm.weight", {h}, 1, 0.1f));
    tensors.push_back(maker.Make(p + "input_layernorm.bias", {h}, 0, 0.02f));
    tensors.push_back(maker.Make(p + "post_attention_layernorm.weight", {h}, 1, 0.1f));
    tensors.push_back(maker.Make(p + "post_attention_layernorm.bias", {h}, 0, 0.02f));
    tensors.push_back(maker.Make(p + "attention.query_key_value.weight", {3 * h, h}, 0, 0.02f));
    tensors.push_back(maker.Make(p + "attention.query_key_value.bias", {3 * h}, 0, 0.02f));
    tensors.push_back(maker.Make(p + "attention.dense.weight", {h, h}, 0, 0.02f));
    tensors.push_back(maker.Make(p + "attention.dense.bias", {h}, 0, 0.02f));
    tensors.push_back(maker.Make(p + "mlp.dense_h_to_4h.weight", {i, h}, 0, 0.02f));
    tensors.push_back(maker.Make(p + "mlp.dense_h_to_4h.bias", {i}, 0, 0.02f));
    tensors.push_back(maker.Make(p + "mlp.dense_4h_to_h.weight", {h, i}, 0, 0.02f));
    tensors.push_back(maker.Make(p + "mlp.dense_4h_to_h.bias", {h}, 0, 0.02f));
  }
  tensors.push_back(maker.Make("gpt_neox.final_layer_norm.weight", {h}, 1, 0.1f));
  tensors.push_back(maker.Make("gpt_neox.final_layer_norm.bias", {h}, 0, 0.02f));
  tensors.push_back(maker.Make("embed_out.weight", {v, h}, 0, 0.02f));

  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (options.num_shards == 1) {
    RETURN_IF_ERROR(WriteSafetensors(out_dir + "/model.safetensors", tensors, metadata));
  } else {
    // Contiguous runs of tensors per shard, as save_pretrained does.
    nlohmann::ordered_json index;
    uint64_t total = 0;
    for (const auto& t : tensors) total += t.bytes.size();
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = nlohmann::ordered_json::object();
    const size_t per_shard = (tensors.size() + options.num_shards - 1) / options.num_shards;
    for (int s = 0; s < options.num_shards; ++s) {
      const std::string name =
          absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, options.num_shards);
      std::vector<TensorToWrite> shard;
      for (size_t k = s * per_shard; k < std::min(tensors.size(), (s + 1) * per_shard); ++k) {
        index["weight_map"][tensors[k].name] = name;
        shard.push_back(std::move(tensors[k]));
      }
      RETURN_IF_ERROR(WriteSafetensors(out_dir + "/" + name, shard, metadata));
    }
    RETURN_IF_ERROR(WriteText(out_dir + "/model.safetensors.index.json", index.dump(2)));
  }
  if (!options.tokenizer_path.empty()) {
    std::ifstream in(options.tokenizer_path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat(options.tokenizer_path, ": cannot open tokenizer"));
    std::ostringstream text;
    text << in.rdbuf();
    RETURN_IF_ERROR(WriteText(out_dir + "/tokenizer.json", text.str()));
  }
  return absl::OkStatus();
}

}  // namespace specdec
