// The C-style contract of the zeroth-order perturbation kernels, once per ISA: Philox4x32-10
// random directions z regenerated from (seed, step, direction), applied to parameters in place.
//
// Conventions as in kernels/softmax/softmax_kernels.h: ISA suffix pasted onto the name (scalar,
// avx2, avx512, avx512emu), raw pointers and counts, nothing allocated, nothing read or written
// past element n - 1, n == 0 allowed. Every kernel takes `offset`, the global index of its
// element 0: element i draws z_{offset + i}, so threads and chunks that split [0, n) into pieces
// with matching offsets see the same z as one call over the whole vector.
//
// z is bitwise identical for every ISA, offset and chunking, for every distribution: the vector
// files evaluate exactly the operations of zo_scalar.cc (the same constants below, every
// product that is added written as one FMA, IEEE division and square root, exact conversions),
// and zo_scalar.cc emulates the FMA exactly where the hardware has none. The updates of theta
// are the same FMAs, so they are bitwise identical across ISAs too; only the two sums differ in
// their rounding (lane order), not in their terms.
//
// Random numbers (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11):
// key (k0, k1) = (seed & 0xffffffff, seed >> 32); block b of stream (step, direction) is
// Philox4x32-10 of the counter (b & 0xffffffff, b >> 32, direction, step): words w0..w3.
// softzo_philox4x32_10 reproduces Random123's philox4x32_10 known-answer vectors. Element
// g = offset + i draws, per dist:
//   SOFTZO_ZO_RADEMACHER (0): block g >> 7, bit (g & 31) of word (g & 127) >> 5;
//     z = bit ? +1 : -1 (one block per 128 elements).
//   SOFTZO_ZO_GAUSSIAN (1), Box-Muller on word pairs:
//     float32: block g >> 2; (w0, w1) gives g % 4 = 0 (cos), 1 (sin), (w2, w3) gives 2, 3:
//       u1 = ((wa >> 8) + 1) * 2^-24 in (0, 1], u2 = (wb >> 8) * 2^-24 in [0, 1).
//     float64: block g >> 1; a = (w0 << 32 | w1) >> 11, b = (w2 << 32 | w3) >> 11 (53 bits):
//       u1 = (a + 1) * 2^-53 in (0, 1], u2 = b * 2^-53; g % 2 = 0 (cos), 1 (sin).
//     z = r cos(2 pi u2) / r sin(2 pi u2), r = sqrt(-2 ln u1), evaluated as below.
//   SOFTZO_ZO_SEGMENTED (2, BlackVIP): block g >> 2, word w = w_{g % 4}: magnitude
//     0.5 + ((w & 0x7fffffff) >> 7) * 2^-25 rounded to T (exact in float64; float32 rounds to
//     even, so the top magnitude is 1.0f), negative iff bit 31 of w is set.
//   Any other dist value draws as SOFTZO_ZO_RADEMACHER. uniform_sphere is the ops layer's:
//   gaussian z scaled by 1 / sqrt(zo_sumsq).
//
// Gaussian evaluation (the same in every file; fma = one rounding, other ops IEEE in T):
//   ln u1: u1 = 2^e m with m in [sqrt(1/2), sqrt(2)) (integer bit split); f = m - 1 (exact),
//     s = f / (f + 2), hfsq = (0.5 f) f, z2 = s s, P = Horner(LOG_C*, z2) with fma,
//     ln m = f + fma(s, fma(z2, P, hfsq), -hfsq), ln u1 = fma(e, LN2_HI, fma(e, LN2_LO, ln m)).
//     (ln((1 + s) / (1 - s)) = 2s + s R, R = sum_k 2 s^2k / (2k + 1), rearranged.)
//   r = sqrt(-2 ln u1).
//   angle: k = the u2 integer (24 or 53 bits), q = (k + quarter / 2) >> log2(quarter), j = k -
//     q * quarter (quarter = 2^22 / 2^51), t = j * 2^-24 / 2^-53 in [-1/8, 1/8) (exact);
//     u = t t, S = t * Horner(SIN_C*, u), C = fma(Horner(COS_C*, u), u, 1) for sin / cos(2 pi t);
//     quadrant q & 3 (0: (C, S), 1: (-S, C), 2: (-C, -S), 3: (S, -C)) gives (cos, sin);
//     z_cos = r * cos, z_sin = r * sin.
//   Accuracy against the exact Box-Muller of u1, u2: ~2 ulp (float32), ~1e-15 relative
//   (float64).
//
// Updates (decay = fma(-lr, wd, 1) and step = lr * g, both rounded to T once per call):
//   zo_axpy:           theta_i = fma(c, z_i, theta_i)
//   zo_restore_update: t = fma(c_restore, z_i, theta_i); theta_i = fma(-step, z_i, t * decay)
//     i.e. theta_i = (theta_i + c_restore z_i)(1 - lr wd) - lr g z_i, restore applied first.
//   _mask variants (Sparse MeZO): element i takes part only if bit i & 31 of mask word i >> 5 is
//     set (i counted from the kernel's theta, not from offset); other elements are not written.
//     zo_mask_build sets those bits to |theta_i| <= threshold (NaN: 0) and clears the bits of
//     the last word past n - 1. The mask is decided once per step from the unperturbed theta
//     and stored, 1 bit per element (1/32 of a float32 tensor). It cannot be recomputed later:
//     entries outside the mask are never moved, entries inside are, and rounding makes
//     theta -> fl(theta + c z) many-to-one, so values on both sides of the threshold can meet and
//     no rule on (current value, z) tells them apart.
//   zo_axpy_diag (HiZOO):  theta_i = fma(c, z_i / sqrt(sigma_i), theta_i)
//   zo_hizoo_update: u = z_i / sqrt(sigma_i), t = fma(c_restore, u, theta_i),
//     sigma_i' = sigma_i * fma(gain, z_i z_i, keep), theta_i = fma(-step, z_i / sqrt(sigma_i'),
//     t * decay): the restore of the last move, the diagonal Hessian's moving average
//     sigma' = keep sigma + gain sigma z^2, and the step scaled by the new sigma^(-1/2).
#ifndef SOFTZO_KERNELS_ZO_ZO_KERNELS_H_
#define SOFTZO_KERNELS_ZO_ZO_KERNELS_H_

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernel_list.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SOFTZO_ZO_RADEMACHER 0
#define SOFTZO_ZO_GAUSSIAN 1
#define SOFTZO_ZO_SEGMENTED 2

// One perturbation direction: the Philox key is the seed, the counter's upper words are
// (direction, step).
typedef struct {
  uint64_t seed;
  uint32_t step;
  uint32_t direction;
  int dist;  // SOFTZO_ZO_RADEMACHER, SOFTZO_ZO_GAUSSIAN or SOFTZO_ZO_SEGMENTED
} softzo_zo_stream;

// The zeroth-order family's kernels (see kernels/kernel_list.h); their symbols carry "zo_"
// before the name (softzo_f32_zo_axpy_avx2).
#define SOFTZO_ZO_KERNELS(X, T, dt, isa)                                                         \
  /* y_i = z_i (materialise: tests, ask/tell). */                                                \
  X(void, fill, (size_t n, uint64_t offset, const softzo_zo_stream* s, T* y), dt, isa)           \
  /* theta_i += c z_i (perturb), in place. */                                                    \
  X(void, axpy, (size_t n, uint64_t offset, const softzo_zo_stream* s, T c, T* theta), dt, isa)  \
  /* theta_i = (theta_i + c_restore z_i)(1 - lr wd) - lr g z_i: MeZO's restore and update in */  \
  /* one pass. */                                                                                \
  X(void, restore_update,                                                                        \
    (size_t n, uint64_t offset, const softzo_zo_stream* s, T c_restore, T lr, T g, T wd,         \
     T* theta),                                                                                  \
    dt, isa)                                                                                     \
  /* mask bits: bit i = |theta_i| <= threshold (NaN: 0), ceil(n / 32) words written. */          \
  X(void, mask_build, (size_t n, T threshold, const T* theta, uint32_t* mask), dt, isa)          \
  /* axpy on the elements whose mask bit is set. */                                              \
  X(void, axpy_mask,                                                                             \
    (size_t n, uint64_t offset, const softzo_zo_stream* s, T c, const uint32_t* mask, T* theta), \
    dt, isa)                                                                                     \
  /* restore_update on the elements whose mask bit is set. */                                    \
  X(void, restore_update_mask,                                                                   \
    (size_t n, uint64_t offset, const softzo_zo_stream* s, T c_restore, T lr, T g, T wd,         \
     const uint32_t* mask, T* theta),                                                            \
    dt, isa)                                                                                     \
  /* theta_i += c z_i / sqrt(sigma_i) (HiZOO's perturbation). */                                 \
  X(void, axpy_diag,                                                                             \
    (size_t n, uint64_t offset, const softzo_zo_stream* s, T c, const T* sigma, T* theta), dt,   \
    isa)                                                                                         \
  /* HiZOO's restore, sigma update and step in one pass (see above). */                          \
  X(void, hizoo_update,                                                                          \
    (size_t n, uint64_t offset, const softzo_zo_stream* s, T c_restore, T lr, T g, T wd, T keep, \
     T gain, T* sigma, T* theta),                                                                \
    dt, isa)                                                                                     \
  /* sum_i z_i^2 (exactly n for rademacher), accumulated in double. */                           \
  X(double, sumsq, (size_t n, uint64_t offset, const softzo_zo_stream* s), dt, isa)              \
  /* sum_i z_i v_i, accumulated in double (float32 terms are exact there). */                    \
  X(double, dot, (size_t n, uint64_t offset, const softzo_zo_stream* s, const T* v), dt, isa)

#define SOFTZO_DECLARE_ZO(...) SOFTZO_KERNEL_DECLARE(zo_, __VA_ARGS__)
#define SOFTZO_DECLARE_ZO_ISA(isa)                      \
  SOFTZO_ZO_KERNELS(SOFTZO_DECLARE_ZO, float, f32, isa) \
  SOFTZO_ZO_KERNELS(SOFTZO_DECLARE_ZO, double, f64, isa)
SOFTZO_FOR_EACH_KERNEL_ISA(SOFTZO_DECLARE_ZO_ISA)

// Philox4x32-10 of one counter (defined in zo_scalar.cc): for the known-answer tests.
void softzo_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

#ifdef __cplusplus
}
#endif

// ---------------------------------------------------------------------------------------------
// Constants of the z path. They are part of the contract: z is defined bitwise by them, and
// every ISA file uses these macros, never its own copies.

// Philox4x32 multipliers and Weyl key increments (Salmon et al. 2011).
#define SOFTZO_PHILOX_M0 0xD2511F53u
#define SOFTZO_PHILOX_M1 0xCD9E8D57u
#define SOFTZO_PHILOX_W0 0x9E3779B9u
#define SOFTZO_PHILOX_W1 0xBB67AE85u

// Bit offsets that split u1 into 2^e * m with m in [sqrt(1/2), sqrt(2)): bits(u1) + OFFSET
// carries into the exponent exactly when m >= sqrt(2) (bits of sqrt(1/2): 0x3f3504f3 /
// 0x3fe6a09e667f3bcd).
#define SOFTZO_ZO_F32_SQRTHALF_BITS 0x3f3504f3u
#define SOFTZO_ZO_F32_LOG_OFFSET 0x004afb0du
#define SOFTZO_ZO_F64_SQRTHALF_BITS 0x3fe6a09e667f3bcdull
#define SOFTZO_ZO_F64_LOG_OFFSET 0x00095f619980c433ull

// ln 2 = LN2_HI + LN2_LO; LN2_HI has 17 (float32) / 32 (float64) significant bits, so e * LN2_HI
// is exact for |e| <= 24 / 53.
#define SOFTZO_ZO_F32_LN2_HI 0x1.62e4p-1f
#define SOFTZO_ZO_F32_LN2_LO 0x1.7f7d1cp-20f
#define SOFTZO_ZO_F64_LN2_HI 0x1.62e42feep-1
#define SOFTZO_ZO_F64_LN2_LO 0x1.a39ef35793c76p-33

// R(s) = z2 * P(z2), P's coefficients 2 / (2k + 1), k = 1..4 (float32) / 1..9 (float64):
// |s| <= 3 - 2 sqrt(2) = 0.1716, so the first omitted term is below 2e-9 / 3e-17 of ln m.
#define SOFTZO_ZO_F32_LOG_C1 0x1.555556p-1f
#define SOFTZO_ZO_F32_LOG_C2 0x1.99999ap-2f
#define SOFTZO_ZO_F32_LOG_C3 0x1.24924ap-2f
#define SOFTZO_ZO_F32_LOG_C4 0x1.c71c72p-3f
#define SOFTZO_ZO_F64_LOG_C1 0x1.5555555555555p-1
#define SOFTZO_ZO_F64_LOG_C2 0x1.999999999999ap-2
#define SOFTZO_ZO_F64_LOG_C3 0x1.2492492492492p-2
#define SOFTZO_ZO_F64_LOG_C4 0x1.c71c71c71c71cp-3
#define SOFTZO_ZO_F64_LOG_C5 0x1.745d1745d1746p-3
#define SOFTZO_ZO_F64_LOG_C6 0x1.3b13b13b13b14p-3
#define SOFTZO_ZO_F64_LOG_C7 0x1.1111111111111p-3
#define SOFTZO_ZO_F64_LOG_C8 0x1.e1e1e1e1e1e1ep-4
#define SOFTZO_ZO_F64_LOG_C9 0x1.af286bca1af28p-4

// Taylor coefficients of sin(2 pi t) = t * sum_k SIN_Ck u^k and cos(2 pi t) = 1 + u * sum_k
// COS_Ck u^(k-1), u = t^2, |t| <= 1/8 (|2 pi t| <= pi/4): (-1)^k (2 pi)^(2k+1) / (2k+1)! and
// (-1)^k (2 pi)^2k / (2k)!. Truncation: x^11/11! = 2e-9, x^12/12! = 1e-10 (float32, to degree
// 9 / 10); x^19/19! = 1e-20, x^18/18! = 2e-18 (float64, to degree 17 / 16).
#define SOFTZO_ZO_F32_SIN_C0 0x1.921fb6p+2f
#define SOFTZO_ZO_F32_SIN_C1 -0x1.4abbcep+5f
#define SOFTZO_ZO_F32_SIN_C2 0x1.466bc6p+6f
#define SOFTZO_ZO_F32_SIN_C3 -0x1.32d2ccp+6f
#define SOFTZO_ZO_F32_SIN_C4 0x1.507834p+5f
#define SOFTZO_ZO_F32_COS_C1 -0x1.3bd3ccp+4f
#define SOFTZO_ZO_F32_COS_C2 0x1.03c1f0p+6f
#define SOFTZO_ZO_F32_COS_C3 -0x1.55d3c8p+6f
#define SOFTZO_ZO_F32_COS_C4 0x1.e1f506p+5f
#define SOFTZO_ZO_F32_COS_C5 -0x1.a6d1f2p+4f
#define SOFTZO_ZO_F64_SIN_C0 0x1.921fb54442d18p+2
#define SOFTZO_ZO_F64_SIN_C1 -0x1.4abbce625be53p+5
#define SOFTZO_ZO_F64_SIN_C2 0x1.466bc6775aae2p+6
#define SOFTZO_ZO_F64_SIN_C3 -0x1.32d2cce62bd86p+6
#define SOFTZO_ZO_F64_SIN_C4 0x1.50783487ee782p+5
#define SOFTZO_ZO_F64_SIN_C5 -0x1.e3074fde8871fp+3
#define SOFTZO_ZO_F64_SIN_C6 0x1.e8f434d018d63p+1
#define SOFTZO_ZO_F64_SIN_C7 -0x1.6fadb9f155744p-1
#define SOFTZO_ZO_F64_SIN_C8 0x1.aaec32af93359p-4
#define SOFTZO_ZO_F64_COS_C1 -0x1.3bd3cc9be45dep+4
#define SOFTZO_ZO_F64_COS_C2 0x1.03c1f081b5ac4p+6
#define SOFTZO_ZO_F64_COS_C3 -0x1.55d3c7e3cbffap+6
#define SOFTZO_ZO_F64_COS_C4 0x1.e1f506891babbp+5
#define SOFTZO_ZO_F64_COS_C5 -0x1.a6d1f2a204a8cp+4
#define SOFTZO_ZO_F64_COS_C6 0x1.f9d38a3763cc3p+2
#define SOFTZO_ZO_F64_COS_C7 -0x1.b6e24f44b128fp+0
#define SOFTZO_ZO_F64_COS_C8 0x1.20c62c2f2d7f5p-2

#endif  // SOFTZO_KERNELS_ZO_ZO_KERNELS_H_
