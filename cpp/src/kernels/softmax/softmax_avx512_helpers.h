// Static inline AVX-512 building blocks for softmax_avx512.cc: masked memory access,
// horizontal reductions, float->double widening and the exp kernels. Everything here is static
// (and forced inline), so neither the native nor the SIMDe-emulated object exports or weakly
// defines anything from it.
#ifndef SOFTZO_KERNELS_SOFTMAX_SOFTMAX_AVX512_HELPERS_H_
#define SOFTZO_KERNELS_SOFTMAX_SOFTMAX_AVX512_HELPERS_H_

#include <stddef.h>
#include <stdint.h>

// Emulate when asked to, and also whenever the compiler was not given AVX-512: SIMDe would then
// fall back silently anyway, and the emulation-only fixes below must be in effect.
#if !defined(SOFTZO_AVX512_EMULATED)
#if (defined(SOFTZO_EMULATE_AVX512) && (SOFTZO_EMULATE_AVX512 + 0)) || !defined(__AVX512F__)
#define SOFTZO_AVX512_EMULATED 1
#else
#define SOFTZO_AVX512_EMULATED 0
#endif
#endif

#if defined(__GNUC__) && !defined(__clang__)
// GCC 12's avx512fintrin.h seeds _mm512_undefined_ps() with itself (GCC PR 105593), which
// -Wall reports at every inlined intrinsic; -Wpsabi flags __m512 passed by value without
// AVX-512 (emulated build), irrelevant for static functions that are never exported.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if SOFTZO_AVX512_EMULATED
#ifndef SIMDE_ENABLE_NATIVE_ALIASES
#define SIMDE_ENABLE_NATIVE_ALIASES
#endif
#include <simde/x86/avx512.h>
#else
#include <immintrin.h>
#endif

// Every helper is forced inline: the emulated build would otherwise keep some out of line and
// pass __m512 by value without AVX-512 (a -Wpsabi ABI warning); natively it costs nothing.
#define SOFTZO_INLINE inline __attribute__((always_inline))

#define SOFTZO_ROUND_NEAREST (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

// ---------------------------------------------------------------------------------------------
// Masked memory access. SIMDe emulates masked loads with a full 64-byte load and masked stores
// with a full 64-byte store of zeros in the unselected lanes, i.e. past y[n-1]; the emulated
// build therefore goes lane by lane (tails only, so speed does not matter).

static SOFTZO_INLINE __mmask16 softzo_tail_mask16(size_t rem) {  // rem < 16
  return static_cast<__mmask16>((1u << rem) - 1u);
}
static SOFTZO_INLINE __mmask8 softzo_tail_mask8(size_t rem) {  // rem < 8
  return static_cast<__mmask8>((1u << rem) - 1u);
}

#if SOFTZO_AVX512_EMULATED
static SOFTZO_INLINE __m512 softzo_mask_loadu_ps(__m512 src, __mmask16 k, const float* p) {
  float buf[16];
  _mm512_storeu_ps(buf, src);
  for (int l = 0; l < 16; ++l)
    if ((k >> l) & 1) buf[l] = p[l];
  return _mm512_loadu_ps(buf);
}
static SOFTZO_INLINE __m512d softzo_mask_loadu_pd(__m512d src, __mmask8 k, const double* p) {
  double buf[8];
  _mm512_storeu_pd(buf, src);
  for (int l = 0; l < 8; ++l)
    if ((k >> l) & 1) buf[l] = p[l];
  return _mm512_loadu_pd(buf);
}
static SOFTZO_INLINE void softzo_mask_storeu_ps(float* p, __mmask16 k, __m512 v) {
  float buf[16];
  _mm512_storeu_ps(buf, v);
  for (int l = 0; l < 16; ++l)
    if ((k >> l) & 1) p[l] = buf[l];
}
static SOFTZO_INLINE void softzo_mask_storeu_pd(double* p, __mmask8 k, __m512d v) {
  double buf[8];
  _mm512_storeu_pd(buf, v);
  for (int l = 0; l < 8; ++l)
    if ((k >> l) & 1) p[l] = buf[l];
}
#else
static SOFTZO_INLINE __m512 softzo_mask_loadu_ps(__m512 src, __mmask16 k, const float* p) {
  return _mm512_mask_loadu_ps(src, k, p);
}
static SOFTZO_INLINE __m512d softzo_mask_loadu_pd(__m512d src, __mmask8 k, const double* p) {
  return _mm512_mask_loadu_pd(src, k, p);
}
static SOFTZO_INLINE void softzo_mask_storeu_ps(float* p, __mmask16 k, __m512 v) {
  _mm512_mask_storeu_ps(p, k, v);
}
static SOFTZO_INLINE void softzo_mask_storeu_pd(double* p, __mmask8 k, __m512d v) {
  _mm512_mask_storeu_pd(p, k, v);
}
#endif

// ---------------------------------------------------------------------------------------------
// Lane shuffles. Built from 256-bit halves: SIMDe has no _mm512_reduce_add_ps and no
// _mm512_cvtps_pd, and the halves map onto native AVX instructions in the emulated build.

static SOFTZO_INLINE __m256 softzo_lo256_ps(__m512 v) { return _mm512_castps512_ps256(v); }
static SOFTZO_INLINE __m256 softzo_hi256_ps(__m512 v) {
  // Through the pd view: AVX512F only, where _mm512_extractf32x8_ps needs DQ.
  return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

static SOFTZO_INLINE __m512d softzo_cvt256_pd(__m256 h) {
#if SOFTZO_AVX512_EMULATED
  const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(h));
  const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(h, 1));
  return _mm512_insertf64x4(_mm512_castpd256_pd512(lo), hi, 1);
#else
  return _mm512_cvtps_pd(h);
#endif
}
// Lanes 0-7 and 8-15 of v, widened to double.
static SOFTZO_INLINE __m512d softzo_cvtlo_pd(__m512 v) {
  return softzo_cvt256_pd(softzo_lo256_ps(v));
}
static SOFTZO_INLINE __m512d softzo_cvthi_pd(__m512 v) {
  return softzo_cvt256_pd(softzo_hi256_ps(v));
}

static SOFTZO_INLINE float softzo_hmax_ps(__m512 v) {
  const __m256 m8 = _mm256_max_ps(softzo_lo256_ps(v), softzo_hi256_ps(v));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
  return _mm_cvtss_f32(m4);
}

static SOFTZO_INLINE double softzo_hmax_pd(__m512d v) {
  const __m256d m4 = _mm256_max_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
  __m128d m2 = _mm_max_pd(_mm256_castpd256_pd128(m4), _mm256_extractf128_pd(m4, 1));
  m2 = _mm_max_sd(m2, _mm_unpackhi_pd(m2, m2));
  return _mm_cvtsd_f64(m2);
}

static SOFTZO_INLINE double softzo_hadd_pd(__m512d v) {
  const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(v), _mm512_extractf64x4_pd(v, 1));
  __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  s2 = _mm_add_sd(s2, _mm_unpackhi_pd(s2, s2));
  return _mm_cvtsd_f64(s2);
}

// ---------------------------------------------------------------------------------------------
// exp. Both precisions return 2p with exp(x) = 2p * 2^(n-1): the doubled polynomial is exact
// (every step scales by 2), and 2^(n-1) stays finite at n = 128 / 1024, where SIMDe's
// emulated scalef (a * exp2(b) with exp2 built in the element type) would overflow early.

// x must already be clamped to <= 89 (or be NaN); *n = round(x log2 e). |r| <= ln2/2 + tiny.
static SOFTZO_INLINE __m512 softzo_exp2p_ps(__m512 x, __m512* n_out) {
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(0x1.715476p+0f)), SOFTZO_ROUND_NEAREST);
  // ln2_hi has 21 significant bits, so x - n*ln2_hi is exact for |n| <= 2^8 (Cody-Waite).
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62E43p-1f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-0x1.05C61p-29f), r);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0x1.0F9F9Cp-6f), r, _mm512_set1_ps(0x1.573A1Ap-4f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.555A80p-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.FFFDC6p-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.FFFFF6p+0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.0f));
  *n_out = n;
  return p;
}

// Smallest float >= ln(2^-126): below it exp(x) would be denormal and is flushed to 0.
#define SOFTZO_EXP_MIN_F32 (-0x1.5D589Ep+6f)

static SOFTZO_INLINE __m512 softzo_exp_ps(__m512 x) {
  // Operand order keeps NaN (min/max return the second operand when either is NaN); 89 maps
  // +inf and everything above ln(FLT_MAX) to an overflowing, finite reduction.
  const __m512 xc = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
  __m512 n;
  const __m512 p2 = softzo_exp2p_ps(xc, &n);
  const __m512 y = _mm512_scalef_ps(p2, _mm512_sub_ps(n, _mm512_set1_ps(1.0f)));
  // NLT_UQ is true for NaN, so NaN propagates while -inf and tiny results become exactly 0.
  const __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(SOFTZO_EXP_MIN_F32), _CMP_NLT_UQ);
  return _mm512_maskz_mov_ps(keep, y);
}

// Same contract in double: Taylor to degree 13 (|r|^14/14! < 4e-18 on |r| <= ln2/2).
static SOFTZO_INLINE __m512d softzo_exp2p_pd(__m512d x, __m512d* n_out) {
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(0x1.71547652b82fep+0)),
                                         SOFTZO_ROUND_NEAREST);
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0x1.62e42fefa39efp-1), x);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0x1.abc9e3b39803fp-56), r);
  __m512d p = _mm512_set1_pd(2.0 / 6227020800.0);  // 2/13!
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 479001600.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 39916800.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 3628800.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 362880.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 40320.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 5040.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 720.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 120.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 24.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0 / 6.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(1.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0));
  p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(2.0));
  *n_out = n;
  return p;
}

// ln(2^-1022); below it exp(x) would be denormal and is flushed to 0.
#define SOFTZO_EXP_MIN_F64 (-708.3964185322641)

static SOFTZO_INLINE __m512d softzo_exp_pd(__m512d x) {
  const __m512d xc = _mm512_min_pd(_mm512_set1_pd(710.0), x);
  __m512d n;
  const __m512d p2 = softzo_exp2p_pd(xc, &n);
  const __m512d y = _mm512_scalef_pd(p2, _mm512_sub_pd(n, _mm512_set1_pd(1.0)));
  const __mmask8 keep = _mm512_cmp_pd_mask(x, _mm512_set1_pd(SOFTZO_EXP_MIN_F64), _CMP_NLT_UQ);
  return _mm512_maskz_mov_pd(keep, y);
}

#endif  // SOFTZO_KERNELS_SOFTMAX_SOFTMAX_AVX512_HELPERS_H_
