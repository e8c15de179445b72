// specdec: command-line client of the gateway. `specdec generate "prompt"` streams text to
// stdout; --rounds prints each speculation round's record to stderr; `specdec info` prints
// GetInfo; `specdec health` asks the standard health service (exit 0 only when SERVING).
// Exit code: 0 on success, 2 for INVALID_ARGUMENT, 1 for other errors.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "specdec/v1/gateway.grpc.pb.h"

ABSL_FLAG(std::string, server, "localhost:50050", "gateway address");
ABSL_FLAG(std::string, prompt_ids, "", "prompt as token ids, e.g. 0,5,9 (instead of text)");
ABSL_FLAG(int32_t, max_new_tokens, 0, "tokens to generate (0: the gateway's default)");
ABSL_FLAG(float, temperature, 0.0f, "0 = greedy");
ABSL_FLAG(int32_t, top_k, 0, "0 = off");
ABSL_FLAG(float, top_p, 1.0f, "1 = off");
ABSL_FLAG(uint64_t, seed, 0, "sampling seed");
ABSL_FLAG(std::string, coupling, "",
          "sampled speculation: rejection or shared_noise (equal to plain decoding for the "
          "seed); empty: the gateway's default");
ABSL_FLAG(int32_t, k, 4, "draft tokens per round (0: no speculation)");
ABSL_FLAG(bool, adaptive, false, "adapt K per round (--k is then the bound)");
ABSL_FLAG(bool, sequential, false,
          "draft each round only after the previous one is verified (no overlapped rounds)");
ABSL_FLAG(std::vector<std::string>, stop, {}, "stop strings, comma-separated");
ABSL_FLAG(bool, rounds, false, "print each round's record to stderr");
ABSL_FLAG(bool, ids, false, "print token ids instead of text");
ABSL_FLAG(int, timeout_ms, 0, "request deadline (0: none)");
ABSL_FLAG(std::string, request_id, "", "request id for the gateway's logs");
ABSL_FLAG(std::string, service, "", "health: the service name to check (empty: the server)");

namespace {

int Fail(const grpc::Status& status) {
  std::fprintf(stderr, "specdec: %d %s\n", static_cast<int>(status.error_code()),
               status.error_message().c_str());
  return status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ? 2 : 1;
}

int Info(specdec::v1::Gateway::Stub& stub) {
  grpc::ClientContext context;
  specdec::v1::GetInfoResponse info;
  grpc::Status status = stub.GetInfo(&context, specdec::v1::GetInfoRequest(), &info);
  if (!status.ok()) return Fail(status);
  std::cout << info.DebugString();
  return 0;
}

// grpc.health.v1.Health/Check; works against any of the three services.
int Health(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  const int timeout_ms =
      absl::GetFlag(FLAGS_timeout_ms) > 0 ? absl::GetFlag(FLAGS_timeout_ms) : 2000;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(absl::GetFlag(FLAGS_service));
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    Fail(status);
    return 1;
  }
  std::cout << grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status())
            << std::endl;
  return response.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

int Generate(specdec::v1::Gateway::Stub& stub, const std::string& prompt) {
  specdec::v1::GenerateRequest request;
  if (!absl::GetFlag(FLAGS_prompt_ids).empty()) {
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_prompt_ids), ',')) {
      int32_t id;
      if (!absl::SimpleAtoi(part, &id)) {
        std::fprintf(stderr, "specdec: --prompt_ids must be comma-separated integers\n");
        return 2;
      }
      request.add_prompt_ids(id);
    }
  } else {
    request.set_prompt(prompt);
  }
  request.set_max_new_tokens(absl::GetFlag(FLAGS_max_new_tokens));
  request.mutable_sampling()->set_temperature(absl::GetFlag(FLAGS_temperature));
  request.mutable_sampling()->set_top_k(absl::GetFlag(FLAGS_top_k));
  request.mutable_sampling()->set_top_p(absl::GetFlag(FLAGS_top_p));
  request.mutable_sampling()->set_seed(absl::GetFlag(FLAGS_seed));
  if (const std::string coupling = absl::GetFlag(FLAGS_coupling); !coupling.empty()) {
    if (coupling != "rejection" && coupling != "shared_noise") {
      std::fprintf(stderr, "specdec: --coupling must be rejection or shared_noise\n");
      return 2;
    }
    request.mutable_sampling()->set_coupling(coupling == "shared_noise"
                                                 ? specdec::v1::SAMPLING_COUPLING_SHARED_NOISE
                                                 : specdec::v1::SAMPLING_COUPLING_REJECTION);
  }
  request.mutable_speculation()->set_num_draft_tokens(absl::GetFlag(FLAGS_k));
  request.mutable_speculation()->set_adaptive(absl::GetFlag(FLAGS_adaptive));
  request.mutable_speculation()->set_sequential(absl::GetFlag(FLAGS_sequential));
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) request.add_stop(stop);
  const bool rounds = absl::GetFlag(FLAGS_rounds);
  const bool ids = absl::GetFlag(FLAGS_ids);
  request.set_include_rounds(rounds);
  request.set_request_id(absl::GetFlag(FLAGS_request_id));

  grpc::ClientContext context;
  if (absl::GetFlag(FLAGS_timeout_ms) > 0) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(absl::GetFlag(FLAGS_timeout_ms)));
  }
  auto reader = stub.Generate(&context, request);
  specdec::v1::GenerateResponse response;
  specdec::v1::GenerateResponse last;
  while (reader->Read(&response)) {
    if (ids) {
      for (int32_t id : response.token_ids()) std::cout << id << ' ';
    } else {
      std::cout << response.text();
    }
    std::cout << std::flush;
    for (const auto& r : response.rounds()) {
      std::fprintf(stderr,
                   "[round %lld] K=%d proposed=%d accepted=%d emitted=%d draft=%.2fms "
                   "verify=%.2fms gateway=%.2fms network=%.2fms%s%s%s%s%s%s\n",
                   static_cast<long long>(r.round()), r.num_draft_tokens(), r.num_proposed(),
                   r.num_accepted(), r.tokens_emitted(), r.draft_ms(), r.verify_ms(),
                   r.gateway_ms(), r.network_ms(), r.overlapped() ? " overlapped" : "",
                   r.fallback() == specdec::v1::FALLBACK_UNSPECIFIED ? "" : " fallback=",
                   r.fallback() == specdec::v1::FALLBACK_UNSPECIFIED
                       ? ""
                       : specdec::v1::Fallback_Name(r.fallback()).c_str(),
                   r.draft_plan().empty() ? "" : " plan=",
                   r.draft_plan().empty() ? "" : std::to_string(r.draft_plan_id()).c_str(),
                   r.draft_plan().empty() ? "" : (":" + r.draft_plan()).c_str());
    }
    if (response.finish_reason() != specdec::v1::FINISH_REASON_UNSPECIFIED) last = response;
  }
  grpc::Status status = reader->Finish();
  std::cout << std::endl;
  if (!status.ok()) return Fail(status);
  const auto& usage = last.usage();
  std::fprintf(stderr,
               "[%s: %d prompt + %d generated tokens, %d rounds, %d/%d drafts accepted, "
               "%d overlapped, %.1f ms, %.1f tokens/s]\n",
               specdec::v1::FinishReason_Name(last.finish_reason()).c_str(),
               usage.prompt_tokens(), usage.generated_tokens(), usage.rounds(),
               usage.accepted_tokens(), usage.drafted_tokens(), usage.overlapped_rounds(),
               usage.total_ms(),
               usage.total_ms() > 0 ? usage.generated_tokens() * 1000.0 / usage.total_ms() : 0.0);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Client of the specdec gateway.\n"
      "  specdec generate \"prompt\" [--server ADDR] [--max_new_tokens N] [--temperature T]\n"
      "      [--top_k K] [--top_p P] [--seed S] [--k K] [--adaptive] [--sequential] [--stop a,b] [--rounds]\n"
      "  specdec info [--server ADDR]\n"
      "  specdec health [--server ADDR] [--service NAME] [--timeout_ms MS]   (exit 0: SERVING)");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() < 2) {
    std::fprintf(stderr, "%s\n", absl::ProgramUsageMessage());
    return 2;
  }
  const std::string command = args[1];
  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_server), grpc::InsecureChannelCredentials());
  auto stub = specdec::v1::Gateway::NewStub(channel);
  if (command == "info") return Info(*stub);
  if (command == "health") return Health(channel);
  if (command == "generate") {
    if (args.size() < 3 && absl::GetFlag(FLAGS_prompt_ids).empty()) {
      std::fprintf(stderr, "specdec generate: give a prompt\n");
      return 2;
    }
    return Generate(*stub, args.size() >= 3 ? args[2] : "");
  }
  std::fprintf(stderr, "specdec: unknown command %s (generate, info, health)\n", command.c_str());
  return 2;
}
