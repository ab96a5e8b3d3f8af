// AVX2 + FMA zeroth-order kernels (float32 and float64), built with -mavx2 -mfma.
//
// Philox4x32-10 runs on 8 blocks per call, each word zero-extended in a 64-bit lane so that
// _mm256_mul_epu32 yields the whole 32x32->64 product. The draws repeat zo_scalar.cc operation
// for operation (see zo_kernels.h), so z is bitwise the scalar one. Gaussian and segmented draws
// go through a tile buffer of 16 blocks' elements, written in element order, so any offset and
// any tail are just a window into a tile; rademacher expands the bits of 8 blocks (1024
// elements) straight into +-1 vectors with variable shifts, at the speed of the theta stream.
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "isa/avx2.h"
#include "kernels/zo/zo_kernels.h"

namespace {
// Nested so that nothing here can collide with the shared helper header's anonymous namespace.
namespace zo {

// Blocks per lane for the tile layouts (lane l holds block b + kPerm[l]). With 4 elements per
// block, lane 4k + j holds block 2j + k: after the in-lane unpacks of the transpose, each
// 128-bit half then already holds the right block and no cross-lane permute is needed. With 2
// elements per block (float64 gaussian), each group of 4 lanes does the same: 2k + j -> 2j + k.
alignas(32) const int32_t kPermQuad[8] = {0, 2, 4, 6, 1, 3, 5, 7};
alignas(32) const int32_t kPermPair[8] = {0, 2, 1, 3, 4, 6, 5, 7};
// Lane numbers (rademacher shift counts of a partial vector).
alignas(32) const int32_t kIota[8] = {0, 1, 2, 3, 4, 5, 6, 7};

// Rademacher: shift counts that bring bit 8v + l (float32) / 4v + l (float64) of a broadcast
// word into the sign bit of lane l.
alignas(32) const int32_t kShift32[4][8] = {{31, 30, 29, 28, 27, 26, 25, 24},
                                            {23, 22, 21, 20, 19, 18, 17, 16},
                                            {15, 14, 13, 12, 11, 10, 9, 8},
                                            {7, 6, 5, 4, 3, 2, 1, 0}};
alignas(32) const int64_t kShift64[8][4] = {{63, 62, 61, 60}, {59, 58, 57, 56}, {55, 54, 53, 52},
                                            {51, 50, 49, 48}, {47, 46, 45, 44}, {43, 42, 41, 40},
                                            {39, 38, 37, 36}, {35, 34, 33, 32}};

inline __m256i load_i(const void* p) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
}

// ---------------------------------------------------------------------------------------------
// Philox4x32-10, 8 blocks per batch: 16 uops per round (4 vpmuludq, 4 shifts, 8 xors), so the
// 10 rounds cost ~0.16 uops per rademacher element and ~5 per gaussian or segmented one.

class Philox8 {
 public:
  explicit Philox8(const softzo_zo_stream* s) {
    uint32_t k0 = static_cast<uint32_t>(s->seed), k1 = static_cast<uint32_t>(s->seed >> 32);
    for (int r = 0; r < 10; ++r) {
      rk0_[r] = _mm256_set1_epi32(static_cast<int32_t>(k0));
      rk1_[r] = _mm256_set1_epi32(static_cast<int32_t>(k1));
      k0 += SOFTZO_PHILOX_W0;
      k1 += SOFTZO_PHILOX_W1;
    }
    c2_ = _mm256_set1_epi64x(s->direction);
    c3_ = _mm256_set1_epi64x(s->step);
  }

  // w[k] = word k of block b + perm[l] in lane l.
  //
  // Each word lives zero-extended in a 64-bit lane, the blocks in two sets of 4 (perm[0, 2, 4,
  // 6] and perm[1, 3, 5, 7]): vpmuludq then gives the whole 64-bit product, whose low half is the
  // new low word as it stands (vpmuludq ignores the garbage upper half) and whose high half is
  // one shift away. A round costs 2 vpmuludq, 2 shifts and 4 xors per set (no blends, no counter
  // carry logic), ~6 cycles of latency; the tiles run two batches back to back, which the core
  // overlaps, and the multiplies (4 per round for 8 blocks) are then the limit.
  void blocks(uint64_t b, const int32_t* perm, __m256i w[4]) const {
    const __m256i vperm = load_i(perm);
    const __m256i m0 = _mm256_set1_epi64x(SOFTZO_PHILOX_M0);
    const __m256i m1 = _mm256_set1_epi64x(SOFTZO_PHILOX_M1);
    const __m256i off[2] = {_mm256_and_si256(vperm, _mm256_set1_epi64x(0xffffffff)),
                            _mm256_srli_epi64(vperm, 32)};
    __m256i x0[2], x1[2], x2[2], x3[2];
    for (int t = 0; t < 2; ++t) {
      // 64-bit block numbers: the low word is the lane as it stands, the high word shifted down.
      const __m256i bt = _mm256_add_epi64(_mm256_set1_epi64x(static_cast<int64_t>(b)), off[t]);
      x0[t] = bt;
      x1[t] = _mm256_srli_epi64(bt, 32);
      x2[t] = c2_;
      x3[t] = c3_;
    }
    for (int r = 0; r < 10; ++r) {
      for (int t = 0; t < 2; ++t) {
        const __m256i p0 = _mm256_mul_epu32(x0[t], m0);
        const __m256i p1 = _mm256_mul_epu32(x2[t], m1);
        x0[t] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), x1[t]), rk0_[r]);
        x2[t] = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), x3[t]), rk1_[r]);
        x1[t] = p1;
        x3[t] = p0;
      }
    }
    // Even lanes from the first set, odd lanes from the second: lane l holds block perm[l].
    w[0] = _mm256_blend_epi32(x0[0], _mm256_slli_epi64(x0[1], 32), 0xAA);
    w[1] = _mm256_blend_epi32(x1[0], _mm256_slli_epi64(x1[1], 32), 0xAA);
    w[2] = _mm256_blend_epi32(x2[0], _mm256_slli_epi64(x2[1], 32), 0xAA);
    w[3] = _mm256_blend_epi32(x3[0], _mm256_slli_epi64(x3[1], 32), 0xAA);
  }

 private:
  __m256i rk0_[10], rk1_[10];  // round keys
  __m256i c2_, c3_;
};

// ---------------------------------------------------------------------------------------------
// The draws (zo_scalar.cc's gauss_f32 / gauss_f64 / segmented, lane by lane).

inline __m256 set1(float v) { return _mm256_set1_ps(v); }
inline __m256d set1(double v) { return _mm256_set1_pd(v); }
inline __m256i set1_64(uint64_t v) { return _mm256_set1_epi64x(static_cast<int64_t>(v)); }
// Scalar fma in T (one rounding; a float fma through double would round twice).
inline float fma_s(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline double fma_s(double a, double b, double c) { return __builtin_fma(a, b, c); }

inline void gauss8(__m256i wa, __m256i wb, __m256* zc, __m256* zs) {
  const __m256i k1 = _mm256_add_epi32(_mm256_srli_epi32(wa, 8), _mm256_set1_epi32(1));
  const __m256 u1 = _mm256_mul_ps(_mm256_cvtepi32_ps(k1), set1(0x1p-24f));
  const __m256i ix = _mm256_add_epi32(
      _mm256_castps_si256(u1), _mm256_set1_epi32(static_cast<int32_t>(SOFTZO_ZO_F32_LOG_OFFSET)));
  const __m256 e =
      _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(ix, 23), _mm256_set1_epi32(127)));
  const __m256 m = _mm256_castsi256_ps(
      _mm256_add_epi32(_mm256_and_si256(ix, _mm256_set1_epi32(0x007fffff)),
                       _mm256_set1_epi32(static_cast<int32_t>(SOFTZO_ZO_F32_SQRTHALF_BITS))));
  const __m256 f = _mm256_sub_ps(m, set1(1.0f));
  const __m256 s = _mm256_div_ps(f, _mm256_add_ps(f, set1(2.0f)));
  const __m256 hfsq = _mm256_mul_ps(_mm256_mul_ps(f, set1(0.5f)), f);
  const __m256 z2 = _mm256_mul_ps(s, s);
  __m256 p = _mm256_fmadd_ps(set1(SOFTZO_ZO_F32_LOG_C4), z2, set1(SOFTZO_ZO_F32_LOG_C3));
  p = _mm256_fmadd_ps(p, z2, set1(SOFTZO_ZO_F32_LOG_C2));
  p = _mm256_fmadd_ps(p, z2, set1(SOFTZO_ZO_F32_LOG_C1));
  const __m256 lnm = _mm256_add_ps(f, _mm256_fmsub_ps(s, _mm256_fmadd_ps(z2, p, hfsq), hfsq));
  const __m256 ln = _mm256_fmadd_ps(e, set1(SOFTZO_ZO_F32_LN2_HI),
                                    _mm256_fmadd_ps(e, set1(SOFTZO_ZO_F32_LN2_LO), lnm));
  const __m256 r = _mm256_sqrt_ps(_mm256_mul_ps(ln, set1(-2.0f)));

  const __m256i k = _mm256_srli_epi32(wb, 8);
  const __m256i q = _mm256_srli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(1 << 21)), 22);
  const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(k, _mm256_slli_epi32(q, 22))),
                                 set1(0x1p-24f));
  const __m256 u = _mm256_mul_ps(t, t);
  __m256 ps = _mm256_fmadd_ps(set1(SOFTZO_ZO_F32_SIN_C4), u, set1(SOFTZO_ZO_F32_SIN_C3));
  ps = _mm256_fmadd_ps(ps, u, set1(SOFTZO_ZO_F32_SIN_C2));
  ps = _mm256_fmadd_ps(ps, u, set1(SOFTZO_ZO_F32_SIN_C1));
  ps = _mm256_fmadd_ps(ps, u, set1(SOFTZO_ZO_F32_SIN_C0));
  const __m256 sn = _mm256_mul_ps(t, ps);
  __m256 pc = _mm256_fmadd_ps(set1(SOFTZO_ZO_F32_COS_C5), u, set1(SOFTZO_ZO_F32_COS_C4));
  pc = _mm256_fmadd_ps(pc, u, set1(SOFTZO_ZO_F32_COS_C3));
  pc = _mm256_fmadd_ps(pc, u, set1(SOFTZO_ZO_F32_COS_C2));
  pc = _mm256_fmadd_ps(pc, u, set1(SOFTZO_ZO_F32_COS_C1));
  const __m256 cs = _mm256_fmadd_ps(pc, u, set1(1.0f));
  const __m256 swap = _mm256_castsi256_ps(_mm256_slli_epi32(q, 31));
  const __m256 cq = _mm256_blendv_ps(cs, sn, swap), sq = _mm256_blendv_ps(sn, cs, swap);
  const __m256i two = _mm256_set1_epi32(2);
  const __m256i csign =
      _mm256_slli_epi32(_mm256_and_si256(_mm256_add_epi32(q, _mm256_set1_epi32(1)), two), 30);
  const __m256i ssign = _mm256_slli_epi32(_mm256_and_si256(q, two), 30);
  *zc = _mm256_xor_ps(_mm256_mul_ps(r, cq), _mm256_castsi256_ps(csign));
  *zs = _mm256_xor_ps(_mm256_mul_ps(r, sq), _mm256_castsi256_ps(ssign));
}

// Exact double of k <= 2^53: the two 32-bit halves through the 2^84 / 2^52 exponent tricks.
inline __m256d u53_to_pd(__m256i k) {
  const __m256d hi = _mm256_sub_pd(
      _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(k, 32), set1_64(0x4530000000000000))),
      set1(0x1.00000001p84));  // 2^84 + 2^52
  const __m256d lo = _mm256_castsi256_pd(
      _mm256_or_si256(_mm256_and_si256(k, set1_64(0xffffffff)), set1_64(0x4330000000000000)));
  return _mm256_add_pd(hi, lo);
}

// a, b: the 53-bit integers of u1 - 2^-53 and u2, in 64-bit lanes.
inline void gauss4(__m256i a, __m256i b, __m256d* zc, __m256d* zs) {
  const __m256d u1 = _mm256_mul_pd(u53_to_pd(_mm256_add_epi64(a, set1_64(1))), set1(0x1p-53));
  const __m256i ix = _mm256_add_epi64(_mm256_castpd_si256(u1), set1_64(SOFTZO_ZO_F64_LOG_OFFSET));
  const __m256d e = _mm256_sub_pd(
      _mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64(ix, 52), set1_64(0x4330000000000000))),
      set1(0x1.00000000003ffp52));  // 2^52 + 1023
  const __m256d m = _mm256_castsi256_pd(_mm256_add_epi64(
      _mm256_and_si256(ix, set1_64(0x000fffffffffffff)), set1_64(SOFTZO_ZO_F64_SQRTHALF_BITS)));
  const __m256d f = _mm256_sub_pd(m, set1(1.0));
  const __m256d s = _mm256_div_pd(f, _mm256_add_pd(f, set1(2.0)));
  const __m256d hfsq = _mm256_mul_pd(_mm256_mul_pd(f, set1(0.5)), f);
  const __m256d z2 = _mm256_mul_pd(s, s);
  __m256d p = _mm256_fmadd_pd(set1(SOFTZO_ZO_F64_LOG_C9), z2, set1(SOFTZO_ZO_F64_LOG_C8));
  p = _mm256_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C7));
  p = _mm256_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C6));
  p = _mm256_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C5));
  p = _mm256_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C4));
  p = _mm256_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C3));
  p = _mm256_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C2));
  p = _mm256_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C1));
  const __m256d lnm = _mm256_add_pd(f, _mm256_fmsub_pd(s, _mm256_fmadd_pd(z2, p, hfsq), hfsq));
  const __m256d ln = _mm256_fmadd_pd(e, set1(SOFTZO_ZO_F64_LN2_HI),
                                     _mm256_fmadd_pd(e, set1(SOFTZO_ZO_F64_LN2_LO), lnm));
  const __m256d r = _mm256_sqrt_pd(_mm256_mul_pd(ln, set1(-2.0)));

  const __m256i q = _mm256_srli_epi64(_mm256_add_epi64(b, set1_64(uint64_t{1} << 50)), 51);
  const __m256i j = _mm256_sub_epi64(b, _mm256_slli_epi64(q, 51));  // |j| <= 2^50
  const __m256d t = _mm256_mul_pd(
      _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(j, set1_64(0x4338000000000000))),
                    set1(0x1.8p52)),
      set1(0x1p-53));
  const __m256d u = _mm256_mul_pd(t, t);
  __m256d ps = _mm256_fmadd_pd(set1(SOFTZO_ZO_F64_SIN_C8), u, set1(SOFTZO_ZO_F64_SIN_C7));
  ps = _mm256_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C6));
  ps = _mm256_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C5));
  ps = _mm256_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C4));
  ps = _mm256_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C3));
  ps = _mm256_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C2));
  ps = _mm256_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C1));
  ps = _mm256_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C0));
  const __m256d sn = _mm256_mul_pd(t, ps);
  __m256d pc = _mm256_fmadd_pd(set1(SOFTZO_ZO_F64_COS_C8), u, set1(SOFTZO_ZO_F64_COS_C7));
  pc = _mm256_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C6));
  pc = _mm256_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C5));
  pc = _mm256_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C4));
  pc = _mm256_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C3));
  pc = _mm256_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C2));
  pc = _mm256_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C1));
  const __m256d cs = _mm256_fmadd_pd(pc, u, set1(1.0));
  const __m256d swap = _mm256_castsi256_pd(_mm256_slli_epi64(q, 63));
  const __m256d cq = _mm256_blendv_pd(cs, sn, swap), sq = _mm256_blendv_pd(sn, cs, swap);
  const __m256i two = set1_64(2);
  const __m256i csign =
      _mm256_slli_epi64(_mm256_and_si256(_mm256_add_epi64(q, set1_64(1)), two), 62);
  const __m256i ssign = _mm256_slli_epi64(_mm256_and_si256(q, two), 62);
  *zc = _mm256_xor_pd(_mm256_mul_pd(r, cq), _mm256_castsi256_pd(csign));
  *zs = _mm256_xor_pd(_mm256_mul_pd(r, sq), _mm256_castsi256_pd(ssign));
}

// (w & 0x7fffffff) >> 7, the segmented magnitude's integer.
inline __m256i seg_int(__m256i w) { return _mm256_srli_epi32(_mm256_slli_epi32(w, 1), 8); }

inline __m256 segmented8(__m256i w) {
  const __m256 mag =
      _mm256_fmadd_ps(_mm256_cvtepi32_ps(seg_int(w)), set1(0x1p-25f), set1(0.5f));  // exact product
  return _mm256_or_ps(mag, _mm256_castsi256_ps(_mm256_and_si256(w, _mm256_set1_epi32(INT32_MIN))));
}

inline __m256d segmented4(__m128i w) {
  const __m128i k = _mm_srli_epi32(_mm_slli_epi32(w, 1), 8);
  const __m256d mag = _mm256_fmadd_pd(_mm256_cvtepi32_pd(k), set1(0x1p-25), set1(0.5));
  // Sign-extended, the word's bit 31 lands in bit 63.
  const __m256i sign = _mm256_and_si256(_mm256_cvtepi32_epi64(w), set1_64(0x8000000000000000));
  return _mm256_or_pd(mag, _mm256_castsi256_pd(sign));
}

// 4 x 8 transpose for the kPermQuad layout: z_k[l] is element k of block kPermQuad[l]; writes
// the 32 elements of blocks 0..7 in order.
inline void store_quads(__m256 z0, __m256 z1, __m256 z2, __m256 z3, float* out) {
  const __m256d t0 = _mm256_castps_pd(_mm256_unpacklo_ps(z0, z1));
  const __m256d t1 = _mm256_castps_pd(_mm256_unpackhi_ps(z0, z1));
  const __m256d t2 = _mm256_castps_pd(_mm256_unpacklo_ps(z2, z3));
  const __m256d t3 = _mm256_castps_pd(_mm256_unpackhi_ps(z2, z3));
  _mm256_store_ps(out, _mm256_castpd_ps(_mm256_unpacklo_pd(t0, t2)));       // blocks 0, 1
  _mm256_store_ps(out + 8, _mm256_castpd_ps(_mm256_unpackhi_pd(t0, t2)));   // blocks 2, 3
  _mm256_store_ps(out + 16, _mm256_castpd_ps(_mm256_unpacklo_pd(t1, t3)));  // blocks 4, 5
  _mm256_store_ps(out + 24, _mm256_castpd_ps(_mm256_unpackhi_pd(t1, t3)));  // blocks 6, 7
}

// Tiles: fill(ph, b, out) writes the kTileBlocks * kPerBlock elements of blocks b, b + 1, ...
// in order (two Philox batches of 8 blocks).
constexpr size_t kTileBlocks = 16;
template <typename T>
struct GaussTile;

template <>
struct GaussTile<float> {
  static constexpr size_t kPerBlock = 4;
  static void fill(const Philox8& ph, uint64_t b, float* out) {
    __m256i w[8];
    ph.blocks(b, kPermQuad, w);
    ph.blocks(b + 8, kPermQuad, w + 4);
    for (int m = 0; m < 2; ++m) {
      __m256 c0, s0, c1, s1;
      gauss8(w[4 * m], w[4 * m + 1], &c0, &s0);
      gauss8(w[4 * m + 2], w[4 * m + 3], &c1, &s1);
      store_quads(c0, s0, c1, s1, out + 32 * m);
    }
  }
};

template <>
struct GaussTile<double> {
  static constexpr size_t kPerBlock = 2;
  static void fill(const Philox8& ph, uint64_t b, double* out) {
    __m256i w[8];
    ph.blocks(b, kPermPair, w);
    ph.blocks(b + 8, kPermPair, w + 4);
    for (int h = 0; h < 4; ++h) {  // 4 blocks each, two per batch
      __m256i x[4];
      for (int k = 0; k < 4; ++k) {
        const __m256i wk = w[4 * (h >> 1) + k];
        x[k] = _mm256_cvtepu32_epi64((h & 1) == 0 ? _mm256_castsi256_si128(wk)
                                                  : _mm256_extracti128_si256(wk, 1));
      }
      const __m256i a = _mm256_srli_epi64(_mm256_or_si256(_mm256_slli_epi64(x[0], 32), x[1]), 11);
      const __m256i bb = _mm256_srli_epi64(_mm256_or_si256(_mm256_slli_epi64(x[2], 32), x[3]), 11);
      __m256d zc, zs;
      gauss4(a, bb, &zc, &zs);
      // kPermPair: lanes 0, 2 hold blocks 4h, 4h + 1 and lanes 1, 3 blocks 4h + 2, 4h + 3.
      _mm256_store_pd(out + 8 * h, _mm256_unpacklo_pd(zc, zs));
      _mm256_store_pd(out + 8 * h + 4, _mm256_unpackhi_pd(zc, zs));
    }
  }
};

template <typename T>
struct SegTile;

template <>
struct SegTile<float> {
  static constexpr size_t kPerBlock = 4;
  static void fill(const Philox8& ph, uint64_t b, float* out) {
    __m256i w[8];
    ph.blocks(b, kPermQuad, w);
    ph.blocks(b + 8, kPermQuad, w + 4);
    for (int m = 0; m < 2; ++m) {
      store_quads(segmented8(w[4 * m]), segmented8(w[4 * m + 1]), segmented8(w[4 * m + 2]),
                  segmented8(w[4 * m + 3]), out + 32 * m);
    }
  }
};

template <>
struct SegTile<double> {
  static constexpr size_t kPerBlock = 4;
  static void fill(const Philox8& ph, uint64_t b, double* out) {
    __m256i w[8];
    ph.blocks(b, kPermQuad, w);
    ph.blocks(b + 8, kPermQuad, w + 4);
    alignas(32) float words[64];
    for (int m = 0; m < 2; ++m) {
      store_quads(_mm256_castsi256_ps(w[4 * m]), _mm256_castsi256_ps(w[4 * m + 1]),
                  _mm256_castsi256_ps(w[4 * m + 2]), _mm256_castsi256_ps(w[4 * m + 3]),
                  words + 32 * m);
    }
    for (int k = 0; k < 16; ++k) {
      const __m128i v = _mm_load_si128(reinterpret_cast<const __m128i*>(words + 4 * k));
      _mm256_store_pd(out + 4 * k, segmented4(v));
    }
  }
};

// Rademacher: z = +1 where the sign bit of the shifted word is set, -1 elsewhere.
template <typename T>
struct Rad;

template <>
struct Rad<float> {
  static __m256 z(__m256i m) {
    return _mm256_blendv_ps(set1(-1.0f), set1(1.0f), _mm256_castsi256_ps(m));
  }
  // Bits 8v..8v+7 of w (broadcast).
  static __m256 full(__m256i w, size_t v) { return z(_mm256_sllv_epi32(w, load_i(kShift32[v]))); }
  // Bits p, p + 1, ... of w; lanes past bit 31 are garbage (masked by the caller).
  static __m256 at(__m256i w, size_t p) {
    const __m256i cnt =
        _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int32_t>(31 - p)), load_i(kIota));
    return z(_mm256_sllv_epi32(w, cnt));
  }
};

template <>
struct Rad<double> {
  static __m256d z(__m256i m) {
    return _mm256_blendv_pd(set1(-1.0), set1(1.0), _mm256_castsi256_pd(m));
  }
  // w holds the word in both halves of each 64-bit lane; bit j moves to bit 63 with 63 - j.
  static __m256d full(__m256i w, size_t v) { return z(_mm256_sllv_epi64(w, load_i(kShift64[v]))); }
  static __m256d at(__m256i w, size_t p) {
    const __m256i cnt = _mm256_sub_epi64(_mm256_set1_epi64x(static_cast<int64_t>(63 - p)),
                                         _mm256_setr_epi64x(0, 1, 2, 3));
    return z(_mm256_sllv_epi64(w, cnt));
  }
};

// ---------------------------------------------------------------------------------------------
// Drivers: op(i, z, mk) handles elements [i, i + lanes) with their z (mk: lane mask of a partial
// vector, nullptr for a full one; z is 0 or +-1 outside mk).

template <typename T, class Tile, class Op>
void run_tiles(size_t n, uint64_t offset, const Philox8& ph, Op& op_ref) {
  using O = Ops<T>;
  Op op = op_ref;  // a local copy stays in registers: stores through theta cannot alias it
  constexpr size_t L = O::kLanes, kTile = kTileBlocks * Tile::kPerBlock;
  alignas(32) T buf[kTile];
  uint64_t b = offset / Tile::kPerBlock;
  size_t skip = static_cast<size_t>(offset % Tile::kPerBlock);
  size_t i = 0;
  while (i < n) {
    Tile::fill(ph, b, buf);
    if (skip == 0 && n - i >= kTile) {
      for (size_t k = 0; k < kTile; k += L) op(i + k, O::load(buf + k), nullptr);
      i += kTile;
    } else {
      const size_t cnt = n - i < kTile - skip ? n - i : kTile - skip;
      size_t k = 0;
      for (; k + L <= cnt; k += L) op(i + k, O::load(buf + skip + k), nullptr);
      if (k < cnt) {
        const __m256i mk = O::tail_mask(cnt - k);
        op(i + k, O::maskload(buf + skip + k, mk), &mk);
      }
      i += cnt;
      skip = 0;
    }
    b += kTileBlocks;
  }
  op_ref = op;
}

// 8 blocks = 1024 elements per Philox call. The words are transposed into element order (the
// kPermQuad layout and store_quads), so word k holds elements 32k..32k+31 of the batch, bit j
// element 32k + j.
template <typename T, class Op>
void run_rademacher(size_t n, uint64_t offset, const Philox8& ph, Op& op_ref) {
  using O = Ops<T>;
  constexpr size_t L = O::kLanes;
  Op op = op_ref;  // a local copy stays in registers: stores through theta cannot alias it
  alignas(32) uint32_t words[32];
  size_t i = 0;
  while (i < n) {
    const uint64_t g = offset + i;
    __m256i w[4];
    ph.blocks(g >> 7, kPermQuad, w);
    store_quads(_mm256_castsi256_ps(w[0]), _mm256_castsi256_ps(w[1]), _mm256_castsi256_ps(w[2]),
                _mm256_castsi256_ps(w[3]), reinterpret_cast<float*>(words));
    size_t pos = static_cast<size_t>(g & 127);
    const size_t end = pos + (n - i < 1024 - pos ? n - i : 1024 - pos);
    if (pos == 0 && end == 1024) {  // the steady state: 32 whole words
      for (size_t k = 0; k < 32; ++k) {
        const __m256i vw = _mm256_set1_epi32(static_cast<int32_t>(words[k]));
        for (size_t v = 0; v < 32 / L; ++v) op(i + v * L, Rad<T>::full(vw, v), nullptr);
        i += 32;
      }
      continue;
    }
    while (pos < end) {
      const __m256i vw = _mm256_set1_epi32(static_cast<int32_t>(words[pos >> 5]));
      const size_t p = pos & 31;
      if (p == 0 && end - pos >= 32) {
        for (size_t v = 0; v < 32 / L; ++v) op(i + v * L, Rad<T>::full(vw, v), nullptr);
        pos += 32;
        i += 32;
      } else {  // up to the end of this vector's lane group, within the word
        const size_t room = L - p % L;
        const size_t cnt = end - pos < room ? end - pos : room;
        if (cnt == L) {
          op(i, Rad<T>::at(vw, p), nullptr);
        } else {
          const __m256i mk = O::tail_mask(cnt);
          op(i, Rad<T>::at(vw, p), &mk);
        }
        pos += cnt;
        i += cnt;
      }
    }
  }
  op_ref = op;
}

template <typename T, class Op>
void run(size_t n, uint64_t offset, const softzo_zo_stream* s, Op& op) {
  if (n == 0) return;
  const Philox8 ph(s);
  if (s->dist == SOFTZO_ZO_GAUSSIAN) {
    run_tiles<T, GaussTile<T>>(n, offset, ph, op);
  } else if (s->dist == SOFTZO_ZO_SEGMENTED) {
    run_tiles<T, SegTile<T>>(n, offset, ph, op);
  } else {
    run_rademacher<T>(n, offset, ph, op);
  }
}

// ---------------------------------------------------------------------------------------------
// The operations (zo_scalar.cc's, on vectors).

template <typename T>
struct FillOp {
  using V = typename Ops<T>::V;
  T* y;
  void operator()(size_t i, V z, const __m256i* mk) { store_n<T>(y + i, mk, z); }
};

template <typename T>
struct AxpyOp {
  using V = typename Ops<T>::V;
  V c;
  T* theta;
  V update(V x, V z) const { return Ops<T>::fma(c, z, x); }
  void operator()(size_t i, V z, const __m256i* mk) {
    store_n<T>(theta + i, mk, update(load_n<T>(theta + i, mk), z));
  }
};

template <typename T>
struct RestoreUpdateOp {
  using O = Ops<T>;
  using V = typename O::V;
  V c_restore, decay, neg_step;
  T* theta;
  RestoreUpdateOp(T c_restore_, T lr, T g, T wd, T* theta_)
      : c_restore(O::set1(c_restore_)),
        decay(O::set1(fma_s(-lr, wd, T(1)))),
        neg_step(O::set1(-(lr * g))),
        theta(theta_) {}
  V update(V x, V z) const { return O::fma(neg_step, z, O::mul(O::fma(c_restore, z, x), decay)); }
  void operator()(size_t i, V z, const __m256i* mk) {
    store_n<T>(theta + i, mk, update(load_n<T>(theta + i, mk), z));
  }
};

// Bits i .. i + 31 of a Sparse MeZO mask (bit k of word k >> 5), low bit first; the word after
// i's is read only when lanes reach into it and it holds elements below n.
inline uint32_t mask_bits(const uint32_t* mask, size_t n, size_t i, size_t lanes) {
  const size_t w = i >> 5, sh = i & 31;
  uint64_t v = mask[w];
  if (sh + lanes > 32 && (w + 1) * 32 < n) v |= static_cast<uint64_t>(mask[w + 1]) << 32;
  return static_cast<uint32_t>(v >> sh);
}

alignas(32) const int32_t kLaneBit32[8] = {1, 2, 4, 8, 16, 32, 64, 128};
alignas(32) const int64_t kLaneBit64[4] = {1, 2, 4, 8};

// All-ones lanes where the low bits of b are set.
template <typename T>
inline typename Ops<T>::V lanes_of(uint32_t b);
template <>
inline __m256 lanes_of<float>(uint32_t b) {
  const __m256i bit = load_i(kLaneBit32);
  const __m256i v = _mm256_and_si256(_mm256_set1_epi32(static_cast<int32_t>(b)), bit);
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, bit));
}
template <>
inline __m256d lanes_of<double>(uint32_t b) {
  const __m256i bit = load_i(kLaneBit64);
  const __m256i v = _mm256_and_si256(_mm256_set1_epi64x(b), bit);
  return _mm256_castsi256_pd(_mm256_cmpeq_epi64(v, bit));
}

// Lanes outside the mask are stored back unchanged (bit for bit), so full vectors need no
// masked store.
template <typename T, class Inner>
struct MaskedOp {
  using O = Ops<T>;
  using V = typename O::V;
  Inner inner;
  const uint32_t* mask;
  size_t n;
  void operator()(size_t i, V z, const __m256i* mk) {
    const V x = load_n<T>(inner.theta + i, mk);
    const V in = lanes_of<T>(mask_bits(mask, n, i, O::kLanes));
    store_n<T>(inner.theta + i, mk, O::blend(x, inner.update(x, z), in));
  }
};

inline int movemask(__m256 v) { return _mm256_movemask_ps(v); }
inline int movemask(__m256d v) { return _mm256_movemask_pd(v); }
inline __m256 vsqrt(__m256 v) { return _mm256_sqrt_ps(v); }
inline __m256d vsqrt(__m256d v) { return _mm256_sqrt_pd(v); }

// Partial vectors load sigma = 0 into the lanes past n: their inf / NaN is never stored.
template <typename T>
struct AxpyDiagOp {
  using O = Ops<T>;
  using V = typename O::V;
  V c;
  const T* sigma;
  T* theta;
  void operator()(size_t i, V z, const __m256i* mk) {
    const V u = O::div(z, vsqrt(load_n<T>(sigma + i, mk)));
    store_n<T>(theta + i, mk, O::fma(c, u, load_n<T>(theta + i, mk)));
  }
};

template <typename T>
struct HiZooOp {
  using O = Ops<T>;
  using V = typename O::V;
  V c_restore, decay, neg_step, keep, gain;
  T* sigma;
  T* theta;
  HiZooOp(T c_restore_, T lr, T g, T wd, T keep_, T gain_, T* sigma_, T* theta_)
      : c_restore(O::set1(c_restore_)),
        decay(O::set1(fma_s(-lr, wd, T(1)))),
        neg_step(O::set1(-(lr * g))),
        keep(O::set1(keep_)),
        gain(O::set1(gain_)),
        sigma(sigma_),
        theta(theta_) {}
  void operator()(size_t i, V z, const __m256i* mk) {
    const V s = load_n<T>(sigma + i, mk);
    const V t = O::fma(c_restore, O::div(z, vsqrt(s)), load_n<T>(theta + i, mk));
    const V s2 = O::mul(s, O::fma(gain, O::mul(z, z), keep));
    store_n<T>(sigma + i, mk, s2);
    store_n<T>(theta + i, mk, O::fma(neg_step, O::div(z, vsqrt(s2)), O::mul(t, decay)));
  }
};

// 32 elements per mask word: |theta| <= threshold per vector, movemask, shifted into place.
template <typename T>
void mask_build(size_t n, T threshold, const T* theta, uint32_t* mask) {
  using O = Ops<T>;
  using V = typename O::V;
  constexpr size_t L = O::kLanes;
  const V thr = O::set1(threshold), sign = O::set1(T(-0.0));
  size_t w = 0;
  for (; 32 * w + 32 <= n; ++w) {
    uint32_t bits = 0;
    for (size_t v = 0; v < 32 / L; ++v) {
      const V ax = O::andnot(sign, O::load(theta + 32 * w + v * L));
      // Ordered compare: NaN takes no part.
      bits |= static_cast<uint32_t>(movemask(O::ge(thr, ax))) << (v * L);
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

template <typename T>
struct SumSqOp {
  using V = typename Ops<T>::V;
  __m256d acc[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
  void operator()(size_t, V z, const __m256i* mk) {
    __m256d d[Ops<T>::kHalves];
    Ops<T>::to_double(keep_n<T>(z, mk), d);
    for (int h = 0; h < Ops<T>::kHalves; ++h) acc[h] = _mm256_fmadd_pd(d[h], d[h], acc[h]);
  }
  double result() const { return hsum(_mm256_add_pd(acc[0], acc[1])); }
};

template <typename T>
struct DotOp {
  using V = typename Ops<T>::V;
  const T* v;
  __m256d acc[2] = {_mm256_setzero_pd(), _mm256_setzero_pd()};
  void operator()(size_t i, V z, const __m256i* mk) {
    __m256d dz[Ops<T>::kHalves], dv[Ops<T>::kHalves];
    Ops<T>::to_double(keep_n<T>(z, mk), dz);
    Ops<T>::to_double(load_n<T>(v + i, mk), dv);
    for (int h = 0; h < Ops<T>::kHalves; ++h) acc[h] = _mm256_fmadd_pd(dz[h], dv[h], acc[h]);
  }
  double result() const { return hsum(_mm256_add_pd(acc[0], acc[1])); }
};

}  // namespace zo
}  // namespace

#define SOFTZO_DEFINE_ZO_AVX2(T, dt)                                                              \
  void softzo_##dt##_zo_fill_avx2(size_t n, uint64_t offset, const softzo_zo_stream* s, T* y) {   \
    zo::FillOp<T> op{y};                                                                          \
    zo::run<T>(n, offset, s, op);                                                                 \
  }                                                                                               \
  void softzo_##dt##_zo_axpy_avx2(size_t n, uint64_t offset, const softzo_zo_stream* s, T c,      \
                                  T* theta) {                                                     \
    zo::AxpyOp<T> op{Ops<T>::set1(c), theta};                                                     \
    zo::run<T>(n, offset, s, op);                                                                 \
  }                                                                                               \
  void softzo_##dt##_zo_restore_update_avx2(size_t n, uint64_t offset, const softzo_zo_stream* s, \
                                            T c_restore, T lr, T g, T wd, T* theta) {             \
    zo::RestoreUpdateOp<T> op(c_restore, lr, g, wd, theta);                                       \
    zo::run<T>(n, offset, s, op);                                                                 \
  }                                                                                               \
  void softzo_##dt##_zo_mask_build_avx2(size_t n, T threshold, const T* theta, uint32_t* mask) {  \
    zo::mask_build<T>(n, threshold, theta, mask);                                                 \
  }                                                                                               \
  void softzo_##dt##_zo_axpy_mask_avx2(size_t n, uint64_t offset, const softzo_zo_stream* s, T c, \
                                       const uint32_t* mask, T* theta) {                          \
    zo::MaskedOp<T, zo::AxpyOp<T>> op{zo::AxpyOp<T>{Ops<T>::set1(c), theta}, mask, n};            \
    zo::run<T>(n, offset, s, op);                                                                 \
  }                                                                                               \
  void softzo_##dt##_zo_restore_update_mask_avx2(size_t n, uint64_t offset,                       \
                                                 const softzo_zo_stream* s, T c_restore, T lr,    \
                                                 T g, T wd, const uint32_t* mask, T* theta) {     \
    zo::MaskedOp<T, zo::RestoreUpdateOp<T>> op{                                                   \
        zo::RestoreUpdateOp<T>(c_restore, lr, g, wd, theta), mask, n};                            \
    zo::run<T>(n, offset, s, op);                                                                 \
  }                                                                                               \
  void softzo_##dt##_zo_axpy_diag_avx2(size_t n, uint64_t offset, const softzo_zo_stream* s, T c, \
                                       const T* sigma, T* theta) {                                \
    zo::AxpyDiagOp<T> op{Ops<T>::set1(c), sigma, theta};                                          \
    zo::run<T>(n, offset, s, op);                                                                 \
  }                                                                                               \
  void softzo_##dt##_zo_hizoo_update_avx2(size_t n, uint64_t offset, const softzo_zo_stream* s,   \
                                          T c_restore, T lr, T g, T wd, T keep, T gain, T* sigma, \
                                          T* theta) {                                             \
    zo::HiZooOp<T> op(c_restore, lr, g, wd, keep, gain, sigma, theta);                            \
    zo::run<T>(n, offset, s, op);                                                                 \
  }                                                                                               \
  double softzo_##dt##_zo_sumsq_avx2(size_t n, uint64_t offset, const softzo_zo_stream* s) {      \
    if (s->dist != SOFTZO_ZO_GAUSSIAN && s->dist != SOFTZO_ZO_SEGMENTED) {                        \
      return static_cast<double>(n);                                                              \
    }                                                                                             \
    zo::SumSqOp<T> op;                                                                            \
    zo::run<T>(n, offset, s, op);                                                                 \
    return op.result();                                                                           \
  }                                                                                               \
  double softzo_##dt##_zo_dot_avx2(size_t n, uint64_t offset, const softzo_zo_stream* s,          \
                                   const T* v) {                                                  \
    zo::DotOp<T> op{v};                                                                           \
    zo::run<T>(n, offset, s, op);                                                                 \
    return op.result();                                                                           \
  }

extern "C" {
SOFTZO_DEFINE_ZO_AVX2(float, f32)
SOFTZO_DEFINE_ZO_AVX2(double, f64)
}
