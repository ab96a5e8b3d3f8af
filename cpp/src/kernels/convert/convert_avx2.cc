// AVX2 half-precision conversions (built with -mavx2 -mfma -mf16c): float16 through F16C's
// VCVTPH2PS / VCVTPS2PH, bfloat16 through integer shifts and the round-to-nearest-even bias.
// 8 or 16 elements per step; tails take the scalar definitions of the header.
#include <immintrin.h>

#include "kernels/convert/convert_kernels.h"

namespace {

// The bfloat16 bits of 8 floats in the low 16 bits of each 32-bit lane (the header's rule).
inline __m256i bf16_bits(__m256 v) {
  const __m256i x = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb), 16);
  const __m256i ax = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
  const __m256i is_nan = _mm256_cmpgt_epi32(ax, _mm256_set1_epi32(0x7f800000));
  const __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x40));
  const __m256i is_tiny = _mm256_cmpeq_epi32(_mm256_and_si256(x, _mm256_set1_epi32(0x7f800000)),
                                             _mm256_setzero_si256());
  const __m256i signed_zero = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x8000));
  __m256i r = _mm256_blendv_epi8(rounded, quiet, is_nan);
  return _mm256_blendv_epi8(r, signed_zero, is_tiny);
}

// Packs two vectors of 32-bit lanes (values < 2^16) into 16 uint16 in order: packus works per
// 128-bit lane, the permute restores the order.
inline __m256i pack16(__m256i a, __m256i b) {
  return _mm256_permute4x64_epi64(_mm256_packus_epi32(a, b), 0xd8);
}

}  // namespace

extern "C" {

void softzo_half_f16tof32_avx2(size_t n, const uint16_t* x, float* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) y[i] = softzo_f16_to_f32(x[i]);
}

void softzo_half_bf16tof32_avx2(size_t n, const uint16_t* x, float* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i w =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i)));
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
  }
  for (; i < n; ++i) y[i] = softzo_bf16_to_f32(x[i]);
}

void softzo_half_f32tof16_avx2(size_t n, const float* x, uint16_t* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = softzo_f32_to_f16(x[i]);
}

void softzo_half_f32tobf16_avx2(size_t n, const float* x, uint16_t* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i packed =
        pack16(bf16_bits(_mm256_loadu_ps(x + i)), bf16_bits(_mm256_loadu_ps(x + i + 8)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), packed);
  }
  for (; i < n; ++i) y[i] = softzo_f32_to_bf16(x[i]);
}

}  // extern "C"
