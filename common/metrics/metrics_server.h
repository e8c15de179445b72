// The Prometheus endpoint of a service: prometheus-cpp's registry and metric types, served as
// text at http://HOST:PORT/metrics (--metrics_listen) by a small HTTP server of our own.
//
// Why not prometheus-cpp's pull Exposer: it runs on Debian's civetweb, which starts its threads
// with a fixed 100 KB stack; in a process that loads libtorch and OpenBLAS the static TLS alone
// is about that large, so pthread_create fails (EINVAL) and the exposer cannot start in the
// draft and verifier. Scrapes are rare and small: one thread answering them in turn suffices.
#ifndef SPECDEC_COMMON_METRICS_METRICS_SERVER_H_
#define SPECDEC_COMMON_METRICS_METRICS_SERVER_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/registry.h"

namespace specdec {

// Buckets for latencies in seconds: 0.1 ms to 30 s, roughly x2.5 apart.
const std::vector<double>& LatencyBucketsSeconds();

class MetricsServer {
 public:
  // Serves `registry` (and later RegisterCollectable()s) at http://listen/metrics (HOST:PORT;
  // 0.0.0.0 for every address, port 0 for a free one). UNAVAILABLE when the address cannot be
  // bound, INVALID_ARGUMENT when it is malformed.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& listen, std::shared_ptr<prometheus::Registry> registry);
  ~MetricsServer();

  // Adds a collectable evaluated on every scrape (kept alive by the server).
  void RegisterCollectable(std::shared_ptr<prometheus::Collectable> collectable);
  int port() const { return port_; }
  // The text a scrape returns now.
  std::string Render() const;

 private:
  MetricsServer() = default;
  void Loop();
  void Answer(int fd) const;

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_ ABSL_GUARDED_BY(mu_);
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_METRICS_METRICS_SERVER_H_
