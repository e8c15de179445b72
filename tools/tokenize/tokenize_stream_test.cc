// specdec-tokenize's line protocol: good lines answered in order, bad lines reported and skipped.
#include "tools/tokenize/tokenize_stream.h"

#include <sstream>

#include "gtest/gtest.h"

namespace specdec {
namespace {

const Tokenizer& NeoX() {
  static const Tokenizer* tokenizer = [] {
    auto t = Tokenizer::FromFile(SPECDEC_SOURCE_DIR "/assets/gpt-neox-20b/tokenizer.json");
    if (!t.ok()) std::abort();
    return t->release();
  }();
  return *tokenizer;
}

TEST(TokenizeStreamTest, EncodesAndReportsBadLines) {
  std::istringstream in(
      "{\"text\": \"Hello world\"}\n"
      "not json\n"
      "\n"
      "{\"ids\": [1]}\n"
      "{\"text\": \"<|endoftext|>\"}\n");
  std::ostringstream out, err;
  EXPECT_EQ(RunTokenizeStream(NeoX(), /*decode=*/false, in, out, err), 2);
  EXPECT_EQ(out.str(), "{\"ids\":[12092,1533]}\n{\"ids\":[0]}\n");
  EXPECT_EQ(err.str(),
            "{\"error\":\"line is not valid JSON\",\"line\":2}\n"
            "{\"error\":\"expected {\\\"text\\\": \\\"...\\\"}\",\"line\":4}\n");
}

TEST(TokenizeStreamTest, DecodesLossily) {
  std::istringstream in(
      "{\"ids\": [12092, 1533]}\n"
      "{\"ids\": [22692]}\n"
      "{\"ids\": [99999999]}\n"
      "{\"ids\": [\"x\"]}\n");
  std::ostringstream out, err;
  EXPECT_EQ(RunTokenizeStream(NeoX(), /*decode=*/true, in, out, err), 2);
  EXPECT_EQ(out.str(), "{\"text\":\"Hello world\"}\n{\"text\":\" \xEF\xBF\xBD\"}\n");
}

}  // namespace
}  // namespace specdec
