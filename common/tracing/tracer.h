// Span export off the request path: Submit() only appends to a bounded queue (dropping, and
// counting, spans when it is full); a background thread hands batches to the exporters (OTLP,
// Chrome trace file) every flush interval or when a batch is full.
#ifndef SPECDEC_COMMON_TRACING_TRACER_H_
#define SPECDEC_COMMON_TRACING_TRACER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/tracing/span.h"

namespace specdec {

class SpanExporter {
 public:
  virtual ~SpanExporter() = default;
  // Called from the tracer's thread only; may block (network, disk).
  virtual absl::Status Export(const std::vector<SpanData>& spans) = 0;
  // Called once, from the tracer's thread, after the last Export.
  virtual void Shutdown() {}
};

struct TracerOptions {
  size_t max_queue = 8192;  // spans waiting; more are dropped
  size_t max_batch = 512;   // spans per Export call
  absl::Duration flush_interval = absl::Milliseconds(500);
};

class Tracer {
 public:
  Tracer(std::vector<std::unique_ptr<SpanExporter>> exporters, TracerOptions options = {});
  // Exports what is queued, then stops the thread.
  ~Tracer();

  // Never blocks on I/O: a queue append under a mutex.
  void Submit(SpanData span);
  void Submit(std::vector<SpanData> spans);
  // Blocks until every span submitted before the call went to the exporters (for tests and
  // shutdown); false after `timeout`.
  bool Flush(absl::Duration timeout);
  int64_t dropped() const;

 private:
  void Loop();

  std::vector<std::unique_ptr<SpanExporter>> exporters_;
  const TracerOptions options_;
  mutable absl::Mutex mu_;
  std::vector<SpanData> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool flush_now_ ABSL_GUARDED_BY(mu_) = false;
  int64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t exported_ ABSL_GUARDED_BY(mu_) = 0;  // handed to exporters (or dropped)
  int64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
  // Export failures are logged when they start, change, or every 30 s (thread_ only).
  std::string last_error_;
  absl::Time last_error_log_ = absl::InfinitePast();
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_TRACING_TRACER_H_
