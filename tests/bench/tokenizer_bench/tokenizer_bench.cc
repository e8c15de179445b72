// Single-thread encode throughput of specdec_tokenizer on a JSON-lines corpus ({"text": ...} per
// document). Used by tests/bench/tokenize_throughput.sh next to the HF tokenizers measurement.
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "common/tokenizer/tokenizer.h"
#include "nlohmann/json.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: tokenizer_bench TOKENIZER_JSON CORPUS_JSONL [REPEATS]\n";
    return 2;
  }
  const int repeats = argc > 3 ? std::stoi(argv[3]) : 3;
  auto tokenizer = specdec::Tokenizer::FromFile(argv[1]);
  if (!tokenizer.ok()) {
    std::cerr << tokenizer.status() << "\n";
    return 1;
  }
  std::ifstream in(argv[2]);
  std::vector<std::string> docs;
  size_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    docs.push_back(nlohmann::json::parse(line)["text"].get<std::string>());
    bytes += docs.back().size();
  }
  // The first pass fills the per-word cache, like any long-running server; it is reported too.
  double best = 1e30, first = 0;
  uint64_t tokens = 0, checksum = 0;
  for (int r = 0; r < repeats; ++r) {
    tokens = 0;
    checksum = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& doc : docs) {
      auto ids = (*tokenizer)->Encode(doc);
      if (!ids.ok()) {
        std::cerr << ids.status() << "\n";
        return 1;
      }
      tokens += ids->size();
      for (int32_t id : *ids) checksum = checksum * 1000003u + static_cast<uint32_t>(id);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r == 0) first = seconds;
    best = std::min(best, seconds);
  }
  std::cout << nlohmann::json{{"impl", "specdec"},
                              {"docs", docs.size()},
                              {"bytes", bytes},
                              {"tokens", tokens},
                              {"checksum", std::to_string(checksum)},
                              {"first_pass_s", first},
                              {"best_s", best},
                              {"first_pass_mb_s", bytes / first / 1e6},
                              {"best_mb_s", bytes / best / 1e6}}
                   .dump()
            << "\n";
  return 0;
}
