// Backend replicas, their health and the session -> replica hash (see replica_set.h).
#include "services/gateway/replica_set.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "common/base/log.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace specdec {
namespace {

uint64_t Mix64(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address) {
  grpc::ChannelArguments args;
  // A restarted replica is found again within ~2 s, not gRPC's default of up to 120 s.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  // One connection per replica, not shared with other channels of the process.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

bool ByScoreDesc(const std::pair<uint64_t, std::shared_ptr<Replica>>& a,
                 const std::pair<uint64_t, std::shared_ptr<Replica>>& b) {
  if (a.first != b.first) return a.first > b.first;
  return a.second->address() < b.second->address();
}

}  // namespace

Replica::Replica(std::string address, std::shared_ptr<grpc::Channel> channel)
    : address_(std::move(address)),
      channel_(std::move(channel)),
      verifier_(v1::Verifier::NewStub(channel_)),
      draft_(v1::Draft::NewStub(channel_)) {}

absl::StatusOr<std::vector<ReplicaSet::Entry>> ReplicaSet::ParseTarget(const std::string& target) {
  std::vector<Entry> entries;
  for (absl::string_view piece : absl::StrSplit(target, ',')) {
    piece = absl::StripAsciiWhitespace(piece);
    if (piece.empty()) continue;
    Entry entry;
    if (absl::ConsumePrefix(&piece, "dns:")) {
      entry.dns = true;
      if (absl::ConsumePrefix(&piece, "//")) {  // dns://[authority]/name:port
        const size_t slash = piece.find('/');
        if (slash == absl::string_view::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat("\"", target, "\": a dns target is dns:///name:port"));
        }
        piece.remove_prefix(slash + 1);
      }
      const size_t colon = piece.rfind(':');
      int port = 0;
      if (colon == absl::string_view::npos || colon == 0 ||
          !absl::SimpleAtoi(piece.substr(colon + 1), &port) || port <= 0 || port > 65535) {
        return absl::InvalidArgumentError(absl::StrCat(
            "\"", target, "\": dns entries need a name and a port (dns:///name:port)"));
      }
    }
    entry.text = std::string(piece);
    entries.push_back(std::move(entry));
  }
  if (entries.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", target, "\" names no address"));
  }
  return entries;
}

absl::StatusOr<std::vector<std::string>> ReplicaSet::Resolve(const std::string& name_port) {
  const size_t colon = name_port.rfind(':');
  std::string host = name_port.substr(0, colon);
  const std::string port = name_port.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", name_port, ": ", gai_strerror(rc)));
  }
  std::set<std::string> addresses;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    char text[INET6_ADDRSTRLEN] = {0};
    if (ai->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(ai->ai_addr)->sin_addr, text, sizeof(text));
      addresses.insert(absl::StrCat(text, ":", port));
    } else if (ai->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(ai->ai_addr)->sin6_addr, text,
                sizeof(text));
      addresses.insert(absl::StrCat("[", text, "]:", port));
    }
  }
  freeaddrinfo(result);
  return std::vector<std::string>(addresses.begin(), addresses.end());
}

uint64_t ReplicaSet::Score(const std::string& session_id, const std::string& address) {
  uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a, then a finalizer for the high bits
  auto add = [&h](unsigned char c) {
    h ^= c;
    h *= 0x100000001b3ULL;
  };
  for (char c : session_id) add(static_cast<unsigned char>(c));
  add(0xff);
  for (char c : address) add(static_cast<unsigned char>(c));
  return Mix64(h);
}

absl::StatusOr<std::unique_ptr<ReplicaSet>> ReplicaSet::Create(const ReplicaSetOptions& options) {
  absl::StatusOr<std::vector<Entry>> entries = ParseTarget(options.target);
  if (!entries.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", options.kind, ": ", entries.status().message()));
  }
  std::unique_ptr<ReplicaSet> set(new ReplicaSet(options, *std::move(entries)));
  set->SetAddresses(set->CurrentAddresses());
  {
    absl::MutexLock lock(&set->mu_);
    set->next_resolve_ = absl::Now() + options.dns_refresh;
  }
  set->prober_ = std::thread([raw = set.get()] { raw->ProberLoop(); });
  return set;
}

ReplicaSet::ReplicaSet(ReplicaSetOptions options, std::vector<Entry> entries)
    : options_(std::move(options)), entries_(std::move(entries)) {}

ReplicaSet::~ReplicaSet() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (prober_.joinable()) prober_.join();
}

std::vector<std::string> ReplicaSet::CurrentAddresses() {
  std::vector<std::string> addresses;
  std::vector<std::string> previous;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& replica : replicas_) previous.push_back(replica->address());
  }
  for (const Entry& entry : entries_) {
    if (!entry.dns) {
      addresses.push_back(entry.text);
      continue;
    }
    absl::StatusOr<std::vector<std::string>> resolved = Resolve(entry.text);
    if (resolved.ok() && !resolved->empty()) {
      addresses.insert(addresses.end(), resolved->begin(), resolved->end());
      continue;
    }
    // A failed lookup keeps what the name had (DNS hiccups must not empty the set).
    SPECDEC_LOG(Warning) << options_.kind << ": " << (resolved.ok() ? absl::StrCat(
                                                          entry.text, " has no addresses")
                                                                    : resolved.status().ToString())
                         << "; keeping the previous replicas";
    const std::string port = entry.text.substr(entry.text.rfind(':'));
    for (const std::string& address : previous) {
      if (absl::EndsWith(address, port)) addresses.push_back(address);
    }
  }
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
  return addresses;
}

void ReplicaSet::SetAddresses(const std::vector<std::string>& addresses) {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Replica>> next;
  for (const std::string& address : addresses) {
    auto it = std::find_if(replicas_.begin(), replicas_.end(),
                           [&](const auto& r) { return r->address() == address; });
    if (it != replicas_.end()) {
      next.push_back(*it);
      continue;
    }
    auto replica = std::make_shared<Replica>(address, MakeChannel(address));
    if (!replicas_.empty()) {
      SPECDEC_LOG(Info) << options_.kind << " replica " << address << " added";
    }
    next.push_back(std::move(replica));
  }
  for (const auto& replica : replicas_) {
    if (std::find(addresses.begin(), addresses.end(), replica->address()) == addresses.end()) {
      SPECDEC_LOG(Info) << options_.kind << " replica " << replica->address()
                        << " removed (no longer in DNS)";
    }
  }
  replicas_ = std::move(next);
}

std::vector<std::shared_ptr<Replica>> ReplicaSet::Ranked(const std::string& session_id) const {
  std::vector<std::pair<uint64_t, std::shared_ptr<Replica>>> healthy, unhealthy;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& replica : replicas_) {
      auto& bucket = replica->healthy() ? healthy : unhealthy;
      bucket.emplace_back(Score(session_id, replica->address()), replica);
    }
  }
  std::sort(healthy.begin(), healthy.end(), ByScoreDesc);
  std::sort(unhealthy.begin(), unhealthy.end(), ByScoreDesc);
  std::vector<std::shared_ptr<Replica>> out;
  for (auto& [score, replica] : healthy) out.push_back(std::move(replica));
  for (auto& [score, replica] : unhealthy) out.push_back(std::move(replica));
  return out;
}

std::shared_ptr<Replica> ReplicaSet::PickHealthy(const std::string& session_id) const {
  std::shared_ptr<Replica> best;
  uint64_t best_score = 0;
  absl::MutexLock lock(&mu_);
  for (const auto& replica : replicas_) {
    if (!replica->healthy()) continue;
    const uint64_t score = Score(session_id, replica->address());
    if (best == nullptr || score > best_score ||
        (score == best_score && replica->address() < best->address())) {
      best = replica;
      best_score = score;
    }
  }
  return best;
}

void ReplicaSet::ReportFailure(Replica* replica, const absl::Status& why) {
  absl::MutexLock lock(&mu_);
  const bool was_healthy = replica->healthy_.exchange(false);
  replica->failures_ = std::max(replica->failures_, 1);
  replica->last_failure_ = absl::Now();
  replica->next_probe_ = absl::Now() + options_.min_backoff;
  if (was_healthy) {
    SPECDEC_LOG(Warning) << options_.kind << " replica " << replica->address()
                         << " marked unhealthy: " << why.ToString();
  }
}

std::vector<ReplicaState> ReplicaSet::States() const {
  absl::MutexLock lock(&mu_);
  std::vector<ReplicaState> out;
  for (const auto& replica : replicas_) {
    out.push_back({replica->address(), replica->healthy(), replica->failures_});
  }
  return out;
}

int ReplicaSet::HealthyCount() const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& replica : replicas_) n += replica->healthy() ? 1 : 0;
  return n;
}

int ReplicaSet::size() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(replicas_.size());
}

bool ReplicaSet::Probe(Replica* replica) {
  auto stub = grpc::health::v1::Health::NewStub(replica->channel_);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.probe_timeout));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(options_.health_service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  return status.ok() && response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
}

void ReplicaSet::ProberLoop() {
  const bool has_dns =
      std::any_of(entries_.begin(), entries_.end(), [](const Entry& e) { return e.dns; });
  while (true) {
    std::vector<std::shared_ptr<Replica>> due;
    bool resolve = false;
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      const absl::Time now = absl::Now();
      if (has_dns && now >= next_resolve_) {
        resolve = true;
        next_resolve_ = now + options_.dns_refresh;
      }
      for (const auto& replica : replicas_) {
        if (replica->next_probe_ <= now) due.push_back(replica);
      }
    }
    if (resolve) SetAddresses(CurrentAddresses());
    for (const auto& replica : due) {
      const absl::Time probe_start = absl::Now();
      bool ok = Probe(replica.get());
      absl::MutexLock lock(&mu_);
      if (stop_) return;
      if (ok && replica->last_failure_ >= probe_start) continue;  // a session saw it fail since
      const bool was_healthy = replica->healthy_.exchange(ok);
      if (ok) {
        if (!was_healthy || replica->failures_ > 0) {
          SPECDEC_LOG(Info) << options_.kind << " replica " << replica->address() << " healthy";
        }
        replica->failures_ = 0;
        replica->next_probe_ = absl::Now() + options_.probe_interval;
      } else {
        if (was_healthy) {
          SPECDEC_LOG(Warning) << options_.kind << " replica " << replica->address()
                               << " failed its health check";
        }
        replica->failures_ = std::min(replica->failures_ + 1, 30);
        absl::Duration backoff = options_.min_backoff;
        for (int i = 1; i < replica->failures_ && backoff < options_.max_backoff; ++i) backoff *= 2;
        replica->next_probe_ = absl::Now() + std::min(backoff, options_.max_backoff);
      }
    }
    // Short naps: a failure reported by a session schedules a check min_backoff later.
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(50));
    if (stop_) return;
  }
}

}  // namespace specdec
