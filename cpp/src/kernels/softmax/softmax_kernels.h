// The C-style contract every softmax-family kernel file implements, once per ISA.
//
// Each ISA file (softmax_scalar.cc, softmax_avx2.cc, softmax_avx512.cc) defines the functions
// below with its ISA suffix pasted onto the name, e.g. softzo_f32_raddexp_avx2. The emulated
// AVX-512 build compiles softmax_avx512.cc a second time, under SOFTZO_EMULATE_AVX512, with the
// suffix avx512emu. Kernels take raw pointers and counts, allocate nothing, never read or write
// past x[n-1] / y[n-1], and accept n == 0 unless stated. x == y (in place) is allowed wherever
// both appear. Sums are returned in double: lanes accumulate in T over short blocks and are
// folded into double, so the relative error of a sum stays ~1e-7 for any n (float32).
//
// Exactness: no kernel rounds x - max. The scaled kernels compute exp(x) * 2^-e with
// e = round(max * log2 e), so the Cody-Waite reduction r = x - n ln2 (exact with an FMA for
// |x| <= SOFTZO_EXTEXP_LIMIT) is the only subtraction and the 2^(n - e) scaling is exact; the
// rounding of x - max (up to ulp(|x - max|)/2 of relative error, ~1e-6 at 20 in float32) never
// enters. The online kernel, which has no fixed e, carries x - max exactly as a TwoSum. Rows
// whose max lies outside [-LIMIT + 110, LIMIT] use the exact scalar path at the end of this
// header. The two-pass algorithm is built in ops from rmax and raddexp over 8 KiB blocks.
//
// Special values: rmax reports NaN, and ops/softmax_ops.cc sends rows whose max is not finite
// (or beyond the scaled range) and rows whose online state is not finite to its special-value
// or exact path. The exp kernels therefore never see NaN; they map -inf to exactly 0 and flush
// scaled results below 2^SOFTZO_MIN_SCALED_* to 0 (below 1e-37 of the row's largest in float).
#ifndef SOFTZO_KERNELS_SOFTMAX_KERNELS_H_
#define SOFTZO_KERNELS_SOFTMAX_KERNELS_H_

#include <math.h>
#include <stddef.h>

#include "kernels/kernel_list.h"

#ifdef __cplusplus
extern "C" {
#endif

// exp(a - b) for finite a, b with a - b >= -708 (merging online states): a - b is carried
// exactly (TwoSum) and its rounding error applied to first order, since rounding a - b alone
// costs ulp(|a - b|)/2 of relative accuracy, 80 ulp at |a - b| = 80 in double. Static inline:
// every object keeps its own copy, so nothing is emitted as a weak symbol.
// The least x >= 0 whose product with |c| is normal, for a flush before multiplying: min_normal
// / |c| widened by 2^-20 so that every kept product stays normal after rounding, and never
// below min_normal itself (min_normal / c for |c| > 1 would be a subnormal threshold).
static inline double softzo_flush_threshold(double min_normal, double c) {
  const double a = fabs(c);
  return a >= 1.0 ? min_normal : min_normal / a * (1.0 + 0x1p-20);
}

static inline double softzo_exp_of_difference(double a, double b) {
  const double d = a - b, bb = d - a;
  const double err = (a - (d - bb)) - (b + bb);
  const double y = exp(d);
  return fma(y, err, y);
}

// The online algorithm's state (Milakov & Gimelshein 2018), kept so that the largest element's
// own term is exactly 1: the row's sum of exps is exp(max) * (1 + rest), rest being the sum of
// exp(x_i - max) over every element but one occurrence of the max. That keeps lse - max =
// log1p(rest) relatively accurate when the max dominates. No element (or only -inf): max = -inf
// and rest = -1 (a sum of 0).
typedef struct {
  double max;
  double rest;
} softzo_online;

// Rows whose max exceeds this, or holds NaN, leave the scaled kernels for the exact scalar path
// or the special-value path (ops); rows whose max lies below -LIMIT + 110 take the exact path
// too. Within +-LIMIT the Cody-Waite reduction with an FMA is exact to well below 1 ulp.
#define SOFTZO_EXTEXP_LIMIT 65536.0

// No kernel produces or consumes a subnormal number on the paths ops uses (subnormal arithmetic
// costs ~100 cycles per operation on many cores, and made wide-spread rows 8-10x slower): scaled
// exps below 2^SOFTZO_MIN_SCALED_* are flushed to exactly 0 before any further arithmetic, and
// results that would fall below the smallest normal are flushed the same way. With p(r) >=
// 2^-0.5 these are the lowest exponents that keep p * 2^(n - e) normal. Outputs (a flushed term
// times a factor in [1, 2)) below 2^-124 (float, 4x FLT_MIN) or 2^-1020 (double, 4x DBL_MIN)
// may therefore be 0.
#define SOFTZO_MIN_SCALED_F32 (-125.0)
#define SOFTZO_MIN_SCALED_F64 (-1021.0)

// Terms of a row's rest are summed at 2^-(e - SOFTZO_REST_SHIFT), that is 2^64 above the row
// max's scale, so that the flush drops only what lies below 2^-(125 + 64) of the max: the rest
// stays relatively accurate down to where lse - max itself falls below the smallest normal. Every
// scaled kernel accepts elements up to 2^65 times 2^e (the bit tricks hold up to 2^127).
#define SOFTZO_REST_SHIFT 64.0

// The softmax family's kernels (see kernels/kernel_list.h).
#define SOFTZO_SOFTMAX_KERNELS(X, T, dt, isa)                                                     \
  /* max_i x_i, or NaN if any x_i is NaN (then *lo and *imax are undefined), else *lo = min_i */  \
  /* x_i and *imax = the index of the first max; n >= 1. */                                       \
  X(T, rmax, (size_t n, const T* x, T* lo, size_t* imax), dt, isa)                                \
  /* sum_i exp(x_i) * 2^-e, for x_i <= (e + 1 + SOFTZO_REST_SHIFT) ln2 (e from the row max, or */ \
  /* SOFTZO_REST_SHIFT below it for the rest of a row, see ops/exp_sums.h). lo <= every */        \
  /* x_i (-inf if unknown): where lo is above the flush point a kernel may skip the flush. */     \
  X(double, raddexp, (size_t n, const T* x, double e, T lo), dt, isa)                             \
  /* y_i = exp(x_i) * 2^-e; returns sum_i y_i (three-pass reload, pass 2). lo as raddexp. */      \
  X(double, raddstoreexp, (size_t n, const T* x, T* y, double e, T lo), dt, isa)                  \
  /* Softmax's last pass: y_i = min(x_i * s, 1) for x_i >= 0, s > 0, and 0 where x_i * s would */ \
  /* fall below T's smallest normal (x_i is zeroed before the multiply: no subnormal is ever */   \
  /* formed). The min keeps entries <= 1 whatever the rounding of s. */                           \
  X(void, vscale, (size_t n, const T* x, T* y, T s), dt, isa)                                     \
  /* y_i = min(exp(x_i) / (m * 2^e), 1), same domain as raddexp, m > 0 (two-pass pass 2, */       \
  /* three-pass recompute pass 3); m's binary exponent is folded into e, so results below */      \
  /* 2^(MIN_SCALED + 1) may be 0, never subnormal. */                                             \
  X(void, vscaleextexp, (size_t n, const T* x, T* y, double m, double e), dt, isa)                \
  /* One pass: the online state above. NaN inputs give rest = NaN, +inf gives max = +inf. */      \
  X(softzo_online, ronlinesumexp, (size_t n, const T* x), dt, isa)                                \
  /* y_i = (x_i - c1) - c2: log_softmax with c1 = max and c2 = log1p(rest). */                    \
  X(void, vsubc, (size_t n, const T* x, T* y, T c1, T c2), dt, isa)                               \
  /* y_i = exp(x_i), the kernel's own exp (0 below the normal range); for the ULP sweep. */       \
  X(void, vexp, (size_t n, const T* x, T* y), dt, isa)

#define SOFTZO_DECLARE_SOFTMAX(...) SOFTZO_KERNEL_DECLARE(, __VA_ARGS__)
#define SOFTZO_DECLARE_SOFTMAX_ISA(isa)                           \
  SOFTZO_SOFTMAX_KERNELS(SOFTZO_DECLARE_SOFTMAX, float, f32, isa) \
  SOFTZO_SOFTMAX_KERNELS(SOFTZO_DECLARE_SOFTMAX, double, f64, isa)
SOFTZO_FOR_EACH_KERNEL_ISA(SOFTZO_DECLARE_SOFTMAX_ISA)

// The exact path for rows whose max lies outside [-LIMIT + 110, LIMIT] (e.g. 1e30 entries or
// rows of only -1e30), any ISA: scalar loops that carry x - m exactly (in double, or a TwoSum
// for float64). m is the finite row max. Slow, and only such rare rows take it. The sum leaves
// out element `skip` (the max's own term, 1, which ops adds exactly); skip >= n leaves none.
double softzo_f32_raddexpminusmax_exact(size_t n, const float* x, float m, size_t skip);
double softzo_f64_raddexpminusmax_exact(size_t n, const double* x, double m, size_t skip);
void softzo_f32_vscaleexpminusmax_exact(size_t n, const float* x, float* y, float m, float s);
void softzo_f64_vscaleexpminusmax_exact(size_t n, const double* x, double* y, double m, double s);

#ifdef __cplusplus
}
#endif

#endif  // SOFTZO_KERNELS_SOFTMAX_KERNELS_H_
