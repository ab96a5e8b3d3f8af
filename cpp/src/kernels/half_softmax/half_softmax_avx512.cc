// AVX-512 fused half-precision softmax sweeps: the trait of half_softmax_simd.h on 16 float
// lanes (a unit: 32 halves, one 512-bit vector). Compiled twice like softmax_avx512.cc: natively
// (suffix avx512, with -mavx512bf16 for this family only) and on top of SIMDe (suffix
// avx512emu). bfloat16 units widen as their even and odd elements (a shift and a mask, one
// instruction per 16 where zero-extension takes two), so the buffer holds each unit's even
// elements, then its odd ones; natively on a CPU with AVX512-BF16 VCVTNE2PS2BF16 and one word
// permute narrow them back (integer rounding elsewhere, which needs no permute). float16 units
// widen as their two halves through VCVTPH2PS.
#include "isa/avx512.h"
#include "kernels/half_softmax/half_softmax_simd.h"

namespace {

// kBf16Insn: narrow bfloat16 with VCVTNE2PS2BF16 (native build, CPU with AVX512-BF16 only).
template <bool kBf16Insn>
struct Avx512 {
  using V = __m512;
  using R = __m512i;
  using K = __mmask16;
  static constexpr size_t kLanes = 16;

  static SOFTZO_INLINE R load_raw(const uint16_t* p) { return _mm512_loadu_si512(p); }
  static SOFTZO_INLINE void store_raw(uint16_t* p, R v) { _mm512_storeu_si512(p, v); }
  static SOFTZO_INLINE R set1_16(int16_t v) { return _mm512_set1_epi16(v); }
  // h ^ (h < 0 ? 0x7fff : 0) per 16-bit lane: ternary logic a ^ (b & c) (0x78).
  static SOFTZO_INLINE R key(R h) {
    return _mm512_ternarylogic_epi32(h, _mm512_srai_epi16(h, 15), _mm512_set1_epi16(0x7fff), 0x78);
  }
  static SOFTZO_INLINE R max16(R a, R b) { return _mm512_max_epi16(a, b); }
  static SOFTZO_INLINE R min16(R a, R b) { return _mm512_min_epi16(a, b); }
  template <class F>
  static SOFTZO_INLINE void widen(R h, V* a, V* b) {
    if constexpr (!F::kBf16) {  // float16: elements 0-15, 16-31
      *a = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
      *b = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
    } else {  // bfloat16: even elements, odd elements
      *a = _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
      *b = _mm512_castsi512_ps(
          _mm512_and_si512(h, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
    }
  }
  template <class F>
  static SOFTZO_INLINE R narrow(V a, V b) {
    if constexpr (!F::kBf16) {
      return _mm512_inserti64x4(_mm512_castsi256_si512(softzo_cvtps_ph(a)), softzo_cvtps_ph(b), 1);
    } else if constexpr (kBf16Insn) {
#if !SOFTZO_AVX512_EMULATED
      // [bf16(a), bf16(b)] as 32 words; the permute interleaves them back (word 2i from a_i).
      const __m512i words = (__m512i)_mm512_cvtne2ps_pbh(b, a);
      const __m512i order =
          _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                           6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);  // fmt: word 0 first
      return _mm512_permutexvar_epi16(order, words);
#endif
    } else {
      // Round to nearest even on the bits (no NaN, no subnormal here): even elements into the
      // low words, odd ones into the high words.
      return _mm512_ternarylogic_epi32(_mm512_srli_epi32(round_bf16(a), 16), round_bf16(b),
                                       _mm512_set1_epi32(static_cast<int>(0xffff0000u)),
                                       0xd8);  // c ? b : a, bitwise
    }
  }

  static SOFTZO_INLINE V zero() { return _mm512_setzero_ps(); }
  static SOFTZO_INLINE V set1(float v) { return _mm512_set1_ps(v); }
  static SOFTZO_INLINE V load(const float* p) { return _mm512_loadu_ps(p); }
  static SOFTZO_INLINE void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static SOFTZO_INLINE V add(V a, V b) { return _mm512_add_ps(a, b); }
  static SOFTZO_INLINE V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static SOFTZO_INLINE V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static SOFTZO_INLINE V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static SOFTZO_INLINE V fmsub(V a, V b, V c) { return _mm512_fmsub_ps(a, b, c); }
  static SOFTZO_INLINE K ge(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
  template <bool kFlush>
  static SOFTZO_INLINE V scale_of(V v, K keep) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i entry = _mm512_permutexvar_epi32(bits, _mm512_loadu_si512(softzo_half_exp_table));
    const __m512i shifted = _mm512_slli_epi32(bits, 19);
    if (kFlush) return _mm512_castsi512_ps(_mm512_maskz_add_epi32(keep, entry, shifted));
    return _mm512_castsi512_ps(_mm512_add_epi32(entry, shifted));
  }
  template <bool kFlush>
  static SOFTZO_INLINE V masked_fmadd(K keep, V a, V b, V c) {
    return kFlush ? _mm512_maskz_fmadd_ps(keep, a, b, c) : _mm512_fmadd_ps(a, b, c);
  }
  // v s, where v >= below (kFlush) else 0: masked lanes are not multiplied, so no subnormal is
  // formed.
  template <bool kFlush>
  static SOFTZO_INLINE V scaled(V v, V s, V below) {
    if (!kFlush) return _mm512_mul_ps(v, s);
    return _mm512_maskz_mul_ps(_mm512_cmp_ps_mask(v, below, _CMP_GE_OQ), v, s);
  }
  static SOFTZO_INLINE double hsum(V v) {
    return softzo_hadd_pd(_mm512_add_pd(softzo_cvtlo_pd(v), softzo_cvthi_pd(v)));
  }

 private:
  static SOFTZO_INLINE __m512i round_bf16(V v) {
    const __m512i x = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
    return _mm512_add_epi32(_mm512_add_epi32(x, _mm512_set1_epi32(0x7fff)), lsb);
  }
};

}  // namespace

extern "C" {

void SOFTZO_FN_HALF(bf16softmaxsweep)(size_t n, softzo_half_sweep* s) {
#if !SOFTZO_AVX512_EMULATED
  if (softzo_cpu_has_avx512_bf16()) return sweep_any<Avx512<true>, Bf16>(n, s);
#endif
  sweep_any<Avx512<false>, Bf16>(n, s);
}

void SOFTZO_FN_HALF(f16softmaxsweep)(size_t n, softzo_half_sweep* s) {
  sweep_any<Avx512<false>, F16>(n, s);
}

}  // extern "C"
