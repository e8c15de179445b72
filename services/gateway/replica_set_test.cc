// ReplicaSet: target parsing, DNS expansion, and the rendezvous hash's stickiness (a session's
// replica never changes while the set is fixed; removing a replica moves only its sessions).
#include "services/gateway/replica_set.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace specdec {
namespace {

TEST(ReplicaSetTest, ParsesListsAndDnsEntries) {
  auto entries = ReplicaSet::ParseTarget(" a:1, dns:///svc:50051 ,dns://8.8.8.8/other:7,b:2,");
  ASSERT_TRUE(entries.ok()) << entries.status();
  ASSERT_EQ(entries->size(), 4u);
  EXPECT_FALSE((*entries)[0].dns);
  EXPECT_EQ((*entries)[0].text, "a:1");
  EXPECT_TRUE((*entries)[1].dns);
  EXPECT_EQ((*entries)[1].text, "svc:50051");
  EXPECT_TRUE((*entries)[2].dns);
  EXPECT_EQ((*entries)[2].text, "other:7");
  EXPECT_EQ((*entries)[3].text, "b:2");
  EXPECT_FALSE(ReplicaSet::ParseTarget("").ok());
  EXPECT_FALSE(ReplicaSet::ParseTarget(" , ").ok());
  EXPECT_FALSE(ReplicaSet::ParseTarget("dns:///noport").ok());
  EXPECT_FALSE(ReplicaSet::ParseTarget("dns:///name:99999").ok());
  EXPECT_FALSE(ReplicaSet::ParseTarget("dns://authority-only").ok());
}

TEST(ReplicaSetTest, ResolvesEveryAddressOfAName) {
  auto addresses = ReplicaSet::Resolve("localhost:50051");
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  ASSERT_FALSE(addresses->empty());
  for (const auto& address : *addresses) {
    EXPECT_TRUE(address == "127.0.0.1:50051" || address == "[::1]:50051") << address;
  }
  EXPECT_FALSE(ReplicaSet::Resolve("no-such-host.invalid:1").ok());
}

TEST(ReplicaSetTest, ScoreIsStable) {
  // Fixed values: the hash must not change between builds (sessions of a restarted gateway
  // land where they did).
  EXPECT_EQ(ReplicaSet::Score("s", "a:1"), ReplicaSet::Score("s", "a:1"));
  EXPECT_NE(ReplicaSet::Score("s", "a:1"), ReplicaSet::Score("s", "a:2"));
  EXPECT_NE(ReplicaSet::Score("s1", "a:1"), ReplicaSet::Score("s2", "a:1"));
}

std::string Best(const std::vector<std::string>& replicas, const std::string& session) {
  std::string best;
  uint64_t best_score = 0;
  for (const auto& r : replicas) {
    const uint64_t score = ReplicaSet::Score(session, r);
    if (best.empty() || score > best_score) best = r, best_score = score;
  }
  return best;
}

TEST(ReplicaSetTest, RendezvousSpreadsAndMovesOnlyTheLostReplicasSessions) {
  const std::vector<std::string> three = {"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"};
  const std::vector<std::string> two = {"10.0.0.1:1", "10.0.0.3:1"};
  std::map<std::string, int> load;
  int moved = 0, lost = 0;
  for (int i = 0; i < 3000; ++i) {
    const std::string session = absl::StrCat("req-", i);
    const std::string before = Best(three, session);
    ++load[before];
    const std::string after = Best(two, session);
    if (before == "10.0.0.2:1") {
      ++lost;
    } else if (after != before) {
      ++moved;
    }
  }
  EXPECT_EQ(moved, 0);  // sessions of the surviving replicas stay put
  for (const auto& [replica, n] : load) EXPECT_NEAR(n, 1000, 150) << replica;
  EXPECT_GT(lost, 0);
}

TEST(ReplicaSetTest, ProbesMarkDeadReplicasAndRankingFollowsTheHash) {
  ReplicaSetOptions options;
  options.target = "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3";  // nothing listens there
  options.kind = "verifier";
  options.health_service = "specdec.v1.Verifier";
  auto set = ReplicaSet::Create(options);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ((*set)->size(), 3);
  for (int i = 0; i < 100 && (*set)->HealthyCount() > 0; ++i) absl::SleepFor(absl::Milliseconds(50));
  EXPECT_EQ((*set)->HealthyCount(), 0);
  EXPECT_EQ((*set)->PickHealthy("s"), nullptr);
  for (const auto& state : (*set)->States()) EXPECT_GE(state.failures, 1) << state.address;
  // With every replica in the same state, the order is the rendezvous order.
  auto ranked = (*set)->Ranked("session-1");
  ASSERT_EQ(ranked.size(), 3u);
  EXPECT_EQ(ranked[0]->address(),
            Best({"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, "session-1"));
  for (size_t i = 1; i < ranked.size(); ++i) {
    EXPECT_GE(ReplicaSet::Score("session-1", ranked[i - 1]->address()),
              ReplicaSet::Score("session-1", ranked[i]->address()));
  }
}

}  // namespace
}  // namespace specdec
