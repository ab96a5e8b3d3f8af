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
// Exactness: no kernel computes x - max. The three-pass kernels compute exp(x) * 2^-e with
// e = round(max * log2 e), so the Cody-Waite reduction r = x - n ln2 (exact with an FMA for
// |x| <= SOFTZO_EXTEXP_LIMIT) is the only subtraction and the 2^(n - e) scaling is exact; the
// rounding of x - max (up to ulp(|x - max|)/2 of relative error, ~1e-6 at 20 in float32) never
// enters. Rows whose max lies outside [-LIMIT + 110, LIMIT] use the exact scalar path at the
// end of this header.
//
// Special values: rmax reports NaN, and ops/softmax_ops.cc sends rows whose max is not finite,
// whose online sum is not finite and positive, or whose two-pass flag is "unsafe", to its
// special-value path. The exp kernels therefore never see NaN; they map -inf to exactly 0 and
// may flush any scaled result below 2^-125 to 0 (those are under 1e-37 of the row's largest).
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

#define SOFTZO_DECLARE_SOFTMAX_KERNELS(T, dt, isa)                                                 \
  /* max_i x_i, or NaN if any x_i is NaN (then *lo is undefined), else *lo = min_i x_i; n >= 1 */  \
  T softzo_##dt##_rmax_##isa(size_t n, const T* x, T* lo);                                         \
  /* sum_i exp(x_i) * 2^-e, for x_i <= (e + 1) ln2 (e from the row max, see above). lo <= every */ \
  /* x_i (-inf if unknown): where lo is above the flush point a kernel may skip the flush. */      \
  double softzo_##dt##_raddexp_##isa(size_t n, const T* x, double e, T lo);                        \
  /* y_i = exp(x_i) * 2^-e; returns sum_i y_i (three-pass reload, pass 2). lo as raddexp. */       \
  double softzo_##dt##_raddstoreexp_##isa(size_t n, const T* x, T* y, double e, T lo);             \
  /* y_i = x_i * s. */                                                                             \
  void softzo_##dt##_vscale_##isa(size_t n, const T* x, T* y, T s);                                \
  /* sum_i exp(max(x_i, -LIMIT)) as an extexp pair; sets *unsafe = 1 if any x_i > LIMIT or */      \
  /* is NaN, and leaves it untouched otherwise. */                                                 \
  softzo_extexp softzo_##dt##_raddextexp_##isa(size_t n, const T* x, int* unsafe);                 \
  /* y_i = exp(x_i) / (m * 2^e), same domain as raddexp: two-pass pass 2 and three-pass */         \
  /* recompute pass 3. */                                                                          \
  void softzo_##dt##_vscaleextexp_##isa(size_t n, const T* x, T* y, double m, double e);           \
  /* One pass: (max, sum_i exp(x_i - max)). NaN/inf inputs give a non-finite sum. */               \
  softzo_online softzo_##dt##_ronlinesumexp_##isa(size_t n, const T* x);                           \
  /* y_i = (x_i - c1) - c2: log_softmax with c1 ~ lse rounded to T and c2 the remainder. */        \
  void softzo_##dt##_vsubc_##isa(size_t n, const T* x, T* y, T c1, T c2);                          \
  /* y_i = exp(x_i), the kernel's own exp (0 below the normal range); for the ULP sweep. */        \
  void softzo_##dt##_vexp_##isa(size_t n, const T* x, T* y);                                       \
  /* Cross-entropy pass 2. With p_i = exp(x_i) / (m * 2^e) (domain as vscaleextexp) and */         \
  /* target weights q_i = w_i * (b * t_i + c) (null w: w_i = 1; null t: t_i = 0), writes */        \
  /* y_i = a * p_i - q_i unless y is null, and returns sum_i q_i * x_i, terms with q_i == 0 */     \
  /* counting 0 (so -inf logits of untargeted classes add nothing). x == y allowed. */             \
  double softzo_##dt##_vsoftmaxgrad_##isa(size_t n, const T* x, T* y, double m, double e, T a,     \
                                          const T* w, const T* t, T b, T c);                       \
  /* Fused KL(p || q) of two rows: p_i = exp(t_i) / (mt * 2^et), q_i = exp(s_i) / (ms * 2^es) */   \
  /* (teacher t, student s, domains as vscaleextexp). Writes y_i = g * (q_i - p_i) unless y */     \
  /* is null (y == s allowed) and returns sum_i p_i * ((t_i - s_i) - c), terms with p_i == 0 */    \
  /* counting 0; c = lse(t) - lse(s) makes the terms vanish when the rows agree. */                \
  double softzo_##dt##_rklgrad_##isa(size_t n, const T* s, const T* t, T* y, double ms, double es, \
                                     double mt, double et, T g, T c);

#define SOFTZO_DECLARE_SOFTMAX_ISA(isa)           \
  SOFTZO_DECLARE_SOFTMAX_KERNELS(float, f32, isa) \
  SOFTZO_DECLARE_SOFTMAX_KERNELS(double, f64, isa)

SOFTZO_DECLARE_SOFTMAX_ISA(scalar)
SOFTZO_DECLARE_SOFTMAX_ISA(avx2)
SOFTZO_DECLARE_SOFTMAX_ISA(avx512)
SOFTZO_DECLARE_SOFTMAX_ISA(avx512emu)

// The exact path for rows whose max lies outside [-LIMIT + 110, LIMIT] (e.g. 1e30 entries or
// rows of only -1e30), any ISA: scalar loops that carry x - m exactly (in double, or a TwoSum
// for float64). m is the finite row max. Slow, and only such rare rows take it.
double softzo_f32_raddexpminusmax_exact(size_t n, const float* x, float m);
double softzo_f64_raddexpminusmax_exact(size_t n, const double* x, double m);
void softzo_f32_vscaleexpminusmax_exact(size_t n, const float* x, float* y, float m, float s);
void softzo_f64_vscaleexpminusmax_exact(size_t n, const double* x, double* y, double m, double s);

#ifdef __cplusplus
}
#endif

#endif  // SOFTZO_KERNELS_SOFTMAX_KERNELS_H_
