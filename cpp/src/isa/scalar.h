// Scalar building blocks shared by the scalar kernel files (softmax_scalar.cc,
// losses_scalar.cc): the range reduction and exp in double, the scaled exp with its flush, and
// a compensated double sum. Everything is in an anonymous namespace, so each kernel object keeps
// its own internal copy and exports nothing weak.
#ifndef SOFTZO_ISA_SCALAR_H_
#define SOFTZO_ISA_SCALAR_H_

#include <float.h>
#include <math.h>
#include <stddef.h>

#include <cmath>

#include "kernels/softmax/softmax_kernels.h"

namespace {

// Taylor series to degree 13: |r|^14/14! < 4e-18 on |r| <= ln2/2, below double's 1.1e-16.
inline double exp_poly_f64(double r) {
  double p = 1.0 / 6227020800.0;  // 1/13!
  static const double kInvFact[13] = {1.0 / 479001600.0,
                                      1.0 / 39916800.0,
                                      1.0 / 3628800.0,
                                      1.0 / 362880.0,
                                      1.0 / 40320.0,
                                      1.0 / 5040.0,
                                      1.0 / 720.0,
                                      1.0 / 120.0,
                                      1.0 / 24.0,
                                      1.0 / 6.0,
                                      0.5,
                                      1.0,
                                      1.0};
  for (int i = 0; i < 13; ++i) p = p * r + kInvFact[i];
  return p;
}

template <typename T>
struct Traits;

template <>
struct Traits<float> {
  // ln(2^-126): below it the result would be denormal; we flush to 0 like the vector kernels.
  static constexpr double kMinArg = -87.33654475;
  static constexpr double kMinScaled = SOFTZO_MIN_SCALED_F32;
  static constexpr double kMinNormal = FLT_MIN;
  static constexpr double kMaxArg = 88.72283906;
  static constexpr float kLowest = -FLT_MAX;
  // The double polynomial, rounded once: ~0.5 ulp terms, where the vector kernels' float
  // polynomial reaches 1.98; the fallback ISA can afford it, and its sums gain the accuracy.
  static float poly(double r) { return static_cast<float>(exp_poly_f64(r)); }
};

template <>
struct Traits<double> {
  static constexpr double kMinArg = -708.3964185322641;  // ln(2^-1022)
  static constexpr double kMinScaled = SOFTZO_MIN_SCALED_F64;
  static constexpr double kMinNormal = DBL_MIN;
  static constexpr double kMaxArg = 709.782712893384;
  static constexpr double kLowest = -DBL_MAX;
  static double poly(double r) { return exp_poly_f64(r); }
};

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;
// Cody-Waite split: ln2_hi has 32 significant bits, so n * ln2_hi is exact for |n| < 2^21.
constexpr double kLn2Hi = 0x1.62e42feep-1;
constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;

// Splits exp(x + lo) into p * 2^n; x must be finite and within +-LIMIT, |lo| <= ulp(x)/2.
// lo is added after n ln2 is subtracted, so the rounding error of a difference passed in it is
// not amplified by exp.
template <typename T>
inline T split_exp(T x, double* n_out, T lo = 0) {
  const double n = nearbyint(static_cast<double>(x) * kLog2e);
  const double r = ((static_cast<double>(x) - n * kLn2Hi) - n * kLn2Lo) + static_cast<double>(lo);
  *n_out = n;
  return Traits<T>::poly(r);
}

// exp(hi + lo) for |lo| <= ulp(hi)/2, over the whole domain.
template <typename T>
inline T exp_t(T hi, T lo = 0) {
  if (isnan(hi) || isnan(lo)) return static_cast<T>(NAN);
  if (hi < Traits<T>::kMinArg) return T(0);
  if (hi > Traits<T>::kMaxArg) return static_cast<T>(INFINITY);
  double n;
  const T p = split_exp(hi, &n, lo);
  return static_cast<T>(ldexp(static_cast<double>(p), static_cast<int>(n)));
}

// exp(x - m) with x - m carried exactly as hi + lo (Knuth's TwoSum), so that softmax outputs
// keep their few-ulp accuracy when |x - m| is large (rounding x - m alone costs up to
// ulp(|x - m|)/2 of relative accuracy, ~1e-6 at |x - m| = 20 in float32).
template <typename T>
inline T exp_minus(T x, T m) {
  const T hi = x - m;
  if (!(hi > -INFINITY && hi < INFINITY)) return exp_t<T>(hi);  // -inf, +inf or NaN
  const T bm = hi - x;
  const T lo = (x - (hi - bm)) + (-m - bm);
  return exp_t<T>(hi, lo);
}

// A double sum with Neumaier's compensation: the scalar code has no lanes to spread the
// rounding over, and float64 rows of 1e5+ terms would otherwise lose ~n * 2^-53 relative.
struct CompensatedSum {
  double sum = 0.0, carry = 0.0;
  void add(double v) {
    const double t = sum + v;
    // The rounding error of t is a multiple of the smaller operand's ulp, which is subnormal
    // below 2^-969: there the carry is dropped (2^-53 relative to values that small) rather
    // than formed as a subnormal.
    const double a = std::fabs(sum), b = std::fabs(v);
    if ((a < b ? a : b) >= 0x1p-969) carry += a >= b ? (sum - t) + v : (v - t) + sum;
    sum = t;
  }
  // Scales by f in (0, 1], with sum * f normal (the online update scales 1 + rest); a carry whose
  // product would be subnormal is dropped.
  void scale(double f) {
    sum *= f;
    carry = std::fabs(carry) >= DBL_MIN / f ? carry * f : 0.0;
  }
  double value() const { return sum + carry; }
};

template <typename F>
inline double double_sum(size_t n, F f) {
  CompensatedSum acc;
  for (size_t i = 0; i < n; ++i) acc.add(static_cast<double>(f(i)));
  return acc.value();
}

// exp(x) * 2^-e; 0 where that falls below 2^kMinScaled (-inf included), which also keeps every
// kept value normal. Needs x <= (e + 1) ln2. The test is one branch per element, so raddexp
// ignores the row minimum the AVX2 code uses.
template <typename T>
inline T exp_scaled(T x, double e) {
  if (!(static_cast<double>(x) >= (e + Traits<T>::kMinScaled) * kLn2)) return T(0);
  double n;
  const T p = split_exp(x, &n);
  return static_cast<T>(ldexp(static_cast<double>(p), static_cast<int>(n - e)));
}

// v rounded to T, or 0 where that would be subnormal.
template <typename T>
inline T normal_or_zero(double v) {
  return fabs(v) >= Traits<T>::kMinNormal ? static_cast<T>(v) : T(0);
}

// exp(x) * 2^-e * c, formed as exp(x) * 2^-(e - k) * (c / 2^k) with |c / 2^k| in [1, 2) where
// |c| < 1: the flush to 0 then applies to the result, which is never subnormal.
template <typename T>
struct ScaledExpTimes {
  double e;
  T c;
  ScaledExpTimes(double e_in, double c_in) : e(e_in), c(0) {
    int k = 0;
    const double f = frexp(c_in, &k);  // c = f * 2^k, |f| in [0.5, 1)
    if (fabs(c_in) < 1.0 && c_in != 0.0) {
      e -= k - 1;
      c = static_cast<T>(2.0 * f);
    } else {
      c = static_cast<T>(c_in);
    }
  }
  T operator()(T x) const { return exp_scaled<T>(x, e) * c; }
};

}  // namespace

#endif  // SOFTZO_ISA_SCALAR_H_
