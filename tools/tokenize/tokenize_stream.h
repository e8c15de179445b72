// The line protocol of specdec-tokenize: JSON lines in, JSON lines out, errors as JSON on a
// separate stream so one bad line never stops a batch.
#ifndef SPECDEC_TOOLS_TOKENIZE_TOKENIZE_STREAM_H_
#define SPECDEC_TOOLS_TOKENIZE_TOKENIZE_STREAM_H_

#include <istream>
#include <ostream>

#include "common/tokenizer/tokenizer.h"

namespace specdec {

// Encode mode reads {"text": "..."} and writes {"ids": [...]}; decode mode reads {"ids": [...]}
// and writes {"text": "..."} (invalid UTF-8 from cut characters becomes U+FFFD). A bad line
// writes {"line": N, "error": "..."} to `err` and nothing to `out`. Returns the number of bad
// lines. Empty lines are skipped.
int RunTokenizeStream(const Tokenizer& tokenizer, bool decode, std::istream& in, std::ostream& out,
                      std::ostream& err);

}  // namespace specdec

#endif  // SPECDEC_TOOLS_TOKENIZE_TOKENIZE_STREAM_H_
