// AVX-512 half-precision conversions: float16 through AVX512F's VCVTPH2PS / VCVTPS2PH (no
// AVX512-FP16 needed: that extension adds float16 arithmetic, not these conversions), bfloat16
// through AVX512-BF16's VCVTNEPS2BF16 where the CPU has it (checked once at run time) and
// integer shifts otherwise. 16 elements per step, masked tails. Compiled twice like
// softmax_avx512.cc: natively (suffix avx512) and on top of SIMDe (suffix avx512emu), which
// lacks _mm512_cvtps_ph and the BF16 instructions: that build converts float32 -> float16 as two
// F16C halves and always takes the integer bfloat16 path, the one AVX-512 CPUs without BF16 run.
#include "isa/avx512.h"
#include "kernels/convert/convert_kernels.h"

namespace {

// 16 lanes of 32 bits (values < 2^16) as 16 uint16: VPMOVDW natively; SIMDe lacks it, so the
// emulated build packs the two 256-bit halves (packus works per 128-bit lane; the permute
// restores the order).
SOFTZO_INLINE __m256i narrow16(__m512i r) {
#if SOFTZO_AVX512_EMULATED
  const __m256i packed =
      _mm256_packus_epi32(_mm512_castsi512_si256(r), _mm512_extracti64x4_epi64(r, 1));
  return _mm256_permute4x64_epi64(packed, 0xd8);
#else
  return _mm512_cvtepi32_epi16(r);
#endif
}

// The bfloat16 bits of 16 floats (the header's rule).
SOFTZO_INLINE __m256i bf16_bits(__m512 v) {
  const __m512i x = _mm512_castps_si512(v);
  const __m512i high = _mm512_srli_epi32(x, 16);
  const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
  const __m512i rounded =
      _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb), 16);
  const __mmask16 is_nan = _mm512_cmpgt_epi32_mask(
      _mm512_and_si512(x, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  const __mmask16 is_tiny = _mm512_cmpeq_epi32_mask(
      _mm512_and_si512(x, _mm512_set1_epi32(0x7f800000)), _mm512_setzero_si512());
  __m512i r =
      _mm512_mask_mov_epi32(rounded, is_nan, _mm512_or_si512(high, _mm512_set1_epi32(0x40)));
  r = _mm512_mask_mov_epi32(r, is_tiny, _mm512_and_si512(high, _mm512_set1_epi32(0x8000)));
  return narrow16(r);
}

SOFTZO_INLINE __m512 f16_to_f32(__m256i h) { return _mm512_cvtph_ps(h); }

SOFTZO_INLINE __m512 bf16_to_f32(__m256i b) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(b), 16));
}

SOFTZO_INLINE __m256i load16(const uint16_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
SOFTZO_INLINE void store16(uint16_t* p, __m256i v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
}

// The last n - i < 16 elements: masked natively; one by one when emulated, since SIMDe's
// masked accesses touch memory past the end.
#if SOFTZO_AVX512_EMULATED
#define SOFTZO_CONVERT_TAIL(masked, scalar) \
  for (; i < n; ++i) y[i] = scalar(x[i]);
#else
#define SOFTZO_CONVERT_TAIL(masked, scalar)        \
  if (i < n) {                                     \
    const __mmask16 k = softzo_tail_mask16(n - i); \
    masked;                                        \
  }
#endif

#if !SOFTZO_AVX512_EMULATED
// VCVTNEPS2BF16 follows the header's rule exactly (round to nearest even, quiet NaN,
// subnormal inputs to signed zero) at one instruction per 16 floats. The target attribute
// keeps the BF16 instructions out of everything else in this file.
__attribute__((target("avx512bf16,avx512f,avx512vl,avx512bw"))) void f32tobf16_bf16(size_t n,
                                                                                    const float* x,
                                                                                    uint16_t* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256bh b = _mm512_cvtneps_pbh(_mm512_loadu_ps(x + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), reinterpret_cast<const __m256i&>(b));
  }
  if (i < n) {
    const __mmask16 k = softzo_tail_mask16(n - i);
    const __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, x + i));
    _mm256_mask_storeu_epi16(y + i, k, reinterpret_cast<const __m256i&>(b));
  }
}

#endif

}  // namespace

extern "C" {

void SOFTZO_FN_HALF(f16tof32)(size_t n, const uint16_t* x, float* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, f16_to_f32(load16(x + i)));
  SOFTZO_CONVERT_TAIL(
      _mm512_mask_storeu_ps(y + i, k, f16_to_f32(_mm256_maskz_loadu_epi16(k, x + i))),
      softzo_f16_to_f32)
}

void SOFTZO_FN_HALF(bf16tof32)(size_t n, const uint16_t* x, float* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, bf16_to_f32(load16(x + i)));
  SOFTZO_CONVERT_TAIL(
      _mm512_mask_storeu_ps(y + i, k, bf16_to_f32(_mm256_maskz_loadu_epi16(k, x + i))),
      softzo_bf16_to_f32)
}

void SOFTZO_FN_HALF(f32tof16)(size_t n, const float* x, uint16_t* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) store16(y + i, softzo_cvtps_ph(_mm512_loadu_ps(x + i)));
  SOFTZO_CONVERT_TAIL(
      _mm256_mask_storeu_epi16(y + i, k, softzo_cvtps_ph(_mm512_maskz_loadu_ps(k, x + i))),
      softzo_f32_to_f16)
}

void SOFTZO_FN_HALF(f32tobf16)(size_t n, const float* x, uint16_t* y) {
#if !SOFTZO_AVX512_EMULATED
  if (softzo_cpu_has_avx512_bf16()) {
    f32tobf16_bf16(n, x, y);
    return;
  }
#endif
  size_t i = 0;
  for (; i + 16 <= n; i += 16) store16(y + i, bf16_bits(_mm512_loadu_ps(x + i)));
  SOFTZO_CONVERT_TAIL(
      _mm256_mask_storeu_epi16(y + i, k, bf16_bits(_mm512_maskz_loadu_ps(k, x + i))),
      softzo_f32_to_bf16)
}

}  // extern "C"
