// Reads and writes safetensors files. The reader maps the file (mmap) and validates the whole
// header before handing out a single pointer: a model file is untrusted input.
#ifndef SPECDEC_COMMON_SAFETENSORS_SAFETENSORS_H_
#define SPECDEC_COMMON_SAFETENSORS_SAFETENSORS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace specdec {

enum class DType { kF32, kF16, kBF16, kF64, kI64, kI32, kI16, kI8, kU8, kBool };

// "F32" -> kF32 etc. (the safetensors spelling).
absl::StatusOr<DType> ParseDType(absl::string_view name);
absl::string_view DTypeName(DType dtype);
int64_t DTypeSize(DType dtype);

struct TensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // [] is a scalar
  const uint8_t* data = nullptr;  // inside the mapping; valid while the file is open
  uint64_t num_bytes = 0;
  int64_t num_elements() const;
};

class SafetensorsFile {
 public:
  // Maps `path` and validates: header length inside the file and below 100 MB, the header is a
  // JSON object, every entry has a known dtype, non-negative shape, offsets inside the data
  // section that match the shape's byte size, and no two tensors overlap.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  // Validates an in-memory buffer (the fuzz target and tests use this); `buffer` must outlive it.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBuffer(absl::string_view buffer,
                                                                    absl::string_view source);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* Find(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  absl::Status Parse(const uint8_t* bytes, uint64_t size);

  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::map<std::string, TensorInfo> tensors_;
};

// A tensor to write: its bytes must be num_elements * DTypeSize(dtype) long.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  std::string bytes;
};

// Writes a safetensors file (header padded to 8 bytes, tensors in the given order).
absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

}  // namespace specdec

#endif  // SPECDEC_COMMON_SAFETENSORS_SAFETENSORS_H_
