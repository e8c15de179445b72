// Streaming detokenizer: turns ids arriving one at a time into text that never splits a UTF-8
// character, for token-by-token streaming to clients.
#ifndef SPECDEC_COMMON_TOKENIZER_INCREMENTAL_DECODER_H_
#define SPECDEC_COMMON_TOKENIZER_INCREMENTAL_DECODER_H_

#include <cstdint>
#include <string>

#include "common/tokenizer/tokenizer.h"

namespace specdec {

// Concatenating every Add() and the final Flush() gives Utf8Lossy(tokenizer.Decode(all ids)),
// i.e. HF's decode (lossy UTF-8); for ids that decode to valid UTF-8 that is Decode() itself.
// Not thread-safe; one per stream. `tokenizer` must outlive it.
class IncrementalDecoder {
 public:
  explicit IncrementalDecoder(const Tokenizer& tokenizer);

  // The text completed by `id`: whole characters only; a character still missing bytes waits
  // for the next ids, and bytes that can never become valid come out as U+FFFD.
  std::string Add(int32_t id);
  // Whatever is still pending, an incomplete character becoming U+FFFD. Resets the stream.
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;  // at most 3 bytes of an unfinished character between calls
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_TOKENIZER_INCREMENTAL_DECODER_H_
