// AVX-512 building blocks for softmax_avx512.cc, losses_avx512.cc and zo_avx512.cc: masked
// memory access, horizontal reductions, float->double widening, the exp kernels and the scaled
// exp, the F32 / F64 traits, the running totals and the unrolled map / reduction loops. Everything
// here is static or in an anonymous namespace (and forced inline), so neither the native nor the
// SIMDe-emulated object exports or weakly defines anything from it.
#ifndef SOFTZO_ISA_AVX512_H_
#define SOFTZO_ISA_AVX512_H_

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/softmax/softmax_kernels.h"

// Emulate when asked to, and also whenever the compiler was not given AVX-512: SIMDe would then
// fall back silently anyway, and the emulation-only fixes below must be in effect.
#if !defined(SOFTZO_AVX512_EMULATED)
#if (defined(SOFTZO_EMULATE_AVX512) && (SOFTZO_EMULATE_AVX512 + 0)) || !defined(__AVX512F__)
#define SOFTZO_AVX512_EMULATED 1
#else
#define SOFTZO_AVX512_EMULATED 0
#endif
#endif

// The exported names carry the suffix of the build: softzo_<dt>_<op>_avx512 natively,
// softzo_<dt>_<op>_avx512emu on top of SIMDe.
#ifndef SOFTZO_ISA_SUFFIX
#if SOFTZO_AVX512_EMULATED
#define SOFTZO_ISA_SUFFIX avx512emu
#else
#define SOFTZO_ISA_SUFFIX avx512
#endif
#endif

#define SOFTZO_PASTE3_(a, b, c) softzo_##a##_##b##_##c
#define SOFTZO_PASTE3(a, b, c) SOFTZO_PASTE3_(a, b, c)
#define SOFTZO_FN(dt, op) SOFTZO_PASTE3(dt, op, SOFTZO_ISA_SUFFIX)

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

#if !SOFTZO_AVX512_EMULATED
// Whether the CPU has AVX512-BF16 (VCVTNEPS2BF16, VCVTNE2PS2BF16), asked once. Cached in a plain
// int with atomic builtins, not a function-local static object: the latter's guarded
// initialisation emits an exception-handling personality reference, a weak symbol
// (.ci/check_weak_symbols.sh). 0: not yet asked, 1: no, 2: yes.
static inline bool softzo_cpu_has_avx512_bf16() {
  static int state = 0;
  int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
  if (s == 0) {
    __builtin_cpu_init();
    s = __builtin_cpu_supports("avx512bf16") ? 2 : 1;
    __atomic_store_n(&state, s, __ATOMIC_RELAXED);
  }
  return s == 2;
}
#endif

// The exported name of a half-precision kernel: softzo_half_<op>_avx512 or ..._avx512emu.
#define SOFTZO_FN_HALF(op) SOFTZO_PASTE3(half, op, SOFTZO_ISA_SUFFIX)

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

// 16 floats as float16 bits, round to nearest even: VCVTPS2PH natively; SIMDe lacks
// _mm512_cvtps_ph, so the emulated build converts the two halves through F16C.
static SOFTZO_INLINE __m256i softzo_cvtps_ph(__m512 v) {
#if SOFTZO_AVX512_EMULATED
  const __m128i lo = _mm256_cvtps_ph(softzo_lo256_ps(v), _MM_FROUND_TO_NEAREST_INT);
  const __m128i hi = _mm256_cvtps_ph(softzo_hi256_ps(v), _MM_FROUND_TO_NEAREST_INT);
  return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
#else
  return _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
#endif
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

// 2 p(r) ~ 2 exp(r) on |r| <= ln2/2 + tiny: the degree-6 polynomial of isa/avx2.h doubled
// (exact), ~1 ulp where degree 5 reached 1.98.
static SOFTZO_INLINE __m512 softzo_exp2poly_ps(__m512 r) {
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(0x1.6b500cp-9f), r, _mm512_set1_ps(0x1.126cc0p-6f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.555788p-4f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.55542ap-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.fffffcp-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.0f));
  return _mm512_fmadd_ps(p, r, _mm512_set1_ps(2.0f));
}

// x must already be clamped to <= 89 (or be NaN); *n = round(x log2 e). |r| <= ln2/2 + tiny.
// xlo (kLo) is a small correction to x (|xlo| <= ulp(x)), which joins the reduced argument.
template <bool kLo>
static SOFTZO_INLINE __m512 softzo_exp2p_lo_ps(__m512 x, __m512 xlo, __m512* n_out) {
  const __m512 n =
      _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(0x1.715476p+0f)), SOFTZO_ROUND_NEAREST);
  // ln2_hi has 21 significant bits, so x - n*ln2_hi is exact for |n| <= 2^8 (Cody-Waite).
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62E43p-1f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-0x1.05C61p-29f), r);
  if (kLo) r = _mm512_add_ps(r, xlo);
  *n_out = n;
  return softzo_exp2poly_ps(r);
}
static SOFTZO_INLINE __m512 softzo_exp2p_ps(__m512 x, __m512* n_out) {
  return softzo_exp2p_lo_ps<false>(x, x, n_out);
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
template <bool kLo>
static SOFTZO_INLINE __m512d softzo_exp2p_lo_pd(__m512d x, __m512d xlo, __m512d* n_out) {
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(0x1.71547652b82fep+0)),
                                         SOFTZO_ROUND_NEAREST);
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0x1.62e42fefa39efp-1), x);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0x1.abc9e3b39803fp-56), r);
  if (kLo) r = _mm512_add_pd(r, xlo);
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
static SOFTZO_INLINE __m512d softzo_exp2p_pd(__m512d x, __m512d* n_out) {
  return softzo_exp2p_lo_pd<false>(x, x, n_out);
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

// ---------------------------------------------------------------------------------------------
// Element-type traits and the loops shared by the kernel files. Anonymous namespace: internal
// linkage in each object, so nothing here is exported or emitted as a weak symbol.

namespace {

// Main loops take 4 vectors (64 floats / 32 doubles) per iteration: four independent exp
// evaluations (~12 dependent FP ops each, ~50 cycles of latency) let the core overlap them, and
// the loop/branch overhead is paid once per 256 bytes.
constexpr size_t kUnroll = 4;

struct F32 {
  typedef float T;
  typedef __m512 V;
  typedef __mmask16 K;
  static constexpr size_t kLanes = 16;
  static constexpr int kHalves = 2;  // __m512d per V once widened to double
  static constexpr double kMinScaled = SOFTZO_MIN_SCALED_F32;
  static constexpr double kMinNormal = FLT_MIN;
  static constexpr double kMinArg = SOFTZO_EXP_MIN_F32;
  static SOFTZO_INLINE V load(const T* p) { return _mm512_loadu_ps(p); }
  static SOFTZO_INLINE V load_or(V src, K k, const T* p) { return softzo_mask_loadu_ps(src, k, p); }
  static SOFTZO_INLINE void store(T* p, V v) { _mm512_storeu_ps(p, v); }
  static SOFTZO_INLINE void store_mask(T* p, K k, V v) { softzo_mask_storeu_ps(p, k, v); }
  static SOFTZO_INLINE K tail(size_t rem) { return softzo_tail_mask16(rem); }
  static SOFTZO_INLINE V set1(T a) { return _mm512_set1_ps(a); }
  static SOFTZO_INLINE V zero() { return _mm512_setzero_ps(); }
  static SOFTZO_INLINE V add(V a, V b) { return _mm512_add_ps(a, b); }
  static SOFTZO_INLINE V mask_add(V src, K k, V a, V b) { return _mm512_mask_add_ps(src, k, a, b); }
  static SOFTZO_INLINE V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static SOFTZO_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static SOFTZO_INLINE V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static SOFTZO_INLINE V fmsub(V a, V b, V c) { return _mm512_fmsub_ps(a, b, c); }
  static SOFTZO_INLINE V mask_mul(V src, K k, V a, V b) { return _mm512_mask_mul_ps(src, k, a, b); }
  static SOFTZO_INLINE V maskz_mul(K k, V a, V b) { return _mm512_maskz_mul_ps(k, a, b); }
  static SOFTZO_INLINE V mask_div(V src, K k, V a, V b) { return _mm512_mask_div_ps(src, k, a, b); }
  static SOFTZO_INLINE V max(V a, V b) { return _mm512_max_ps(a, b); }
  static SOFTZO_INLINE V min(V a, V b) { return _mm512_min_ps(a, b); }
  static SOFTZO_INLINE V mask_max(V src, K k, V a, V b) { return _mm512_mask_max_ps(src, k, a, b); }
  static SOFTZO_INLINE V scalef(V a, V b) { return _mm512_scalef_ps(a, b); }
  static SOFTZO_INLINE V maskz_scalef(K k, V a, V b) { return _mm512_maskz_scalef_ps(k, a, b); }
  static SOFTZO_INLINE V maskz_mov(K k, V a) { return _mm512_maskz_mov_ps(k, a); }
  static SOFTZO_INLINE V blend(K k, V a, V b) { return _mm512_mask_blend_ps(k, a, b); }
  static SOFTZO_INLINE K cmp_gt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static SOFTZO_INLINE K cmp_eq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  static SOFTZO_INLINE K is_nan(V a) { return _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q); }
  static SOFTZO_INLINE K cmp_neq_uq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
  static SOFTZO_INLINE K cmp_nge_uq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_NGE_UQ); }
  static SOFTZO_INLINE K cmp_nle_uq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_NLE_UQ); }
  static SOFTZO_INLINE K cmp_nlt_uq(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_NLT_UQ); }
  static SOFTZO_INLINE V abs(V a) {
    return _mm512_castsi512_ps(
        _mm512_and_si512(_mm512_castps_si512(a), _mm512_set1_epi32(INT32_MAX)));
  }
  static SOFTZO_INLINE V exp(V x) { return softzo_exp_ps(x); }
  static SOFTZO_INLINE V exp2p(V x, V* n) { return softzo_exp2p_ps(x, n); }
  static SOFTZO_INLINE V exp2p_lo(V x, V lo, V* n) { return softzo_exp2p_lo_ps<true>(x, lo, n); }
  static SOFTZO_INLINE T hmax(V v) { return softzo_hmax_ps(v); }
  static SOFTZO_INLINE T hmin(V v) { return _mm512_reduce_min_ps(v); }
  static SOFTZO_INLINE __m512d half(V v, int h) {
    return h == 0 ? softzo_cvtlo_pd(v) : softzo_cvthi_pd(v);
  }
  static SOFTZO_INLINE __m512d fold(__m512d acc, V v) {
    return _mm512_add_pd(_mm512_add_pd(acc, softzo_cvtlo_pd(v)), softzo_cvthi_pd(v));
  }
  static SOFTZO_INLINE T lowest() { return -FLT_MAX; }
  static SOFTZO_INLINE T above(double v) {  // smallest float >= v
    const float f = static_cast<float>(v);
    return static_cast<double>(f) < v ? nextafterf(f, INFINITY) : f;
  }
};

struct F64 {
  typedef double T;
  typedef __m512d V;
  typedef __mmask8 K;
  static constexpr size_t kLanes = 8;
  static constexpr int kHalves = 1;
  static constexpr double kMinScaled = SOFTZO_MIN_SCALED_F64;
  static constexpr double kMinNormal = DBL_MIN;
  static constexpr double kMinArg = SOFTZO_EXP_MIN_F64;
  static SOFTZO_INLINE V load(const T* p) { return _mm512_loadu_pd(p); }
  static SOFTZO_INLINE V load_or(V src, K k, const T* p) { return softzo_mask_loadu_pd(src, k, p); }
  static SOFTZO_INLINE void store(T* p, V v) { _mm512_storeu_pd(p, v); }
  static SOFTZO_INLINE void store_mask(T* p, K k, V v) { softzo_mask_storeu_pd(p, k, v); }
  static SOFTZO_INLINE K tail(size_t rem) { return softzo_tail_mask8(rem); }
  static SOFTZO_INLINE V set1(T a) { return _mm512_set1_pd(a); }
  static SOFTZO_INLINE V zero() { return _mm512_setzero_pd(); }
  static SOFTZO_INLINE V add(V a, V b) { return _mm512_add_pd(a, b); }
  static SOFTZO_INLINE V mask_add(V src, K k, V a, V b) { return _mm512_mask_add_pd(src, k, a, b); }
  static SOFTZO_INLINE V sub(V a, V b) { return _mm512_sub_pd(a, b); }
  static SOFTZO_INLINE V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static SOFTZO_INLINE V fmadd(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static SOFTZO_INLINE V fmsub(V a, V b, V c) { return _mm512_fmsub_pd(a, b, c); }
  static SOFTZO_INLINE V mask_mul(V src, K k, V a, V b) { return _mm512_mask_mul_pd(src, k, a, b); }
  static SOFTZO_INLINE V maskz_mul(K k, V a, V b) { return _mm512_maskz_mul_pd(k, a, b); }
  static SOFTZO_INLINE V mask_div(V src, K k, V a, V b) { return _mm512_mask_div_pd(src, k, a, b); }
  static SOFTZO_INLINE V max(V a, V b) { return _mm512_max_pd(a, b); }
  static SOFTZO_INLINE V min(V a, V b) { return _mm512_min_pd(a, b); }
  static SOFTZO_INLINE V mask_max(V src, K k, V a, V b) { return _mm512_mask_max_pd(src, k, a, b); }
  static SOFTZO_INLINE V scalef(V a, V b) { return _mm512_scalef_pd(a, b); }
  static SOFTZO_INLINE V maskz_scalef(K k, V a, V b) { return _mm512_maskz_scalef_pd(k, a, b); }
  static SOFTZO_INLINE V maskz_mov(K k, V a) { return _mm512_maskz_mov_pd(k, a); }
  static SOFTZO_INLINE V blend(K k, V a, V b) { return _mm512_mask_blend_pd(k, a, b); }
  static SOFTZO_INLINE K cmp_gt(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
  static SOFTZO_INLINE K cmp_eq(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_EQ_OQ); }
  static SOFTZO_INLINE K is_nan(V a) { return _mm512_cmp_pd_mask(a, a, _CMP_UNORD_Q); }
  static SOFTZO_INLINE K cmp_neq_uq(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_NEQ_UQ); }
  static SOFTZO_INLINE K cmp_nge_uq(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_NGE_UQ); }
  static SOFTZO_INLINE K cmp_nle_uq(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_NLE_UQ); }
  static SOFTZO_INLINE K cmp_nlt_uq(V a, V b) { return _mm512_cmp_pd_mask(a, b, _CMP_NLT_UQ); }
  static SOFTZO_INLINE V abs(V a) {
    return _mm512_castsi512_pd(
        _mm512_and_si512(_mm512_castpd_si512(a), _mm512_set1_epi64(INT64_MAX)));
  }
  static SOFTZO_INLINE V exp(V x) { return softzo_exp_pd(x); }
  static SOFTZO_INLINE V exp2p(V x, V* n) { return softzo_exp2p_pd(x, n); }
  static SOFTZO_INLINE V exp2p_lo(V x, V lo, V* n) { return softzo_exp2p_lo_pd<true>(x, lo, n); }
  static SOFTZO_INLINE T hmax(V v) { return softzo_hmax_pd(v); }
  static SOFTZO_INLINE T hmin(V v) { return _mm512_reduce_min_pd(v); }
  static SOFTZO_INLINE __m512d half(V v, int) { return v; }
  static SOFTZO_INLINE __m512d fold(__m512d acc, V v) { return _mm512_add_pd(acc, v); }
  static SOFTZO_INLINE T lowest() { return -DBL_MAX; }
  static SOFTZO_INLINE T above(double v) { return v; }
};

// The double-lane running total of a sum. float rows fold into plain double lanes (far more
// precise than float); double rows into a compensated total (2Sum: each fold's rounding error
// is kept in lo), since a lane that holds one large term drops every later term below half its
// ulp, a bias that cost float64 log-probabilities up to ~5 ulp on 64K-element rows.
template <class A>
struct Total {
  __m512d hi = _mm512_setzero_pd(), lo = _mm512_setzero_pd();
  SOFTZO_INLINE void fold(typename A::V v) {
    if (A::kHalves == 2) {
      hi = A::fold(hi, v);
      return;
    }
    const __m512d d = A::half(v, 0);
    // The error is taken only where both operands are >= 2^-969 (elsewhere it could be
    // subnormal, and is 2^-53 relative to values that small): the others enter it as 0.
    const __m512d floor = _mm512_set1_pd(0x1p-969);
    const __mmask8 big = _mm512_cmp_pd_mask(F64::abs(hi), floor, _CMP_GE_OQ) &
                         _mm512_cmp_pd_mask(F64::abs(d), floor, _CMP_GE_OQ);
    const __m512d h = _mm512_maskz_mov_pd(big, hi), w = _mm512_maskz_mov_pd(big, d);
    const __m512d t = _mm512_add_pd(h, w), bb = _mm512_sub_pd(t, h);
    lo = _mm512_add_pd(lo,
                       _mm512_add_pd(_mm512_sub_pd(h, _mm512_sub_pd(t, bb)), _mm512_sub_pd(w, bb)));
    hi = _mm512_add_pd(hi, d);
  }
  double value() const {
    if (A::kHalves == 2) return softzo_hadd_pd(hi);
    double a[16];
    _mm512_storeu_pd(a, hi);
    _mm512_storeu_pd(a + 8, lo);
    double sum = 0.0, carry = 0.0;  // Neumaier over the 16 lanes
    for (double v : a) {
      const double t = sum + v, x = fabs(sum), y = fabs(v);
      if ((x < y ? x : y) >= 0x1p-969) carry += x >= y ? (sum - t) + v : (v - t) + sum;
      sum = t;
    }
    return sum + carry;
  }
};

// Number of elements the next fold block covers: whole unrolled steps, at most max_iters.
inline size_t block_len(size_t remaining, size_t step, size_t max_iters) {
  const size_t iters = remaining / step;
  return (iters < max_iters ? iters : max_iters) * step;
}

// y_i = f(x_i). All four loads of an iteration precede its stores and each store covers only
// the elements just read, so x == y is safe.
template <class A, class F>
void map(size_t n, const typename A::T* x, typename A::T* y, const F& f) {
  typedef typename A::V V;
  const size_t L = A::kLanes;
  size_t i = 0;
  for (; n - i >= kUnroll * L; i += kUnroll * L) {
    const V v0 = f(A::load(x + i));
    const V v1 = f(A::load(x + i + L));
    const V v2 = f(A::load(x + i + 2 * L));
    const V v3 = f(A::load(x + i + 3 * L));
    A::store(y + i, v0);
    A::store(y + i + L, v1);
    A::store(y + i + 2 * L, v2);
    A::store(y + i + 3 * L, v3);
  }
  for (; n - i >= L; i += L) A::store(y + i, f(A::load(x + i)));
  if (i < n) {
    const typename A::K k = A::tail(n - i);
    A::store_mask(y + i, k, f(A::load_or(A::zero(), k, x + i)));
  }
}

// Vector i of a row: a plain load, or in the tail (kTail) a masked one reading only the lanes in
// k (the rest are 0). Same for the stores.
template <class A, bool kTail>
SOFTZO_INLINE typename A::V load_at(const typename A::T* p, typename A::K k) {
  if constexpr (kTail) return A::load_or(A::zero(), k, p);
  return A::load(p);
}
template <class A, bool kTail>
SOFTZO_INLINE void store_at(typename A::T* p, typename A::K k, typename A::V v) {
  if constexpr (kTail) {
    A::store_mask(p, k, v);
  } else {
    A::store(p, v);
  }
}

// sum_i of the terms that f adds to lane accumulators, returned in double: f.template
// step<kTail>(acc, i, k) reads the vectors at element i (masked by k when kTail), may store
// results there, and returns acc plus that vector's terms; idle tail lanes keep acc. Each lane
// takes at most fold_iters terms in T before its block is folded into double. A step reads
// everything at i before it writes there, and only there, so in-place outputs are safe.
template <class A, class F>
double reduce(size_t n, size_t fold_iters, const F& f) {
  typedef typename A::V V;
  const size_t L = A::kLanes;
  const size_t step = kUnroll * L;
  Total<A> total;
  size_t i = 0;
  while (n - i >= step) {
    // Four accumulators: an add or FMA has 4 cycles latency on 2 ports, so one chain would
    // retire a vector every 4 cycles where the loads allow 2 per cycle.
    V a0 = A::zero(), a1 = A::zero(), a2 = A::zero(), a3 = A::zero();
    const size_t end = i + block_len(n - i, step, fold_iters);
    for (; i < end; i += step) {
      a0 = f.template step<false>(a0, i, 0);
      a1 = f.template step<false>(a1, i + L, 0);
      a2 = f.template step<false>(a2, i + 2 * L, 0);
      a3 = f.template step<false>(a3, i + 3 * L, 0);
    }
    total.fold(a0);
    total.fold(a1);
    total.fold(a2);
    total.fold(a3);
  }
  if (i < n) {  // fewer than 4 vectors left: at most 4 more terms per lane
    V a = A::zero();
    for (; n - i >= L; i += L) a = f.template step<false>(a, i, 0);
    if (i < n) {
      const typename A::K k = A::tail(n - i);
      a = A::blend(k, a, f.template step<true>(a, i, k));
    }
    total.fold(a);
  }
  return total.value();
}

// Each accumulator lane sums at most kFoldBlock terms in T before the block is folded into
// double, which keeps the total's error independent of n (a 64M-element row stays near 2e-8).
// Why 8, far under the 512 allowed: every float add into a lane holding a term near 1 rounds by
// up to 6e-8 (and drops terms below that), and rows dominated by a few terms keep those errors.
// Worst relative sum error over 18000 random rows (N(0, 3^2), N(0, 8^2), n up to 1e6): 4.3e-7
// with 512, 2.1e-7 with 16, 1.7e-7 with 8 (the floor: a few adds per lane already cost that).
// The fold (extract, 2 cvt, 2 add per accumulator) is ~4% of a block's ~500 uops.
constexpr size_t kFoldBlock = 8;
constexpr double kLn2 = 0x1.62e42fefa39efp-1;

// exp(x) * 2^-e, and exactly 0 where that falls below 2^kMinScaled (x < (e + kMinScaled) ln2,
// -inf included); needs x <= (e + 1) ln2. exp2p gives exp(x) = 2p * 2^(n-1), so the scalef
// exponent n - 1 - e is <= 0: nothing can overflow, and the result is normal wherever it is
// kept. The flush is the zero-masking of the scalef, free here (masked lanes are not computed,
// so no subnormal is formed), so raddexp ignores the row minimum that lets the AVX2 kernels
// drop theirs.
template <class A>
struct ScaledExp {
  typename A::V thr, e1;
  explicit ScaledExp(double e)
      : thr(A::set1(A::above((e + A::kMinScaled) * kLn2))),
        e1(A::set1(static_cast<typename A::T>(e + 1.0))) {}
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const {
    typename A::V n;
    const typename A::V p2 = A::exp2p(x, &n);
    return A::maskz_scalef(A::cmp_nlt_uq(x, thr), p2, A::sub(n, e1));
  }
};

// exp(x) * 2^-e * c, formed as exp(x) * 2^-(e - k) * (c / 2^k) with |c / 2^k| in [1, 2) where
// |c| < 1 (2^k folded into the scalef exponent, which stays <= 0: the emulated scalef builds 2^b
// in T and would overflow early for large b): the flush then applies to the result, so no
// subnormal is formed. c / 2^k is rounded toward zero: |result| <= |c| exp(x) 2^-e, so softmax
// entries stay <= 1.
template <class A>
struct ScaledExpTimes {
  ScaledExp<A> f;
  typename A::V s;
  static double exponent(double e, double c) {
    int k = 0;
    frexp(c, &k);
    return fabs(c) < 1.0 && c != 0.0 ? e - (k - 1) : e;
  }
  static typename A::T factor(double c) {
    int k = 0;
    const double m = frexp(c, &k);
    return static_cast<typename A::T>(fabs(c) < 1.0 && c != 0.0 ? 2.0 * m : c);
  }
  ScaledExpTimes(double e, double c) : f(exponent(e, c)), s(A::set1(factor(c))) {}
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const { return A::mul(f(x), s); }
};

}  // namespace

#endif  // SOFTZO_ISA_AVX512_H_
