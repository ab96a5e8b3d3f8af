// Portable scalar loss kernels (the fallback ISA and the readable reference for the vector
// files): the cross-entropy and KL passes on the shared scalar exp, and the sums and maps of
// the spherical family and StableMax (sums carried in double, maps in T like the vector code).
#include <math.h>

#include "isa/scalar.h"
#include "kernels/losses/losses_kernels.h"

namespace {

// A plain double sum: these terms may be infinite, which a compensated sum would turn into NaN.
template <typename F>
inline double plain_sum(size_t n, F f) {
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

// Cross-entropy pass 2 (see the contract); q_i == 0 terms are skipped so 0 * -inf adds nothing.
template <typename T>
double softmaxgrad(size_t n, const T* x, T* y, double m, double e, T a, const T* w, const T* t, T b,
                   T c, T s) {
  const ScaledExpTimes<T> p(e, static_cast<double>(a) / m);
  const double shift = static_cast<double>(s);
  return double_sum(n, [&](size_t i) {
    const double xi = static_cast<double>(x[i]);  // read before y[i] (x == y) is written
    double q = (t ? static_cast<double>(b) * static_cast<double>(t[i]) : 0.0) + c;
    if (w) q *= static_cast<double>(w[i]);
    if (y) y[i] = normal_or_zero<T>(static_cast<double>(p(x[i])) - q);
    return q != 0.0 ? q * (xi - shift) : 0.0;
  });
}

template <typename T>
void gradfromexp(size_t n, const T* x, T* y, T s, const T* w, const T* t, T b, T c) {
  const double thr = softzo_flush_threshold(Traits<T>::kMinNormal, static_cast<double>(s));
  for (size_t i = 0; i < n; ++i) {
    double q = (t ? static_cast<double>(b) * static_cast<double>(t[i]) : 0.0) + c;
    if (w) q *= static_cast<double>(w[i]);
    const double p = static_cast<double>(x[i]) >= thr ? static_cast<double>(x[i] * s) : 0.0;
    y[i] = normal_or_zero<T>(p - q);
  }
}

template <typename T>
double klgrad(size_t n, const T* s, const T* t, T* y, double ms, double es, double mt, double et,
              T g, T c) {
  return double_sum(n, [&](size_t i) {
    const double si = static_cast<double>(s[i]), ti = static_cast<double>(t[i]);
    const double p = static_cast<double>(exp_scaled<T>(t[i], et)) / mt;
    if (y) y[i] = normal_or_zero<T>(g * (static_cast<double>(exp_scaled<T>(s[i], es)) / ms - p));
    return p != 0.0 ? p * ((ti - si) - c) : 0.0;
  });
}

}  // namespace

#define SOFTZO_DEFINE_LOSS_SCALAR(T, dt)                                                          \
  double softzo_##dt##_rdot_scalar(size_t n, const T* x, const T* w) {                            \
    return plain_sum(n, [&](size_t i) { return double(x[i]) * (w ? double(w[i]) : 1.0); });       \
  }                                                                                               \
  double softzo_##dt##_rsumsqdiff_scalar(size_t n, const T* x, T c) {                             \
    return plain_sum(n, [&](size_t i) {                                                           \
      const double d = double(x[i]) - double(c);                                                  \
      return d * d;                                                                               \
    });                                                                                           \
  }                                                                                               \
  void softzo_##dt##_vquad_scalar(size_t n, const T* x, T* y, T h, T c2, T c1, T c0) {            \
    for (size_t i = 0; i < n; ++i) {                                                              \
      const T d = x[i] - h;                                                                       \
      y[i] = (c2 * d + c1) * d + c0;                                                              \
    }                                                                                             \
  }                                                                                               \
  double softzo_##dt##_rstablesum_scalar(size_t n, const T* x) {                                  \
    return plain_sum(n, [&](size_t i) { return double(stable<T>(x[i])); });                       \
  }                                                                                               \
  void softzo_##dt##_vstable_scalar(size_t n, const T* x, T* y, T a, int deriv) {                 \
    for (size_t i = 0; i < n; ++i) y[i] = a * (deriv ? stable_deriv<T>(x[i]) : stable<T>(x[i]));  \
  }                                                                                               \
  double softzo_##dt##_vsoftmaxgrad_scalar(size_t n, const T* x, T* y, double m, double e, T a,   \
                                           const T* w, const T* t, T b, T c, T s) {               \
    return softmaxgrad<T>(n, x, y, m, e, a, w, t, b, c, s);                                       \
  }                                                                                               \
  void softzo_##dt##_vgradfromexp_scalar(size_t n, const T* x, T* y, T s, const T* w, const T* t, \
                                         T b, T c) {                                              \
    gradfromexp<T>(n, x, y, s, w, t, b, c);                                                       \
  }                                                                                               \
  double softzo_##dt##_rklgrad_scalar(size_t n, const T* s, const T* t, T* y, double ms,          \
                                      double es, double mt, double et, T g, T c) {                \
    return klgrad<T>(n, s, t, y, ms, es, mt, et, g, c);                                           \
  }

extern "C" {
SOFTZO_DEFINE_LOSS_SCALAR(float, f32)
SOFTZO_DEFINE_LOSS_SCALAR(double, f64)
}
