// The C-style contract of the loss kernels, once per ISA: the cross-entropy and KL passes (on
// the scaled exp of the softmax family, whose header this includes) and the sums and
// elementwise maps of the spherical family (Z-loss, spherical and Taylor softmax) and StableMax.
//
// Conventions as in kernels/softmax/softmax_kernels.h: ISA suffix pasted onto the name
// (scalar, avx2, avx512, avx512emu), raw pointers and counts, nothing allocated, nothing read
// or written past element n - 1, n == 0 allowed, x == y allowed. Sums accumulate in T over
// short blocks and are folded into double lanes, so their relative error stays ~1e-7 (float32)
// for any n. NaN and inf propagate through every sum and map.
#ifndef SOFTZO_KERNELS_LOSSES_LOSSES_KERNELS_H_
#define SOFTZO_KERNELS_LOSSES_LOSSES_KERNELS_H_

#include <stddef.h>

#include "kernels/kernel_list.h"
#include "kernels/softmax/softmax_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

// The loss family's kernels (see kernels/kernel_list.h).
#define SOFTZO_LOSS_KERNELS(X, T, dt, isa)                                                         \
  /* Cross-entropy pass 2. With p_i = exp(x_i) / (m * 2^e) (e from the row max, m its sum of */    \
  /* scaled exps) and target weights q_i = w_i * (b * t_i + c) (null w: w_i = 1; null t: */        \
  /* t_i = 0), writes y_i = a * p_i - q_i unless y is null (a * p_i is formed without */           \
  /* subnormals: a's binary exponent is folded into e) and returns sum_i q_i * (x_i - s), terms */ \
  /* with q_i == 0 counting 0 (so -inf logits of untargeted classes add nothing); s = the row */   \
  /* max makes every term <= 0. x == y allowed. */                                                 \
  X(double, vsoftmaxgrad,                                                                          \
    (size_t n, const T* x, T* y, double m, double e, T a, const T* w, const T* t, T b, T c, T s),  \
    dt, isa)                                                                                       \
  /* Cross-entropy's last pass after a reload (x holds the stored terms exp(.) * 2^-e'): */        \
  /* y_i = x_i * s - q_i with q_i as vsoftmaxgrad's; x_i * s is 0 where it would be subnormal */   \
  /* (x_i >= 0 is zeroed before the multiply). x == y allowed. */                                  \
  X(void, vgradfromexp, (size_t n, const T* x, T* y, T s, const T* w, const T* t, T b, T c), dt,   \
    isa)                                                                                           \
  /* Fused KL(p || q) of two rows: p_i = exp(t_i) / (mt * 2^et), q_i = exp(s_i) / (ms * 2^es) */   \
  /* (teacher t, student s, as vsoftmaxgrad). Writes y_i = g * (q_i - p_i) unless y is null */     \
  /* (y == s allowed) and returns sum_i p_i * ((t_i - s_i) - c), terms with p_i == 0 counting */   \
  /* 0; c = lse(t) - lse(s) makes the terms vanish when the rows agree. */                         \
  X(double, rklgrad,                                                                               \
    (size_t n, const T* s, const T* t, T* y, double ms, double es, double mt, double et, T g,      \
     T c),                                                                                         \
    dt, isa)                                                                                       \
  /* sum_i x_i * w_i; a null w means sum_i x_i. */                                                 \
  X(double, rdot, (size_t n, const T* x, const T* w), dt, isa)                                     \
  /* sum_i (x_i - c)^2: the second moment about c (about the mean for a variance). */              \
  X(double, rsumsqdiff, (size_t n, const T* x, T c), dt, isa)                                      \
  /* y_i = (c2 * d_i + c1) * d_i + c0 with d_i = x_i - h: spherical / Taylor softmax (h = 0) */    \
  /* and the Z-loss gradient, affine in o - mean (h = mean keeps it exact for rows with a */       \
  /* large common offset). */                                                                      \
  X(void, vquad, (size_t n, const T* x, T* y, T h, T c2, T c1, T c0), dt, isa)                     \
  /* sum_i s(x_i) with StableMax's s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0. */              \
  X(double, rstablesum, (size_t n, const T* x), dt, isa)                                           \
  /* y_i = a * s(x_i), or a * s'(x_i) when deriv != 0 (s' = 1, resp. 1 / (1 - x)^2). */            \
  X(void, vstable, (size_t n, const T* x, T* y, T a, int deriv), dt, isa)

#define SOFTZO_DECLARE_LOSS(...) SOFTZO_KERNEL_DECLARE(, __VA_ARGS__)
#define SOFTZO_DECLARE_LOSS_ISA(isa)                        \
  SOFTZO_LOSS_KERNELS(SOFTZO_DECLARE_LOSS, float, f32, isa) \
  SOFTZO_LOSS_KERNELS(SOFTZO_DECLARE_LOSS, double, f64, isa)
SOFTZO_FOR_EACH_KERNEL_ISA(SOFTZO_DECLARE_LOSS_ISA)

#ifdef __cplusplus
}
#endif

#endif  // SOFTZO_KERNELS_LOSSES_LOSSES_KERNELS_H_
