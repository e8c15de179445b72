// OpenAI /v1/completions logprobs, echo, stop, seed and max_tokens, end to end over the
// gateway's real HTTP door: a random tiny checkpoint, the three services as child processes
// (the draft runs every layer, so greedy drafts are accepted and both sides of a round's
// log-probabilities - accepted drafts and the token that ends the round - are exercised), and
// every log-probability checked against `specdec-score` on the same ids.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "specdec/v1/gateway.grpc.pb.h"
#include "tests/integration/service_process.h"
#include "tests/observe/http_client.h"
#include "tests/observe/service_stack.h"

namespace specdec {
namespace {

using ::nlohmann::json;
using ::specdec::testing::ConnectLoopback;
using ::specdec::testing::HttpRequest;
using ::specdec::testing::HttpRequestText;
using ::specdec::testing::HttpResponse;
using ::specdec::testing::PickFreePort;
using ::specdec::testing::ServiceProcess;
using ::specdec::testing::ServiceStack;

const std::string kBin = SPECDEC_BINARY_DIR;
constexpr double kTolerance = 1e-4;
const std::vector<int32_t> kPrompt = {510, 3158, 8516, 30013, 27287, 689, 253, 22658, 4370, 15};

// specdec-score --json on `ids`: one line per position (logsumexp, top_ids, top_logits,
// next_logprob).
std::vector<json> Score(const std::string& model_dir, const std::vector<int32_t>& ids) {
  const std::string command =
      absl::StrCat(kBin, "/tools/score/specdec-score --model_dir ", model_dir,
                   " --device cpu --threads 1 --top_k 20 --json --ids ", absl::StrJoin(ids, ","));
  std::vector<json> lines;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return lines;
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) out.append(buffer, n);
  pclose(pipe);
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    json parsed = json::parse(line, nullptr, false);
    if (parsed.is_object() && parsed.contains("position")) lines.push_back(std::move(parsed));
  }
  return lines;
}

// The n most likely log-probabilities at a scored position, most likely first.
std::vector<double> TopLogprobs(const json& line, int n) {
  std::vector<double> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(line["top_logits"][i].get<double>() - line["logsumexp"].get<double>());
  }
  return out;
}

// A top_logprobs object's values, most likely first.
std::vector<double> SortedValues(const json& top) {
  std::vector<double> out;
  for (const auto& [key, value] : top.items()) out.push_back(value.get<double>());
  std::sort(out.rbegin(), out.rend());
  return out;
}

// Characters of UTF-8 text.
int64_t CountChars(const std::string& text) {
  return std::count_if(text.begin(), text.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

// text_offset starts at 0, never decreases, stays inside the text, and is the character count of
// the tokens before while they are whole characters (a "bytes:" token is part of one).
void ExpectOffsetsFollowTheTokens(const json& logprobs, const std::string& text) {
  std::string joined;
  bool whole = true;
  int64_t previous = 0;
  for (size_t i = 0; i < logprobs["tokens"].size(); ++i) {
    const int64_t offset = logprobs["text_offset"][i].get<int64_t>();
    const std::string token = logprobs["tokens"][i].get<std::string>();
    if (whole) EXPECT_EQ(offset, CountChars(joined)) << "token " << i;
    EXPECT_GE(offset, previous) << "token " << i;
    EXPECT_LE(offset, CountChars(text)) << "token " << i;
    previous = offset;
    whole = whole && !absl::StartsWith(token, "bytes:");
    joined += token;
  }
  EXPECT_TRUE(logprobs["tokens"].empty() || logprobs["text_offset"][0] == 0);
}

class CompletionsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new ServiceStack("completions");
    ASSERT_TRUE(stack_->MakeModel(11));
    model_dir_ = &stack_->model_dir();
    http_port_ = PickFreePort();
    ASSERT_TRUE(
        stack_->StartServices({}, {}, {absl::StrCat("--http_listen=127.0.0.1:", http_port_)}));
    gateway_ = stack_->gateway();
  }

  static void TearDownTestSuite() { delete stack_; }

  // gRPC Generate: every message's token ids and logprobs, and the last message.
  static grpc::Status Generate(const v1::GenerateRequest& request, std::vector<int32_t>* ids,
                               std::vector<v1::TokenLogprob>* logprobs,
                               v1::GenerateResponse* last) {
    auto stub = v1::Gateway::NewStub(
        grpc::CreateChannel(gateway_->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    auto reader = stub->Generate(&context, request);
    v1::GenerateResponse response;
    while (reader->Read(&response)) {
      ids->insert(ids->end(), response.token_ids().begin(), response.token_ids().end());
      if (logprobs != nullptr) {
        logprobs->insert(logprobs->end(), response.logprobs().begin(), response.logprobs().end());
      }
      if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) *last = response;
    }
    return reader->Finish();
  }

  static json Complete(const json& body, int expected_status = 200) {
    const HttpResponse response = HttpRequest(http_port_, "POST", "/v1/completions", body.dump());
    EXPECT_EQ(response.status, expected_status) << body.dump() << " -> " << response.body;
    json parsed = json::parse(response.body, nullptr, false);
    EXPECT_TRUE(parsed.is_object()) << response.body;
    return parsed;
  }

  static json PromptJson() { return json(kPrompt); }

  static ServiceStack* stack_;
  static const std::string* model_dir_;
  static ServiceProcess* gateway_;
  static int http_port_;
};

ServiceStack* CompletionsTest::stack_ = nullptr;
const std::string* CompletionsTest::model_dir_ = nullptr;
ServiceProcess* CompletionsTest::gateway_ = nullptr;
int CompletionsTest::http_port_ = 0;

// Greedy with K = 3 and a draft that agrees with the verifier: most tokens are accepted drafts,
// every round's last token is the bonus. Their log-probabilities are specdec-score's.
TEST_F(CompletionsTest, LogprobsOfGeneratedTokensEqualSpecdecScore) {
  v1::GenerateRequest request;
  for (int32_t id : kPrompt) request.add_prompt_ids(id);
  request.set_max_new_tokens(12);
  request.mutable_speculation()->set_num_draft_tokens(3);
  request.mutable_logprobs()->set_top_n(5);
  std::vector<int32_t> generated;
  std::vector<v1::TokenLogprob> grpc_logprobs;
  v1::GenerateResponse last;
  const grpc::Status status = Generate(request, &generated, &grpc_logprobs, &last);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_FALSE(generated.empty());
  EXPECT_GT(last.usage().accepted_tokens(), 0) << "no draft was accepted: the test would not "
                                                  "cover accepted drafts' logprobs";
  ASSERT_EQ(grpc_logprobs.size(), generated.size());

  std::vector<int32_t> all = kPrompt;
  all.insert(all.end(), generated.begin(), generated.end());
  const std::vector<json> score = Score(*model_dir_, all);
  ASSERT_EQ(score.size(), all.size());
  for (size_t i = 0; i < generated.size(); ++i) {
    const json& line = score[kPrompt.size() - 1 + i];
    EXPECT_EQ(grpc_logprobs[i].token_id(), generated[i]);
    ASSERT_TRUE(grpc_logprobs[i].has_logprob());
    EXPECT_NEAR(grpc_logprobs[i].logprob(), line["next_logprob"].get<double>(), kTolerance)
        << "token " << i;
    ASSERT_EQ(grpc_logprobs[i].top_size(), 5);
    const std::vector<double> top = TopLogprobs(line, 5);
    for (int j = 0; j < 5; ++j) {
      EXPECT_EQ(grpc_logprobs[i].top(j).token_id(), line["top_ids"][j].get<int32_t>());
      EXPECT_NEAR(grpc_logprobs[i].top(j).logprob(), top[j], kTolerance);
    }
  }

  // The same through HTTP: OpenAI's shape, the same numbers.
  const json out = Complete({{"prompt", PromptJson()},
                             {"max_tokens", 12},
                             {"temperature", 0},
                             {"num_draft_tokens", 3},
                             {"logprobs", 5}});
  const json& logprobs = out["choices"][0]["logprobs"];
  ASSERT_TRUE(logprobs.is_object()) << out.dump();
  ASSERT_EQ(logprobs["tokens"].size(), generated.size());
  ASSERT_EQ(logprobs["token_logprobs"].size(), generated.size());
  ASSERT_EQ(logprobs["top_logprobs"].size(), generated.size());
  ASSERT_EQ(logprobs["text_offset"].size(), generated.size());
  for (size_t i = 0; i < generated.size(); ++i) {
    const json& line = score[kPrompt.size() - 1 + i];
    EXPECT_NEAR(logprobs["token_logprobs"][i].get<double>(), line["next_logprob"].get<double>(),
                kTolerance);
    // Greedy: the chosen token is the most likely, so the object holds exactly the top 5.
    const std::vector<double> values = SortedValues(logprobs["top_logprobs"][i]);
    const std::vector<double> expected = TopLogprobs(line, 5);
    ASSERT_EQ(values.size(), 5u) << logprobs["top_logprobs"][i].dump();
    for (int j = 0; j < 5; ++j) EXPECT_NEAR(values[j], expected[j], kTolerance);
  }
  ExpectOffsetsFollowTheTokens(logprobs, out["choices"][0]["text"]);
}

// Sampling parameters change which token is drawn, never the reported numbers: with
// temperature 0.7 and top_p 0.5 the logprobs are still the model's own log-softmax.
TEST_F(CompletionsTest, LogprobsIgnoreTemperatureAndTopP) {
  v1::GenerateRequest request;
  for (int32_t id : kPrompt) request.add_prompt_ids(id);
  request.set_max_new_tokens(8);
  request.mutable_sampling()->set_temperature(0.7f);
  request.mutable_sampling()->set_top_p(0.5f);
  request.mutable_sampling()->set_seed(42);
  request.mutable_speculation()->set_num_draft_tokens(2);
  request.mutable_logprobs()->set_top_n(0);
  std::vector<int32_t> generated;
  std::vector<v1::TokenLogprob> logprobs;
  v1::GenerateResponse last;
  ASSERT_TRUE(Generate(request, &generated, &logprobs, &last).ok());
  ASSERT_EQ(logprobs.size(), generated.size());
  std::vector<int32_t> all = kPrompt;
  all.insert(all.end(), generated.begin(), generated.end());
  const std::vector<json> score = Score(*model_dir_, all);
  ASSERT_EQ(score.size(), all.size());
  for (size_t i = 0; i < generated.size(); ++i) {
    EXPECT_NEAR(logprobs[i].logprob(), score[kPrompt.size() - 1 + i]["next_logprob"].get<double>(),
                kTolerance);
    EXPECT_EQ(logprobs[i].top_size(), 0);
  }
}

// echo + max_tokens 0 scores the prompt only (lm-evaluation-harness's loglikelihood request):
// the first token has no logprob, the others are specdec-score's.
TEST_F(CompletionsTest, EchoWithMaxTokensZeroScoresThePrompt) {
  const std::vector<json> score = Score(*model_dir_, kPrompt);
  ASSERT_EQ(score.size(), kPrompt.size());
  const json out =
      Complete({{"prompt", PromptJson()}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 3}});
  const json& choice = out["choices"][0];
  EXPECT_EQ(choice["finish_reason"], "length");
  EXPECT_EQ(out["usage"]["completion_tokens"], 0);
  EXPECT_EQ(out["usage"]["prompt_tokens"], kPrompt.size());
  const json& logprobs = choice["logprobs"];
  ASSERT_EQ(logprobs["tokens"].size(), kPrompt.size()) << out.dump();
  EXPECT_TRUE(logprobs["token_logprobs"][0].is_null());
  EXPECT_TRUE(logprobs["top_logprobs"][0].is_null());
  EXPECT_EQ(logprobs["text_offset"][0], 0);
  std::string joined;
  for (size_t i = 0; i < kPrompt.size(); ++i) joined += logprobs["tokens"][i].get<std::string>();
  EXPECT_EQ(choice["text"].get<std::string>(), joined);
  for (size_t i = 1; i < kPrompt.size(); ++i) {
    EXPECT_NEAR(logprobs["token_logprobs"][i].get<double>(),
                score[i - 1]["next_logprob"].get<double>(), kTolerance)
        << "prompt token " << i;
    // The top 3 and the prompt token itself (OpenAI lists up to logprobs + 1).
    const json& top = logprobs["top_logprobs"][i];
    EXPECT_GE(top.size(), 3u);
    EXPECT_LE(top.size(), 4u);
    EXPECT_TRUE(top.contains(logprobs["tokens"][i].get<std::string>()));
    EXPECT_GT(logprobs["text_offset"][i].get<int64_t>(),
              logprobs["text_offset"][i - 1].get<int64_t>());
  }

  // echo with tokens generated: the prompt's entries, then the completion's.
  const json more = Complete({{"prompt", PromptJson()},
                              {"max_tokens", 4},
                              {"temperature", 0},
                              {"echo", true},
                              {"logprobs", 1}});
  const json& more_logprobs = more["choices"][0]["logprobs"];
  EXPECT_EQ(more_logprobs["tokens"].size(),
            kPrompt.size() + more["usage"]["completion_tokens"].get<size_t>());
  EXPECT_TRUE(absl::StartsWith(more["choices"][0]["text"].get<std::string>(), joined));
  EXPECT_NEAR(more_logprobs["token_logprobs"][1].get<double>(),
              logprobs["token_logprobs"][1].get<double>(), kTolerance);

  // A text prompt is echoed as its tokens spell it; echo without logprobs has logprobs null.
  const json text = Complete(
      {{"prompt", "The quick brown fox"}, {"max_tokens", 2}, {"temperature", 0}, {"echo", true}});
  EXPECT_TRUE(
      absl::StartsWith(text["choices"][0]["text"].get<std::string>(), "The quick brown fox"));
  EXPECT_TRUE(text["choices"][0]["logprobs"].is_null());
}

// A stop string cuts the text before it (finish_reason "stop") and the logprobs after the tokens
// that make up the text.
TEST_F(CompletionsTest, StopCutsTheTextAndTheLogprobs) {
  v1::GenerateRequest request;
  for (int32_t id : kPrompt) request.add_prompt_ids(id);
  request.set_max_new_tokens(24);
  request.mutable_logprobs()->set_top_n(0);
  std::vector<int32_t> ids;
  std::vector<v1::TokenLogprob> logprobs;
  v1::GenerateResponse last;
  ASSERT_TRUE(Generate(request, &ids, &logprobs, &last).ok());
  std::string bytes;
  std::vector<size_t> starts;
  for (const v1::TokenLogprob& entry : logprobs) {
    starts.push_back(bytes.size());
    bytes += entry.token();
  }
  const json full =
      Complete({{"prompt", PromptJson()}, {"max_tokens", 24}, {"temperature", 0}, {"logprobs", 0}});
  const std::string text = full["choices"][0]["text"];
  ASSERT_EQ(text, bytes) << "the completion is not whole UTF-8: pick another prompt";
  // A one-character stop string where the third token or a later one starts.
  size_t at = std::string::npos;
  for (size_t j = 2; j < starts.size() && at == std::string::npos; ++j) {
    if (starts[j] < text.size() && (static_cast<unsigned char>(text[starts[j]]) & 0xC0) != 0x80) {
      at = starts[j];
    }
  }
  ASSERT_NE(at, std::string::npos) << text;
  size_t length = 1;
  while (at + length < text.size() &&
         (static_cast<unsigned char>(text[at + length]) & 0xC0) == 0x80) {
    ++length;
  }
  const std::string stop = text.substr(at, length);
  const size_t cut_at = text.find(stop);  // the first occurrence may come earlier
  size_t kept = 0;
  while (kept < starts.size() && starts[kept] < cut_at) ++kept;

  const json cut = Complete({{"prompt", PromptJson()},
                             {"max_tokens", 24},
                             {"temperature", 0},
                             {"logprobs", 0},
                             {"stop", json::array({"never-in-this-text", stop})}});
  EXPECT_EQ(cut["choices"][0]["text"], text.substr(0, cut_at));
  EXPECT_EQ(cut["choices"][0]["finish_reason"], "stop");
  const json& cut_logprobs = cut["choices"][0]["logprobs"];
  EXPECT_EQ(cut_logprobs["tokens"].size(), kept) << cut.dump();
  ExpectOffsetsFollowTheTokens(cut_logprobs, cut["choices"][0]["text"]);
}

// The same seed gives the same sampled completion (negative seeds too); max_tokens is a limit.
TEST_F(CompletionsTest, SeedAndMaxTokens) {
  for (int64_t seed : {int64_t{7}, int64_t{-3}}) {
    const json body = {
        {"prompt", "Once upon a time"}, {"max_tokens", 10}, {"temperature", 1.0}, {"seed", seed}};
    const json a = Complete(body);
    const json b = Complete(body);
    EXPECT_EQ(a["choices"][0]["text"], b["choices"][0]["text"]) << "seed " << seed;
    EXPECT_LE(a["usage"]["completion_tokens"].get<int>(), 10);
  }
}

// Streaming with logprobs: the events' entries add up to the non-streamed ones.
TEST_F(CompletionsTest, StreamedLogprobsAddUp) {
  const json body = {
      {"prompt", PromptJson()}, {"max_tokens", 9}, {"temperature", 0}, {"logprobs", 2}};
  const json whole = Complete(body);
  json stream_body = body;
  stream_body["stream"] = true;
  const HttpResponse stream =
      HttpRequest(http_port_, "POST", "/v1/completions", stream_body.dump());
  ASSERT_EQ(stream.status, 200) << stream.body;
  std::vector<double> streamed;
  std::vector<int64_t> offsets;
  for (absl::string_view event : absl::StrSplit(stream.body, "\n\n", absl::SkipEmpty())) {
    const std::string data(event.substr(6));
    if (data == "[DONE]") continue;
    const json chunk = json::parse(data);
    const json& logprobs = chunk["choices"][0]["logprobs"];
    ASSERT_TRUE(logprobs.is_object()) << data;
    for (const json& value : logprobs["token_logprobs"]) streamed.push_back(value.get<double>());
    for (const json& value : logprobs["text_offset"]) offsets.push_back(value.get<int64_t>());
  }
  const json& expected = whole["choices"][0]["logprobs"];
  ASSERT_EQ(streamed.size(), expected["token_logprobs"].size());
  for (size_t i = 0; i < streamed.size(); ++i) {
    EXPECT_NEAR(streamed[i], expected["token_logprobs"][i].get<double>(), 1e-6);
    EXPECT_EQ(offsets[i], expected["text_offset"][i].get<int64_t>());
  }
}

// SIGTERM with an HTTP completion streaming: the HTTP API drains with the gRPC server (the
// completion gets the grace, then is cancelled), the stream ends and the gateway exits cleanly.
TEST_F(CompletionsTest, SigtermDrainsHttpCompletions) {
  const int port = PickFreePort();
  std::unique_ptr<ServiceProcess> gateway = stack_->Start(
      "/services/gateway/specdec-gateway",
      {"--model_dir=" + *model_dir_, "--verifier=" + stack_->verifier()->address(),
       "--draft=" + stack_->draft()->address(), absl::StrCat("--http_listen=127.0.0.1:", port),
       "--shutdown_grace_ms=200"},
      "gateway-drain");
  ASSERT_NE(gateway, nullptr);
  const int fd = ConnectLoopback(port);
  ASSERT_GE(fd, 0);
  const std::string request = HttpRequestText(
      "POST", "/v1/completions", R"({"prompt": [3, 1, 4], "max_tokens": 1500, "stream": true})");
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string seen;
  char buffer[4096];
  ssize_t n;
  while (seen.find("data: ") == std::string::npos && (n = read(fd, buffer, sizeof(buffer))) > 0) {
    seen.append(buffer, static_cast<size_t>(n));
  }
  ASSERT_NE(seen.find("data: "), std::string::npos) << seen;
  const int status = gateway->Signal(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << gateway->Log();
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) seen.append(buffer, static_cast<size_t>(n));
  close(fd);
  EXPECT_EQ(n, 0) << "the stream did not end cleanly";
}

TEST_F(CompletionsTest, BadLogprobsEchoAndStopGetOpenAiErrors) {
  struct Case {
    std::string name;
    json body;
  };
  const std::vector<Case> cases = {
      {"logprobs 21", {{"prompt", "hi"}, {"logprobs", 21}}},
      {"logprobs -1", {{"prompt", "hi"}, {"logprobs", -1}}},
      {"logprobs 1.5", {{"prompt", "hi"}, {"logprobs", 1.5}}},
      {"logprobs as a string", {{"prompt", "hi"}, {"logprobs", "5"}}},
      {"logprobs true", {{"prompt", "hi"}, {"logprobs", true}}},
      {"echo with stream", {{"prompt", "hi"}, {"echo", true}, {"stream", true}}},
      {"echo as a string", {{"prompt", "hi"}, {"echo", "yes"}}},
      {"max_tokens 0 without echo", {{"prompt", "hi"}, {"max_tokens", 0}}},
      {"max_tokens -1 with echo", {{"prompt", "hi"}, {"max_tokens", -1}, {"echo", true}}},
      {"5 stop strings", {{"prompt", "hi"}, {"stop", {"a", "b", "c", "d", "e"}}}},
      {"stop list with a number", {{"prompt", "hi"}, {"stop", {"a", 3}}}},
  };
  for (const Case& c : cases) {
    const HttpResponse response = HttpRequest(http_port_, "POST", "/v1/completions", c.body.dump());
    EXPECT_EQ(response.status, 400) << c.name << ": " << response.body;
    const json body = json::parse(response.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << c.name << ": " << response.body;
    EXPECT_EQ(body["error"]["type"], "invalid_request_error") << c.name;
    EXPECT_FALSE(body["error"]["message"].get<std::string>().empty()) << c.name;
    EXPECT_TRUE(body["error"].contains("param") && body["error"].contains("code")) << c.name;
  }

  // The gRPC API refuses the same things with INVALID_ARGUMENT.
  v1::GenerateRequest request;
  request.set_prompt("hi");
  request.mutable_logprobs()->set_top_n(21);
  std::vector<int32_t> ids;
  v1::GenerateResponse last;
  EXPECT_EQ(Generate(request, &ids, nullptr, &last).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  request.mutable_logprobs()->set_top_n(1);
  request.set_prompt_only(true);
  request.set_max_new_tokens(3);
  EXPECT_EQ(Generate(request, &ids, nullptr, &last).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace specdec
