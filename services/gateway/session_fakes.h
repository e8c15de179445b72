// Fakes of session_backends.h for the session's unit tests: a manual clock, a tiny deterministic
// "model" (logits as a function of the context), a verifier and a draft that speak the real
// protocol over it (rollback by committed length, session_lost, Release) with faults on cue,
// and a replica set that records failure reports. No threads, no sockets, no sleeps: a read that
// would wait moves the clock to its deadline instead.
#ifndef SPECDEC_SERVICES_GATEWAY_SESSION_FAKES_H_
#define SPECDEC_SERVICES_GATEWAY_SESSION_FAKES_H_

#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/sampling/sampling.h"
#include "common/speculative/acceptance.h"
#include "services/common/proto_convert.h"
#include "services/gateway/session_backends.h"

namespace specdec {
namespace fakes {

class FakeClock : public SessionClock {
 public:
  absl::Time Now() const override { return now_; }
  void Advance(absl::Duration d) { now_ += d; }
  void AdvanceTo(absl::Time t) { now_ = std::max(now_, t); }

 private:
  absl::Time now_ = absl::FromUnixSeconds(1'000'000);
};

// The fake model: kVocab tokens, logits a fixed function of the last two tokens. The draft's
// logits are the target's plus a perturbation, so it agrees with the target at most positions.
constexpr int kVocab = 16;

inline std::vector<float> TargetLogits(const std::vector<int32_t>& context) {
  const int32_t a = context.empty() ? 0 : context.back();
  const int32_t b = context.size() < 2 ? 0 : context[context.size() - 2];
  std::vector<float> logits(kVocab);
  for (int v = 0; v < kVocab; ++v) {
    logits[v] = 3.0f * std::cos(0.7f * static_cast<float>((a * 5 + b * 3 + 1) * (v + 1)));
  }
  return logits;
}

inline std::vector<float> DraftLogits(const std::vector<int32_t>& context, float noise) {
  std::vector<float> logits = TargetLogits(context);
  const int32_t a = context.empty() ? 0 : context.back();
  for (int v = 0; v < kVocab; ++v) logits[v] += noise * std::sin(static_cast<float>(v * 7 + a));
  return logits;
}

// Plain decoding with the target: what every greedy run must give, and a K = 0 sampled run.
inline std::vector<int32_t> Reference(std::vector<int32_t> context, int64_t max_new,
                                      const SamplingParams& params, int32_t eos = -1,
                                      int64_t max_positions = 1 << 20) {
  std::vector<int32_t> out;
  while (static_cast<int64_t>(out.size()) < max_new &&
         static_cast<int64_t>(context.size()) < max_positions) {
    const std::vector<float> logits = TargetLogits(context);
    const int32_t token = PickToken(logits.data(), kVocab, nullptr, params,
                                    static_cast<int64_t>(context.size()), RandomPurpose::kTarget);
    out.push_back(token);
    context.push_back(token);
    if (token == eos) break;
  }
  return out;
}

// What a replica saw; tests read it.
struct ReplicaLog {
  int calls = 0;  // requests of any kind, over every stream
  int prefills = 0;
  int rounds = 0;  // verifications or proposal requests
  int releases = 0;
  int streams = 0;
  std::vector<std::string> errors;  // protocol violations by the gateway
};

class FakeVerifier {
 public:
  explicit FakeVerifier(std::string address, FakeClock* clock)
      : address_(std::move(address)), clock_(clock) {}

  // Faults, by the index of the call (every request counts, prefills included).
  int fail_call = -1;  // ends the stream with fail_status
  absl::Status fail_status = absl::UnavailableError("connection reset");
  int lose_session_call = -1;         // answers session_lost (the cache is evicted)
  absl::Status prefill_status;        // every prefill fails with it (the stream ends)
  absl::Duration verify_cost = absl::Milliseconds(10);  // the clock moves this much per verify

  const std::string& address() const { return address_; }
  ReplicaLog log;

  absl::StatusOr<v1::VerifierResponse> Handle(const v1::VerifierRequest& request) {
    const int call = log.calls++;
    if (call == fail_call) return fail_status;
    v1::VerifierResponse response;
    response.set_session_id(request.session_id());
    response.set_committed_length(request.committed_length());
    response.set_round(request.round());
    if (request.has_release()) {
      ++log.releases;
      cache_.clear();
      has_session_ = false;
      response.mutable_released();
    } else if (request.has_prefill()) {
      ++log.prefills;
      if (!prefill_status.ok()) return prefill_status;
      const auto& tokens = request.prefill().tokens();
      if (tokens.start_position() != 0) log.errors.push_back("prefill not at 0");
      cache_.assign(tokens.tokens().begin(), tokens.tokens().end());
      if (static_cast<int64_t>(cache_.size()) + 1 != request.committed_length()) {
        log.errors.push_back("prefill length");
      }
      params_ = FromProto(request.prefill().sampling());
      has_session_ = true;
      response.mutable_prefilled()->set_cache_length(static_cast<int64_t>(cache_.size()));
    } else if (request.has_verify()) {
      ++log.rounds;
      clock_->Advance(verify_cost);
      Verify(request, call, &response);
    } else {
      log.errors.push_back("empty request");
    }
    return response;
  }

 private:
  void Verify(const v1::VerifierRequest& request, int call, v1::VerifierResponse* response) {
    const auto& span = request.verify().tokens();
    if (call == lose_session_call || !has_session_ ||
        span.start_position() > static_cast<int64_t>(cache_.size())) {
      has_session_ = false;
      cache_.clear();
      response->mutable_session_lost()->set_reason("evicted");
      return;
    }
    cache_.resize(span.start_position());  // rollback by committed length
    cache_.insert(cache_.end(), span.tokens().begin(), span.tokens().end());
    if (static_cast<int64_t>(cache_.size()) != request.committed_length()) {
      log.errors.push_back(absl::StrCat("verify span ends at ", cache_.size(), " not ",
                                        request.committed_length()));
    }
    std::vector<int32_t> drafts;
    std::vector<TokenDistribution> dists;
    for (const v1::DraftedToken& drafted : request.verify().drafts()) {
      drafts.push_back(drafted.token());
      dists.push_back(FromProto(drafted.q()));
    }
    std::vector<float> logits;  // [K + 1, kVocab]
    std::vector<int32_t> context = cache_;
    for (size_t i = 0; i <= drafts.size(); ++i) {
      const std::vector<float> row = TargetLogits(context);
      logits.insert(logits.end(), row.begin(), row.end());
      if (i < drafts.size()) context.push_back(drafts[i]);
    }
    const std::vector<VerifiedPosition> verified =
        VerifyProposals(logits.data(), kVocab, nullptr, params_, request.committed_length(),
                        drafts, dists, request.verify().up_to_first_rejection());
    v1::VerifyResult* result = response->mutable_verified();
    for (const VerifiedPosition& position : verified) {
      v1::VerifiedPosition* out = result->add_positions();
      out->set_p_prob_of_draft(position.p_prob_of_draft);
      out->set_fallback_token(position.fallback_token);
    }
    result->set_compute_ms(absl::ToDoubleMilliseconds(verify_cost));
    cache_.insert(cache_.end(), drafts.begin(), drafts.end());  // it holds all of them
  }

  std::string address_;
  FakeClock* clock_;
  std::vector<int32_t> cache_;
  bool has_session_ = false;
  SamplingParams params_;
};

class FakeDraft {
 public:
  explicit FakeDraft(std::string address, FakeClock* clock)
      : address_(std::move(address)), clock_(clock) {}

  // Faults, by the index of the request sent (every request counts, prefills included).
  int break_send = -1;         // the send fails (the stream is broken)
  bool break_every_send = false;
  int close_before_answer = -1;  // the stream ends before answering it
  int late_send = -1;          // its answers come only after the next request
  int lose_session_send = -1;  // a proposal request answered with session_lost
  float noise = 0.4f;          // how far the draft is from the target (0: always right)
  absl::Duration token_cost = absl::Milliseconds(1);
  std::vector<absl::Time> send_times;  // when each request was sent (or tried)
  int proposal_messages = 0;           // answers carrying proposals (DraftToken or DraftTokens)
  std::vector<int> proposal_requests;  // K of each proposal request answered with proposals

  const std::string& address() const { return address_; }
  ReplicaLog log;

  // The answers to one request (none for a failed send).
  std::vector<v1::DraftResponse> Handle(const v1::DraftRequest& request, int send) {
    std::vector<v1::DraftResponse> out;
    v1::DraftResponse response;
    response.set_session_id(request.session_id());
    response.set_committed_length(request.committed_length());
    response.set_round(request.round());
    if (request.has_release()) {
      ++log.releases;
      has_session_ = false;
      response.mutable_released();
      out.push_back(response);
    } else if (request.has_prefill()) {
      ++log.prefills;
      cache_.assign(request.prefill().tokens().tokens().begin(),
                    request.prefill().tokens().tokens().end());
      params_ = FromProto(request.prefill().sampling());
      has_session_ = true;
      response.mutable_prefilled()->set_cache_length(static_cast<int64_t>(cache_.size()));
      out.push_back(response);
    } else if (request.has_propose()) {
      ++log.rounds;
      Propose(request, send, response, &out);
    }
    return out;
  }

 private:
  void Propose(const v1::DraftRequest& request, int send, v1::DraftResponse response,
               std::vector<v1::DraftResponse>* out) {
    const auto& span = request.propose().tokens();
    if (send == lose_session_send || !has_session_ ||
        span.start_position() > static_cast<int64_t>(cache_.size())) {
      has_session_ = false;
      response.mutable_session_lost()->set_reason("evicted");
      out->push_back(response);
      return;
    }
    cache_.resize(span.start_position());
    cache_.insert(cache_.end(), span.tokens().begin(), span.tokens().end());
    if (static_cast<int64_t>(cache_.size()) != request.committed_length()) {
      log.errors.push_back("propose span");
    }
    const int k = request.propose().num_draft_tokens();
    const int per_message = request.propose().tokens_per_message();
    proposal_requests.push_back(k);
    std::vector<int32_t> context = cache_;
    for (int i = 0; i < k; ++i) {
      const std::vector<float> logits = DraftLogits(context, noise);
      const TokenDistribution q = ToDistribution(logits.data(), kVocab, nullptr, params_);
      const DraftProposal x =
          DrawDraftToken(q, params_, static_cast<int64_t>(context.size()));
      v1::DraftToken token;
      token.set_index(i);
      token.set_token(x.token);
      ToProto(q, token.mutable_q());
      token.set_last(i + 1 == k);
      token.set_compute_ms(absl::ToDoubleMilliseconds(token_cost * (i + 1)));
      if (per_message == 0) {
        out->push_back(response);
        *out->back().mutable_token() = std::move(token);
        ++proposal_messages;
      } else {
        if (i % per_message == 0) {
          out->push_back(response);
          out->back().mutable_tokens();
          ++proposal_messages;
        }
        *out->back().mutable_tokens()->add_tokens() = std::move(token);
      }
      context.push_back(x.token);
    }
    // It holds every proposal but the last (never fed back).
    if (k > 0) context.pop_back();
    cache_ = context;
  }

  std::string address_;
  FakeClock* clock_;
  std::vector<int32_t> cache_;
  bool has_session_ = false;
  SamplingParams params_;
};

class FakeVerifierLink : public VerifierLink {
 public:
  explicit FakeVerifierLink(FakeVerifier* replica) : replica_(replica) { ++replica_->log.streams; }
  absl::StatusOr<v1::VerifierResponse> Call(const v1::VerifierRequest& request) override {
    if (closed_) return absl::FailedPreconditionError("closed");
    if (!broken_.ok()) return broken_;
    absl::StatusOr<v1::VerifierResponse> response = replica_->Handle(request);
    if (!response.ok()) broken_ = response.status();  // the stream ends with it
    return response;
  }
  void Close(bool release, const std::string& session_id) override {
    if (closed_) return;
    if (release && broken_.ok()) {
      v1::VerifierRequest request;
      request.set_session_id(session_id);
      request.mutable_release();
      (void)replica_->Handle(request);
    }
    closed_ = true;
  }

 private:
  FakeVerifier* replica_;
  absl::Status broken_;
  bool closed_ = false;
};

class FakeDraftLink : public DraftLink {
 public:
  FakeDraftLink(FakeDraft* replica, FakeClock* clock) : replica_(replica), clock_(clock) {
    ++replica_->log.streams;
  }
  bool Send(const v1::DraftRequest& request) override {
    const int send = replica_->log.calls++;
    replica_->send_times.push_back(clock_->Now());
    if (broken_ || closed_) return false;
    if (send == replica_->break_send || replica_->break_every_send) {
      broken_ = true;
      return false;
    }
    // Late answers arrive now, behind this request's own.
    for (v1::DraftResponse& late : late_) queue_.push_back(std::move(late));
    late_.clear();
    std::vector<v1::DraftResponse> answers = replica_->Handle(request, send);
    if (send == replica_->close_before_answer) {
      ended_ = true;
      return true;
    }
    auto& to = send == replica_->late_send ? late_ : queue_;
    for (v1::DraftResponse& answer : answers) to.push_back(std::move(answer));
    return true;
  }
  ReadResult Read(v1::DraftResponse* response, absl::Time deadline) override {
    if (!queue_.empty()) {
      *response = std::move(queue_.front());
      queue_.pop_front();
      if (response->has_token()) clock_->Advance(replica_->token_cost);
      clock_->Advance(replica_->token_cost * response->tokens().tokens_size());
      return ReadResult::kMessage;
    }
    if (ended_ || broken_) return ReadResult::kClosed;
    clock_->AdvanceTo(deadline);  // nothing comes: the wait runs to its deadline
    return ReadResult::kTimeout;
  }
  void Close(bool release, const std::string& session_id) override {
    if (closed_) return;
    if (release && !broken_ && !ended_) {
      v1::DraftRequest request;
      request.set_session_id(session_id);
      request.mutable_release();
      replica_->Handle(request, -1);
    }
    closed_ = true;
  }
  std::string final_error() const override { return broken_ || ended_ ? "stream ended" : ""; }

 private:
  FakeDraft* replica_;
  FakeClock* clock_;
  std::deque<v1::DraftResponse> queue_;
  std::deque<v1::DraftResponse> late_;
  bool broken_ = false;
  bool ended_ = false;
  bool closed_ = false;
};

// Replicas in rank order for every session; a reported replica is unhealthy (ranked last, not
// picked) for the rest of the test.
class FakeBackends : public SessionBackends {
 public:
  explicit FakeBackends(FakeClock* clock) : clock_(clock) {}

  FakeVerifier* AddVerifier() {
    verifiers_.push_back(std::make_unique<FakeVerifier>(
        absl::StrCat("verifier-", verifiers_.size()), clock_));
    return verifiers_.back().get();
  }
  FakeDraft* AddDraft() {
    drafts_.push_back(
        std::make_unique<FakeDraft>(absl::StrCat("draft-", drafts_.size()), clock_));
    return drafts_.back().get();
  }
  bool healthy(const std::string& address) const { return failures_.count(address) == 0; }
  int failures(const std::string& address) const {
    auto it = failures_.find(address);
    return it == failures_.end() ? 0 : it->second;
  }

  std::vector<std::string> RankedVerifiers(const std::string&) override {
    std::vector<std::string> out;
    for (const auto& v : verifiers_) if (healthy(v->address())) out.push_back(v->address());
    for (const auto& v : verifiers_) if (!healthy(v->address())) out.push_back(v->address());
    return out;
  }
  std::string verifier_target() const override { return "fake"; }
  bool has_drafts() const override { return !drafts_.empty(); }
  std::string PickDraft(const std::string&) override {
    for (const auto& d : drafts_) if (healthy(d->address())) return d->address();
    return "";
  }
  std::unique_ptr<VerifierLink> OpenVerifier(const std::string& address) override {
    for (const auto& v : verifiers_) {
      if (v->address() == address) return std::make_unique<FakeVerifierLink>(v.get());
    }
    return nullptr;
  }
  std::unique_ptr<DraftLink> OpenDraft(const std::string& address) override {
    for (const auto& d : drafts_) {
      if (d->address() == address) return std::make_unique<FakeDraftLink>(d.get(), clock_);
    }
    return nullptr;
  }
  void ReportVerifierFailure(const std::string& address, const absl::Status&) override {
    ++failures_[address];
  }
  void ReportDraftFailure(const std::string& address, const absl::Status&) override {
    ++failures_[address];
  }
  // A prober found every replica healthy again.
  void HealAll() { failures_.clear(); }

 private:
  FakeClock* clock_;
  std::vector<std::unique_ptr<FakeVerifier>> verifiers_;
  std::vector<std::unique_ptr<FakeDraft>> drafts_;
  std::map<std::string, int> failures_;
};

}  // namespace fakes
}  // namespace specdec

#endif  // SPECDEC_SERVICES_GATEWAY_SESSION_FAKES_H_
