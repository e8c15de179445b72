// The OpenAI JSON codec (library specdec_openai): OpenAI's legacy /v1/completions in terms of
// the gateway's gRPC API. The request body becomes a GenerateRequest (with OpenAI's defaults and
// limits); the gateway's answers become completion objects and stream chunks, its TokenLogprob
// entries `choices[0].logprobs` ({tokens, token_logprobs, top_logprobs, text_offset}), and its
// errors OpenAI's error objects. No I/O: http_server.cc does the HTTP. Request bodies are
// untrusted: every function here is fuzzed (services/gateway/fuzz).
#ifndef SPECDEC_SERVICES_GATEWAY_OPENAI_COMPLETIONS_H_
#define SPECDEC_SERVICES_GATEWAY_OPENAI_COMPLETIONS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "specdec/v1/gateway.pb.h"

namespace specdec {

// How the answer is shaped (beyond what the GenerateRequest says).
struct CompletionOptions {
  bool stream = false;
  bool echo = false;  // the prompt is part of the text (and of the logprobs)
  int logprobs = -1;  // -1: "logprobs": null
};

// The OpenAI request -> GenerateRequest; false with `error` (the message of a 400).
bool ToGenerateRequest(const nlohmann::ordered_json& body, int default_num_draft_tokens,
                       v1::GenerateRequest* request, CompletionOptions* options,
                       std::string* error);

// The request's "model", when present, must be the served model's name: false with the HTTP
// status (400 when it is not a string, 404 for another model) and the message.
bool CheckModel(const nlohmann::ordered_json& body, const std::string& served_model,
                int* http_status, std::string* error);

// "stop" or "length" (null for a message that is not the last).
const char* OpenAiFinishReason(v1::FinishReason reason);

// What every chunk of one completion repeats.
struct CompletionHeader {
  std::string id;       // "cmpl-..."
  int64_t created = 0;  // unix seconds
  std::string model;
};

// A text_completion object (the whole answer, or one chunk of a stream): one choice with `text`,
// `logprobs` (null or CompletionLogprobs::ToJson) and the finish reason (null until the last).
nlohmann::ordered_json CompletionChunk(const CompletionHeader& header, const std::string& text,
                                       v1::FinishReason reason, nlohmann::ordered_json logprobs);

// {"prompt_tokens", "completion_tokens", "total_tokens"}.
nlohmann::ordered_json UsageJson(const v1::Usage& usage);

// OpenAI's error object for an HTTP status: {"error": {message, type, param, code}}.
nlohmann::ordered_json OpenAiError(int http_status, const std::string& message,
                                   const char* code = nullptr);

// choices[0].logprobs, built as the tokens arrive. text_offset counts Unicode characters of the
// choice's text (prompt included with echo), the text being the tokens' bytes decoded as UTF-8.
class CompletionLogprobs {
 public:
  void Add(const v1::TokenLogprob& entry);
  // The text of every token added so far (invalid UTF-8 replaced by U+FFFD).
  std::string Text() const;
  // Bytes of the tokens added so far.
  size_t bytes() const { return bytes_.size(); }
  // Drops the entries that start at or after byte `text_bytes`: a stop string cut the text there.
  void TruncateAt(size_t text_bytes);
  size_t size() const { return entries_.size(); }
  // The logprobs object of entries [from, size()).
  nlohmann::ordered_json ToJson(size_t from = 0) const;

 private:
  struct Entry {
    v1::TokenLogprob token;
    size_t start_byte = 0;
    int64_t text_offset = 0;
  };
  std::vector<Entry> entries_;
  std::string bytes_;
  size_t decoded_bytes_ = 0;  // bytes_ before this have been counted in decoded_chars_
  int64_t decoded_chars_ = 0;
};

// A token's bytes as OpenAI spells a token: the text when it is valid UTF-8, else
// "bytes:\xe2\x80" (a piece of a character).
std::string TokenText(const std::string& bytes);

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_OPENAI_COMPLETIONS_H_
