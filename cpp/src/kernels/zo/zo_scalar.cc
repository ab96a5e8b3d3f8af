// Portable scalar zeroth-order kernels: Philox4x32-10 one block at a time, and the readable
// reference for the vector kernels (zo_simd.h, instantiated by zo_avx2.cc and zo_avx512.cc),
// which must reproduce its z bit for bit (the operation sequence is spelled out in zo_kernels.h).
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/zo/zo_kernels.h"

// Hardware FMA when the compiler may use it (then it may also contract a * b + c, which is why
// every such expression below is an explicit fma); otherwise an exact software FMA.
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
#define SOFTZO_ZO_HW_FMA 1
#else
#define SOFTZO_ZO_HW_FMA 0
#endif

namespace {

inline uint32_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
inline float float_of(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}
inline uint64_t bits_of(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
inline double double_of(uint64_t u) {
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
}

// ---------------------------------------------------------------------------------------------
// Philox4x32-10: ten rounds, the key bumped by the Weyl constants between rounds.

inline void philox10(uint32_t c[4], uint32_t k0, uint32_t k1) {
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += SOFTZO_PHILOX_W0;
      k1 += SOFTZO_PHILOX_W1;
    }
    const uint64_t p0 = static_cast<uint64_t>(SOFTZO_PHILOX_M0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(SOFTZO_PHILOX_M1) * c[2];
    const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c[1] ^ k0;
    const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c[3] ^ k1;
    c[1] = static_cast<uint32_t>(p1);
    c[3] = static_cast<uint32_t>(p0);
    c[0] = n0;
    c[2] = n2;
  }
}

struct Stream {
  uint32_t k0, k1, direction, step;
  explicit Stream(const softzo_zo_stream* s)
      : k0(static_cast<uint32_t>(s->seed)),
        k1(static_cast<uint32_t>(s->seed >> 32)),
        direction(s->direction),
        step(s->step) {}
  void block(uint64_t b, uint32_t w[4]) const {
    w[0] = static_cast<uint32_t>(b);
    w[1] = static_cast<uint32_t>(b >> 32);
    w[2] = direction;
    w[3] = step;
    philox10(w, k0, k1);
  }
};

// ---------------------------------------------------------------------------------------------
// fma(a, b, c) with one rounding.

#if SOFTZO_ZO_HW_FMA
inline float fma_t(float a, float b, float c) { return __builtin_fmaf(a, b, c); }
inline double fma_t(double a, double b, double c) { return __builtin_fma(a, b, c); }
#else
// a + b rounded to odd: the nearest sum, moved one ulp towards the exact sum when it is inexact
// and its last bit is even (the neighbour then has an odd last bit). Rounding a round-to-odd
// result with at least 2 more bits to nearest gives the correctly rounded result (Boldo &
// Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms using rounding to
// odd", IEEE TC 2008). No underflow or overflow happens for the operands used here.
inline double add_round_odd(double a, double b) {
  const double s = a + b;
  const double bv = s - a;
  const double err = (a - (s - bv)) + (b - bv);  // exact: s + err = a + b (TwoSum)
  uint64_t u = bits_of(s);
  if (err != 0.0 && (u & 1) == 0) u += (err > 0.0) == (s > 0.0) ? 1 : ~uint64_t{0};
  return double_of(u);
}
// float: a * b is exact in double (48 bits), and 53 >= 24 + 2.
inline float fma_t(float a, float b, float c) {
  return static_cast<float>(add_round_odd(static_cast<double>(a) * b, c));
}
// double: Dekker's exact product (Veltkamp split), TwoSum with c, the two low parts added with
// rounding to odd, then one rounding to nearest (Boldo & Melquiond's emulated FMA).
inline double fma_t(double a, double b, double c) {
  const double kSplit = 134217729.0;  // 2^27 + 1
  const double ta = kSplit * a, tb = kSplit * b;
  const double ah = ta - (ta - a), bh = tb - (tb - b);
  const double al = a - ah, bl = b - bh;
  const double uh = a * b;
  const double ul = (((ah * bh - uh) + ah * bl) + al * bh) + al * bl;
  const double th = c + uh;
  const double tv = th - c;
  const double tl = (c - (th - tv)) + (uh - tv);
  return th + add_round_odd(tl, ul);
}
#endif

// x + a z. With |z| == 1 (rademacher) the product is exact, and without a hardware FMA nothing
// can be contracted, so the plain addition gives the FMA's result.
template <bool kUnit, typename T>
inline T mad(T a, T z, T x) {
#if SOFTZO_ZO_HW_FMA
  return fma_t(a, z, x);
#else
  if (kUnit) return x + (z > 0 ? a : -a);
  return fma_t(a, z, x);
#endif
}

// ---------------------------------------------------------------------------------------------
// The draws.

// Box-Muller, float32, from the word pair (wa, wb): *zc = r cos(2 pi u2), *zs = r sin(2 pi u2).
inline void gauss_f32(uint32_t wa, uint32_t wb, float* zc, float* zs) {
  const float u1 = static_cast<float>((wa >> 8) + 1) * 0x1p-24f;
  const uint32_t ix = bits_of(u1) + SOFTZO_ZO_F32_LOG_OFFSET;
  const float e = static_cast<float>(static_cast<int32_t>(ix >> 23) - 127);
  const float m = float_of((ix & 0x007fffffu) + SOFTZO_ZO_F32_SQRTHALF_BITS);
  const float f = m - 1.0f;
  const float s = f / (f + 2.0f);
  const float hfsq = (f * 0.5f) * f;
  const float z2 = s * s;
  float p = fma_t(SOFTZO_ZO_F32_LOG_C4, z2, SOFTZO_ZO_F32_LOG_C3);
  p = fma_t(p, z2, SOFTZO_ZO_F32_LOG_C2);
  p = fma_t(p, z2, SOFTZO_ZO_F32_LOG_C1);
  const float lnm = f + fma_t(s, fma_t(z2, p, hfsq), -hfsq);
  const float ln = fma_t(e, SOFTZO_ZO_F32_LN2_HI, fma_t(e, SOFTZO_ZO_F32_LN2_LO, lnm));
  const float r = sqrtf(ln * -2.0f);

  const int32_t k = static_cast<int32_t>(wb >> 8);
  const int32_t q = (k + (1 << 21)) >> 22;
  const float t = static_cast<float>(k - q * (1 << 22)) * 0x1p-24f;
  const float u = t * t;
  float ps = fma_t(SOFTZO_ZO_F32_SIN_C4, u, SOFTZO_ZO_F32_SIN_C3);
  ps = fma_t(ps, u, SOFTZO_ZO_F32_SIN_C2);
  ps = fma_t(ps, u, SOFTZO_ZO_F32_SIN_C1);
  ps = fma_t(ps, u, SOFTZO_ZO_F32_SIN_C0);
  const float sn = t * ps;
  float pc = fma_t(SOFTZO_ZO_F32_COS_C5, u, SOFTZO_ZO_F32_COS_C4);
  pc = fma_t(pc, u, SOFTZO_ZO_F32_COS_C3);
  pc = fma_t(pc, u, SOFTZO_ZO_F32_COS_C2);
  pc = fma_t(pc, u, SOFTZO_ZO_F32_COS_C1);
  const float cs = fma_t(pc, u, 1.0f);
  const bool swap = (q & 1) != 0;
  const float cq = swap ? sn : cs, sq = swap ? cs : sn;
  *zc = ((q + 1) & 2) != 0 ? -(r * cq) : r * cq;
  *zs = (q & 2) != 0 ? -(r * sq) : r * sq;
}

// Box-Muller, float64, from the 53-bit integers a (u1 = (a + 1) 2^-53) and b (u2 = b 2^-53).
inline void gauss_f64(uint64_t a, uint64_t b, double* zc, double* zs) {
  const double u1 = static_cast<double>(a + 1) * 0x1p-53;
  const uint64_t ix = bits_of(u1) + SOFTZO_ZO_F64_LOG_OFFSET;
  const double e = static_cast<double>(static_cast<int64_t>(ix >> 52) - 1023);
  const double m = double_of((ix & 0x000fffffffffffffull) + SOFTZO_ZO_F64_SQRTHALF_BITS);
  const double f = m - 1.0;
  const double s = f / (f + 2.0);
  const double hfsq = (f * 0.5) * f;
  const double z2 = s * s;
  double p = fma_t(SOFTZO_ZO_F64_LOG_C9, z2, SOFTZO_ZO_F64_LOG_C8);
  p = fma_t(p, z2, SOFTZO_ZO_F64_LOG_C7);
  p = fma_t(p, z2, SOFTZO_ZO_F64_LOG_C6);
  p = fma_t(p, z2, SOFTZO_ZO_F64_LOG_C5);
  p = fma_t(p, z2, SOFTZO_ZO_F64_LOG_C4);
  p = fma_t(p, z2, SOFTZO_ZO_F64_LOG_C3);
  p = fma_t(p, z2, SOFTZO_ZO_F64_LOG_C2);
  p = fma_t(p, z2, SOFTZO_ZO_F64_LOG_C1);
  const double lnm = f + fma_t(s, fma_t(z2, p, hfsq), -hfsq);
  const double ln = fma_t(e, SOFTZO_ZO_F64_LN2_HI, fma_t(e, SOFTZO_ZO_F64_LN2_LO, lnm));
  const double r = sqrt(ln * -2.0);

  const int64_t q = static_cast<int64_t>((b + (uint64_t{1} << 50)) >> 51);
  const double t = static_cast<double>(static_cast<int64_t>(b) - q * (int64_t{1} << 51)) * 0x1p-53;
  const double u = t * t;
  double ps = fma_t(SOFTZO_ZO_F64_SIN_C8, u, SOFTZO_ZO_F64_SIN_C7);
  ps = fma_t(ps, u, SOFTZO_ZO_F64_SIN_C6);
  ps = fma_t(ps, u, SOFTZO_ZO_F64_SIN_C5);
  ps = fma_t(ps, u, SOFTZO_ZO_F64_SIN_C4);
  ps = fma_t(ps, u, SOFTZO_ZO_F64_SIN_C3);
  ps = fma_t(ps, u, SOFTZO_ZO_F64_SIN_C2);
  ps = fma_t(ps, u, SOFTZO_ZO_F64_SIN_C1);
  ps = fma_t(ps, u, SOFTZO_ZO_F64_SIN_C0);
  const double sn = t * ps;
  double pc = fma_t(SOFTZO_ZO_F64_COS_C8, u, SOFTZO_ZO_F64_COS_C7);
  pc = fma_t(pc, u, SOFTZO_ZO_F64_COS_C6);
  pc = fma_t(pc, u, SOFTZO_ZO_F64_COS_C5);
  pc = fma_t(pc, u, SOFTZO_ZO_F64_COS_C4);
  pc = fma_t(pc, u, SOFTZO_ZO_F64_COS_C3);
  pc = fma_t(pc, u, SOFTZO_ZO_F64_COS_C2);
  pc = fma_t(pc, u, SOFTZO_ZO_F64_COS_C1);
  const double cs = fma_t(pc, u, 1.0);
  const bool swap = (q & 1) != 0;
  const double cq = swap ? sn : cs, sq = swap ? cs : sn;
  *zc = ((q + 1) & 2) != 0 ? -(r * cq) : r * cq;
  *zs = (q & 2) != 0 ? -(r * sq) : r * sq;
}

// BlackVIP's segmented draw: +-[0.5, 1), the product exact, the sum rounded to T.
template <typename T>
inline T segmented(uint32_t w) {
  const T mag =
      static_cast<T>((w & 0x7fffffffu) >> 7) * static_cast<T>(0x1p-25) + static_cast<T>(0.5);
  return (w >> 31) != 0 ? -mag : mag;
}

template <typename T>
struct Gauss;

template <>
struct Gauss<float> {
  static constexpr unsigned kPerBlock = 4;
  static void draw(const uint32_t w[4], float z[4]) {
    gauss_f32(w[0], w[1], z, z + 1);
    gauss_f32(w[2], w[3], z + 2, z + 3);
  }
};

template <>
struct Gauss<double> {
  static constexpr unsigned kPerBlock = 2;
  static void draw(const uint32_t w[4], double z[2]) {
    const uint64_t a = (static_cast<uint64_t>(w[0]) << 32 | w[1]) >> 11;
    const uint64_t b = (static_cast<uint64_t>(w[2]) << 32 | w[3]) >> 11;
    gauss_f64(a, b, z, z + 1);
  }
};

// Calls f.template at<kUnit>(i, z_{offset + i}) for i in [0, n), one Philox block at a time;
// kUnit says |z| == 1.
template <typename T, typename F>
void for_each_z(size_t n, uint64_t offset, const softzo_zo_stream* s, F& f) {
  const Stream st(s);
  uint32_t w[4];
  size_t i = 0;
  if (s->dist == SOFTZO_ZO_GAUSSIAN) {
    constexpr unsigned kE = Gauss<T>::kPerBlock;
    T z[4];
    while (i < n) {
      const uint64_t g = offset + i;
      st.block(g / kE, w);
      Gauss<T>::draw(w, z);
      for (unsigned j = static_cast<unsigned>(g % kE); j < kE && i < n; ++j, ++i) {
        f.template at<false>(i, z[j]);
      }
    }
  } else if (s->dist == SOFTZO_ZO_SEGMENTED) {
    while (i < n) {
      const uint64_t g = offset + i;
      st.block(g >> 2, w);
      for (unsigned j = static_cast<unsigned>(g & 3); j < 4 && i < n; ++j, ++i) {
        f.template at<false>(i, segmented<T>(w[j]));
      }
    }
  } else {
    while (i < n) {
      const uint64_t g = offset + i;
      st.block(g >> 7, w);
      for (unsigned j = static_cast<unsigned>(g & 127); j < 128 && i < n; ++j, ++i) {
        f.template at<true>(i, ((w[j >> 5] >> (j & 31)) & 1) != 0 ? T(1) : T(-1));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The operations on one element.

template <typename T>
struct Fill {
  T* y;
  template <bool kUnit>
  void at(size_t i, T z) {
    y[i] = z;
  }
};

template <typename T>
struct Axpy {
  T c;
  T* theta;
  template <bool kUnit>
  void at(size_t i, T z) {
    theta[i] = mad<kUnit>(c, z, theta[i]);
  }
};

template <typename T>
struct RestoreUpdate {
  T c_restore, decay, neg_step;
  T* theta;
  RestoreUpdate(T c_restore_, T lr, T g, T wd, T* theta_)
      : c_restore(c_restore_), decay(fma_t(-lr, wd, T(1))), neg_step(-(lr * g)), theta(theta_) {}
  template <bool kUnit>
  T update(T x, T z) const {
    return mad<kUnit>(neg_step, z, mad<kUnit>(c_restore, z, x) * decay);
  }
  template <bool kUnit>
  void at(size_t i, T z) {
    theta[i] = update<kUnit>(theta[i], z);
  }
};

// Applies `inner` where bit i of the mask is set.
template <typename T, typename Inner>
struct Masked {
  Inner inner;
  const uint32_t* mask;
  template <bool kUnit>
  void at(size_t i, T z) {
    if (((mask[i >> 5] >> (i & 31)) & 1) != 0) inner.template at<kUnit>(i, z);
  }
};

inline float sqrt_t(float x) { return sqrtf(x); }
inline double sqrt_t(double x) { return sqrt(x); }

// HiZOO's perturbation z / sqrt(sigma): IEEE division and square root, so every ISA agrees.
template <typename T>
struct AxpyDiag {
  T c;
  const T* sigma;
  T* theta;
  template <bool kUnit>
  void at(size_t i, T z) {
    theta[i] = fma_t(c, z / sqrt_t(sigma[i]), theta[i]);
  }
};

template <typename T>
struct HiZooUpdate {
  T c_restore, decay, neg_step, keep, gain;
  T* sigma;
  T* theta;
  HiZooUpdate(T c_restore_, T lr, T g, T wd, T keep_, T gain_, T* sigma_, T* theta_)
      : c_restore(c_restore_),
        decay(fma_t(-lr, wd, T(1))),
        neg_step(-(lr * g)),
        keep(keep_),
        gain(gain_),
        sigma(sigma_),
        theta(theta_) {}
  template <bool kUnit>
  void at(size_t i, T z) {
    const T s = sigma[i];
    const T t = fma_t(c_restore, z / sqrt_t(s), theta[i]);
    const T s2 = s * fma_t(gain, z * z, keep);
    sigma[i] = s2;
    theta[i] = fma_t(neg_step, z / sqrt_t(s2), t * decay);
  }
};

template <typename T>
void mask_build(size_t n, T threshold, const T* theta, uint32_t* mask) {
  for (size_t w = 0; w < (n + 31) / 32; ++w) {
    uint32_t bits = 0;
    const size_t end = n - 32 * w < 32 ? n - 32 * w : 32;
    for (size_t j = 0; j < end; ++j) {
      // fabs and an ordered compare: NaN takes no part.
      if (fabs(theta[32 * w + j]) <= threshold) bits |= uint32_t{1} << j;
    }
    mask[w] = bits;
  }
}

template <typename T>
struct SumSq {
  double sum = 0.0;
  template <bool kUnit>
  void at(size_t, T z) {
    sum += static_cast<double>(z) * static_cast<double>(z);
  }
};

template <typename T>
struct Dot {
  const T* v;
  double sum = 0.0;
  template <bool kUnit>
  void at(size_t i, T z) {
    sum += static_cast<double>(z) * static_cast<double>(v[i]);
  }
};

template <typename T>
double sumsq(size_t n, uint64_t offset, const softzo_zo_stream* s) {
  if (s->dist != SOFTZO_ZO_GAUSSIAN && s->dist != SOFTZO_ZO_SEGMENTED) {
    return static_cast<double>(n);
  }
  SumSq<T> op;
  for_each_z<T>(n, offset, s, op);
  return op.sum;
}

}  // namespace

#define SOFTZO_DEFINE_ZO_SCALAR(T, dt)                                                             \
  void softzo_##dt##_zo_fill_scalar(size_t n, uint64_t offset, const softzo_zo_stream* s, T* y) {  \
    Fill<T> op{y};                                                                                 \
    for_each_z<T>(n, offset, s, op);                                                               \
  }                                                                                                \
  void softzo_##dt##_zo_axpy_scalar(size_t n, uint64_t offset, const softzo_zo_stream* s, T c,     \
                                    T* theta) {                                                    \
    Axpy<T> op{c, theta};                                                                          \
    for_each_z<T>(n, offset, s, op);                                                               \
  }                                                                                                \
  void softzo_##dt##_zo_restore_update_scalar(size_t n, uint64_t offset,                           \
                                              const softzo_zo_stream* s, T c_restore, T lr, T g,   \
                                              T wd, T* theta) {                                    \
    RestoreUpdate<T> op(c_restore, lr, g, wd, theta);                                              \
    for_each_z<T>(n, offset, s, op);                                                               \
  }                                                                                                \
  void softzo_##dt##_zo_mask_build_scalar(size_t n, T threshold, const T* theta, uint32_t* mask) { \
    mask_build<T>(n, threshold, theta, mask);                                                      \
  }                                                                                                \
  void softzo_##dt##_zo_axpy_mask_scalar(size_t n, uint64_t offset, const softzo_zo_stream* s,     \
                                         T c, const uint32_t* mask, T* theta) {                    \
    Masked<T, Axpy<T>> op{Axpy<T>{c, theta}, mask};                                                \
    for_each_z<T>(n, offset, s, op);                                                               \
  }                                                                                                \
  void softzo_##dt##_zo_restore_update_mask_scalar(size_t n, uint64_t offset,                      \
                                                   const softzo_zo_stream* s, T c_restore, T lr,   \
                                                   T g, T wd, const uint32_t* mask, T* theta) {    \
    Masked<T, RestoreUpdate<T>> op{RestoreUpdate<T>(c_restore, lr, g, wd, theta), mask};           \
    for_each_z<T>(n, offset, s, op);                                                               \
  }                                                                                                \
  void softzo_##dt##_zo_axpy_diag_scalar(size_t n, uint64_t offset, const softzo_zo_stream* s,     \
                                         T c, const T* sigma, T* theta) {                          \
    AxpyDiag<T> op{c, sigma, theta};                                                               \
    for_each_z<T>(n, offset, s, op);                                                               \
  }                                                                                                \
  void softzo_##dt##_zo_hizoo_update_scalar(size_t n, uint64_t offset, const softzo_zo_stream* s,  \
                                            T c_restore, T lr, T g, T wd, T keep, T gain,          \
                                            T* sigma, T* theta) {                                  \
    HiZooUpdate<T> op(c_restore, lr, g, wd, keep, gain, sigma, theta);                             \
    for_each_z<T>(n, offset, s, op);                                                               \
  }                                                                                                \
  double softzo_##dt##_zo_sumsq_scalar(size_t n, uint64_t offset, const softzo_zo_stream* s) {     \
    return sumsq<T>(n, offset, s);                                                                 \
  }                                                                                                \
  double softzo_##dt##_zo_dot_scalar(size_t n, uint64_t offset, const softzo_zo_stream* s,         \
                                     const T* v) {                                                 \
    Dot<T> op{v};                                                                                  \
    for_each_z<T>(n, offset, s, op);                                                               \
    return op.sum;                                                                                 \
  }

extern "C" {
SOFTZO_DEFINE_ZO_SCALAR(float, f32)
SOFTZO_DEFINE_ZO_SCALAR(double, f64)

void softzo_philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]};
  philox10(c, key[0], key[1]);
  for (int i = 0; i < 4; ++i) out[i] = c[i];
}
}
