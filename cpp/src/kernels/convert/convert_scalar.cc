// Portable half-precision conversions: the scalar definitions of convert_kernels.h, element by
// element (the fallback ISA and the reference the vector files must match bit for bit).
#include "kernels/convert/convert_kernels.h"

extern "C" {

void softzo_half_f16tof32_scalar(size_t n, const uint16_t* x, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = softzo_f16_to_f32(x[i]);
}

void softzo_half_bf16tof32_scalar(size_t n, const uint16_t* x, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = softzo_bf16_to_f32(x[i]);
}

void softzo_half_f32tof16_scalar(size_t n, const float* x, uint16_t* y) {
  for (size_t i = 0; i < n; ++i) y[i] = softzo_f32_to_f16(x[i]);
}

void softzo_half_f32tobf16_scalar(size_t n, const float* x, uint16_t* y) {
  for (size_t i = 0; i < n; ++i) y[i] = softzo_f32_to_bf16(x[i]);
}

}  // extern "C"
