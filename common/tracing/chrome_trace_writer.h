// Writes spans as Chrome trace-event JSON (the JSON array format: complete "X" events with
// microsecond timestamps), which Perfetto (ui.perfetto.dev) and chrome://tracing open. Each
// trace (request) has its own tracks (tids): one for its spans, and two for the spans of its
// speculation rounds (those with a "specdec.round" attribute), even rounds on one and odd on
// the other. Viewers draw a track's slices as a strict nesting, and overlapped rounds do not
// nest: round r+1's draft starts while round r is verified. Round r+2 starts after round r ends,
// so two tracks show every overlap.
#ifndef SPECDEC_COMMON_TRACING_CHROME_TRACE_WRITER_H_
#define SPECDEC_COMMON_TRACING_CHROME_TRACE_WRITER_H_

#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tracing/tracer.h"

namespace specdec {

class ChromeTraceWriter : public SpanExporter {
 public:
  // Creates (truncates) `path`. `process_name` labels the process track.
  static absl::StatusOr<std::unique_ptr<ChromeTraceWriter>> Open(const std::string& path,
                                                                 const std::string& process_name);
  ~ChromeTraceWriter() override;

  absl::Status Export(const std::vector<SpanData>& spans) override;
  // Closes the JSON array. A file cut short by a crash still opens: the closing bracket of the
  // array format is optional for trace viewers.
  void Shutdown() override;

 private:
  ChromeTraceWriter() = default;
  std::FILE* file_ = nullptr;
  uint64_t base_unix_ns_ = 0;  // ts 0 in the file; also written as metadata
  std::string path_;
  // (trace, lane) -> tid; lane 0: the trace's spans, 1 and 2: its even and odd rounds.
  std::map<std::pair<TraceId, int>, int> tracks_;
};

}  // namespace specdec

#endif  // SPECDEC_COMMON_TRACING_CHROME_TRACE_WRITER_H_
