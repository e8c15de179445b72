// Chrome trace-event JSON (see chrome_trace_writer.h).
#include "common/tracing/chrome_trace_writer.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace specdec {

absl::StatusOr<std::unique_ptr<ChromeTraceWriter>> ChromeTraceWriter::Open(
    const std::string& path, const std::string& process_name) {
  std::unique_ptr<ChromeTraceWriter> writer(new ChromeTraceWriter);
  writer->path_ = path;
  writer->file_ = std::fopen(path.c_str(), "w");
  if (writer->file_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write the trace file ", path, ": ", std::strerror(errno)));
  }
  nlohmann::json meta = {{"name", "process_name"},
                         {"ph", "M"},
                         {"pid", 1},
                         {"tid", 0},
                         {"args", {{"name", process_name}}}};
  // Timestamps count from here (small numbers print exactly); the absolute start is metadata.
  writer->base_unix_ns_ = UnixNanosNow();
  nlohmann::json start = {{"name", "trace_start_unix_ns"},
                          {"ph", "M"},
                          {"pid", 1},
                          {"tid", 0},
                          {"args", {{"unix_ns", writer->base_unix_ns_}}}};
  std::fprintf(writer->file_, "[\n%s,\n%s", meta.dump().c_str(), start.dump().c_str());
  std::fflush(writer->file_);
  return writer;
}

ChromeTraceWriter::~ChromeTraceWriter() { Shutdown(); }

absl::Status ChromeTraceWriter::Export(const std::vector<SpanData>& spans) {
  if (file_ == nullptr) return absl::FailedPreconditionError("the trace file is closed");
  for (const SpanData& span : spans) {
    // Round spans go to the lane of their round's parity (chrome_trace_writer.h).
    int lane = 0;
    for (const auto& [key, value] : span.attributes) {
      if (key == "specdec.round" && std::holds_alternative<int64_t>(value)) {
        lane = 1 + static_cast<int>(std::get<int64_t>(value) % 2);
      }
    }
    auto [it, inserted] = tracks_.try_emplace(std::make_pair(span.trace_id, lane),
                                              static_cast<int>(tracks_.size()) + 1);
    const int tid = it->second;
    nlohmann::json args = nlohmann::json::object();
    for (const auto& [key, value] : span.attributes) {
      std::visit([&args, &key = key](const auto& v) { args[key] = v; }, value);
    }
    args["span_id"] = ToHex(span.span_id);
    if (!span.is_root()) args["parent_span_id"] = ToHex(span.parent_span_id);
    args["trace_id"] = ToHex(span.trace_id);
    if (span.error) args["error"] = span.status_message;
    if (inserted) {
      // Name the track after the request it shows (its id when the span carries it).
      std::string track = lane == 0 ? span.name : ToHex(span.trace_id).substr(0, 8);
      for (const auto& [key, value] : span.attributes) {
        if (key == "specdec.request_id" && std::holds_alternative<std::string>(value)) {
          track = std::get<std::string>(value);
        }
      }
      if (lane > 0) {
        absl::StrAppend(&track, lane == 1 ? " rounds 0, 2, 4..." : " rounds 1, 3, 5...");
      }
      nlohmann::json name = {{"name", "thread_name"},
                             {"ph", "M"},
                             {"pid", 1},
                             {"tid", tid},
                             {"args", {{"name", track}}}};
      std::fprintf(file_, ",\n%s", name.dump().c_str());
    }
    const double ts_us = span.start_unix_ns >= base_unix_ns_
                             ? static_cast<double>(span.start_unix_ns - base_unix_ns_) / 1000.0
                             : -static_cast<double>(base_unix_ns_ - span.start_unix_ns) / 1000.0;
    const double dur_us = span.end_unix_ns > span.start_unix_ns
                              ? static_cast<double>(span.end_unix_ns - span.start_unix_ns) / 1000.0
                              : 0.0;
    nlohmann::json event = {{"name", span.name}, {"cat", "specdec"}, {"ph", "X"},  {"ts", ts_us},
                            {"dur", dur_us},     {"pid", 1},         {"tid", tid}, {"args", args}};
    std::fprintf(file_, ",\n%s",
                 event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  }
  if (std::fflush(file_) != 0) {
    return absl::DataLossError(absl::StrCat("writing ", path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

void ChromeTraceWriter::Shutdown() {
  if (file_ == nullptr) return;
  std::fprintf(file_, "\n]\n");
  std::fclose(file_);
  file_ = nullptr;
}

}  // namespace specdec
