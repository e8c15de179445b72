// OTLP/gRPC span export (see otlp_exporter.h).
#include "common/tracing/otlp_exporter.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace specdec {
namespace {

namespace otlp_collector = opentelemetry::proto::collector::trace::v1;
namespace otlp_trace = opentelemetry::proto::trace::v1;
namespace otlp_common = opentelemetry::proto::common::v1;

void SetValue(const AttributeValue& value, otlp_common::AnyValue* out) {
  if (const auto* s = std::get_if<std::string>(&value)) {
    out->set_string_value(*s);
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    out->set_int_value(*i);
  } else if (const auto* d = std::get_if<double>(&value)) {
    out->set_double_value(*d);
  } else if (const auto* b = std::get_if<bool>(&value)) {
    out->set_bool_value(*b);
  }
}

void AddString(const std::string& key, const std::string& value,
               google::protobuf::RepeatedPtrField<otlp_common::KeyValue>* out) {
  otlp_common::KeyValue* kv = out->Add();
  kv->set_key(key);
  kv->mutable_value()->set_string_value(value);
}

otlp_trace::Span::SpanKind Kind(SpanKind kind) {
  switch (kind) {
    case SpanKind::kServer:
      return otlp_trace::Span::SPAN_KIND_SERVER;
    case SpanKind::kClient:
      return otlp_trace::Span::SPAN_KIND_CLIENT;
    default:
      return otlp_trace::Span::SPAN_KIND_INTERNAL;
  }
}

}  // namespace

otlp_collector::ExportTraceServiceRequest ToOtlp(const std::vector<SpanData>& spans,
                                                 const OtlpExporterOptions& options) {
  otlp_collector::ExportTraceServiceRequest request;
  otlp_trace::ResourceSpans* resource_spans = request.add_resource_spans();
  auto* resource = resource_spans->mutable_resource()->mutable_attributes();
  AddString("service.name", options.service_name, resource);
  AddString("telemetry.sdk.name", "specdec", resource);
  AddString("telemetry.sdk.language", "cpp", resource);
  for (const auto& [key, value] : options.resource_attributes) AddString(key, value, resource);
  otlp_trace::ScopeSpans* scope_spans = resource_spans->add_scope_spans();
  scope_spans->mutable_scope()->set_name("specdec");
  for (const SpanData& span : spans) {
    otlp_trace::Span* out = scope_spans->add_spans();
    out->set_trace_id(span.trace_id.data(), span.trace_id.size());
    out->set_span_id(span.span_id.data(), span.span_id.size());
    if (!span.is_root()) {
      out->set_parent_span_id(span.parent_span_id.data(), span.parent_span_id.size());
    }
    out->set_name(span.name);
    out->set_kind(Kind(span.kind));
    out->set_start_time_unix_nano(span.start_unix_ns);
    out->set_end_time_unix_nano(span.end_unix_ns);
    out->set_flags(1);  // sampled
    for (const auto& [key, value] : span.attributes) {
      otlp_common::KeyValue* kv = out->add_attributes();
      kv->set_key(key);
      SetValue(value, kv->mutable_value());
    }
    if (span.error) {
      out->mutable_status()->set_code(otlp_trace::Status::STATUS_CODE_ERROR);
      out->mutable_status()->set_message(span.status_message);
    }
  }
  return request;
}

OtlpExporter::OtlpExporter(OtlpExporterOptions options) : options_(std::move(options)) {
  stub_ = otlp_collector::TraceService::NewStub(
      grpc::CreateChannel(options_.endpoint, grpc::InsecureChannelCredentials()));
}

absl::Status OtlpExporter::Export(const std::vector<SpanData>& spans) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       absl::ToChronoMilliseconds(options_.timeout));
  otlp_collector::ExportTraceServiceResponse response;
  const grpc::Status status = stub_->Export(&context, ToOtlp(spans, options_), &response);
  if (!status.ok()) {
    return absl::UnavailableError(absl::StrCat("OTLP export to ", options_.endpoint, ": ",
                                               status.error_message(), " (code ",
                                               static_cast<int>(status.error_code()), ")"));
  }
  if (response.partial_success().rejected_spans() > 0) {
    return absl::DataLossError(
        absl::StrCat("the collector rejected ", response.partial_success().rejected_spans(),
                     " spans: ", response.partial_success().error_message()));
  }
  return absl::OkStatus();
}

}  // namespace specdec
