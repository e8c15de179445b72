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
    auto [it, inserted] = tracks_.try_emplace(span.trace_id, static_cast<int>(tracks_.size()) + 1);
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
      // Name the track after the request it shows.
      std::string track = span.name;
      for (const auto& [key, value] : span.attributes) {
        if (key == "specdec.request_id" && std::holds_alternative<std::string>(value)) {
          track = std::get<std::string>(value);
        }
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
