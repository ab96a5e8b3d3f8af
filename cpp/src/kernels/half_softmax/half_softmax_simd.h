// The vector half-precision softmax sweep once for every width, as a template over an ISA trait
// S; half_softmax_avx2.cc and half_softmax_avx512.cc hold only their traits and call
// sweep_any from their kernels. Include only from those files: everything here is in
// an anonymous namespace and forced inline, so each object keeps its own copy, compiled with its
// own ISA flags, and exports nothing weak.
//
// The trait S provides V (L floats), R (2L halves as 16-bit lanes: a "unit"), K (a lane mask
// of V), kLanes = L, and
//   raw loads and stores (load_raw, store_raw), the range's key order on R (key, max16, min16);
//   widen<F>(R, V*, V*): a unit's halves as two float vectors, in an order of the trait's
//   choosing (the buffer keeps it), and narrow<F>(V, V) -> R, its inverse, rounding to nearest
//   even (F: the Bf16 or F16 format tag below);
//   the float arithmetic (zero, set1, load, store, add, mul, fmadd, fmsub, sub, ge: a K of
//   a >= b), the exp's table lookup scale_of<kFlush>(v, keep) (the table's entry plus v's bits
//   shifted left by 19; 0 where keep is clear when kFlush), masked_fmadd<kFlush>(keep, a, b, c)
//   (a b + c; 0 where keep is clear when kFlush), scaled<kFlush>(v, s, below) (v s; 0 where
//   v < below when kFlush) and hsum (a V's lanes added in double).
#ifndef SOFTZO_KERNELS_HALF_SOFTMAX_HALF_SOFTMAX_SIMD_H_
#define SOFTZO_KERNELS_HALF_SOFTMAX_HALF_SOFTMAX_SIMD_H_

#include <stddef.h>
#include <stdint.h>

#include "kernels/half_softmax/half_softmax_kernels.h"

#define SOFTZO_HS_INLINE inline __attribute__((always_inline))

namespace {

// The two formats (the header's functions take the same as their bf16 argument): bfloat16's exp
// is of degree 2 and may fold the row max into its reduction, float16's of degree 3.
struct Bf16 {
  static constexpr int kBf16 = 1;
};
struct F16 {
  static constexpr int kBf16 = 0;
};

// Each accumulator lane sums this many loop steps in float before they are folded into double
// (kFoldBlock of the float32 kernels): the sum keeps ~2^-23 of relative error for any n.
constexpr size_t kHalfFoldSteps = 8;

// The largest (kMax) or least key of a vector of keys.
template <class S, bool kMax>
int16_t reduce_keys(typename S::R v) {
  int16_t keys[2 * S::kLanes];
  S::store_raw(reinterpret_cast<uint16_t*>(keys), v);
  int16_t m = keys[0];
  for (int16_t k : keys) m = (kMax ? k > m : k < m) ? k : m;
  return m;
}

// A row's exp constants (softzo_half_exp_row) as vectors.
template <class S>
struct ExpRow {
  typename S::V max, bias, floor;
};

// e(x) of one vector: the header's softzo_half_exp, operation for operation.
template <class S, class F, bool kFlush, bool kFold>
SOFTZO_HS_INLINE typename S::V half_exp(typename S::V x, const ExpRow<S>& c) {
  typedef typename S::V V;
  const V u = kFold ? x : S::sub(x, c.max);
  const typename S::K keep = S::ge(u, c.floor);
  const V v = S::fmadd(u, S::set1(SOFTZO_HALF_EXP_C), c.bias);
  const V k = S::sub(v, c.bias);
  const V f = S::fmsub(u, S::set1(SOFTZO_HALF_EXP_C), k);
  const V scale = S::template scale_of<kFlush>(v, keep);
  V w;
  if (!F::kBf16) {
    w = S::fmadd(S::set1(SOFTZO_HALF_EXP3_A3), f, S::set1(SOFTZO_HALF_EXP3_A2));
    w = S::fmadd(w, f, S::set1(SOFTZO_HALF_EXP3_A1));
  } else {
    w = S::fmadd(S::set1(SOFTZO_HALF_EXP2_A2), f, S::set1(SOFTZO_HALF_EXP2_A1));
  }
  return S::template masked_fmadd<kFlush>(keep, S::mul(scale, f), w, scale);
}

// The sweep's stages over whole units [0, whole) (a multiple of 2L), then the rest one element
// at a time by the header's softzo_half_sweep_elements (natural order there, in both the exp
// and the scale stage, so the buffer's tail matches).
template <class S, class F, bool kRange, bool kExp, bool kScale, bool kFlush, bool kFold>
struct Sweep {
  typedef typename S::V V;
  typedef typename S::R R;
  // The sweep's rows and constants, copied out of the caller's struct: the vector stores may
  // alias anything, so pointers read through it would be reloaded after every store.
  const uint16_t* next;
  const uint16_t* x;
  float* buf;
  const float* prev;
  uint16_t* y;
  softzo_half_exp_row row;
  ExpRow<S> exp;
  V scale, below;

  // The stages of the unit at element i: its range into (kmax, kmin), its exps into (acc0, acc1).
  SOFTZO_HS_INLINE void stages(size_t i, R& kmax, R& kmin, V& acc0, V& acc1) const {
    const size_t L = S::kLanes;
    if (kRange) {
      const R key = S::key(S::load_raw(next + i));
      kmax = S::max16(kmax, key);
      kmin = S::min16(kmin, key);
    }
    if (kExp) {
      V a, b;
      S::template widen<F>(S::load_raw(x + i), &a, &b);
      a = half_exp<S, F, kFlush, kFold>(a, exp);
      b = half_exp<S, F, kFlush, kFold>(b, exp);
      S::store(buf + i, a);
      S::store(buf + i + L, b);
      acc0 = S::add(acc0, a);
      acc1 = S::add(acc1, b);
    }
    if (kScale) {
      const V a = S::template scaled<kFlush>(S::load(prev + i), scale, below);
      const V b = S::template scaled<kFlush>(S::load(prev + i + L), scale, below);
      S::store_raw(y + i, S::template narrow<F>(a, b));
    }
  }

  static void run(size_t n, softzo_half_sweep* s, const softzo_half_exp_row& row) {
    const ExpRow<S> exp{S::set1(row.max), S::set1(row.bias), S::set1(row.floor)};
    const V below = S::set1(s->scale_flush ? s->flush_below : 0.0f);
    const Sweep w{s->next, s->x, s->buf, s->prev, s->y, row, exp, S::set1(s->scale), below};
    w.body(n, s);
  }

  SOFTZO_HS_INLINE void body(size_t n, softzo_half_sweep* s) const {
    const size_t unit = 2 * S::kLanes, whole = n - n % unit;
    R kmax0 = S::set1_16(INT16_MIN), kmax1 = kmax0, kmin0 = S::set1_16(INT16_MAX), kmin1 = kmin0;
    double total = 0.0;
    size_t i = 0;
    while (i < whole) {
      // Two units per step (four independent exps), folded every kHalfFoldSteps steps.
      V a0 = S::zero(), a1 = a0, a2 = a0, a3 = a0;
      size_t steps = 0;
      for (; whole - i >= 2 * unit && steps < kHalfFoldSteps; i += 2 * unit, ++steps) {
        stages(i, kmax0, kmin0, a0, a1);
        stages(i + unit, kmax1, kmin1, a2, a3);
      }
      if (steps == 0) {  // the last unit, when whole / unit is odd
        stages(i, kmax0, kmin0, a0, a1);
        i += unit;
      }
      if (kExp) total += S::hsum(S::add(S::add(a0, a1), S::add(a2, a3)));
    }
    softzo_half_sweep_acc acc = {reduce_keys<S, true>(S::max16(kmax0, kmax1)),
                                 reduce_keys<S, false>(S::min16(kmin0, kmin1)), total};
    softzo_half_sweep_elements(i, n, s, &row, F::kBf16, &acc);
    softzo_half_sweep_finish(s, F::kBf16, &acc);
  }
};

// The sweep with its stages chosen once: 5 flags (kFlush takes the masks of both the exp and
// the scale stage when either needs its own, the other's then keeping every lane; kFold only
// with an exp stage of a foldable format).
template <class S, class F>
void sweep_any(size_t n, softzo_half_sweep* s) {
  const softzo_half_exp_row row = softzo_half_exp_setup(s->x ? s->max : 0.0f, F::kBf16);
  const bool flush = (s->x && s->flush) || (s->y && s->scale_flush);
  const int code = (s->next ? 8 : 0) | (s->x ? 4 : 0) | (s->y ? 2 : 0) | (flush ? 1 : 0);
  if constexpr (F::kBf16) {
    if (s->x && row.fold) {
      switch (code) {
#define SOFTZO_HS_CASE(c) \
  case c:                 \
    return Sweep<S, F, (c & 8) != 0, true, (c & 2) != 0, (c & 1) != 0, true>::run(n, s, row);
        SOFTZO_HS_CASE(4)
        SOFTZO_HS_CASE(5)
        SOFTZO_HS_CASE(6)
        SOFTZO_HS_CASE(7)
        SOFTZO_HS_CASE(12)
        SOFTZO_HS_CASE(13)
        SOFTZO_HS_CASE(14)
        SOFTZO_HS_CASE(15)
#undef SOFTZO_HS_CASE
        default:
          return;
      }
    }
  }
  switch (code) {
#define SOFTZO_HS_CASE(c)                                                                        \
  case c:                                                                                        \
    return Sweep<S, F, (c & 8) != 0, (c & 4) != 0, (c & 2) != 0, (c & 1) != 0, false>::run(n, s, \
                                                                                           row);
    SOFTZO_HS_CASE(2)
    SOFTZO_HS_CASE(3)
    SOFTZO_HS_CASE(4)
    SOFTZO_HS_CASE(5)
    SOFTZO_HS_CASE(6)
    SOFTZO_HS_CASE(7)
    SOFTZO_HS_CASE(8)
    SOFTZO_HS_CASE(10)
    SOFTZO_HS_CASE(11)
    SOFTZO_HS_CASE(12)
    SOFTZO_HS_CASE(13)
    SOFTZO_HS_CASE(14)
    SOFTZO_HS_CASE(15)
#undef SOFTZO_HS_CASE
    default:  // no stage (0, 1 and 9 cannot have kFlush without a stage that uses it)
      return;
  }
}

}  // namespace

#endif  // SOFTZO_KERNELS_HALF_SOFTMAX_HALF_SOFTMAX_SIMD_H_
