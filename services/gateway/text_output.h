// The text side of a generation stream: incremental detokenization (complete UTF-8 only) and
// stop strings. Text that may be the beginning of a stop string is held back until it is known
// not to be one, so a client never sees part of a stop string.
#ifndef SPECDEC_SERVICES_GATEWAY_TEXT_OUTPUT_H_
#define SPECDEC_SERVICES_GATEWAY_TEXT_OUTPUT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/tokenizer/incremental_decoder.h"
#include "common/tokenizer/tokenizer.h"

namespace specdec {

class TextOutput {
 public:
  // `tokenizer` may be null (no text is produced then, and stop strings never match).
  TextOutput(const Tokenizer* tokenizer, std::vector<std::string> stops);

  // Adds one generated token and returns the text that can be sent now. When the text then
  // contains a stop string, sets *stopped and returns the text before it; call no more.
  std::string Add(int32_t token, bool* stopped);
  // What is still held back at the end of generation (no stop string was found).
  std::string Finish(bool* stopped);

 private:
  std::string Release(bool* stopped);

  std::unique_ptr<IncrementalDecoder> decoder_;
  std::vector<std::string> stops_;
  std::string held_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_TEXT_OUTPUT_H_
