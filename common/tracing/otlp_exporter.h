// Sends spans to an OpenTelemetry collector over OTLP/gRPC (TraceService/Export, the protos in
// proto/opentelemetry/), e.g. Jaeger's or the OpenTelemetry Collector's :4317.
#ifndef SPECDEC_COMMON_TRACING_OTLP_EXPORTER_H_
#define SPECDEC_COMMON_TRACING_OTLP_EXPORTER_H_

#include <memory>
#include <string>
#include <vector>

#include "common/tracing/tracer.h"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"

namespace specdec {

struct OtlpExporterOptions {
  std::string endpoint;      // HOST:PORT of the collector's OTLP/gRPC receiver
  std::string service_name;  // resource attribute service.name
  std::vector<std::pair<std::string, std::string>> resource_attributes;
  absl::Duration timeout = absl::Seconds(2);  // per Export call
};

class OtlpExporter : public SpanExporter {
 public:
  explicit OtlpExporter(OtlpExporterOptions options);
  absl::Status Export(const std::vector<SpanData>& spans) override;

 private:
  OtlpExporterOptions options_;
  std::unique_ptr<opentelemetry::proto::collector::trace::v1::TraceService::Stub> stub_;
};

// The OTLP request for `spans` (one resource, one scope); exposed for tests.
opentelemetry::proto::collector::trace::v1::ExportTraceServiceRequest ToOtlp(
    const std::vector<SpanData>& spans, const OtlpExporterOptions& options);

}  // namespace specdec

#endif  // SPECDEC_COMMON_TRACING_OTLP_EXPORTER_H_
