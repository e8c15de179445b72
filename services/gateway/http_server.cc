// OpenAI-compatible HTTP API (see http_server.h). civetweb runs each request on one of its
// worker threads; a completion runs its session there (GatewayServiceImpl::Serve), writing each
// message as it comes (server-sent events) or gathering them into one JSON answer.
#include "services/gateway/http_server.h"

#include <civetweb.h>

#include <chrono>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/base/log.h"
#include "common/tracing/trace_context.h"
#include "nlohmann/json.hpp"
#include "services/gateway/openai_completions.h"

namespace specdec {
namespace {

// Responses keep their fields in the order written (id, object, ... as OpenAI sends them;
// top_logprobs most likely first), not sorted by key.
using json = nlohmann::ordered_json;

constexpr size_t kMaxBodyBytes = 1 << 20;

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 499:
      return "Client Closed Request";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Internal Server Error";
  }
}

// Writes a whole response (Connection: close: civetweb runs without keep-alive).
int Send(mg_connection* conn, int status, const json& body) {
  const std::string text = body.dump(-1, ' ', false, json::error_handler_t::replace);
  mg_printf(conn,
            "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
            "Connection: close\r\n\r\n",
            status, Reason(status), text.size());
  mg_write(conn, text.data(), text.size());
  return status;
}

int SendError(mg_connection* conn, int status, const std::string& message,
              const char* code = nullptr) {
  return Send(conn, status, OpenAiError(status, message, code));
}

bool WriteEvent(mg_connection* conn, const json& event) {
  const std::string text =
      absl::StrCat("data: ", event.dump(-1, ' ', false, json::error_handler_t::replace), "\n\n");
  return mg_write(conn, text.data(), text.size()) > 0;
}

std::string RandomHex() {
  static absl::Mutex* mu = new absl::Mutex;
  static std::mt19937_64* rng = new std::mt19937_64(std::random_device{}());
  absl::MutexLock lock(mu);
  return absl::StrFormat("%016x", (*rng)());
}

}  // namespace

int HttpStatusFor(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kCancelled:
      return 499;
    default:
      return 500;
  }
}

HttpServerOptions HttpServerOptionsFor(const GatewayConfig& config, const std::string& model_name,
                                       const GatewayObservability* observability) {
  HttpServerOptions options;
  options.listen = config.http_listen;
  options.model_name = model_name;
  options.num_draft_tokens = config.http_num_draft_tokens;
  options.num_threads = std::max(8, std::min(256, config.max_sessions + 8));
  options.observability = observability;
  return options;
}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options,
                                                              GatewayServiceImpl* service) {
  if (options.listen.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--http_listen must be HOST:PORT, got \"", options.listen, "\""));
  }
  std::unique_ptr<HttpServer> server(new HttpServer);
  server->options_ = std::move(options);
  server->service_ = service;
  std::string ports = server->options_.listen;
  if (ports.rfind("0.0.0.0:", 0) == 0) ports = ports.substr(8);  // civetweb: a bare port = any
  const std::string threads = std::to_string(server->options_.num_threads);
  const char* mg_options[] = {"listening_ports",
                              ports.c_str(),
                              "num_threads",
                              threads.c_str(),
                              "enable_keep_alive",
                              "no",
                              "request_timeout_ms",
                              "600000",
                              nullptr};
  mg_init_library(0);
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  server->ctx_ = mg_start(&callbacks, nullptr, mg_options);
  if (server->ctx_ == nullptr) {
    mg_exit_library();
    return absl::UnavailableError(
        absl::StrCat("cannot serve HTTP on ", server->options_.listen, " (address in use?)"));
  }
  mg_set_request_handler(server->ctx_, "/", &HttpServer::Handle, server.get());
  mg_server_port bound[4];
  const int n = mg_get_server_ports(server->ctx_, 4, bound);
  server->port_ = n > 0 ? bound[0].port : 0;
  SPECDEC_LOG(Info) << "http: OpenAI-compatible API on " << server->options_.listen
                    << " (POST /v1/completions, GET /v1/models)";
  return server;
}

void HttpServer::Shutdown(absl::Time grace_end) {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return running_ == 0; };
  if (!mu_.AwaitWithDeadline(absl::Condition(&idle), grace_end)) {
    SPECDEC_LOG(Info) << "http: " << running_ << " completion(s) still running after the "
                      << "shutdown grace: cancelled";
  }
  // Also a request that was past the drain check but not yet in Serve: it ends at once.
  cancel_all_ = true;
}

HttpServer::~HttpServer() {
  if (ctx_ != nullptr) {
    mg_stop(ctx_);
    mg_exit_library();
  }
}

int HttpServer::Handle(mg_connection* conn, void* self) {
  return static_cast<HttpServer*>(self)->HandleRequest(conn);
}

void HttpServer::Count(const std::string& path, int status) {
  if (options_.observability == nullptr || options_.observability->metrics == nullptr) return;
  options_.observability->metrics->http_requests
      .Add({{"path", path}, {"status", std::to_string(status)}})
      .Increment();
}

int HttpServer::HandleRequest(mg_connection* conn) {
  const mg_request_info* info = mg_get_request_info(conn);
  const std::string method = info->request_method ? info->request_method : "";
  std::string path = info->local_uri ? info->local_uri : "";
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  int status;
  if (draining_) {
    status = SendError(conn, 503, "the gateway is shutting down");
  } else if (path == "/v1/completions") {
    if (method != "POST") {
      status = SendError(conn, 405, "use POST for /v1/completions");
    } else {
      std::string body;
      char buffer[8192];
      int n;
      while ((n = mg_read(conn, buffer, sizeof(buffer))) > 0 && body.size() <= kMaxBodyBytes) {
        body.append(buffer, static_cast<size_t>(n));
      }
      status = body.size() > kMaxBodyBytes ? SendError(conn, 413, "the request body is too large")
                                           : Completions(conn, body);
    }
  } else if (path == "/v1/models") {
    status = method == "GET" ? Models(conn) : SendError(conn, 405, "use GET for /v1/models");
  } else if (path.rfind("/v1/models/", 0) == 0 && method == "GET") {
    const std::string id = path.substr(std::strlen("/v1/models/"));
    if (id == options_.model_name) {
      status = Send(conn, 200,
                    {{"id", id}, {"object", "model"}, {"created", 0}, {"owned_by", "specdec"}});
    } else {
      status = SendError(conn, 404, absl::StrCat("the model '", id, "' does not exist"),
                         "model_not_found");
    }
    path = "/v1/models/{id}";
  } else {
    status = SendError(conn, 404, absl::StrCat("no route for ", method, " ", path));
    path = "other";
  }
  Count(path, status);
  return status;
}

int HttpServer::Models(mg_connection* conn) {
  json model = {
      {"id", options_.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "specdec"}};
  return Send(conn, 200, {{"object", "list"}, {"data", json::array({model})}});
}

int HttpServer::Completions(mg_connection* conn, const std::string& body_text) {
  const json body = json::parse(body_text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return SendError(conn, 400, "the request body is not valid JSON");
  v1::GenerateRequest request;
  CompletionOptions options;
  std::string error;
  int http_status = 0;
  if (!CheckModel(body, options_.model_name, &http_status, &error)) {
    return SendError(conn, http_status, error, http_status == 404 ? "model_not_found" : nullptr);
  }
  if (!ToGenerateRequest(body, options_.num_draft_tokens, &request, &options, &error)) {
    return SendError(conn, 400, error);
  }
  const std::string id = absl::StrCat("cmpl-", RandomHex());
  request.set_request_id(id);
  CompletionHeader header;
  header.id = id;
  header.created = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  header.model = options_.model_name;

  CallContext call;
  // W3C trace context: the request joins the caller's trace (an invalid header is ignored).
  if (const char* traceparent = mg_get_header(conn, kTraceparentKey)) {
    call.trace_parent = ParseTraceparent(traceparent);
  }
  // civetweb tells of a client that went away only when a write fails; the session stops at
  // once then (Emit returns false), and at its next check past the shutdown grace.
  std::atomic<bool> client_gone{false};
  call.cancelled = [this, &client_gone] { return client_gone.load() || cancel_all_.load(); };
  call.transport = "http";

  // The HTTP status is known once the first message (or the error) arrives.
  bool first = true;
  CompletionLogprobs logprobs;
  std::string prompt_text;  // with echo: the prompt as its tokens spell it
  size_t prompt_bytes = 0;
  std::string text;           // without streaming: the whole answer
  v1::GenerateResponse last;  // without streaming: the message with the finish reason
  auto logprobs_json = [&](size_t from) {
    return options.logprobs >= 0 ? logprobs.ToJson(from) : json(nullptr);
  };
  auto emit = [&](const v1::GenerateResponse& response) {
    if (first) {
      first = false;
      if (options.echo) {
        for (const v1::TokenLogprob& entry : response.prompt_logprobs()) logprobs.Add(entry);
        prompt_text = logprobs.Text();
      }
      prompt_bytes = logprobs.bytes();
      if (options.stream) {
        mg_printf(conn,
                  "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: "
                  "no-cache\r\nConnection: close\r\nX-Accel-Buffering: no\r\n\r\n");
      }
    }
    const bool is_last = response.finish_reason() != v1::FINISH_REASON_UNSPECIFIED;
    if (!options.stream) {
      text += response.text();
      for (const v1::TokenLogprob& entry : response.logprobs()) logprobs.Add(entry);
      if (is_last) last = response;
      return true;
    }
    const size_t from = logprobs.size();
    for (const v1::TokenLogprob& entry : response.logprobs()) logprobs.Add(entry);
    const bool new_tokens = options.logprobs >= 0 && logprobs.size() > from;
    if (is_last || !response.text().empty() || new_tokens) {
      json event = CompletionChunk(header, response.text(), response.finish_reason(),
                                   logprobs_json(from));
      if (is_last) event["usage"] = UsageJson(response.usage());
      if (!WriteEvent(conn, event)) {
        client_gone = true;  // the session ends and releases its backends
        return false;
      }
    }
    return true;
  };
  {
    absl::MutexLock lock(&mu_);
    ++running_;
  }
  const absl::Status status = service_->Serve(request, call, emit);
  {
    absl::MutexLock lock(&mu_);
    --running_;  // Shutdown waits for this
  }
  if (client_gone) return 499;
  if (first) {
    return SendError(conn, status.ok() ? 500 : HttpStatusFor(status.code()),
                     status.ok() ? "the gateway ended the stream without an answer"
                                 : std::string(status.message()));
  }
  if (!options.stream) {
    if (!status.ok()) {
      return SendError(conn, HttpStatusFor(status.code()), std::string(status.message()));
    }
    // The token that completed a stop string was committed, but the text ends before the stop
    // string: tokens that start past the text are not part of the answer.
    if (last.finish_reason() == v1::FINISH_REASON_STOP) {
      logprobs.TruncateAt(prompt_bytes + text.size());
    }
    json out = CompletionChunk(header, prompt_text + text, last.finish_reason(), logprobs_json(0));
    out["usage"] = UsageJson(last.usage());
    return Send(conn, 200, out);
  }
  if (!status.ok()) {
    // Headers are gone: the error travels as an event, as OpenAI's streams do.
    WriteEvent(conn, OpenAiError(HttpStatusFor(status.code()), std::string(status.message())));
    return 200;
  }
  static constexpr char kDone[] = "data: [DONE]\n\n";
  mg_write(conn, kDone, sizeof(kDone) - 1);
  return 200;
}

}  // namespace specdec
