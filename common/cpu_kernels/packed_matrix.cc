// Packing: done once per weight matrix at load time, so clarity wins over speed here.
#include "common/cpu_kernels/packed_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>

#include "absl/strings/str_cat.h"

namespace specdec {

const char* WeightDtypeName(WeightDtype dtype) {
  switch (dtype) {
    case WeightDtype::kF32:
      return "f32";
    case WeightDtype::kBf16:
      return "bf16";
    case WeightDtype::kInt8:
      return "int8";
    case WeightDtype::kBf16Dot:
      return "bf16_dot";
  }
  return "unknown";
}

absl::StatusOr<WeightDtype> ParseWeightDtype(const std::string& name) {
  if (name == "f32" || name == "float32") return WeightDtype::kF32;
  if (name == "bf16" || name == "bfloat16") return WeightDtype::kBf16;
  if (name == "int8") return WeightDtype::kInt8;
  if (name == "bf16_dot") return WeightDtype::kBf16Dot;
  return absl::InvalidArgumentError(
      absl::StrCat("weight dtype \"", name, "\" must be f32, bf16, int8 or bf16_dot"));
}

int WeightDtypeBytes(WeightDtype dtype) {
  switch (dtype) {
    case WeightDtype::kF32:
      return 4;
    case WeightDtype::kBf16:
    case WeightDtype::kBf16Dot:
      return 2;
    case WeightDtype::kInt8:
      return 1;
  }
  return 4;
}

int VectorFloats(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kGeneric:
      return 4;
    case CpuIsa::kAvx2:
      return 8;
    case CpuIsa::kAvx512:
      return 16;
  }
  return 4;
}

uint16_t FloatToBf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((bits >> 16) | 0x40);  // stays a quiet NaN
  bits += 0x7fff + ((bits >> 16) & 1);  // round to nearest, ties to even
  return static_cast<uint16_t>(bits >> 16);
}

float Bf16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void PackedMatrix::Free::operator()(uint8_t* p) const { std::free(p); }

PackedMatrix PackedMatrix::Pack(const float* w, int64_t out, int64_t in, const float* bias,
                                WeightDtype dtype, CpuIsa isa) {
  PackedMatrix m;
  m.out_ = out;
  m.in_ = in;
  m.dtype_ = dtype;
  m.isa_ = isa;
  m.block_ = PanelRows(isa);
  const int64_t block = m.block_;
  const int64_t elem = WeightDtypeBytes(dtype);
  // bf16_dot stores k in pairs; an odd `in` gets a zero weight at k = in.
  const int64_t k_stored = dtype == WeightDtype::kBf16Dot ? (in + 1) / 2 * 2 : in;
  // Panels start on cache lines.
  m.panel_bytes_ = (k_stored * block * elem + 63) / 64 * 64;
  const int64_t padded = m.panels() * block;
  const size_t total = static_cast<size_t>(std::max<int64_t>(64, m.panels() * m.panel_bytes_));
  void* raw = std::aligned_alloc(64, total);
  if (raw == nullptr) throw std::bad_alloc();
  std::memset(raw, 0, total);
  m.data_ = std::shared_ptr<uint8_t>(static_cast<uint8_t*>(raw), Free{});
  m.scales_.assign(static_cast<size_t>(padded), 1.0f);
  m.bias_.assign(static_cast<size_t>(padded), 0.0f);
  if (bias != nullptr) std::copy(bias, bias + out, m.bias_.begin());
  if (dtype == WeightDtype::kInt8) {
    for (int64_t o = 0; o < out; ++o) {
      float max_abs = 0;
      for (int64_t k = 0; k < in; ++k) max_abs = std::max(max_abs, std::fabs(w[o * in + k]));
      m.scales_[o] = max_abs > 0 ? max_abs / 127.0f : 1.0f;
    }
  }
  for (int64_t p = 0; p < m.panels(); ++p) {
    uint8_t* panel = m.data_.get() + p * m.panel_bytes_;
    for (int64_t j = 0; j < block; ++j) {
      const int64_t o = p * block + j;
      if (o >= out) break;  // padding rows stay zero
      const float* row = w + o * in;
      for (int64_t k = 0; k < in; ++k) {
        const int64_t at = m.Index(j, k);
        switch (dtype) {
          case WeightDtype::kF32:
            reinterpret_cast<float*>(panel)[at] = row[k];
            break;
          case WeightDtype::kBf16:
          case WeightDtype::kBf16Dot:
            reinterpret_cast<uint16_t*>(panel)[at] = FloatToBf16(row[k]);
            break;
          case WeightDtype::kInt8: {
            const float q = std::nearbyint(row[k] / m.scales_[o]);
            reinterpret_cast<int8_t*>(panel)[at] = static_cast<int8_t>(std::clamp(q, -127.0f, 127.0f));
            break;
          }
        }
      }
    }
  }
  return m;
}

float PackedMatrix::At(int64_t o, int64_t k) const {
  const int64_t p = o / block_, j = o % block_;
  const uint8_t* panel = data_.get() + p * panel_bytes_;
  const int64_t at = Index(j, k);
  switch (dtype_) {
    case WeightDtype::kF32:
      return reinterpret_cast<const float*>(panel)[at];
    case WeightDtype::kBf16:
    case WeightDtype::kBf16Dot:
      return Bf16ToFloat(reinterpret_cast<const uint16_t*>(panel)[at]);
    case WeightDtype::kInt8:
      return reinterpret_cast<const int8_t*>(panel)[at] * scales_[o];
  }
  return 0;
}

}  // namespace specdec
