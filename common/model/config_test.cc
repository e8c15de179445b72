// config.json parsing: every field that changes the math, and clear errors for bad files.
#include "common/model/config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

using ::testing::HasSubstr;

constexpr char kPythia70m[] = R"({
  "architectures": ["GPTNeoXForCausalLM"], "bos_token_id": 0, "eos_token_id": 0,
  "hidden_act": "gelu", "hidden_size": 512, "intermediate_size": 2048,
  "layer_norm_eps": 1e-05, "max_position_embeddings": 2048, "model_type": "gpt_neox",
  "num_attention_heads": 8, "num_hidden_layers": 6, "rotary_emb_base": 10000,
  "rotary_pct": 0.25, "tie_word_embeddings": false, "torch_dtype": "float16",
  "use_cache": true, "use_parallel_residual": true, "vocab_size": 50304})";

TEST(ModelConfigTest, ParsesPythia70m) {
  auto c = ParseModelConfig(kPythia70m, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 512);
  EXPECT_EQ(c->num_hidden_layers, 6);
  EXPECT_EQ(c->head_dim(), 64);
  EXPECT_EQ(c->rotary_dims(), 16);
  EXPECT_TRUE(c->use_parallel_residual);
  EXPECT_EQ(c->vocab_size, 50304);
  EXPECT_EQ(c->torch_dtype, "float16");
}

TEST(ModelConfigTest, RoundTripsThroughJson) {
  auto c = ParseModelConfig(kPythia70m, "a");
  ASSERT_TRUE(c.ok());
  auto again = ParseModelConfig(c->ToJson(), "b");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->Summary(), c->Summary());
}

struct BadCase {
  const char* json;
  const char* message;
};

class ModelConfigBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(ModelConfigBadTest, SaysWhatIsWrong) {
  auto c = ParseModelConfig(GetParam().json, "my/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("my/config.json"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ModelConfigBadTest,
    ::testing::Values(
        BadCase{"{not json", "not valid JSON"}, BadCase{"[1,2]", "not a JSON object"},
        BadCase{R"({"hidden_size": 64})", "missing required field \"vocab_size\""},
        BadCase{R"({"vocab_size": "big", "hidden_size": 64})", "\"vocab_size\" has the wrong type"},
        BadCase{R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 64, "num_hidden_layers": 1,
                    "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8})",
                "model_type \"llama\""},
        BadCase{R"({"vocab_size": 10, "hidden_size": 65, "num_hidden_layers": 1,
                    "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8})",
                "divisible"},
        BadCase{R"({"vocab_size": -3, "hidden_size": 64, "num_hidden_layers": 1,
                    "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8})",
                "vocab_size must be"},
        BadCase{R"({"vocab_size": 10, "hidden_size": 64, "num_hidden_layers": 1, "rotary_pct": 1.5,
                    "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8})",
                "rotary_pct"},
        BadCase{R"({"vocab_size": 10, "hidden_size": 64, "num_hidden_layers": 1, "hidden_act": "swish",
                    "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8})",
                "hidden_act \"swish\""}));

}  // namespace
}  // namespace specdec
