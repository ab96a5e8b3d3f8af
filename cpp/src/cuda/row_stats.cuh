// A row's statistics on the device (max, its first index, rest = the sum of exp(x - max) over
// the other elements) and the softmax-family outputs they give: shared by the softmax family
// and the fused losses, as ops/exp_sums.h is on the CPU.
#pragma once

#include <cmath>

#include "cuda/cuda_common.cuh"

namespace softzo {
namespace cuda {

constexpr double kLimit = 65536.0;   // SOFTZO_EXTEXP_LIMIT (kernels/softmax/softmax_kernels.h)
constexpr double kRestShift = 64.0;  // SOFTZO_REST_SHIFT: the rest is summed 2^64 above scale
constexpr double kLog2e = 1.44269504088896340736;
constexpr double kLn2Hi = 0x1.62e42feep-1;  // e * kLn2Hi exact for |e| < 2^21
constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;

enum Status : int { kNormal = 0, kNan = 1, kPosInf = 2, kAllNegInf = 3 };

// A row's (or chunk's) statistics: max, its first index, and rest relative to the max.
struct RowStats {
  double max;
  double rest;
  int64_t at;
  int status;
};

struct Shared {
  MaxAt maxat[kMaxWarps];
  double sums[kMaxWarps];
};

__device__ __forceinline__ bool in_scaled_range(double m) {
  return m <= kLimit && m >= -kLimit + 110.0;
}

// exp(max) 2^-e in double: the max's own term at the scale the kernels sum at.
__device__ __forceinline__ double exact_term(double m, double e) {
  return exp((m - e * kLn2Hi) - e * kLn2Lo);
}

// Max, first index and rest of x[lo, hi) by the whole block (every thread gets the result).
template <typename T>
__device__ RowStats range_stats(const T* x, int64_t lo, int64_t hi, Shared& sh) {
  MaxAt mine{-INFINITY, INT64_MAX, 0};
  visit(
      x, lo, hi,
      [&](int64_t i, float v) {
        if (v > mine.max) {
          mine.max = v;
          mine.at = i;
        }
        mine.nan |= v != v;
      },
      [] {});
  const MaxAt b = block_max(mine, sh.maxat);
  RowStats s{b.max, 0.0, b.at, kNormal};
  if (b.nan) {
    s.status = kNan;
  } else if (b.max == INFINITY) {
    s.status = kPosInf;
  } else if (b.max == -INFINITY) {
    s.status = kAllNegInf;
  }
  if (s.status != kNormal) return s;
  const double m = b.max;
  double acc = 0.0;
  if (in_scaled_range(m)) {
    const double e = nearbyint(m * kLog2e);
    const Scale sc = make_scale(e - kRestShift);
    float part = 0.0f;
    visit(
        x, lo, hi,
        [&](int64_t i, float v) {
          part += i == b.at ? 0.0f : scaled_exp<IsFloat<T>::value>(v, sc);
        },
        [&] {
          acc += static_cast<double>(part);
          part = 0.0f;
        });
    acc = block_sum(acc, sh.sums);
    s.rest = ldexp(acc, -static_cast<int>(kRestShift)) / exact_term(m, e);
  } else {  // far range (1e30-style masks): x - M exact in double, one double exp each
    visit(
        x, lo, hi,
        [&](int64_t i, float v) { acc += i == b.at ? 0.0 : exp(static_cast<double>(v) - m); },
        [] {});
    s.rest = block_sum(acc, sh.sums);
  }
  return s;
}

// What the output pass needs from a row's statistics.
struct Finish {
  int status;
  bool scaled;       // in the scaled range: exp(x) 2^-e, else exact double exps
  float max;         // M
  Scale scale;       // 2^-e
  float inv;         // 1 / (exp(M) 2^-e (1 + rest))  (scaled) ...
  double inv_exact;  // ... or 1 / (1 + rest)         (far range)
  float log1p_rest;  // lse - M
};

__device__ __forceinline__ Finish make_finish(const RowStats& s) {
  Finish f{};
  f.status = s.status;
  f.max = static_cast<float>(s.max);
  if (s.status != kNormal) return f;
  f.scaled = in_scaled_range(s.max);
  f.log1p_rest = static_cast<float>(log1p(s.rest));
  if (f.scaled) {
    const double e = nearbyint(s.max * kLog2e);
    f.scale = make_scale(e);
    f.inv = static_cast<float>(1.0 / (exact_term(s.max, e) * (1.0 + s.rest)));
  } else {
    f.inv_exact = 1.0 / (1.0 + s.rest);
  }
  return f;
}

// logsumexp of a row from its statistics, PyTorch's values for the special rows.
__device__ __forceinline__ double special_lse(const RowStats& s) {
  switch (s.status) {
    case kNan:
      return NAN;
    case kPosInf:
      return INFINITY;
    case kAllNegInf:
      return -INFINITY;
    default:
      return s.max + log1p(s.rest);
  }
}

}  // namespace cuda
}  // namespace softzo
