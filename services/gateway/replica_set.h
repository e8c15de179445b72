// The replicas of one backend (every verifier, or every draft) behind one gateway flag: the
// address list ("a:1,b:2", "dns:///name:port" resolved to all its A/AAAA records), a channel and
// stubs per replica, a background prober that tracks health (standard gRPC health service) with
// exponential backoff and re-resolves DNS names, and a rendezvous hash that sticks a session to
// one replica and says where it goes when that replica dies (docs/reliability.md).
#ifndef SPECDEC_SERVICES_GATEWAY_REPLICA_SET_H_
#define SPECDEC_SERVICES_GATEWAY_REPLICA_SET_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "specdec/v1/draft.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"

namespace specdec {

struct ReplicaSetOptions {
  // Comma-separated entries, each a gRPC target ("host:port", "ipv4:...", "unix:...") that is
  // one replica, or "dns:///name:port" (also "dns://authority/name:port"; the system resolver
  // is used), which stands for every address the name resolves to.
  std::string target;
  // For logs: "verifier" or "draft".
  std::string kind;
  // The name checked on the standard health service ("specdec.v1.Verifier").
  std::string health_service;
  // A healthy replica is checked this often.
  absl::Duration probe_interval = absl::Seconds(1);
  // How long one health check may take.
  absl::Duration probe_timeout = absl::Seconds(1);
  // An unhealthy replica is checked after min_backoff, doubling up to max_backoff.
  absl::Duration min_backoff = absl::Milliseconds(100);
  absl::Duration max_backoff = absl::Seconds(2);
  // How often dns:/// entries are resolved again (replicas come and go).
  absl::Duration dns_refresh = absl::Seconds(5);
};

// One backend process. Shared: a session keeps its replica alive even when a DNS refresh
// drops it from the set.
class Replica {
 public:
  Replica(std::string address, std::shared_ptr<grpc::Channel> channel);

  const std::string& address() const { return address_; }
  v1::Verifier::Stub* verifier() { return verifier_.get(); }
  v1::Draft::Stub* draft() { return draft_.get(); }
  grpc::Channel* channel() { return channel_.get(); }
  bool healthy() const { return healthy_.load(); }

 private:
  friend class ReplicaSet;
  const std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Verifier::Stub> verifier_;
  std::unique_ptr<v1::Draft::Stub> draft_;
  // Optimistic until the first check: a replica listed at startup is tried before it is known.
  std::atomic<bool> healthy_{true};
  // Prober state, guarded by ReplicaSet::mu_.
  int failures_ = 0;
  absl::Time next_probe_ = absl::InfinitePast();
  // When a session last reported it failed: a check that started before does not count.
  absl::Time last_failure_ = absl::InfinitePast();
};

// What GetInfo and logs show about one replica.
struct ReplicaState {
  std::string address;
  bool healthy = false;
  int failures = 0;  // consecutive failed checks or reported failures
};

class ReplicaSet {
 public:
  // INVALID_ARGUMENT for a malformed target. A dns:/// name that does not resolve yet is not an
  // error: the set stays empty (sessions get UNAVAILABLE) until a refresh finds addresses.
  static absl::StatusOr<std::unique_ptr<ReplicaSet>> Create(const ReplicaSetOptions& options);
  ~ReplicaSet();  // stops the prober

  // Every replica, best first for `session_id`: healthy ones by rendezvous score (highest
  // random weight of hash(session_id, address)), then unhealthy ones the same way. The order of
  // a session over a fixed set never changes, and removing a replica moves only its sessions.
  std::vector<std::shared_ptr<Replica>> Ranked(const std::string& session_id) const;
  // The best healthy replica for `session_id`, or null.
  std::shared_ptr<Replica> PickHealthy(const std::string& session_id) const;
  // A session saw `replica` fail (stream broken, no answer in time): it is unhealthy until a
  // health check succeeds (after the backoff).
  void ReportFailure(Replica* replica, const absl::Status& why);

  std::vector<ReplicaState> States() const;
  int HealthyCount() const;
  int size() const;
  const std::string& target() const { return options_.target; }
  const std::string& kind() const { return options_.kind; }

  // Parses the entries of a target (exposed for tests): each is {is_dns, text}; for dns
  // entries text is "name:port".
  struct Entry {
    bool dns = false;
    std::string text;
  };
  static absl::StatusOr<std::vector<Entry>> ParseTarget(const std::string& target);
  // All addresses ("1.2.3.4:50051", "[::1]:50051") of "name:port", deduplicated and sorted.
  static absl::StatusOr<std::vector<std::string>> Resolve(const std::string& name_port);
  // The rendezvous score (stable across processes and builds).
  static uint64_t Score(const std::string& session_id, const std::string& address);

 private:
  explicit ReplicaSet(ReplicaSetOptions options, std::vector<Entry> entries);
  // Adds the replicas of `addresses` that are missing and drops the ones gone.
  void SetAddresses(const std::vector<std::string>& addresses) ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::string> CurrentAddresses();
  void ProberLoop();
  bool Probe(Replica* replica);

  const ReplicaSetOptions options_;
  const std::vector<Entry> entries_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Replica>> replicas_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_resolve_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::thread prober_;
};

}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_REPLICA_SET_H_
