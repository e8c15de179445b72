// Tokenizer tests: exact ids against Hugging Face tokenizers on GPT-NeoX-20B (the shared fixture
// and published ids), decode round trips, invalid input, and malformed tokenizer.json files.
#include "common/tokenizer/tokenizer.h"

#include <fstream>
#include <string>
#include <vector>

#include "common/tokenizer/unicode_text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kTokenizerPath[] = SPECDEC_SOURCE_DIR "/assets/gpt-neox-20b/tokenizer.json";
constexpr char kFixturePath[] = SPECDEC_TEST_DATA_DIR "/tokenizer/gpt-neox-20b.jsonl";

const Tokenizer& NeoX() {
  static const Tokenizer* tokenizer = [] {
    auto t = Tokenizer::FromFile(kTokenizerPath);
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      std::abort();
    }
    return t->release();
  }();
  return *tokenizer;
}

std::vector<int32_t> EncodeOrDie(std::string_view text) {
  auto ids = NeoX().Encode(text);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(TokenizerTest, LoadsGptNeoX) {
  EXPECT_EQ(NeoX().vocab_size(), 50277);
  EXPECT_EQ(NeoX().TokenId("<|endoftext|>"), 0);
  EXPECT_EQ(NeoX().TokenId("<|padding|>"), 1);
  EXPECT_EQ(NeoX().TokenId("Ġthe"), 253);
  EXPECT_EQ(NeoX().TokenId(std::string(24, ' ')), 50254);
  EXPECT_EQ(NeoX().TokenId("no such token here"), std::nullopt);
}

TEST(TokenizerTest, PublishedIds) {
  EXPECT_THAT(EncodeOrDie("Hello world"), ElementsAre(12092, 1533));
  EXPECT_THAT(EncodeOrDie(" leading space"), ElementsAre(4283, 2317));
  EXPECT_THAT(EncodeOrDie("Multi\nline\ttext"), ElementsAre(22495, 187, 1282, 186, 1156));
  EXPECT_THAT(EncodeOrDie("<|prompt|>"), ElementsAre(29, 93, 43274, 49651));
  EXPECT_THAT(EncodeOrDie("a"), ElementsAre(66));
  EXPECT_THAT(EncodeOrDie("Hello, my dog is cute"), ElementsAre(12092, 13, 619, 4370, 310, 20295));
  EXPECT_THAT(EncodeOrDie(""), IsEmpty());
}

TEST(TokenizerTest, MatchesEveryFixtureLine) {
  std::ifstream in(kFixturePath);
  ASSERT_TRUE(in) << kFixturePath;
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++lines;
    const auto row = nlohmann::json::parse(line);
    const std::string text = row["text"].get<std::string>();
    const std::vector<int32_t> expected = row["ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(EncodeOrDie(text), expected) << "text: " << text;
    // Decoding gives the NFC form of the text back.
    std::string nfc;
    AppendNfc(text, &nfc);
    EXPECT_EQ(NeoX().Decode(expected), nfc) << "text: " << text;
  }
  EXPECT_EQ(lines, 62);
}

TEST(TokenizerTest, DecodeRoundTrips) {
  for (const std::string text :
       {"Hello<|endoftext|>World", "  spaces   and\ttabs\r\n", "emoji 👨‍👩‍👧 ok",
        "日本語のテキスト", "x<|padding|>y", "code() { return 1; }"}) {
    EXPECT_EQ(NeoX().Decode(EncodeOrDie(text)), text);
  }
}

TEST(TokenizerTest, DecodeSkipsUnknownIdsAndKeepsPartialCharacters) {
  const std::vector<int32_t> ids = {12092, -1, 50277, 1 << 30, 1533};
  EXPECT_EQ(NeoX().Decode(ids), "Hello world");
  // "👋" is split over byte tokens; the first alone is an incomplete character.
  const std::vector<int32_t> wave = EncodeOrDie("👋");
  ASSERT_GT(wave.size(), 1u);
  const std::string first = NeoX().Decode(absl::MakeConstSpan(wave).subspan(0, 1));
  EXPECT_FALSE(IsValidUtf8(first));
  EXPECT_EQ(Utf8Lossy(first), "\xEF\xBF\xBD");
}

TEST(TokenizerTest, NewerUnicodeIsHandledLikeTheReference) {
  // U+07FD (Unicode 11, ccc 220) is unknown to the reference's Unicode 9.0 NFC tables, so it is
  // not reordered before U+0301 (ccc 230), and "a" + U+0301 still composes to "á".
  std::string nfc;
  AppendNfc("a\u0301\u07FD", &nfc);
  EXPECT_EQ(nfc, "\u00E1\u07FD");
  nfc.clear();
  AppendNfc("a\u07FD\u0301", &nfc);
  EXPECT_EQ(nfc, "a\u07FD\u0301");
  // U+1C89 is a Unicode 16.0 letter, which the reference's regex sees as \p{L}.
  EXPECT_EQ(ClassifyCodePoint(0x1C89), CharClass::kLetter);
  EXPECT_EQ(ClassifyCodePoint(0x3000), CharClass::kSpace);
  EXPECT_EQ(ClassifyCodePoint(0x200B), CharClass::kOther);
}

TEST(TokenizerTest, RejectsInvalidUtf8) {
  for (const std::string text :
       {std::string("\xFF"), std::string("ab\xC3"), std::string("\xED\xA0\x80"),
        std::string("\xC0\xAF"), std::string("ok\xF4\x90\x80\x80")}) {
    auto ids = NeoX().Encode(text);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(TokenizerTest, LongInputsStayFast) {
  // One 1 MB "word" and one 1 MB whitespace run: no quadratic behaviour, no deep recursion.
  EXPECT_FALSE(EncodeOrDie(std::string(1 << 20, 'a')).empty());
  EXPECT_FALSE(EncodeOrDie(std::string(1 << 20, ' ')).empty());
  EXPECT_FALSE(EncodeOrDie(std::string(1 << 18, '\n')).empty());
}

TEST(Utf8LossyTest, ReplacesMaximalSubparts) {
  EXPECT_EQ(Utf8Lossy("a\xE0\xA0"
                      "b"),
            "a\uFFFD"
            "b");
  EXPECT_EQ(Utf8Lossy("\xF0\x90\x80"), "\uFFFD");
  EXPECT_EQ(Utf8Lossy("\xC0\xAF"), "\uFFFD\uFFFD");
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), "\uFFFD\uFFFD\uFFFD");
  EXPECT_EQ(Utf8Lossy("\xF4\x90"), "\uFFFD\uFFFD");
  std::string out;
  EXPECT_EQ(AppendUtf8Lossy("ok\xE2\x82", /*final=*/false, &out), 2u);
  EXPECT_EQ(out, "ok");
}

// Malformed or unsupported tokenizer.json files: a clear INVALID_ARGUMENT, never a crash.
struct BadJsonCase {
  std::string name;
  std::string json;
  std::string message;
};

constexpr char kMinimalModel[] =
    R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]})";
constexpr char kByteLevel[] =
    R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
       "decoder": {"type": "ByteLevel"})";

std::string WithModel(const std::string& model) {
  return std::string("{") + model + ", " + kByteLevel + "}";
}

TEST(TokenizerJsonTest, AcceptsAMinimalFile) {
  auto t = Tokenizer::FromJson(WithModel(kMinimalModel));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("abab"), ElementsAre(2, 2));
  // "c" has no byte token in this vocab and there is no unk token: HF drops it, and the "a" and
  // "b" around it then merge.
  EXPECT_THAT(*(*t)->Encode("acb"), ElementsAre(2));
  EXPECT_EQ((*t)->vocab_size(), 3);
}

TEST(TokenizerJsonTest, AcceptsArrayMerges) {
  auto t = Tokenizer::FromJson(WithModel(
      R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]})"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_THAT(*(*t)->Encode("ab"), ElementsAre(2));
}

TEST(TokenizerJsonTest, RejectsBadFiles) {
  const std::string byte_level = kByteLevel;
  const std::vector<BadJsonCase> cases = {
      {"not json", "{", "not valid JSON"},
      {"not an object", "[1, 2]", "top level must be an object"},
      {"no model", "{}", "\"model\" must be an object"},
      {"wordpiece", R"({"model": {"type": "WordPiece", "vocab": {}}})",
       "model type \"WordPiece\" is not supported"},
      {"model without type", R"({"model": {"vocab": {}, "merges": []}})",
       "model type \"\" is not supported"},
      {"vocab not object", R"({"model": {"type": "BPE", "vocab": [], "merges": []}})",
       "model.vocab must be an object"},
      {"id not integer", R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})",
       "is not an integer id"},
      {"id negative", R"({"model": {"type": "BPE", "vocab": {"a": -5}, "merges": []}})",
       "out of range"},
      {"id huge", R"({"model": {"type": "BPE", "vocab": {"a": 4000000000}, "merges": []}})",
       "out of range"},
      {"duplicate id", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 0}, "merges": []}})",
       "gives id 0 to both"},
      {"merges missing", R"({"model": {"type": "BPE", "vocab": {"a": 0}}})",
       "model.merges must be an array"},
      {"merge unknown token",
       R"({"model": {"type": "BPE", "vocab": {"a": 0, "ab": 1}, "merges": ["a b"]}})",
       "names \"b\", which is not in the vocab"},
      {"merge result unknown",
       R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a b"]}})",
       "makes \"ab\", which is not in the vocab"},
      {"merge malformed", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}})",
       "is not of the form"},
      {"merge wrong type", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [7]}})",
       "must be \"a b\" or"},
      {"dropout", R"({"model": {"type": "BPE", "dropout": 0.1, "vocab": {}, "merges": []}})",
       "dropout is not supported"},
      {"unk missing",
       R"({"model": {"type": "BPE", "unk_token": "<unk>", "vocab": {"a": 0}, "merges": []}})",
       "unk_token \"<unk>\" is not in the vocab"},
      {"normalizer",
       R"({"normalizer": {"type": "Lowercase"}, )" + std::string(kMinimalModel) + ", " +
           byte_level + "}",
       "normalizer type \"Lowercase\" is not supported"},
      {"pre_tokenizer",
       R"({"pre_tokenizer": {"type": "Whitespace"}, )" + std::string(kMinimalModel) + "}",
       "pre_tokenizer type \"Whitespace\" is not supported"},
      {"no pre_tokenizer", "{" + std::string(kMinimalModel) + "}",
       "pre_tokenizer type \"\" is not supported"},
      {"decoder",
       R"({"pre_tokenizer": {"type": "ByteLevel"}, "decoder": {"type": "BPEDecoder"}, )" +
           std::string(kMinimalModel) + "}",
       "decoder type \"BPEDecoder\" is not supported"},
      {"post_processor",
       R"({"post_processor": {"type": "TemplateProcessing"}, )" + std::string(kMinimalModel) +
           ", " + byte_level + "}",
       "post_processor type \"TemplateProcessing\" is not supported"},
      {"truncation",
       R"({"truncation": {"max_length": 5}, )" + std::string(kMinimalModel) + ", " + byte_level +
           "}",
       "truncation is not supported"},
      {"prefix space wrong type",
       R"({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": "yes"}, )" +
           std::string(kMinimalModel) + R"(, "decoder": {"type": "ByteLevel"}})",
       "add_prefix_space must be a boolean"},
      {"added not array",
       R"({"added_tokens": {}, )" + std::string(kMinimalModel) + ", " + byte_level + "}",
       "added_tokens must be an array"},
      {"added id missing",
       R"({"added_tokens": [{"content": "x"}], )" + std::string(kMinimalModel) + ", " + byte_level +
           "}",
       "added_tokens[0].id must be an integer"},
      {"added id out of range",
       R"({"added_tokens": [{"id": 99999999999, "content": "x"}], )" + std::string(kMinimalModel) +
           ", " + byte_level + "}",
       "out of range"},
      {"added empty",
       R"({"added_tokens": [{"id": 5, "content": ""}], )" + std::string(kMinimalModel) + ", " +
           byte_level + "}",
       "content must be a non-empty string"},
      {"added conflicts with vocab",
       R"({"added_tokens": [{"id": 5, "content": "ab"}], )" + std::string(kMinimalModel) + ", " +
           byte_level + "}",
       "the vocab gives it id 2"},
      {"added steals vocab id",
       R"({"added_tokens": [{"id": 1, "content": "zz"}], )" + std::string(kMinimalModel) + ", " +
           byte_level + "}",
       "which the vocab already gives to \"b\""},
      {"added lstrip",
       R"({"added_tokens": [{"id": 9, "content": "<x>", "lstrip": true}], )" +
           std::string(kMinimalModel) + ", " + byte_level + "}",
       "lstrip = true is not supported"},
  };
  for (const auto& c : cases) {
    auto t = Tokenizer::FromJson(c.json);
    ASSERT_FALSE(t.ok()) << c.name;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_THAT(std::string(t.status().message()), HasSubstr(c.message)) << c.name;
  }
}

TEST(TokenizerJsonTest, DeeplyNestedJsonIsAnErrorNotAStackOverflow) {
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  EXPECT_EQ(Tokenizer::FromJson(deep).status().code(), absl::StatusCode::kInvalidArgument);
  const std::string unclosed = "{\"model\": " + std::string(200000, '[');
  EXPECT_EQ(Tokenizer::FromJson(unclosed).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(TokenizerJsonTest, MissingFileIsNotFound) {
  auto t = Tokenizer::FromFile("/nonexistent/tokenizer.json");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace specdec
