// Streaming detokenizer (see incremental_decoder.h): keeps only the unfinished tail of a
// character between calls.
#include "common/tokenizer/incremental_decoder.h"

#include "common/tokenizer/unicode_text.h"

namespace specdec {

IncrementalDecoder::IncrementalDecoder(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}

std::string IncrementalDecoder::Add(int32_t id) {
  if (!tokenizer_.AppendTokenBytes(id, &pending_)) return "";
  std::string out;
  const size_t consumed = AppendUtf8Lossy(pending_, /*final=*/false, &out);
  pending_.erase(0, consumed);
  return out;
}

std::string IncrementalDecoder::Flush() {
  std::string out;
  AppendUtf8Lossy(pending_, /*final=*/true, &out);
  pending_.clear();
  return out;
}

}  // namespace specdec
