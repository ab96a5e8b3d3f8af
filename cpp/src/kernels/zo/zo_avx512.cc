// AVX-512 zeroth-order kernels (float32 and float64): zo_simd.h's templates on the AVX-512 trait
// below, 16 Philox blocks per batch. Compiled twice like softmax_avx512.cc: natively with
// -mavx512f/dq/vl/bw -mfma (suffix avx512), and on top of SIMDe under SOFTZO_EMULATE_AVX512
// (suffix avx512emu), which is how AVX2-only hosts test this file.
//
// What AVX-512 does its own way: tails and lane selections are mask registers (which
// rademacher takes straight from the Philox bits, 16 / 8 per vector), the three-way xor of a
// Philox round is one vpternlogd, and the emulated build widens half vectors from 128-bit
// quarters (SIMDe has no such conversions) and goes lane by lane in masked loads and stores
// (isa/avx512.h).
#include <stddef.h>
#include <stdint.h>

#include "isa/avx512.h"
#include "kernels/zo/zo_simd.h"

namespace {
namespace zo {

// The ISA trait (see zo_simd.h).
struct Avx512 {
  SOFTZO_ZO_WIDTH(512, 256, _mm256_)
  static SOFTZO_ZO_INLINE I set1_64(uint64_t v) {
    return _mm512_set1_epi64(static_cast<int64_t>(v));
  }
  static SOFTZO_ZO_INLINE I xor3(I a, I b, I c) { return _mm512_ternarylogic_epi32(a, b, c, 0x96); }
  static SOFTZO_ZO_INLINE I blend_odd32(I a, I b) { return _mm512_mask_blend_epi32(0xAAAA, a, b); }
  static SOFTZO_ZO_INLINE F select_odd(I q, F a, F b) {
    return _mm512_mask_blend_ps(_mm512_test_epi32_mask(q, _mm512_set1_epi32(1)), a, b);
  }
  static SOFTZO_ZO_INLINE D select_odd(I q, D a, D b) {
    return _mm512_mask_blend_pd(_mm512_test_epi64_mask(q, set1_64(1)), a, b);
  }
  static SOFTZO_ZO_INLINE F abs(F a) { return ::F32::abs(a); }
  static SOFTZO_ZO_INLINE D abs(D a) { return ::F64::abs(a); }
  static SOFTZO_ZO_INLINE uint32_t le_bits(F a, F b) {
    return _mm512_cmp_ps_mask(a, b, _CMP_LE_OQ);
  }
  static SOFTZO_ZO_INLINE uint32_t le_bits(D a, D b) {
    return _mm512_cmp_pd_mask(a, b, _CMP_LE_OQ);
  }
  static SOFTZO_ZO_INLINE double hsum(D v) { return softzo_hadd_pd(v); }
  static SOFTZO_ZO_INLINE H hi(I a) { return _mm512_extracti64x4_epi64(a, 1); }

#if SOFTZO_AVX512_EMULATED
  // SIMDe has no 8-lane widening conversions: convert 128-bit quarters with AVX2 (exact either
  // way).
  static SOFTZO_ZO_INLINE I zext64(H a) {
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_cvtepu32_epi64(_mm256_castsi256_si128(a))),
        _mm256_cvtepu32_epi64(_mm256_extracti128_si256(a, 1)), 1);
  }
  static SOFTZO_ZO_INLINE I sext64(H a) {
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_cvtepi32_epi64(_mm256_castsi256_si128(a))),
        _mm256_cvtepi32_epi64(_mm256_extracti128_si256(a, 1)), 1);
  }
  static SOFTZO_ZO_INLINE D cvt_pd(H a) {
    return _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_cvtepi32_pd(_mm256_castsi256_si128(a))),
                              _mm256_cvtepi32_pd(_mm256_extracti128_si256(a, 1)), 1);
  }
#else
  static SOFTZO_ZO_INLINE I zext64(H a) { return _mm512_cvtepu32_epi64(a); }
  static SOFTZO_ZO_INLINE I sext64(H a) { return _mm512_cvtepi32_epi64(a); }
  static SOFTZO_ZO_INLINE D cvt_pd(H a) { return _mm512_cvtepi32_pd(a); }
#endif
};

template <typename T>
struct Avx512Element;
template <>
struct Avx512Element<float> {
  using type = ::F32;
};
template <>
struct Avx512Element<double> {
  using type = ::F64;
};

// isa/avx512.h's element traits F32 / F64, as zo_simd.h's lane trait.
template <typename T>
struct Lanes<Avx512, T> {
  using A = typename Avx512Element<T>::type;
  using V = typename A::V;
  using M = typename A::K;
  using RadWord = uint32_t;
  static constexpr size_t kLanes = A::kLanes;
  static constexpr int kHalves = A::kHalves;
  static SOFTZO_ZO_INLINE V load(const T* p) { return A::load(p); }
  static SOFTZO_ZO_INLINE V load_n(const T* p, const M* k) {
    return k ? A::load_or(A::zero(), *k, p) : A::load(p);
  }
  static SOFTZO_ZO_INLINE void store_n(T* p, const M* k, V v) {
    if (k) {
      A::store_mask(p, *k, v);
    } else {
      A::store(p, v);
    }
  }
  static SOFTZO_ZO_INLINE M tail(size_t rem) { return A::tail(rem); }
  static SOFTZO_ZO_INLINE V keep(V v, const M* k) { return k ? A::maskz_mov(*k, v) : v; }
  static SOFTZO_ZO_INLINE V select_bits(uint32_t bits, V a, V b) {
    return A::blend(static_cast<M>(bits), a, b);
  }
  static SOFTZO_ZO_INLINE __m512d half_pd(V v, int h) { return A::half(v, h); }
  static SOFTZO_ZO_INLINE RadWord rad_word(uint32_t w) { return w; }
  // The bits are the blend's lane mask.
  static SOFTZO_ZO_INLINE V rad_at(uint32_t w, size_t p) {
    return A::blend(static_cast<M>(w >> p), A::set1(T(-1)), A::set1(T(1)));
  }
  static SOFTZO_ZO_INLINE V rad_full(uint32_t w, size_t v) { return rad_at(w, v * kLanes); }
};

}  // namespace zo
}  // namespace

extern "C" {
SOFTZO_ZO_DEFINE_KERNELS(zo::Avx512, SOFTZO_ISA_SUFFIX)
}
