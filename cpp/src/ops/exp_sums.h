// A row's sum of exps with the largest element's own term kept apart, the two-pass (extended
// exponent) sum built from the rmax and raddexp kernels, and the scalar helpers both op files
// (softmax_ops.cc, losses_ops.cc) use to turn it into lse, log-probabilities and losses.
//
// Why the max's term is kept apart: late in training one logit dominates its row, and what
// matters (lse - max, the target's log-probability, the loss) is log(1 + rest) with a tiny rest.
// Summed together with the dominant term, rest drowns in that term's rounding (about 2^-24
// absolute in float32), which cost up to 2e4x PyTorch's relative error and gave positive
// log-probabilities. Kept apart, lse - max = log1p(rest / term) keeps rest's relative accuracy.
#ifndef SOFTZO_OPS_EXP_SUMS_H_
#define SOFTZO_OPS_EXP_SUMS_H_

#include <cmath>
#include <cstddef>

#include "dispatch/dispatch.h"

namespace softzo {

constexpr double kLog2e = 1.44269504088896340736;

constexpr double kLn2Hi = 0x1.62e42feep-1;  // e * kLn2Hi is exact for |e| < 2^21
constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;

// The precision a row's final log1p and lse are taken in: double for float rows; for double
// rows long double, which is wider on x86-64 (x87's 64-bit mantissa: logsumexp then rounds
// once) and the same as double elsewhere (the TwoSum in softmax_ops.cc still holds there).
template <typename T>
struct Wide {
  typedef double type;
};
template <>
struct Wide<double> {
  typedef long double type;
};

// sum_i exp(x_i) = 2^e * (exp(max) 2^-e + rest): term = exp(max) * 2^-e as the kernels compute
// it (to sum the parts of a row), rest = the other elements' terms. Empty (or only -inf so far):
// max = -inf, term = rest = 0.
struct ExpSum {
  double max = -INFINITY;
  double e = 0.0;
  double term = 0.0;
  double rest = 0.0;
  double carry = 0.0;  // rest's rounding error (Neumaier), so block-by-block sums stay exact

  // rest += v, compensated: a 64M-element row adds 32K block sums, whose plain roundings would
  // cost float64 outputs ~2 ulp.
  void add_rest(double v) {
    const double t = rest + v, a = std::fabs(rest), b = std::fabs(v);
    // The error is a multiple of the smaller operand's ulp, subnormal below 2^-969: dropped
    // there (2^-53 relative to values that small) rather than formed.
    if ((a < b ? a : b) >= 0x1p-969) carry += a >= b ? (rest - t) + v : (v - t) + rest;
    rest = t;
  }
  double rest_value() const { return rest + carry; }
  // exp(max) * 2^-e in double (e * kLn2Hi is exact, max - e * kLn2Hi too), rather than the
  // kernels' float-precision term, whose ~1 ulp would otherwise add to every output's own.
  double exact_term() const { return std::exp((max - e * kLn2Hi) - e * kLn2Lo); }
  // The row's sum of exps in units of 2^e, for the probabilities (softmax, gradients).
  double normalizer() const { return exact_term() + rest_value(); }
  // lse - max, relatively accurate however small: the max's own term counts exactly 1 (two-
  // element rows: 4.3 -> 2.5 ulp against the kernels' term).
  double log1p_rest() const { return std::log1p(rest_ratio()); }
  // The others' terms over the max's own: lse - max = log1p(rest_ratio()).
  double rest_ratio() const {
    const double r = rest_value();
    // A rest below 2^-1020 (float64 rows only) is within the stated flush floor: 0, rather
    // than a subnormal quotient.
    if (!(r >= 0x1p-1020)) return r == r ? 0.0 : r;
    return r / exact_term();
  }
};

// v * 2^k for k <= 0, or 0 where that would be subnormal (below 2^-1022: never formed).
inline double scale_down(double v, double k) {
  if (v == 0.0) return 0.0;
  int ev = 0;
  std::frexp(v, &ev);
  return ev + k < -1021.0 ? 0.0 : std::ldexp(v, static_cast<int>(k));
}

// The sum of two parts, a before b in row order (a tie keeps a's max; b's term joins the rest).
inline ExpSum merge(const ExpSum& a, const ExpSum& b) {
  const bool b_big = b.max > a.max;
  const ExpSum& big = b_big ? b : a;
  const ExpSum& small = b_big ? a : b;
  ExpSum r = big;
  r.add_rest(scale_down(small.term + small.rest_value(), small.e - big.e));
  return r;
}

// The scaled kernels' range for the row max (see kernels/softmax/softmax_kernels.h).
inline bool in_scaled_range(double m) {
  return m <= SOFTZO_EXTEXP_LIMIT && m >= -SOFTZO_EXTEXP_LIMIT + 110.0;
}

// e = round(m log2 e), clamped so that the kernels' bit tricks stay valid (rows whose max lies
// outside the scaled range are never finished from such an e).
inline double exponent_of(double m) {
  const double c = m < -SOFTZO_EXTEXP_LIMIT ? -SOFTZO_EXTEXP_LIMIT
                                            : (m > SOFTZO_EXTEXP_LIMIT ? SOFTZO_EXTEXP_LIMIT : m);
  return std::nearbyint(c * kLog2e);
}

// sum_i exp(x_i) * 2^-e for a row's rest (elements <= its max, whose exponent is e): summed at
// 2^-(e - SOFTZO_REST_SHIFT), so that terms far below the max are flushed only below 2^-189 of it
// (float), then scaled back exactly.
template <typename T>
double rest_sum(const SoftmaxKernels<T>& k, const T* x, size_t n, double e, T lo) {
  return scale_down(k.raddexp(n, x, e - SOFTZO_REST_SHIFT, lo), -SOFTZO_REST_SHIFT);
}

// The sum with the element at imax (the row max m, within the scaled range) kept apart:
// raddexp on both sides of it and on it alone.
template <typename T>
ExpSum split_sum(const SoftmaxKernels<T>& k, const T* x, size_t n, size_t imax, double e, T lo) {
  ExpSum s;
  s.max = static_cast<double>(x[imax]);
  s.e = e;
  s.term = k.raddexp(1, x + imax, e, x[imax]);
  s.add_rest(rest_sum(k, x, imax, e, lo));
  s.add_rest(rest_sum(k, x + imax + 1, n - imax - 1, e, lo));
  return s;
}

// Pass 1 of the two-pass algorithm (Dukhan & Ablavatski 2020), blocked: each 8 KiB block is
// read by rmax and then, from L1, by raddexp, so memory is read once. A block joins the running
// sum at the running exponent unless it holds a new row maximum, in which case it is summed at
// its own exponent with that maximum kept apart and the running sum is rescaled by an exact
// power of two. Exponents come from maxima, so nothing overflows and the kernels flush only
// what lies below 2^-124 (float) of the row max: no subnormal is formed, whatever the spread
// of the row (the old per-element (mantissa, exponent) update slowed down 8-10x on rows spread
// over more than ~87). Rows with NaN or an element above LIMIT set *unsafe and stop early; the
// caller sends them to the exact paths.
template <typename T>
ExpSum blocked_exp_sum(const SoftmaxKernels<T>& k, const T* x, size_t n, bool* unsafe) {
  constexpr size_t kBlock = 8192 / sizeof(T);  // a quarter of L1d, as the measured best of 2-16K
  ExpSum acc;
  for (size_t start = 0; start < n; start += kBlock) {
    const size_t len = n - start < kBlock ? n - start : kBlock;
    T lo;
    size_t imax;
    const T bm = k.rmax(len, x + start, &lo, &imax);
    if (!(bm <= static_cast<T>(SOFTZO_EXTEXP_LIMIT))) {  // NaN or beyond the scaled range
      *unsafe = true;
      return acc;
    }
    if (static_cast<double>(bm) > acc.max) {
      acc = merge(acc, split_sum(k, x + start, len, imax, exponent_of(bm), lo));
    } else {
      acc.add_rest(rest_sum(k, x + start, len, acc.e, lo));
    }
  }
  return acc;
}

}  // namespace softzo

#endif  // SOFTZO_OPS_EXP_SUMS_H_
