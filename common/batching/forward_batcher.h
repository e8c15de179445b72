// Cross-session batching: the draft and verifier run each session's steps on one of their
// session workers (--session_threads), and each worker's forward passes go through one
// ForwardBatcher, which runs the calls that are waiting at the same time as one
// Sequence::ForwardBatch. On a CPU a small model's pass is bound by reading the weights, so N
// sessions in one pass cost far less than N passes.
//
// No batcher thread: a waiting caller runs the pass for everyone queued (leader), the others
// sleep until their result is in, and a lone session runs its pass on its caller's thread with no
// hand-off. Up to max_passes passes run at once (one per core the service may use: a pass with
// one compute thread would otherwise leave the other cores idle at low concurrency). Before a
// pass the leader waits, up to max_wait, for as many calls as the previous pass had, so
// sessions that run in step stay batched; a session that went quiet costs one wait.
#ifndef SPECDEC_COMMON_BATCHING_FORWARD_BATCHER_H_
#define SPECDEC_COMMON_BATCHING_FORWARD_BATCHER_H_

#include <cstdint>
#include <deque>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/model/model.h"

namespace specdec {

class ForwardBatcher {
 public:
  struct Options {
    // Rows (new tokens) of one pass; calls beyond wait for the next pass (a call bigger than
    // this runs alone).
    int64_t max_rows = 512;
    // How long a pass waits for the calls it expects; zero: run what is queued at once.
    absl::Duration max_wait = absl::Microseconds(300);
    // Calls the first pass waits for (later passes expect as many as the pass before them).
    int64_t first_pass_calls = 1;
    // Passes that may run at the same time.
    int max_passes = 1;
  };
  struct Stats {
    int64_t passes = 0;    // batched passes run
    int64_t calls = 0;     // Forward calls served by them
    int64_t rows = 0;      // tokens run
    int64_t largest = 0;   // most calls in one pass
  };

  explicit ForwardBatcher(Options options)
      : options_(options), last_pass_calls_(options.first_pass_calls) {}
  ForwardBatcher(const ForwardBatcher&) = delete;
  ForwardBatcher& operator=(const ForwardBatcher&) = delete;

  // sequence->Forward(tokens, wanted), run in one pass with the other sessions' calls waiting
  // now (those of the same view: a pass runs one view). One call per sequence at a time.
  absl::StatusOr<Logits> Forward(Sequence* sequence, absl::Span<const int32_t> tokens,
                                 LogitsWanted wanted);

  Stats stats() const;

 private:
  struct Call {
    Sequence::BatchItem item;
    absl::StatusOr<Logits> result = absl::UnknownError("not run");
    bool taken = false;  // in a pass
    bool done = false;
  };
  // Runs one pass as the leader; called and returns with mu_ held.
  void LeadOnePass() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const Options options_;
  mutable absl::Mutex mu_;
  std::deque<Call*> queue_ ABSL_GUARDED_BY(mu_);
  int64_t queued_rows_ ABSL_GUARDED_BY(mu_) = 0;
  int leaders_ ABSL_GUARDED_BY(mu_) = 0;  // passes running
  int64_t last_pass_calls_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_BATCHING_FORWARD_BATCHER_H_
