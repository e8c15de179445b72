// One Generate call through a real gateway, collected: what the integration tests compare
// against in-process references.
#ifndef SPECDEC_TESTS_INTEGRATION_GATEWAY_GENERATE_H_
#define SPECDEC_TESTS_INTEGRATION_GATEWAY_GENERATE_H_

#include <grpcpp/grpcpp.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "specdec/v1/gateway.grpc.pb.h"

namespace specdec::testing {

struct Generated {
  grpc::Status status;
  std::vector<int32_t> ids;
  std::vector<float> logprobs;  // one per token when the request asked for logprobs
  std::vector<v1::RoundRecord> rounds;
};

// Streams `request` from the gateway at `address` to its end. `on_tokens(n)` (optional) runs
// after each message with the number of tokens received so far.
Generated GenerateThroughGateway(const std::string& address, const v1::GenerateRequest& request,
                                 const std::function<void(size_t)>& on_tokens = nullptr);

}  // namespace specdec::testing

#endif  // SPECDEC_TESTS_INTEGRATION_GATEWAY_GENERATE_H_
