// Safetensors reader (mmap + validation) and writer. See safetensors.h.
#include "common/safetensors/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DTypeEntry {
  DType dtype;
  absl::string_view name;
  int64_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::kF32, "F32", 4}, {DType::kF16, "F16", 2}, {DType::kBF16, "BF16", 2},
    {DType::kF64, "F64", 8}, {DType::kI64, "I64", 8}, {DType::kI32, "I32", 4},
    {DType::kI16, "I16", 2}, {DType::kI8, "I8", 1},   {DType::kU8, "U8", 1},
    {DType::kBool, "BOOL", 1},
};

}  // namespace

absl::StatusOr<DType> ParseDType(absl::string_view name) {
  for (const auto& entry : kDTypes) {
    if (entry.name == name) return entry.dtype;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown dtype \"", name, "\""));
}

absl::string_view DTypeName(DType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry.name;
  }
  return "?";
}

int64_t DTypeSize(DType dtype) {
  for (const auto& entry : kDTypes) {
    if (entry.dtype == dtype) return entry.size;
  }
  return 0;
}

int64_t TensorInfo::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = path;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > 0) {
    void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
    }
    file->mapping_ = mapping;
    file->mapping_size_ = size;
  }
  ::close(fd);
  RETURN_IF_ERROR(file->Parse(static_cast<const uint8_t*>(file->mapping_), size));
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBuffer(
    absl::string_view buffer, absl::string_view source) {
  auto file = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  file->path_ = std::string(source);
  RETURN_IF_ERROR(
      file->Parse(reinterpret_cast<const uint8_t*>(buffer.data()), buffer.size()));
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

const TensorInfo* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

absl::Status SafetensorsFile::Parse(const uint8_t* bytes, uint64_t size) {
  auto error = [this](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", what));
  };
  if (size < 8) return error(absl::StrCat("file is ", size, " bytes; a safetensors file starts with an 8-byte header length"));
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > kMaxHeaderBytes) {
    return error(absl::StrCat("header length ", header_len, " exceeds the 100 MB limit"));
  }
  if (header_len > size - 8) {
    return error(absl::StrCat("header length ", header_len, " runs past the end of the file (",
                              size, " bytes)"));
  }
  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  nlohmann::json header = nlohmann::json::parse(bytes + 8, bytes + 8 + header_len, nullptr,
                                                /*allow_exceptions=*/false);
  if (header.is_discarded()) return error("header is not valid JSON");
  if (!header.is_object()) return error("header is not a JSON object");

  struct Span {
    uint64_t begin, end;
    const std::string* name;
  };
  std::vector<Span> spans;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const auto& entry = it.value();
    auto tensor_error = [&](const std::string& what) {
      return error(absl::StrCat("tensor \"", name, "\": ", what));
    };
    if (!entry.is_object()) return tensor_error("entry is not an object");
    auto dtype_it = entry.find("dtype");
    auto shape_it = entry.find("shape");
    auto offsets_it = entry.find("data_offsets");
    if (dtype_it == entry.end() || !dtype_it->is_string()) return tensor_error("missing dtype");
    if (shape_it == entry.end() || !shape_it->is_array()) return tensor_error("missing shape");
    if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
      return tensor_error("data_offsets must be [begin, end]");
    }
    TensorInfo info;
    info.name = name;
    auto dtype = ParseDType(dtype_it->get<std::string>());
    if (!dtype.ok()) return tensor_error(std::string(dtype.status().message()));
    info.dtype = *dtype;
    // Element count with overflow checks: a hostile shape must not wrap around.
    uint64_t elements = 1;
    for (const auto& dim : *shape_it) {
      if (!dim.is_number_unsigned()) return tensor_error("shape has a negative or non-integer dimension");
      uint64_t d = dim.get<uint64_t>();
      if (d > (1ull << 40) || (d != 0 && elements > std::numeric_limits<uint64_t>::max() / d)) {
        return tensor_error("shape is too large");
      }
      elements *= d;
      info.shape.push_back(static_cast<int64_t>(d));
    }
    const uint64_t elem_size = static_cast<uint64_t>(DTypeSize(info.dtype));
    if (elements > std::numeric_limits<uint64_t>::max() / elem_size) return tensor_error("shape is too large");
    const auto& b = (*offsets_it)[0];
    const auto& e = (*offsets_it)[1];
    if (!b.is_number_unsigned() || !e.is_number_unsigned()) {
      return tensor_error("data_offsets must be non-negative integers");
    }
    uint64_t begin = b.get<uint64_t>(), end = e.get<uint64_t>();
    if (begin > end) return tensor_error(absl::StrCat("data_offsets [", begin, ", ", end, "] are reversed"));
    if (end > data_size) {
      return tensor_error(absl::StrCat("data_offsets end ", end, " is past the data section (",
                                       data_size, " bytes)"));
    }
    if (end - begin != elements * elem_size) {
      return tensor_error(absl::StrCat("holds ", end - begin, " bytes but its shape and dtype need ",
                                       elements * elem_size));
    }
    info.data = data + begin;
    info.num_bytes = end - begin;
    auto [pos, inserted] = tensors_.emplace(name, std::move(info));
    spans.push_back({begin, end, &pos->first});
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  for (size_t i = 1; i < spans.size(); ++i) {
    if (spans[i].begin < spans[i - 1].end && spans[i].end > spans[i].begin) {
      return error(absl::StrCat("tensors \"", *spans[i - 1].name, "\" and \"", *spans[i].name,
                                "\" overlap"));
    }
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    int64_t elements = 1;
    for (int64_t d : t.shape) elements *= d;
    if (static_cast<uint64_t>(elements * DTypeSize(t.dtype)) != t.bytes.size()) {
      return absl::InvalidArgumentError(absl::StrCat("tensor \"", t.name, "\": ", t.bytes.size(),
                                                     " bytes do not match its shape"));
    }
    header[t.name] = {{"dtype", std::string(DTypeName(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + t.bytes.size()}}};
    offset += t.bytes.size();
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return absl::PermissionDeniedError(absl::StrCat(path, ": cannot write"));
  uint64_t len = text.size();
  char len_bytes[8];
  for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  out.write(len_bytes, 8);
  out.write(text.data(), text.size());
  for (const auto& t : tensors) out.write(t.bytes.data(), t.bytes.size());
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace specdec
