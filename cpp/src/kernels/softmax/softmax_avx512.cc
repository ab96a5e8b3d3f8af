// AVX-512 softmax-family kernels (float32 and float64). Compiled twice: natively with
// -mavx512f/dq/vl/bw -mfma (suffix avx512), and with SOFTZO_EMULATE_AVX512 on top of SIMDe for
// machines without AVX-512 (suffix avx512emu), which is how the tests exercise this file on
// AVX2-only hosts. Same reduction and polynomials as softmax_scalar.cc; the three-pass kernels
// work on exp(x) * 2^-e (never x - max), sums accumulate in T over short blocks folded into
// double.
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "isa/avx512.h"
#include "kernels/softmax/softmax_kernels.h"

namespace {

// The online fold runs an exp_pd per half and state (~10x a plain fold): 32 costs ~8% and
// halves the worst error of 64 (5e-7 -> 2.4e-7).
constexpr size_t kOnlineFoldBlock = 32;

// Index of the first x_i == v at or after start; one exists.
template <class A>
size_t first_equal(size_t n, const typename A::T* x, size_t start, typename A::T v) {
  const size_t L = A::kLanes;
  const typename A::V vv = A::set1(v);
  size_t i = start;
  for (; n - i >= L; i += L) {
    const unsigned bits = static_cast<unsigned>(A::cmp_eq(A::load(x + i), vv));
    if (bits) return i + static_cast<size_t>(__builtin_ctz(bits));
  }
  while (i < n && !(x[i] == v)) ++i;
  return i;
}

template <class A>
typename A::T rmax(size_t n, const typename A::T* x, typename A::T* lo, size_t* imax) {
  typedef typename A::V V;
  typedef typename A::K K;
  typedef typename A::T T;
  const size_t L = A::kLanes;
  // Where the max is: every kTrack elements the running max is reduced to a scalar, and the
  // block in which it last grew holds the first max, which a short scan then finds (a few
  // uops per 64 vectors, against an index blend per vector).
  const size_t kTrack = 64 * L;
  // vmaxps has 4 cycles latency at up to 2 per cycle, the loads sustain 2 vectors per cycle:
  // four chains keep the max off the critical path so the loop runs at load throughput.
  const V ninf = A::set1(-static_cast<T>(INFINITY));
  const V pinf = A::set1(static_cast<T>(INFINITY));
  V m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf, mn = pinf;
  // max drops NaN (x first: it returns its second operand when one is NaN), so NaN is tracked
  // in a mask and reported once at the end.
  K nan = 0;
  T best = -static_cast<T>(INFINITY);
  size_t best_start = 0, block_start = 0;
  size_t i = 0;
  while (n - i >= kUnroll * L) {
    block_start = i;
    const size_t end = n - i > kTrack ? i + kTrack : n;
    for (; end - i >= kUnroll * L; i += kUnroll * L) {
      const V v0 = A::load(x + i), v1 = A::load(x + i + L);
      const V v2 = A::load(x + i + 2 * L), v3 = A::load(x + i + 3 * L);
      nan |= A::is_nan(v0) | A::is_nan(v1) | A::is_nan(v2) | A::is_nan(v3);
      m0 = A::max(v0, m0);
      m1 = A::max(v1, m1);
      m2 = A::max(v2, m2);
      m3 = A::max(v3, m3);
      mn = A::min(A::min(v0, v1), A::min(v2, A::min(v3, mn)));
    }
    const T h = A::hmax(A::max(A::max(m0, m1), A::max(m2, m3)));
    if (h > best) {
      best = h;
      best_start = block_start;
    }
  }
  // The last few vectors join the last block.
  for (; n - i >= L; i += L) {
    const V v = A::load(x + i);
    nan |= A::is_nan(v);
    m0 = A::max(v, m0);
    mn = A::min(v, mn);
  }
  if (i < n) {
    const V v = A::load_or(ninf, A::tail(n - i), x + i);
    nan |= A::is_nan(v);
    m1 = A::max(v, m1);
    mn = A::min(A::load_or(pinf, A::tail(n - i), x + i), mn);
  }
  if (nan) return static_cast<T>(NAN);
  const T r = A::hmax(A::max(A::max(m0, m1), A::max(m2, m3)));
  if (r > best) best_start = block_start;
  *lo = A::hmin(mn);
  *imax = first_equal<A>(n, x, best_start, r);
  return r;
}

// x * s where that product is normal, else 0: lanes below softzo_flush_threshold are masked out
// of the multiply, so no subnormal is formed.
template <class A>
struct FlushedScale {
  typename A::V s, thr;
  explicit FlushedScale(typename A::T scale)
      : s(A::set1(scale)),
        thr(A::set1(static_cast<typename A::T>(softzo_flush_threshold(A::kMinNormal, scale)))) {}
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const {
    return A::min(A::maskz_mul(A::cmp_nlt_uq(x, thr), x, s), A::set1(1));
  }
};

template <class A>
struct SubSub {
  typename A::V c1, c2;
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const {
    return A::sub(A::sub(x, c1), c2);
  }
};

template <class A>
struct Exp {
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const { return A::exp(x); }
};

// sum_i f(x_i), optionally storing the terms to y.
template <class A, bool kStore, class F>
double sum_map(size_t n, const typename A::T* x, typename A::T* y, const F& f) {
  typedef typename A::V V;
  const size_t L = A::kLanes;
  const size_t step = kUnroll * L;
  Total<A> total;
  size_t i = 0;
  while (n - i >= step) {
    // Four accumulators: vaddps has 4 cycles latency on 2 ports, so a single chain could
    // retire only 1 add per 4 cycles; each term already costs ~12 FP ops, and four chains
    // keep the adds (and the per-chain rounding growth) well away from being the limit.
    V a0 = A::zero(), a1 = A::zero(), a2 = A::zero(), a3 = A::zero();
    const size_t end = i + block_len(n - i, step, kFoldBlock);
    for (; i < end; i += step) {
      const V v0 = f(A::load(x + i));
      const V v1 = f(A::load(x + i + L));
      const V v2 = f(A::load(x + i + 2 * L));
      const V v3 = f(A::load(x + i + 3 * L));
      if (kStore) {
        A::store(y + i, v0);
        A::store(y + i + L, v1);
        A::store(y + i + 2 * L, v2);
        A::store(y + i + 3 * L, v3);
      }
      a0 = A::add(a0, v0);
      a1 = A::add(a1, v1);
      a2 = A::add(a2, v2);
      a3 = A::add(a3, v3);
    }
    total.fold(a0);
    total.fold(a1);
    total.fold(a2);
    total.fold(a3);
  }
  if (i < n) {  // fewer than 4 vectors left: at most 4 more terms per lane
    V a = A::zero();
    for (; n - i >= L; i += L) {
      const V v = f(A::load(x + i));
      if (kStore) A::store(y + i, v);
      a = A::add(a, v);
    }
    if (i < n) {
      const typename A::K k = A::tail(n - i);
      const V v = f(A::load_or(A::zero(), k, x + i));
      if (kStore) A::store_mask(y + i, k, v);
      a = A::mask_add(a, k, a, v);
    }
    total.fold(a);
  }
  return total.value();
}

template <class A>
void vscaleextexp(size_t n, const typename A::T* x, typename A::T* y, double m, double e) {
  const ScaledExpTimes<A> f(e, 1.0 / m);
  map<A>(n, x, y, [&](typename A::V v) { return A::min(f(v), A::set1(1)); });
}

// ---- online (max, rest) ---------------------------------------------------------------------

// exp(a - b) for a <= b, with a - b carried exactly (TwoSum: its rounding error joins the
// reduced argument, so |a - b| = 30 costs no ulp(30)/2 of relative error); 0 below the normal
// range, for -inf, and for NaN (-inf - -inf, which must count as nothing).
template <class A>
SOFTZO_INLINE typename A::V exp_diff(typename A::V a, typename A::V b) {
  typedef typename A::V V;
  const V d = A::sub(a, b);
  const V bb = A::sub(d, a);
  const V err = A::sub(A::sub(a, A::sub(d, bb)), A::add(b, bb));
  const V lo = A::set1(static_cast<typename A::T>(A::kMinArg));
  const typename A::K keep = static_cast<typename A::K>(~A::cmp_nge_uq(d, lo));  // d >= lo
  V n;
  const V p2 = A::exp2p_lo(A::max(d, lo), err, &n);
  return A::maskz_scalef(keep, p2, A::sub(n, A::set1(1)));
}

template <class A>
struct OnlineLane {
  typename A::V m, r;
};

template <class A>
SOFTZO_INLINE void online_reset(OnlineLane<A>* st) {
  // -inf with rest -1: a sum of 0 (exp_diff maps the NaN of -inf - -inf to 0).
  st->m = A::set1(-static_cast<typename A::T>(INFINITY));
  st->r = A::set1(-1);
}

template <class A>
SOFTZO_INLINE void online_update(OnlineLane<A>* st, typename A::V x) {
  typedef typename A::V V;
  // One exp per element: only one of exp(m - m_new), exp(x - m_new) differs from 1. A new max
  // moves the old one (1) into the rest: r e + e; otherwise r + e (ties add 1).
  const V e = exp_diff<A>(A::min(x, st->m), A::max(x, st->m));
  const typename A::K gt = A::cmp_gt(x, st->m);
  st->r = A::blend(gt, A::add(st->r, e), A::fmadd(st->r, e, e));
  st->m = A::max(x, st->m);  // NaN x leaves m alone; the NaN is flagged separately
}

// Merges lane states into double lane states (dm, dr) with the same update one level up:
// gt: (dr + 1) e + r, else (r + 1) e + dr.
template <class A>
SOFTZO_INLINE void online_fold(const OnlineLane<A>& st, __m512d* dm, __m512d* dr) {
  for (int h = 0; h < A::kHalves; ++h) {
    const __m512d m = A::half(st.m, h);
    const __m512d r = A::half(st.r, h);
    const __m512d e = exp_diff<F64>(_mm512_min_pd(m, dm[h]), _mm512_max_pd(m, dm[h]));
    const __mmask8 gt = _mm512_cmp_pd_mask(m, dm[h], _CMP_GT_OQ);
    const __m512d one = _mm512_set1_pd(1.0);
    dr[h] = _mm512_mask_blend_pd(gt, _mm512_fmadd_pd(_mm512_add_pd(r, one), e, dr[h]),
                                 _mm512_fmadd_pd(_mm512_add_pd(dr[h], one), e, r));
    dm[h] = _mm512_max_pd(m, dm[h]);
  }
}

template <class A>
softzo_online ronlinesumexp(size_t n, const typename A::T* x) {
  typedef typename A::V V;
  const size_t L = A::kLanes;
  const size_t step = kUnroll * L;
  __m512d dm[A::kHalves], dr[A::kHalves];
  for (int h = 0; h < A::kHalves; ++h) {
    dm[h] = _mm512_set1_pd(-INFINITY);
    dr[h] = _mm512_set1_pd(-1.0);
  }
  typename A::K nan = 0;
  // Four states, one per unrolled vector: an update is a ~60-cycle chain (exp, fmadd, blend),
  // so independent states are what lets the out-of-order core overlap iterations.
  OnlineLane<A> s0, s1, s2, s3;
  online_reset(&s0);
  online_reset(&s1);
  online_reset(&s2);
  online_reset(&s3);
  size_t i = 0;
  while (n - i >= step) {
    const size_t end = i + block_len(n - i, step, kOnlineFoldBlock);
    for (; i < end; i += step) {
      const V v0 = A::load(x + i), v1 = A::load(x + i + L);
      const V v2 = A::load(x + i + 2 * L), v3 = A::load(x + i + 3 * L);
      nan |= A::is_nan(v0) | A::is_nan(v1) | A::is_nan(v2) | A::is_nan(v3);
      online_update(&s0, v0);
      online_update(&s1, v1);
      online_update(&s2, v2);
      online_update(&s3, v3);
    }
    online_fold(s0, dm, dr);
    online_fold(s1, dm, dr);
    online_fold(s2, dm, dr);
    online_fold(s3, dm, dr);
    online_reset(&s0);
    online_reset(&s1);
    online_reset(&s2);
    online_reset(&s3);
  }
  if (i < n) {
    for (; n - i >= L; i += L) {
      const V v = A::load(x + i);
      nan |= A::is_nan(v);
      online_update(&s0, v);
    }
    if (i < n) {
      // Idle lanes read -inf, which leaves a state untouched.
      const V ninf = A::set1(-static_cast<typename A::T>(INFINITY));
      const V v = A::load_or(ninf, A::tail(n - i), x + i);
      nan |= A::is_nan(v);
      online_update(&s0, v);
    }
    online_fold(s0, dm, dr);
  }
  const size_t kD = 8 * A::kHalves;
  double lm[kD], lr[kD];
  for (int h = 0; h < A::kHalves; ++h) {
    _mm512_storeu_pd(lm + 8 * h, dm[h]);
    _mm512_storeu_pd(lr + 8 * h, dr[h]);
  }
  // The lane holding the max keeps its rest; every other lane joins with its own 1. Empty
  // lanes (-inf, -1) hold nothing; a lane more than ~708 below adds under 2^-1022 (flushed, not
  // formed as a subnormal); a +inf max gives NaN differences, which ops sends to its
  // special-value path.
  size_t top = 0;
  for (size_t l = 1; l < kD; ++l) top = lm[l] > lm[top] ? l : top;
  double rest = lr[top];
  for (size_t l = 0; l < kD; ++l) {
    const double d = lm[l] - lm[top];
    if (l != top && d >= -708.0) rest += (lr[l] + 1.0) * softzo_exp_of_difference(lm[l], lm[top]);
  }
  if (nan) rest = NAN;
  softzo_online out = {lm[top], rest};
  return out;
}

}  // namespace

#define SOFTZO_DEFINE_AVX512(T, dt, A)                                               \
  T SOFTZO_FN(dt, rmax)(size_t n, const T* x, T* lo, size_t* imax) {                 \
    return rmax<A>(n, x, lo, imax);                                                  \
  }                                                                                  \
  double SOFTZO_FN(dt, raddexp)(size_t n, const T* x, double e, T) {                 \
    return sum_map<A, false>(n, x, nullptr, ScaledExp<A>(e));                        \
  }                                                                                  \
  double SOFTZO_FN(dt, raddstoreexp)(size_t n, const T* x, T* y, double e, T) {      \
    return sum_map<A, true>(n, x, y, ScaledExp<A>(e));                               \
  }                                                                                  \
  void SOFTZO_FN(dt, vscale)(size_t n, const T* x, T* y, T s) {                      \
    map<A>(n, x, y, FlushedScale<A>(s));                                             \
  }                                                                                  \
  void SOFTZO_FN(dt, vscaleextexp)(size_t n, const T* x, T* y, double m, double e) { \
    vscaleextexp<A>(n, x, y, m, e);                                                  \
  }                                                                                  \
  softzo_online SOFTZO_FN(dt, ronlinesumexp)(size_t n, const T* x) {                 \
    return ronlinesumexp<A>(n, x);                                                   \
  }                                                                                  \
  void SOFTZO_FN(dt, vsubc)(size_t n, const T* x, T* y, T c1, T c2) {                \
    SubSub<A> f = {A::set1(c1), A::set1(c2)};                                        \
    map<A>(n, x, y, f);                                                              \
  }                                                                                  \
  void SOFTZO_FN(dt, vexp)(size_t n, const T* x, T* y) { map<A>(n, x, y, Exp<A>()); }

extern "C" {
SOFTZO_DEFINE_AVX512(float, f32, F32)
SOFTZO_DEFINE_AVX512(double, f64, F64)
}
