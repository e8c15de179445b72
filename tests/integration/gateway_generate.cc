// See gateway_generate.h.
#include "tests/integration/gateway_generate.h"

namespace specdec::testing {

Generated GenerateThroughGateway(const std::string& address, const v1::GenerateRequest& request,
                                 const std::function<void(size_t)>& on_tokens) {
  auto stub = v1::Gateway::NewStub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  Generated out;
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    out.ids.insert(out.ids.end(), response.token_ids().begin(), response.token_ids().end());
    for (const auto& entry : response.logprobs()) out.logprobs.push_back(entry.logprob());
    out.rounds.insert(out.rounds.end(), response.rounds().begin(), response.rounds().end());
    if (on_tokens) on_tokens(out.ids.size());
  }
  out.status = reader->Finish();
  return out;
}

}  // namespace specdec::testing
