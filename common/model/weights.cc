// Checkpoint loading: config.json, single or sharded safetensors, vocab_rank.json.
// Every tensor is checked against the config before it is copied into a libtorch tensor.
#include "common/model/weights.h"

#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include <torch/cuda.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/cpu_kernels/cpu_isa.h"
#include "common/cpu_kernels/packed_matrix.h"
#include "common/safetensors/safetensors.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

// Opens model.safetensors, or the shards its index names. Shard names must be plain file
// names inside the folder: the index is untrusted too.
absl::StatusOr<std::vector<std::unique_ptr<SafetensorsFile>>> OpenWeightFiles(const std::string& dir) {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  const std::string single = dir + "/model.safetensors";
  const std::string index = dir + "/model.safetensors.index.json";
  if (FileExists(single)) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(single));
    files.push_back(std::move(file));
    return files;
  }
  if (!FileExists(index)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no model.safetensors and no model.safetensors.index.json"));
  }
  ASSIGN_OR_RETURN(std::string text, ReadFile(index));
  auto root = nlohmann::json::parse(text, nullptr, false);
  if (root.is_discarded() || !root.is_object() || !root.contains("weight_map") ||
      !root["weight_map"].is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(index, ": expected an object with \"weight_map\""));
  }
  std::set<std::string> shards;
  for (auto it = root["weight_map"].begin(); it != root["weight_map"].end(); ++it) {
    if (!it.value().is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(index, ": weight_map[\"", it.key(), "\"] is not a file name"));
    }
    std::string shard = it.value().get<std::string>();
    if (shard.empty() || shard.find('/') != std::string::npos || shard.find("..") != std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(index, ": shard name \"", shard, "\" must be a plain file name"));
    }
    shards.insert(shard);
  }
  for (const auto& shard : shards) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open(dir + "/" + shard));
    files.push_back(std::move(file));
  }
  return files;
}

// The CPU running the libtorch forward that GPUs run, instead of the CPU engine: for tests, so
// that the GPU's code path is checked against the fixtures on machines without a GPU.
constexpr char kLibtorchOnCpu[] = "cpu-libtorch";

class TensorLoader {
 public:
  TensorLoader(const std::vector<std::unique_ptr<SafetensorsFile>>& files, torch::Device device,
               torch::ScalarType dtype)
      : device_(device), dtype_(dtype) {
    for (const auto& f : files) {
      for (const auto& [name, info] : f->tensors()) by_name_[name] = {f.get(), &info};
    }
  }

  bool Has(const std::string& name) const { return by_name_.count(name) > 0; }

  // Copies tensor `name` (checked to have `shape`) into the compute dtype on the device.
  absl::StatusOr<torch::Tensor> Load(const std::string& name, std::vector<int64_t> shape) const {
    auto it = by_name_.find(name);
    if (it == by_name_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("checkpoint is missing tensor \"", name, "\""));
    }
    const auto& [file, info] = it->second;
    if (info->shape != shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          file->path(), ": tensor \"", name, "\" has shape [", absl::StrJoin(info->shape, ", "),
          "] but the config needs [", absl::StrJoin(shape, ", "), "]"));
    }
    torch::ScalarType source;
    switch (info->dtype) {
      case DType::kF32: source = torch::kFloat; break;
      case DType::kF16: source = torch::kHalf; break;
      case DType::kBF16: source = torch::kBFloat16; break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(file->path(), ": tensor \"", name,
                                                       "\" has dtype ", DTypeName(info->dtype),
                                                       "; weights must be F32, F16 or BF16"));
    }
    // from_blob aliases the mapping; .to(..., copy=true) makes an aligned copy we own.
    torch::Tensor mapped = torch::from_blob(const_cast<uint8_t*>(info->data), shape,
                                            torch::TensorOptions().dtype(source));
    return mapped.to(device_, dtype_, /*non_blocking=*/false, /*copy=*/true);
  }

 private:
  std::map<std::string, std::pair<const SafetensorsFile*, const TensorInfo*>> by_name_;
  torch::Device device_;
  torch::ScalarType dtype_;
};

absl::StatusOr<torch::Device> ResolveDevice(const std::string& device) {
  if (device == "cpu" || device == kLibtorchOnCpu) return torch::Device(torch::kCPU);
  const bool cuda = torch::cuda::is_available();
  if (device == "auto") return cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  if (device == "cuda" || device.rfind("cuda:", 0) == 0) {
    if (!cuda) {
      return absl::FailedPreconditionError(
          "--device=cuda: this libtorch has no CUDA or no GPU is visible; use --device=cpu or auto");
    }
    return torch::Device(device);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("device \"", device, "\" must be auto, cpu or cuda (or cpu-libtorch, for tests)"));
}

absl::StatusOr<std::pair<torch::ScalarType, std::string>> ResolveDType(const std::string& dtype) {
  if (dtype == "f32" || dtype == "float32") return std::make_pair(torch::kFloat, std::string("f32"));
  if (dtype == "f16" || dtype == "float16") return std::make_pair(torch::kHalf, std::string("f16"));
  if (dtype == "bf16" || dtype == "bfloat16") return std::make_pair(torch::kBFloat16, std::string("bf16"));
  // int8: the CPU engine stores the linear weights as int8 with a scale per output row.
  if (dtype == "int8") return std::make_pair(torch::kFloat, std::string("int8"));
  // bf16_dot: bf16 weights and activations, the CPU's bf16 dot product (packed_matrix.h).
  if (dtype == "bf16_dot") return std::make_pair(torch::kFloat, std::string("bf16_dot"));
  return absl::InvalidArgumentError(
      absl::StrCat("dtype \"", dtype, "\" must be f32, f16, bf16, int8 or bf16_dot"));
}

// vocab_rank.json: a JSON list of token ids, most frequent first. Ids that are missing are
// appended in id order so that every prefix is a valid subset.
absl::StatusOr<std::vector<int32_t>> LoadVocabRank(const std::string& dir, int64_t vocab_size) {
  std::vector<int32_t> rank;
  std::vector<bool> seen(vocab_size, false);
  const std::string path = dir + "/vocab_rank.json";
  if (FileExists(path)) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    auto root = nlohmann::json::parse(text, nullptr, false);
    if (root.is_discarded() || !root.is_array()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": expected a JSON list of token ids"));
    }
    for (const auto& v : root) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": entries must be token ids in [0, ", vocab_size, ")"));
      }
      int32_t id = v.get<int32_t>();
      if (!seen[id]) {
        seen[id] = true;
        rank.push_back(id);
      }
    }
  }
  for (int32_t id = 0; id < vocab_size; ++id) {
    if (!seen[id]) rank.push_back(id);
  }
  return rank;
}

}  // namespace

PackedMatrix PackForCpu(const Model::Impl& m, const torch::Tensor& w, const torch::Tensor& bias) {
  torch::Tensor wf = w.to(torch::kCPU, torch::kFloat).contiguous();
  torch::Tensor bf = bias.defined() ? bias.to(torch::kCPU, torch::kFloat).contiguous() : torch::Tensor();
  return PackedMatrix::Pack(wf.data_ptr<float>(), wf.size(0), wf.size(1),
                            bf.defined() ? bf.data_ptr<float>() : nullptr, m.weight_dtype, m.isa);
}

void PackForCpu(Model::Impl& m) {
  for (const LayerWeights& w : m.layers) {
    PackedLayer p;
    p.qkv = PackForCpu(m, w.qkv_w, w.qkv_b);
    p.dense = PackForCpu(m, w.dense_w, w.dense_b);
    p.fc_in = PackForCpu(m, w.fc_in_w, w.fc_in_b);
    p.fc_out = PackForCpu(m, w.fc_out_w, w.fc_out_b);
    m.packed_layers.push_back(std::move(p));
  }
  m.packed_head = PackForCpu(m, m.embed_out, {});
}

absl::StatusOr<std::unique_ptr<Model::Impl>> LoadModelImpl(const std::string& model_dir,
                                                           const LoadOptions& options) {
  auto impl = std::make_unique<Model::Impl>();
  impl->model_dir = model_dir;
  ASSIGN_OR_RETURN(impl->config, LoadModelConfig(model_dir + "/config.json"));
  ASSIGN_OR_RETURN(impl->device, ResolveDevice(options.device));
  ASSIGN_OR_RETURN(auto dtype, ResolveDType(options.dtype));
  impl->dtype = dtype.first;
  impl->dtype_name = dtype.second;
  const bool libtorch_on_cpu = options.device == kLibtorchOnCpu;
  if (impl->device.is_cpu() && !libtorch_on_cpu) {
    // The CPU engine stores weights as f32, bf16 or int8 and computes in f32 (bf16_dot: in bf16
    // products summed in f32).
    if (impl->dtype_name == "f16") {
      return absl::InvalidArgumentError(
          "dtype f16 is not supported on the CPU; use f32 (exact), bf16 (half the bytes) or int8 "
          "(a quarter), or f16 with --device cuda. F16 checkpoints load fine in any dtype");
    }
    ASSIGN_OR_RETURN(impl->weight_dtype, ParseWeightDtype(impl->dtype_name));
    impl->dtype = torch::kFloat;
    impl->cpu_engine = true;
    impl->isa = ActiveCpuIsa();
  } else if (impl->dtype_name == "int8" || impl->dtype_name == "bf16_dot") {
    return absl::InvalidArgumentError(absl::StrCat(
        "dtype ", impl->dtype_name, " runs on the CPU engine; on a GPU use f32, f16 or bf16"));
  } else if (libtorch_on_cpu && impl->dtype_name != "f32") {
    return absl::InvalidArgumentError("device cpu-libtorch computes in f32 only");
  }
  const ModelConfig& c = impl->config;
  ASSIGN_OR_RETURN(auto files, OpenWeightFiles(model_dir));
  try {
    c10::InferenceMode guard;
    TensorLoader loader(files, impl->device, impl->dtype);
    const int64_t h = c.hidden_size, v = c.vocab_size, i = c.intermediate_size;
    ASSIGN_OR_RETURN(impl->embed_in, loader.Load("gpt_neox.embed_in.weight", {v, h}));
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      const std::string p = absl::StrCat("gpt_neox.layers.", l, ".");
      LayerWeights w;
      ASSIGN_OR_RETURN(w.ln1_w, loader.Load(p + "input_layernorm.weight", {h}));
      ASSIGN_OR_RETURN(w.ln1_b, loader.Load(p + "input_layernorm.bias", {h}));
      ASSIGN_OR_RETURN(w.ln2_w, loader.Load(p + "post_attention_layernorm.weight", {h}));
      ASSIGN_OR_RETURN(w.ln2_b, loader.Load(p + "post_attention_layernorm.bias", {h}));
      ASSIGN_OR_RETURN(w.qkv_w, loader.Load(p + "attention.query_key_value.weight", {3 * h, h}));
      ASSIGN_OR_RETURN(w.dense_w, loader.Load(p + "attention.dense.weight", {h, h}));
      if (c.attention_bias) {
        ASSIGN_OR_RETURN(w.qkv_b, loader.Load(p + "attention.query_key_value.bias", {3 * h}));
        ASSIGN_OR_RETURN(w.dense_b, loader.Load(p + "attention.dense.bias", {h}));
      } else {
        w.qkv_b = torch::zeros({3 * h}, torch::TensorOptions().dtype(impl->dtype).device(impl->device));
        w.dense_b = torch::zeros({h}, torch::TensorOptions().dtype(impl->dtype).device(impl->device));
      }
      ASSIGN_OR_RETURN(w.fc_in_w, loader.Load(p + "mlp.dense_h_to_4h.weight", {i, h}));
      ASSIGN_OR_RETURN(w.fc_in_b, loader.Load(p + "mlp.dense_h_to_4h.bias", {i}));
      ASSIGN_OR_RETURN(w.fc_out_w, loader.Load(p + "mlp.dense_4h_to_h.weight", {h, i}));
      ASSIGN_OR_RETURN(w.fc_out_b, loader.Load(p + "mlp.dense_4h_to_h.bias", {h}));
      impl->layers.push_back(std::move(w));
    }
    ASSIGN_OR_RETURN(impl->final_ln_w, loader.Load("gpt_neox.final_layer_norm.weight", {h}));
    ASSIGN_OR_RETURN(impl->final_ln_b, loader.Load("gpt_neox.final_layer_norm.bias", {h}));
    if (loader.Has("embed_out.weight") || !c.tie_word_embeddings) {
      ASSIGN_OR_RETURN(impl->embed_out, loader.Load("embed_out.weight", {v, h}));
    } else {
      impl->embed_out = impl->embed_in;
    }
    // Hugging Face's rotary tables, computed the same way (float32, outer product, cat).
    const int64_t rot = c.rotary_dims();
    if (rot > 0) {
      torch::Tensor inv_freq =
          1.0 / torch::pow(c.rotary_emb_base,
                           torch::arange(0, rot, 2, torch::kLong).to(torch::kFloat) / static_cast<double>(rot));
      torch::Tensor t = torch::arange(c.max_position_embeddings, torch::kLong).to(torch::kFloat);
      torch::Tensor freqs = torch::outer(t, inv_freq);
      torch::Tensor emb = torch::cat({freqs, freqs}, -1);
      impl->cos = emb.cos().to(impl->device);
      impl->sin = emb.sin().to(impl->device);
    } else {
      impl->cos = torch::zeros({c.max_position_embeddings, 0}, torch::kFloat).to(impl->device);
      impl->sin = impl->cos;
    }
    if (impl->cpu_engine) PackForCpu(*impl);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(model_dir, ": loading weights: ", e.what_without_backtrace()));
  }
  ASSIGN_OR_RETURN(impl->vocab_rank, LoadVocabRank(model_dir, c.vocab_size));
  SPECDEC_LOG(Info) << "loaded " << model_dir << " (" << c.Summary() << ") on "
                    << impl->device.str() << " as " << impl->dtype_name
                    << (impl->cpu_engine ? absl::StrCat(" (CPU engine: ", CpuIsaName(impl->isa), " kernels",
                                                        impl->weight_dtype == WeightDtype::kBf16Dot &&
                                                                UsesBf16DotInstruction(impl->isa)
                                                            ? ", avx512_bf16 dot product"
                                                            : "",
                                                        ")")
                                         : std::string());
  return impl;
}

}  // namespace specdec
