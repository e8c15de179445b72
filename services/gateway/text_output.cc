// Streaming text with stop strings (see text_output.h).
#include "services/gateway/text_output.h"

#include <algorithm>

namespace specdec {

TextOutput::TextOutput(const Tokenizer* tokenizer, std::vector<std::string> stops)
    : stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
  if (tokenizer != nullptr) decoder_ = std::make_unique<IncrementalDecoder>(*tokenizer);
}

std::string TextOutput::Add(int32_t token, bool* stopped) {
  *stopped = false;
  if (decoder_ == nullptr) return "";
  held_ += decoder_->Add(token);
  return Release(stopped);
}

std::string TextOutput::Finish(bool* stopped) {
  *stopped = false;
  if (decoder_ == nullptr) return "";
  held_ += decoder_->Flush();
  std::string out = Release(stopped);
  if (!*stopped) {
    out += held_;
    held_.clear();
  }
  return out;
}

std::string TextOutput::Release(bool* stopped) {
  // A stop string can only start inside held_: anything that could begin one was held back.
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) first = std::min(first, held_.find(stop));
  if (first != std::string::npos) {
    *stopped = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Keep the longest suffix that is a proper prefix of some stop string. It starts at a
  // character boundary because a stop string starts with one.
  size_t keep = 0;
  for (const std::string& stop : stops_) {
    for (size_t len = std::min(stop.size() - 1, held_.size()); len > keep; --len) {
      if (held_.compare(held_.size() - len, len, stop, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

}  // namespace specdec
