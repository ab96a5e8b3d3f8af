// AVX-512 loss kernels without exp (float32 and float64): the sums and maps of the spherical
// family and StableMax. Compiled twice like softmax_avx512.cc: natively (suffix avx512) and on
// top of SIMDe under SOFTZO_EMULATE_AVX512 (suffix avx512emu), sharing its traits and loops.
#include <stddef.h>

#include "kernels/losses/losses_kernels.h"
#include "kernels/softmax/softmax_avx512_helpers.h"

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

}  // namespace

#define SOFTZO_DEFINE_LOSS_AVX512(T, dt, A)                                                 \
  double SOFTZO_FN(dt, rdot)(size_t n, const T* x, const T* w) { return rdot<A>(n, x, w); } \
  double SOFTZO_FN(dt, rsumsqdiff)(size_t n, const T* x, T c) {                             \
    const SumSqDiffStep<A> f = {x, A::set1(c)};                                             \
    return reduce<A>(n, kLossFoldBlock, f);                                                 \
  }                                                                                         \
  void SOFTZO_FN(dt, vquad)(size_t n, const T* x, T* y, T h, T c2, T c1, T c0) {            \
    const Quad<A> f = {A::set1(h), A::set1(c2), A::set1(c1), A::set1(c0)};                  \
    map<A>(n, x, y, f);                                                                     \
  }                                                                                         \
  double SOFTZO_FN(dt, rstablesum)(size_t n, const T* x) {                                  \
    const StableSumStep<A> f = {x};                                                         \
    return reduce<A>(n, kLossFoldBlock, f);                                                 \
  }                                                                                         \
  void SOFTZO_FN(dt, vstable)(size_t n, const T* x, T* y, T a, int deriv) {                 \
    vstable<A>(n, x, y, a, deriv);                                                          \
  }

extern "C" {
SOFTZO_DEFINE_LOSS_AVX512(float, f32, F32)
SOFTZO_DEFINE_LOSS_AVX512(double, f64, F64)
}
