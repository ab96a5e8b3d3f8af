// AVX2 + FMA softmax-family kernels (float32 and float64), built with -mavx2 -mfma.
//
// Same math as softmax_scalar.cc: exp(x) = p(r) * 2^n with n = round(x log2 e) and a Cody-Waite
// reduction r = x - n ln2 (two FMAs); 2^n is added straight into p's exponent field, which is
// valid for every n we let through (p in [0.7, 1.42], results normal or exactly at the cutoff).
// Sums accumulate in T over short blocks and are folded into double lanes.
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "isa/avx2.h"
#include "kernels/softmax/softmax_kernels.h"

namespace {

// Full exp: NaN -> NaN, x > kMaxArg -> +inf, x < kMinArg (incl. -inf) -> exactly 0.
template <typename T>
inline typename Ops<T>::V vexp(typename Ops<T>::V x) {
  using O = Ops<T>;
  using V = typename O::V;
  const V lo = O::set1(O::kMinArg), hi = O::set1(O::kMaxArg);
  // NaN is replaced by lo here so the exponent-bit arithmetic never sees a NaN payload
  // (payload bits would be shifted into the exponent); it is restored by the last blend.
  const V xc = O::min(O::max(x, lo), hi);
  const typename O::Split sp = O::reduce(xc, O::magic());
  V y = O::scale_bits(sp.p, sp.ebits);
  y = O::andnot(O::lt(x, lo), y);
  return O::blend(y, O::add(x, O::set1(INFINITY)), O::nle_uq(x, hi));
}

// Largest lane of v (no NaN in v).
template <typename T>
inline T hmax(typename Ops<T>::V v) {
  alignas(32) T a[Ops<T>::kLanes];
  Ops<T>::store(a, v);
  T r = a[0];
  for (size_t k = 1; k < Ops<T>::kLanes; ++k) r = a[k] > r ? a[k] : r;
  return r;
}

// Index of the first x_i == v at or after start; one exists.
template <typename T>
size_t first_equal(size_t n, const T* x, size_t start, T v) {
  using O = Ops<T>;
  constexpr size_t L = O::kLanes;
  const typename O::V vv = O::set1(v);
  size_t i = start;
  for (; i + L <= n; i += L) {
    const int bits = O::movemask(O::eq(O::load(x + i), vv));
    if (bits) return i + static_cast<size_t>(__builtin_ctz(static_cast<unsigned>(bits)));
  }
  while (i < n && !(x[i] == v)) ++i;
  return i;
}

template <typename T>
T rmax(size_t n, const T* x, T* lo, size_t* imax) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t L = O::kLanes;
  // Where the max is: every kTrack elements the running max is reduced to a scalar, and the
  // block in which it last grew holds the first max, which a short scan then finds. The
  // reduction is ~8 uops per 128 vectors (< 2% of the loop), far cheaper than an index blend
  // per vector, and the loop keeps waiting on L2, not on ALUs.
  constexpr size_t kTrack = 128 * L;
  // max has 4-cycle latency and 2 ports: 4 chains keep ~2 loads/cycle flowing. max ignores a
  // NaN x (it returns the second operand), so NaN is tracked on the side, one compare per pair.
  V m0 = O::set1(-INFINITY), m1 = m0, m2 = m0, m3 = m0, nan = O::zero(), mn = O::set1(INFINITY);
  T best = -INFINITY;
  size_t best_start = 0, block_start = 0;
  size_t i = 0;
  while (i + 4 * L <= n) {
    block_start = i;
    const size_t end = n - i > kTrack ? i + kTrack : n;
    for (; i + 4 * L <= end; i += 4 * L) {
      const V x0 = O::load(x + i), x1 = O::load(x + i + L);
      const V x2 = O::load(x + i + 2 * L), x3 = O::load(x + i + 3 * L);
      m0 = O::max(x0, m0);
      m1 = O::max(x1, m1);
      m2 = O::max(x2, m2);
      m3 = O::max(x3, m3);
      mn = O::min(O::min(x0, x1), O::min(x2, O::min(x3, mn)));
      nan = O::or_(nan, O::or_(O::unord(x0, x1), O::unord(x2, x3)));
    }
    const T h = hmax<T>(O::max(O::max(m0, m1), O::max(m2, m3)));
    if (h > best) {
      best = h;
      best_start = block_start;
    }
  }
  // The last few vectors join the last block.
  for (; i + L <= n; i += L) {
    const V v = O::load(x + i);
    m0 = O::max(v, m0);
    mn = O::min(v, mn);
    nan = O::or_(nan, O::unord(v, v));
  }
  if (i < n) {
    const __m256i mk = O::tail_mask(n - i);
    const V v = O::maskload(x + i, mk), in = O::as_mask(mk);
    m1 = O::max(O::blend(O::set1(-INFINITY), v, in), m1);
    mn = O::min(O::blend(O::set1(INFINITY), v, in), mn);
    nan = O::or_(nan, O::unord(v, v));
  }
  if (O::any(nan)) return static_cast<T>(NAN);
  const T r = hmax<T>(O::max(O::max(m0, m1), O::max(m2, m3)));
  if (r > best) best_start = block_start;
  alignas(32) T b[L];
  O::store(b, mn);
  T s = b[0];
  for (size_t k = 1; k < L; ++k) s = b[k] < s ? b[k] : s;
  *lo = s;
  *imax = first_equal<T>(n, x, best_start, r);
  return r;
}

// sum_i exp(x_i) * 2^-e, optionally storing the terms. The exp is ~15 dependent FMA-port uops, so
// the loop is throughput-bound; 4 vectors per iteration give the scheduler 4 independent exp
// chains (FMA latency 4 x 2 ports = 8 in flight), and one accumulator per vector removes the
// 4-cycle add chain entirely.
template <typename T, bool kStore, typename F>
double raddexp(size_t n, const T* x, T* y, const F& f) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t L = O::kLanes;
  constexpr int H = O::kHalves;
  constexpr size_t kBlock = 4 * kElemsPerAccumulator<T>;
  LaneTotal<T> total;
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = n - start < kBlock ? n : start + kBlock;
    V a0 = O::zero(), a1 = O::zero(), a2 = O::zero(), a3 = O::zero();
    size_t i = start;
    for (; i + 4 * L <= end; i += 4 * L) {
      // Fetch 8 KiB ahead: out of cache the exp is compute-bound, so DRAM reads can hide
      // under it.
      _mm_prefetch(reinterpret_cast<const char*>(x + i) + 8192, _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(x + i) + 8192 + 64, _MM_HINT_T0);
      const V e0 = f(O::load(x + i));
      const V e1 = f(O::load(x + i + L));
      const V e2 = f(O::load(x + i + 2 * L));
      const V e3 = f(O::load(x + i + 3 * L));
      if (kStore) {
        O::store(y + i, e0);
        O::store(y + i + L, e1);
        O::store(y + i + 2 * L, e2);
        O::store(y + i + 3 * L, e3);
      }
      a0 = O::add(a0, e0);
      a1 = O::add(a1, e1);
      a2 = O::add(a2, e2);
      a3 = O::add(a3, e3);
    }
    for (; i + L <= end; i += L) {
      const V e = f(O::load(x + i));
      if (kStore) O::store(y + i, e);
      a0 = O::add(a0, e);
    }
    if (i < end) {
      const __m256i mk = O::tail_mask(end - i);
      // Masked-off lanes load 0 and may give any exp(0) * 2^-e; the AND drops them.
      const V e = O::and_(f(O::maskload(x + i, mk)), O::as_mask(mk));
      if (kStore) O::maskstore(y + i, mk, e);
      a1 = O::add(a1, e);
    }
    __m256d d[H];
    O::to_double(O::add(O::add(a0, a1), O::add(a2, a3)), d);
    for (int h = 0; h < H; ++h) total.add(d[h]);
  }
  return total.value();
}

// raddexp with the flushing exp, or the cheaper one when lo (a lower bound of the row) shows
// that nothing needs flushing.
template <typename T, bool kStore>
double raddexp_from(size_t n, const T* x, T* y, double e, T lo) {
  if (lo >= ScaledExp<T>::cut_point(e))
    return raddexp<T, kStore>(n, x, y, UnflushedScaledExp<T>(e));
  return raddexp<T, kStore>(n, x, y, ScaledExp<T>(e));
}

template <typename T>
void vscaleextexp(size_t n, const T* x, T* y, double m, double e) {
  using V = typename Ops<T>::V;
  const ScaledExpTimes<T> f(e, 1.0 / m);
  const V one = Ops<T>::set1(T(1));
  map<T>(n, x, y, [&](V v) { return Ops<T>::min(f(v), one); });
}

// y = x * s, with x zeroed first where the product would be subnormal (softzo_flush_threshold).
template <typename T>
void vscale(size_t n, const T* x, T* y, T s) {
  using O = Ops<T>;
  using V = typename O::V;
  const V vs = O::set1(s);
  const V thr = O::set1(static_cast<T>(softzo_flush_threshold(O::kMinNormal, s)));
  const V one = O::set1(T(1));
  map<T>(n, x, y, [&](V v) { return O::min(O::mul(O::and_(v, O::ge(v, thr)), vs), one); });
}

// exp(a - b) for a <= b, with a - b carried exactly (TwoSum: its rounding error joins the
// reduced argument, so |a - b| = 30 costs no ulp(30)/2 of relative error); 0 for a - b below
// the normal range, -inf, or NaN (-inf - -inf, which must count as nothing).
template <typename T>
inline typename Ops<T>::V vexp_diff(typename Ops<T>::V a, typename Ops<T>::V b) {
  using O = Ops<T>;
  using V = typename O::V;
  const V d = O::sub(a, b);
  const V bb = O::sub(d, a);
  const V err = O::sub(O::sub(a, O::sub(d, bb)), O::add(b, bb));
  const V lo = O::set1(O::kMinArg);
  typename O::Split sp = O::reduce_lo(O::max(d, lo), err, O::magic());
  const V y = O::scale_bits(sp.p, sp.ebits);
  return O::and_(O::ge(d, lo), y);
}

// Online (max, rest) update with one exp per element: of exp(m - m_new) and exp(x - m_new) one
// is exp(0) = 1, so e = exp(min - max); a new max moves the old one (1) into the rest:
// rest * e + e, else rest + e. Ties add 1 to the rest.
template <typename T>
inline void online_step(typename Ops<T>::V& m, typename Ops<T>::V& r, typename Ops<T>::V x) {
  using O = Ops<T>;
  using V = typename O::V;
  const V mx = O::max(x, m), mn = O::min(x, m);  // NaN x leaves m alone (flagged separately)
  const V e = vexp_diff<T>(mn, mx);
  r = O::blend(O::add(r, e), O::fma(r, e, e), O::gt(x, m));
  m = mx;
}

// Merges online states (m2, r2) into (m, r), both in double lanes; empty states are
// (-inf, -1).
inline void online_merge(__m256d& m, __m256d& r, __m256d m2, __m256d r2) {
  using D = Ops<double>;
  const __m256d one = D::set1(1.0);
  const __m256d mx = D::max(m2, m), mn = D::min(m2, m);
  const __m256d e = vexp_diff<double>(mn, mx);
  const __m256d gt = D::gt(m2, m);
  // gt: (r + 1) e + r2, else (r2 + 1) e + r.
  r = D::fma(D::add(D::blend(r2, r, gt), one), e, D::blend(r, r2, gt));
  m = mx;
}

template <typename T>
softzo_online ronlinesumexp(size_t n, const T* x) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t L = O::kLanes;
  constexpr int H = O::kHalves;
  // States merge into double lanes every 1024 elements: a merge costs two double exps, and the
  // rest's terms are all relative to one running max, so they rarely drown in a large one.
  constexpr size_t kBlock = 1024;
  __m256d dm[H], dr[H];
  for (int h = 0; h < H; ++h) {
    dm[h] = _mm256_set1_pd(-INFINITY);
    dr[h] = _mm256_set1_pd(-1.0);
  }
  V nan = O::zero();
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = n - start < kBlock ? n : start + kBlock;
    // Two (max, rest) pairs: the loop-carried chain is max (4 cycles) and FMA + blend (~6)
    // against ~30 uops per vector, so two chains suffice; the 4-vector unroll alternates them.
    V m0 = O::set1(-INFINITY), m1 = m0, r0 = O::set1(T(-1)), r1 = r0;
    size_t i = start;
    for (; i + 4 * L <= end; i += 4 * L) {
      const V x0 = O::load(x + i), x1 = O::load(x + i + L);
      const V x2 = O::load(x + i + 2 * L), x3 = O::load(x + i + 3 * L);
      nan = O::or_(nan, O::or_(O::unord(x0, x1), O::unord(x2, x3)));
      online_step<T>(m0, r0, x0);
      online_step<T>(m1, r1, x1);
      online_step<T>(m0, r0, x2);
      online_step<T>(m1, r1, x3);
    }
    for (; i + L <= end; i += L) {
      const V v = O::load(x + i);
      nan = O::or_(nan, O::unord(v, v));
      online_step<T>(m0, r0, v);
    }
    if (i < end) {
      const __m256i mk = O::tail_mask(end - i);
      const V mask = O::as_mask(mk);
      const V v = O::maskload(x + i, mk);
      nan = O::or_(nan, O::unord(v, v));  // masked lanes are 0
      V m = m1, r = r1;
      online_step<T>(m, r, v);
      m1 = O::blend(m1, m, mask);
      r1 = O::blend(r1, r, mask);
    }
    __m256d bm[2][H], br[2][H];
    O::to_double(m0, bm[0]);
    O::to_double(r0, br[0]);
    O::to_double(m1, bm[1]);
    O::to_double(r1, br[1]);
    for (int a = 0; a < 2; ++a) {
      for (int h = 0; h < H; ++h) online_merge(dm[h], dr[h], bm[a][h], br[a][h]);
    }
  }
  alignas(32) double lm[4 * H], lr[4 * H];
  for (int h = 0; h < H; ++h) {
    _mm256_store_pd(lm + 4 * h, dm[h]);
    _mm256_store_pd(lr + 4 * h, dr[h]);
  }
  // The lane holding the max keeps its rest; every other lane joins with its own 1.
  int top = 0;
  for (int k = 1; k < 4 * H; ++k) top = lm[k] > lm[top] ? k : top;
  double rest = lr[top];
  for (int k = 0; k < 4 * H; ++k) {
    // Empty lanes (-inf, -1) hold nothing; a lane more than ~708 below adds under 2^-1022
    // (flushed, not formed as a subnormal); a +inf max gives NaN differences, and ops sends
    // such rows to its special-value path.
    const double d = lm[k] - lm[top];
    if (k != top && d >= -708.0) rest += (lr[k] + 1.0) * softzo_exp_of_difference(lm[k], lm[top]);
  }
  if (O::any(nan)) rest = NAN;
  softzo_online out = {lm[top], rest};
  return out;
}

}  // namespace

#define SOFTZO_DEFINE_AVX2(T, dt)                                                            \
  T softzo_##dt##_rmax_avx2(size_t n, const T* x, T* lo, size_t* imax) {                     \
    return rmax<T>(n, x, lo, imax);                                                          \
  }                                                                                          \
  double softzo_##dt##_raddexp_avx2(size_t n, const T* x, double e, T lo) {                  \
    return raddexp_from<T, false>(n, x, nullptr, e, lo);                                     \
  }                                                                                          \
  double softzo_##dt##_raddstoreexp_avx2(size_t n, const T* x, T* y, double e, T lo) {       \
    return raddexp_from<T, true>(n, x, y, e, lo);                                            \
  }                                                                                          \
  void softzo_##dt##_vscale_avx2(size_t n, const T* x, T* y, T s) { vscale<T>(n, x, y, s); } \
  void softzo_##dt##_vscaleextexp_avx2(size_t n, const T* x, T* y, double m, double e) {     \
    vscaleextexp<T>(n, x, y, m, e);                                                          \
  }                                                                                          \
  softzo_online softzo_##dt##_ronlinesumexp_avx2(size_t n, const T* x) {                     \
    return ronlinesumexp<T>(n, x);                                                           \
  }                                                                                          \
  void softzo_##dt##_vsubc_avx2(size_t n, const T* x, T* y, T c1, T c2) {                    \
    const Ops<T>::V v1 = Ops<T>::set1(c1), v2 = Ops<T>::set1(c2);                            \
    map<T>(n, x, y, [&](Ops<T>::V v) { return Ops<T>::sub(Ops<T>::sub(v, v1), v2); });       \
  }                                                                                          \
  void softzo_##dt##_vexp_avx2(size_t n, const T* x, T* y) {                                 \
    map<T>(n, x, y, [](Ops<T>::V v) { return vexp<T>(v); });                                 \
  }

extern "C" {
SOFTZO_DEFINE_AVX2(float, f32)
SOFTZO_DEFINE_AVX2(double, f64)
}
