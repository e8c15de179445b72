// libFuzzer target: arbitrary bytes as a safetensors file. The parser must refuse or accept
// without crashing, and every accepted tensor must lie inside the buffer.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/safetensors/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string buffer(reinterpret_cast<const char*>(data), size);
  auto file = specdec::SafetensorsFile::FromBuffer(buffer, "fuzz.safetensors");
  if (!file.ok()) return 0;
  const auto* begin = reinterpret_cast<const uint8_t*>(buffer.data());
  for (const auto& [name, info] : (*file)->tensors()) {
    if (info.data < begin || info.data + info.num_bytes > begin + buffer.size()) std::abort();
    if (static_cast<uint64_t>(info.num_elements()) * specdec::DTypeSize(info.dtype) != info.num_bytes) std::abort();
  }
  return 0;
}
