// Metrics, traces, the OpenAI-compatible HTTP API and `specdec health`, end to end: a random
// tiny checkpoint, the three services as child processes on loopback ports, /metrics scraped
// over HTTP before and after a Generate, spans received by an OTLP collector stand-in (a gRPC
// TraceService in this process), the Chrome trace file parsed, completions over real HTTP.
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "opentelemetry/proto/collector/trace/v1/trace_service.grpc.pb.h"
#include "specdec/v1/gateway.grpc.pb.h"
#include "specdec/v1/verifier.grpc.pb.h"
#include "tests/integration/service_process.h"
#include "tests/observe/http_client.h"
#include "tests/observe/service_stack.h"

namespace specdec {
namespace {

using ::nlohmann::json;
using ::specdec::testing::ConnectLoopback;
using ::specdec::testing::HttpRequest;
using ::specdec::testing::HttpRequestText;
using ::specdec::testing::HttpResponse;
using ::specdec::testing::PickFreePort;
using ::specdec::testing::RunCommand;
using ::specdec::testing::ServiceProcess;
using ::specdec::testing::ServiceStack;
namespace otlp = ::opentelemetry::proto;

const std::string kBin = SPECDEC_BINARY_DIR;

// Scrapes /metrics, failing the test when the scrape does.
std::map<std::string, double> Scrape(int port) {
  std::map<std::string, double> samples = ::specdec::testing::Scrape(port);
  EXPECT_FALSE(samples.empty()) << "GET /metrics on port " << port << " failed";
  return samples;
}

double Get(const std::map<std::string, double>& samples, const std::string& key) {
  auto it = samples.find(key);
  return it == samples.end() ? 0.0 : it->second;
}

// --- an OTLP collector stand-in ---

class Collector final : public otlp::collector::trace::v1::TraceService::Service {
 public:
  grpc::Status Export(grpc::ServerContext*,
                      const otlp::collector::trace::v1::ExportTraceServiceRequest* request,
                      otlp::collector::trace::v1::ExportTraceServiceResponse*) override {
    absl::MutexLock lock(&mu_);
    for (const auto& resource : request->resource_spans()) {
      std::map<std::string, std::string> attributes;
      for (const auto& attribute : resource.resource().attributes()) {
        attributes[attribute.key()] = attribute.value().string_value();
      }
      for (const auto& scope : resource.scope_spans()) {
        for (const auto& span : scope.spans()) {
          spans_.push_back(span);
          resource_of_[span.span_id()] = attributes;
        }
      }
    }
    return grpc::Status::OK;
  }
  std::vector<otlp::trace::v1::Span> spans() const {
    absl::MutexLock lock(&mu_);
    return spans_;
  }
  // The resource attributes of the process that exported a span (service.name, ...).
  std::map<std::string, std::string> resource_of(const std::string& span_id) const {
    absl::MutexLock lock(&mu_);
    const auto it = resource_of_.find(span_id);
    return it == resource_of_.end() ? std::map<std::string, std::string>() : it->second;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<otlp::trace::v1::Span> spans_;
  std::map<std::string, std::map<std::string, std::string>> resource_of_;  // by span id
};

std::map<std::string, otlp::common::v1::AnyValue> Attributes(const otlp::trace::v1::Span& span) {
  std::map<std::string, otlp::common::v1::AnyValue> out;
  for (const auto& kv : span.attributes()) out[kv.key()] = kv.value();
  return out;
}

// Serves `collector` on a free loopback port, written to `port` (0 when that failed).
grpc::Server* ServeCollector(Collector* collector, int* port) {
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), port);
  builder.RegisterService(collector);
  return builder.BuildAndStart().release();
}

class ObserveTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new ServiceStack("observe");
    ASSERT_TRUE(stack_->MakeModel(3));
    collector_ = new Collector;
    int collector_port = 0;
    collector_server_ = ServeCollector(collector_, &collector_port);
    ASSERT_GT(collector_port, 0);

    for (int* port : {&verifier_metrics_, &draft_metrics_, &gateway_metrics_, &http_port_}) {
      *port = PickFreePort();
    }
    trace_file_ = new std::string(stack_->dir() + "/trace.json");
    const std::string otlp = absl::StrCat("--otlp_endpoint=127.0.0.1:", collector_port);
    ASSERT_TRUE(stack_->StartServices(
        {absl::StrCat("--metrics_listen=127.0.0.1:", verifier_metrics_), otlp},
        {"--draft_layers=0", absl::StrCat("--metrics_listen=127.0.0.1:", draft_metrics_), otlp},
        {absl::StrCat("--metrics_listen=127.0.0.1:", gateway_metrics_), otlp,
         "--trace_file=" + *trace_file_, absl::StrCat("--http_listen=127.0.0.1:", http_port_)}));
    verifier_ = stack_->verifier();
    draft_ = stack_->draft();
    gateway_ = stack_->gateway();
  }

  static void TearDownTestSuite() {
    delete stack_;  // the services first: the gateway flushes its spans to the collector
    if (collector_server_ != nullptr) collector_server_->Shutdown();
    delete collector_server_;
    delete collector_;
  }

  static v1::GenerateResponse Generate(const v1::GenerateRequest& request, std::string* text,
                                       grpc::Status* status) {
    auto stub = v1::Gateway::NewStub(
        grpc::CreateChannel(gateway_->address(), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    auto reader = stub->Generate(&context, request);
    v1::GenerateResponse response;
    v1::GenerateResponse last;
    while (reader->Read(&response)) {
      if (text != nullptr) *text += response.text();
      if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) last = response;
    }
    *status = reader->Finish();
    return last;
  }

  static v1::GenerateRequest Request(const std::string& request_id, int max_new_tokens, int k) {
    v1::GenerateRequest request;
    request.set_prompt("The quick brown fox jumps over");
    request.set_max_new_tokens(max_new_tokens);
    request.mutable_speculation()->set_num_draft_tokens(k);
    request.set_request_id(request_id);
    return request;
  }

  static ServiceStack* stack_;
  static std::string* trace_file_;
  static Collector* collector_;
  static grpc::Server* collector_server_;
  static ServiceProcess* verifier_;
  static ServiceProcess* draft_;
  static ServiceProcess* gateway_;
  static int verifier_metrics_, draft_metrics_, gateway_metrics_, http_port_;
};

ServiceStack* ObserveTest::stack_ = nullptr;
std::string* ObserveTest::trace_file_ = nullptr;
Collector* ObserveTest::collector_ = nullptr;
grpc::Server* ObserveTest::collector_server_ = nullptr;
ServiceProcess* ObserveTest::verifier_ = nullptr;
ServiceProcess* ObserveTest::draft_ = nullptr;
ServiceProcess* ObserveTest::gateway_ = nullptr;
int ObserveTest::verifier_metrics_ = 0;
int ObserveTest::draft_metrics_ = 0;
int ObserveTest::gateway_metrics_ = 0;
int ObserveTest::http_port_ = 0;

TEST_F(ObserveTest, MetricsCountersMoveWithAGenerate) {
  const auto gateway_before = Scrape(gateway_metrics_);
  const auto verifier_before = Scrape(verifier_metrics_);
  const auto draft_before = Scrape(draft_metrics_);
  grpc::Status status;
  const v1::GenerateResponse last = Generate(Request("metrics-1", 12, 3), nullptr, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  v1::GenerateRequest bad = Request("metrics-bad", 12, 3);
  bad.mutable_sampling()->set_temperature(-1);
  Generate(bad, nullptr, &status);
  ASSERT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  const auto gateway = Scrape(gateway_metrics_);
  const auto verifier = Scrape(verifier_metrics_);
  const auto draft = Scrape(draft_metrics_);
  auto delta = [](const auto& after, const auto& before, const std::string& key) {
    return Get(after, key) - Get(before, key);
  };
  const std::string outcome = last.finish_reason() == v1::FINISH_REASON_EOS ? "eos" : "length";
  EXPECT_EQ(delta(gateway, gateway_before,
                  "specdec_gateway_requests_total{code=\"OK\",outcome=\"" + outcome + "\"}"),
            1);
  EXPECT_EQ(delta(gateway, gateway_before,
                  "specdec_gateway_requests_total{code=\"INVALID_ARGUMENT\",outcome=\"error\"}"),
            1);
  EXPECT_EQ(delta(gateway, gateway_before, "specdec_gateway_tokens_generated_total"),
            last.usage().generated_tokens());
  EXPECT_EQ(delta(gateway, gateway_before, "specdec_gateway_tokens_drafted_total"),
            last.usage().drafted_tokens());
  EXPECT_EQ(delta(gateway, gateway_before, "specdec_gateway_tokens_accepted_total"),
            last.usage().accepted_tokens());
  EXPECT_GT(last.usage().drafted_tokens(), 0);
  EXPECT_EQ(delta(gateway, gateway_before, "specdec_gateway_rounds_total"), last.usage().rounds());
  EXPECT_EQ(
      delta(gateway, gateway_before, "specdec_gateway_round_phase_seconds_count{phase=\"verify\"}"),
      last.usage().rounds());
  EXPECT_EQ(delta(gateway, gateway_before, "specdec_gateway_time_to_first_token_seconds_count"), 1);
  EXPECT_EQ(Get(gateway, "specdec_gateway_active_sessions"), 0);
  EXPECT_GE(Get(gateway, "specdec_gateway_acceptance_rate"), 0);
  EXPECT_LE(Get(gateway, "specdec_gateway_acceptance_rate"), 1);
  // The windowed acceptance rates exist once something was drafted, and are rates.
  for (const char* window : {"1m", "5m"}) {
    const std::string key =
        absl::StrCat("specdec_gateway_acceptance_rate_window{window=\"", window, "\"}");
    ASSERT_EQ(gateway.count(key), 1u) << key;
    EXPECT_GE(gateway.at(key), 0) << key;
    EXPECT_LE(gateway.at(key), 1) << key;
  }

  EXPECT_GE(delta(verifier, verifier_before,
                  "specdec_model_step_seconds_count{role=\"verifier\",step=\"verify\"}"),
            last.usage().rounds());
  EXPECT_GE(delta(verifier, verifier_before,
                  "specdec_model_step_seconds_count{role=\"verifier\",step=\"prefill\"}"),
            1);
  EXPECT_GT(delta(verifier, verifier_before, "specdec_tokens_processed_total{role=\"verifier\"}"),
            0);
  EXPECT_EQ(delta(verifier, verifier_before,
                  "specdec_sessions_closed_total{reason=\"released\",role=\"verifier\"}"),
            1);
  EXPECT_EQ(verifier.count("specdec_kv_cache_bytes{kv_policy=\"full\",role=\"verifier\"}"), 1u);
  // The verifier's KV block pool, as GetStats reports it: used + free = total, and the peak saw
  // this request's blocks. The draft (contiguous caches) has no pool series.
  const std::string pool = "{kv_policy=\"full\",role=\"verifier\"";
  const double total = Get(verifier, "specdec_kv_pool_blocks_total" + pool + "}");
  EXPECT_GT(total, 0);
  EXPECT_EQ(Get(verifier, "specdec_kv_pool_blocks" + pool + ",state=\"used\"}") +
                Get(verifier, "specdec_kv_pool_blocks" + pool + ",state=\"free\"}"),
            total);
  EXPECT_GT(Get(verifier, "specdec_kv_pool_blocks_peak" + pool + "}"), 0);
  EXPECT_GT(Get(verifier, "specdec_kv_pool_block_tokens" + pool + "}"), 0);
  auto verifier_stub = v1::Verifier::NewStub(
      grpc::CreateChannel(verifier_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext stats_context;
  v1::GetStatsResponse stats;
  ASSERT_TRUE(verifier_stub->GetStats(&stats_context, v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.kv_pool_blocks_total(), total);
  EXPECT_EQ(stats.kv_pool_blocks_used() + stats.kv_pool_blocks_free(), total);
  EXPECT_EQ(draft.count("specdec_kv_pool_blocks_total{kv_policy=\"full\",role=\"draft\"}"), 0u);
  // Released sessions give their blocks back (the verifier frees them after answering Release).
  double used = -1;
  for (int i = 0; i < 100 && used != 0; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    used = Get(Scrape(verifier_metrics_), "specdec_kv_pool_blocks" + pool + ",state=\"used\"}");
  }
  EXPECT_EQ(used, 0) << "KV blocks still held after the request ended";
  EXPECT_GE(delta(draft, draft_before,
                  "specdec_model_step_seconds_count{role=\"draft\",step=\"propose\"}"),
            1);
  EXPECT_GT(delta(draft, draft_before, "specdec_tokens_processed_total{role=\"draft\"}"), 0);
}

TEST_F(ObserveTest, RoundSpansReachTheCollectorUnderTheRequestSpan) {
  grpc::Status status;
  const v1::GenerateResponse last = Generate(Request("trace-me", 10, 2), nullptr, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const int rounds = last.usage().rounds();
  ASSERT_GT(rounds, 0);

  // The exporter batches every 500 ms: wait for the request span (sent last).
  std::vector<otlp::trace::v1::Span> spans;
  const otlp::trace::v1::Span* request = nullptr;
  for (int i = 0; i < 100 && request == nullptr; ++i) {
    spans = collector_->spans();
    for (const auto& span : spans) {
      auto attributes = Attributes(span);
      if (span.name() == "Generate" &&
          attributes["specdec.request_id"].string_value() == "trace-me") {
        request = &span;
      }
    }
    if (request == nullptr) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_NE(request, nullptr) << "no request span after 10 s; " << spans.size() << " spans";
  EXPECT_TRUE(request->parent_span_id().empty());
  EXPECT_EQ(request->trace_id().size(), 16u);
  EXPECT_EQ(request->kind(), otlp::trace::v1::Span::SPAN_KIND_SERVER);
  auto attributes = Attributes(*request);
  EXPECT_FALSE(attributes["specdec.session_id"].string_value().empty());
  EXPECT_EQ(attributes["specdec.model"].string_value(), "tinymodel");
  EXPECT_EQ(attributes["specdec.generated_tokens"].int_value(), last.usage().generated_tokens());
  EXPECT_EQ(attributes["rpc.grpc.status_code"].int_value(), 0);
  EXPECT_EQ(collector_->resource_of(request->span_id())["service.name"], "specdec-gateway");
  EXPECT_EQ(collector_->resource_of(request->span_id())["specdec.model"], "tinymodel");

  std::map<std::string, const otlp::trace::v1::Span*> by_id;
  for (const auto& span : spans) {
    if (span.trace_id() == request->trace_id()) by_id[span.span_id()] = &span;
  }
  std::vector<const otlp::trace::v1::Span*> round_spans;
  std::map<std::string, std::map<std::string, int>> children;  // round span id -> name -> count
  for (const auto& [id, span] : by_id) {
    if (span->name() == "round") {
      EXPECT_EQ(span->parent_span_id(), request->span_id());
      EXPECT_GE(span->start_time_unix_nano(), request->start_time_unix_nano());
      EXPECT_LE(span->end_time_unix_nano(), request->end_time_unix_nano());
      round_spans.push_back(span);
    } else if (span->name() == "draft" || span->name() == "verify" || span->name() == "accept") {
      ASSERT_EQ(by_id.count(span->parent_span_id()), 1u) << span->name() << " has no parent";
      EXPECT_EQ(by_id[span->parent_span_id()]->name(), "round");
      ++children[span->parent_span_id()][span->name()];
    }
  }
  ASSERT_EQ(static_cast<int>(round_spans.size()), rounds);
  std::vector<bool> seen(rounds, false);
  for (const auto* round : round_spans) {
    auto round_attributes = Attributes(*round);
    const int64_t index = round_attributes["specdec.round"].int_value();
    ASSERT_GE(index, 0);
    ASSERT_LT(index, rounds);
    seen[index] = true;
    EXPECT_TRUE(round_attributes.count("specdec.num_accepted"));
    EXPECT_TRUE(round_attributes.count("specdec.verify_ms"));
    EXPECT_EQ(children[round->span_id()]["verify"], 1);
    EXPECT_EQ(children[round->span_id()]["accept"], 1);
    // K = 2 every round but the last ones, whose K the token budget may cut to 0.
    if (round_attributes["specdec.num_draft_tokens"].int_value() > 0) {
      EXPECT_EQ(children[round->span_id()]["draft"], 1);
    }
  }
  for (int i = 0; i < rounds; ++i) EXPECT_TRUE(seen[i]) << "round " << i << " missing";
}

std::string Hex(const std::string& bytes) {
  std::string out;
  for (unsigned char c : bytes) absl::StrAppend(&out, absl::Hex(c, absl::kZeroPad2));
  return out;
}

// The spans of trace `trace_hex` once `done` says they are all there (the three processes
// export in batches every 500 ms; the services' stream spans end after the request).
std::vector<otlp::trace::v1::Span> WaitForTrace(
    const Collector& collector, const std::string& trace_hex,
    const std::function<bool(const std::vector<otlp::trace::v1::Span>&)>& done) {
  std::vector<otlp::trace::v1::Span> trace;
  for (int i = 0; i < 100; ++i) {
    trace.clear();
    for (const auto& span : collector.spans()) {
      if (Hex(span.trace_id()) == trace_hex) trace.push_back(span);
    }
    if (done(trace)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return trace;
}

int CountNamed(const std::vector<otlp::trace::v1::Span>& spans, const std::string& name) {
  return static_cast<int>(std::count_if(spans.begin(), spans.end(),
                                        [&](const auto& span) { return span.name() == name; }));
}

// The gateway span each service step must hang under: the work the message named.
const std::map<std::string, std::set<std::string>>& StepParents() {
  static const auto* parents = new std::map<std::string, std::set<std::string>>{
      {"verifier.prefill", {"prefill", "verify"}},  // a re-prefill belongs to its round's verify
      {"verifier.verify", {"verify"}},
      {"draft.prefill", {"prefill", "draft"}},  // a draft opened again belongs to its round's draft
      {"draft.propose", {"draft", "predraft"}},
  };
  return *parents;
}

// Every span the draft and the verifier exported in `trace` has its parent in the trace, made
// by the gateway: the stream spans under Generate, each step under the gateway span of its work
// (StepParents). Returns how many service spans were checked.
int ExpectServiceSpansUnderGatewaySpans(const Collector& collector,
                                        const std::vector<otlp::trace::v1::Span>& trace) {
  std::map<std::string, const otlp::trace::v1::Span*> by_id;
  for (const auto& span : trace) by_id[span.span_id()] = &span;
  int checked = 0;
  for (const auto& span : trace) {
    const std::string service = collector.resource_of(span.span_id())["service.name"];
    if (service != "specdec-draft" && service != "specdec-verifier") continue;
    ++checked;
    const auto parent = by_id.find(span.parent_span_id());
    if (parent == by_id.end()) {
      ADD_FAILURE() << span.name() << " of " << service << ": its parent is not in the trace";
      continue;
    }
    EXPECT_EQ(collector.resource_of(parent->second->span_id())["service.name"], "specdec-gateway")
        << span.name() << " of " << service << " is a child of " << parent->second->name();
    EXPECT_EQ(parent->second->trace_id(), span.trace_id());
    const auto allowed = StepParents().find(span.name());
    if (allowed == StepParents().end()) {
      EXPECT_EQ(parent->second->name(), "Generate") << span.name();  // a stream span
    } else {
      EXPECT_EQ(allowed->second.count(parent->second->name()), 1u)
          << span.name() << " is a child of " << parent->second->name();
    }
  }
  return checked;
}

// A client's W3C traceparent (gRPC metadata) makes the request, the draft's and the verifier's
// work one trace: Generate is a child of the client's span, each service's stream span a child
// of Generate, each model step a child of the gateway span of its work (prefill, a round's
// draft or verify), exported by the service that did it.
TEST_F(ObserveTest, TraceContextFlowsToDraftAndVerifier) {
  const std::string trace_hex = "4bf92f3577b34da6a3ce929d0e0e4736";
  const std::string parent_hex = "00f067aa0ba902b7";
  auto stub = v1::Gateway::NewStub(
      grpc::CreateChannel(gateway_->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.AddMetadata("traceparent", "00-" + trace_hex + "-" + parent_hex + "-01");
  auto reader = stub->Generate(&context, Request("traced", 8, 2));
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  ASSERT_TRUE(reader->Finish().ok());

  const auto trace = WaitForTrace(*collector_, trace_hex, [](const auto& spans) {
    return CountNamed(spans, "Generate") == 1 &&
           CountNamed(spans, "specdec.v1.Verifier/Session") == 1 &&
           CountNamed(spans, "specdec.v1.Draft/Session") == 1 &&
           CountNamed(spans, "verifier.verify") > 0 && CountNamed(spans, "draft.propose") > 0;
  });
  std::map<std::string, const otlp::trace::v1::Span*> by_name;
  for (const auto& span : trace) by_name[span.name()] = &span;
  ASSERT_EQ(CountNamed(trace, "Generate"), 1) << trace.size() << " spans in the trace";
  const auto& generate = *by_name["Generate"];
  EXPECT_EQ(Hex(generate.parent_span_id()), parent_hex);
  for (const auto& [method, service, steps] :
       std::vector<std::tuple<std::string, std::string, std::vector<std::string>>>{
           {"specdec.v1.Verifier/Session", "specdec-verifier",
            {"verifier.prefill", "verifier.verify"}},
           {"specdec.v1.Draft/Session", "specdec-draft", {"draft.prefill", "draft.propose"}}}) {
    ASSERT_EQ(CountNamed(trace, method), 1) << method;
    const auto& session = *by_name[method];
    EXPECT_EQ(session.parent_span_id(), generate.span_id()) << method;
    EXPECT_EQ(session.kind(), otlp::trace::v1::Span::SPAN_KIND_SERVER) << method;
    EXPECT_EQ(collector_->resource_of(session.span_id())["service.name"], service);
    for (const std::string& step : steps) {
      EXPECT_GT(CountNamed(trace, step), 0) << step;
      for (const auto& span : trace) {
        if (span.name() != step) continue;
        EXPECT_EQ(collector_->resource_of(span.span_id())["service.name"], service) << step;
        EXPECT_GE(span.start_time_unix_nano(), session.start_time_unix_nano()) << step;
      }
    }
  }
  EXPECT_GE(ExpectServiceSpansUnderGatewaySpans(*collector_, trace), 6);
}

// The same through the HTTP door: its traceparent header becomes the Generate span's parent.
TEST_F(ObserveTest, HttpTraceparentHeaderJoinsTheTrace) {
  const std::string trace_hex = "0af7651916cd43dd8448eb211c80319c";
  const std::string parent_hex = "b7ad6b7169203331";
  const HttpResponse completion = HttpRequest(
      http_port_, "POST", "/v1/completions", R"({"prompt": "hi", "max_tokens": 3})",
      "traceparent: 00-" + trace_hex + "-" + parent_hex + "-01\r\n");
  ASSERT_EQ(completion.status, 200) << completion.body;
  const auto trace = WaitForTrace(*collector_, trace_hex, [](const auto& spans) {
    return CountNamed(spans, "Generate") == 1 &&
           CountNamed(spans, "specdec.v1.Verifier/Session") == 1;
  });
  ASSERT_EQ(CountNamed(trace, "Generate"), 1);
  for (const auto& span : trace) {
    if (span.name() == "Generate") EXPECT_EQ(Hex(span.parent_span_id()), parent_hex);
  }
  EXPECT_EQ(CountNamed(trace, "specdec.v1.Verifier/Session"), 1);
  EXPECT_GT(ExpectServiceSpansUnderGatewaySpans(*collector_, trace), 1);
  // A malformed header is ignored: the request runs in a new trace of its own.
  EXPECT_EQ(HttpRequest(http_port_, "POST", "/v1/completions",
                        R"({"prompt": "hi", "max_tokens": 2})", "traceparent: not-a-trace\r\n")
                .status,
            200);
}

TEST_F(ObserveTest, TraceFileIsChromeTraceEventJson) {
  grpc::Status status;
  Generate(Request("file-1", 6, 2), nullptr, &status);
  ASSERT_TRUE(status.ok());
  // Written in batches while the gateway runs; the closing bracket comes at exit and is
  // optional for trace viewers.
  json events;
  for (int i = 0; i < 50; ++i) {
    std::ifstream in(*trace_file_);
    std::stringstream text;
    text << in.rdbuf();
    events = json::parse(text.str() + "\n]", nullptr, false);
    bool found = false;
    if (events.is_array()) {
      for (const json& event : events) {
        found = found || (event.value("name", "") == "Generate" &&
                          event["args"].value("specdec.request_id", "") == "file-1");
      }
    }
    if (found) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(events.is_array());
  int rounds = 0, complete = 0;
  for (const json& event : events) {
    if (event["ph"] == "X") {
      ++complete;
      EXPECT_TRUE(event.contains("ts") && event.contains("dur") && event.contains("tid"));
      if (event["name"] == "round") ++rounds;
    }
  }
  EXPECT_GT(complete, 0);
  EXPECT_GT(rounds, 0);
}

TEST_F(ObserveTest, HttpModelsAndCompletions) {
  const HttpResponse models = HttpRequest(http_port_, "GET", "/v1/models");
  ASSERT_EQ(models.status, 200) << models.body;
  const json models_json = json::parse(models.body);
  EXPECT_EQ(models_json["object"], "list");
  EXPECT_EQ(models_json["data"][0]["id"], "tinymodel");

  // Greedy: the same text as gRPC Generate for the same prompt.
  std::string grpc_text;
  grpc::Status status;
  v1::GenerateRequest request = Request("http-ref", 8, 3);
  const v1::GenerateResponse last = Generate(request, &grpc_text, &status);
  ASSERT_TRUE(status.ok());

  const json body = {{"model", "tinymodel"},
                     {"prompt", request.prompt()},
                     {"max_tokens", 8},
                     {"temperature", 0},
                     {"seed", 1}};
  const HttpResponse completion = HttpRequest(http_port_, "POST", "/v1/completions", body.dump());
  ASSERT_EQ(completion.status, 200) << completion.body;
  EXPECT_NE(completion.headers.find("application/json"), std::string::npos);
  const json out = json::parse(completion.body);
  EXPECT_EQ(out["object"], "text_completion");
  EXPECT_EQ(out["model"], "tinymodel");
  EXPECT_EQ(out["choices"][0]["text"], grpc_text);
  EXPECT_EQ(out["choices"][0]["index"], 0);
  EXPECT_TRUE(out["choices"][0]["finish_reason"] == "length" ||
              out["choices"][0]["finish_reason"] == "stop");
  EXPECT_EQ(out["usage"]["completion_tokens"], last.usage().generated_tokens());
  EXPECT_EQ(out["usage"]["prompt_tokens"], last.usage().prompt_tokens());
  EXPECT_EQ(out["usage"]["total_tokens"],
            last.usage().prompt_tokens() + last.usage().generated_tokens());
  EXPECT_EQ(out["id"].get<std::string>().rfind("cmpl-", 0), 0u);

  // Streaming: server-sent events whose texts add up to the same completion, then [DONE].
  json stream_body = body;
  stream_body["stream"] = true;
  const HttpResponse stream =
      HttpRequest(http_port_, "POST", "/v1/completions", stream_body.dump());
  ASSERT_EQ(stream.status, 200) << stream.body;
  EXPECT_NE(stream.headers.find("text/event-stream"), std::string::npos);
  std::string streamed;
  int events = 0;
  bool done = false;
  std::string finish;
  for (absl::string_view event : absl::StrSplit(stream.body, "\n\n", absl::SkipEmpty())) {
    ASSERT_TRUE(absl::StartsWith(event, "data: ")) << event;
    ASSERT_FALSE(done) << "event after [DONE]";
    const std::string data(event.substr(6));
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const json chunk = json::parse(data);
    ++events;
    EXPECT_EQ(chunk["object"], "text_completion");
    streamed += chunk["choices"][0]["text"].get<std::string>();
    if (!chunk["choices"][0]["finish_reason"].is_null()) {
      finish = chunk["choices"][0]["finish_reason"];
    }
  }
  EXPECT_TRUE(done);
  EXPECT_GE(events, 1);
  EXPECT_EQ(streamed, grpc_text);
  EXPECT_EQ(finish, out["choices"][0]["finish_reason"]);
}

// The HTTP door drives its session in-process: its completions never reach the gateway's gRPC
// server (no loopback Generate call), while gRPC calls still count as gRPC.
TEST_F(ObserveTest, HttpCompletionsMakeNoGrpcCall) {
  const std::string grpc_key = "specdec_gateway_generate_calls_total{transport=\"grpc\"}";
  const std::string http_key = "specdec_gateway_generate_calls_total{transport=\"http\"}";
  auto count = [](const std::map<std::string, double>& samples, const std::string& key) {
    const auto it = samples.find(key);
    return it == samples.end() ? -1.0 : it->second;
  };
  const auto before = Scrape(gateway_metrics_);
  ASSERT_GE(count(before, grpc_key), 0) << "missing " << grpc_key;
  ASSERT_GE(count(before, http_key), 0) << "missing " << http_key;
  const std::string body = R"({"prompt": "hi", "max_tokens": 2})";
  ASSERT_EQ(HttpRequest(http_port_, "POST", "/v1/completions", body).status, 200);
  ASSERT_EQ(HttpRequest(http_port_, "POST", "/v1/completions",
                        R"({"prompt": "hi", "max_tokens": 2, "stream": true})")
                .status,
            200);
  const auto after_http = Scrape(gateway_metrics_);
  EXPECT_EQ(count(after_http, grpc_key), count(before, grpc_key));
  EXPECT_EQ(count(after_http, http_key), count(before, http_key) + 2);
  grpc::Status status;
  Generate(Request("calls-grpc", 2, 2), nullptr, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(count(Scrape(gateway_metrics_), grpc_key), count(before, grpc_key) + 1);
}

TEST_F(ObserveTest, HttpErrorsAreOpenAiShaped) {
  auto expect_error = [](const HttpResponse& response, int status) {
    EXPECT_EQ(response.status, status) << response.body;
    const json body = json::parse(response.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << response.body;
    EXPECT_TRUE(body["error"]["message"].is_string()) << response.body;
    EXPECT_TRUE(body["error"]["type"].is_string()) << response.body;
  };
  expect_error(HttpRequest(http_port_, "POST", "/v1/completions", "{not json"), 400);
  expect_error(HttpRequest(http_port_, "POST", "/v1/completions", R"({"max_tokens": 4})"), 400);
  expect_error(HttpRequest(http_port_, "POST", "/v1/completions",
                           R"({"prompt": "hi", "max_tokens": "four"})"),
               400);
  // Rejected by the gateway's own validation (INVALID_ARGUMENT -> 400).
  expect_error(
      HttpRequest(http_port_, "POST", "/v1/completions", R"({"prompt": "hi", "temperature": -1})"),
      400);
  expect_error(
      HttpRequest(http_port_, "POST", "/v1/completions", R"({"prompt": "hi", "model": "gpt-4"})"),
      404);
  expect_error(HttpRequest(http_port_, "GET", "/v1/completions"), 405);
  expect_error(HttpRequest(http_port_, "GET", "/nope"), 404);
  const auto metrics = Scrape(gateway_metrics_);
  EXPECT_GE(
      Get(metrics, "specdec_gateway_http_requests_total{path=\"/v1/completions\",status=\"400\"}"),
      4);
}

// Issue 8's bad inputs through the HTTP door: each gets a clear status with an OpenAI-shaped
// error (or is served, where the input is fine), and nothing is left on any service.
TEST_F(ObserveTest, HttpBadInputsGetClearStatusesAndLeaveNoSession) {
  struct Case {
    std::string name;
    std::string body;
    int status;
  };
  std::string invalid_utf8 = R"({"prompt": "abc)";
  invalid_utf8 += "\xff\xfe";
  invalid_utf8 += R"(", "max_tokens": 2})";
  std::string many_stops = R"({"prompt": "hi", "max_tokens": 2, "stop": [)";
  for (int i = 0; i < 17; ++i) many_stops += absl::StrCat(i ? "," : "", "\"s", i, "\"");
  many_stops += "]}";
  const std::vector<Case> cases = {
      {"empty prompt", R"({"prompt": "", "max_tokens": 2})", 400},
      {"empty prompt list", R"({"prompt": [], "max_tokens": 2})", 400},
      {"body over 1 MiB", absl::StrCat(R"({"prompt": ")", std::string(2 << 20, 'a'), R"("})"), 413},
      {"id past the vocabulary", R"({"prompt": [50304], "max_tokens": 2})", 400},
      {"negative id", R"({"prompt": [5, -1], "max_tokens": 2})", 400},
      {"id 2^32 + 5 (must not wrap to 5)", R"({"prompt": [4294967301], "max_tokens": 2})", 400},
      {"fractional id", R"({"prompt": [5, 1.5], "max_tokens": 2})", 400},
      {"temperature -0.5", R"({"prompt": "hi", "temperature": -0.5})", 400},
      {"temperature overflowing to inf", R"({"prompt": "hi", "temperature": 1e999})", 400},
      {"temperature as a string", R"({"prompt": "hi", "temperature": "hot"})", 400},
      {"top_p -0.1", R"({"prompt": "hi", "top_p": -0.1})", 400},
      {"top_p 2", R"({"prompt": "hi", "top_p": 2})", 400},
      {"max_tokens 0", R"({"prompt": "hi", "max_tokens": 0})", 400},
      {"max_tokens 2^31-1 (over the cap)", R"({"prompt": "hi", "max_tokens": 2147483647})", 400},
      {"max_tokens 1e20", R"({"prompt": "hi", "max_tokens": 1e20})", 400},
      {"seed 2^64-1", R"({"prompt": "hi", "seed": 18446744073709551615})", 400},
      {"invalid UTF-8 in the prompt", invalid_utf8, 400},
      {"empty stop string", R"({"prompt": "hi", "max_tokens": 2, "stop": ""})", 400},
      {"stop string of 100 KB",
       absl::StrCat(R"({"prompt": "hi", "max_tokens": 2, "stop": ")", std::string(100000, 'x'),
                    R"("})"),
       400},
      {"17 stop strings", many_stops, 400},
      {"stop as a number", R"({"prompt": "hi", "max_tokens": 2, "stop": 7})", 400},
      {"a JSON array body", R"([1, 2])", 400},
      {"unknown fields are ignored (as vLLM does)",
       R"({"prompt": "hi", "max_tokens": 2, "temperature": 0, "frobnicate": {"x": 1}})", 200},
  };
  for (const Case& c : cases) {
    const HttpResponse response = HttpRequest(http_port_, "POST", "/v1/completions", c.body);
    EXPECT_EQ(response.status, c.status) << c.name << ": " << response.body;
    const json body = json::parse(response.body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << c.name << ": " << response.body;
    if (c.status != 200) {
      EXPECT_FALSE(body["error"]["message"].get<std::string>().empty()) << c.name;
    } else {
      EXPECT_EQ(body["object"], "text_completion") << c.name;
    }
  }

  // A client that goes away in the middle of a streamed completion.
  const std::string body = R"({"prompt": [3, 1, 4], "max_tokens": 1500, "stream": true})";
  const int fd = ConnectLoopback(http_port_);
  ASSERT_GE(fd, 0);
  const std::string request = HttpRequestText("POST", "/v1/completions", body);
  ASSERT_EQ(write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  std::string seen;
  char buffer[512];
  ssize_t n;
  while (seen.find("data: ") == std::string::npos && (n = read(fd, buffer, sizeof(buffer))) > 0) {
    seen.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  EXPECT_NE(seen.find("data: "), std::string::npos) << seen;

  // Nothing is left behind: no session on the gateway, the draft or the verifier.
  // (A missing series counts as not clean: a renamed metric must not pass this vacuously.)
  auto is_zero = [](int port, const std::string& key) {
    const auto samples = Scrape(port);
    const auto it = samples.find(key);
    return it != samples.end() && it->second == 0;
  };
  bool clean = false;
  for (int i = 0; i < 100 && !clean; ++i) {
    clean = is_zero(gateway_metrics_, "specdec_gateway_active_sessions") &&
            is_zero(draft_metrics_, "specdec_sessions_active{role=\"draft\"}") &&
            is_zero(verifier_metrics_, "specdec_sessions_active{role=\"verifier\"}");
    if (!clean) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(clean) << "sessions left after the bad inputs and the dropped stream";
  // And the door still serves.
  EXPECT_EQ(
      HttpRequest(http_port_, "POST", "/v1/completions", R"({"prompt": "hi", "max_tokens": 2})")
          .status,
      200);
}

TEST_F(ObserveTest, HealthCommandReportsServing) {
  const std::string client = kBin + "/services/client/specdec";
  EXPECT_EQ(RunCommand(absl::StrCat(client, " health --server ", gateway_->address())), 0);
  EXPECT_EQ(RunCommand(absl::StrCat(client, " health --server ", draft_->address(),
                                    " --service specdec.v1.Draft")),
            0);
  EXPECT_NE(RunCommand(absl::StrCat(client, " health --server ", verifier_->address(),
                                    " --service no.such.Service 2>/dev/null")),
            0);
  EXPECT_NE(RunCommand(absl::StrCat(client, " health --server 127.0.0.1:", PickFreePort(),
                                    " --timeout_ms 500 2>/dev/null")),
            0);
}

// Overlapped rounds drawn as they ran. The draft runs every layer of the verifier's checkpoint,
// so its greedy proposals are all accepted and its guess at the bonus token is right: the
// gateway uses the next round's proposals, drafted while this round was verified. The round
// records, the OTLP spans and the Chrome trace file then show round n+1's draft starting
// before round n's verification ends, and every span of the draft and the verifier hangs under
// the gateway span of the work it did.
class OverlapTraceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = new ServiceStack("overlap_trace");
    ASSERT_TRUE(stack_->MakeModel(5));
    collector_ = new Collector;
    int collector_port = 0;
    collector_server_ = ServeCollector(collector_, &collector_port);
    ASSERT_GT(collector_port, 0);
    trace_file_ = new std::string(stack_->dir() + "/trace.json");
    const std::string otlp = absl::StrCat("--otlp_endpoint=127.0.0.1:", collector_port);
    ASSERT_TRUE(stack_->StartServices(
        {otlp}, {otlp}, {otlp, "--trace_file=" + *trace_file_, "--overlap_rounds=true"}));
  }

  static void TearDownTestSuite() {
    delete stack_;
    if (collector_server_ != nullptr) collector_server_->Shutdown();
    delete collector_server_;
    delete collector_;
  }

  static ServiceStack* stack_;
  static std::string* trace_file_;
  static Collector* collector_;
  static grpc::Server* collector_server_;
};

ServiceStack* OverlapTraceTest::stack_ = nullptr;
std::string* OverlapTraceTest::trace_file_ = nullptr;
Collector* OverlapTraceTest::collector_ = nullptr;
grpc::Server* OverlapTraceTest::collector_server_ = nullptr;

// The times of a request's draft and verify work, Unix nanoseconds by round.
struct RoundTimes {
  std::map<int64_t, int64_t> draft_start, draft_end, verify_start, verify_end;
};

// The rounds n+1 whose draft began before round n's verification ended.
std::set<int64_t> OverlappingRounds(const RoundTimes& times) {
  std::set<int64_t> out;
  for (const auto& [round, end] : times.verify_end) {
    const auto next = times.draft_start.find(round + 1);
    if (next != times.draft_start.end() && next->second < end) out.insert(round + 1);
  }
  return out;
}

// `drawn` (spans, trace events) shows the times of `real` (the round records), within
// `tolerance_ns`.
void ExpectSameTimes(const RoundTimes& drawn, const RoundTimes& real, int64_t tolerance_ns,
                     const std::string& what) {
  const std::vector<std::pair<const std::map<int64_t, int64_t>*, const std::map<int64_t, int64_t>*>>
      pairs = {{&drawn.draft_start, &real.draft_start},
               {&drawn.draft_end, &real.draft_end},
               {&drawn.verify_start, &real.verify_start},
               {&drawn.verify_end, &real.verify_end}};
  for (const auto& [got, want] : pairs) {
    ASSERT_EQ(got->size(), want->size()) << what;
    for (const auto& [round, time] : *want) {
      ASSERT_EQ(got->count(round), 1u) << what << ": round " << round;
      EXPECT_NEAR(static_cast<double>(got->at(round)), static_cast<double>(time),
                  static_cast<double>(tolerance_ns))
          << what << ": round " << round;
    }
  }
}

TEST_F(OverlapTraceTest, OverlappedRoundsOverlapInSpansAndTraceFile) {
  const std::string trace_hex = "5c6e1b0f4a3d4e2c9b8a7f6e5d4c3b2a";
  auto stub = v1::Gateway::NewStub(
      grpc::CreateChannel(stack_->gateway()->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.AddMetadata("traceparent", "00-" + trace_hex + "-1122334455667788-01");
  v1::GenerateRequest request;
  request.set_prompt("The quick brown fox jumps over");
  request.set_max_new_tokens(24);
  request.mutable_speculation()->set_num_draft_tokens(3);
  request.set_include_rounds(true);
  request.set_request_id("overlap-1");
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  v1::GenerateResponse last;
  std::vector<v1::RoundRecord> records;
  while (reader->Read(&response)) {
    records.insert(records.end(), response.rounds().begin(), response.rounds().end());
    if (response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) last = response;
  }
  ASSERT_TRUE(reader->Finish().ok());
  const int overlapped = last.usage().overlapped_rounds();
  ASSERT_GT(overlapped, 0) << "no round used its pre-draft, although the draft is the verifier's "
                              "own model ("
                           << last.usage().accepted_tokens() << " of "
                           << last.usage().drafted_tokens() << " drafts accepted)";

  // The round records: real times, in order within a round; exactly the overlapped rounds
  // began their draft before the previous round's verification ended.
  RoundTimes real;
  std::set<int64_t> overlapped_rounds;
  for (const v1::RoundRecord& record : records) {
    EXPECT_GT(record.verify_start_unix_nanos(), 0) << "round " << record.round();
    EXPECT_LE(record.verify_start_unix_nanos(), record.verify_end_unix_nanos());
    EXPECT_GT(record.verify_ms(), 0);  // the durations stay
    real.verify_start[record.round()] = record.verify_start_unix_nanos();
    real.verify_end[record.round()] = record.verify_end_unix_nanos();
    if (record.num_proposed() > 0) {
      EXPECT_GT(record.draft_start_unix_nanos(), 0) << "round " << record.round();
      EXPECT_LE(record.draft_start_unix_nanos(), record.draft_end_unix_nanos());
      EXPECT_LE(record.draft_end_unix_nanos(), record.verify_start_unix_nanos());
      real.draft_start[record.round()] = record.draft_start_unix_nanos();
      real.draft_end[record.round()] = record.draft_end_unix_nanos();
    }
    if (record.overlapped()) overlapped_rounds.insert(record.round());
  }
  EXPECT_EQ(static_cast<int>(overlapped_rounds.size()), overlapped);
  EXPECT_EQ(OverlappingRounds(real), overlapped_rounds);

  // The spans: the same overlap, and every service span under the gateway span of its work.
  const auto trace = WaitForTrace(*collector_, trace_hex, [](const auto& spans) {
    return CountNamed(spans, "Generate") == 1 &&
           CountNamed(spans, "specdec.v1.Verifier/Session") == 1 &&
           CountNamed(spans, "specdec.v1.Draft/Session") == 1;
  });
  ASSERT_EQ(CountNamed(trace, "Generate"), 1) << trace.size() << " spans in the trace";
  std::map<std::string, int64_t> round_of;  // round span id -> round
  for (const auto& span : trace) {
    if (span.name() != "round") continue;
    round_of[span.span_id()] = Attributes(span)["specdec.round"].int_value();
  }
  EXPECT_EQ(static_cast<int>(round_of.size()), last.usage().rounds());
  RoundTimes spans;
  for (const auto& span : trace) {
    const auto round = round_of.find(span.parent_span_id());
    if (round == round_of.end()) continue;
    const auto start = static_cast<int64_t>(span.start_time_unix_nano());
    const auto end = static_cast<int64_t>(span.end_time_unix_nano());
    if (span.name() == "draft") {
      spans.draft_start[round->second] = start;
      spans.draft_end[round->second] = end;
    } else if (span.name() == "verify") {
      spans.verify_start[round->second] = start;
      spans.verify_end[round->second] = end;
    }
  }
  ExpectSameTimes(spans, real, 0, "OTLP spans");
  EXPECT_EQ(OverlappingRounds(spans), overlapped_rounds);
  EXPECT_GT(CountNamed(trace, "draft.propose"), 0);
  EXPECT_GT(CountNamed(trace, "verifier.verify"), 0);
  EXPECT_GE(ExpectServiceSpansUnderGatewaySpans(*collector_, trace),
            2 + CountNamed(trace, "draft.propose") + CountNamed(trace, "verifier.verify"));

  // The Chrome trace file: the same overlap, on tracks that each nest (a viewer draws a track
  // as a strict nesting; overlapped rounds sit on two tracks).
  std::vector<json> events;
  int64_t base_unix_ns = 0;  // ts 0 of the file
  for (int i = 0; i < 50; ++i) {
    std::ifstream in(*trace_file_);
    std::stringstream text;
    text << in.rdbuf();
    const json all = json::parse(text.str() + "\n]", nullptr, false);
    events.clear();
    bool found = false;
    if (all.is_array()) {
      for (const json& event : all) {
        if (event.value("name", "") == "trace_start_unix_ns") {
          base_unix_ns = event["args"]["unix_ns"].get<int64_t>();
        }
        if (event.value("ph", "") != "X" || event["args"].value("trace_id", "") != trace_hex) {
          continue;
        }
        events.push_back(event);
        found = found || event.value("name", "") == "Generate";
      }
    }
    if (found) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(events.empty()) << "no events of the trace in " << *trace_file_;
  std::map<std::string, int64_t> file_round_of;  // span id -> round
  for (const json& event : events) {
    if (event["name"] == "round") {
      file_round_of[event["args"]["span_id"].get<std::string>()] =
          event["args"]["specdec.round"].get<int64_t>();
    }
  }
  ASSERT_GT(base_unix_ns, 0);
  RoundTimes file;
  for (const json& event : events) {
    const auto round = file_round_of.find(event["args"].value("parent_span_id", ""));
    if (round == file_round_of.end()) continue;
    const double ts = event["ts"].get<double>();
    const auto start = base_unix_ns + std::llround(ts * 1000);
    const auto end = base_unix_ns + std::llround((ts + event["dur"].get<double>()) * 1000);
    if (event["name"] == "draft") {
      file.draft_start[round->second] = start;
      file.draft_end[round->second] = end;
    } else if (event["name"] == "verify") {
      file.verify_start[round->second] = start;
      file.verify_end[round->second] = end;
    }
  }
  ExpectSameTimes(file, real, 10, "Chrome trace events");  // microseconds as JSON doubles
  EXPECT_EQ(OverlappingRounds(file), overlapped_rounds);
  constexpr double kEpsilonUs = 1e-3;
  for (size_t i = 0; i < events.size(); ++i) {
    for (size_t j = i + 1; j < events.size(); ++j) {
      const json& a = events[i];
      const json& b = events[j];
      if (a["tid"] != b["tid"]) continue;
      const double a0 = a["ts"], a1 = a0 + a["dur"].get<double>();
      const double b0 = b["ts"], b1 = b0 + b["dur"].get<double>();
      const bool disjoint = a1 <= b0 + kEpsilonUs || b1 <= a0 + kEpsilonUs;
      const bool nested = (a0 <= b0 + kEpsilonUs && b1 <= a1 + kEpsilonUs) ||
                          (b0 <= a0 + kEpsilonUs && a1 <= b1 + kEpsilonUs);
      EXPECT_TRUE(disjoint || nested)
          << a["name"] << " (round " << a["args"].value("specdec.round", int64_t{-1}) << ") and "
          << b["name"] << " (round " << b["args"].value("specdec.round", int64_t{-1})
          << ") overlap on track " << a["tid"] << " without nesting";
    }
  }
}

}  // namespace
}  // namespace specdec
