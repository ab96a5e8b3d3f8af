// AVX2 fused half-precision softmax sweeps (built with -mavx2 -mfma -mf16c): the trait of
// half_softmax_simd.h on 8 float lanes (a unit: 16 halves, one 256-bit vector). bfloat16 units
// widen as their even and odd elements (a shift and a mask) and narrow back by integer rounding
// straight into place; float16 units through F16C. The 16-entry exp table takes two VPERMPS
// and a blend on the index's bit 3.
#include <immintrin.h>

#include "kernels/half_softmax/half_softmax_simd.h"

namespace {

struct Avx2 {
  using V = __m256;
  using R = __m256i;
  using K = __m256;  // all-ones lanes where set
  static constexpr size_t kLanes = 8;

  static SOFTZO_HS_INLINE R load_raw(const uint16_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static SOFTZO_HS_INLINE void store_raw(uint16_t* p, R v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
  }
  static SOFTZO_HS_INLINE R set1_16(int16_t v) { return _mm256_set1_epi16(v); }
  static SOFTZO_HS_INLINE R key(R h) {  // h ^ (h < 0 ? 0x7fff : 0) per 16-bit lane
    return _mm256_xor_si256(h,
                            _mm256_and_si256(_mm256_srai_epi16(h, 15), _mm256_set1_epi16(0x7fff)));
  }
  static SOFTZO_HS_INLINE R max16(R a, R b) { return _mm256_max_epi16(a, b); }
  static SOFTZO_HS_INLINE R min16(R a, R b) { return _mm256_min_epi16(a, b); }
  template <class F>
  static SOFTZO_HS_INLINE void widen(R h, V* a, V* b) {
    if constexpr (!F::kBf16) {  // float16: elements 0-7, 8-15
      *a = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
      *b = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
    } else {  // bfloat16: even elements, odd elements
      *a = _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
      *b = _mm256_castsi256_ps(
          _mm256_and_si256(h, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
    }
  }
  template <class F>
  static SOFTZO_HS_INLINE R narrow(V a, V b) {
    if constexpr (!F::kBf16) {
      return _mm256_set_m128i(_mm256_cvtps_ph(b, _MM_FROUND_TO_NEAREST_INT),
                              _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT));
    } else {
      // Round to nearest even on the bits (no NaN, no subnormal here): even elements into the
      // low words, odd ones into the high words.
      const __m256i high = _mm256_set1_epi32(static_cast<int>(0xffff0000u));
      return _mm256_or_si256(_mm256_srli_epi32(round_bf16(a), 16),
                             _mm256_and_si256(round_bf16(b), high));
    }
  }

  static SOFTZO_HS_INLINE V zero() { return _mm256_setzero_ps(); }
  static SOFTZO_HS_INLINE V set1(float v) { return _mm256_set1_ps(v); }
  static SOFTZO_HS_INLINE V load(const float* p) { return _mm256_loadu_ps(p); }
  static SOFTZO_HS_INLINE void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static SOFTZO_HS_INLINE V add(V a, V b) { return _mm256_add_ps(a, b); }
  static SOFTZO_HS_INLINE V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static SOFTZO_HS_INLINE V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static SOFTZO_HS_INLINE V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static SOFTZO_HS_INLINE V fmsub(V a, V b, V c) { return _mm256_fmsub_ps(a, b, c); }
  static SOFTZO_HS_INLINE K ge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  template <bool kFlush>
  static SOFTZO_HS_INLINE V scale_of(V v, K keep) {
    const __m256i bits = _mm256_castps_si256(v);
    const __m256 lo = _mm256_permutevar8x32_ps(
        _mm256_loadu_ps(reinterpret_cast<const float*>(softzo_half_exp_table)), bits);
    const __m256 hi = _mm256_permutevar8x32_ps(
        _mm256_loadu_ps(reinterpret_cast<const float*>(softzo_half_exp_table + 8)), bits);
    const __m256 entry = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(bits, 28)));
    const V scale = _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_castps_si256(entry), _mm256_slli_epi32(bits, 19)));
    return kFlush ? _mm256_and_ps(scale, keep) : scale;
  }
  template <bool kFlush>
  static SOFTZO_HS_INLINE V masked_fmadd(K keep, V a, V b, V c) {
    const V r = _mm256_fmadd_ps(a, b, c);
    return kFlush ? _mm256_and_ps(r, keep) : r;
  }
  // v s, where v >= below (kFlush) else 0: v is zeroed before the multiply, so no subnormal is
  // formed.
  template <bool kFlush>
  static SOFTZO_HS_INLINE V scaled(V v, V s, V below) {
    if (!kFlush) return _mm256_mul_ps(v, s);
    return _mm256_mul_ps(_mm256_and_ps(v, _mm256_cmp_ps(v, below, _CMP_GE_OQ)), s);
  }
  static SOFTZO_HS_INLINE double hsum(V v) {
    const __m256d d = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                                    _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    const __m128d h = _mm_add_pd(_mm256_castpd256_pd128(d), _mm256_extractf128_pd(d, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
  }

 private:
  static SOFTZO_HS_INLINE __m256i round_bf16(V v) {
    const __m256i x = _mm256_castps_si256(v);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
    return _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
  }
};

}  // namespace

extern "C" {

void softzo_half_bf16softmaxsweep_avx2(size_t n, softzo_half_sweep* s) {
  sweep_any<Avx2, Bf16>(n, s);
}

void softzo_half_f16softmaxsweep_avx2(size_t n, softzo_half_sweep* s) {
  sweep_any<Avx2, F16>(n, s);
}

}  // extern "C"
