// The C-style contract of the fused half-precision softmax kernels, once per ISA: bfloat16 and
// float16 rows read and written as their 16 bits, accumulated in float32, in one kernel that
// runs the three passes of three consecutive rows at once (ops/half_softmax_rows.cc).
//
// Why a separate family: a half softmax that widens its row into a float32 buffer and runs the
// float32 kernels costs a widening pass, a narrowing pass and a float32 exp accurate to ~1 ulp
// of float32, where the result keeps 8 (bfloat16) or 11 (float16) bits. These kernels read the
// halves directly, evaluate a cheaper exp (a 16-entry table and a degree-2 or 3 polynomial,
// below), and fuse the passes of different rows into one sweep: the max of row r + 1, the exps
// of row r into a float32 buffer (and their sum), and the scaled, narrowed outputs of row r - 1
// from its buffer. One sweep keeps the vector units busy with row r's exps while row r - 1's
// buffer streams out, which separate passes leave memory-bound (measured on Zen 4: 475 us for
// the three passes one after the other against 365 us fused, at 64 rows of 32000 bfloat16).
//
// Conventions as in kernels/softmax/softmax_kernels.h: ISA suffix pasted onto the name,
// raw pointers and counts, nothing allocated, nothing read or written past element n - 1.
//
// Accuracy: every ISA computes each exp with the same operations and roundings (the scalar
// definition below), so e_i is bitwise the same on every ISA; the sum's order differs. e_i is
// within 2^-18 of its exact value relatively (bfloat16: degree 2, folded) or 2^-22 (float16:
// degree 3, over the exps whose outputs are normal float16), so an output, rounded once from
// float32, is within 1/2 + 2^-10 ulp of the half type of the exact softmax.
#ifndef SOFTZO_KERNELS_HALF_SOFTMAX_HALF_SOFTMAX_KERNELS_H_
#define SOFTZO_KERNELS_HALF_SOFTMAX_HALF_SOFTMAX_KERNELS_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/convert/convert_kernels.h"
#include "kernels/kernel_list.h"

#ifdef __cplusplus
extern "C" {
#endif

// One sweep over n >= 1 elements of up to three rows; a stage is skipped when its row pointer is
// NULL.
typedef struct {
  // Range of `next`: next_max = its max, next_min = its min, as floats; next_max is NaN when
  // the row holds a NaN.
  const uint16_t* next;
  float next_max, next_min;
  // Exps of `x`: buf receives e_i ~ exp(x_i - max) times a constant of the row in
  // [2^(-1/32), 2^(1/32)] (the exp below, from softzo_half_exp_setup(max); the order of buf's
  // elements is the ISA's own, read back only by its scale stage) and sum = sum_i e_i. max is
  // the row's finite max. With flush == 0 every x_i >= max - SOFTZO_HALF_EXP_FLUSH (the caller
  // checks the row's min); with flush != 0 terms below that are exactly 0 (-inf included). buf
  // holds n floats.
  const uint16_t* x;
  float max;
  int flush;
  float* buf;
  double sum;
  // Outputs of the previous row: y_i = the half of prev_i * scale, round to nearest even, from
  // the buffer the exp stage filled. With scale_flush != 0, y_i = 0 where prev_i <
  // flush_below (prev_i * scale would be a float32 subnormal, which is never formed).
  const float* prev;
  uint16_t* y;
  float scale, flush_below;
  int scale_flush;
} softzo_half_sweep;

// The fused softmax sweeps (see kernels/kernel_list.h); one instantiation, dt = half.
#define SOFTZO_HALF_SOFTMAX_KERNELS(X, T, dt, isa)                     \
  /* One sweep (above) over bfloat16 rows; exp of degree 2. */         \
  X(void, bf16softmaxsweep, (size_t n, softzo_half_sweep* s), dt, isa) \
  /* One sweep over float16 rows; exp of degree 3. */                  \
  X(void, f16softmaxsweep, (size_t n, softzo_half_sweep* s), dt, isa)

#define SOFTZO_DECLARE_HALF_SOFTMAX_SWEEP(...) SOFTZO_KERNEL_DECLARE(, __VA_ARGS__)
#define SOFTZO_DECLARE_HALF_SOFTMAX_SWEEPS_ISA(isa) \
  SOFTZO_HALF_SOFTMAX_KERNELS(SOFTZO_DECLARE_HALF_SOFTMAX_SWEEP, void, half, isa)
SOFTZO_FOR_EACH_KERNEL_ISA(SOFTZO_DECLARE_HALF_SOFTMAX_SWEEPS_ISA)

// ---- the exp, defined once (the scalar kernels and the vector files' tails use it) ----------
//
// The exp stage of a row with max m evaluates, for u = x - m (or u = x, folded, below),
// e(u) = 2^(k / 16) 2^(f / 16): v = u C + bias rounds u C to an integer through the float
// magic number 1.5 * 2^23 (v holds k in its low bits), v - bias is that integer exactly and
// f = u C - (v - bias) in [-1/2, 1/2] by one FMA. 2^(k / 16) is the table's 2^(j / 16),
// j = k mod 16, with k div 16 added to its exponent field: the table holds the bits of
// 2^(j / 16) minus j << 19, so adding v's bits shifted left by 19 (k << 19, the magic number's
// bits shifted out) gives both at once. 2^(f / 16) = 1 + f w(f), w of degree 1 or 2 (minimax
// relative error over |f| <= 1/2 with float coefficients: 2^-21.1 and 2^-27.9). e = 0 where
// u < floor (-inf included), so that 2^(k / 16) stays normal.
//   Unfolded: u = x - m, bias = MAGIC, floor = -FLUSH: e = exp(x - m), exactly 1 at the max.
//     C's rounding (2^-26.2 relative) adds |x - m| 2^-26.2, up to 2^-19.8 at the flush point.
//   Folded (bfloat16 rows with |m| <= FOLD_LIMIT): u = x, bias = MAGIC - R with R = round(m C),
//     floor = m - FLUSH: then k = round(x C) - R and e = exp(x - R ln2 / 16), every term of
//     the row times the same exp(m - R ln2 / 16) in [2^(-1/32), 2^(1/32)], which the softmax's
//     normalisation cancels; one subtraction fewer per element (7% of a 64 x 32000 softmax on
//     Zen 4). C's rounding adds |x| 2^-26.2, at most 2^-18.2 for |x| <= FOLD_LIMIT + FLUSH.
#define SOFTZO_HALF_EXP_FLUSH 87.0f
#define SOFTZO_HALF_EXP_FOLD_LIMIT 168.0f
#define SOFTZO_HALF_EXP_C 0x1.715476p+4f    // 16 / ln2
#define SOFTZO_HALF_EXP_MAGIC 0x1.8p+23f    // 1.5 * 2^23
#define SOFTZO_HALF_EXP2_A1 0x1.62e988p-5f  // degree 2 (bfloat16)
#define SOFTZO_HALF_EXP2_A2 0x1.ebfbeap-11f
#define SOFTZO_HALF_EXP3_A1 0x1.62e434p-5f  // degree 3 (float16)
#define SOFTZO_HALF_EXP3_A2 0x1.ec0016p-11f
#define SOFTZO_HALF_EXP3_A3 0x1.c54786p-17f

// The bits of 2^(j / 16) (rounded to nearest) minus j << 19.
static const uint32_t softzo_half_exp_table[16] = {
    0x3f800000u, 0x3f7daac3u, 0x3f7b95c2u, 0x3f79c3d3u, 0x3f7837f0u, 0x3f76f532u,
    0x3f75fed7u, 0x3f75583fu, 0x3f7504f3u, 0x3f7508a4u, 0x3f75672au, 0x3f76248cu,
    0x3f7744fdu, 0x3f78ccdfu, 0x3f7ac0c7u, 0x3f7d257du};

// A row's exp constants (above), from its finite max; foldable: bfloat16.
typedef struct {
  int fold;
  float max, bias, floor;
} softzo_half_exp_row;

static inline softzo_half_exp_row softzo_half_exp_setup(float max, int foldable) {
  softzo_half_exp_row r;
  r.fold = foldable && fabsf(max) <= SOFTZO_HALF_EXP_FOLD_LIMIT;
  r.max = max;
  r.bias =
      r.fold ? SOFTZO_HALF_EXP_MAGIC - nearbyintf(max * SOFTZO_HALF_EXP_C) : SOFTZO_HALF_EXP_MAGIC;
  r.floor = r.fold ? max - SOFTZO_HALF_EXP_FLUSH : -SOFTZO_HALF_EXP_FLUSH;
  return r;
}

// e(x) of a row (degree 2, or 3 when cubic != 0).
static inline float softzo_half_exp(float x, const softzo_half_exp_row* r, int cubic) {
  const float u = r->fold ? x : x - r->max;
  if (!(u >= r->floor)) return 0.0f;
  const float v = fmaf(u, SOFTZO_HALF_EXP_C, r->bias);
  const float k = v - r->bias;
  const float f = fmaf(u, SOFTZO_HALF_EXP_C, -k);
  const uint32_t vb = softzo_float_bits(v);
  const float scale = softzo_bits_float(softzo_half_exp_table[vb & 15u] + (vb << 19));
  const float w =
      cubic ? fmaf(fmaf(SOFTZO_HALF_EXP3_A3, f, SOFTZO_HALF_EXP3_A2), f, SOFTZO_HALF_EXP3_A1)
            : fmaf(SOFTZO_HALF_EXP2_A2, f, SOFTZO_HALF_EXP2_A1);
  const float sf = scale * f;
  return fmaf(sf, w, scale);
}

// The range stage's order on half bits: a signed 16-bit key, monotone in the value for both
// half types (sign-magnitude to two's complement: negative values have their other bits
// flipped). NaNs land above +inf's key or below -inf's, which is how the range spots them.
static inline int16_t softzo_half_key(uint16_t h) {
  return (int16_t)(h ^ ((h & 0x8000u) ? 0x7fffu : 0u));
}
static inline uint16_t softzo_half_from_key(int16_t k) {
  const uint16_t h = (uint16_t)k;
  return (uint16_t)(h ^ ((h & 0x8000u) ? 0x7fffu : 0u));
}

// ---- the sweep one element at a time (the scalar kernels, and the vector kernels' tails) ----

// The range's keys and the exps' sum as the elements go by.
typedef struct {
  int16_t hi, lo;
  double total;
} softzo_half_sweep_acc;

// The sweep's stages (those whose rows are not NULL) at elements [i, n), in natural order;
// bf16: the format (else float16).
static inline void softzo_half_sweep_elements(size_t i, size_t n, softzo_half_sweep* s,
                                              const softzo_half_exp_row* row, int bf16,
                                              softzo_half_sweep_acc* acc) {
  for (; i < n; ++i) {
    if (s->next) {
      const int16_t key = softzo_half_key(s->next[i]);
      acc->hi = key > acc->hi ? key : acc->hi;
      acc->lo = key < acc->lo ? key : acc->lo;
    }
    if (s->x) {
      const float x = bf16 ? softzo_bf16_to_f32(s->x[i]) : softzo_f16_to_f32(s->x[i]);
      const float e = softzo_half_exp(x, row, !bf16);
      s->buf[i] = e;
      acc->total += e;
    }
    if (s->y) {
      const float p = s->prev[i];
      const float v = s->scale_flush && p < s->flush_below ? 0.0f : p * s->scale;
      s->y[i] = bf16 ? softzo_f32_to_bf16(v) : softzo_f32_to_f16(v);
    }
  }
}

// The sweep's results from acc: next_max (NaN when a key lies beyond +-inf's), next_min, sum.
static inline void softzo_half_sweep_finish(softzo_half_sweep* s, int bf16,
                                            const softzo_half_sweep_acc* acc) {
  if (s->next) {
    const uint16_t hi = softzo_half_from_key(acc->hi), lo = softzo_half_from_key(acc->lo);
    const float top = bf16 ? softzo_bf16_to_f32(hi) : softzo_f16_to_f32(hi);
    const float bottom = bf16 ? softzo_bf16_to_f32(lo) : softzo_f16_to_f32(lo);
    s->next_max = top != top || bottom != bottom ? NAN : top;
    s->next_min = bottom;
  }
  if (s->x) s->sum = acc->total;
}

#ifdef __cplusplus
}
#endif

#endif  // SOFTZO_KERNELS_HALF_SOFTMAX_HALF_SOFTMAX_KERNELS_H_
