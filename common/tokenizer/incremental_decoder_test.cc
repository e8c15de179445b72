// IncrementalDecoder tests: ids fed one at a time give Decode(all) in pieces that are each
// valid UTF-8, including characters split over several byte tokens.
#include "common/tokenizer/incremental_decoder.h"

#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "common/tokenizer/unicode_text.h"
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

std::string Stream(const std::vector<int32_t>& ids, int* multi_token_chars) {
  IncrementalDecoder decoder(NeoX());
  std::string all;
  for (int32_t id : ids) {
    const std::string chunk = decoder.Add(id);
    EXPECT_TRUE(IsValidUtf8(chunk)) << "id " << id;
    if (chunk.empty()) ++*multi_token_chars;
    all += chunk;
  }
  const std::string rest = decoder.Flush();
  EXPECT_TRUE(IsValidUtf8(rest));
  return all + rest;
}

TEST(IncrementalDecoderTest, StreamsEqualDecodeOfAll) {
  for (const std::string text :
       {"Hello world", "Hello 👋 world 🌍! 😀😂🤣",
        "family: 👨‍👩‍👧‍👦 and 👩‍💻 coder",
        "你好，世界！我喜欢自然语言处理。", "안녕하세요, 세계!", "naïve café<|endoftext|>next",
        "skin tones 👍🏽 👋🏿 keycap 1️⃣", "\t\tindent\r\n    four spaces"}) {
    auto ids = NeoX().Encode(text);
    ASSERT_TRUE(ids.ok());
    int waits = 0;
    EXPECT_EQ(Stream(*ids, &waits), NeoX().Decode(*ids)) << text;
  }
}

TEST(IncrementalDecoderTest, WaitsForTheRestOfACharacter) {
  auto ids = NeoX().Encode("🤣");  // four bytes, several tokens
  ASSERT_TRUE(ids.ok());
  ASSERT_GT(ids->size(), 1u);
  IncrementalDecoder decoder(NeoX());
  for (size_t i = 0; i + 1 < ids->size(); ++i) EXPECT_EQ(decoder.Add((*ids)[i]), "");
  EXPECT_EQ(decoder.Add(ids->back()), "🤣");
  EXPECT_EQ(decoder.Flush(), "");
}

TEST(IncrementalDecoderTest, InvalidBytesBecomeReplacementCharacters) {
  auto ids = NeoX().Encode("🤣x");
  ASSERT_TRUE(ids.ok());
  // Drop the first byte token: the continuation bytes left can never form a character.
  std::vector<int32_t> broken(ids->begin() + 1, ids->end());
  IncrementalDecoder decoder(NeoX());
  std::string all;
  for (int32_t id : broken) all += decoder.Add(id);
  all += decoder.Flush();
  EXPECT_EQ(all, Utf8Lossy(NeoX().Decode(broken)));
  EXPECT_NE(all.find("\uFFFD"), std::string::npos);

  // A truncated character at the end comes out of Flush as one U+FFFD.
  IncrementalDecoder truncated(NeoX());
  EXPECT_EQ(truncated.Add((*ids)[0]), "");
  EXPECT_EQ(truncated.Flush(), "\uFFFD");
  EXPECT_EQ(truncated.Flush(), "");
}

TEST(IncrementalDecoderTest, IgnoresUnknownIds) {
  IncrementalDecoder decoder(NeoX());
  EXPECT_EQ(decoder.Add(-3), "");
  EXPECT_EQ(decoder.Add(1 << 29), "");
  EXPECT_EQ(decoder.Add(12092), "Hello");
}

}  // namespace
}  // namespace specdec
