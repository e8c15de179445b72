// OpenAI completions <-> the gateway's gRPC API (see openai_completions.h).
#include "services/gateway/openai_completions.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/sampling/logprobs.h"
#include "common/tokenizer/unicode_text.h"

namespace specdec {
namespace {

// Responses keep their fields in the order written (id, object, ... as OpenAI sends them;
// top_logprobs most likely first), not sorted by key.
using json = nlohmann::ordered_json;

// OpenAI's limit on stop sequences (the gRPC API takes up to 16).
constexpr size_t kMaxOpenAiStops = 4;

// A JSON number that must be an integer (OpenAI sends max_tokens: 16, never 16.0).
bool GetInt(const json& body, const char* key, int64_t* out, std::string* error) {
  if (!body.contains(key) || body[key].is_null()) return true;
  if (!body[key].is_number_integer()) {
    *error = absl::StrCat("'", key, "' must be an integer");
    return false;
  }
  // nlohmann keeps large positive integers as uint64: they would wrap to negative int64.
  if (body[key].is_number_unsigned() && body[key].get<uint64_t>() > INT64_MAX) {
    *error = absl::StrCat("'", key, "' is out of range");
    return false;
  }
  *out = body[key].get<int64_t>();
  return true;
}

// A number that becomes a float field: beyond float's range the conversion would be undefined.
bool GetNumber(const json& body, const char* key, double* out, std::string* error) {
  if (!body.contains(key) || body[key].is_null()) return true;
  if (!body[key].is_number()) {
    *error = absl::StrCat("'", key, "' must be a number");
    return false;
  }
  *out = body[key].get<double>();
  if (!(std::fabs(*out) <= std::numeric_limits<float>::max())) {
    *error = absl::StrCat("'", key, "' is out of range");
    return false;
  }
  return true;
}

bool GetBool(const json& body, const char* key, bool* out, std::string* error) {
  if (!body.contains(key) || body[key].is_null()) return true;
  if (!body[key].is_boolean()) {
    *error = absl::StrCat("'", key, "' must be a boolean");
    return false;
  }
  *out = body[key].get<bool>();
  return true;
}

bool SetPrompt(const json& body, v1::GenerateRequest* request, std::string* error) {
  if (!body.contains("prompt")) {
    *error = "'prompt' is required";
    return false;
  }
  const json& prompt = body["prompt"];
  if (prompt.is_string()) {
    request->set_prompt(prompt.get<std::string>());
  } else if (prompt.is_array() && prompt.size() == 1 && prompt[0].is_string()) {
    request->set_prompt(prompt[0].get<std::string>());
  } else if (prompt.is_array() && !prompt.empty() && prompt[0].is_number_integer()) {
    for (const json& id : prompt) {
      // Checked before narrowing: 2^32 + 5 must not become token 5. The vocabulary bound is
      // the gateway's check.
      const bool fits =
          id.is_number_unsigned()
              ? id.get<uint64_t>() <= INT32_MAX
              : id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() <= INT32_MAX;
      if (!fits) {
        *error = "'prompt' as token ids must hold non-negative 32-bit integers only";
        return false;
      }
      request->add_prompt_ids(static_cast<int32_t>(id.get<int64_t>()));
    }
  } else {
    *error =
        "'prompt' must be a string, a list of one string, or a list of token ids "
        "(batches of prompts are not supported)";
    return false;
  }
  return true;
}

bool SetStop(const json& body, v1::GenerateRequest* request, std::string* error) {
  if (!body.contains("stop") || body["stop"].is_null()) return true;
  const json& stop = body["stop"];
  if (stop.is_string()) {
    request->add_stop(stop.get<std::string>());
    return true;
  }
  if (!stop.is_array()) {
    *error = "'stop' must be a string or a list of strings";
    return false;
  }
  if (stop.size() > kMaxOpenAiStops) {
    *error =
        absl::StrCat("'stop' takes at most ", kMaxOpenAiStops, " sequences, got ", stop.size());
    return false;
  }
  for (const json& s : stop) {
    if (!s.is_string()) {
      *error = "'stop' must be a string or a list of strings";
      return false;
    }
    request->add_stop(s.get<std::string>());
  }
  return true;
}

// Characters of valid UTF-8 text: bytes that do not continue a character.
int64_t CountChars(const std::string& text) {
  return std::count_if(text.begin(), text.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

}  // namespace

bool ToGenerateRequest(const json& body, int default_num_draft_tokens, v1::GenerateRequest* request,
                       CompletionOptions* options, std::string* error) {
  if (!body.is_object()) {
    *error = "the request body must be a JSON object";
    return false;
  }
  if (!SetPrompt(body, request, error)) return false;
  int64_t max_tokens = 16;  // OpenAI's default
  int64_t seed = 0;
  int64_t n = 1;
  int64_t top_k = 0;
  int64_t k = default_num_draft_tokens;
  int64_t logprobs = -1;
  double temperature = 1.0;  // OpenAI's default
  double top_p = 1.0;
  bool adaptive = false;
  if (!GetInt(body, "max_tokens", &max_tokens, error) || !GetInt(body, "seed", &seed, error) ||
      !GetInt(body, "n", &n, error) || !GetInt(body, "top_k", &top_k, error) ||
      !GetInt(body, "num_draft_tokens", &k, error) ||
      !GetNumber(body, "temperature", &temperature, error) ||
      !GetNumber(body, "top_p", &top_p, error) || !GetBool(body, "echo", &options->echo, error) ||
      !GetBool(body, "stream", &options->stream, error) ||
      !GetBool(body, "adaptive", &adaptive, error)) {
    return false;
  }
  if (body.contains("logprobs") && !body["logprobs"].is_null()) {
    if (!GetInt(body, "logprobs", &logprobs, error) || logprobs < 0 || logprobs > kMaxTopLogprobs) {
      *error = absl::StrCat("'logprobs' must be an integer in [0, ", kMaxTopLogprobs, "]");
      return false;
    }
  }
  // max_tokens 0 with echo scores the prompt and generates nothing (lm-evaluation-harness's
  // loglikelihood requests); without echo it would return nothing at all.
  if (max_tokens < (options->echo ? 0 : 1) || max_tokens > INT32_MAX) {
    *error = options->echo
                 ? "'max_tokens' must be in [0, 2147483647] (and at most the gateway's cap)"
                 : "'max_tokens' must be in [1, 2147483647] (and at most the gateway's cap); "
                   "0 only with echo";
    return false;
  }
  if (options->echo && options->stream) {
    *error = "'echo' is not supported with 'stream'";
    return false;
  }
  if (n != 1) {
    *error = "only n = 1 is supported";
    return false;
  }
  if (body.contains("best_of") && !body["best_of"].is_null() && body["best_of"] != 1) {
    *error = "best_of is not supported";
    return false;
  }
  if (k < 0 || k > 64 || top_k < 0 || top_k > INT32_MAX) {
    *error = "'num_draft_tokens' must be in [0, 64] and 'top_k' >= 0";
    return false;
  }
  if (!SetStop(body, request, error)) return false;
  if (max_tokens == 0) {
    request->set_prompt_only(true);
  } else {
    request->set_max_new_tokens(static_cast<int32_t>(max_tokens));
  }
  v1::SamplingParameters* sampling = request->mutable_sampling();
  sampling->set_temperature(static_cast<float>(temperature));
  sampling->set_top_p(static_cast<float>(top_p));
  sampling->set_top_k(static_cast<int32_t>(top_k));
  // Any integer is a seed (negative ones too, as two's complement). Without one, sampled
  // completions differ from call to call, as OpenAI's do.
  const bool has_seed = body.contains("seed") && !body["seed"].is_null();
  uint64_t chosen_seed = static_cast<uint64_t>(seed);
  if (!has_seed && temperature > 0) chosen_seed = std::random_device{}();
  sampling->set_seed(chosen_seed);
  if (body.contains("coupling") && !body["coupling"].is_null()) {
    const json& coupling = body["coupling"];
    if (!coupling.is_string() ||
        (coupling != "rejection" && coupling != "shared_noise")) {
      *error = "'coupling' must be \"rejection\" or \"shared_noise\"";
      return false;
    }
    sampling->set_coupling(coupling == "shared_noise" ? v1::SAMPLING_COUPLING_SHARED_NOISE
                                                      : v1::SAMPLING_COUPLING_REJECTION);
  }
  request->mutable_speculation()->set_num_draft_tokens(static_cast<int32_t>(k));
  request->mutable_speculation()->set_adaptive(adaptive);
  options->logprobs = static_cast<int>(logprobs);
  // Echo needs the prompt's tokens (their text is part of the answer): the gateway sends them
  // scored.
  if (options->logprobs >= 0 || options->echo) {
    request->mutable_logprobs()->set_top_n(std::max(0, options->logprobs));
    request->mutable_logprobs()->set_prompt(options->echo);
  }
  return true;
}

bool CheckModel(const json& body, const std::string& served_model, int* http_status,
                std::string* error) {
  if (!body.is_object() || !body.contains("model") || body["model"].is_null()) return true;
  // The message never echoes a non-string "model": a deeply nested one would be costly (and
  // deep) to print.
  if (!body["model"].is_string()) {
    *http_status = 400;
    *error = "'model' must be a string";
    return false;
  }
  if (body["model"].get<std::string>() == served_model) return true;
  *http_status = 404;
  *error = absl::StrCat("the model '", body["model"].get<std::string>(),
                        "' does not exist; this gateway serves '", served_model, "'");
  return false;
}

json CompletionChunk(const CompletionHeader& header, const std::string& text,
                     v1::FinishReason reason, json logprobs) {
  const char* finish = OpenAiFinishReason(reason);
  return json{{"id", header.id},
              {"object", "text_completion"},
              {"created", header.created},
              {"model", header.model},
              {"choices", json::array({{{"text", text},
                                        {"index", 0},
                                        {"logprobs", std::move(logprobs)},
                                        {"finish_reason", finish ? json(finish) : json(nullptr)}}})}};
}

json UsageJson(const v1::Usage& usage) {
  return json{{"prompt_tokens", usage.prompt_tokens()},
              {"completion_tokens", usage.generated_tokens()},
              {"total_tokens", usage.prompt_tokens() + usage.generated_tokens()}};
}

namespace {

const char* ErrorType(int http_status) {
  switch (http_status) {
    case 400:
    case 404:
    case 405:
    case 413:
      return "invalid_request_error";
    case 429:
      return "rate_limit_exceeded";
    case 503:
    case 504:
      return "service_unavailable";
    default:
      return "server_error";
  }
}

}  // namespace

json OpenAiError(int http_status, const std::string& message, const char* code) {
  return {{"error",
           {{"message", message},
            {"type", ErrorType(http_status)},
            {"param", nullptr},
            {"code", code == nullptr ? json(nullptr) : json(code)}}}};
}

const char* OpenAiFinishReason(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_EOS:
    case v1::FINISH_REASON_STOP:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
    case v1::FINISH_REASON_CONTEXT:
      return "length";
    default:
      return nullptr;
  }
}

std::string TokenText(const std::string& bytes) {
  if (IsValidUtf8(bytes)) return bytes;
  std::string out = "bytes:";
  for (unsigned char c : bytes) absl::StrAppendFormat(&out, "\\x%02x", c);
  return out;
}

void CompletionLogprobs::Add(const v1::TokenLogprob& entry) {
  Entry added;
  added.token = entry;
  added.start_byte = bytes_.size();
  // Characters before the token in the text (UTF-8-repaired as the text is). A character still
  // incomplete at the token's start is left for later: a token that begins inside a character
  // points at that character.
  std::string decoded;
  decoded_bytes_ += AppendUtf8Lossy(std::string_view(bytes_).substr(decoded_bytes_),
                                    /*final=*/false, &decoded);
  decoded_chars_ += CountChars(decoded);
  added.text_offset = decoded_chars_;
  bytes_ += entry.token();
  entries_.push_back(std::move(added));
}

std::string CompletionLogprobs::Text() const { return Utf8Lossy(bytes_); }

void CompletionLogprobs::TruncateAt(size_t text_bytes) {
  while (!entries_.empty() && entries_.back().start_byte >= text_bytes) entries_.pop_back();
}

json CompletionLogprobs::ToJson(size_t from) const {
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(),
       text_offset = json::array();
  for (size_t i = from; i < entries_.size(); ++i) {
    const v1::TokenLogprob& token = entries_[i].token;
    const std::string text = TokenText(token.token());
    tokens.push_back(text);
    text_offset.push_back(entries_[i].text_offset);
    if (!token.has_logprob()) {  // the prompt's first token: nothing to condition on
      token_logprobs.push_back(nullptr);
      top_logprobs.push_back(nullptr);
      continue;
    }
    token_logprobs.push_back(token.logprob());
    // The top_n alternatives and, as OpenAI always adds it, the chosen token (up to n + 1).
    json top = json::object();
    for (const v1::TopLogprob& alternative : token.top()) {
      const std::string key = TokenText(alternative.token());
      if (!top.contains(key)) top[key] = alternative.logprob();
    }
    if (!top.contains(text)) top[text] = token.logprob();
    top_logprobs.push_back(std::move(top));
  }
  return json{{"tokens", std::move(tokens)},
              {"token_logprobs", std::move(token_logprobs)},
              {"top_logprobs", std::move(top_logprobs)},
              {"text_offset", std::move(text_offset)}};
}

}  // namespace specdec
