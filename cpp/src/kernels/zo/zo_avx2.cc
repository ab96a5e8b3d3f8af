// AVX2 + FMA zeroth-order kernels (float32 and float64), built with -mavx2 -mfma: zo_simd.h's
// templates on the AVX2 trait below, 8 Philox blocks per batch.
//
// What AVX2 does its own way: its tails and lane selections are vector masks (blendv), the
// three-way xor of a Philox round is two xors, and rademacher moves each bit of a broadcast
// Philox word into the sign bit of its lane with a variable shift, the blend's mask.
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#include "isa/avx2.h"
#include "kernels/zo/zo_simd.h"

namespace {
namespace zo {

// Rademacher: shift counts that bring bit 8v + l (float32) / 4v + l (float64) of a broadcast
// word into the sign bit of lane l, and lane numbers (the counts of a partial vector).
alignas(32) const int32_t kShift32[4][8] = {{31, 30, 29, 28, 27, 26, 25, 24},
                                            {23, 22, 21, 20, 19, 18, 17, 16},
                                            {15, 14, 13, 12, 11, 10, 9, 8},
                                            {7, 6, 5, 4, 3, 2, 1, 0}};
alignas(32) const int64_t kShift64[8][4] = {{63, 62, 61, 60}, {59, 58, 57, 56}, {55, 54, 53, 52},
                                            {51, 50, 49, 48}, {47, 46, 45, 44}, {43, 42, 41, 40},
                                            {39, 38, 37, 36}, {35, 34, 33, 32}};
alignas(32) const int32_t kIota[8] = {0, 1, 2, 3, 4, 5, 6, 7};
// Lane l's bit of a Sparse MeZO mask word.
alignas(32) const int32_t kLaneBit32[8] = {1, 2, 4, 8, 16, 32, 64, 128};
alignas(32) const int64_t kLaneBit64[4] = {1, 2, 4, 8};

SOFTZO_ZO_INLINE __m256i load256(const void* p) {
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
}

// The ISA trait (see zo_simd.h).
struct Avx2 {
  SOFTZO_ZO_WIDTH(256, 128, _mm_)
  static SOFTZO_ZO_INLINE I set1_64(uint64_t v) {
    return _mm256_set1_epi64x(static_cast<int64_t>(v));
  }
  static SOFTZO_ZO_INLINE I xor3(I a, I b, I c) {
    return _mm256_xor_si256(_mm256_xor_si256(a, b), c);
  }
  static SOFTZO_ZO_INLINE I blend_odd32(I a, I b) { return _mm256_blend_epi32(a, b, 0xAA); }
  // The low bit of q moved into the sign bit, blendv's selector.
  static SOFTZO_ZO_INLINE F select_odd(I q, F a, F b) {
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(q, 31)));
  }
  static SOFTZO_ZO_INLINE D select_odd(I q, D a, D b) {
    return _mm256_blendv_pd(a, b, _mm256_castsi256_pd(_mm256_slli_epi64(q, 63)));
  }
  static SOFTZO_ZO_INLINE F abs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  static SOFTZO_ZO_INLINE D abs(D a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a); }
  static SOFTZO_ZO_INLINE uint32_t le_bits(F a, F b) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_LE_OQ)));
  }
  static SOFTZO_ZO_INLINE uint32_t le_bits(D a, D b) {
    return static_cast<uint32_t>(_mm256_movemask_pd(_mm256_cmp_pd(a, b, _CMP_LE_OQ)));
  }
  static SOFTZO_ZO_INLINE double hsum(D v) { return ::hsum(v); }
  static SOFTZO_ZO_INLINE H hi(I a) { return _mm256_extracti128_si256(a, 1); }
  static SOFTZO_ZO_INLINE I zext64(H a) { return _mm256_cvtepu32_epi64(a); }
  static SOFTZO_ZO_INLINE I sext64(H a) { return _mm256_cvtepi32_epi64(a); }
  static SOFTZO_ZO_INLINE D cvt_pd(H a) { return _mm256_cvtepi32_pd(a); }
};

// What float and double share: isa/avx2.h's Ops<T>, its masked loads and stores.
template <typename T>
struct Avx2LanesOf {
  using O = Ops<T>;
  using V = typename O::V;
  using M = __m256i;        // a partial vector's lanes: all ones
  using RadWord = __m256i;  // the Philox word in every 32-bit lane
  static constexpr size_t kLanes = O::kLanes;
  static constexpr int kHalves = O::kHalves;
  static SOFTZO_ZO_INLINE V load(const T* p) { return O::load(p); }
  static SOFTZO_ZO_INLINE V load_n(const T* p, const M* mk) { return ::load_n<T>(p, mk); }
  static SOFTZO_ZO_INLINE void store_n(T* p, const M* mk, V v) { ::store_n<T>(p, mk, v); }
  static SOFTZO_ZO_INLINE M tail(size_t rem) { return O::tail_mask(rem); }
  static SOFTZO_ZO_INLINE V keep(V v, const M* mk) { return ::keep_n<T>(v, mk); }
  static SOFTZO_ZO_INLINE __m256d half_pd(V v, int h) {
    __m256d d[kHalves];
    O::to_double(v, d);
    return d[h];
  }
  static SOFTZO_ZO_INLINE RadWord rad_word(uint32_t w) {
    return _mm256_set1_epi32(static_cast<int32_t>(w));
  }
  // z = +1 where the sign bit of m is set, -1 elsewhere.
  static SOFTZO_ZO_INLINE V rad(V m) { return O::blend(O::set1(T(-1)), O::set1(T(1)), m); }
};

template <>
struct Lanes<Avx2, float> : Avx2LanesOf<float> {
  static SOFTZO_ZO_INLINE __m256 select_bits(uint32_t bits, __m256 a, __m256 b) {
    const __m256i bit = load256(kLaneBit32);
    const __m256i v = _mm256_and_si256(_mm256_set1_epi32(static_cast<int32_t>(bits)), bit);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_cmpeq_epi32(v, bit)));
  }
  static SOFTZO_ZO_INLINE __m256 rad_full(__m256i w, size_t v) {
    return rad(_mm256_castsi256_ps(_mm256_sllv_epi32(w, load256(kShift32[v]))));
  }
  static SOFTZO_ZO_INLINE __m256 rad_at(__m256i w, size_t p) {
    const __m256i cnt =
        _mm256_sub_epi32(_mm256_set1_epi32(static_cast<int32_t>(31 - p)), load256(kIota));
    return rad(_mm256_castsi256_ps(_mm256_sllv_epi32(w, cnt)));
  }
};

template <>
struct Lanes<Avx2, double> : Avx2LanesOf<double> {
  static SOFTZO_ZO_INLINE __m256d select_bits(uint32_t bits, __m256d a, __m256d b) {
    const __m256i bit = load256(kLaneBit64);
    const __m256i v = _mm256_and_si256(_mm256_set1_epi64x(bits), bit);
    return _mm256_blendv_pd(a, b, _mm256_castsi256_pd(_mm256_cmpeq_epi64(v, bit)));
  }
  // w holds the word in both halves of each 64-bit lane; bit j moves to bit 63 with 63 - j.
  static SOFTZO_ZO_INLINE __m256d rad_full(__m256i w, size_t v) {
    return rad(_mm256_castsi256_pd(_mm256_sllv_epi64(w, load256(kShift64[v]))));
  }
  static SOFTZO_ZO_INLINE __m256d rad_at(__m256i w, size_t p) {
    const __m256i cnt = _mm256_sub_epi64(_mm256_set1_epi64x(static_cast<int64_t>(63 - p)),
                                         _mm256_setr_epi64x(0, 1, 2, 3));
    return rad(_mm256_castsi256_pd(_mm256_sllv_epi64(w, cnt)));
  }
};

}  // namespace zo
}  // namespace

extern "C" {
SOFTZO_ZO_DEFINE_KERNELS(zo::Avx2, avx2)
}
