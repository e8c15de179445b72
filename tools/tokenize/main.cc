// specdec-tokenize: tokenizes JSON lines on stdin with a tokenizer.json, for scripts and for
// comparing against the Hugging Face reference. See tools/tokenize/tokenize_stream.h.
#include <iostream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "common/tokenizer/tokenizer.h"
#include "tools/tokenize/tokenize_stream.h"

ABSL_FLAG(std::string, tokenizer, "", "Path to a Hugging Face tokenizer.json.");
ABSL_FLAG(bool, decode, false, "Read {\"ids\": [...]} lines and write {\"text\": ...} lines.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "specdec-tokenize --tokenizer FILE [--decode] < in.jsonl > out.jsonl\n"
      "Encode: {\"text\": ...} -> {\"ids\": [...]}. Decode: {\"ids\": [...]} -> {\"text\": ...}.");
  absl::ParseCommandLine(argc, argv);
  const std::string path = absl::GetFlag(FLAGS_tokenizer);
  if (path.empty()) {
    std::cerr << "--tokenizer is required\n";
    return 2;
  }
  auto tokenizer = specdec::Tokenizer::FromFile(path);
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status() << "\n";
    return 2;
  }
  std::ios::sync_with_stdio(false);
  const int bad_lines = specdec::RunTokenizeStream(**tokenizer, absl::GetFlag(FLAGS_decode),
                                                   std::cin, std::cout, std::cerr);
  return bad_lines == 0 ? 0 : 1;
}
