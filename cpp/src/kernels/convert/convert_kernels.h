// The C-style contract of the half-precision conversion kernels, once per ISA: float16 and
// bfloat16 (as their 16 bits) to float32 and back, which the ops use to run half-precision rows
// through the float32 kernels (ops/half_rows.h).
//
// Conventions as in kernels/softmax/softmax_kernels.h: ISA suffix pasted onto the name (scalar,
// avx2, avx512, avx512emu), raw pointers and counts, nothing allocated, nothing read or written
// past element n - 1, n == 0 allowed.
//
// Every ISA gives the same bits (the scalar functions below define them; the tests compare all
// 65536 half values and sweeps of floats against them and against NumPy / ml_dtypes):
//   float16 -> float32: exact, subnormals included; NaN keeps its payload with the quiet bit set
//     (as F16C's VCVTPH2PS).
//   bfloat16 -> float32: exact (the bits shifted up; NaN payloads kept).
//   float32 -> float16: round to nearest even, overflow to inf, subnormal results rounded
//     correctly; NaN keeps the payload's top 10 bits with the quiet bit set (as VCVTPS2PH).
//   float32 -> bfloat16: round to nearest even; NaN keeps its top bits with the quiet bit set;
//     float32 subnormals (below 2^-126, which no softzo kernel produces) become signed zero, as
//     AVX-512 BF16's VCVTNEPS2BF16 does, so that every ISA agrees.
#ifndef SOFTZO_KERNELS_CONVERT_CONVERT_KERNELS_H_
#define SOFTZO_KERNELS_CONVERT_CONVERT_KERNELS_H_

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kernel_list.h"

#ifdef __cplusplus
extern "C" {
#endif

// The conversion kernels (see kernels/kernel_list.h); one instantiation, dt = half.
#define SOFTZO_CONVERT_KERNELS(X, T, dt, isa)                          \
  /* y_i = float32(x_i) for float16 bits x_i. */                       \
  X(void, f16tof32, (size_t n, const uint16_t* x, float* y), dt, isa)  \
  /* y_i = float32(x_i) for bfloat16 bits x_i. */                      \
  X(void, bf16tof32, (size_t n, const uint16_t* x, float* y), dt, isa) \
  /* y_i = the float16 bits of x_i, rounded to nearest even. */        \
  X(void, f32tof16, (size_t n, const float* x, uint16_t* y), dt, isa)  \
  /* y_i = the bfloat16 bits of x_i, rounded to nearest even. */       \
  X(void, f32tobf16, (size_t n, const float* x, uint16_t* y), dt, isa)

#define SOFTZO_DECLARE_CONVERT(...) SOFTZO_KERNEL_DECLARE(, __VA_ARGS__)
#define SOFTZO_DECLARE_CONVERT_ISA(isa) \
  SOFTZO_CONVERT_KERNELS(SOFTZO_DECLARE_CONVERT, void, half, isa)
SOFTZO_FOR_EACH_KERNEL_ISA(SOFTZO_DECLARE_CONVERT_ISA)

// ---- the scalar definitions (the scalar kernels, the vector files' tails, single values) ----
// Static inline: every object keeps its own copy, so nothing is emitted as a weak symbol.

static inline uint32_t softzo_float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static inline float softzo_bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline float softzo_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1f) {  // inf, or NaN with the quiet bit set
    return softzo_bits_float(sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x400000u : 0u));
  }
  if (exponent != 0) return softzo_bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Zero or subnormal: mantissa * 2^-24, exact in float.
  const float magnitude = (float)mantissa * 0x1p-24f;
  return softzo_bits_float(sign | softzo_float_bits(magnitude));
}

static inline float softzo_bf16_to_f32(uint16_t b) { return softzo_bits_float((uint32_t)b << 16); }

static inline uint16_t softzo_f32_to_f16(float f) {
  const uint32_t x = softzo_float_bits(f);
  const uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) {  // inf, or NaN: its top 10 payload bits, quiet
    return ax == 0x7f800000u ? (uint16_t)(sign | 0x7c00u)
                             : (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  }
  // 65520 = 0x477ff000 is the midpoint between float16's largest (65504, odd mantissa) and 2^16:
  // from there on it rounds to inf.
  if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
  if (ax >= 0x38800000u) {  // a normal float16 (>= 2^-14): round at bit 13, rebias 127 -> 15
    const uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);
    return (uint16_t)(sign | ((r >> 13) - (112u << 10)));
  }
  // A float16 subnormal or zero: round(|f| * 2^24) to nearest even, from the 24-bit mantissa m
  // of |f| = m * 2^(e - 150): m * 2^(e - 126), a right shift by s = 126 - e >= 14. For s > 24
  // the value is below 2^-25 (half the smallest subnormal) and rounds to 0; so do float32
  // subnormals (e = 0).
  const uint32_t e = ax >> 23;
  const uint32_t s = 126u - e;
  if (e == 0 || s > 24u) return sign;
  const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
  const uint32_t q = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1u);
  return (uint16_t)(sign | (q + (rem > half || (rem == half && (q & 1u)))));
}

static inline uint16_t softzo_f32_to_bf16(float f) {
  const uint32_t x = softzo_float_bits(f);
  if ((x & 0x7f800000u) == 0) return (uint16_t)((x >> 16) & 0x8000u);         // zero, subnormal
  if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);  // NaN: quiet
  return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

#ifdef __cplusplus
}
#endif

#endif  // SOFTZO_KERNELS_CONVERT_CONVERT_KERNELS_H_
