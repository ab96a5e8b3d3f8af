// The C-style contract of the loss kernels that need no exp, once per ISA: the sums and
// elementwise maps of the spherical family (Z-loss, spherical and Taylor softmax) and StableMax.
// The exp-based loss passes (cross-entropy, KL) live with the softmax kernels, which own exp.
//
// Conventions as in kernels/softmax/softmax_kernels.h: ISA suffix pasted onto the name
// (scalar, avx2, avx512, avx512emu), raw pointers and counts, nothing allocated, nothing read
// or written past element n - 1, n == 0 allowed, x == y allowed. Sums accumulate in T over
// short blocks and are folded into double lanes, so their relative error stays ~1e-7 (float32)
// for any n. NaN and inf propagate through every sum and map.
#ifndef SOFTZO_KERNELS_LOSSES_LOSSES_KERNELS_H_
#define SOFTZO_KERNELS_LOSSES_LOSSES_KERNELS_H_

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SOFTZO_DECLARE_LOSS_KERNELS(T, dt, isa)                                          \
  /* sum_i x_i * w_i; a null w means sum_i x_i. */                                       \
  double softzo_##dt##_rdot_##isa(size_t n, const T* x, const T* w);                     \
  /* sum_i (x_i - c)^2: the second moment about c (about the mean for a variance). */    \
  double softzo_##dt##_rsumsqdiff_##isa(size_t n, const T* x, T c);                      \
  /* y_i = (c2 * d_i + c1) * d_i + c0 with d_i = x_i - h: spherical / Taylor softmax */  \
  /* (h = 0) and the Z-loss gradient, affine in o - mean (h = mean keeps it exact for */ \
  /* rows with a large common offset). */                                                \
  void softzo_##dt##_vquad_##isa(size_t n, const T* x, T* y, T h, T c2, T c1, T c0);     \
  /* sum_i s(x_i) with StableMax's s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0. */    \
  double softzo_##dt##_rstablesum_##isa(size_t n, const T* x);                           \
  /* y_i = a * s(x_i), or a * s'(x_i) when deriv != 0 (s' = 1, resp. 1 / (1 - x)^2). */  \
  void softzo_##dt##_vstable_##isa(size_t n, const T* x, T* y, T a, int deriv);

#define SOFTZO_DECLARE_LOSS_ISA(isa)           \
  SOFTZO_DECLARE_LOSS_KERNELS(float, f32, isa) \
  SOFTZO_DECLARE_LOSS_KERNELS(double, f64, isa)

SOFTZO_DECLARE_LOSS_ISA(scalar)
SOFTZO_DECLARE_LOSS_ISA(avx2)
SOFTZO_DECLARE_LOSS_ISA(avx512)
SOFTZO_DECLARE_LOSS_ISA(avx512emu)

#ifdef __cplusplus
}
#endif

#endif  // SOFTZO_KERNELS_LOSSES_LOSSES_KERNELS_H_
