// AVX2 + FMA loss kernels (built with -mavx2 -mfma): the cross-entropy and KL passes on the
// shared scaled exp, and the sums and maps of the spherical family and StableMax.
#include <math.h>

#include "isa/avx2.h"
#include "kernels/losses/losses_kernels.h"

namespace {

template <typename T>
double rdot(size_t n, const T* x, const T* w) {
  using V = typename Ops<T>::V;
  if (!w) return sum_loop<T>(n, [&](size_t i, const __m256i* mk) { return load_n(x + i, mk); });
  return sum_loop<T>(n, [&](size_t i, const __m256i* mk) -> V {
    return Ops<T>::mul(load_n(x + i, mk), load_n(w + i, mk));  // padding lanes: 0 * 0
  });
}

template <typename T>
double rsumsqdiff(size_t n, const T* x, T c) {
  using O = Ops<T>;
  const typename O::V vc = O::set1(c);
  return sum_loop<T>(n, [&](size_t i, const __m256i* mk) {
    const typename O::V d = O::sub(load_n(x + i, mk), vc);
    return keep_n<T>(O::mul(d, d), mk);
  });
}

// s(x) and s'(x) of StableMax. The reciprocal is computed for every lane and blended away
// above zero (x = 1 gives inf there, never selected); NaN fails x >= 0 and stays NaN.
template <typename T>
inline typename Ops<T>::V stable(typename Ops<T>::V x) {
  using O = Ops<T>;
  const typename O::V one = O::set1(T(1));
  return O::blend(O::div(one, O::sub(one, x)), O::add(x, one), O::ge(x, O::zero()));
}
template <typename T>
inline typename Ops<T>::V stable_deriv(typename Ops<T>::V x) {
  using O = Ops<T>;
  const typename O::V one = O::set1(T(1));
  const typename O::V r = O::div(one, O::sub(one, x));
  return O::blend(O::mul(r, r), one, O::ge(x, O::zero()));
}

// Cross-entropy pass 2 (see the contract): one scaled exp, the target weights q and a masked
// dot per vector. kQ is false when q is all zero; kW / kT say whether w / t are given.
template <typename T, bool kY, bool kQ, bool kW, bool kT>
double softmaxgrad(size_t n, const T* x, T* y, double m, double e, T a, const T* w, const T* t, T b,
                   T c, T s) {
  using O = Ops<T>;
  using V = typename O::V;
  const ScaledExpTimes<T> p(e, static_cast<double>(a) / m);
  const V vb = O::set1(b), vc = O::set1(c), vs = O::set1(s);
  return sum_loop<T>(n, [&](size_t i, const __m256i* mk) {
    const V xv = load_n(x + i, mk);
    V q = O::zero();
    if (kQ) {
      q = kT ? O::fma(vb, load_n(t + i, mk), vc) : vc;
      if (kW) q = O::mul(q, load_n(w + i, mk));
    }
    if (kY) store_n(y + i, mk, kQ ? O::fms(p.f(xv), p.c, q) : p(xv));
    if (!kQ) return O::zero();
    return O::and_(O::ne(q, O::zero()), keep_n<T>(O::mul(q, O::sub(xv, vs)), mk));
  });
}

template <typename T, bool kY>
double softmaxgrad_q(size_t n, const T* x, T* y, double m, double e, T a, const T* w, const T* t,
                     T b, T c, T s) {
  if (!(w || t || c != 0))
    return softmaxgrad<T, kY, false, false, false>(n, x, y, m, e, a, w, t, b, c, s);
  if (w && t) return softmaxgrad<T, kY, true, true, true>(n, x, y, m, e, a, w, t, b, c, s);
  if (w) return softmaxgrad<T, kY, true, true, false>(n, x, y, m, e, a, w, t, b, c, s);
  if (t) return softmaxgrad<T, kY, true, false, true>(n, x, y, m, e, a, w, t, b, c, s);
  return softmaxgrad<T, kY, true, false, false>(n, x, y, m, e, a, w, t, b, c, s);
}

// Cross-entropy's last pass after a reload: y = x s - q, x zeroed first where x s would be
// subnormal. No exp: a streaming pass over a row that is still in L2.
template <typename T, bool kQ, bool kW, bool kT>
void gradfromexp(size_t n, const T* x, T* y, T s, const T* w, const T* t, T b, T c) {
  using O = Ops<T>;
  using V = typename O::V;
  const V vs = O::set1(s), vb = O::set1(b), vc = O::set1(c);
  const V thr = O::set1(static_cast<T>(softzo_flush_threshold(O::kMinNormal, s)));
  sum_loop<T>(n, [&](size_t i, const __m256i* mk) {
    const V xv = load_n(x + i, mk);
    const V p = O::mul(O::and_(xv, O::ge(xv, thr)), vs);
    V q = O::zero();
    if (kQ) {
      q = kT ? O::fma(vb, load_n(t + i, mk), vc) : vc;
      if (kW) q = O::mul(q, load_n(w + i, mk));
    }
    store_n(y + i, mk, kQ ? O::sub(p, q) : p);
    return O::zero();
  });
}

template <typename T>
void gradfromexp_q(size_t n, const T* x, T* y, T s, const T* w, const T* t, T b, T c) {
  if (!(w || t || c != 0)) return gradfromexp<T, false, false, false>(n, x, y, s, w, t, b, c);
  if (w && t) return gradfromexp<T, true, true, true>(n, x, y, s, w, t, b, c);
  if (w) return gradfromexp<T, true, true, false>(n, x, y, s, w, t, b, c);
  if (t) return gradfromexp<T, true, false, true>(n, x, y, s, w, t, b, c);
  return gradfromexp<T, true, false, false>(n, x, y, s, w, t, b, c);
}

// Fused KL pass: both rows' scaled exps, the gradient and the divergence terms. p and q are
// formed with 1/m folded into the exponent (never subnormal); the gradient difference q - p is
// zeroed before the multiply by g where g (q - p) would be subnormal.
template <typename T, bool kY>
double klgrad(size_t n, const T* s, const T* t, T* y, double ms, double es, double mt, double et,
              T g, T c) {
  using O = Ops<T>;
  using V = typename O::V;
  const ScaledExpTimes<T> fs(es, 1.0 / ms), ft(et, 1.0 / mt);
  const V vg = O::set1(g), vc = O::set1(c), sign = O::set1(T(-0.0));
  const V thr = O::set1(static_cast<T>(softzo_flush_threshold(O::kMinNormal, g)));
  return sum_loop<T>(n, [&](size_t i, const __m256i* mk) {
    const V sv = load_n(s + i, mk), tv = load_n(t + i, mk);
    const V p = ft(tv);
    if (kY) {
      const V d = O::sub(fs(sv), p);
      store_n(y + i, mk, O::mul(vg, O::and_(d, O::ge(O::andnot(sign, d), thr))));
    }
    const V term = O::mul(p, O::sub(O::sub(tv, sv), vc));
    return O::and_(O::ne(p, O::zero()), keep_n<T>(term, mk));  // p == 0: 0, not 0 * inf
  });
}

}  // namespace

#define SOFTZO_DEFINE_LOSS_AVX2(T, dt)                                                            \
  double softzo_##dt##_rdot_avx2(size_t n, const T* x, const T* w) { return rdot<T>(n, x, w); }   \
  double softzo_##dt##_rsumsqdiff_avx2(size_t n, const T* x, T c) {                               \
    return rsumsqdiff<T>(n, x, c);                                                                \
  }                                                                                               \
  void softzo_##dt##_vquad_avx2(size_t n, const T* x, T* y, T h, T c2, T c1, T c0) {              \
    using O = Ops<T>;                                                                             \
    const O::V vh = O::set1(h), v2 = O::set1(c2), v1 = O::set1(c1), v0 = O::set1(c0);             \
    map<T>(n, x, y, [&](O::V v) {                                                                 \
      const O::V d = O::sub(v, vh);                                                               \
      return O::fma(O::fma(v2, d, v1), d, v0);                                                    \
    });                                                                                           \
  }                                                                                               \
  double softzo_##dt##_rstablesum_avx2(size_t n, const T* x) {                                    \
    return sum_loop<T>(n, [&](size_t i, const __m256i* mk) {                                      \
      return keep_n<T>(stable<T>(load_n(x + i, mk)), mk);                                         \
    });                                                                                           \
  }                                                                                               \
  void softzo_##dt##_vstable_avx2(size_t n, const T* x, T* y, T a, int deriv) {                   \
    using O = Ops<T>;                                                                             \
    const O::V va = O::set1(a);                                                                   \
    if (deriv) {                                                                                  \
      map<T>(n, x, y, [&](O::V v) { return O::mul(va, stable_deriv<T>(v)); });                    \
    } else {                                                                                      \
      map<T>(n, x, y, [&](O::V v) { return O::mul(va, stable<T>(v)); });                          \
    }                                                                                             \
  }                                                                                               \
  double softzo_##dt##_vsoftmaxgrad_avx2(size_t n, const T* x, T* y, double m, double e, T a,     \
                                         const T* w, const T* t, T b, T c, T s) {                 \
    return y ? softmaxgrad_q<T, true>(n, x, y, m, e, a, w, t, b, c, s)                            \
             : softmaxgrad_q<T, false>(n, x, y, m, e, a, w, t, b, c, s);                          \
  }                                                                                               \
  void softzo_##dt##_vgradfromexp_avx2(size_t n, const T* x, T* y, T s, const T* w, const T* t,   \
                                       T b, T c) {                                                \
    gradfromexp_q<T>(n, x, y, s, w, t, b, c);                                                     \
  }                                                                                               \
  double softzo_##dt##_rklgrad_avx2(size_t n, const T* s, const T* t, T* y, double ms, double es, \
                                    double mt, double et, T g, T c) {                             \
    return y ? klgrad<T, true>(n, s, t, y, ms, es, mt, et, g, c)                                  \
             : klgrad<T, false>(n, s, t, y, ms, es, mt, et, g, c);                                \
  }

extern "C" {
SOFTZO_DEFINE_LOSS_AVX2(float, f32)
SOFTZO_DEFINE_LOSS_AVX2(double, f64)
}
