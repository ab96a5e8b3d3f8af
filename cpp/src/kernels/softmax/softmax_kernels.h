// The C-style contract every softmax-family kernel file implements, once per ISA.
//
// Each ISA file (softmax_scalar.cc, softmax_avx2.cc, softmax_avx512.cc) defines the functions
// below with its ISA suffix pasted onto the name, e.g. softzo_f32_raddexpminusmax_avx2. The
// emulated AVX-512 build compiles softmax_avx512.cc a second time with SOFTZO_ISA_SUFFIX
// set to avx512emu. Kernels take raw pointers and counts, allocate nothing, never read or write
// past x[n-1] / y[n-1], and accept n == 0 unless stated. x == y (in place) is allowed wherever
// both appear. Sums are returned in double: lanes accumulate in T over short blocks and are
// folded into double, so the relative error of a sum stays ~1e-7 for any n (float32).
//
// Special values: rmax reports NaN, and ops/softmax_ops.cc sends rows whose max is not finite,
// whose online sum is not finite and positive, or whose two-pass flag is "unsafe", to its exact
// special-value path. The exp(x - m) kernels therefore see no NaN and a finite m >= every x;
// they must map exp(-inf) (also -FLT_MAX - FLT_MAX) to exactly 0.
#ifndef SOFTZO_KERNELS_SOFTMAX_KERNELS_H_
#define SOFTZO_KERNELS_SOFTMAX_KERNELS_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// An "extended exponent" number m * 2^e (Dukhan & Ablavatski 2020); e is integer-valued.
// m == 0 means the empty sum.
typedef struct {
  double m;
  double e;
} softzo_extexp;

// max + log(sum): the running state of the online algorithm (Milakov & Gimelshein 2018);
// the represented sum is sum * exp(max).
typedef struct {
  double max;
  double sum;
} softzo_online;

// Elements below -SOFTZO_EXTEXP_LIMIT are clamped to it in the two-pass kernels (and written as
// exactly 0 in pass 2); elements above it, or NaN, set *unsafe. Within +-65536 the Cody-Waite
// reduction with an FMA is exact to well below 1 ulp, and ops only uses the two-pass result
// when the row maximum exceeds -LIMIT + 110 (so clamped elements are below e^-104 relative,
// i.e. under float32's smallest denormal).
#define SOFTZO_EXTEXP_LIMIT 65536.0

#define SOFTZO_DECLARE_SOFTMAX_KERNELS(T, dt, isa)                                            \
  /* max_i x_i, or NaN if any x_i is NaN; n >= 1. */                                          \
  T softzo_##dt##_rmax_##isa(size_t n, const T* x);                                           \
  /* sum_i exp(x_i - m), with x_i - m carried exactly into the exp's reduction. */            \
  double softzo_##dt##_raddexpminusmax_##isa(size_t n, const T* x, T m);                      \
  /* y_i = exp(x_i - m); returns sum_i y_i (three-pass reload, pass 2). */                    \
  double softzo_##dt##_raddstoreexpminusmax_##isa(size_t n, const T* x, T* y, T m);           \
  /* y_i = x_i * s. */                                                                        \
  void softzo_##dt##_vscale_##isa(size_t n, const T* x, T* y, T s);                           \
  /* y_i = exp(x_i - m) * s. */                                                               \
  void softzo_##dt##_vscaleexpminusmax_##isa(size_t n, const T* x, T* y, T m, T s);           \
  /* sum_i exp(max(x_i, -LIMIT)) as an extexp pair; sets *unsafe = 1 if any x_i > LIMIT or */ \
  /* is NaN, and leaves it untouched otherwise. */                                            \
  softzo_extexp softzo_##dt##_raddextexp_##isa(size_t n, const T* x, int* unsafe);            \
  /* y_i = exp(x_i) / (m * 2^e) for x_i >= -LIMIT, and exactly 0 below; x_i <= LIMIT. */      \
  void softzo_##dt##_vscaleextexp_##isa(size_t n, const T* x, T* y, double m, double e);      \
  /* One pass: (max, sum_i exp(x_i - max)). NaN/inf inputs give a non-finite sum. */          \
  softzo_online softzo_##dt##_ronlinesumexp_##isa(size_t n, const T* x);                      \
  /* y_i = (x_i - c1) - c2: log_softmax with c1 ~ max (or rounded lse) and c2 the remainder. */ \
  void softzo_##dt##_vsubc_##isa(size_t n, const T* x, T* y, T c1, T c2);                     \
  /* y_i = exp(x_i), the kernel's own exp (0 below the denormal cutoff); for the ULP sweep. */ \
  void softzo_##dt##_vexp_##isa(size_t n, const T* x, T* y);

#define SOFTZO_DECLARE_SOFTMAX_ISA(isa)               \
  SOFTZO_DECLARE_SOFTMAX_KERNELS(float, f32, isa)     \
  SOFTZO_DECLARE_SOFTMAX_KERNELS(double, f64, isa)

SOFTZO_DECLARE_SOFTMAX_ISA(scalar)
SOFTZO_DECLARE_SOFTMAX_ISA(avx2)
SOFTZO_DECLARE_SOFTMAX_ISA(avx512)
SOFTZO_DECLARE_SOFTMAX_ISA(avx512emu)

#ifdef __cplusplus
}
#endif

#endif  // SOFTZO_KERNELS_SOFTMAX_KERNELS_H_
