// AVX2 + FMA building blocks shared by the AVX2 kernel files (softmax_avx2.cc, losses_avx2.cc,
// zo_avx2.cc): the Ops<T> traits (loads, masks, arithmetic, the exp range reduction), the
// scaled exp with its flush, horizontal sums, the running totals and the unrolled loops. Everything
// is in an anonymous namespace, so each kernel object keeps its own internal copy and exports
// nothing weak. Include only from -mavx2 -mfma files.
#ifndef SOFTZO_ISA_AVX2_H_
#define SOFTZO_ISA_AVX2_H_

#include <immintrin.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/softmax/softmax_kernels.h"

namespace {

// Fold period for the T-precision accumulators: each accumulator vector absorbs at most this
// many elements before it is folded into the double total, so the rounding of a block stays
// ~sqrt(per lane) * 2^-p and the total error does not grow with n. float: 512 (64 per lane),
// folded into plain double lanes, far more precise than float. double: 32 (8 per lane) into a
// compensated total, since a lane that holds one large term drops every later term below half
// its ulp, a bias that cost float64 log-probabilities up to ~5 ulp on 64K-element rows.
template <typename T>
constexpr size_t kElemsPerAccumulator = sizeof(T) == 4 ? 512 : 32;

// The double-lane running total of a sum: plain for float rows, compensated (2Sum: the rounding
// error of each fold is kept in lo) for double rows.
template <typename T>
struct LaneTotal {
  __m256d hi = _mm256_setzero_pd(), lo = _mm256_setzero_pd();
  void add(__m256d v) {
    if (sizeof(T) == 4) {
      hi = _mm256_add_pd(hi, v);
      return;
    }
    // The error is taken only where both operands are >= 2^-969 (elsewhere it could be
    // subnormal, and is 2^-53 relative to values that small): the others enter it as 0.
    const __m256d abs_mask = _mm256_castsi256_pd(_mm256_set1_epi64x(INT64_MAX));
    const __m256d floor = _mm256_set1_pd(0x1p-969);
    const __m256d big = _mm256_and_pd(_mm256_cmp_pd(_mm256_and_pd(hi, abs_mask), floor, _CMP_GE_OQ),
                                      _mm256_cmp_pd(_mm256_and_pd(v, abs_mask), floor, _CMP_GE_OQ));
    const __m256d h = _mm256_and_pd(hi, big), w = _mm256_and_pd(v, big);
    const __m256d t = _mm256_add_pd(h, w), bb = _mm256_sub_pd(t, h);
    const __m256d err = _mm256_add_pd(_mm256_sub_pd(h, _mm256_sub_pd(t, bb)), _mm256_sub_pd(w, bb));
    hi = _mm256_add_pd(hi, v);
    lo = _mm256_add_pd(lo, err);
  }
  double value() const;
};

alignas(32) const int32_t kMask32[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
alignas(32) const int64_t kMask64[8] = {-1, -1, -1, -1, 0, 0, 0, 0};

// exp(r) ~ sum_k c_k r^k on |r| <= ln2/2, degree 6 with c_0 = c_1 = 1 (so exp(0) is exactly 1):
// float coefficients searched for the least maximum error with float Horner and FMA rounding,
// 0.73 ulp on p(r) and ~1 ulp on exp over float32's whole normal range (see test_exp_kernels).
// Degree 5 (XNNPACK's) reaches 1.98 ulp, which added up to 5 ulp in softmax gradients; the
// sixth FMA costs ~10% of an exp-bound loop in cache and nothing out of cache.
constexpr float kExpF32Coef[7] = {1.0f,           1.0f,           0x1.fffffcp-2f, 0x1.55542ap-3f,
                                  0x1.555788p-5f, 0x1.126cc0p-7f, 0x1.6b500cp-10f};

template <typename T>
struct Ops;

template <>
struct Ops<float> {
  using V = __m256;
  static constexpr size_t kLanes = 8;
  static constexpr int kHalves = 2;  // double vectors per V when folding
  // exp flushes below ln(2^-126) (the float just above it) and overflows above ln(FLT_MAX).
  static constexpr float kMinArg = -0x1.5d589ep+6f;  // -87.33654022
  static constexpr float kMaxArg = 0x1.62e42ep+6f;   // 88.72283173, last x with finite exp

  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static __m256i tail_mask(size_t r) {  // r in [1, 7]
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask32 + 8 - r));
  }
  static V maskload(const float* p, __m256i m) { return _mm256_maskload_ps(p, m); }
  static void maskstore(float* p, __m256i m, V v) { _mm256_maskstore_ps(p, m, v); }
  static V as_mask(__m256i m) { return _mm256_castsi256_ps(m); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V fms(V a, V b, V c) { return _mm256_fmsub_ps(a, b, c); }  // a * b - c
  // max/min return the SECOND operand when either is NaN.
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V min(V a, V b) { return _mm256_min_ps(a, b); }
  static V and_(V a, V b) { return _mm256_and_ps(a, b); }
  static V andnot(V m, V a) { return _mm256_andnot_ps(m, a); }
  static V or_(V a, V b) { return _mm256_or_ps(a, b); }
  static V blend(V a, V b, V m) { return _mm256_blendv_ps(a, b, m); }  // m ? b : a
  static V lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static V gt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
  static V ge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
  static V ne(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }  // NaN counts as unequal
  static V eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V nle_uq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_NLE_UQ); }  // a > b or NaN
  static V unord(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_UNORD_Q); }
  static bool any(V m) { return _mm256_movemask_ps(m) != 0; }
  static int movemask(V m) { return _mm256_movemask_ps(m); }

  struct Split {
    V p;            // p(r), |r| <= ln2/2
    V n;            // round(x log2 e)
    __m256i ebits;  // (n - e) << 23 for magic(e)
  };
  // The rounding constant for exp(x) * 2^-e: x log2 e + (1.5 * 2^23 - e) rounds to an integer
  // whose low bits are n - e, so the exponent offset comes out of the rounding for free.
  static V magic(double e = 0.0) { return set1(static_cast<float>(0x1.8p23 - e)); }
  // Needs |x log2 e - e| < 2^22 (and |e| < 2^22) for the magic-number rounding.
  static Split reduce(V x, V magic) { return reduce_impl<false>(x, x, magic); }
  // exp(x + xlo) for a small correction xlo (|xlo| <= ulp(x)): xlo joins the reduced argument.
  static Split reduce_lo(V x, V xlo, V magic) { return reduce_impl<true>(x, xlo, magic); }
  template <bool kLo>
  static Split reduce_impl(V x, V xlo, V magic) {
    V vn = _mm256_fmadd_ps(x, set1(0x1.715476p+0f), magic);
    const __m256i ebits = _mm256_slli_epi32(_mm256_castps_si256(vn), 23);
    vn = _mm256_sub_ps(vn, magic);
    V r = _mm256_fnmadd_ps(vn, set1(0x1.62E43p-1f), x);
    r = _mm256_fnmadd_ps(vn, set1(-0x1.05C61p-29f), r);
    if (kLo) r = _mm256_add_ps(r, xlo);
    V p = set1(kExpF32Coef[6]);
    for (int k = 5; k >= 0; --k) p = _mm256_fmadd_ps(p, r, set1(kExpF32Coef[k]));
    return Split{p, vn, ebits};
  }
  static V scale_bits(V p, __m256i ebits) {
    return _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), ebits));
  }
  static constexpr double kMinScaled = SOFTZO_MIN_SCALED_F32;  // p * 2^(n - e) stays normal
  static constexpr float kMinNormal = 0x1p-126f;
  static void to_double(V v, __m256d* out) {
    out[0] = _mm256_cvtps_pd(_mm256_castps256_ps128(v));
    out[1] = _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1));
  }
};

template <>
struct Ops<double> {
  using V = __m256d;
  static constexpr size_t kLanes = 4;
  static constexpr int kHalves = 1;
  static constexpr double kMinArg = -0x1.6232bdd7abcd2p+9;  // ln(2^-1022), rounded up
  static constexpr double kMaxArg = 0x1.62e42fefa39efp+9;   // last x with finite exp

  static V zero() { return _mm256_setzero_pd(); }
  static V set1(double v) { return _mm256_set1_pd(v); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static __m256i tail_mask(size_t r) {  // r in [1, 3]
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMask64 + 4 - r));
  }
  static V maskload(const double* p, __m256i m) { return _mm256_maskload_pd(p, m); }
  static void maskstore(double* p, __m256i m, V v) { _mm256_maskstore_pd(p, m, v); }
  static V as_mask(__m256i m) { return _mm256_castsi256_pd(m); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static V sub(V a, V b) { return _mm256_sub_pd(a, b); }
  static V mul(V a, V b) { return _mm256_mul_pd(a, b); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V fms(V a, V b, V c) { return _mm256_fmsub_pd(a, b, c); }
  static V max(V a, V b) { return _mm256_max_pd(a, b); }
  static V min(V a, V b) { return _mm256_min_pd(a, b); }
  static V and_(V a, V b) { return _mm256_and_pd(a, b); }
  static V andnot(V m, V a) { return _mm256_andnot_pd(m, a); }
  static V or_(V a, V b) { return _mm256_or_pd(a, b); }
  static V blend(V a, V b, V m) { return _mm256_blendv_pd(a, b, m); }
  static V lt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
  static V gt(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
  static V ge(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_GE_OQ); }
  static V ne(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_NEQ_UQ); }
  static V eq(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_EQ_OQ); }
  static V div(V a, V b) { return _mm256_div_pd(a, b); }
  static V nle_uq(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_NLE_UQ); }
  static V unord(V a, V b) { return _mm256_cmp_pd(a, b, _CMP_UNORD_Q); }
  static bool any(V m) { return _mm256_movemask_pd(m) != 0; }
  static int movemask(V m) { return _mm256_movemask_pd(m); }

  // Cody-Waite: ln2_hi has 21 trailing zero bits, so n * ln2_hi and x - n * ln2_hi are exact
  // for |n| < 2^21 even without the FMA; ln2_lo carries the rest. Degree-13 Taylor: the
  // truncation term |r|^14/14! < 4e-18 on |r| <= ln2/2, far below 2^-53.
  struct Split {
    V p;
    V n;
    __m256i ebits;  // (n - e) << 52 for magic(e)
  };
  static V magic(double e = 0.0) { return set1(0x1.8p52 - e); }
  static Split reduce(V x, V magic) { return reduce_impl<false>(x, x, magic); }
  static Split reduce_lo(V x, V xlo, V magic) { return reduce_impl<true>(x, xlo, magic); }
  template <bool kLo>
  static Split reduce_impl(V x, V xlo, V magic) {
    V vn = _mm256_fmadd_pd(x, set1(1.4426950408889634), magic);
    const __m256i ebits = _mm256_slli_epi64(_mm256_castpd_si256(vn), 52);
    vn = _mm256_sub_pd(vn, magic);
    V r = _mm256_fnmadd_pd(vn, set1(0x1.62e42feep-1), x);
    r = _mm256_fnmadd_pd(vn, set1(0x1.a39ef35793c76p-33), r);
    if (kLo) r = _mm256_add_pd(r, xlo);
    V p = set1(1.0 / 6227020800.0);  // 1/13!
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 479001600.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 39916800.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 3628800.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 362880.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 40320.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 5040.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 720.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 120.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 24.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0 / 6.0));
    p = _mm256_fmadd_pd(p, r, set1(0.5));
    p = _mm256_fmadd_pd(p, r, set1(1.0));
    p = _mm256_fmadd_pd(p, r, set1(1.0));
    return Split{p, vn, ebits};
  }
  static V scale_bits(V p, __m256i ebits) {
    return _mm256_castsi256_pd(_mm256_add_epi64(_mm256_castpd_si256(p), ebits));
  }
  static constexpr double kMinScaled = SOFTZO_MIN_SCALED_F64;
  static constexpr double kMinNormal = 0x1p-1022;
  static void to_double(V v, __m256d* out) { out[0] = v; }
};

inline double hsum(__m256d v) {
  alignas(32) double a[4];
  _mm256_store_pd(a, v);
  return (a[0] + a[1]) + (a[2] + a[3]);
}

template <typename T>
double LaneTotal<T>::value() const {
  if (sizeof(T) == 4) return hsum(hi);
  // Eight doubles summed with one more compensation pass (Neumaier), in scalar.
  alignas(32) double a[8];
  _mm256_store_pd(a, hi);
  _mm256_store_pd(a + 4, lo);
  double sum = 0.0, carry = 0.0;
  for (double v : a) {
    const double t = sum + v, x = fabs(sum), y = fabs(v);
    if ((x < y ? x : y) >= 0x1p-969) carry += x >= y ? (sum - t) + v : (v - t) + sum;
    sum = t;
  }
  return sum + carry;
}

// Elementwise y = f(x) with the usual 4-vector unroll and a masked tail; in place is fine
// because each vector is loaded before its own store.
template <typename T, typename F>
inline void map(size_t n, const T* x, T* y, F f) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t L = O::kLanes;
  size_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 8192, _MM_HINT_T0);  // as in raddexp
    _mm_prefetch(reinterpret_cast<const char*>(x + i) + 8192 + 64, _MM_HINT_T0);
    const V v0 = f(O::load(x + i));
    const V v1 = f(O::load(x + i + L));
    const V v2 = f(O::load(x + i + 2 * L));
    const V v3 = f(O::load(x + i + 3 * L));
    O::store(y + i, v0);
    O::store(y + i + L, v1);
    O::store(y + i + 2 * L, v2);
    O::store(y + i + 3 * L, v3);
  }
  for (; i + L <= n; i += L) O::store(y + i, f(O::load(x + i)));
  if (i < n) {
    const __m256i mk = O::tail_mask(n - i);
    O::maskstore(y + i, mk, f(O::maskload(x + i, mk)));
  }
}

// Loads a full vector, or the lanes of mk (others 0) when mk is given: the loop bodies below
// are written once for full vectors and for the masked tail.
template <typename T>
inline typename Ops<T>::V load_n(const T* p, const __m256i* mk) {
  return mk ? Ops<T>::maskload(p, *mk) : Ops<T>::load(p);
}
template <typename T>
inline void store_n(T* p, const __m256i* mk, typename Ops<T>::V v) {
  if (mk) {
    Ops<T>::maskstore(p, *mk, v);
  } else {
    Ops<T>::store(p, v);
  }
}
// v with the lanes outside mk zeroed, so a tail's padding adds nothing to a sum.
template <typename T>
inline typename Ops<T>::V keep_n(typename Ops<T>::V v, const __m256i* mk) {
  return mk ? Ops<T>::and_(v, Ops<T>::as_mask(*mk)) : v;
}

// sum over vectors of body(i, mk), where body handles elements [i, i + lanes) (mk: the lane
// mask of a partial last vector, else nullptr), may store, and returns the vector to add
// (zero outside mk). Two accumulators in T per block of 2 * kElemsPerAccumulator elements,
// folded into double lanes.
template <typename T, typename Body>
inline double sum_loop(size_t n, Body body) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t L = O::kLanes;
  constexpr size_t kBlock = 2 * kElemsPerAccumulator<T>;
  LaneTotal<T> total;
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = n - start < kBlock ? n : start + kBlock;
    V a0 = O::zero(), a1 = O::zero();
    size_t i = start;
    for (; i + 2 * L <= end; i += 2 * L) {
      a0 = O::add(a0, body(i, nullptr));
      a1 = O::add(a1, body(i + L, nullptr));
    }
    for (; i + L <= end; i += L) a0 = O::add(a0, body(i, nullptr));
    if (i < end) {
      const __m256i mk = O::tail_mask(end - i);
      a1 = O::add(a1, body(i, &mk));
    }
    __m256d d[O::kHalves];
    O::to_double(O::add(a0, a1), d);
    for (int h = 0; h < O::kHalves; ++h) total.add(d[h]);
  }
  return total.value();
}

// exp(x) * 2^-e for x <= (e + 1) ln2, exactly 0 below cut = (e + kMinScaled) ln2. No x - max
// is ever rounded: the reduction is exact and 2^(n - e), which the rounding constant yields
// directly, goes straight into the exponent field, which stays normal above the cut. ~14 uops,
// 8 of them on the two FMA pipes (4 cycles/vector).
// ScaledExp without the flush, valid (normal) for x at or above the cut; below it, garbage.
template <typename T>
struct UnflushedScaledExp {
  using O = Ops<T>;
  using V = typename O::V;
  V magic;
  explicit UnflushedScaledExp(double e) : magic(O::magic(e)) {}
  V operator()(V x) const {
    const typename O::Split sp = O::reduce(x, magic);
    return O::scale_bits(sp.p, sp.ebits);
  }
};

// Lanes below the cut (-inf included) compute garbage that the final mask drops; clamping them
// first would cost an add-pipe op, and the add pipes are the busier ones here. The compare and
// the AND are 2 of its ~14 vector uops: rows whose minimum is at or above the cut take the
// unflushed exp instead, which makes the exp pass of a 32K-float row in L2 10% faster
// (12.1 -> 10.9 us); rmax finds that minimum at no cost, as it waits on L2.
template <typename T>
struct ScaledExp {
  using O = Ops<T>;
  using V = typename O::V;
  V cut;
  UnflushedScaledExp<T> unflushed;
  explicit ScaledExp(double e) : cut(O::set1(cut_point(e))), unflushed(e) {}
  static T cut_point(double e) { return static_cast<T>((e + O::kMinScaled) * 0.6931471805599453); }
  V operator()(V x) const { return O::andnot(O::lt(x, cut), unflushed(x)); }
};

// exp(x) * 2^-e * c, formed as exp(x) * 2^-(e - k) * (c / 2^k) with |c / 2^k| in [1, 2) where
// |c| < 1 (2^k folded into the exponent): the flush at the cut then applies to the result, so
// no subnormal is ever formed (a plain product would make one, ~100 cycles each on many cores).
template <typename T>
struct ScaledExpTimes {
  using V = typename Ops<T>::V;
  ScaledExp<T> f;
  V c;
  static double exponent(double e, double c) {
    int k = 0;
    frexp(c, &k);
    return fabs(c) < 1.0 && c != 0.0 ? e - (k - 1) : e;
  }
  static T factor(double c) {
    int k = 0;
    const double m = frexp(c, &k);
    return static_cast<T>(fabs(c) < 1.0 && c != 0.0 ? 2.0 * m : c);
  }
  ScaledExpTimes(double e, double c) : f(exponent(e, c)), c(Ops<T>::set1(factor(c))) {}
  V operator()(V x) const { return Ops<T>::mul(f(x), c); }
};

}  // namespace

#endif  // SOFTZO_ISA_AVX2_H_
