// Portable scalar loss kernels (the fallback ISA and the readable reference for the vector
// files): sums carried in double, elementwise maps in T like the vector code.
#include <math.h>

#include "kernels/losses/losses_kernels.h"

namespace {

template <typename F>
inline double double_sum(size_t n, F f) {
  double s = 0.0;
  for (size_t i = 0; i < n; ++i) s += f(i);
  return s;
}

// StableMax's s(x): x + 1 above zero, 1 / (1 - x) below (both 1 at 0, s' continuous).
template <typename T>
inline T stable(T x) {
  return x >= 0 ? x + 1 : 1 / (1 - x);
}
template <typename T>
inline T stable_deriv(T x) {
  if (x >= 0) return 1;
  const T r = 1 / (1 - x);  // NaN stays NaN
  return r * r;
}

}  // namespace

#define SOFTZO_DEFINE_LOSS_SCALAR(T, dt)                                                         \
  double softzo_##dt##_rdot_scalar(size_t n, const T* x, const T* w) {                           \
    return double_sum(n, [&](size_t i) { return double(x[i]) * (w ? double(w[i]) : 1.0); });     \
  }                                                                                              \
  double softzo_##dt##_rsumsqdiff_scalar(size_t n, const T* x, T c) {                            \
    return double_sum(n, [&](size_t i) {                                                         \
      const double d = double(x[i]) - double(c);                                                 \
      return d * d;                                                                              \
    });                                                                                          \
  }                                                                                              \
  void softzo_##dt##_vquad_scalar(size_t n, const T* x, T* y, T h, T c2, T c1, T c0) {           \
    for (size_t i = 0; i < n; ++i) {                                                             \
      const T d = x[i] - h;                                                                      \
      y[i] = (c2 * d + c1) * d + c0;                                                             \
    }                                                                                            \
  }                                                                                              \
  double softzo_##dt##_rstablesum_scalar(size_t n, const T* x) {                                 \
    return double_sum(n, [&](size_t i) { return double(stable<T>(x[i])); });                     \
  }                                                                                              \
  void softzo_##dt##_vstable_scalar(size_t n, const T* x, T* y, T a, int deriv) {                \
    for (size_t i = 0; i < n; ++i) y[i] = a * (deriv ? stable_deriv<T>(x[i]) : stable<T>(x[i])); \
  }

extern "C" {
SOFTZO_DEFINE_LOSS_SCALAR(float, f32)
SOFTZO_DEFINE_LOSS_SCALAR(double, f64)
}
