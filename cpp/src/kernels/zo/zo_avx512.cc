// AVX-512 zeroth-order kernels (float32 and float64). Compiled twice like softmax_avx512.cc:
// natively with -mavx512f/dq/vl/bw -mfma (suffix avx512), and on top of SIMDe under
// SOFTZO_EMULATE_AVX512 (suffix avx512emu), which is how AVX2-only hosts test this file.
//
// Same structure as zo_avx2.cc with 16 Philox blocks per call: gaussian and segmented draws go
// through a tile of 32 blocks' elements in element order, rademacher uses the Philox bits
// directly as the lane mask of a blend (16 / 8 bits per vector). The draws repeat zo_scalar.cc
// operation for operation, so z is bitwise the scalar one.
#include <stddef.h>
#include <stdint.h>

#include "isa/avx512.h"
#include "kernels/zo/zo_kernels.h"

namespace {
// Nested so that nothing here can collide with the shared helper header's anonymous namespace.
namespace zo {

// Block offsets per lane (rademacher words use kPermQuad too). 4 elements per block: lane 4k + j
// holds block 4j + k, so that after the in-lane unpacks of the transpose, 128-bit chunk k of output
// vector j holds block 4j + k. 2 elements per block (float64 gaussian, 8 double lanes per half):
// lane 8h + 2k + j holds block 8h + 4j + k.
alignas(64) const int32_t kPermQuad[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
alignas(64) const int32_t kPermPair[16] = {0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15};

static SOFTZO_INLINE __m512i set1_32(uint32_t v) {
  return _mm512_set1_epi32(static_cast<int32_t>(v));
}
static SOFTZO_INLINE __m512i set1_64(uint64_t v) {
  return _mm512_set1_epi64(static_cast<int64_t>(v));
}
static SOFTZO_INLINE __m512 set1(float v) { return _mm512_set1_ps(v); }
static SOFTZO_INLINE __m512d set1(double v) { return _mm512_set1_pd(v); }
static SOFTZO_INLINE __m512 xor_ps(__m512 a, __m512i b) {
  return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), b));
}
static SOFTZO_INLINE __m512d xor_pd(__m512d a, __m512i b) {
  return _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(a), b));
}
// Scalar fma in T (one rounding).
static SOFTZO_INLINE float fma_s(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
static SOFTZO_INLINE double fma_s(double a, double b, double c) { return __builtin_fma(a, b, c); }

// ---------------------------------------------------------------------------------------------
// Philox4x32-10, 16 blocks per batch: per round 4 vpmuludq, 4 shifts and 4 vpternlogd.

class Philox16 {
 public:
  explicit Philox16(const softzo_zo_stream* s) {
    uint32_t k0 = static_cast<uint32_t>(s->seed), k1 = static_cast<uint32_t>(s->seed >> 32);
    for (int r = 0; r < 10; ++r) {
      rk0_[r] = set1_32(k0);
      rk1_[r] = set1_32(k1);
      k0 += SOFTZO_PHILOX_W0;
      k1 += SOFTZO_PHILOX_W1;
    }
    c2_ = set1_64(s->direction);
    c3_ = set1_64(s->step);
  }

  // w[k] = word k of block b + perm[l] in lane l.
  //
  // As in zo_avx2.cc, each word lives zero-extended in a 64-bit lane, the blocks in two sets of
  // 8 (perm[even], perm[odd]): vpmuludq gives the whole product, the low word as it stands and
  // the high one a shift away, and vpternlogd does the three-way xors, so a round is 2 vpmuludq,
  // 2 shifts and 2 vpternlogd per set.
  SOFTZO_INLINE void blocks(uint64_t b, const int32_t* perm, __m512i w[4]) const {
    const __m512i vperm = _mm512_load_si512(perm);
    const __m512i m0 = set1_64(SOFTZO_PHILOX_M0), m1 = set1_64(SOFTZO_PHILOX_M1);
    const __m512i off[2] = {_mm512_and_si512(vperm, set1_64(0xffffffff)),
                            _mm512_srli_epi64(vperm, 32)};
    __m512i x0[2], x1[2], x2[2], x3[2];
    for (int t = 0; t < 2; ++t) {
      // 64-bit block numbers: the low word is the lane as it stands, the high word shifted down.
      const __m512i bt = _mm512_add_epi64(set1_64(b), off[t]);
      x0[t] = bt;
      x1[t] = _mm512_srli_epi64(bt, 32);
      x2[t] = c2_;
      x3[t] = c3_;
    }
    for (int r = 0; r < 10; ++r) {
      for (int t = 0; t < 2; ++t) {
        const __m512i p0 = _mm512_mul_epu32(x0[t], m0);
        const __m512i p1 = _mm512_mul_epu32(x2[t], m1);
        x0[t] = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p1, 32), x1[t], rk0_[r], 0x96);
        x2[t] = _mm512_ternarylogic_epi32(_mm512_srli_epi64(p0, 32), x3[t], rk1_[r], 0x96);
        x1[t] = p1;
        x3[t] = p0;
      }
    }
    // Even lanes from the first set, odd lanes from the second: lane l holds block perm[l].
    w[0] = _mm512_mask_blend_epi32(0xAAAA, x0[0], _mm512_slli_epi64(x0[1], 32));
    w[1] = _mm512_mask_blend_epi32(0xAAAA, x1[0], _mm512_slli_epi64(x1[1], 32));
    w[2] = _mm512_mask_blend_epi32(0xAAAA, x2[0], _mm512_slli_epi64(x2[1], 32));
    w[3] = _mm512_mask_blend_epi32(0xAAAA, x3[0], _mm512_slli_epi64(x3[1], 32));
  }

 private:
  __m512i rk0_[10], rk1_[10];  // round keys
  __m512i c2_, c3_;
};

// ---------------------------------------------------------------------------------------------
// The draws (zo_scalar.cc's gauss_f32 / gauss_f64 / segmented, lane by lane).

static SOFTZO_INLINE void gauss16(__m512i wa, __m512i wb, __m512* zc, __m512* zs) {
  const __m512i k1 = _mm512_add_epi32(_mm512_srli_epi32(wa, 8), _mm512_set1_epi32(1));
  const __m512 u1 = _mm512_mul_ps(_mm512_cvtepi32_ps(k1), set1(0x1p-24f));
  const __m512i ix = _mm512_add_epi32(_mm512_castps_si512(u1), set1_32(SOFTZO_ZO_F32_LOG_OFFSET));
  const __m512 e =
      _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(ix, 23), _mm512_set1_epi32(127)));
  const __m512 m = _mm512_castsi512_ps(_mm512_add_epi32(_mm512_and_si512(ix, set1_32(0x007fffffu)),
                                                        set1_32(SOFTZO_ZO_F32_SQRTHALF_BITS)));
  const __m512 f = _mm512_sub_ps(m, set1(1.0f));
  const __m512 s = _mm512_div_ps(f, _mm512_add_ps(f, set1(2.0f)));
  const __m512 hfsq = _mm512_mul_ps(_mm512_mul_ps(f, set1(0.5f)), f);
  const __m512 z2 = _mm512_mul_ps(s, s);
  __m512 p = _mm512_fmadd_ps(set1(SOFTZO_ZO_F32_LOG_C4), z2, set1(SOFTZO_ZO_F32_LOG_C3));
  p = _mm512_fmadd_ps(p, z2, set1(SOFTZO_ZO_F32_LOG_C2));
  p = _mm512_fmadd_ps(p, z2, set1(SOFTZO_ZO_F32_LOG_C1));
  const __m512 lnm = _mm512_add_ps(f, _mm512_fmsub_ps(s, _mm512_fmadd_ps(z2, p, hfsq), hfsq));
  const __m512 ln = _mm512_fmadd_ps(e, set1(SOFTZO_ZO_F32_LN2_HI),
                                    _mm512_fmadd_ps(e, set1(SOFTZO_ZO_F32_LN2_LO), lnm));
  const __m512 r = _mm512_sqrt_ps(_mm512_mul_ps(ln, set1(-2.0f)));

  const __m512i k = _mm512_srli_epi32(wb, 8);
  const __m512i q = _mm512_srli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(1 << 21)), 22);
  const __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(k, _mm512_slli_epi32(q, 22))),
                                 set1(0x1p-24f));
  const __m512 u = _mm512_mul_ps(t, t);
  __m512 ps = _mm512_fmadd_ps(set1(SOFTZO_ZO_F32_SIN_C4), u, set1(SOFTZO_ZO_F32_SIN_C3));
  ps = _mm512_fmadd_ps(ps, u, set1(SOFTZO_ZO_F32_SIN_C2));
  ps = _mm512_fmadd_ps(ps, u, set1(SOFTZO_ZO_F32_SIN_C1));
  ps = _mm512_fmadd_ps(ps, u, set1(SOFTZO_ZO_F32_SIN_C0));
  const __m512 sn = _mm512_mul_ps(t, ps);
  __m512 pc = _mm512_fmadd_ps(set1(SOFTZO_ZO_F32_COS_C5), u, set1(SOFTZO_ZO_F32_COS_C4));
  pc = _mm512_fmadd_ps(pc, u, set1(SOFTZO_ZO_F32_COS_C3));
  pc = _mm512_fmadd_ps(pc, u, set1(SOFTZO_ZO_F32_COS_C2));
  pc = _mm512_fmadd_ps(pc, u, set1(SOFTZO_ZO_F32_COS_C1));
  const __m512 cs = _mm512_fmadd_ps(pc, u, set1(1.0f));
  const __mmask16 swap = _mm512_test_epi32_mask(q, _mm512_set1_epi32(1));
  const __m512 cq = _mm512_mask_blend_ps(swap, cs, sn), sq = _mm512_mask_blend_ps(swap, sn, cs);
  const __m512i two = _mm512_set1_epi32(2);
  const __m512i csign =
      _mm512_slli_epi32(_mm512_and_si512(_mm512_add_epi32(q, _mm512_set1_epi32(1)), two), 30);
  const __m512i ssign = _mm512_slli_epi32(_mm512_and_si512(q, two), 30);
  *zc = xor_ps(_mm512_mul_ps(r, cq), csign);
  *zs = xor_ps(_mm512_mul_ps(r, sq), ssign);
}

// Exact double of k <= 2^53: the two 32-bit halves through the 2^84 / 2^52 exponent tricks.
static SOFTZO_INLINE __m512d u53_to_pd(__m512i k) {
  const __m512d hi = _mm512_sub_pd(
      _mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64(k, 32), set1_64(0x4530000000000000))),
      set1(0x1.00000001p84));  // 2^84 + 2^52
  const __m512d lo = _mm512_castsi512_pd(
      _mm512_or_si512(_mm512_and_si512(k, set1_64(0xffffffff)), set1_64(0x4330000000000000)));
  return _mm512_add_pd(hi, lo);
}

// a, b: the 53-bit integers of u1 - 2^-53 and u2, in 64-bit lanes.
static SOFTZO_INLINE void gauss8d(__m512i a, __m512i b, __m512d* zc, __m512d* zs) {
  const __m512d u1 = _mm512_mul_pd(u53_to_pd(_mm512_add_epi64(a, set1_64(1))), set1(0x1p-53));
  const __m512i ix = _mm512_add_epi64(_mm512_castpd_si512(u1), set1_64(SOFTZO_ZO_F64_LOG_OFFSET));
  const __m512d e = _mm512_sub_pd(
      _mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64(ix, 52), set1_64(0x4330000000000000))),
      set1(0x1.00000000003ffp52));  // 2^52 + 1023
  const __m512d m = _mm512_castsi512_pd(_mm512_add_epi64(
      _mm512_and_si512(ix, set1_64(0x000fffffffffffff)), set1_64(SOFTZO_ZO_F64_SQRTHALF_BITS)));
  const __m512d f = _mm512_sub_pd(m, set1(1.0));
  const __m512d s = _mm512_div_pd(f, _mm512_add_pd(f, set1(2.0)));
  const __m512d hfsq = _mm512_mul_pd(_mm512_mul_pd(f, set1(0.5)), f);
  const __m512d z2 = _mm512_mul_pd(s, s);
  __m512d p = _mm512_fmadd_pd(set1(SOFTZO_ZO_F64_LOG_C9), z2, set1(SOFTZO_ZO_F64_LOG_C8));
  p = _mm512_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C7));
  p = _mm512_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C6));
  p = _mm512_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C5));
  p = _mm512_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C4));
  p = _mm512_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C3));
  p = _mm512_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C2));
  p = _mm512_fmadd_pd(p, z2, set1(SOFTZO_ZO_F64_LOG_C1));
  const __m512d lnm = _mm512_add_pd(f, _mm512_fmsub_pd(s, _mm512_fmadd_pd(z2, p, hfsq), hfsq));
  const __m512d ln = _mm512_fmadd_pd(e, set1(SOFTZO_ZO_F64_LN2_HI),
                                     _mm512_fmadd_pd(e, set1(SOFTZO_ZO_F64_LN2_LO), lnm));
  const __m512d r = _mm512_sqrt_pd(_mm512_mul_pd(ln, set1(-2.0)));

  const __m512i q = _mm512_srli_epi64(_mm512_add_epi64(b, set1_64(uint64_t{1} << 50)), 51);
  const __m512i j = _mm512_sub_epi64(b, _mm512_slli_epi64(q, 51));  // |j| <= 2^50
  const __m512d t = _mm512_mul_pd(
      _mm512_sub_pd(_mm512_castsi512_pd(_mm512_add_epi64(j, set1_64(0x4338000000000000))),
                    set1(0x1.8p52)),
      set1(0x1p-53));
  const __m512d u = _mm512_mul_pd(t, t);
  __m512d ps = _mm512_fmadd_pd(set1(SOFTZO_ZO_F64_SIN_C8), u, set1(SOFTZO_ZO_F64_SIN_C7));
  ps = _mm512_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C6));
  ps = _mm512_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C5));
  ps = _mm512_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C4));
  ps = _mm512_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C3));
  ps = _mm512_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C2));
  ps = _mm512_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C1));
  ps = _mm512_fmadd_pd(ps, u, set1(SOFTZO_ZO_F64_SIN_C0));
  const __m512d sn = _mm512_mul_pd(t, ps);
  __m512d pc = _mm512_fmadd_pd(set1(SOFTZO_ZO_F64_COS_C8), u, set1(SOFTZO_ZO_F64_COS_C7));
  pc = _mm512_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C6));
  pc = _mm512_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C5));
  pc = _mm512_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C4));
  pc = _mm512_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C3));
  pc = _mm512_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C2));
  pc = _mm512_fmadd_pd(pc, u, set1(SOFTZO_ZO_F64_COS_C1));
  const __m512d cs = _mm512_fmadd_pd(pc, u, set1(1.0));
  const __mmask8 swap = _mm512_test_epi64_mask(q, set1_64(1));
  const __m512d cq = _mm512_mask_blend_pd(swap, cs, sn), sq = _mm512_mask_blend_pd(swap, sn, cs);
  const __m512i two = set1_64(2);
  const __m512i csign =
      _mm512_slli_epi64(_mm512_and_si512(_mm512_add_epi64(q, set1_64(1)), two), 62);
  const __m512i ssign = _mm512_slli_epi64(_mm512_and_si512(q, two), 62);
  *zc = xor_pd(_mm512_mul_pd(r, cq), csign);
  *zs = xor_pd(_mm512_mul_pd(r, sq), ssign);
}

static SOFTZO_INLINE __m512 segmented16(__m512i w) {
  const __m512i k = _mm512_srli_epi32(_mm512_slli_epi32(w, 1), 8);  // (w & 0x7fffffff) >> 7
  const __m512 mag = _mm512_fmadd_ps(_mm512_cvtepi32_ps(k), set1(0x1p-25f), set1(0.5f));
  return _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_castps_si512(mag), _mm512_and_si512(w, set1_32(0x80000000u))));
}

// int32 -> double, uint32 -> int64 and int32 -> int64 of 8 lanes; SIMDe has none, so the
// emulated build converts 128-bit halves with AVX2 (exact either way).
static SOFTZO_INLINE __m512d cvt8_pd(__m256i w) {
#if SOFTZO_AVX512_EMULATED
  return _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_cvtepi32_pd(_mm256_castsi256_si128(w))),
                            _mm256_cvtepi32_pd(_mm256_extracti128_si256(w, 1)), 1);
#else
  return _mm512_cvtepi32_pd(w);
#endif
}
static SOFTZO_INLINE __m512i zext8_epi64(__m256i w) {
#if SOFTZO_AVX512_EMULATED
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(w))),
      _mm256_cvtepu32_epi64(_mm256_extracti128_si256(w, 1)), 1);
#else
  return _mm512_cvtepu32_epi64(w);
#endif
}
static SOFTZO_INLINE __m512i sext8_epi64(__m256i w) {
#if SOFTZO_AVX512_EMULATED
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(w))),
      _mm256_cvtepi32_epi64(_mm256_extracti128_si256(w, 1)), 1);
#else
  return _mm512_cvtepi32_epi64(w);
#endif
}

static SOFTZO_INLINE __m512d segmented8d(__m256i w) {
  const __m256i k = _mm256_srli_epi32(_mm256_slli_epi32(w, 1), 8);
  const __m512d mag = _mm512_fmadd_pd(cvt8_pd(k), set1(0x1p-25), set1(0.5));
  // Sign-extended, the word's bit 31 lands in bit 63.
  const __m512i sign = _mm512_and_si512(sext8_epi64(w), set1_64(0x8000000000000000));
  return _mm512_castsi512_pd(_mm512_or_si512(_mm512_castpd_si512(mag), sign));
}

// 4 x 16 transpose for the kPermQuad layout: z_k[l] is element k of block kPermQuad[l]; writes
// the 64 elements of blocks 0..15 in order.
static SOFTZO_INLINE void store_quads(__m512 z0, __m512 z1, __m512 z2, __m512 z3, float* out) {
  const __m512d t0 = _mm512_castps_pd(_mm512_unpacklo_ps(z0, z1));
  const __m512d t1 = _mm512_castps_pd(_mm512_unpackhi_ps(z0, z1));
  const __m512d t2 = _mm512_castps_pd(_mm512_unpacklo_ps(z2, z3));
  const __m512d t3 = _mm512_castps_pd(_mm512_unpackhi_ps(z2, z3));
  _mm512_store_ps(out, _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2)));       // blocks 0-3
  _mm512_store_ps(out + 16, _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2)));  // blocks 4-7
  _mm512_store_ps(out + 32, _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3)));  // blocks 8-11
  _mm512_store_ps(out + 48, _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3)));  // blocks 12-15
}

// Tiles: fill(ph, b, out) writes the kTileBlocks * kPerBlock elements of blocks b, b + 1, ...
// in order (two Philox batches of 16 blocks, which the core overlaps).
constexpr size_t kTileBlocks = 32;
template <typename T>
struct GaussTile;

template <>
struct GaussTile<float> {
  static constexpr size_t kPerBlock = 4;
  static SOFTZO_INLINE void fill(const Philox16& ph, uint64_t b, float* out) {
    __m512i w[8];
    ph.blocks(b, kPermQuad, w);
    ph.blocks(b + 16, kPermQuad, w + 4);
    for (int m = 0; m < 2; ++m) {
      __m512 c0, s0, c1, s1;
      gauss16(w[4 * m], w[4 * m + 1], &c0, &s0);
      gauss16(w[4 * m + 2], w[4 * m + 3], &c1, &s1);
      store_quads(c0, s0, c1, s1, out + 64 * m);
    }
  }
};

template <>
struct GaussTile<double> {
  static constexpr size_t kPerBlock = 2;
  static SOFTZO_INLINE void fill(const Philox16& ph, uint64_t b, double* out) {
    __m512i w[8];
    ph.blocks(b, kPermPair, w);
    ph.blocks(b + 16, kPermPair, w + 4);
    for (int h = 0; h < 4; ++h) {  // 8 blocks each, two per batch
      __m512i x[4];
      for (int k = 0; k < 4; ++k) {
        const __m512i wk = w[4 * (h >> 1) + k];
        x[k] = zext8_epi64((h & 1) == 0 ? _mm512_castsi512_si256(wk)
                                        : _mm512_extracti64x4_epi64(wk, 1));
      }
      const __m512i a = _mm512_srli_epi64(_mm512_or_si512(_mm512_slli_epi64(x[0], 32), x[1]), 11);
      const __m512i bb = _mm512_srli_epi64(_mm512_or_si512(_mm512_slli_epi64(x[2], 32), x[3]), 11);
      __m512d zc, zs;
      gauss8d(a, bb, &zc, &zs);
      // kPermPair: lanes 2k hold blocks 8h + k, lanes 2k + 1 blocks 8h + 4 + k.
      _mm512_store_pd(out + 16 * h, _mm512_unpacklo_pd(zc, zs));
      _mm512_store_pd(out + 16 * h + 8, _mm512_unpackhi_pd(zc, zs));
    }
  }
};

template <typename T>
struct SegTile;

template <>
struct SegTile<float> {
  static constexpr size_t kPerBlock = 4;
  static SOFTZO_INLINE void fill(const Philox16& ph, uint64_t b, float* out) {
    __m512i w[8];
    ph.blocks(b, kPermQuad, w);
    ph.blocks(b + 16, kPermQuad, w + 4);
    for (int m = 0; m < 2; ++m) {
      store_quads(segmented16(w[4 * m]), segmented16(w[4 * m + 1]), segmented16(w[4 * m + 2]),
                  segmented16(w[4 * m + 3]), out + 64 * m);
    }
  }
};

template <>
struct SegTile<double> {
  static constexpr size_t kPerBlock = 4;
  static SOFTZO_INLINE void fill(const Philox16& ph, uint64_t b, double* out) {
    __m512i w[8];
    ph.blocks(b, kPermQuad, w);
    ph.blocks(b + 16, kPermQuad, w + 4);
    alignas(64) float words[128];
    for (int m = 0; m < 2; ++m) {
      store_quads(_mm512_castsi512_ps(w[4 * m]), _mm512_castsi512_ps(w[4 * m + 1]),
                  _mm512_castsi512_ps(w[4 * m + 2]), _mm512_castsi512_ps(w[4 * m + 3]),
                  words + 64 * m);
    }
    for (int k = 0; k < 16; ++k) {
      const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(words + 8 * k));
      _mm512_store_pd(out + 8 * k, segmented8d(v));
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Traits.

struct F32x16 {
  typedef float T;
  typedef __m512 V;
  typedef __mmask16 K;
  static constexpr size_t kLanes = 16;
  static SOFTZO_INLINE V load(const T* p) { return _mm512_loadu_ps(p); }
  static SOFTZO_INLINE V load_n(const T* p, const K* k) {
    return k ? softzo_mask_loadu_ps(_mm512_setzero_ps(), *k, p) : _mm512_loadu_ps(p);
  }
  static SOFTZO_INLINE void store_n(T* p, const K* k, V v) {
    if (k) {
      softzo_mask_storeu_ps(p, *k, v);
    } else {
      _mm512_storeu_ps(p, v);
    }
  }
  static SOFTZO_INLINE K tail(size_t rem) { return softzo_tail_mask16(rem); }
  static SOFTZO_INLINE V set1(T a) { return _mm512_set1_ps(a); }
  static SOFTZO_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static SOFTZO_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static SOFTZO_INLINE V div(V a, V b) { return _mm512_div_ps(a, b); }
  static SOFTZO_INLINE V sqrt(V a) { return _mm512_sqrt_ps(a); }
  static SOFTZO_INLINE V blend(K k, V a, V b) { return _mm512_mask_blend_ps(k, a, b); }
  static SOFTZO_INLINE K abs_le(V x, V thr) {  // |x| <= thr, false for NaN
    const V ax =
        _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), set1_32(0x7fffffffu)));
    return _mm512_cmp_ps_mask(ax, thr, _CMP_LE_OQ);
  }
  static SOFTZO_INLINE V keep(V v, const K* k) { return k ? _mm512_maskz_mov_ps(*k, v) : v; }
  // acc[h] += a_h * b_h over the double halves.
  static SOFTZO_INLINE void acc_mul(__m512d acc[2], V a, V b) {
    acc[0] = _mm512_fmadd_pd(softzo_cvtlo_pd(a), softzo_cvtlo_pd(b), acc[0]);
    acc[1] = _mm512_fmadd_pd(softzo_cvthi_pd(a), softzo_cvthi_pd(b), acc[1]);
  }
};

struct F64x8 {
  typedef double T;
  typedef __m512d V;
  typedef __mmask8 K;
  static constexpr size_t kLanes = 8;
  static SOFTZO_INLINE V load(const T* p) { return _mm512_loadu_pd(p); }
  static SOFTZO_INLINE V load_n(const T* p, const K* k) {
    return k ? softzo_mask_loadu_pd(_mm512_setzero_pd(), *k, p) : _mm512_loadu_pd(p);
  }
  static SOFTZO_INLINE void store_n(T* p, const K* k, V v) {
    if (k) {
      softzo_mask_storeu_pd(p, *k, v);
    } else {
      _mm512_storeu_pd(p, v);
    }
  }
  static SOFTZO_INLINE K tail(size_t rem) { return softzo_tail_mask8(rem); }
  static SOFTZO_INLINE V set1(T a) { return _mm512_set1_pd(a); }
  static SOFTZO_INLINE V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static SOFTZO_INLINE V mul(V a, V b) { return _mm512_mul_pd(a, b); }
  static SOFTZO_INLINE V div(V a, V b) { return _mm512_div_pd(a, b); }
  static SOFTZO_INLINE V sqrt(V a) { return _mm512_sqrt_pd(a); }
  static SOFTZO_INLINE V blend(K k, V a, V b) { return _mm512_mask_blend_pd(k, a, b); }
  static SOFTZO_INLINE K abs_le(V x, V thr) {
    const V ax =
        _mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(x), set1_64(0x7fffffffffffffff)));
    return _mm512_cmp_pd_mask(ax, thr, _CMP_LE_OQ);
  }
  static SOFTZO_INLINE V keep(V v, const K* k) { return k ? _mm512_maskz_mov_pd(*k, v) : v; }
  static SOFTZO_INLINE void acc_mul(__m512d acc[2], V a, V b) {
    acc[0] = _mm512_fmadd_pd(a, b, acc[0]);
  }
};

template <typename T>
struct Traits;
template <>
struct Traits<float> {
  typedef F32x16 A;
};
template <>
struct Traits<double> {
  typedef F64x8 A;
};

// ---------------------------------------------------------------------------------------------
// Drivers: op(i, z, k) handles elements [i, i + lanes) with their z (k: lane mask of a partial
// vector, nullptr for a full one; z is 0 or +-1 outside k).

template <typename T, class Tile, class Op>
void run_tiles(size_t n, uint64_t offset, const Philox16& ph, Op& op_ref) {
  typedef typename Traits<T>::A A;
  constexpr size_t L = A::kLanes, kTile = kTileBlocks * Tile::kPerBlock;
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
        const typename A::K mk = A::tail(cnt - k);
        op(i + k, A::load_n(buf + skip + k, &mk), &mk);
      }
      i += cnt;
      skip = 0;
    }
    b += kTileBlocks;
  }
  op_ref = op;
}

// 16 blocks = 2048 elements per Philox call. The words are transposed into element order (the
// kPermQuad layout and store_quads), so word k holds elements 32k..32k+31 of the batch, bit j
// element 32k + j; the bits are the blend mask.
template <typename T, class Op>
void run_rademacher(size_t n, uint64_t offset, const Philox16& ph, Op& op_ref) {
  typedef typename Traits<T>::A A;
  typedef typename A::K K;
  constexpr size_t L = A::kLanes;
  Op op = op_ref;  // a local copy stays in registers: stores through theta cannot alias it
  const typename A::V minus = A::set1(T(-1)), plus = A::set1(T(1));
  alignas(64) uint32_t words[64];
  size_t i = 0;
  while (i < n) {
    const uint64_t g = offset + i;
    __m512i w[4];
    ph.blocks(g >> 7, kPermQuad, w);
    store_quads(_mm512_castsi512_ps(w[0]), _mm512_castsi512_ps(w[1]), _mm512_castsi512_ps(w[2]),
                _mm512_castsi512_ps(w[3]), reinterpret_cast<float*>(words));
    size_t pos = static_cast<size_t>(g & 127);
    const size_t end = pos + (n - i < 2048 - pos ? n - i : 2048 - pos);
    if (pos == 0 && end == 2048) {  // the steady state: 64 whole words
      for (size_t k = 0; k < 64; ++k) {
        for (size_t v = 0; v < 32 / L; ++v) {
          op(i + v * L, A::blend(static_cast<K>(words[k] >> (v * L)), minus, plus), nullptr);
        }
        i += 32;
      }
      continue;
    }
    while (pos < end) {
      const uint32_t word = words[pos >> 5];
      const size_t p = pos & 31;
      const size_t room = L - p % L;  // up to the end of this vector's lane group
      const size_t cnt = end - pos < room ? end - pos : room;
      const typename A::V z = A::blend(static_cast<K>(word >> p), minus, plus);
      if (cnt == L) {
        op(i, z, nullptr);
      } else {
        const K mk = A::tail(cnt);
        op(i, z, &mk);
      }
      pos += cnt;
      i += cnt;
    }
  }
  op_ref = op;
}

template <typename T, class Op>
void run(size_t n, uint64_t offset, const softzo_zo_stream* s, Op& op) {
  if (n == 0) return;
  const Philox16 ph(s);
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
  typedef typename Traits<T>::A A;
  T* y;
  SOFTZO_INLINE void operator()(size_t i, typename A::V z, const typename A::K* k) {
    A::store_n(y + i, k, z);
  }
};

template <typename T>
struct AxpyOp {
  typedef typename Traits<T>::A A;
  typedef typename A::V V;
  V c;
  T* theta;
  SOFTZO_INLINE V update(V x, V z) const { return A::fma(c, z, x); }
  SOFTZO_INLINE void operator()(size_t i, V z, const typename A::K* k) {
    A::store_n(theta + i, k, update(A::load_n(theta + i, k), z));
  }
};

template <typename T>
struct RestoreUpdateOp {
  typedef typename Traits<T>::A A;
  typedef typename A::V V;
  V c_restore, decay, neg_step;
  T* theta;
  RestoreUpdateOp(T c_restore_, T lr, T g, T wd, T* theta_)
      : c_restore(A::set1(c_restore_)),
        decay(A::set1(fma_s(-lr, wd, T(1)))),
        neg_step(A::set1(-(lr * g))),
        theta(theta_) {}
  SOFTZO_INLINE V update(V x, V z) const {
    return A::fma(neg_step, z, A::mul(A::fma(c_restore, z, x), decay));
  }
  SOFTZO_INLINE void operator()(size_t i, V z, const typename A::K* k) {
    A::store_n(theta + i, k, update(A::load_n(theta + i, k), z));
  }
};

// Bits i .. i + 31 of a Sparse MeZO mask (bit k of word k >> 5), low bit first; the word after
// i's is read only when lanes reach into it and it holds elements below n.
static SOFTZO_INLINE uint32_t mask_bits(const uint32_t* mask, size_t n, size_t i, size_t lanes) {
  const size_t w = i >> 5, sh = i & 31;
  uint64_t v = mask[w];
  if (sh + lanes > 32 && (w + 1) * 32 < n) v |= static_cast<uint64_t>(mask[w + 1]) << 32;
  return static_cast<uint32_t>(v >> sh);
}

// The mask bits are the blend's lane mask; lanes outside it are stored back unchanged.
template <typename T, class Inner>
struct MaskedOp {
  typedef typename Traits<T>::A A;
  typedef typename A::V V;
  Inner inner;
  const uint32_t* mask;
  size_t n;
  SOFTZO_INLINE void operator()(size_t i, V z, const typename A::K* k) {
    const V x = A::load_n(inner.theta + i, k);
    const typename A::K in = static_cast<typename A::K>(mask_bits(mask, n, i, A::kLanes));
    A::store_n(inner.theta + i, k, A::blend(in, x, inner.update(x, z)));
  }
};

// Partial vectors load sigma = 0 into the lanes past n: their inf / NaN is never stored.
template <typename T>
struct AxpyDiagOp {
  typedef typename Traits<T>::A A;
  typedef typename A::V V;
  V c;
  const T* sigma;
  T* theta;
  SOFTZO_INLINE void operator()(size_t i, V z, const typename A::K* k) {
    const V u = A::div(z, A::sqrt(A::load_n(sigma + i, k)));
    A::store_n(theta + i, k, A::fma(c, u, A::load_n(theta + i, k)));
  }
};

template <typename T>
struct HiZooOp {
  typedef typename Traits<T>::A A;
  typedef typename A::V V;
  V c_restore, decay, neg_step, keep, gain;
  T* sigma;
  T* theta;
  HiZooOp(T c_restore_, T lr, T g, T wd, T keep_, T gain_, T* sigma_, T* theta_)
      : c_restore(A::set1(c_restore_)),
        decay(A::set1(fma_s(-lr, wd, T(1)))),
        neg_step(A::set1(-(lr * g))),
        keep(A::set1(keep_)),
        gain(A::set1(gain_)),
        sigma(sigma_),
        theta(theta_) {}
  SOFTZO_INLINE void operator()(size_t i, V z, const typename A::K* k) {
    const V s = A::load_n(sigma + i, k);
    const V t = A::fma(c_restore, A::div(z, A::sqrt(s)), A::load_n(theta + i, k));
    const V s2 = A::mul(s, A::fma(gain, A::mul(z, z), keep));
    A::store_n(sigma + i, k, s2);
    A::store_n(theta + i, k, A::fma(neg_step, A::div(z, A::sqrt(s2)), A::mul(t, decay)));
  }
};

// 32 elements per mask word: the compare masks of 2 (float32) or 4 (float64) vectors.
template <typename T>
void mask_build(size_t n, T threshold, const T* theta, uint32_t* mask) {
  typedef typename Traits<T>::A A;
  constexpr size_t L = A::kLanes;
  const typename A::V thr = A::set1(threshold);
  size_t w = 0;
  for (; 32 * w + 32 <= n; ++w) {
    uint32_t bits = 0;
    for (size_t v = 0; v < 32 / L; ++v) {
      bits |= static_cast<uint32_t>(A::abs_le(A::load(theta + 32 * w + v * L), thr)) << (v * L);
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
  typedef typename Traits<T>::A A;
  __m512d acc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  SOFTZO_INLINE void operator()(size_t, typename A::V z, const typename A::K* k) {
    const typename A::V zk = A::keep(z, k);
    A::acc_mul(acc, zk, zk);
  }
  double result() const { return softzo_hadd_pd(_mm512_add_pd(acc[0], acc[1])); }
};

template <typename T>
struct DotOp {
  typedef typename Traits<T>::A A;
  const T* v;
  __m512d acc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  SOFTZO_INLINE void operator()(size_t i, typename A::V z, const typename A::K* k) {
    A::acc_mul(acc, A::keep(z, k), A::load_n(v + i, k));
  }
  double result() const { return softzo_hadd_pd(_mm512_add_pd(acc[0], acc[1])); }
};

template <typename T>
double sumsq(size_t n, uint64_t offset, const softzo_zo_stream* s) {
  if (s->dist != SOFTZO_ZO_GAUSSIAN && s->dist != SOFTZO_ZO_SEGMENTED) {
    return static_cast<double>(n);
  }
  SumSqOp<T> op;
  run<T>(n, offset, s, op);
  return op.result();
}

}  // namespace zo
}  // namespace

#define SOFTZO_DEFINE_ZO_AVX512(T, dt)                                                             \
  void SOFTZO_FN(dt, zo_fill)(size_t n, uint64_t offset, const softzo_zo_stream* s, T* y) {        \
    zo::FillOp<T> op{y};                                                                           \
    zo::run<T>(n, offset, s, op);                                                                  \
  }                                                                                                \
  void SOFTZO_FN(dt, zo_axpy)(size_t n, uint64_t offset, const softzo_zo_stream* s, T c,           \
                              T* theta) {                                                          \
    zo::AxpyOp<T> op{zo::Traits<T>::A::set1(c), theta};                                            \
    zo::run<T>(n, offset, s, op);                                                                  \
  }                                                                                                \
  void SOFTZO_FN(dt, zo_restore_update)(size_t n, uint64_t offset, const softzo_zo_stream* s,      \
                                        T c_restore, T lr, T g, T wd, T* theta) {                  \
    zo::RestoreUpdateOp<T> op(c_restore, lr, g, wd, theta);                                        \
    zo::run<T>(n, offset, s, op);                                                                  \
  }                                                                                                \
  void SOFTZO_FN(dt, zo_mask_build)(size_t n, T threshold, const T* theta, uint32_t* mask) {       \
    zo::mask_build<T>(n, threshold, theta, mask);                                                  \
  }                                                                                                \
  void SOFTZO_FN(dt, zo_axpy_mask)(size_t n, uint64_t offset, const softzo_zo_stream* s, T c,      \
                                   const uint32_t* mask, T* theta) {                               \
    zo::MaskedOp<T, zo::AxpyOp<T>> op{zo::AxpyOp<T>{zo::Traits<T>::A::set1(c), theta}, mask, n};   \
    zo::run<T>(n, offset, s, op);                                                                  \
  }                                                                                                \
  void SOFTZO_FN(dt, zo_restore_update_mask)(size_t n, uint64_t offset, const softzo_zo_stream* s, \
                                             T c_restore, T lr, T g, T wd, const uint32_t* mask,   \
                                             T* theta) {                                           \
    zo::MaskedOp<T, zo::RestoreUpdateOp<T>> op{                                                    \
        zo::RestoreUpdateOp<T>(c_restore, lr, g, wd, theta), mask, n};                             \
    zo::run<T>(n, offset, s, op);                                                                  \
  }                                                                                                \
  void SOFTZO_FN(dt, zo_axpy_diag)(size_t n, uint64_t offset, const softzo_zo_stream* s, T c,      \
                                   const T* sigma, T* theta) {                                     \
    zo::AxpyDiagOp<T> op{zo::Traits<T>::A::set1(c), sigma, theta};                                 \
    zo::run<T>(n, offset, s, op);                                                                  \
  }                                                                                                \
  void SOFTZO_FN(dt, zo_hizoo_update)(size_t n, uint64_t offset, const softzo_zo_stream* s,        \
                                      T c_restore, T lr, T g, T wd, T keep, T gain, T* sigma,      \
                                      T* theta) {                                                  \
    zo::HiZooOp<T> op(c_restore, lr, g, wd, keep, gain, sigma, theta);                             \
    zo::run<T>(n, offset, s, op);                                                                  \
  }                                                                                                \
  double SOFTZO_FN(dt, zo_sumsq)(size_t n, uint64_t offset, const softzo_zo_stream* s) {           \
    return zo::sumsq<T>(n, offset, s);                                                             \
  }                                                                                                \
  double SOFTZO_FN(dt, zo_dot)(size_t n, uint64_t offset, const softzo_zo_stream* s, const T* v) { \
    zo::DotOp<T> op{v};                                                                            \
    zo::run<T>(n, offset, s, op);                                                                  \
    return op.result();                                                                            \
  }

extern "C" {
SOFTZO_DEFINE_ZO_AVX512(float, f32)
SOFTZO_DEFINE_ZO_AVX512(double, f64)
}
