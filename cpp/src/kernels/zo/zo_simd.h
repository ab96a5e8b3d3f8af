// The vector zeroth-order kernels once for every width: Philox4x32-10 batches, the gaussian and
// segmented draws through tile buffers, the rademacher bit expansion and the fused update passes,
// as templates over an ISA trait S. zo_avx2.cc and zo_avx512.cc hold only their trait (vector
// types, loads and stores, masks, blends, Philox's three-way xor, the conversions of half
// vectors, the rademacher expansion) and instantiate the kernels with SOFTZO_ZO_DEFINE_KERNELS.
// Include only from those files (the traits' intrinsics come from their ISA headers): everything
// here is in an anonymous namespace and forced inline, so each kernel object keeps its own copy,
// compiled with its own ISA flags, and exports nothing weak (ARCHITECTURE.md).
//
// The draws repeat zo_scalar.cc operation for operation (zo_kernels.h), so z is bitwise the
// scalar one for every width. Philox runs on L = S::kWords blocks per batch (one per 32-bit
// lane). Gaussian and segmented draws go through a tile of two batches' elements written in
// element order, so any offset and any tail are a window into a tile; rademacher expands the
// bits of one batch (128 L elements) straight into +-1 vectors, at the speed of the theta
// stream.
//
// The trait S provides
//   SOFTZO_ZO_WIDTH(...): types I (L 32-bit words), H (its lower or upper half), F (L floats)
//     and D (L / 2 doubles), kWords = L, and the members that differ only in the intrinsics'
//     width (the arithmetic, casts, shifts, ...);
//   set1_64, xor3 (a ^ b ^ c), blend_odd32 (odd 32-bit lanes from b), select_odd (lanes whose
//     q is odd from b, for F and D), abs and le_bits (bit l: a_l <= b_l, ordered) for F and D,
//     hsum (of the lanes of a D), and from half vectors hi (the upper half of an I), zext64
//     (uint32 -> uint64), sext64 (int32 -> int64) and cvt_pd (int32 -> double).
// The ISA's file also specialises Lanes<S, T>, the lane trait of T on S, which provides V (the
// vector of T: F or D), M (a partial vector's lane mask), kLanes, kHalves (D vectors per V),
// load, load_n / store_n (the lanes of M only, given one), tail(count), keep (lanes outside M
// zeroed), select_bits (lanes whose bit is set from b), half_pd (a D of V's half h) and the
// rademacher expansion: rad_word(w), then rad_full(word, v) for bits v L .. v L + kLanes - 1 of
// w and rad_at(word, p) for bits p, p + 1, ... (lanes past bit 31 undefined), each +1 where the
// bit is set, -1 elsewhere.
#ifndef SOFTZO_KERNELS_ZO_ZO_SIMD_H_
#define SOFTZO_KERNELS_ZO_ZO_SIMD_H_

#include <stddef.h>
#include <stdint.h>

#include "kernels/zo/zo_kernels.h"

// Forced inline: the emulated AVX-512 build would otherwise keep some helpers out of line and
// pass 64-byte vectors by value without AVX-512; natively it costs nothing.
#define SOFTZO_ZO_INLINE inline __attribute__((always_inline))

// The vector types of an ISA trait and its members that differ between ISAs only in the
// intrinsics' width: vectors of `bits` bits (256, 512), halves of `hbits` bits whose intrinsics'
// prefix is hmm (_mm_ for 128 bits). Expanded at the top of an ISA trait.
#define SOFTZO_ZO_WIDTH(bits, hbits, hmm)     \
  using I = __m##bits##i;                     \
  using H = __m##hbits##i;                    \
  using F = __m##bits;                        \
  using D = __m##bits##d;                     \
  static constexpr size_t kWords = bits / 32; \
  SOFTZO_ZO_WIDTH_OPS(_mm##bits##_, si##bits, hmm, si##hbits)
// mm: the intrinsics' prefix (_mm256_), si: the integer vector's suffix (si256); hmm and hsi the
// same for the half vector.
#define SOFTZO_ZO_WIDTH_OPS(mm, si, hmm, hsi)                                                   \
  static SOFTZO_ZO_INLINE I load_i(const int32_t* p) {                                          \
    return mm##load_##si(reinterpret_cast<const I*>(p));                                        \
  }                                                                                             \
  static SOFTZO_ZO_INLINE I set1_32(uint32_t v) { return mm##set1_epi32(static_cast<int>(v)); } \
  static SOFTZO_ZO_INLINE I and_(I a, I b) { return mm##and_##si(a, b); }                       \
  static SOFTZO_ZO_INLINE I or_(I a, I b) { return mm##or_##si(a, b); }                         \
  static SOFTZO_ZO_INLINE I xor_(I a, I b) { return mm##xor_##si(a, b); }                       \
  static SOFTZO_ZO_INLINE I add32(I a, I b) { return mm##add_epi32(a, b); }                     \
  static SOFTZO_ZO_INLINE I sub32(I a, I b) { return mm##sub_epi32(a, b); }                     \
  static SOFTZO_ZO_INLINE I srli32(I a, int n) { return mm##srli_epi32(a, n); }                 \
  static SOFTZO_ZO_INLINE I slli32(I a, int n) { return mm##slli_epi32(a, n); }                 \
  static SOFTZO_ZO_INLINE I add64(I a, I b) { return mm##add_epi64(a, b); }                     \
  static SOFTZO_ZO_INLINE I sub64(I a, I b) { return mm##sub_epi64(a, b); }                     \
  static SOFTZO_ZO_INLINE I srli64(I a, int n) { return mm##srli_epi64(a, n); }                 \
  static SOFTZO_ZO_INLINE I slli64(I a, int n) { return mm##slli_epi64(a, n); }                 \
  /* The whole 32x32 -> 64-bit product of the low words of the 64-bit lanes. */                 \
  static SOFTZO_ZO_INLINE I mul_epu32(I a, I b) { return mm##mul_epu32(a, b); }                 \
  static SOFTZO_ZO_INLINE F cvt_ps(I a) { return mm##cvtepi32_ps(a); }                          \
  static SOFTZO_ZO_INLINE F as_ps(I a) { return mm##cast##si##_ps(a); }                         \
  static SOFTZO_ZO_INLINE F as_ps(D a) { return mm##castpd_ps(a); }                             \
  static SOFTZO_ZO_INLINE D as_pd(I a) { return mm##cast##si##_pd(a); }                         \
  static SOFTZO_ZO_INLINE D as_pd(F a) { return mm##castps_pd(a); }                             \
  static SOFTZO_ZO_INLINE I as_i(F a) { return mm##castps_##si(a); }                            \
  static SOFTZO_ZO_INLINE I as_i(D a) { return mm##castpd_##si(a); }                            \
  static SOFTZO_ZO_INLINE D zero_pd() { return mm##setzero_pd(); }                              \
  static SOFTZO_ZO_INLINE H lo(I a) { return mm##cast##si##_##hsi(a); }                         \
  static SOFTZO_ZO_INLINE H load_h(const float* p) {                                            \
    return hmm##load_##hsi(reinterpret_cast<const H*>(p));                                      \
  }                                                                                             \
  static SOFTZO_ZO_INLINE H srli32(H a, int n) { return hmm##srli_epi32(a, n); }                \
  static SOFTZO_ZO_INLINE H slli32(H a, int n) { return hmm##slli_epi32(a, n); }                \
  SOFTZO_ZO_FLOAT_OPS(mm, F, float, ps)                                                         \
  SOFTZO_ZO_FLOAT_OPS(mm, D, double, pd)

// Arithmetic, unpacks and aligned stores of one floating-point vector type V of T (suffix sfx).
#define SOFTZO_ZO_FLOAT_OPS(mm, V, T, sfx)                                            \
  static SOFTZO_ZO_INLINE V set1(T a) { return mm##set1_##sfx(a); }                   \
  static SOFTZO_ZO_INLINE V add(V a, V b) { return mm##add_##sfx(a, b); }             \
  static SOFTZO_ZO_INLINE V sub(V a, V b) { return mm##sub_##sfx(a, b); }             \
  static SOFTZO_ZO_INLINE V mul(V a, V b) { return mm##mul_##sfx(a, b); }             \
  static SOFTZO_ZO_INLINE V div(V a, V b) { return mm##div_##sfx(a, b); }             \
  static SOFTZO_ZO_INLINE V fmadd(V a, V b, V c) { return mm##fmadd_##sfx(a, b, c); } \
  static SOFTZO_ZO_INLINE V fmsub(V a, V b, V c) { return mm##fmsub_##sfx(a, b, c); } \
  static SOFTZO_ZO_INLINE V sqrt(V a) { return mm##sqrt_##sfx(a); }                   \
  static SOFTZO_ZO_INLINE V unpacklo(V a, V b) { return mm##unpacklo_##sfx(a, b); }   \
  static SOFTZO_ZO_INLINE V unpackhi(V a, V b) { return mm##unpackhi_##sfx(a, b); }   \
  static SOFTZO_ZO_INLINE void store(T* p, V v) { mm##store_##sfx(p, v); }

namespace {
// Nested so that nothing here can collide with the ISA helper headers' anonymous namespace.
namespace zo {

// The lane trait of T on the ISA trait S (see above), specialised in the ISA's file.
template <class S, typename T>
struct Lanes;

// Scalar fma in T (one rounding; a float fma through double would round twice).
SOFTZO_ZO_INLINE float fma_s(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
SOFTZO_ZO_INLINE double fma_s(double a, double b, double c) { return __builtin_fma(a, b, c); }

// Blocks per lane for the tile layouts of a batch of L blocks (lane l holds block b + perm[l]).
// quad, 4 elements per block: lane 4k + j holds block (L / 4) j + k, so that after the in-lane
// unpacks of the transpose (store_quads), 128-bit chunk k of output vector j holds block
// (L / 4) j + k and no cross-lane permute is needed. pair, 2 elements per block (float64
// gaussian): the same within each half of the batch, which becomes one vector of L / 2 doubles:
// lane (L / 2) h + 2k + j holds block (L / 2) h + (L / 4) j + k.
template <size_t L>
struct BlockPerms {
  alignas(64) int32_t quad[L];
  alignas(64) int32_t pair[L];
  constexpr BlockPerms() : quad(), pair() {
    for (size_t l = 0; l < L; ++l) {
      quad[l] = static_cast<int32_t>(L / 4 * (l % 4) + l / 4);
      const size_t h = l / (L / 2), r = l % (L / 2);
      pair[l] = static_cast<int32_t>(L / 2 * h + L / 4 * (r % 2) + r / 2);
    }
  }
};
template <size_t L>
constexpr BlockPerms<L> kBlockPerms{};

// ---------------------------------------------------------------------------------------------
// Philox4x32-10, L blocks per batch.

template <class S>
class Philox {
 public:
  using I = typename S::I;

  explicit Philox(const softzo_zo_stream* s) {
    uint32_t k0 = static_cast<uint32_t>(s->seed), k1 = static_cast<uint32_t>(s->seed >> 32);
    for (int r = 0; r < 10; ++r) {
      rk0_[r] = S::set1_32(k0);
      rk1_[r] = S::set1_32(k1);
      k0 += SOFTZO_PHILOX_W0;
      k1 += SOFTZO_PHILOX_W1;
    }
    c2_ = S::set1_64(s->direction);
    c3_ = S::set1_64(s->step);
  }

  // w[k] = word k of block b + perm[l] in lane l.
  //
  // Each word lives zero-extended in a 64-bit lane, the blocks in two sets of L / 2 (perm[even]
  // and perm[odd]): vpmuludq then gives the whole 64-bit product, whose low half is the new low
  // word as it stands (vpmuludq ignores the garbage upper half) and whose high half is one shift
  // away. A round costs 2 vpmuludq, 2 shifts and 2 three-way xors (4 xors on AVX2, 2 vpternlogd
  // on AVX-512) per set (no blends, no counter carry logic), ~6 cycles of latency: 16 uops per
  // round for 8 blocks on AVX2, so the 10 rounds cost ~0.16 uops per rademacher element and ~5
  // per gaussian or segmented one. The tiles run two batches back to back, which the core
  // overlaps, and the multiplies (4 per round and batch) are then the limit.
  SOFTZO_ZO_INLINE void blocks(uint64_t b, const int32_t* perm, I w[4]) const {
    const I vperm = S::load_i(perm);
    const I m0 = S::set1_64(SOFTZO_PHILOX_M0), m1 = S::set1_64(SOFTZO_PHILOX_M1);
    const I off[2] = {S::and_(vperm, S::set1_64(0xffffffff)), S::srli64(vperm, 32)};
    I x0[2], x1[2], x2[2], x3[2];
    for (int t = 0; t < 2; ++t) {
      // 64-bit block numbers: the low word is the lane as it stands, the high word shifted down.
      const I bt = S::add64(S::set1_64(b), off[t]);
      x0[t] = bt;
      x1[t] = S::srli64(bt, 32);
      x2[t] = c2_;
      x3[t] = c3_;
    }
    for (int r = 0; r < 10; ++r) {
      for (int t = 0; t < 2; ++t) {
        const I p0 = S::mul_epu32(x0[t], m0);
        const I p1 = S::mul_epu32(x2[t], m1);
        x0[t] = S::xor3(S::srli64(p1, 32), x1[t], rk0_[r]);
        x2[t] = S::xor3(S::srli64(p0, 32), x3[t], rk1_[r]);
        x1[t] = p1;
        x3[t] = p0;
      }
    }
    // Even lanes from the first set, odd lanes from the second: lane l holds block perm[l].
    w[0] = S::blend_odd32(x0[0], S::slli64(x0[1], 32));
    w[1] = S::blend_odd32(x1[0], S::slli64(x1[1], 32));
    w[2] = S::blend_odd32(x2[0], S::slli64(x2[1], 32));
    w[3] = S::blend_odd32(x3[0], S::slli64(x3[1], 32));
  }

 private:
  I rk0_[10], rk1_[10];  // round keys
  I c2_, c3_;
};

// ---------------------------------------------------------------------------------------------
// The draws (zo_scalar.cc's gauss_f32 / gauss_f64 / segmented, lane by lane).

template <class S>
SOFTZO_ZO_INLINE void gauss_f32(typename S::I wa, typename S::I wb, typename S::F* zc,
                                typename S::F* zs) {
  using I = typename S::I;
  using F = typename S::F;
  const I k1 = S::add32(S::srli32(wa, 8), S::set1_32(1));
  const F u1 = S::mul(S::cvt_ps(k1), S::set1(0x1p-24f));
  const I ix = S::add32(S::as_i(u1), S::set1_32(SOFTZO_ZO_F32_LOG_OFFSET));
  const F e = S::cvt_ps(S::sub32(S::srli32(ix, 23), S::set1_32(127)));
  const F m = S::as_ps(
      S::add32(S::and_(ix, S::set1_32(0x007fffffu)), S::set1_32(SOFTZO_ZO_F32_SQRTHALF_BITS)));
  const F f = S::sub(m, S::set1(1.0f));
  const F s = S::div(f, S::add(f, S::set1(2.0f)));
  const F hfsq = S::mul(S::mul(f, S::set1(0.5f)), f);
  const F z2 = S::mul(s, s);
  F p = S::fmadd(S::set1(SOFTZO_ZO_F32_LOG_C4), z2, S::set1(SOFTZO_ZO_F32_LOG_C3));
  p = S::fmadd(p, z2, S::set1(SOFTZO_ZO_F32_LOG_C2));
  p = S::fmadd(p, z2, S::set1(SOFTZO_ZO_F32_LOG_C1));
  const F lnm = S::add(f, S::fmsub(s, S::fmadd(z2, p, hfsq), hfsq));
  const F ln =
      S::fmadd(e, S::set1(SOFTZO_ZO_F32_LN2_HI), S::fmadd(e, S::set1(SOFTZO_ZO_F32_LN2_LO), lnm));
  const F r = S::sqrt(S::mul(ln, S::set1(-2.0f)));

  const I k = S::srli32(wb, 8);
  const I q = S::srli32(S::add32(k, S::set1_32(1u << 21)), 22);
  const F t = S::mul(S::cvt_ps(S::sub32(k, S::slli32(q, 22))), S::set1(0x1p-24f));
  const F u = S::mul(t, t);
  F ps = S::fmadd(S::set1(SOFTZO_ZO_F32_SIN_C4), u, S::set1(SOFTZO_ZO_F32_SIN_C3));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F32_SIN_C2));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F32_SIN_C1));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F32_SIN_C0));
  const F sn = S::mul(t, ps);
  F pc = S::fmadd(S::set1(SOFTZO_ZO_F32_COS_C5), u, S::set1(SOFTZO_ZO_F32_COS_C4));
  pc = S::fmadd(pc, u, S::set1(SOFTZO_ZO_F32_COS_C3));
  pc = S::fmadd(pc, u, S::set1(SOFTZO_ZO_F32_COS_C2));
  pc = S::fmadd(pc, u, S::set1(SOFTZO_ZO_F32_COS_C1));
  const F cs = S::fmadd(pc, u, S::set1(1.0f));
  const F cq = S::select_odd(q, cs, sn), sq = S::select_odd(q, sn, cs);
  const I two = S::set1_32(2);
  const I csign = S::slli32(S::and_(S::add32(q, S::set1_32(1)), two), 30);
  const I ssign = S::slli32(S::and_(q, two), 30);
  *zc = S::as_ps(S::xor_(S::as_i(S::mul(r, cq)), csign));
  *zs = S::as_ps(S::xor_(S::as_i(S::mul(r, sq)), ssign));
}

// Exact double of k <= 2^53: the two 32-bit halves through the 2^84 / 2^52 exponent tricks.
template <class S>
SOFTZO_ZO_INLINE typename S::D u53_to_pd(typename S::I k) {
  using D = typename S::D;
  const D hi = S::sub(S::as_pd(S::or_(S::srli64(k, 32), S::set1_64(0x4530000000000000))),
                      S::set1(0x1.00000001p84));  // 2^84 + 2^52
  const D lo = S::as_pd(S::or_(S::and_(k, S::set1_64(0xffffffff)), S::set1_64(0x4330000000000000)));
  return S::add(hi, lo);
}

// a, b: the 53-bit integers of u1 - 2^-53 and u2, in 64-bit lanes.
template <class S>
SOFTZO_ZO_INLINE void gauss_f64(typename S::I a, typename S::I b, typename S::D* zc,
                                typename S::D* zs) {
  using I = typename S::I;
  using D = typename S::D;
  const D u1 = S::mul(u53_to_pd<S>(S::add64(a, S::set1_64(1))), S::set1(0x1p-53));
  const I ix = S::add64(S::as_i(u1), S::set1_64(SOFTZO_ZO_F64_LOG_OFFSET));
  const D e = S::sub(S::as_pd(S::or_(S::srli64(ix, 52), S::set1_64(0x4330000000000000))),
                     S::set1(0x1.00000000003ffp52));  // 2^52 + 1023
  const D m = S::as_pd(S::add64(S::and_(ix, S::set1_64(0x000fffffffffffff)),
                                S::set1_64(SOFTZO_ZO_F64_SQRTHALF_BITS)));
  const D f = S::sub(m, S::set1(1.0));
  const D s = S::div(f, S::add(f, S::set1(2.0)));
  const D hfsq = S::mul(S::mul(f, S::set1(0.5)), f);
  const D z2 = S::mul(s, s);
  D p = S::fmadd(S::set1(SOFTZO_ZO_F64_LOG_C9), z2, S::set1(SOFTZO_ZO_F64_LOG_C8));
  p = S::fmadd(p, z2, S::set1(SOFTZO_ZO_F64_LOG_C7));
  p = S::fmadd(p, z2, S::set1(SOFTZO_ZO_F64_LOG_C6));
  p = S::fmadd(p, z2, S::set1(SOFTZO_ZO_F64_LOG_C5));
  p = S::fmadd(p, z2, S::set1(SOFTZO_ZO_F64_LOG_C4));
  p = S::fmadd(p, z2, S::set1(SOFTZO_ZO_F64_LOG_C3));
  p = S::fmadd(p, z2, S::set1(SOFTZO_ZO_F64_LOG_C2));
  p = S::fmadd(p, z2, S::set1(SOFTZO_ZO_F64_LOG_C1));
  const D lnm = S::add(f, S::fmsub(s, S::fmadd(z2, p, hfsq), hfsq));
  const D ln =
      S::fmadd(e, S::set1(SOFTZO_ZO_F64_LN2_HI), S::fmadd(e, S::set1(SOFTZO_ZO_F64_LN2_LO), lnm));
  const D r = S::sqrt(S::mul(ln, S::set1(-2.0)));

  const I q = S::srli64(S::add64(b, S::set1_64(uint64_t{1} << 50)), 51);
  const I j = S::sub64(b, S::slli64(q, 51));  // |j| <= 2^50
  const D t =
      S::mul(S::sub(S::as_pd(S::add64(j, S::set1_64(0x4338000000000000))), S::set1(0x1.8p52)),
             S::set1(0x1p-53));
  const D u = S::mul(t, t);
  D ps = S::fmadd(S::set1(SOFTZO_ZO_F64_SIN_C8), u, S::set1(SOFTZO_ZO_F64_SIN_C7));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F64_SIN_C6));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F64_SIN_C5));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F64_SIN_C4));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F64_SIN_C3));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F64_SIN_C2));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F64_SIN_C1));
  ps = S::fmadd(ps, u, S::set1(SOFTZO_ZO_F64_SIN_C0));
  const D sn = S::mul(t, ps);
  D pc = S::fmadd(S::set1(SOFTZO_ZO_F64_COS_C8), u, S::set1(SOFTZO_ZO_F64_COS_C7));
  pc = S::fmadd(pc, u, S::set1(SOFTZO_ZO_F64_COS_C6));
  pc = S::fmadd(pc, u, S::set1(SOFTZO_ZO_F64_COS_C5));
  pc = S::fmadd(pc, u, S::set1(SOFTZO_ZO_F64_COS_C4));
  pc = S::fmadd(pc, u, S::set1(SOFTZO_ZO_F64_COS_C3));
  pc = S::fmadd(pc, u, S::set1(SOFTZO_ZO_F64_COS_C2));
  pc = S::fmadd(pc, u, S::set1(SOFTZO_ZO_F64_COS_C1));
  const D cs = S::fmadd(pc, u, S::set1(1.0));
  const D cq = S::select_odd(q, cs, sn), sq = S::select_odd(q, sn, cs);
  const I two = S::set1_64(2);
  const I csign = S::slli64(S::and_(S::add64(q, S::set1_64(1)), two), 62);
  const I ssign = S::slli64(S::and_(q, two), 62);
  *zc = S::as_pd(S::xor_(S::as_i(S::mul(r, cq)), csign));
  *zs = S::as_pd(S::xor_(S::as_i(S::mul(r, sq)), ssign));
}

// (w & 0x7fffffff) >> 7, the segmented magnitude's integer, then 0.5 + k 2^-25 (the product is
// exact) with the sign of w.
template <class S>
SOFTZO_ZO_INLINE typename S::F segmented_f32(typename S::I w) {
  const typename S::I k = S::srli32(S::slli32(w, 1), 8);
  const typename S::F mag = S::fmadd(S::cvt_ps(k), S::set1(0x1p-25f), S::set1(0.5f));
  return S::as_ps(S::or_(S::as_i(mag), S::and_(w, S::set1_32(0x80000000u))));
}

// L / 2 words (a half vector) to L / 2 doubles.
template <class S>
SOFTZO_ZO_INLINE typename S::D segmented_f64(typename S::H w) {
  const typename S::H k = S::srli32(S::slli32(w, 1), 8);
  const typename S::D mag = S::fmadd(S::cvt_pd(k), S::set1(0x1p-25), S::set1(0.5));
  // Sign-extended, the word's bit 31 lands in bit 63.
  const typename S::I sign = S::and_(S::sext64(w), S::set1_64(0x8000000000000000));
  return S::as_pd(S::or_(S::as_i(mag), sign));
}

// 4 x L transpose for the quad layout: z_k[l] is element k of block quad[l]; writes the 4 L
// elements of blocks 0 .. L - 1 in order, L / 4 blocks per output vector.
template <class S>
SOFTZO_ZO_INLINE void store_quads(typename S::F z0, typename S::F z1, typename S::F z2,
                                  typename S::F z3, float* out) {
  constexpr size_t L = S::kWords;
  const typename S::D t0 = S::as_pd(S::unpacklo(z0, z1));
  const typename S::D t1 = S::as_pd(S::unpackhi(z0, z1));
  const typename S::D t2 = S::as_pd(S::unpacklo(z2, z3));
  const typename S::D t3 = S::as_pd(S::unpackhi(z2, z3));
  S::store(out, S::as_ps(S::unpacklo(t0, t2)));
  S::store(out + L, S::as_ps(S::unpackhi(t0, t2)));
  S::store(out + 2 * L, S::as_ps(S::unpacklo(t1, t3)));
  S::store(out + 3 * L, S::as_ps(S::unpackhi(t1, t3)));
}

// ---------------------------------------------------------------------------------------------
// Tiles: fill(ph, b, out) writes the kPerBlock * kTileBlocks elements of blocks b, b + 1, ... in
// order: two Philox batches of L blocks, which the core overlaps.

template <class S>
constexpr size_t kTileBlocks = 2 * S::kWords;

template <class S, typename T>
struct GaussTile;

template <class S>
struct GaussTile<S, float> {
  static constexpr size_t kPerBlock = 4;
  static SOFTZO_ZO_INLINE void fill(const Philox<S>& ph, uint64_t b, float* out) {
    constexpr size_t L = S::kWords;
    typename S::I w[8];
    ph.blocks(b, kBlockPerms<L>.quad, w);
    ph.blocks(b + L, kBlockPerms<L>.quad, w + 4);
    for (int m = 0; m < 2; ++m) {
      typename S::F c0, s0, c1, s1;
      gauss_f32<S>(w[4 * m], w[4 * m + 1], &c0, &s0);
      gauss_f32<S>(w[4 * m + 2], w[4 * m + 3], &c1, &s1);
      store_quads<S>(c0, s0, c1, s1, out + 4 * L * m);
    }
  }
};

template <class S>
struct GaussTile<S, double> {
  static constexpr size_t kPerBlock = 2;
  static SOFTZO_ZO_INLINE void fill(const Philox<S>& ph, uint64_t b, double* out) {
    using I = typename S::I;
    constexpr size_t L = S::kWords;
    I w[8];
    ph.blocks(b, kBlockPerms<L>.pair, w);
    ph.blocks(b + L, kBlockPerms<L>.pair, w + 4);
    for (int h = 0; h < 4; ++h) {  // L / 2 blocks each, two per batch
      I x[4];
      for (int k = 0; k < 4; ++k) {
        const I wk = w[4 * (h >> 1) + k];
        x[k] = S::zext64((h & 1) == 0 ? S::lo(wk) : S::hi(wk));
      }
      const I a = S::srli64(S::or_(S::slli64(x[0], 32), x[1]), 11);
      const I bb = S::srli64(S::or_(S::slli64(x[2], 32), x[3]), 11);
      typename S::D zc, zs;
      gauss_f64<S>(a, bb, &zc, &zs);
      // pair: lanes 2k of zc, zs hold blocks (L / 2) h + k, lanes 2k + 1 blocks
      // (L / 2) h + L / 4 + k.
      S::store(out + L * h, S::unpacklo(zc, zs));
      S::store(out + L * h + L / 2, S::unpackhi(zc, zs));
    }
  }
};

template <class S, typename T>
struct SegTile;

template <class S>
struct SegTile<S, float> {
  static constexpr size_t kPerBlock = 4;
  static SOFTZO_ZO_INLINE void fill(const Philox<S>& ph, uint64_t b, float* out) {
    constexpr size_t L = S::kWords;
    typename S::I w[8];
    ph.blocks(b, kBlockPerms<L>.quad, w);
    ph.blocks(b + L, kBlockPerms<L>.quad, w + 4);
    for (int m = 0; m < 2; ++m) {
      store_quads<S>(segmented_f32<S>(w[4 * m]), segmented_f32<S>(w[4 * m + 1]),
                     segmented_f32<S>(w[4 * m + 2]), segmented_f32<S>(w[4 * m + 3]),
                     out + 4 * L * m);
    }
  }
};

template <class S>
struct SegTile<S, double> {
  static constexpr size_t kPerBlock = 4;
  static SOFTZO_ZO_INLINE void fill(const Philox<S>& ph, uint64_t b, double* out) {
    constexpr size_t L = S::kWords;
    typename S::I w[8];
    ph.blocks(b, kBlockPerms<L>.quad, w);
    ph.blocks(b + L, kBlockPerms<L>.quad, w + 4);
    alignas(64) float words[8 * L];
    for (int m = 0; m < 2; ++m) {
      store_quads<S>(S::as_ps(w[4 * m]), S::as_ps(w[4 * m + 1]), S::as_ps(w[4 * m + 2]),
                     S::as_ps(w[4 * m + 3]), words + 4 * L * m);
    }
    for (size_t k = 0; k < 16; ++k) {
      S::store(out + L / 2 * k, segmented_f64<S>(S::load_h(words + L / 2 * k)));
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Drivers: op(i, z, mk) handles elements [i, i + lanes) with their z (mk: lane mask of a partial
// vector, nullptr for a full one; z is 0 or +-1 outside mk).

template <class S, typename T, class Tile, class Op>
void run_tiles(size_t n, uint64_t offset, const Philox<S>& ph, Op& op_ref) {
  using A = Lanes<S, T>;
  constexpr size_t L = A::kLanes, kTile = kTileBlocks<S> * Tile::kPerBlock;
  Op op = op_ref;  // a local copy stays in registers: stores through theta cannot alias it
  alignas(64) T buf[kTile];
  uint64_t b = offset / Tile::kPerBlock;
  size_t skip = static_cast<size_t>(offset % Tile::kPerBlock);
  size_t i = 0;
  while (i < n) {
    Tile::fill(ph, b, buf);
    if (skip == 0 && n - i >= kTile) {
      for (size_t k = 0; k < kTile; k += L) op(i + k, A::load(buf + k), nullptr);
      i += kTile;
    } else {
      const size_t cnt = n - i < kTile - skip ? n - i : kTile - skip;
      size_t k = 0;
      for (; k + L <= cnt; k += L) op(i + k, A::load(buf + skip + k), nullptr);
      if (k < cnt) {
        const typename A::M mk = A::tail(cnt - k);
        op(i + k, A::load_n(buf + skip + k, &mk), &mk);
      }
      i += cnt;
      skip = 0;
    }
    b += kTileBlocks<S>;
  }
  op_ref = op;
}

// One batch: L blocks = 128 L elements. The words are transposed into element order (the quad
// layout and store_quads), so word k holds elements 32k .. 32k + 31 of the batch, bit j element
// 32k + j.
template <class S, typename T, class Op>
void run_rademacher(size_t n, uint64_t offset, const Philox<S>& ph, Op& op_ref) {
  using A = Lanes<S, T>;
  constexpr size_t L = A::kLanes, kWords = 4 * S::kWords, kBatch = 32 * kWords;
  Op op = op_ref;  // a local copy stays in registers: stores through theta cannot alias it
  alignas(64) uint32_t words[kWords];
  size_t i = 0;
  while (i < n) {
    const uint64_t g = offset + i;
    typename S::I w[4];
    ph.blocks(g >> 7, kBlockPerms<S::kWords>.quad, w);
    store_quads<S>(S::as_ps(w[0]), S::as_ps(w[1]), S::as_ps(w[2]), S::as_ps(w[3]),
                   reinterpret_cast<float*>(words));
    size_t pos = static_cast<size_t>(g & 127);
    const size_t end = pos + (n - i < kBatch - pos ? n - i : kBatch - pos);
    if (pos == 0 && end == kBatch) {  // the steady state: whole words
      for (size_t k = 0; k < kWords; ++k) {
        const typename A::RadWord word = A::rad_word(words[k]);
        for (size_t v = 0; v < 32 / L; ++v) op(i + v * L, A::rad_full(word, v), nullptr);
        i += 32;
      }
      continue;
    }
    while (pos < end) {
      const typename A::RadWord word = A::rad_word(words[pos >> 5]);
      const size_t p = pos & 31;
      if (p == 0 && end - pos >= 32) {
        for (size_t v = 0; v < 32 / L; ++v) op(i + v * L, A::rad_full(word, v), nullptr);
        pos += 32;
        i += 32;
      } else {  // up to the end of this vector's lane group, within the word
        const size_t room = L - p % L;
        const size_t cnt = end - pos < room ? end - pos : room;
        if (cnt == L) {
          op(i, A::rad_at(word, p), nullptr);
        } else {
          const typename A::M mk = A::tail(cnt);
          op(i, A::rad_at(word, p), &mk);
        }
        pos += cnt;
        i += cnt;
      }
    }
  }
  op_ref = op;
}

template <class S, typename T, class Op>
void run(size_t n, uint64_t offset, const softzo_zo_stream* s, Op& op) {
  if (n == 0) return;
  const Philox<S> ph(s);
  if (s->dist == SOFTZO_ZO_GAUSSIAN) {
    run_tiles<S, T, GaussTile<S, T>>(n, offset, ph, op);
  } else if (s->dist == SOFTZO_ZO_SEGMENTED) {
    run_tiles<S, T, SegTile<S, T>>(n, offset, ph, op);
  } else {
    run_rademacher<S, T>(n, offset, ph, op);
  }
}

// ---------------------------------------------------------------------------------------------
// The operations (zo_scalar.cc's, on vectors).

template <class S, typename T>
struct FillOp {
  using A = Lanes<S, T>;
  T* y;
  SOFTZO_ZO_INLINE void operator()(size_t i, typename A::V z, const typename A::M* mk) {
    A::store_n(y + i, mk, z);
  }
};

template <class S, typename T>
struct AxpyOp {
  using A = Lanes<S, T>;
  using V = typename A::V;
  V c;
  T* theta;
  SOFTZO_ZO_INLINE V update(V x, V z) const { return S::fmadd(c, z, x); }
  SOFTZO_ZO_INLINE void operator()(size_t i, V z, const typename A::M* mk) {
    A::store_n(theta + i, mk, update(A::load_n(theta + i, mk), z));
  }
};

template <class S, typename T>
struct RestoreUpdateOp {
  using A = Lanes<S, T>;
  using V = typename A::V;
  V c_restore, decay, neg_step;
  T* theta;
  RestoreUpdateOp(T c_restore_, T lr, T g, T wd, T* theta_)
      : c_restore(S::set1(c_restore_)),
        decay(S::set1(fma_s(-lr, wd, T(1)))),
        neg_step(S::set1(-(lr * g))),
        theta(theta_) {}
  SOFTZO_ZO_INLINE V update(V x, V z) const {
    return S::fmadd(neg_step, z, S::mul(S::fmadd(c_restore, z, x), decay));
  }
  SOFTZO_ZO_INLINE void operator()(size_t i, V z, const typename A::M* mk) {
    A::store_n(theta + i, mk, update(A::load_n(theta + i, mk), z));
  }
};

// Bits i .. i + 31 of a Sparse MeZO mask (bit k of word k >> 5), low bit first; the word after
// i's is read only when lanes reach into it and it holds elements below n.
SOFTZO_ZO_INLINE uint32_t mask_bits(const uint32_t* mask, size_t n, size_t i, size_t lanes) {
  const size_t w = i >> 5, sh = i & 31;
  uint64_t v = mask[w];
  if (sh + lanes > 32 && (w + 1) * 32 < n) v |= static_cast<uint64_t>(mask[w + 1]) << 32;
  return static_cast<uint32_t>(v >> sh);
}

// Lanes outside the mask are stored back unchanged (bit for bit), so full vectors need no
// masked store.
template <class S, typename T, class Inner>
struct MaskedOp {
  using A = Lanes<S, T>;
  using V = typename A::V;
  Inner inner;
  const uint32_t* mask;
  size_t n;
  SOFTZO_ZO_INLINE void operator()(size_t i, V z, const typename A::M* mk) {
    const V x = A::load_n(inner.theta + i, mk);
    const uint32_t in = mask_bits(mask, n, i, A::kLanes);
    A::store_n(inner.theta + i, mk, A::select_bits(in, x, inner.update(x, z)));
  }
};

// Partial vectors load sigma = 0 into the lanes past n: their inf / NaN is never stored.
template <class S, typename T>
struct AxpyDiagOp {
  using A = Lanes<S, T>;
  using V = typename A::V;
  V c;
  const T* sigma;
  T* theta;
  SOFTZO_ZO_INLINE void operator()(size_t i, V z, const typename A::M* mk) {
    const V u = S::div(z, S::sqrt(A::load_n(sigma + i, mk)));
    A::store_n(theta + i, mk, S::fmadd(c, u, A::load_n(theta + i, mk)));
  }
};

template <class S, typename T>
struct HiZooOp {
  using A = Lanes<S, T>;
  using V = typename A::V;
  V c_restore, decay, neg_step, keep, gain;
  T* sigma;
  T* theta;
  HiZooOp(T c_restore_, T lr, T g, T wd, T keep_, T gain_, T* sigma_, T* theta_)
      : c_restore(S::set1(c_restore_)),
        decay(S::set1(fma_s(-lr, wd, T(1)))),
        neg_step(S::set1(-(lr * g))),
        keep(S::set1(keep_)),
        gain(S::set1(gain_)),
        sigma(sigma_),
        theta(theta_) {}
  SOFTZO_ZO_INLINE void operator()(size_t i, V z, const typename A::M* mk) {
    const V s = A::load_n(sigma + i, mk);
    const V t = S::fmadd(c_restore, S::div(z, S::sqrt(s)), A::load_n(theta + i, mk));
    const V s2 = S::mul(s, S::fmadd(gain, S::mul(z, z), keep));
    A::store_n(sigma + i, mk, s2);
    A::store_n(theta + i, mk, S::fmadd(neg_step, S::div(z, S::sqrt(s2)), S::mul(t, decay)));
  }
};

// sum_i a_i b_i in double lanes: one accumulator per half of a float vector.
template <class S, typename T>
struct DoubleSum {
  using A = Lanes<S, T>;
  typename S::D acc[2] = {S::zero_pd(), S::zero_pd()};
  SOFTZO_ZO_INLINE void add_products(typename A::V a, typename A::V b) {
    for (int h = 0; h < A::kHalves; ++h) {
      acc[h] = S::fmadd(A::half_pd(a, h), A::half_pd(b, h), acc[h]);
    }
  }
  double result() const { return S::hsum(S::add(acc[0], acc[1])); }
};

template <class S, typename T>
struct SumSqOp {
  using A = Lanes<S, T>;
  DoubleSum<S, T> sum;
  SOFTZO_ZO_INLINE void operator()(size_t, typename A::V z, const typename A::M* mk) {
    const typename A::V zk = A::keep(z, mk);
    sum.add_products(zk, zk);
  }
};

template <class S, typename T>
struct DotOp {
  using A = Lanes<S, T>;
  const T* v;
  DoubleSum<S, T> sum;
  SOFTZO_ZO_INLINE void operator()(size_t i, typename A::V z, const typename A::M* mk) {
    sum.add_products(A::keep(z, mk), A::load_n(v + i, mk));
  }
};

// ---------------------------------------------------------------------------------------------
// The kernels of zo_kernels.h's list, for the ISA trait S.

template <class S, typename T>
struct Kernels {
  static void fill(size_t n, uint64_t offset, const softzo_zo_stream* s, T* y) {
    FillOp<S, T> op{y};
    run<S, T>(n, offset, s, op);
  }
  static void axpy(size_t n, uint64_t offset, const softzo_zo_stream* s, T c, T* theta) {
    AxpyOp<S, T> op{S::set1(c), theta};
    run<S, T>(n, offset, s, op);
  }
  static void restore_update(size_t n, uint64_t offset, const softzo_zo_stream* s, T c_restore,
                             T lr, T g, T wd, T* theta) {
    RestoreUpdateOp<S, T> op(c_restore, lr, g, wd, theta);
    run<S, T>(n, offset, s, op);
  }
  // 32 elements per mask word: |theta| <= threshold per vector (NaN takes no part), shifted into
  // place.
  static void mask_build(size_t n, T threshold, const T* theta, uint32_t* mask) {
    using A = Lanes<S, T>;
    constexpr size_t L = A::kLanes;
    const typename A::V thr = S::set1(threshold);
    size_t w = 0;
    for (; 32 * w + 32 <= n; ++w) {
      uint32_t bits = 0;
      for (size_t v = 0; v < 32 / L; ++v) {
        bits |= S::le_bits(S::abs(A::load(theta + 32 * w + v * L)), thr) << (v * L);
      }
      mask[w] = bits;
    }
    if (32 * w < n) {
      uint32_t bits = 0;
      for (size_t j = 0; 32 * w + j < n; ++j) {
        const T x = theta[32 * w + j];
        if ((x < T(0) ? -x : x) <= threshold) bits |= uint32_t{1} << j;
      }
      mask[w] = bits;
    }
  }
  static void axpy_mask(size_t n, uint64_t offset, const softzo_zo_stream* s, T c,
                        const uint32_t* mask, T* theta) {
    MaskedOp<S, T, AxpyOp<S, T>> op{AxpyOp<S, T>{S::set1(c), theta}, mask, n};
    run<S, T>(n, offset, s, op);
  }
  static void restore_update_mask(size_t n, uint64_t offset, const softzo_zo_stream* s, T c_restore,
                                  T lr, T g, T wd, const uint32_t* mask, T* theta) {
    MaskedOp<S, T, RestoreUpdateOp<S, T>> op{RestoreUpdateOp<S, T>(c_restore, lr, g, wd, theta),
                                             mask, n};
    run<S, T>(n, offset, s, op);
  }
  static void axpy_diag(size_t n, uint64_t offset, const softzo_zo_stream* s, T c, const T* sigma,
                        T* theta) {
    AxpyDiagOp<S, T> op{S::set1(c), sigma, theta};
    run<S, T>(n, offset, s, op);
  }
  static void hizoo_update(size_t n, uint64_t offset, const softzo_zo_stream* s, T c_restore, T lr,
                           T g, T wd, T keep, T gain, T* sigma, T* theta) {
    HiZooOp<S, T> op(c_restore, lr, g, wd, keep, gain, sigma, theta);
    run<S, T>(n, offset, s, op);
  }
  static double sumsq(size_t n, uint64_t offset, const softzo_zo_stream* s) {
    if (s->dist != SOFTZO_ZO_GAUSSIAN && s->dist != SOFTZO_ZO_SEGMENTED) {
      return static_cast<double>(n);
    }
    SumSqOp<S, T> op;
    run<S, T>(n, offset, s, op);
    return op.sum.result();
  }
  static double dot(size_t n, uint64_t offset, const softzo_zo_stream* s, const T* v) {
    DotOp<S, T> op{v, {}};
    run<S, T>(n, offset, s, op);
    return op.sum.result();
  }
};

}  // namespace zo
}  // namespace

// The exported kernels softzo_<dt>_zo_<name>_<isa> of zo_kernels.h's list, for float and
// double, from the ISA trait S (isa may be a macro: it is expanded before it is pasted).
#define SOFTZO_ZO_DEFINE_KERNELS(S, isa)         \
  SOFTZO_ZO_DEFINE_KERNELS_T(S, float, f32, isa) \
  SOFTZO_ZO_DEFINE_KERNELS_T(S, double, f64, isa)
#define SOFTZO_ZO_DEFINE_KERNELS_T(S, T, dt, isa)                                                  \
  void softzo_##dt##_zo_fill_##isa(size_t n, uint64_t offset, const softzo_zo_stream* s, T* y) {   \
    zo::Kernels<S, T>::fill(n, offset, s, y);                                                      \
  }                                                                                                \
  void softzo_##dt##_zo_axpy_##isa(size_t n, uint64_t offset, const softzo_zo_stream* s, T c,      \
                                   T* theta) {                                                     \
    zo::Kernels<S, T>::axpy(n, offset, s, c, theta);                                               \
  }                                                                                                \
  void softzo_##dt##_zo_restore_update_##isa(size_t n, uint64_t offset, const softzo_zo_stream* s, \
                                             T c_restore, T lr, T g, T wd, T* theta) {             \
    zo::Kernels<S, T>::restore_update(n, offset, s, c_restore, lr, g, wd, theta);                  \
  }                                                                                                \
  void softzo_##dt##_zo_mask_build_##isa(size_t n, T threshold, const T* theta, uint32_t* mask) {  \
    zo::Kernels<S, T>::mask_build(n, threshold, theta, mask);                                      \
  }                                                                                                \
  void softzo_##dt##_zo_axpy_mask_##isa(size_t n, uint64_t offset, const softzo_zo_stream* s, T c, \
                                        const uint32_t* mask, T* theta) {                          \
    zo::Kernels<S, T>::axpy_mask(n, offset, s, c, mask, theta);                                    \
  }                                                                                                \
  void softzo_##dt##_zo_restore_update_mask_##isa(size_t n, uint64_t offset,                       \
                                                  const softzo_zo_stream* s, T c_restore, T lr,    \
                                                  T g, T wd, const uint32_t* mask, T* theta) {     \
    zo::Kernels<S, T>::restore_update_mask(n, offset, s, c_restore, lr, g, wd, mask, theta);       \
  }                                                                                                \
  void softzo_##dt##_zo_axpy_diag_##isa(size_t n, uint64_t offset, const softzo_zo_stream* s, T c, \
                                        const T* sigma, T* theta) {                                \
    zo::Kernels<S, T>::axpy_diag(n, offset, s, c, sigma, theta);                                   \
  }                                                                                                \
  void softzo_##dt##_zo_hizoo_update_##isa(size_t n, uint64_t offset, const softzo_zo_stream* s,   \
                                           T c_restore, T lr, T g, T wd, T keep, T gain, T* sigma, \
                                           T* theta) {                                             \
    zo::Kernels<S, T>::hizoo_update(n, offset, s, c_restore, lr, g, wd, keep, gain, sigma, theta); \
  }                                                                                                \
  double softzo_##dt##_zo_sumsq_##isa(size_t n, uint64_t offset, const softzo_zo_stream* s) {      \
    return zo::Kernels<S, T>::sumsq(n, offset, s);                                                 \
  }                                                                                                \
  double softzo_##dt##_zo_dot_##isa(size_t n, uint64_t offset, const softzo_zo_stream* s,          \
                                    const T* v) {                                                  \
    return zo::Kernels<S, T>::dot(n, offset, s, v);                                                \
  }

#endif  // SOFTZO_KERNELS_ZO_ZO_SIMD_H_
