// Batching span processor (see tracer.h).
#include "common/tracing/tracer.h"

#include <utility>

#include "common/base/log.h"

namespace specdec {

Tracer::Tracer(std::vector<std::unique_ptr<SpanExporter>> exporters, TracerOptions options)
    : exporters_(std::move(exporters)), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

Tracer::~Tracer() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void Tracer::Submit(SpanData span) {
  absl::MutexLock lock(&mu_);
  ++submitted_;
  if (queue_.size() >= options_.max_queue) {
    ++dropped_;
    ++exported_;
    return;
  }
  queue_.push_back(std::move(span));
}

void Tracer::Submit(std::vector<SpanData> spans) {
  for (SpanData& span : spans) Submit(std::move(span));
}

bool Tracer::Flush(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  const int64_t target = submitted_;
  flush_now_ = true;
  auto done = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return exported_ >= target; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

int64_t Tracer::dropped() const {
  absl::MutexLock lock(&mu_);
  return dropped_;
}

void Tracer::Loop() {
  bool stopping = false;
  while (true) {
    std::vector<SpanData> batch;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || flush_now_ || queue_.size() >= options_.max_batch;
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), options_.flush_interval);
      stopping = stop_;
      flush_now_ = false;
      const size_t n = std::min(queue_.size(), options_.max_batch);
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + n));
      queue_.erase(queue_.begin(), queue_.begin() + n);
      if (!queue_.empty()) flush_now_ = true;  // more than one batch waiting
    }
    if (!batch.empty()) {
      for (auto& exporter : exporters_) {
        absl::Status status = exporter->Export(batch);
        if (!status.ok()) {
          const std::string error = status.ToString();
          if (error != last_error_ || absl::Now() - last_error_log_ > absl::Seconds(30)) {
            SPECDEC_LOG(Warning) << "tracing: " << batch.size() << " spans not exported: " << error
                                 << " (repeats are logged every 30 s)";
            last_error_log_ = absl::Now();
          }
          last_error_ = error;
        } else if (!last_error_.empty()) {
          SPECDEC_LOG(Info) << "tracing: exporting again";
          last_error_.clear();
        }
      }
      absl::MutexLock lock(&mu_);
      exported_ += static_cast<int64_t>(batch.size());
      continue;
    }
    if (stopping) break;
  }
  for (auto& exporter : exporters_) exporter->Shutdown();
}

}  // namespace specdec
