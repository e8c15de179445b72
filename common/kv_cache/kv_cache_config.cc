// Parsing and printing of KvCacheConfig (see kv_cache_config.h).
#include "common/kv_cache/kv_cache_config.h"

#include <algorithm>
#include <limits>
#include <map>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace specdec {
namespace {

const char* PolicyName(KvPolicy p) {
  switch (p) {
    case KvPolicy::kFull: return "full";
    case KvPolicy::kSinkWindow: return "sink_window";
    case KvPolicy::kH2o: return "h2o";
    case KvPolicy::kHierarchical: return "hierarchical";
    case KvPolicy::kQueryAware: return "query_aware";
  }
  return "?";
}

}  // namespace

bool KvCacheConfig::Evicts() const {
  return policy == KvPolicy::kSinkWindow || policy == KvPolicy::kH2o ||
         policy == KvPolicy::kHierarchical;
}

int64_t KvCacheConfig::CommittedLimit() const {
  switch (policy) {
    case KvPolicy::kSinkWindow: return sink + window;
    case KvPolicy::kH2o:
    case KvPolicy::kHierarchical: return budget;
    default: return -1;
  }
}

KvBoundaries KvCacheConfig::Boundaries() const {
  if (!Evicts()) return {};
  return KvBoundaries{CommittedLimit() + block_tokens, block_tokens};
}

int64_t KvBoundaries::Next(int64_t position) const {
  if (period <= 0) return std::numeric_limits<int64_t>::max();
  if (position < first) return first;
  return first + ((position - first) / period + 1) * period;
}

int64_t KvBoundaries::ForwardLimit(int64_t first_position) const {
  if (period <= 0) return std::numeric_limits<int64_t>::max();
  return std::max<int64_t>(1, Next(first_position) - first_position);
}

int64_t KvBoundaries::MaxDraftTokens(int64_t pending_position) const {
  if (period <= 0) return std::numeric_limits<int64_t>::max();
  return ForwardLimit(pending_position) - 1;
}

std::string KvCacheConfig::ToString() const {
  std::string text = ToStringWithoutBlock();
  if (block_tokens == KvCacheConfig().block_tokens) return text;
  return absl::StrCat(text, text.find(':') == std::string::npos ? ":" : ",", "block=", block_tokens);
}

std::string KvCacheConfig::ToStringWithoutBlock() const {
  std::string s = int8 ? "int8+" : "";
  switch (policy) {
    case KvPolicy::kFull:
      return int8 ? "int8" : "full";
    case KvPolicy::kSinkWindow:
      return absl::StrCat(s, "sink_window:sink=", sink, ",window=", window);
    case KvPolicy::kH2o:
      return absl::StrCat(s, "h2o:budget=", budget, ",recent=", recent);
    case KvPolicy::kHierarchical:
      return absl::StrCat(s, "hierarchical:sink=", sink, ",recent=", recent, ",budget=", budget,
                          ",pool=", pool);
    case KvPolicy::kQueryAware:
      return absl::StrCat(s, "query_aware:pages=", pages);
  }
  return s;
}

int64_t KvCacheConfig::BytesPerToken(int64_t layers, int64_t heads, int64_t head_dim,
                                     int64_t float_bytes) const {
  // K and V; int8 adds one f32 scale per token, head and tensor.
  const int64_t per_head = int8 ? head_dim * 1 + 4 : head_dim * float_bytes;
  return layers * heads * 2 * per_head;
}

absl::StatusOr<KvCacheConfig> ParseKvCacheConfig(absl::string_view text) {
  KvCacheConfig c;
  absl::string_view rest = absl::StripAsciiWhitespace(text);
  if (rest.empty()) return absl::InvalidArgumentError("empty KV cache policy");
  if (absl::ConsumePrefix(&rest, "int8+")) c.int8 = true;
  absl::string_view name = rest, params;
  if (size_t colon = rest.find(':'); colon != absl::string_view::npos) {
    name = rest.substr(0, colon);
    params = rest.substr(colon + 1);
  }
  std::map<std::string, int64_t*> keys = {{"block", &c.block_tokens}, {"pool_blocks", &c.pool_blocks}};
  if (name == "full") {
    c.policy = KvPolicy::kFull;
  } else if (name == "int8" && !c.int8) {
    c.int8 = true;
  } else if (name == "sink_window") {
    c.policy = KvPolicy::kSinkWindow;
    keys.insert({{"sink", &c.sink}, {"window", &c.window}});
  } else if (name == "h2o") {
    c.policy = KvPolicy::kH2o;
    keys.insert({{"budget", &c.budget}, {"recent", &c.recent}});
  } else if (name == "hierarchical") {
    c.policy = KvPolicy::kHierarchical;
    keys.insert({{"sink", &c.sink}, {"recent", &c.recent}, {"budget", &c.budget}, {"pool", &c.pool}});
  } else if (name == "query_aware") {
    c.policy = KvPolicy::kQueryAware;
    keys.insert({{"pages", &c.pages}});
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown KV cache policy \"", name,
        "\" (want full, int8, sink_window, h2o, hierarchical, query_aware, or int8+<policy>)"));
  }
  if (!params.empty()) {
    for (absl::string_view kv : absl::StrSplit(params, ',')) {
      std::vector<absl::string_view> parts = absl::StrSplit(kv, absl::MaxSplits('=', 1));
      int64_t value = 0;
      auto it = keys.find(std::string(absl::StripAsciiWhitespace(parts[0])));
      if (parts.size() != 2 || it == keys.end()) {
        std::vector<std::string> names;
        for (const auto& [k, unused] : keys) names.push_back(k);
        return absl::InvalidArgumentError(absl::StrCat("KV cache policy ", name, ": bad parameter \"",
                                                       kv, "\" (known: ", absl::StrJoin(names, ", "), ")"));
      }
      if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(parts[1]), &value) || value < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("KV cache policy ", name, ": \"", kv, "\" needs a non-negative integer"));
      }
      *it->second = value;
    }
  }
  if (c.block_tokens < 1) return absl::InvalidArgumentError("KV cache block must be >= 1 token");
  if (c.policy == KvPolicy::kSinkWindow && c.window < 1) {
    return absl::InvalidArgumentError("sink_window needs window >= 1");
  }
  if (c.policy == KvPolicy::kH2o && (c.recent < 1 || c.budget <= c.recent)) {
    return absl::InvalidArgumentError("h2o needs 1 <= recent < budget");
  }
  if (c.policy == KvPolicy::kHierarchical &&
      (c.recent < 1 || c.pool < 2 || c.budget <= c.sink + c.recent)) {
    return absl::InvalidArgumentError("hierarchical needs recent >= 1, pool >= 2 and budget > sink + recent");
  }
  if (c.policy == KvPolicy::kQueryAware && c.pages < 1) {
    return absl::InvalidArgumentError("query_aware needs pages >= 1");
  }
  return c;
}

}  // namespace specdec
