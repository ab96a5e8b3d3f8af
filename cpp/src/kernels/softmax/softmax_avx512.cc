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

#include "kernels/softmax/softmax_avx512_helpers.h"
#include "kernels/softmax/softmax_kernels.h"

namespace {

// Each accumulator lane sums at most kFoldBlock terms in T before the block is folded into
// double, which keeps the total's error independent of n (a 64M-element row stays near 2e-8).
// Why 8, far under the 512 allowed: every float add into a lane holding a term near 1 rounds by
// up to 6e-8 (and drops terms below that), and rows dominated by a few terms keep those errors.
// Worst relative sum error over 18000 random rows (N(0, 3^2), N(0, 8^2), n up to 1e6): 4.3e-7
// with 512, 2.1e-7 with 16, 1.7e-7 with 8 (the floor: a few adds per lane already cost that).
// The fold (extract, 2 cvt, 2 add per accumulator) is ~4% of a block's ~500 uops.
constexpr size_t kFoldBlock = 8;
// raddextexp's fold costs ~12 uops per pair and half (scalef merge), so its blocks are 16
// (~8% of the work); softmax errors stay under 4e-7 (3.9e-7 worst, 4.9e-7 with 32).
constexpr size_t kExtFoldBlock = 16;
// The online fold runs an exp_pd per half and state (~10x a plain fold): 32 costs ~8% and
// halves the worst error of 64 (5e-7 -> 2.4e-7).
constexpr size_t kOnlineFoldBlock = 32;

template <class A>
typename A::T rmax(size_t n, const typename A::T* x, typename A::T* lo) {
  typedef typename A::V V;
  typedef typename A::K K;
  const size_t L = A::kLanes;
  // vmaxps has 4 cycles latency at up to 2 per cycle, the loads sustain 2 vectors per cycle:
  // four chains keep the max off the critical path so the loop runs at load throughput.
  const V ninf = A::set1(-static_cast<typename A::T>(INFINITY));
  const V pinf = A::set1(static_cast<typename A::T>(INFINITY));
  V m0 = ninf, m1 = ninf, m2 = ninf, m3 = ninf, mn = pinf;
  // max drops NaN (x first: it returns its second operand when one is NaN), so NaN is tracked
  // in a mask and reported once at the end.
  K nan = 0;
  size_t i = 0;
  for (; n - i >= kUnroll * L; i += kUnroll * L) {
    const V v0 = A::load(x + i), v1 = A::load(x + i + L);
    const V v2 = A::load(x + i + 2 * L), v3 = A::load(x + i + 3 * L);
    nan |= A::is_nan(v0) | A::is_nan(v1) | A::is_nan(v2) | A::is_nan(v3);
    m0 = A::max(v0, m0);
    m1 = A::max(v1, m1);
    m2 = A::max(v2, m2);
    m3 = A::max(v3, m3);
    mn = A::min(A::min(v0, v1), A::min(v2, A::min(v3, mn)));
  }
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
  *lo = A::hmin(mn);
  if (nan) return static_cast<typename A::T>(NAN);
  return A::hmax(A::max(A::max(m0, m1), A::max(m2, m3)));
}

constexpr double kLn2 = 0x1.62e42fefa39efp-1;

// exp(x) * 2^-e, and exactly 0 where that falls below 2^-125 (x < (e - 125) ln2, -inf
// included); needs x <= (e + 1) ln2. exp2p gives exp(x) = 2p * 2^(n-1), so the scalef exponent
// n - 1 - e is <= 0: nothing can overflow, and the result is normal wherever it is kept.
// The flush is the zero-masking of the scalef, free here, so raddexp ignores the row minimum
// that lets the AVX2 kernels drop theirs.
template <class A>
struct ScaledExp {
  typename A::V thr, e1;
  explicit ScaledExp(double e) { init(e, e); }
  // Flush decided by e_flush, scaling by 2^-e_scale (vscaleextexp folds 1/m's exponent in).
  ScaledExp(double e_flush, double e_scale) { init(e_flush, e_scale); }
  void init(double e_flush, double e_scale) {
    thr = A::set1(A::above((e_flush - 125.0) * kLn2));
    e1 = A::set1(static_cast<typename A::T>(e_scale + 1.0));
  }
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const {
    typename A::V n;
    const typename A::V p2 = A::exp2p(x, &n);
    return A::maskz_mov(A::cmp_nlt_uq(x, thr), A::scalef(p2, A::sub(n, e1)));
  }
};

// ScaledExp times a constant.
template <class A>
struct ScaledExpTimes {
  ScaledExp<A> f;
  typename A::V s;
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const { return A::mul(f(x), s); }
};

template <class A>
struct Scale {
  typename A::V s;
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const { return A::mul(x, s); }
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
  __m512d total = _mm512_setzero_pd();
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
    total = A::fold(A::fold(A::fold(A::fold(total, a0), a1), a2), a3);
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
    total = A::fold(total, a);
  }
  return softzo_hadd_pd(total);
}

// ---- two-pass (extended exponent) -----------------------------------------------------------

// Per-lane pair: the lane sum is M * 2^(E - 1) (the -1 because exp2p returns 2p).
template <class A>
struct ExtPair {
  typename A::V m, e;
};

template <class A>
SOFTZO_INLINE void ext_reset(ExtPair<A>* s) {
  s->m = A::zero();
  // Finite and below every reachable n (>= -94548): E - E' then stays finite (-inf - -inf
  // would be NaN), and scalef(0, -huge) is 0.
  s->e = A::set1(A::lowest());
}

template <class A>
SOFTZO_INLINE void ext_update(ExtPair<A>* s, typename A::V x, typename A::K* bad) {
  typedef typename A::V V;
  *bad |= A::cmp_nle_uq(x, A::set1(static_cast<typename A::T>(SOFTZO_EXTEXP_LIMIT)));
  const V xc = A::max(A::set1(-static_cast<typename A::T>(SOFTZO_EXTEXP_LIMIT)), x);
  V n;
  const V p2 = A::exp2p(xc, &n);
  const V e_new = A::max(s->e, n);
  // scalef turns hugely negative exponents into exact 0 instead of overflowing a shift.
  s->m = A::add(A::scalef(s->m, A::sub(s->e, e_new)), A::scalef(p2, A::sub(n, e_new)));
  s->e = e_new;
}

template <class A>
SOFTZO_INLINE void ext_update_mask(ExtPair<A>* s, typename A::V x, typename A::K k,
                                   typename A::K* bad) {
  typedef typename A::V V;
  *bad |= k & A::cmp_nle_uq(x, A::set1(static_cast<typename A::T>(SOFTZO_EXTEXP_LIMIT)));
  const V xc = A::max(A::set1(-static_cast<typename A::T>(SOFTZO_EXTEXP_LIMIT)), x);
  V n;
  const V p2 = A::exp2p(xc, &n);
  const V e_new = A::mask_max(s->e, k, s->e, n);
  // maskz: an idle lane would compute scalef(p, n - lowest), i.e. p * 2^+huge.
  s->m = A::add(A::scalef(s->m, A::sub(s->e, e_new)), A::maskz_scalef(k, p2, A::sub(n, e_new)));
  s->e = e_new;
}

// Folds a pair into per-lane double pairs (dm, de), the same update one level up; all scalef
// exponents are <= 0 there too.
template <class A>
SOFTZO_INLINE void ext_fold(const ExtPair<A>& s, __m512d* dm, __m512d* de) {
  for (int h = 0; h < A::kHalves; ++h) {
    const __m512d m = A::half(s.m, h);
    const __m512d e = A::half(s.e, h);
    const __m512d e_new = _mm512_max_pd(de[h], e);
    dm[h] = _mm512_add_pd(_mm512_scalef_pd(dm[h], _mm512_sub_pd(de[h], e_new)),
                          _mm512_scalef_pd(m, _mm512_sub_pd(e, e_new)));
    de[h] = e_new;
  }
}

// Adds m * 2^e into the scalar pair (acc_m, acc_e).
inline void ext_merge(double m, double e, double* acc_m, double* acc_e) {
  if (m == 0.0) return;
  if (!(fabs(e) <= 1e9) || m != m) {  // NaN / inf input: *unsafe is set, keep it visible
    *acc_m = NAN;
    return;
  }
  if (*acc_m != *acc_m) return;
  if (*acc_m == 0.0) {
    *acc_m = m;
    *acc_e = e;
    return;
  }
  if (e > *acc_e) {
    *acc_m = ldexp(*acc_m, static_cast<int>(*acc_e - e));
    *acc_e = e;
  }
  *acc_m += ldexp(m, static_cast<int>(e - *acc_e));
}

template <class A>
softzo_extexp raddextexp(size_t n, const typename A::T* x, int* unsafe) {
  const size_t L = A::kLanes;
  const size_t step = kUnroll * L;
  typename A::K bad = 0;
  __m512d dm[A::kHalves], de[A::kHalves];
  for (int h = 0; h < A::kHalves; ++h) {
    dm[h] = _mm512_setzero_pd();
    de[h] = _mm512_set1_pd(-DBL_MAX);
  }
  // Four (M, E) pairs, one per unrolled vector: an update is a dependent chain
  // max -> sub -> scalef -> add (~16 cycles), against ~18 FP ops per vector on 2 ports
  // (~9 cycles), so fewer than two chains would stall; four also leave room for the exp.
  ExtPair<A> s0, s1, s2, s3;
  ext_reset(&s0);
  ext_reset(&s1);
  ext_reset(&s2);
  ext_reset(&s3);
  size_t i = 0;
  while (n - i >= step) {
    const size_t end = i + block_len(n - i, step, kExtFoldBlock);
    for (; i < end; i += step) {
      ext_update(&s0, A::load(x + i), &bad);
      ext_update(&s1, A::load(x + i + L), &bad);
      ext_update(&s2, A::load(x + i + 2 * L), &bad);
      ext_update(&s3, A::load(x + i + 3 * L), &bad);
    }
    ext_fold(s0, dm, de);
    ext_fold(s1, dm, de);
    ext_fold(s2, dm, de);
    ext_fold(s3, dm, de);
    ext_reset(&s0);
    ext_reset(&s1);
    ext_reset(&s2);
    ext_reset(&s3);
  }
  if (i < n) {
    for (; n - i >= L; i += L) ext_update(&s0, A::load(x + i), &bad);
    if (i < n) {
      const typename A::K k = A::tail(n - i);
      ext_update_mask(&s0, A::load_or(A::zero(), k, x + i), k, &bad);
    }
    ext_fold(s0, dm, de);
  }
  if (bad) *unsafe = 1;
  const size_t kD = 8 * A::kHalves;
  double lm[kD], le[kD];
  for (int h = 0; h < A::kHalves; ++h) {
    _mm512_storeu_pd(lm + 8 * h, dm[h]);
    _mm512_storeu_pd(le + 8 * h, de[h]);
  }
  double acc_m = 0.0, acc_e = 0.0;
  for (size_t l = 0; l < kD; ++l) ext_merge(lm[l], le[l], &acc_m, &acc_e);
  // M * 2^(E - 1) = (M / 2) * 2^E: report e = max n like the scalar kernel, so that x <= (e + 1)
  // ln2 (vscaleextexp's domain) holds for every x of the row.
  softzo_extexp out = {acc_m * 0.5, acc_m == 0.0 ? 0.0 : acc_e};
  return out;
}

// exp(x) / (m * 2^e) * s as a ScaledExpTimes. m = mm * 2^k with mm in [0.5, 1): s / mm fits T
// whatever m is, and folding k into the scalef exponent keeps it <= 0 for m >= 0.5 (the emulated
// scalef builds 2^b in T and would overflow early for large b). The flush to 0 stays where
// exp(x) * 2^-e < 2^-125, as in raddexp.
template <class A>
ScaledExpTimes<A> scaled_exp_over(double m, double e, double s) {
  double mm = m;
  int k = 0;
  if (m != 0.0 && fabs(m) <= DBL_MAX) mm = frexp(m, &k);
  const ScaledExpTimes<A> f = {ScaledExp<A>(e, e + k), A::set1(static_cast<typename A::T>(s / mm))};
  return f;
}

template <class A>
void vscaleextexp(size_t n, const typename A::T* x, typename A::T* y, double m, double e) {
  map<A>(n, x, y, scaled_exp_over<A>(m, e, 1.0));
}

// ---- online (max, sum) ----------------------------------------------------------------------

template <class A>
struct OnlineLane {
  typename A::V m, s;
};

template <class A>
SOFTZO_INLINE void online_reset(OnlineLane<A>* st) {
  // -T_MAX rather than -inf: a -inf element then gives exp(-inf - m) = 0 instead of the NaN of
  // -inf - -inf, so rows with -inf entries stay on the fast path.
  st->m = A::set1(A::lowest());
  st->s = A::zero();
}

template <class A>
SOFTZO_INLINE void online_update(OnlineLane<A>* st, typename A::V x) {
  typedef typename A::V V;
  // One exp per element: only one of exp(m - m_new), exp(x - m_new) differs from 1, and it is
  // exp(-|x - m|). +inf (inf - inf) and NaN give NaN, which then sticks.
  const V e = A::exp(A::neg_abs(A::sub(x, st->m)));
  const typename A::K gt = A::cmp_gt(x, st->m);
  st->s = A::blend(gt, A::add(st->s, e), A::fmadd(st->s, e, A::set1(1)));
  st->m = A::max(x, st->m);  // NaN x leaves m alone; s already carries the NaN
}

// Merges lane states into double lane states (dm, ds), with the same one-exp update as the
// lanes. A lane that saw +inf keeps max = +inf here; the final reduction turns it into NaN.
template <class A>
SOFTZO_INLINE void online_fold(const OnlineLane<A>& st, __m512d* dm, __m512d* ds) {
  for (int h = 0; h < A::kHalves; ++h) {
    const __m512d m = A::half(st.m, h);
    const __m512d s = A::half(st.s, h);
    const __m512d e = softzo_exp_pd(F64::neg_abs(_mm512_sub_pd(m, dm[h])));
    const __mmask8 gt = _mm512_cmp_pd_mask(m, dm[h], _CMP_GT_OQ);
    ds[h] = _mm512_mask_blend_pd(gt, _mm512_fmadd_pd(s, e, ds[h]), _mm512_fmadd_pd(ds[h], e, s));
    dm[h] = _mm512_max_pd(m, dm[h]);
  }
}

template <class A>
softzo_online ronlinesumexp(size_t n, const typename A::T* x) {
  typedef typename A::V V;
  const size_t L = A::kLanes;
  const size_t step = kUnroll * L;
  __m512d dm[A::kHalves], ds[A::kHalves];
  for (int h = 0; h < A::kHalves; ++h) {
    dm[h] = _mm512_set1_pd(-DBL_MAX);
    ds[h] = _mm512_setzero_pd();
  }
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
      online_update(&s0, A::load(x + i));
      online_update(&s1, A::load(x + i + L));
      online_update(&s2, A::load(x + i + 2 * L));
      online_update(&s3, A::load(x + i + 3 * L));
    }
    online_fold(s0, dm, ds);
    online_fold(s1, dm, ds);
    online_fold(s2, dm, ds);
    online_fold(s3, dm, ds);
    online_reset(&s0);
    online_reset(&s1);
    online_reset(&s2);
    online_reset(&s3);
  }
  if (i < n) {
    for (; n - i >= L; i += L) online_update(&s0, A::load(x + i));
    if (i < n) {
      // Idle lanes read -inf, which leaves a state untouched.
      const V ninf = A::set1(-static_cast<typename A::T>(INFINITY));
      online_update(&s0, A::load_or(ninf, A::tail(n - i), x + i));
    }
    online_fold(s0, dm, ds);
  }
  const size_t kD = 8 * A::kHalves;
  double lm[kD], ls[kD];
  for (int h = 0; h < A::kHalves; ++h) {
    _mm512_storeu_pd(lm + 8 * h, dm[h]);
    _mm512_storeu_pd(ls + 8 * h, ds[h]);
  }
  double big = lm[0];
  for (size_t l = 1; l < kD; ++l) big = lm[l] > big ? lm[l] : big;
  double sum = 0.0;
  for (size_t l = 0; l < kD; ++l) sum += ls[l] * exp(lm[l] - big);
  softzo_online out = {sum == 0.0 ? -static_cast<double>(INFINITY) : big, sum};
  return out;
}

// ---- loss passes (cross-entropy, KL) ---------------------------------------------------------

// One vector of cross-entropy pass 2: q = w (b t + c), y = a p - q, and q x added where q != 0
// (NEQ_UQ keeps NaN, drops 0 * -inf). kW / kT: w / t given; kY: y given.
template <class A, bool kY, bool kW, bool kT>
struct SoftmaxGradStep {
  typedef typename A::T T;
  typedef typename A::V V;
  const T *x, *w, *t;
  T* y;
  ScaledExpTimes<A> p;  // exp(x) * a / (m * 2^e)
  V b, c;
  template <bool kTail>
  SOFTZO_INLINE V step(V acc, size_t i, typename A::K k) const {
    const V xv = load_at<A, kTail>(x + i, k);  // before y (x == y allowed)
    V q = kT ? A::fmadd(b, load_at<A, kTail>(t + i, k), c) : c;
    if (kW) q = A::mul(q, load_at<A, kTail>(w + i, k));
    // The exp is the bulk of the work; passes that want only the loss (y null) skip it.
    if (kY) store_at<A, kTail>(y + i, k, A::fmsub(p.f(xv), p.s, q));
    return A::mask_add(acc, A::cmp_neq_uq(q, A::zero()), acc, A::mul(q, xv));
  }
};

template <class A, bool kY, bool kW, bool kT>
double softmaxgrad_q(size_t n, const typename A::T* x, typename A::T* y, double m, double e,
                     typename A::T a, const typename A::T* w, const typename A::T* t,
                     typename A::T b, typename A::T c) {
  const SoftmaxGradStep<A, kY, kW, kT> f = {
      x, w, t, y, scaled_exp_over<A>(m, e, a), A::set1(b), A::set1(c)};
  return reduce<A>(n, kFoldBlock, f);
}

template <class A, bool kY>
double softmaxgrad_y(size_t n, const typename A::T* x, typename A::T* y, double m, double e,
                     typename A::T a, const typename A::T* w, const typename A::T* t,
                     typename A::T b, typename A::T c) {
  if (w && t) return softmaxgrad_q<A, kY, true, true>(n, x, y, m, e, a, w, t, b, c);
  if (w) return softmaxgrad_q<A, kY, true, false>(n, x, y, m, e, a, w, t, b, c);
  if (t) return softmaxgrad_q<A, kY, false, true>(n, x, y, m, e, a, w, t, b, c);
  return softmaxgrad_q<A, kY, false, false>(n, x, y, m, e, a, w, t, b, c);
}

template <class A>
double softmaxgrad(size_t n, const typename A::T* x, typename A::T* y, double m, double e,
                   typename A::T a, const typename A::T* w, const typename A::T* t, typename A::T b,
                   typename A::T c) {
  if (!w && !t && !(c != 0)) {
    // q == 0 everywhere (c == 0 and no w that could turn 0 into NaN): a plain scaled exp, sum 0.
    if (y) map<A>(n, x, y, scaled_exp_over<A>(m, e, a));
    return 0.0;
  }
  return y ? softmaxgrad_y<A, true>(n, x, y, m, e, a, w, t, b, c)
           : softmaxgrad_y<A, false>(n, x, y, m, e, a, w, t, b, c);
}

// One vector of the fused KL pass: p from the teacher t, q from the student s, y = g (q - p),
// and p ((t - s) - c) added where p != 0 (so -inf teacher logits add 0, not NaN).
template <class A, bool kY>
struct KlGradStep {
  typedef typename A::T T;
  typedef typename A::V V;
  const T *s, *t;
  T* y;
  ScaledExpTimes<A> ps, pt;
  V g, c;
  template <bool kTail>
  SOFTZO_INLINE V step(V acc, size_t i, typename A::K k) const {
    const V sv = load_at<A, kTail>(s + i, k);  // before y (y == s allowed)
    const V tv = load_at<A, kTail>(t + i, k);
    const V p = pt(tv);
    if (kY) store_at<A, kTail>(y + i, k, A::mul(g, A::fmsub(ps.f(sv), ps.s, p)));
    return A::mask_add(acc, A::cmp_neq_uq(p, A::zero()), acc, A::mul(p, A::sub(A::sub(tv, sv), c)));
  }
};

template <class A, bool kY>
double klgrad(size_t n, const typename A::T* s, const typename A::T* t, typename A::T* y, double ms,
              double es, double mt, double et, typename A::T g, typename A::T c) {
  const ScaledExpTimes<A> ps = scaled_exp_over<A>(ms, es, 1.0);
  const ScaledExpTimes<A> pt = scaled_exp_over<A>(mt, et, 1.0);
  const KlGradStep<A, kY> f = {s, t, y, ps, pt, A::set1(g), A::set1(c)};
  return reduce<A>(n, kFoldBlock, f);
}

}  // namespace

#define SOFTZO_DEFINE_AVX512(T, dt, A)                                                        \
  T SOFTZO_FN(dt, rmax)(size_t n, const T* x, T* lo) { return rmax<A>(n, x, lo); }            \
  double SOFTZO_FN(dt, raddexp)(size_t n, const T* x, double e, T) {                          \
    return sum_map<A, false>(n, x, nullptr, ScaledExp<A>(e));                                 \
  }                                                                                           \
  double SOFTZO_FN(dt, raddstoreexp)(size_t n, const T* x, T* y, double e, T) {               \
    return sum_map<A, true>(n, x, y, ScaledExp<A>(e));                                        \
  }                                                                                           \
  void SOFTZO_FN(dt, vscale)(size_t n, const T* x, T* y, T s) {                               \
    Scale<A> f = {A::set1(s)};                                                                \
    map<A>(n, x, y, f);                                                                       \
  }                                                                                           \
  softzo_extexp SOFTZO_FN(dt, raddextexp)(size_t n, const T* x, int* unsafe) {                \
    return raddextexp<A>(n, x, unsafe);                                                       \
  }                                                                                           \
  void SOFTZO_FN(dt, vscaleextexp)(size_t n, const T* x, T* y, double m, double e) {          \
    vscaleextexp<A>(n, x, y, m, e);                                                           \
  }                                                                                           \
  softzo_online SOFTZO_FN(dt, ronlinesumexp)(size_t n, const T* x) {                          \
    return ronlinesumexp<A>(n, x);                                                            \
  }                                                                                           \
  void SOFTZO_FN(dt, vsubc)(size_t n, const T* x, T* y, T c1, T c2) {                         \
    SubSub<A> f = {A::set1(c1), A::set1(c2)};                                                 \
    map<A>(n, x, y, f);                                                                       \
  }                                                                                           \
  void SOFTZO_FN(dt, vexp)(size_t n, const T* x, T* y) { map<A>(n, x, y, Exp<A>()); }         \
  double SOFTZO_FN(dt, vsoftmaxgrad)(size_t n, const T* x, T* y, double m, double e, T a,     \
                                     const T* w, const T* t, T b, T c) {                      \
    return softmaxgrad<A>(n, x, y, m, e, a, w, t, b, c);                                      \
  }                                                                                           \
  double SOFTZO_FN(dt, rklgrad)(size_t n, const T* s, const T* t, T* y, double ms, double es, \
                                double mt, double et, T g, T c) {                             \
    return y ? klgrad<A, true>(n, s, t, y, ms, es, mt, et, g, c)                              \
             : klgrad<A, false>(n, s, t, y, ms, es, mt, et, g, c);                            \
  }

extern "C" {
SOFTZO_DEFINE_AVX512(float, f32, F32)
SOFTZO_DEFINE_AVX512(double, f64, F64)
}
