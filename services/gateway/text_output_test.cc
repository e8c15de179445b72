// TextOutput: streamed text equals the decoded text, stop strings cut it and are never sent.
#include "services/gateway/text_output.h"

#include "gtest/gtest.h"

namespace specdec {
namespace {

class TextOutputTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tokenizer = Tokenizer::FromFile(SPECDEC_TOKENIZER_JSON);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = tokenizer->release();
  }
  static Tokenizer* tokenizer_;

  // Streams `text`'s tokens through a TextOutput; returns what was sent and whether it stopped.
  std::pair<std::string, bool> Stream(const std::string& text, std::vector<std::string> stops) {
    auto ids = tokenizer_->Encode(text);
    EXPECT_TRUE(ids.ok());
    TextOutput output(tokenizer_, std::move(stops));
    std::string sent;
    bool stopped = false;
    for (int32_t id : *ids) {
      sent += output.Add(id, &stopped);
      if (stopped) return {sent, true};
    }
    sent += output.Finish(&stopped);
    return {sent, stopped};
  }
};
Tokenizer* TextOutputTest::tokenizer_ = nullptr;

TEST_F(TextOutputTest, WithoutStopStringsTheTextIsTheDecodedText) {
  const std::string text = "Hello wörld, naïve café 日本語 🙂!";
  EXPECT_EQ(Stream(text, {}), std::make_pair(text, false));
}

TEST_F(TextOutputTest, StopStringCutsTheTextBeforeIt) {
  EXPECT_EQ(Stream("one two three four", {"three"}), std::make_pair(std::string("one two "), true));
  EXPECT_EQ(Stream("one two three four", {" thr", "xyz"}), std::make_pair(std::string("one two"), true));
}

TEST_F(TextOutputTest, HeldBackPrefixIsReleasedWhenItIsNoStop) {
  EXPECT_EQ(Stream("one two thread", {"three"}), std::make_pair(std::string("one two thread"), false));
}

TEST_F(TextOutputTest, NoTokenizerGivesNoText) {
  TextOutput output(nullptr, {"x"});
  bool stopped = true;
  EXPECT_EQ(output.Add(42, &stopped), "");
  EXPECT_FALSE(stopped);
}

}  // namespace
}  // namespace specdec
