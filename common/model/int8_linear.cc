// Int8 linear layers through libtorch's quantized ops (see int8_linear.h).
#include "common/model/int8_linear.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>

namespace specdec {
namespace {

c10::OperatorHandle Op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "");
}

}  // namespace

absl::Status EnableInt8Linear() {
  const auto& engines = at::globalContext().supportedQEngines();
  if (std::find(engines.begin(), engines.end(), at::QEngine::ONEDNN) == engines.end()) {
    return absl::FailedPreconditionError(
        "dtype int8 needs libtorch's oneDNN quantized engine, which this build lacks; use f32");
  }
  at::globalContext().setQEngine(at::QEngine::ONEDNN);
  return absl::OkStatus();
}

Int8Linear PackInt8Linear(const torch::Tensor& w, const torch::Tensor& bias) {
  torch::Tensor f = w.to(torch::kFloat).contiguous();
  torch::Tensor scales = (f.abs().amax(1) / 127.0).clamp_min(1e-12).to(torch::kDouble);
  torch::Tensor zero_points = torch::zeros({f.size(0)}, torch::kLong);
  torch::Tensor q = torch::quantize_per_channel(f, scales, zero_points, 0, torch::kQInt8);
  c10::optional<torch::Tensor> b;
  if (bias.defined()) b = bias.to(torch::kFloat).contiguous();
  torch::jit::Stack stack{q, b};
  Op("quantized::linear_prepack").callBoxed(&stack);
  return Int8Linear{stack[0]};
}

torch::Tensor Int8Linear::Apply(const torch::Tensor& x) const {
  // reduce_range=false: oneDNN takes the full int8 range of the activations.
  static const c10::OperatorHandle linear = Op("quantized::linear_dynamic");
  torch::jit::Stack stack{x.contiguous(), packed, false};
  linear.callBoxed(&stack);
  return stack[0].toTensor();
}

}  // namespace specdec
