// AVX2 + FMA softmax-family kernels (float32 and float64), built with -mavx2 -mfma.
//
// Same math as softmax_scalar.cc: exp(x) = p(r) * 2^n with n = round(x log2 e) and a Cody-Waite
// reduction r = x - n ln2 (two FMAs); 2^n is added straight into p's exponent field, which is
// valid for every n we let through (p in [0.7, 1.42], results normal or exactly at the cutoff).
// Sums accumulate in T over short blocks and are folded into double lanes.
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels/softmax/avx2_ops.h"
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

// exp(d) for d <= 0 or NaN, with NaN -> 0: used where d = -inf - (-inf) must count as nothing.
template <typename T>
inline typename Ops<T>::V vexp_nonpos_nan0(typename Ops<T>::V d) {
  using O = Ops<T>;
  using V = typename O::V;
  const V lo = O::set1(O::kMinArg);
  const typename O::Split sp = O::reduce(O::max(d, lo), O::magic());
  const V y = O::scale_bits(sp.p, sp.ebits);
  return O::and_(O::ge(d, lo), y);
}

template <typename T>
T rmax(size_t n, const T* x, T* lo) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t L = O::kLanes;
  // max has 4-cycle latency and 2 ports: 4 chains keep ~2 loads/cycle flowing. max ignores a
  // NaN x (it returns the second operand), so NaN is tracked on the side, one compare per pair.
  V m0 = O::set1(-INFINITY), m1 = m0, m2 = m0, m3 = m0, nan = O::zero(), mn = O::set1(INFINITY);
  size_t i = 0;
  for (; i + 4 * L <= n; i += 4 * L) {
    const V x0 = O::load(x + i), x1 = O::load(x + i + L);
    const V x2 = O::load(x + i + 2 * L), x3 = O::load(x + i + 3 * L);
    m0 = O::max(x0, m0);
    m1 = O::max(x1, m1);
    m2 = O::max(x2, m2);
    m3 = O::max(x3, m3);
    mn = O::min(O::min(x0, x1), O::min(x2, O::min(x3, mn)));
    nan = O::or_(nan, O::or_(O::unord(x0, x1), O::unord(x2, x3)));
  }
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
  m0 = O::max(O::max(m0, m1), O::max(m2, m3));
  alignas(32) T a[L], b[L];
  O::store(a, m0);
  O::store(b, mn);
  T r = a[0], s = b[0];
  for (size_t k = 1; k < L; ++k) {
    r = a[k] > r ? a[k] : r;
    s = b[k] < s ? b[k] : s;
  }
  *lo = s;
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
  constexpr size_t kBlock = 4 * kElemsPerAccumulator;
  __m256d total = _mm256_setzero_pd();
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = n - start < kBlock ? n : start + kBlock;
    V a0 = O::zero(), a1 = O::zero(), a2 = O::zero(), a3 = O::zero();
    size_t i = start;
    for (; i + 4 * L <= end; i += 4 * L) {
      // Fetch 8 KiB ahead: out of cache the exp is compute-bound, so DRAM reads can hide
      // under it (a block that raddextexp redoes is then in cache too).
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
    for (int h = 0; h < H; ++h) total = _mm256_add_pd(total, d[h]);
  }
  return hsum(total);
}

// raddexp with the flushing exp, or the cheaper one when lo (a lower bound of the row) shows
// that nothing needs flushing.
template <typename T, bool kStore>
double raddexp_from(size_t n, const T* x, T* y, double e, T lo) {
  if (lo >= ScaledExp<T>::cut_point(e))
    return raddexp<T, kStore>(n, x, y, UnflushedScaledExp<T>(e));
  return raddexp<T, kStore>(n, x, y, ScaledExp<T>(e));
}

// Max of a block (NaN ignored) and the two-pass safety check: any x > LIMIT or NaN sets bad.
template <typename T>
T block_max(size_t n, const T* x, typename Ops<T>::V* bad) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t L = O::kLanes;
  const V lim = O::set1(static_cast<T>(SOFTZO_EXTEXP_LIMIT));
  V m0 = O::set1(-INFINITY), m1 = m0;
  size_t i = 0;
  for (; i + 2 * L <= n; i += 2 * L) {
    const V x0 = O::load(x + i), x1 = O::load(x + i + L);
    m0 = O::max(x0, m0);
    m1 = O::max(x1, m1);
    *bad = O::or_(*bad, O::or_(O::nle_uq(x0, lim), O::nle_uq(x1, lim)));
  }
  for (; i < n; i += L) {
    const __m256i mk = O::tail_mask(n - i < L ? n - i : L);
    const V v = O::blend(O::set1(-INFINITY), O::maskload(x + i, mk), O::as_mask(mk));
    m0 = O::max(v, m0);
    *bad = O::or_(*bad, O::nle_uq(v, lim));
  }
  alignas(32) T a[L];
  O::store(a, O::max(m0, m1));
  T r = a[0];
  for (size_t k = 1; k < L; ++k) r = a[k] > r ? a[k] : r;
  return r;
}

// ScaledExp that also notes any x above a guard (or NaN) in `over`.
template <typename T>
struct GuardedScaledExp {
  using V = typename Ops<T>::V;
  ScaledExp<T> f;
  V guard;
  mutable V over;
  V operator()(V x) const {
    over = Ops<T>::or_(over, Ops<T>::nle_uq(x, guard));
    return f(x);
  }
};

// Pass 1 of the two-pass softmax (Dukhan & Ablavatski's extended-exponent sum), blocked: each
// 8 KiB block is summed as sum exp(x) * 2^-e with e the exponent of the running pair, and joins
// that pair in double. Memory is read once and the per-vector work is one exp plus a guard
// compare (~17 uops), against ~25 for a per-element (M, E) update with two 2^k rescales, which
// left pass 1 compute-bound out of cache. A block with an x more than 100 ln2 above 2^e (where
// 2^(n - e) could overflow), above LIMIT or NaN is redone with its own max (the first block
// always is). Flushing relative to the running exponent is exact: what falls below 2^-124 of
// it is below that of the row max.
template <typename T>
softzo_extexp raddextexp(size_t n, const T* x, int* unsafe) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t kBlock = 8192 / sizeof(T);  // a quarter of L1d: measured best of 2-16 KiB
  constexpr double kLog2e = 1.4426950408889634, kLn2 = 0.6931471805599453;
  V bad = O::zero();
  double acc_m = 0.0, acc_e = -INFINITY;
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t len = n - start < kBlock ? n - start : kBlock;
    double e = acc_e, s = 0.0;
    bool redo = acc_e == -INFINITY;
    if (!redo) {
      const double g = (e + 100.0) * kLn2;
      const GuardedScaledExp<T> f{
          ScaledExp<T>(e),
          O::set1(static_cast<T>(g < SOFTZO_EXTEXP_LIMIT ? g : SOFTZO_EXTEXP_LIMIT)), O::zero()};
      s = raddexp<T, false>(len, x + start, nullptr, f);
      redo = O::any(f.over);
    }
    if (redo) {
      double bm = static_cast<double>(block_max<T>(len, x + start, &bad));
      // Keep e in the range the bit tricks handle; such blocks are flagged or flushed anyway.
      bm = bm < -SOFTZO_EXTEXP_LIMIT ? -SOFTZO_EXTEXP_LIMIT
                                     : (bm > SOFTZO_EXTEXP_LIMIT ? SOFTZO_EXTEXP_LIMIT : bm);
      e = nearbyint(bm * kLog2e);
      s = raddexp<T, false>(len, x + start, nullptr, ScaledExp<T>(e));
    }
    if (!(s > 0.0)) continue;
    if (e > acc_e) {
      acc_m = acc_e == -INFINITY ? 0.0 : ldexp(acc_m, static_cast<int>(acc_e - e));
      acc_e = e;
    }
    acc_m += ldexp(s, static_cast<int>(e - acc_e));
  }
  if (O::any(bad)) *unsafe = 1;
  softzo_extexp out = {acc_m, acc_m == 0.0 ? 0.0 : acc_e};
  return out;
}

template <typename T>
void vscaleextexp(size_t n, const T* x, T* y, double m, double e) {
  using V = typename Ops<T>::V;
  const ScaledExp<T> f(e);
  const V inv_m = Ops<T>::set1(static_cast<T>(1.0 / m));
  map<T>(n, x, y, [&](V v) { return Ops<T>::mul(f(v), inv_m); });
}

// Online (max, sum) update using one exp per element: of exp(m - m_new) and exp(x - m_new) one
// is exp(0) = 1, so e = exp(min - max) and the select picks s*e + 1 or s + e.
template <typename T>
inline void online_step(typename Ops<T>::V& m, typename Ops<T>::V& s, typename Ops<T>::V x) {
  using O = Ops<T>;
  using V = typename O::V;
  const V mx = O::max(x, m), mn = O::min(x, m);     // NaN x leaves m alone (flagged separately)
  const V e = vexp_nonpos_nan0<T>(O::sub(mn, mx));  // -inf - -inf: NaN -> 0, s stays 0
  s = O::blend(O::add(s, e), O::fma(s, e, O::set1(static_cast<T>(1))), O::gt(x, m));
  m = mx;
}

template <typename T>
softzo_online ronlinesumexp(size_t n, const T* x) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t L = O::kLanes;
  constexpr int H = O::kHalves;
  constexpr size_t kBlock = 2 * kElemsPerAccumulator;
  __m256d dm[H], ds[H];
  for (int h = 0; h < H; ++h) {
    dm[h] = _mm256_set1_pd(-INFINITY);
    ds[h] = _mm256_setzero_pd();
  }
  V nan = O::zero();
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t end = n - start < kBlock ? n : start + kBlock;
    // Two (max, sum) pairs: the loop-carried chain is max (4 cycles) and FMA + blend (~6)
    // against ~25 uops per vector, so two chains suffice; the 4-vector unroll alternates them.
    V m0 = O::set1(-INFINITY), m1 = m0, s0 = O::zero(), s1 = O::zero();
    size_t i = start;
    for (; i + 4 * L <= end; i += 4 * L) {
      const V x0 = O::load(x + i), x1 = O::load(x + i + L);
      const V x2 = O::load(x + i + 2 * L), x3 = O::load(x + i + 3 * L);
      nan = O::or_(nan, O::or_(O::unord(x0, x1), O::unord(x2, x3)));
      online_step<T>(m0, s0, x0);
      online_step<T>(m1, s1, x1);
      online_step<T>(m0, s0, x2);
      online_step<T>(m1, s1, x3);
    }
    for (; i + L <= end; i += L) {
      const V v = O::load(x + i);
      nan = O::or_(nan, O::unord(v, v));
      online_step<T>(m0, s0, v);
    }
    if (i < end) {
      const __m256i mk = O::tail_mask(end - i);
      const V mask = O::as_mask(mk);
      const V v = O::maskload(x + i, mk);
      nan = O::or_(nan, O::unord(v, v));  // masked lanes are 0
      V m = m1, s = s1;
      online_step<T>(m, s, v);
      m1 = O::blend(m1, m, mask);
      s1 = O::blend(s1, s, mask);
    }
    // Merge both pairs into the double lanes, with the same one-exp trick in double.
    __m256d bm[2][H], bs[2][H];
    O::to_double(m0, bm[0]);
    O::to_double(s0, bs[0]);
    O::to_double(m1, bm[1]);
    O::to_double(s1, bs[1]);
    for (int a = 0; a < 2; ++a) {
      for (int h = 0; h < H; ++h) {
        using D = Ops<double>;
        const __m256d mx = D::max(bm[a][h], dm[h]), mn = D::min(bm[a][h], dm[h]);
        const __m256d e = vexp_nonpos_nan0<double>(D::sub(mn, mx));
        const __m256d gt = D::gt(bm[a][h], dm[h]);
        // gt: ds * e + bs, else bs * e + ds.
        ds[h] = D::fma(D::blend(bs[a][h], ds[h], gt), e, D::blend(ds[h], bs[a][h], gt));
        dm[h] = mx;
      }
    }
  }
  alignas(32) double lm[4 * H], ls[4 * H];
  for (int h = 0; h < H; ++h) {
    _mm256_store_pd(lm + 4 * h, dm[h]);
    _mm256_store_pd(ls + 4 * h, ds[h]);
  }
  double mmax = -INFINITY;
  for (int k = 0; k < 4 * H; ++k) mmax = lm[k] > mmax ? lm[k] : mmax;
  double sum = 0.0;
  for (int k = 0; k < 4 * H; ++k) {
    if (lm[k] == -INFINITY) continue;  // empty lane; an all -inf row ends with sum 0
    sum += ls[k] * exp(lm[k] - mmax);  // +inf max: inf - inf = NaN, as the contract wants
  }
  if (O::any(nan)) sum = NAN;
  softzo_online out = {mmax, sum};
  return out;
}

// Cross-entropy pass 2 (see the contract): one scaled exp, the target weights q and a masked
// dot per vector. kQ is false when q is all zero; kW / kT say whether w / t are given.
template <typename T, bool kY, bool kQ, bool kW, bool kT>
double softmaxgrad(size_t n, const T* x, T* y, double m, double e, T a, const T* w, const T* t, T b,
                   T c) {
  using O = Ops<T>;
  using V = typename O::V;
  const ScaledExp<T> f(e);
  const V sa = O::set1(static_cast<T>(a / m)), vb = O::set1(b), vc = O::set1(c);
  return sum_loop<T>(n, [&](size_t i, const __m256i* mk) {
    const V xv = load_n(x + i, mk);
    V q = O::zero();
    if (kQ) {
      q = kT ? O::fma(vb, load_n(t + i, mk), vc) : vc;
      if (kW) q = O::mul(q, load_n(w + i, mk));
    }
    if (kY) store_n(y + i, mk, kQ ? O::fms(f(xv), sa, q) : O::mul(f(xv), sa));
    if (!kQ) return O::zero();
    return O::and_(O::ne(q, O::zero()), keep_n<T>(O::mul(q, xv), mk));
  });
}

template <typename T, bool kY>
double softmaxgrad_q(size_t n, const T* x, T* y, double m, double e, T a, const T* w, const T* t,
                     T b, T c) {
  if (!(w || t || c != 0))
    return softmaxgrad<T, kY, false, false, false>(n, x, y, m, e, a, w, t, b, c);
  if (w && t) return softmaxgrad<T, kY, true, true, true>(n, x, y, m, e, a, w, t, b, c);
  if (w) return softmaxgrad<T, kY, true, true, false>(n, x, y, m, e, a, w, t, b, c);
  if (t) return softmaxgrad<T, kY, true, false, true>(n, x, y, m, e, a, w, t, b, c);
  return softmaxgrad<T, kY, true, false, false>(n, x, y, m, e, a, w, t, b, c);
}

// Fused KL pass: both rows' scaled exps, the gradient and the divergence terms.
template <typename T, bool kY>
double klgrad(size_t n, const T* s, const T* t, T* y, double ms, double es, double mt, double et,
              T g, T c) {
  using O = Ops<T>;
  using V = typename O::V;
  const ScaledExp<T> fs(es), ft(et);
  const V is = O::set1(static_cast<T>(1.0 / ms)), it = O::set1(static_cast<T>(1.0 / mt));
  const V vg = O::set1(g), vc = O::set1(c);
  return sum_loop<T>(n, [&](size_t i, const __m256i* mk) {
    const V sv = load_n(s + i, mk), tv = load_n(t + i, mk);
    const V p = O::mul(ft(tv), it);
    if (kY) store_n(y + i, mk, O::mul(vg, O::fms(fs(sv), is, p)));
    const V term = O::mul(p, O::sub(O::sub(tv, sv), vc));
    return O::and_(O::ne(p, O::zero()), keep_n<T>(term, mk));  // p == 0: 0, not 0 * inf
  });
}

}  // namespace

#define SOFTZO_DEFINE_AVX2(T, dt)                                                                 \
  T softzo_##dt##_rmax_avx2(size_t n, const T* x, T* lo) { return rmax<T>(n, x, lo); }            \
  double softzo_##dt##_raddexp_avx2(size_t n, const T* x, double e, T lo) {                       \
    return raddexp_from<T, false>(n, x, nullptr, e, lo);                                          \
  }                                                                                               \
  double softzo_##dt##_raddstoreexp_avx2(size_t n, const T* x, T* y, double e, T lo) {            \
    return raddexp_from<T, true>(n, x, y, e, lo);                                                 \
  }                                                                                               \
  void softzo_##dt##_vscale_avx2(size_t n, const T* x, T* y, T s) {                               \
    const Ops<T>::V vs = Ops<T>::set1(s);                                                         \
    map<T>(n, x, y, [&](Ops<T>::V v) { return Ops<T>::mul(v, vs); });                             \
  }                                                                                               \
  softzo_extexp softzo_##dt##_raddextexp_avx2(size_t n, const T* x, int* unsafe) {                \
    return raddextexp<T>(n, x, unsafe);                                                           \
  }                                                                                               \
  void softzo_##dt##_vscaleextexp_avx2(size_t n, const T* x, T* y, double m, double e) {          \
    vscaleextexp<T>(n, x, y, m, e);                                                               \
  }                                                                                               \
  softzo_online softzo_##dt##_ronlinesumexp_avx2(size_t n, const T* x) {                          \
    return ronlinesumexp<T>(n, x);                                                                \
  }                                                                                               \
  void softzo_##dt##_vsubc_avx2(size_t n, const T* x, T* y, T c1, T c2) {                         \
    const Ops<T>::V v1 = Ops<T>::set1(c1), v2 = Ops<T>::set1(c2);                                 \
    map<T>(n, x, y, [&](Ops<T>::V v) { return Ops<T>::sub(Ops<T>::sub(v, v1), v2); });            \
  }                                                                                               \
  void softzo_##dt##_vexp_avx2(size_t n, const T* x, T* y) {                                      \
    map<T>(n, x, y, [](Ops<T>::V v) { return vexp<T>(v); });                                      \
  }                                                                                               \
  double softzo_##dt##_vsoftmaxgrad_avx2(size_t n, const T* x, T* y, double m, double e, T a,     \
                                         const T* w, const T* t, T b, T c) {                      \
    return y ? softmaxgrad_q<T, true>(n, x, y, m, e, a, w, t, b, c)                               \
             : softmaxgrad_q<T, false>(n, x, y, m, e, a, w, t, b, c);                             \
  }                                                                                               \
  double softzo_##dt##_rklgrad_avx2(size_t n, const T* s, const T* t, T* y, double ms, double es, \
                                    double mt, double et, T g, T c) {                             \
    return y ? klgrad<T, true>(n, s, t, y, ms, es, mt, et, g, c)                                  \
             : klgrad<T, false>(n, s, t, y, ms, es, mt, et, g, c);                                \
  }

extern "C" {
SOFTZO_DEFINE_AVX2(float, f32)
SOFTZO_DEFINE_AVX2(double, f64)
}
