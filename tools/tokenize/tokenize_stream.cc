// specdec-tokenize's line loop (see tokenize_stream.h).
#include "tools/tokenize/tokenize_stream.h"

#include <cstdint>
#include <string>
#include <vector>

#include "common/tokenizer/unicode_text.h"
#include "nlohmann/json.hpp"

namespace specdec {
namespace {

using nlohmann::json;

// Returns an empty string on success, else the error message.
std::string ProcessLine(const Tokenizer& tokenizer, bool decode, const std::string& line,
                        std::string* result) {
  json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return "line is not valid JSON";
  if (!request.is_object()) return "line must be a JSON object";
  if (decode) {
    if (!request.contains("ids") || !request["ids"].is_array()) return "expected {\"ids\": [...]}";
    std::vector<int32_t> ids;
    ids.reserve(request["ids"].size());
    for (const json& id : request["ids"]) {
      if (!id.is_number_integer()) return "ids must be integers";
      const int64_t value = id.get<int64_t>();
      if (value < 0 || value >= tokenizer.vocab_size()) {
        return "id " + std::to_string(value) + " is out of range";
      }
      ids.push_back(static_cast<int32_t>(value));
    }
    *result = json{{"text", Utf8Lossy(tokenizer.Decode(ids))}}.dump();
    return "";
  }
  if (!request.contains("text") || !request["text"].is_string()) {
    return "expected {\"text\": \"...\"}";
  }
  auto ids = tokenizer.Encode(request["text"].get_ref<const std::string&>());
  if (!ids.ok()) return std::string(ids.status().message());
  *result = json{{"ids", *ids}}.dump();
  return "";
}

}  // namespace

int RunTokenizeStream(const Tokenizer& tokenizer, bool decode, std::istream& in, std::ostream& out,
                      std::ostream& err) {
  int bad_lines = 0;
  int64_t line_number = 0;
  std::string line, result;
  while (std::getline(in, line)) {
    ++line_number;
    if (line.empty() || line == "\r") continue;
    const std::string error = ProcessLine(tokenizer, decode, line, &result);
    if (error.empty()) {
      out << result << '\n';
    } else {
      ++bad_lines;
      // The message may quote invalid UTF-8 from the input; dump() must not throw on it.
      err << json{{"line", line_number}, {"error", error}}.dump(-1, ' ', false,
                                                                json::error_handler_t::replace)
          << '\n';
    }
  }
  out.flush();
  return bad_lines;
}

}  // namespace specdec
