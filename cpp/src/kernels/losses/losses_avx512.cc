// AVX-512 loss kernels (float32 and float64): the cross-entropy and KL passes on the shared
// scaled exp, and the sums and maps of the spherical family and StableMax. Compiled twice like
// softmax_avx512.cc: natively (suffix avx512) and on top of SIMDe under SOFTZO_EMULATE_AVX512
// (suffix avx512emu), sharing its traits and loops.
#include <math.h>
#include <stddef.h>

#include "isa/avx512.h"
#include "kernels/losses/losses_kernels.h"

namespace {

// Terms per accumulator lane before its block is folded into double. A step here is a load or
// two and one add or FMA (~14 uops per unrolled iteration for rdot), so the fold (~7 uops per
// float accumulator, 28 per block) would cost ~25% at 8 iterations and ~12% at 16. A lane of 16
// float terms still rounds by at most 15 * 2^-24; the worst relative sum errors seen over random
// rows up to 1e5 elements are 5e-8 (rdot), 7e-8 (rsumsqdiff) and 3e-8 (rstablesum).
constexpr size_t kLossFoldBlock = 16;

template <class A>
struct SumStep {
  const typename A::T* x;
  template <bool kTail>
  SOFTZO_INLINE typename A::V step(typename A::V acc, size_t i, typename A::K k) const {
    return A::add(acc, load_at<A, kTail>(x + i, k));
  }
};

template <class A>
struct DotStep {
  const typename A::T *x, *w;
  template <bool kTail>
  SOFTZO_INLINE typename A::V step(typename A::V acc, size_t i, typename A::K k) const {
    return A::fmadd(load_at<A, kTail>(x + i, k), load_at<A, kTail>(w + i, k), acc);
  }
};

template <class A>
struct SumSqDiffStep {
  const typename A::T* x;
  typename A::V c;
  template <bool kTail>
  SOFTZO_INLINE typename A::V step(typename A::V acc, size_t i, typename A::K k) const {
    const typename A::V d = A::sub(load_at<A, kTail>(x + i, k), c);
    return A::fmadd(d, d, acc);
  }
};

template <class A>
struct Quad {
  typename A::V h, c2, c1, c0;
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const {
    const typename A::V d = A::sub(x, h);
    return A::fmadd(A::fmadd(c2, d, c1), d, c0);
  }
};

// StableMax's s(x): x + 1 where x >= 0, else 1 / (1 - x). The division only runs in the other
// lanes (NGE_UQ: x < 0 or NaN), so NaN goes through 1 / (1 - NaN) and stays NaN, and x = 1
// never makes an unused inf. A real division, not rcp14 + Newton: correctly rounded like the
// scalar kernel, and -inf (1 / inf = 0) needs no fix-up.
template <class A>
SOFTZO_INLINE typename A::V stable(typename A::V x) {
  const typename A::V one = A::set1(1);
  return A::mask_div(A::add(x, one), A::cmp_nge_uq(x, A::zero()), one, A::sub(one, x));
}

// s'(x): 1 where x >= 0, else 1 / (1 - x)^2, with the same lane split as stable.
template <class A>
SOFTZO_INLINE typename A::V stable_deriv(typename A::V x) {
  const typename A::V one = A::set1(1);
  const typename A::K neg = A::cmp_nge_uq(x, A::zero());
  const typename A::V r = A::mask_div(one, neg, one, A::sub(one, x));
  return A::mask_mul(one, neg, r, r);
}

template <class A>
struct StableSumStep {
  const typename A::T* x;
  template <bool kTail>
  SOFTZO_INLINE typename A::V step(typename A::V acc, size_t i, typename A::K k) const {
    return A::add(acc, stable<A>(load_at<A, kTail>(x + i, k)));
  }
};

template <class A, bool kDeriv>
struct Stable {
  typename A::V a;
  SOFTZO_INLINE typename A::V operator()(typename A::V x) const {
    return A::mul(a, kDeriv ? stable_deriv<A>(x) : stable<A>(x));
  }
};

template <class A>
double rdot(size_t n, const typename A::T* x, const typename A::T* w) {
  if (!w) {
    const SumStep<A> f = {x};
    return reduce<A>(n, kLossFoldBlock, f);
  }
  const DotStep<A> f = {x, w};
  return reduce<A>(n, kLossFoldBlock, f);
}

template <class A>
void vstable(size_t n, const typename A::T* x, typename A::T* y, typename A::T a, int deriv) {
  if (deriv) {
    const Stable<A, true> f = {A::set1(a)};
    map<A>(n, x, y, f);
  } else {
    const Stable<A, false> f = {A::set1(a)};
    map<A>(n, x, y, f);
  }
}

// ---- loss passes (cross-entropy, KL) ---------------------------------------------------------

// One vector of cross-entropy pass 2: q = w (b t + c), y = a p - q, and q (x - s) added where
// q != 0 (NEQ_UQ keeps NaN, drops 0 * -inf). kW / kT: w / t given; kY: y given.
template <class A, bool kY, bool kW, bool kT>
struct SoftmaxGradStep {
  typedef typename A::T T;
  typedef typename A::V V;
  const T *x, *w, *t;
  T* y;
  ScaledExpTimes<A> p;  // exp(x) * a / (m * 2^e)
  V b, c, shift;
  template <bool kTail>
  SOFTZO_INLINE V step(V acc, size_t i, typename A::K k) const {
    const V xv = load_at<A, kTail>(x + i, k);  // before y (x == y allowed)
    V q = kT ? A::fmadd(b, load_at<A, kTail>(t + i, k), c) : c;
    if (kW) q = A::mul(q, load_at<A, kTail>(w + i, k));
    // The exp is the bulk of the work; passes that want only the loss (y null) skip it.
    if (kY) store_at<A, kTail>(y + i, k, A::fmsub(p.f(xv), p.s, q));
    return A::mask_add(acc, A::cmp_neq_uq(q, A::zero()), acc, A::mul(q, A::sub(xv, shift)));
  }
};

template <class A, bool kY, bool kW, bool kT>
double softmaxgrad_q(size_t n, const typename A::T* x, typename A::T* y, double m, double e,
                     typename A::T a, const typename A::T* w, const typename A::T* t,
                     typename A::T b, typename A::T c, typename A::T s) {
  const SoftmaxGradStep<A, kY, kW, kT> f = {
      x,          w,          t,         y, ScaledExpTimes<A>(e, static_cast<double>(a) / m),
      A::set1(b), A::set1(c), A::set1(s)};
  return reduce<A>(n, kFoldBlock, f);
}

template <class A, bool kY>
double softmaxgrad_y(size_t n, const typename A::T* x, typename A::T* y, double m, double e,
                     typename A::T a, const typename A::T* w, const typename A::T* t,
                     typename A::T b, typename A::T c, typename A::T s) {
  if (w && t) return softmaxgrad_q<A, kY, true, true>(n, x, y, m, e, a, w, t, b, c, s);
  if (w) return softmaxgrad_q<A, kY, true, false>(n, x, y, m, e, a, w, t, b, c, s);
  if (t) return softmaxgrad_q<A, kY, false, true>(n, x, y, m, e, a, w, t, b, c, s);
  return softmaxgrad_q<A, kY, false, false>(n, x, y, m, e, a, w, t, b, c, s);
}

template <class A>
double softmaxgrad(size_t n, const typename A::T* x, typename A::T* y, double m, double e,
                   typename A::T a, const typename A::T* w, const typename A::T* t, typename A::T b,
                   typename A::T c, typename A::T s) {
  if (!w && !t && !(c != 0)) {
    // q == 0 everywhere (c == 0 and no w that could turn 0 into NaN): a plain scaled exp, sum 0.
    if (y) map<A>(n, x, y, ScaledExpTimes<A>(e, static_cast<double>(a) / m));
    return 0.0;
  }
  return y ? softmaxgrad_y<A, true>(n, x, y, m, e, a, w, t, b, c, s)
           : softmaxgrad_y<A, false>(n, x, y, m, e, a, w, t, b, c, s);
}

// One vector of cross-entropy's last pass after a reload: y = x s - q, x masked out of the
// multiply where x s would be subnormal.
template <class A, bool kQ, bool kW, bool kT>
struct GradFromExpStep {
  typedef typename A::T T;
  typedef typename A::V V;
  const T *x, *w, *t;
  T* y;
  V s, thr, b, c;
  template <bool kTail>
  SOFTZO_INLINE V step(V acc, size_t i, typename A::K k) const {
    const V xv = load_at<A, kTail>(x + i, k);
    const V p = A::maskz_mul(A::cmp_nlt_uq(xv, thr), xv, s);
    V q = A::zero();
    if (kQ) {
      q = kT ? A::fmadd(b, load_at<A, kTail>(t + i, k), c) : c;
      if (kW) q = A::mul(q, load_at<A, kTail>(w + i, k));
    }
    store_at<A, kTail>(y + i, k, kQ ? A::sub(p, q) : p);
    return acc;
  }
};

template <class A, bool kQ, bool kW, bool kT>
void gradfromexp(size_t n, const typename A::T* x, typename A::T* y, typename A::T s,
                 const typename A::T* w, const typename A::T* t, typename A::T b, typename A::T c) {
  const typename A::T thr = static_cast<typename A::T>(softzo_flush_threshold(A::kMinNormal, s));
  const GradFromExpStep<A, kQ, kW, kT> f = {x,          w,         t, y, A::set1(s), A::set1(thr),
                                            A::set1(b), A::set1(c)};
  reduce<A>(n, kFoldBlock, f);
}

template <class A>
void gradfromexp_q(size_t n, const typename A::T* x, typename A::T* y, typename A::T s,
                   const typename A::T* w, const typename A::T* t, typename A::T b,
                   typename A::T c) {
  if (!(w || t || c != 0)) return gradfromexp<A, false, false, false>(n, x, y, s, w, t, b, c);
  if (w && t) return gradfromexp<A, true, true, true>(n, x, y, s, w, t, b, c);
  if (w) return gradfromexp<A, true, true, false>(n, x, y, s, w, t, b, c);
  if (t) return gradfromexp<A, true, false, true>(n, x, y, s, w, t, b, c);
  return gradfromexp<A, true, false, false>(n, x, y, s, w, t, b, c);
}

// One vector of the fused KL pass: p from the teacher t, q from the student s, y = g (q - p),
// and p ((t - s) - c) added where p != 0 (so -inf teacher logits add 0, not NaN). p and q have
// 1/m folded into their exponents (never subnormal); q - p is masked out of the multiply by g
// where g (q - p) would be subnormal.
template <class A, bool kY>
struct KlGradStep {
  typedef typename A::T T;
  typedef typename A::V V;
  const T *s, *t;
  T* y;
  ScaledExpTimes<A> ps, pt;
  V g, c, thr;
  template <bool kTail>
  SOFTZO_INLINE V step(V acc, size_t i, typename A::K k) const {
    const V sv = load_at<A, kTail>(s + i, k);  // before y (y == s allowed)
    const V tv = load_at<A, kTail>(t + i, k);
    const V p = pt(tv);
    if (kY) {
      const V d = A::sub(ps(sv), p);
      store_at<A, kTail>(y + i, k, A::maskz_mul(A::cmp_nlt_uq(A::abs(d), thr), g, d));
    }
    return A::mask_add(acc, A::cmp_neq_uq(p, A::zero()), acc, A::mul(p, A::sub(A::sub(tv, sv), c)));
  }
};

template <class A, bool kY>
double klgrad(size_t n, const typename A::T* s, const typename A::T* t, typename A::T* y, double ms,
              double es, double mt, double et, typename A::T g, typename A::T c) {
  const typename A::T thr = static_cast<typename A::T>(softzo_flush_threshold(A::kMinNormal, g));
  const KlGradStep<A, kY> f = {s,
                               t,
                               y,
                               ScaledExpTimes<A>(es, 1.0 / ms),
                               ScaledExpTimes<A>(et, 1.0 / mt),
                               A::set1(g),
                               A::set1(c),
                               A::set1(thr)};
  return reduce<A>(n, kFoldBlock, f);
}

}  // namespace

#define SOFTZO_DEFINE_LOSS_AVX512(T, dt, A)                                                      \
  double SOFTZO_FN(dt, rdot)(size_t n, const T* x, const T* w) { return rdot<A>(n, x, w); }      \
  double SOFTZO_FN(dt, rsumsqdiff)(size_t n, const T* x, T c) {                                  \
    const SumSqDiffStep<A> f = {x, A::set1(c)};                                                  \
    return reduce<A>(n, kLossFoldBlock, f);                                                      \
  }                                                                                              \
  void SOFTZO_FN(dt, vquad)(size_t n, const T* x, T* y, T h, T c2, T c1, T c0) {                 \
    const Quad<A> f = {A::set1(h), A::set1(c2), A::set1(c1), A::set1(c0)};                       \
    map<A>(n, x, y, f);                                                                          \
  }                                                                                              \
  double SOFTZO_FN(dt, rstablesum)(size_t n, const T* x) {                                       \
    const StableSumStep<A> f = {x};                                                              \
    return reduce<A>(n, kLossFoldBlock, f);                                                      \
  }                                                                                              \
  void SOFTZO_FN(dt, vstable)(size_t n, const T* x, T* y, T a, int deriv) {                      \
    vstable<A>(n, x, y, a, deriv);                                                               \
  }                                                                                              \
  double SOFTZO_FN(dt, vsoftmaxgrad)(size_t n, const T* x, T* y, double m, double e, T a,        \
                                     const T* w, const T* t, T b, T c, T s) {                    \
    return softmaxgrad<A>(n, x, y, m, e, a, w, t, b, c, s);                                      \
  }                                                                                              \
  void SOFTZO_FN(dt, vgradfromexp)(size_t n, const T* x, T* y, T s, const T* w, const T* t, T b, \
                                   T c) {                                                        \
    gradfromexp_q<A>(n, x, y, s, w, t, b, c);                                                    \
  }                                                                                              \
  double SOFTZO_FN(dt, rklgrad)(size_t n, const T* s, const T* t, T* y, double ms, double es,    \
                                double mt, double et, T g, T c) {                                \
    return y ? klgrad<A, true>(n, s, t, y, ms, es, mt, et, g, c)                                 \
             : klgrad<A, false>(n, s, t, y, ms, es, mt, et, g, c);                               \
  }

extern "C" {
SOFTZO_DEFINE_LOSS_AVX512(float, f32, F32)
SOFTZO_DEFINE_LOSS_AVX512(double, f64, F64)
}
