// The gateway's session state machine against fake backends and a fake clock
// (session_fakes.h): every branch of a round (pre-draft used or dropped, draft lost, late or
// evicted, verifier lost and re-prefilled elsewhere, backoff, deadline, cancellation,
// back-pressure) and its output, held against plain decoding of the fake model.
#include "services/gateway/generation_session.h"

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "services/gateway/session_fakes.h"

namespace specdec {
namespace {

using fakes::FakeBackends;
using fakes::FakeClock;
using fakes::FakeDraft;
using fakes::FakeVerifier;

const std::vector<int32_t> kPrompt = {3, 1, 4, 1, 5};

GenerationRequest Greedy(int k, int64_t max_new = 40) {
  GenerationRequest request;
  request.request_id = "req";
  request.prompt = kPrompt;
  request.max_new_tokens = max_new;
  request.num_draft_tokens = k;
  request.include_rounds = true;
  return request;
}

struct Outcome {
  absl::Status status;
  std::vector<int32_t> tokens;
  std::vector<v1::RoundRecord> rounds;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
  v1::Usage usage;
  int messages = 0;
};

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() : backends_(&clock_) { env_.max_positions = 1 << 20; }

  Outcome Run(const GenerationRequest& request, int stop_after_messages = -1) {
    Outcome out;
    GenerationSession session("s-1", request, env_, &backends_, &clock_);
    out.status = session.Run([&](const v1::GenerateResponse& response) {
      ++out.messages;
      out.tokens.insert(out.tokens.end(), response.token_ids().begin(),
                        response.token_ids().end());
      for (const v1::RoundRecord& round : response.rounds()) out.rounds.push_back(round);
      if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        out.finish = response.finish_reason();
        out.usage = response.usage();
      }
      if (heal_after_each_message_) backends_.HealAll();
      return stop_after_messages < 0 || out.messages < stop_after_messages;
    });
    out.usage = session.usage();
    return out;
  }

  static std::vector<int32_t> Expected(const GenerationRequest& request, int32_t eos = -1,
                                       int64_t max_positions = 1 << 20) {
    return fakes::Reference(request.prompt, request.max_new_tokens, request.sampling, eos,
                            max_positions);
  }

  static int Fallbacks(const Outcome& out, v1::Fallback fallback) {
    int n = 0;
    for (const auto& round : out.rounds) n += round.fallback() == fallback ? 1 : 0;
    return n;
  }

  void ExpectCleanProtocol() {
    for (const auto* log : logs_) EXPECT_TRUE(log->errors.empty()) << log->errors.front();
  }

  FakeVerifier* AddVerifier() {
    FakeVerifier* v = backends_.AddVerifier();
    logs_.push_back(&v->log);
    return v;
  }
  FakeDraft* AddDraft() {
    FakeDraft* d = backends_.AddDraft();
    logs_.push_back(&d->log);
    return d;
  }

  FakeClock clock_;
  FakeBackends backends_;
  bool heal_after_each_message_ = false;
  SessionEnvironment env_;
  std::vector<fakes::ReplicaLog*> logs_;
};

TEST_F(SessionTest, VerifierAloneEqualsPlainDecoding) {
  FakeVerifier* verifier = AddVerifier();
  const GenerationRequest request = Greedy(0);
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  EXPECT_EQ(out.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(out.usage.rounds(), 40);
  EXPECT_EQ(Fallbacks(out, v1::FALLBACK_NO_DRAFT), 40);
  EXPECT_EQ(verifier->log.releases, 1);
  ExpectCleanProtocol();
}

TEST_F(SessionTest, SpeculationEqualsPlainDecodingForEveryK) {
  for (int k : {1, 2, 4, 7}) {
    SCOPED_TRACE(k);
    AddVerifier();
    AddDraft();
    GenerationRequest request = Greedy(k);
    request.overlap = false;
    const Outcome out = Run(request);
    ASSERT_TRUE(out.status.ok()) << out.status;
    EXPECT_EQ(out.tokens, Expected(request));
    EXPECT_GT(out.usage.accepted_tokens(), 0);
    EXPECT_LT(out.usage.accepted_tokens(), out.usage.drafted_tokens());  // some rejections
    EXPECT_EQ(out.usage.overlapped_rounds(), 0);
    ExpectCleanProtocol();
  }
}

TEST_F(SessionTest, PredraftsAreUsedWhenTheDraftIsRightAndDroppedWhenNot) {
  AddVerifier();
  FakeDraft* draft = AddDraft();
  draft->noise = 0.0f;  // always right: every round after the first is pre-drafted
  const GenerationRequest request = Greedy(3);
  const Outcome right = Run(request);
  ASSERT_TRUE(right.status.ok()) << right.status;
  EXPECT_EQ(right.tokens, Expected(request));
  EXPECT_EQ(right.usage.overlapped_rounds(), right.usage.rounds() - 1);
  ExpectCleanProtocol();

  // A draft that is sometimes wrong: some pre-drafts used, the others dropped (their answers
  // come and are skipped), and the output is the same.
  draft->noise = 0.4f;
  const Outcome mixed = Run(request);
  ASSERT_TRUE(mixed.status.ok()) << mixed.status;
  EXPECT_EQ(mixed.tokens, Expected(request));
  EXPECT_GT(mixed.usage.overlapped_rounds(), 0);
  EXPECT_LT(mixed.usage.overlapped_rounds(), mixed.usage.rounds() - 1);
  ExpectCleanProtocol();
}

// The records carry the real times of the work: a round's draft ends before its verification
// begins, and an overlapped round's draft began (the pre-draft was sent) before the previous
// round was verified; without overlap every draft begins after the previous verification.
TEST_F(SessionTest, RoundRecordsTimeTheDraftAndVerifyWorkWhereItRan) {
  const FakeVerifier* verifier = AddVerifier();
  FakeDraft* draft = AddDraft();
  draft->noise = 0.0f;  // every round after the first is pre-drafted
  GenerationRequest request = Greedy(3);
  for (const bool overlap : {true, false}) {
    SCOPED_TRACE(overlap);
    request.overlap = overlap;
    const Outcome out = Run(request);
    ASSERT_TRUE(out.status.ok()) << out.status;
    ASSERT_GT(out.rounds.size(), 2u);
    for (size_t i = 0; i < out.rounds.size(); ++i) {
      const v1::RoundRecord& round = out.rounds[i];
      SCOPED_TRACE(round.round());
      ASSERT_GT(round.num_proposed(), 0);
      EXPECT_GT(round.draft_start_unix_nanos(), 0);
      EXPECT_LE(round.draft_start_unix_nanos(), round.draft_end_unix_nanos());
      EXPECT_LE(round.draft_end_unix_nanos(), round.verify_start_unix_nanos());
      // The fake verifier moves the clock by its cost.
      EXPECT_GE(round.verify_end_unix_nanos() - round.verify_start_unix_nanos(),
                absl::ToInt64Nanoseconds(verifier->verify_cost));
      if (i == 0) continue;
      const v1::RoundRecord& previous = out.rounds[i - 1];
      EXPECT_EQ(round.overlapped(), overlap);
      if (overlap) {
        EXPECT_LE(round.draft_start_unix_nanos(), previous.verify_start_unix_nanos());
      } else {
        EXPECT_GE(round.draft_start_unix_nanos(), previous.verify_end_unix_nanos());
      }
    }
    ExpectCleanProtocol();
  }
}

TEST_F(SessionTest, AdaptiveKEqualsPlainDecoding) {
  AddVerifier();
  AddDraft();
  GenerationRequest request = Greedy(0, 60);
  request.adaptive = true;
  env_.max_adaptive_draft_tokens = 6;
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  EXPECT_GT(out.usage.drafted_tokens(), 0);
  ExpectCleanProtocol();
}

TEST_F(SessionTest, SampledRunsAreReproducibleAndKZeroIsPlainSampling) {
  AddVerifier();
  AddDraft();
  GenerationRequest request = Greedy(3);
  request.sampling.temperature = 0.9f;
  request.sampling.seed = 1234;
  const Outcome first = Run(request);
  const Outcome second = Run(request);
  ASSERT_TRUE(first.status.ok()) << first.status;
  EXPECT_EQ(first.tokens, second.tokens);
  EXPECT_EQ(first.tokens.size(), 40u);
  request.num_draft_tokens = 0;
  const Outcome plain = Run(request);
  ASSERT_TRUE(plain.status.ok()) << plain.status;
  EXPECT_EQ(plain.tokens, Expected(request));
  ExpectCleanProtocol();
}

// Proposals in DraftTokens messages (DraftPropose.tokens_per_message) change how many messages
// a round costs, nothing else: greedy output equals plain decoding and sampled output equals the
// one-message-per-proposal run of the same seed, with and without overlapped rounds (whose
// bonus guess is read out of a batch).
TEST_F(SessionTest, ProposalsBatchedInMessagesGiveTheSameOutput) {
  AddVerifier();
  FakeDraft* draft = AddDraft();
  for (const bool overlap : {false, true}) {
    for (const bool sampled : {false, true}) {
      SCOPED_TRACE(testing::Message() << "overlap " << overlap << " sampled " << sampled);
      GenerationRequest request = Greedy(4);
      request.overlap = overlap;
      if (sampled) {
        request.sampling.temperature = 0.9f;
        request.sampling.seed = 99;
      }
      std::vector<int32_t> one_each;
      for (const int per_message : {1, 3, 64}) {
        SCOPED_TRACE(per_message);
        env_.draft_tokens_per_message = per_message;
        const int messages_before = draft->proposal_messages;
        const size_t requests_before = draft->proposal_requests.size();
        const Outcome out = Run(request);
        ASSERT_TRUE(out.status.ok()) << out.status;
        if (!sampled) EXPECT_EQ(out.tokens, Expected(request));
        if (per_message == 1) {
          one_each = out.tokens;
        } else {
          EXPECT_EQ(out.tokens, one_each);
        }
        EXPECT_GT(out.usage.accepted_tokens(), 0);
        EXPECT_LT(out.usage.accepted_tokens(), out.usage.drafted_tokens());  // some rejections
        if (overlap && !sampled) EXPECT_GT(out.usage.overlapped_rounds(), 0);
        // K proposals in messages of up to per_message (K = 4 and 3: 3 + 1).
        int expected_messages = 0;
        for (size_t i = requests_before; i < draft->proposal_requests.size(); ++i) {
          const int k = draft->proposal_requests[i];
          expected_messages += (k + per_message - 1) / per_message;
        }
        EXPECT_EQ(draft->proposal_messages - messages_before, expected_messages);
        ExpectCleanProtocol();
      }
    }
  }
}

TEST_F(SessionTest, DraftLostMidRoundContinuesWithTheVerifierAndComesBackAfterBackoff) {
  AddVerifier()->verify_cost = absl::Milliseconds(60);
  FakeDraft* draft = AddDraft();
  draft->close_before_answer = 3;  // the stream ends while round 2 (or so) waits for it
  GenerationRequest request = Greedy(3);
  request.overlap = false;
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  EXPECT_GE(Fallbacks(out, v1::FALLBACK_DRAFT_UNAVAILABLE), 1);
  EXPECT_EQ(backends_.failures(draft->address()), 1);
  // After the backoff (200 ms, i.e. a few 60 ms rounds) the session asks its set again; the
  // fake set keeps the replica unhealthy, so nothing was picked yet.
  EXPECT_EQ(draft->log.prefills, 1);
  ExpectCleanProtocol();
}

TEST_F(SessionTest, DroppedDraftIsReopenedOnceHealthyAfterItsBackoff) {
  AddVerifier()->verify_cost = absl::Milliseconds(60);
  FakeDraft* draft = AddDraft();
  draft->break_send = 2;  // the second proposal request cannot be sent
  heal_after_each_message_ = true;  // the prober re-admits the replica at once
  GenerationRequest request = Greedy(3);
  request.overlap = false;
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  EXPECT_EQ(Fallbacks(out, v1::FALLBACK_DRAFT_UNAVAILABLE), 4);  // 4 x 60 ms >= 200 ms
  EXPECT_EQ(draft->log.prefills, 2);
  EXPECT_EQ(draft->log.streams, 2);
  ExpectCleanProtocol();
}

TEST_F(SessionTest, FailingDraftBacksOffExponentially) {
  AddVerifier()->verify_cost = absl::Milliseconds(50);
  FakeDraft* draft = AddDraft();
  draft->break_every_send = true;
  heal_after_each_message_ = true;
  GenerationRequest request = Greedy(3, 200);
  request.overlap = false;
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  // Every try is a prefill that cannot be sent; the gaps double from 200 ms up to 5 s, and a
  // try waits for the next round (50 ms).
  const std::vector<absl::Time>& tries = draft->send_times;
  ASSERT_GE(tries.size(), 5u);
  absl::Duration expected = DraftConnection::kMinBackoff;
  for (size_t i = 1; i < tries.size(); ++i) {
    EXPECT_GE(tries[i] - tries[i - 1], expected) << i;
    EXPECT_LT(tries[i] - tries[i - 1], expected + absl::Milliseconds(50)) << i;
    expected = std::min(2 * expected, DraftConnection::kMaxBackoff);
  }
  EXPECT_EQ(out.usage.drafted_tokens(), 0);
  ExpectCleanProtocol();
}

TEST_F(SessionTest, LateDraftFallsBackForThatRoundOnly) {
  AddVerifier();
  FakeDraft* draft = AddDraft();
  draft->late_send = 2;
  env_.draft_deadline_ms = 40;
  GenerationRequest request = Greedy(3);
  request.overlap = false;
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  EXPECT_EQ(Fallbacks(out, v1::FALLBACK_DRAFT_DEADLINE), 1);
  EXPECT_EQ(backends_.failures(draft->address()), 0);  // late is not broken
  EXPECT_EQ(draft->log.prefills, 1);
  ExpectCleanProtocol();
}

TEST_F(SessionTest, DraftThatLostTheSessionIsRePrefilled) {
  AddVerifier();
  FakeDraft* draft = AddDraft();
  draft->lose_session_send = 3;
  GenerationRequest request = Greedy(3);
  request.overlap = false;
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  EXPECT_EQ(draft->log.prefills, 2);
  EXPECT_EQ(Fallbacks(out, v1::FALLBACK_DRAFT_UNAVAILABLE), 0);
  ExpectCleanProtocol();
}

TEST_F(SessionTest, VerifierLostMidStreamMovesToTheNextReplicaByRePrefill) {
  FakeVerifier* first = AddVerifier();
  FakeVerifier* second = AddVerifier();
  AddDraft();
  first->fail_call = 4;  // a verification
  const GenerationRequest request = Greedy(3);
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  EXPECT_EQ(backends_.failures(first->address()), 1);
  EXPECT_TRUE(backends_.healthy(second->address()));
  EXPECT_EQ(second->log.prefills, 1);
  EXPECT_GT(second->log.rounds, 0);
  EXPECT_EQ(second->log.releases, 1);
  ExpectCleanProtocol();
}

TEST_F(SessionTest, VerifierThatLostTheSessionIsRePrefilledInPlace) {
  FakeVerifier* verifier = AddVerifier();
  verifier->lose_session_call = 5;
  const GenerationRequest request = Greedy(2);
  AddDraft();
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  EXPECT_EQ(verifier->log.prefills, 2);
  EXPECT_EQ(verifier->log.streams, 1);
  EXPECT_TRUE(backends_.healthy(verifier->address()));
  ExpectCleanProtocol();
}

TEST_F(SessionTest, EveryVerifierDownIsUnavailable) {
  FakeVerifier* a = AddVerifier();
  FakeVerifier* b = AddVerifier();
  a->prefill_status = absl::UnavailableError("down");
  b->prefill_status = absl::UnavailableError("down");
  const Outcome out = Run(Greedy(2));
  EXPECT_EQ(out.status.code(), absl::StatusCode::kUnavailable) << out.status;
  EXPECT_NE(out.status.message().find("2 tried"), std::string::npos) << out.status;
  EXPECT_FALSE(backends_.healthy(a->address()));
  EXPECT_FALSE(backends_.healthy(b->address()));
}

TEST_F(SessionTest, FullVerifierIsBackPressureAndStaysHealthy) {
  FakeVerifier* full = AddVerifier();
  FakeVerifier* other = AddVerifier();
  full->prefill_status = absl::ResourceExhaustedError("the KV pool is full");
  const Outcome out = Run(Greedy(2));
  EXPECT_EQ(out.status.code(), absl::StatusCode::kResourceExhausted) << out.status;
  EXPECT_TRUE(backends_.healthy(full->address()));
  EXPECT_EQ(other->log.calls, 0);  // not pushed onto the next replica
  EXPECT_EQ(out.messages, 0);

  // Mid-stream too: a verification answered RESOURCE_EXHAUSTED ends the request with it.
  full->prefill_status = absl::OkStatus();
  full->fail_call = full->log.calls + 3;
  full->fail_status = absl::ResourceExhaustedError("the KV pool is full");
  const Outcome mid = Run(Greedy(2));
  EXPECT_EQ(mid.status.code(), absl::StatusCode::kResourceExhausted) << mid.status;
  EXPECT_TRUE(backends_.healthy(full->address()));
  EXPECT_EQ(other->log.calls, 0);
  EXPECT_EQ(mid.messages, 2);
}

TEST_F(SessionTest, PerRequestErrorsGoToTheClientWithoutBlamingTheReplica) {
  FakeVerifier* verifier = AddVerifier();
  FakeVerifier* other = AddVerifier();
  for (const absl::Status& error :
       {absl::InternalError("bug"), absl::UnknownError("?"), absl::InvalidArgumentError("bad"),
        absl::AbortedError("conflict"), absl::FailedPreconditionError("no")}) {
    SCOPED_TRACE(error.ToString());
    verifier->fail_call = verifier->log.calls + 1;  // the first verification
    verifier->fail_status = error;
    const Outcome out = Run(Greedy(0));
    EXPECT_EQ(out.status.code(), error.code()) << out.status;
    EXPECT_EQ(out.messages, 0);
    EXPECT_TRUE(backends_.healthy(verifier->address()));
    EXPECT_EQ(other->log.calls, 0);
  }
}

TEST_F(SessionTest, SessionDeadlineEndsTheRequest) {
  FakeVerifier* verifier = AddVerifier();
  verifier->verify_cost = absl::Milliseconds(30);
  FakeDraft* draft = AddDraft();
  draft->token_cost = absl::ZeroDuration();
  env_.deadline = clock_.Now() + absl::Milliseconds(100);
  const Outcome out = Run(Greedy(2));
  EXPECT_EQ(out.status.code(), absl::StatusCode::kDeadlineExceeded) << out.status;
  EXPECT_EQ(out.messages, 4);  // rounds at 0, 30+, 60+, 90+ ms; the fifth check is past 100 ms
  EXPECT_EQ(verifier->log.releases, 0);  // ended, not released (the services drop it)
  EXPECT_EQ(draft->log.releases, 0);
  EXPECT_TRUE(backends_.healthy(verifier->address()));
}

TEST_F(SessionTest, ClientDeadlineEndsTheRequest) {
  AddVerifier()->verify_cost = absl::Milliseconds(30);
  env_.client_deadline = clock_.Now() + absl::Milliseconds(50);
  const Outcome out = Run(Greedy(0));
  EXPECT_EQ(out.status.code(), absl::StatusCode::kDeadlineExceeded) << out.status;
  EXPECT_EQ(out.messages, 2);
}

TEST_F(SessionTest, CancellationEndsTheRequestAndDoesNotBlameTheDraft) {
  AddVerifier();
  FakeDraft* draft = AddDraft();
  int emitted = 0;
  env_.client_cancelled = [&] { return emitted >= 3; };
  Outcome out;
  GenerationSession session("s-1", Greedy(3), env_, &backends_, &clock_);
  out.status = session.Run([&](const v1::GenerateResponse&) { return ++emitted > 0; });
  EXPECT_EQ(out.status.code(), absl::StatusCode::kCancelled) << out.status;
  EXPECT_EQ(emitted, 3);
  EXPECT_TRUE(backends_.healthy(draft->address()));
}

TEST_F(SessionTest, ClientGoneIsCancelled) {
  FakeVerifier* verifier = AddVerifier();
  const Outcome out = Run(Greedy(0), /*stop_after_messages=*/2);
  EXPECT_EQ(out.status.code(), absl::StatusCode::kCancelled) << out.status;
  EXPECT_EQ(out.messages, 2);
  EXPECT_EQ(verifier->log.releases, 0);
}

TEST_F(SessionTest, EosAndContextEndGeneration) {
  AddVerifier();
  AddDraft();
  const GenerationRequest request = Greedy(3, 60);
  const std::vector<int32_t> full = Expected(request);
  const int32_t eos = full[17];
  env_.eos_token_id = eos;
  const Outcome eos_out = Run(request);
  ASSERT_TRUE(eos_out.status.ok()) << eos_out.status;
  EXPECT_EQ(eos_out.tokens, Expected(request, eos));
  EXPECT_EQ(eos_out.tokens.back(), eos);
  EXPECT_EQ(eos_out.finish, v1::FINISH_REASON_EOS);

  env_.eos_token_id = -1;
  env_.max_positions = static_cast<int64_t>(kPrompt.size()) + 23;
  const Outcome context = Run(request);
  ASSERT_TRUE(context.status.ok()) << context.status;
  EXPECT_EQ(context.tokens, Expected(request, -1, env_.max_positions));
  EXPECT_EQ(context.tokens.size(), 23u);
  EXPECT_EQ(context.finish, v1::FINISH_REASON_CONTEXT);
  ExpectCleanProtocol();
}

TEST_F(SessionTest, BusyGatewayDecodesWithoutTheDraft) {
  AddVerifier();
  FakeDraft* draft = AddDraft();
  std::atomic<int> active{5};
  env_.active_sessions = &active;
  env_.speculation_max_sessions = 4;
  const GenerationRequest request = Greedy(3, 10);
  const Outcome out = Run(request);
  ASSERT_TRUE(out.status.ok()) << out.status;
  EXPECT_EQ(out.tokens, Expected(request));
  EXPECT_EQ(Fallbacks(out, v1::FALLBACK_BUSY), 10);
  EXPECT_EQ(draft->log.rounds, 0);
}

}  // namespace
}  // namespace specdec
