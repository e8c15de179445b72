// libFuzzer target: arbitrary bytes as a /v1/completions request body, and as the token bytes of
// logprob entries. The codec must refuse or accept without crashing; an accepted request must
// satisfy what the gateway's own validation relies on, and every answer it builds must print as
// JSON.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "nlohmann/json.hpp"
#include "services/gateway/openai_completions.h"

namespace {

using json = nlohmann::ordered_json;

void CheckRequest(const json& body) {
  int http_status = 0;
  std::string error;
  if (!specdec::CheckModel(body, "fuzz-model", &http_status, &error)) {
    if (http_status != 400 && http_status != 404) std::abort();
    if (error.empty()) std::abort();
  }
  specdec::v1::GenerateRequest request;
  specdec::CompletionOptions options;
  error.clear();
  if (!specdec::ToGenerateRequest(body, 4, &request, &options, &error)) {
    if (error.empty()) std::abort();
    (void)specdec::OpenAiError(400, error).dump(-1, ' ', false, json::error_handler_t::replace);
    return;
  }
  if (request.prompt().empty() && request.prompt_ids_size() == 0 && !body["prompt"].is_string()) {
    std::abort();  // a prompt that is neither text nor ids
  }
  for (int32_t id : request.prompt_ids()) {
    if (id < 0) std::abort();
  }
  if (request.prompt_only() ? !options.echo : request.max_new_tokens() < 1) std::abort();
  if (request.stop_size() > 4) std::abort();
  const int k = request.speculation().num_draft_tokens();
  if (k < 0 || k > 64 || request.sampling().top_k() < 0) std::abort();
  if (options.logprobs < -1 || options.logprobs > 20) std::abort();
  if (options.echo && options.stream) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!body.is_discarded()) CheckRequest(body);

  // The same bytes, cut into tokens, as a logprobs answer: offsets never decrease, and the JSON
  // prints (tokens that are not UTF-8 are spelled as bytes).
  specdec::CompletionLogprobs logprobs;
  for (size_t at = 0; at < size;) {
    const size_t len = 1 + data[at] % 5;
    specdec::v1::TokenLogprob entry;
    entry.set_token(text.substr(at, len));
    if (at > 0) entry.set_logprob(-1.0f * static_cast<float>(at));
    entry.add_top()->set_token(text.substr(at / 2, len));
    logprobs.Add(entry);
    at += len;
  }
  const json out = logprobs.ToJson();
  int64_t last = -1;
  for (const json& offset : out["text_offset"]) {
    if (offset.get<int64_t>() < last) std::abort();
    last = offset.get<int64_t>();
  }
  (void)out.dump();  // throws (and aborts) on invalid UTF-8
  logprobs.TruncateAt(size / 2);
  if (logprobs.bytes() != size) std::abort();  // TruncateAt drops entries, never bytes
  (void)specdec::CompletionChunk({"cmpl-fuzz", 0, "fuzz-model"}, logprobs.Text(),
                                 specdec::v1::FINISH_REASON_STOP, logprobs.ToJson())
      .dump();
  return 0;
}
