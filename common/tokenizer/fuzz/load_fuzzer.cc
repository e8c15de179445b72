// libFuzzer target: load arbitrary bytes as tokenizer.json; a file that loads must then encode
// and decode without crashing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto tokenizer =
      specdec::Tokenizer::FromJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!tokenizer.ok()) return 0;
  for (std::string_view text : {"ab abc  a\tb\n", "<|endoftext|>x", "", "é 1 ''s"}) {
    auto ids = (*tokenizer)->Encode(text);
    if (!ids.ok()) continue;
    (*tokenizer)->Decode(*ids);
  }
  (*tokenizer)->Decode(std::vector<int32_t>{0, 1, 2, -1, 1 << 30});
  return 0;
}
