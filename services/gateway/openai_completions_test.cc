// The OpenAI JSON codec without HTTP or a gateway: request bodies to GenerateRequest (defaults,
// every refusal with its message), the model check, logprobs offsets over multi-byte text, and
// the shapes of completions, usage and errors. tests/observe/completions_test.cc runs the same
// codec behind the real HTTP door.
#include "services/gateway/openai_completions.h"

#include <string>

#include "gtest/gtest.h"

namespace specdec {
namespace {

using json = nlohmann::ordered_json;

struct Parsed {
  bool ok = false;
  v1::GenerateRequest request;
  CompletionOptions options;
  std::string error;
};

Parsed Parse(const std::string& text, int default_k = 4) {
  Parsed out;
  out.ok = ToGenerateRequest(json::parse(text), default_k, &out.request, &out.options, &out.error);
  return out;
}

TEST(OpenAiRequestTest, DefaultsAreOpenAis) {
  const Parsed p = Parse(R"({"prompt": "Hello"})", 6);
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_EQ(p.request.prompt(), "Hello");
  EXPECT_EQ(p.request.max_new_tokens(), 16);
  EXPECT_FLOAT_EQ(p.request.sampling().temperature(), 1.0f);
  EXPECT_FLOAT_EQ(p.request.sampling().top_p(), 1.0f);
  EXPECT_EQ(p.request.speculation().num_draft_tokens(), 6);
  EXPECT_EQ(p.request.sampling().coupling(), v1::SAMPLING_COUPLING_UNSPECIFIED);  // the gateway's default
  EXPECT_FALSE(p.request.has_logprobs());
  EXPECT_FALSE(p.options.stream);
  EXPECT_FALSE(p.options.echo);
  EXPECT_EQ(p.options.logprobs, -1);
}

TEST(OpenAiRequestTest, FieldsMapToTheGrpcRequest) {
  const Parsed p = Parse(
      R"({"prompt": [5, 6, 7], "max_tokens": 3, "temperature": 0.8, "top_p": 0.95, "top_k": 40,
          "seed": -1, "stop": ["\n", "END"], "logprobs": 2, "num_draft_tokens": 8,
          "adaptive": true, "stream": true, "coupling": "shared_noise"})");
  ASSERT_TRUE(p.ok) << p.error;
  ASSERT_EQ(p.request.prompt_ids_size(), 3);
  EXPECT_EQ(p.request.prompt_ids(2), 7);
  EXPECT_EQ(p.request.max_new_tokens(), 3);
  EXPECT_FLOAT_EQ(p.request.sampling().temperature(), 0.8f);
  EXPECT_FLOAT_EQ(p.request.sampling().top_p(), 0.95f);
  EXPECT_EQ(p.request.sampling().top_k(), 40);
  EXPECT_EQ(p.request.sampling().seed(), ~uint64_t{0});  // -1 as two's complement
  ASSERT_EQ(p.request.stop_size(), 2);
  EXPECT_EQ(p.request.stop(1), "END");
  EXPECT_EQ(p.request.logprobs().top_n(), 2);
  EXPECT_FALSE(p.request.logprobs().prompt());
  EXPECT_EQ(p.request.speculation().num_draft_tokens(), 8);
  EXPECT_TRUE(p.request.speculation().adaptive());
  EXPECT_EQ(p.request.sampling().coupling(), v1::SAMPLING_COUPLING_SHARED_NOISE);
  EXPECT_TRUE(p.options.stream);
  EXPECT_EQ(p.options.logprobs, 2);
}

TEST(OpenAiRequestTest, EchoWithZeroMaxTokensScoresThePromptOnly) {
  const Parsed p = Parse(R"({"prompt": "a b", "echo": true, "max_tokens": 0, "logprobs": 0})");
  ASSERT_TRUE(p.ok) << p.error;
  EXPECT_TRUE(p.request.prompt_only());
  EXPECT_TRUE(p.request.logprobs().prompt());
  EXPECT_EQ(p.request.logprobs().top_n(), 0);
  EXPECT_TRUE(p.options.echo);
}

TEST(OpenAiRequestTest, RefusalsSayWhatToFix) {
  const struct {
    const char* body;
    const char* message_part;
  } cases[] = {
      {R"([1, 2])", "must be a JSON object"},
      {R"({"max_tokens": 4})", "'prompt' is required"},
      {R"({"prompt": ["a", "b"]})", "batches of prompts are not supported"},
      {R"({"prompt": [1, -2]})", "non-negative 32-bit"},
      {R"({"prompt": [1, 4294967301]})", "non-negative 32-bit"},
      {R"({"prompt": "x", "max_tokens": 0})", "0 only with echo"},
      {R"({"prompt": "x", "max_tokens": 2.5})", "'max_tokens' must be an integer"},
      {R"({"prompt": "x", "max_tokens": 18446744073709551615})", "'max_tokens' is out of range"},
      {R"({"prompt": "x", "temperature": "hot"})", "'temperature' must be a number"},
      {R"({"prompt": "x", "temperature": 1e300})", "'temperature' is out of range"},
      {R"({"prompt": "x", "top_p": -1e39})", "'top_p' is out of range"},
      {R"({"prompt": "x", "echo": 1})", "'echo' must be a boolean"},
      {R"({"prompt": "x", "echo": true, "stream": true})", "not supported with 'stream'"},
      {R"({"prompt": "x", "n": 2})", "only n = 1"},
      {R"({"prompt": "x", "best_of": 3})", "best_of is not supported"},
      {R"({"prompt": "x", "logprobs": 21})", "'logprobs' must be an integer in [0, 20]"},
      {R"({"prompt": "x", "num_draft_tokens": 65})", "'num_draft_tokens' must be in [0, 64]"},
      {R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "at most 4 sequences"},
      {R"({"prompt": "x", "stop": [1]})", "'stop' must be a string or a list of strings"},
      {R"({"prompt": "x", "coupling": "gumbel"})", "'coupling' must be \"rejection\" or"},
      {R"({"prompt": "x", "coupling": 2})", "'coupling' must be \"rejection\" or"},
  };
  for (const auto& c : cases) {
    const Parsed p = Parse(c.body);
    EXPECT_FALSE(p.ok) << c.body;
    EXPECT_NE(p.error.find(c.message_part), std::string::npos) << c.body << ": " << p.error;
  }
}

TEST(OpenAiRequestTest, ModelMustBeTheServedOne) {
  int status = 0;
  std::string error;
  EXPECT_TRUE(CheckModel(json::parse(R"({"prompt": "x"})"), "tiny", &status, &error));
  EXPECT_TRUE(CheckModel(json::parse(R"({"model": null})"), "tiny", &status, &error));
  EXPECT_TRUE(CheckModel(json::parse(R"({"model": "tiny"})"), "tiny", &status, &error));
  EXPECT_FALSE(CheckModel(json::parse(R"({"model": "gpt-4"})"), "tiny", &status, &error));
  EXPECT_EQ(status, 404);
  EXPECT_NE(error.find("'gpt-4' does not exist; this gateway serves 'tiny'"), std::string::npos)
      << error;
  // Not echoed: a nested value would be deep to print.
  EXPECT_FALSE(CheckModel(json::parse(R"({"model": [[["x"]]]})"), "tiny", &status, &error));
  EXPECT_EQ(status, 400);
  EXPECT_EQ(error, "'model' must be a string");
}

v1::TokenLogprob Token(const std::string& bytes, float logprob, bool scored = true) {
  v1::TokenLogprob entry;
  entry.set_token(bytes);
  if (scored) entry.set_logprob(logprob);
  return entry;
}

TEST(OpenAiLogprobsTest, OffsetsCountCharactersAndSplitCharactersAreBytes) {
  CompletionLogprobs logprobs;
  logprobs.Add(Token("h\xc3\xa9", 0, /*scored=*/false));  // "hé": the prompt's first token
  logprobs.Add(Token("\xe2\x82", -1.5f));               // the first two bytes of "€"
  logprobs.Add(Token("\xac!", -0.5f));                   // its last byte, then "!"
  v1::TopLogprob* alternative = nullptr;
  v1::TokenLogprob with_top = Token("x", -0.25f);
  alternative = with_top.add_top();
  alternative->set_token("y");
  alternative->set_logprob(-0.1f);
  logprobs.Add(with_top);
  EXPECT_EQ(logprobs.Text(), "h\xc3\xa9\xe2\x82\xac!x");
  const json out = logprobs.ToJson();
  EXPECT_EQ(out["tokens"][0], "h\xc3\xa9");
  EXPECT_EQ(out["tokens"][1], "bytes:\\xe2\\x82");
  EXPECT_EQ(out["text_offset"], json::parse("[0, 2, 2, 4]"));
  EXPECT_TRUE(out["token_logprobs"][0].is_null());
  EXPECT_TRUE(out["top_logprobs"][0].is_null());
  EXPECT_FLOAT_EQ(out["token_logprobs"][1].get<float>(), -1.5f);
  // The alternatives first, then the chosen token, as OpenAI adds it.
  EXPECT_EQ(out["top_logprobs"][3].dump(), R"({"y":-0.10000000149011612,"x":-0.25})");
  logprobs.TruncateAt(5);  // the text ended inside "€": entries starting at or after byte 5 go
  EXPECT_EQ(logprobs.size(), 2u);
  EXPECT_EQ(logprobs.ToJson(1)["tokens"].size(), 1u);
}

TEST(OpenAiAnswerTest, CompletionUsageAndErrorShapes) {
  v1::Usage usage;
  usage.set_prompt_tokens(3);
  usage.set_generated_tokens(5);
  json out = CompletionChunk({"cmpl-1", 42, "tiny"}, "text", v1::FINISH_REASON_LENGTH, nullptr);
  out["usage"] = UsageJson(usage);
  EXPECT_EQ(out.dump(),
            R"({"id":"cmpl-1","object":"text_completion","created":42,"model":"tiny",)"
            R"("choices":[{"text":"text","index":0,"logprobs":null,"finish_reason":"length"}],)"
            R"("usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}})");
  EXPECT_TRUE(CompletionChunk({"cmpl-1", 42, "tiny"}, "t", v1::FINISH_REASON_UNSPECIFIED,
                              nullptr)["choices"][0]["finish_reason"]
                  .is_null());
  EXPECT_EQ(CompletionChunk({}, "", v1::FINISH_REASON_EOS, nullptr)["choices"][0]["finish_reason"],
            "stop");
  EXPECT_EQ(OpenAiError(429, "busy").dump(),
            R"({"error":{"message":"busy","type":"rate_limit_exceeded","param":null,"code":null}})");
  EXPECT_EQ(OpenAiError(404, "no", "model_not_found")["error"]["type"], "invalid_request_error");
  EXPECT_EQ(OpenAiError(404, "no", "model_not_found")["error"]["code"], "model_not_found");
  EXPECT_EQ(OpenAiError(503, "down")["error"]["type"], "service_unavailable");
  EXPECT_EQ(OpenAiError(500, "bug")["error"]["type"], "server_error");
}

}  // namespace
}  // namespace specdec
