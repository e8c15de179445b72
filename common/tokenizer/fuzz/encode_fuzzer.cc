// libFuzzer target: Encode arbitrary bytes with the GPT-NeoX-20B tokenizer, then check the
// invariants that must hold for any input (round trip to NFC text, streaming decode).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/tokenizer/incremental_decoder.h"
#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/unicode_text.h"

namespace {

const specdec::Tokenizer& NeoX() {
  static const specdec::Tokenizer* tokenizer = [] {
    const char* env = std::getenv("SPECDEC_TOKENIZER_JSON");
    auto t = specdec::Tokenizer::FromFile(
        env != nullptr ? env : SPECDEC_SOURCE_DIR "/assets/gpt-neox-20b/tokenizer.json");
    if (!t.ok()) std::abort();
    return t->release();
  }();
  return *tokenizer;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto& tokenizer = NeoX();
  auto ids = tokenizer.Encode(text);
  if (specdec::IsValidUtf8(text) != ids.ok()) std::abort();
  if (!ids.ok()) {
    // Decode the bytes as ids instead: arbitrary ids must never crash the decoders.
    std::vector<int32_t> raw(size / 4);
    for (size_t i = 0; i < raw.size(); ++i) {
      raw[i] = static_cast<int32_t>(data[4 * i] | (data[4 * i + 1] << 8) | (data[4 * i + 2] << 16) |
                                    (uint32_t{data[4 * i + 3]} << 24));
      if (i % 2 == 0) raw[i] = static_cast<int32_t>(static_cast<uint32_t>(raw[i]) % 50300);
    }
    specdec::IncrementalDecoder decoder(tokenizer);
    std::string streamed;
    for (int32_t id : raw) {
      const std::string chunk = decoder.Add(id);
      if (!specdec::IsValidUtf8(chunk)) std::abort();
      streamed += chunk;
    }
    streamed += decoder.Flush();
    if (streamed != specdec::Utf8Lossy(tokenizer.Decode(raw))) std::abort();
    return 0;
  }
  std::string nfc;
  specdec::AppendNfc(text, &nfc);
  if (tokenizer.Decode(*ids) != nfc) std::abort();
  return 0;
}
