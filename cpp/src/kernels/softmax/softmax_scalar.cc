// Portable scalar softmax-family kernels: the fallback ISA and the readable reference for the
// vector files (same range reduction; exps, sums and differences carried in double).
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "isa/scalar.h"
#include "kernels/softmax/softmax_kernels.h"

namespace {

template <typename T>
T rmax(size_t n, const T* x, T* lo, size_t* imax) {
  T m = -INFINITY, mn = INFINITY;
  size_t at = 0;
  bool nan = false;
  for (size_t i = 0; i < n; ++i) {
    nan = nan || isnan(x[i]);
    if (x[i] > m) {
      m = x[i];
      at = i;
    }
    mn = x[i] < mn ? x[i] : mn;
  }
  *lo = mn;
  *imax = at;
  return nan ? static_cast<T>(NAN) : m;
}

template <typename T>
double raddexp(size_t n, const T* x, double e) {
  return double_sum(n, [&](size_t i) { return exp_scaled<T>(x[i], e); });
}

template <typename T>
double raddstoreexp(size_t n, const T* x, T* y, double e) {
  return double_sum(n, [&](size_t i) {
    const T v = exp_scaled<T>(x[i], e);
    y[i] = v;
    return v;
  });
}

template <typename T>
void vscale(size_t n, const T* x, T* y, T s) {
  const double thr = softzo_flush_threshold(Traits<T>::kMinNormal, static_cast<double>(s));
  for (size_t i = 0; i < n; ++i) {
    const T v = static_cast<double>(x[i]) >= thr ? x[i] * s : T(0);
    y[i] = v < T(1) ? v : T(1);
  }
}

template <typename T>
void vscaleextexp(size_t n, const T* x, T* y, double m, double e) {
  const ScaledExpTimes<T> f(e, 1.0 / m);
  for (size_t i = 0; i < n; ++i) {
    const T v = f(x[i]);
    y[i] = v < T(1) ? v : T(1);
  }
}

// The online state (max, rest): the max's own term is the implicit 1. A larger x moves the old
// max (1) into the rest and rescales it by exp(m - x); anything else adds exp(x - m). Starting
// at the lowest finite value with rest = -1 (a total of 0) keeps -inf - start = -inf (a 0 term)
// instead of the NaN that -inf - (-inf) would give on masked stretches.
template <typename T>
softzo_online ronlinesumexp(size_t n, const T* x) {
  T m = Traits<T>::kLowest;
  CompensatedSum rest;
  rest.add(-1.0);
  for (size_t i = 0; i < n; ++i) {
    if (isnan(x[i])) {
      softzo_online nan_out = {static_cast<double>(m), NAN};
      return nan_out;
    }
    if (x[i] > m) {
      rest.add(1.0);
      rest.scale(exp_minus<T>(m, x[i]));
      m = x[i];
    } else {
      rest.add(exp_minus<T>(x[i], m));
    }
  }
  const double r = rest.value();
  softzo_online out = {r == -1.0 ? -static_cast<double>(INFINITY) : static_cast<double>(m), r};
  return out;
}

template <typename T>
void vsubc(size_t n, const T* x, T* y, T c1, T c2) {
  for (size_t i = 0; i < n; ++i) y[i] = (x[i] - c1) - c2;
}

template <typename T>
void vexp(size_t n, const T* x, T* y) {
  for (size_t i = 0; i < n; ++i) y[i] = exp_t<T>(x[i]);
}

}  // namespace

#define SOFTZO_DEFINE_SCALAR(T, dt)                                                            \
  T softzo_##dt##_rmax_scalar(size_t n, const T* x, T* lo, size_t* imax) {                     \
    return rmax<T>(n, x, lo, imax);                                                            \
  }                                                                                            \
  double softzo_##dt##_raddexp_scalar(size_t n, const T* x, double e, T) {                     \
    return raddexp<T>(n, x, e);                                                                \
  }                                                                                            \
  double softzo_##dt##_raddstoreexp_scalar(size_t n, const T* x, T* y, double e, T) {          \
    return raddstoreexp<T>(n, x, y, e);                                                        \
  }                                                                                            \
  void softzo_##dt##_vscale_scalar(size_t n, const T* x, T* y, T s) { vscale<T>(n, x, y, s); } \
  void softzo_##dt##_vscaleextexp_scalar(size_t n, const T* x, T* y, double m, double e) {     \
    vscaleextexp<T>(n, x, y, m, e);                                                            \
  }                                                                                            \
  softzo_online softzo_##dt##_ronlinesumexp_scalar(size_t n, const T* x) {                     \
    return ronlinesumexp<T>(n, x);                                                             \
  }                                                                                            \
  void softzo_##dt##_vsubc_scalar(size_t n, const T* x, T* y, T c1, T c2) {                    \
    vsubc<T>(n, x, y, c1, c2);                                                                 \
  }                                                                                            \
  void softzo_##dt##_vexp_scalar(size_t n, const T* x, T* y) { vexp<T>(n, x, y); }             \
  double softzo_##dt##_raddexpminusmax_exact(size_t n, const T* x, T m, size_t skip) {         \
    return double_sum(n, [&](size_t i) { return i == skip ? T(0) : exp_minus<T>(x[i], m); });  \
  }                                                                                            \
  void softzo_##dt##_vscaleexpminusmax_exact(size_t n, const T* x, T* y, T m, T s) {           \
    for (size_t i = 0; i < n; ++i)                                                             \
      y[i] = normal_or_zero<T>(static_cast<double>(exp_minus<T>(x[i], m)) * s);                \
  }

extern "C" {
SOFTZO_DEFINE_SCALAR(float, f32)
SOFTZO_DEFINE_SCALAR(double, f64)
}
