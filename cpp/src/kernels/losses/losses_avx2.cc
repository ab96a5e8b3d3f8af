// AVX2 + FMA loss kernels without exp (built with -mavx2 -mfma): the sums and maps of the
// spherical family and StableMax, on the shared AVX2 building blocks.
#include "kernels/losses/losses_kernels.h"
#include "kernels/softmax/avx2_ops.h"

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

}  // namespace

#define SOFTZO_DEFINE_LOSS_AVX2(T, dt)                                                          \
  double softzo_##dt##_rdot_avx2(size_t n, const T* x, const T* w) { return rdot<T>(n, x, w); } \
  double softzo_##dt##_rsumsqdiff_avx2(size_t n, const T* x, T c) {                             \
    return rsumsqdiff<T>(n, x, c);                                                              \
  }                                                                                             \
  void softzo_##dt##_vquad_avx2(size_t n, const T* x, T* y, T h, T c2, T c1, T c0) {            \
    using O = Ops<T>;                                                                           \
    const O::V vh = O::set1(h), v2 = O::set1(c2), v1 = O::set1(c1), v0 = O::set1(c0);           \
    map<T>(n, x, y, [&](O::V v) {                                                               \
      const O::V d = O::sub(v, vh);                                                             \
      return O::fma(O::fma(v2, d, v1), d, v0);                                                  \
    });                                                                                         \
  }                                                                                             \
  double softzo_##dt##_rstablesum_avx2(size_t n, const T* x) {                                  \
    return sum_loop<T>(n, [&](size_t i, const __m256i* mk) {                                    \
      return keep_n<T>(stable<T>(load_n(x + i, mk)), mk);                                       \
    });                                                                                         \
  }                                                                                             \
  void softzo_##dt##_vstable_avx2(size_t n, const T* x, T* y, T a, int deriv) {                 \
    using O = Ops<T>;                                                                           \
    const O::V va = O::set1(a);                                                                 \
    if (deriv) {                                                                                \
      map<T>(n, x, y, [&](O::V v) { return O::mul(va, stable_deriv<T>(v)); });                  \
    } else {                                                                                    \
      map<T>(n, x, y, [&](O::V v) { return O::mul(va, stable<T>(v)); });                        \
    }                                                                                           \
  }

extern "C" {
SOFTZO_DEFINE_LOSS_AVX2(float, f32)
SOFTZO_DEFINE_LOSS_AVX2(double, f64)
}
