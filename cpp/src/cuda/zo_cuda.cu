// The zeroth-order perturbation engine on CUDA: z regenerated from Philox4x32-10 keyed by the
// seed, counter (block, direction, step), exactly as kernels/zo/zo_scalar.cc draws it, applied
// to float32 / float64 parameters in place (perturb, the fused restore-and-update, Sparse MeZO's
// mask, float16 / bfloat16 publishing of a float32 master).
//
// Bit-identity with the CPU: every operation of zo_scalar.cc is repeated in the same order,
// products that are added written as explicit fmaf / fma, IEEE division and square root
// (nvcc's defaults), and this file is compiled with -fmad=false so that no other product and
// sum are contracted. Rademacher and segmented z are therefore the CPU's bit for bit; Gaussian z
// is too by construction, and the tests bound its difference (see tests/test_cuda.py).
//
// Each thread owns one aligned quad of global indices [4q, 4q + 4): one Philox block for
// Gaussian float32 and segmented z, two for Gaussian float64, and its 4 bits of a block shared
// by 32 threads for Rademacher z.
#include <cstdint>

#include "cuda/cuda_common.cuh"
#include "kernels/zo/zo_kernels.h"

namespace softzo {
namespace cuda {
namespace {

struct Stream {
  uint32_t k0, k1, direction, step;
};

__device__ __forceinline__ void philox10(uint32_t c[4], uint32_t k0, uint32_t k1) {
#pragma unroll
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += SOFTZO_PHILOX_W0;
      k1 += SOFTZO_PHILOX_W1;
    }
    const uint32_t lo0 = SOFTZO_PHILOX_M0 * c[0], hi0 = __umulhi(SOFTZO_PHILOX_M0, c[0]);
    const uint32_t lo1 = SOFTZO_PHILOX_M1 * c[2], hi1 = __umulhi(SOFTZO_PHILOX_M1, c[2]);
    const uint32_t n0 = hi1 ^ c[1] ^ k0;
    const uint32_t n2 = hi0 ^ c[3] ^ k1;
    c[1] = lo1;
    c[3] = lo0;
    c[0] = n0;
    c[2] = n2;
  }
}

__device__ __forceinline__ void block_words(const Stream& s, uint64_t b, uint32_t w[4]) {
  w[0] = static_cast<uint32_t>(b);
  w[1] = static_cast<uint32_t>(b >> 32);
  w[2] = s.direction;
  w[3] = s.step;
  philox10(w, s.k0, s.k1);
}

// Box-Muller, float32 (zo_scalar.cc's gauss_f32, operation for operation).
__device__ __forceinline__ void gauss_f32(uint32_t wa, uint32_t wb, float* zc, float* zs) {
  const float u1 = static_cast<float>((wa >> 8) + 1) * 0x1p-24f;
  const uint32_t ix = static_cast<uint32_t>(__float_as_int(u1)) + SOFTZO_ZO_F32_LOG_OFFSET;
  const float e = static_cast<float>(static_cast<int32_t>(ix >> 23) - 127);
  const float m =
      __int_as_float(static_cast<int>((ix & 0x007fffffu) + SOFTZO_ZO_F32_SQRTHALF_BITS));
  const float f = m - 1.0f;
  const float s = f / (f + 2.0f);
  const float hfsq = (f * 0.5f) * f;
  const float z2 = s * s;
  float p = fmaf(SOFTZO_ZO_F32_LOG_C4, z2, SOFTZO_ZO_F32_LOG_C3);
  p = fmaf(p, z2, SOFTZO_ZO_F32_LOG_C2);
  p = fmaf(p, z2, SOFTZO_ZO_F32_LOG_C1);
  const float lnm = f + fmaf(s, fmaf(z2, p, hfsq), -hfsq);
  const float ln = fmaf(e, SOFTZO_ZO_F32_LN2_HI, fmaf(e, SOFTZO_ZO_F32_LN2_LO, lnm));
  const float r = sqrtf(ln * -2.0f);

  const int32_t k = static_cast<int32_t>(wb >> 8);
  const int32_t q = (k + (1 << 21)) >> 22;
  const float t = static_cast<float>(k - q * (1 << 22)) * 0x1p-24f;
  const float u = t * t;
  float ps = fmaf(SOFTZO_ZO_F32_SIN_C4, u, SOFTZO_ZO_F32_SIN_C3);
  ps = fmaf(ps, u, SOFTZO_ZO_F32_SIN_C2);
  ps = fmaf(ps, u, SOFTZO_ZO_F32_SIN_C1);
  ps = fmaf(ps, u, SOFTZO_ZO_F32_SIN_C0);
  const float sn = t * ps;
  float pc = fmaf(SOFTZO_ZO_F32_COS_C5, u, SOFTZO_ZO_F32_COS_C4);
  pc = fmaf(pc, u, SOFTZO_ZO_F32_COS_C3);
  pc = fmaf(pc, u, SOFTZO_ZO_F32_COS_C2);
  pc = fmaf(pc, u, SOFTZO_ZO_F32_COS_C1);
  const float cs = fmaf(pc, u, 1.0f);
  const bool swap = (q & 1) != 0;
  const float cq = swap ? sn : cs, sq = swap ? cs : sn;
  *zc = ((q + 1) & 2) != 0 ? -(r * cq) : r * cq;
  *zs = (q & 2) != 0 ? -(r * sq) : r * sq;
}

// Box-Muller, float64 (zo_scalar.cc's gauss_f64).
__device__ __forceinline__ void gauss_f64(uint64_t a, uint64_t b, double* zc, double* zs) {
  const double u1 = static_cast<double>(a + 1) * 0x1p-53;
  const uint64_t ix = static_cast<uint64_t>(__double_as_longlong(u1)) + SOFTZO_ZO_F64_LOG_OFFSET;
  const double e = static_cast<double>(static_cast<int64_t>(ix >> 52) - 1023);
  const double m = __longlong_as_double(
      static_cast<long long>((ix & 0x000fffffffffffffull) + SOFTZO_ZO_F64_SQRTHALF_BITS));
  const double f = m - 1.0;
  const double s = f / (f + 2.0);
  const double hfsq = (f * 0.5) * f;
  const double z2 = s * s;
  double p = fma(SOFTZO_ZO_F64_LOG_C9, z2, SOFTZO_ZO_F64_LOG_C8);
  p = fma(p, z2, SOFTZO_ZO_F64_LOG_C7);
  p = fma(p, z2, SOFTZO_ZO_F64_LOG_C6);
  p = fma(p, z2, SOFTZO_ZO_F64_LOG_C5);
  p = fma(p, z2, SOFTZO_ZO_F64_LOG_C4);
  p = fma(p, z2, SOFTZO_ZO_F64_LOG_C3);
  p = fma(p, z2, SOFTZO_ZO_F64_LOG_C2);
  p = fma(p, z2, SOFTZO_ZO_F64_LOG_C1);
  const double lnm = f + fma(s, fma(z2, p, hfsq), -hfsq);
  const double ln = fma(e, SOFTZO_ZO_F64_LN2_HI, fma(e, SOFTZO_ZO_F64_LN2_LO, lnm));
  const double r = sqrt(ln * -2.0);

  const int64_t q = static_cast<int64_t>((b + (uint64_t{1} << 50)) >> 51);
  const double t = static_cast<double>(static_cast<int64_t>(b) - q * (int64_t{1} << 51)) * 0x1p-53;
  const double u = t * t;
  double ps = fma(SOFTZO_ZO_F64_SIN_C8, u, SOFTZO_ZO_F64_SIN_C7);
  ps = fma(ps, u, SOFTZO_ZO_F64_SIN_C6);
  ps = fma(ps, u, SOFTZO_ZO_F64_SIN_C5);
  ps = fma(ps, u, SOFTZO_ZO_F64_SIN_C4);
  ps = fma(ps, u, SOFTZO_ZO_F64_SIN_C3);
  ps = fma(ps, u, SOFTZO_ZO_F64_SIN_C2);
  ps = fma(ps, u, SOFTZO_ZO_F64_SIN_C1);
  ps = fma(ps, u, SOFTZO_ZO_F64_SIN_C0);
  const double sn = t * ps;
  double pc = fma(SOFTZO_ZO_F64_COS_C8, u, SOFTZO_ZO_F64_COS_C7);
  pc = fma(pc, u, SOFTZO_ZO_F64_COS_C6);
  pc = fma(pc, u, SOFTZO_ZO_F64_COS_C5);
  pc = fma(pc, u, SOFTZO_ZO_F64_COS_C4);
  pc = fma(pc, u, SOFTZO_ZO_F64_COS_C3);
  pc = fma(pc, u, SOFTZO_ZO_F64_COS_C2);
  pc = fma(pc, u, SOFTZO_ZO_F64_COS_C1);
  const double cs = fma(pc, u, 1.0);
  const bool swap = (q & 1) != 0;
  const double cq = swap ? sn : cs, sq = swap ? cs : sn;
  *zc = ((q + 1) & 2) != 0 ? -(r * cq) : r * cq;
  *zs = (q & 2) != 0 ? -(r * sq) : r * sq;
}

template <typename T>
__device__ __forceinline__ T segmented(uint32_t w) {
  const T mag =
      static_cast<T>((w & 0x7fffffffu) >> 7) * static_cast<T>(0x1p-25) + static_cast<T>(0.5);
  return (w >> 31) != 0 ? -mag : mag;
}

__device__ __forceinline__ float fma_t(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fma_t(double a, double b, double c) { return fma(a, b, c); }

// z for the quad [4q, 4q + 4).
template <typename T>
__device__ __forceinline__ void quad_z(const Stream& s, int dist, uint64_t q, T z[4]) {
  uint32_t w[4];
  if (dist == SOFTZO_ZO_GAUSSIAN) {
    if (sizeof(T) == 4) {
      block_words(s, q, w);
      float zf[4];
      gauss_f32(w[0], w[1], zf, zf + 1);
      gauss_f32(w[2], w[3], zf + 2, zf + 3);
#pragma unroll
      for (int k = 0; k < 4; ++k) z[k] = static_cast<T>(zf[k]);
    } else {
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        block_words(s, 2 * q + h, w);
        const uint64_t a = (static_cast<uint64_t>(w[0]) << 32 | w[1]) >> 11;
        const uint64_t b = (static_cast<uint64_t>(w[2]) << 32 | w[3]) >> 11;
        double zc, zs;
        gauss_f64(a, b, &zc, &zs);
        z[2 * h] = static_cast<T>(zc);
        z[2 * h + 1] = static_cast<T>(zs);
      }
    }
  } else if (dist == SOFTZO_ZO_SEGMENTED) {
    block_words(s, q, w);
#pragma unroll
    for (int k = 0; k < 4; ++k) z[k] = segmented<T>(w[k]);
  } else {  // Rademacher: block g >> 7, bit g & 31 of word (g & 127) >> 5
    block_words(s, q >> 5, w);
    const uint32_t word = w[(q >> 3) & 3];
    const unsigned shift = static_cast<unsigned>((q & 7) * 4);
#pragma unroll
    for (int k = 0; k < 4; ++k) z[k] = ((word >> (shift + k)) & 1u) != 0 ? T(1) : T(-1);
  }
}

enum Op : int { kFill = 0, kAxpy = 1, kRestoreUpdate = 2, kHizooPerturb = 3, kHizooUpdate = 4 };

template <typename T>
struct Args {
  Stream stream;
  int dist;
  uint64_t offset;
  int64_t n;
  T* theta;  // or fill's output
  T* sigma;
  uint32_t* mask;
  float build_threshold;  // >= 0: build the mask bits first (as T below)
  T threshold;
  T c, decay, neg_step, keep, gain;
  void* publish;  // float16 / bfloat16 rounding of float32 theta
  int publish_dt;
};

template <typename P>
__device__ __forceinline__ void store_rounded(void* out, int64_t i, float v) {
  static_cast<P*>(out)[i] = from_float<P>(v);
}

template <typename T, int kOp>
__global__ void zo_kernel(Args<T> a) {
  const uint64_t first_quad = a.offset >> 2;
  const uint64_t quads = ((a.offset + static_cast<uint64_t>(a.n) - 1) >> 2) - first_quad + 1;
  for (uint64_t qi = blockIdx.x * uint64_t{blockDim.x} + threadIdx.x; qi < quads;
       qi += uint64_t{gridDim.x} * blockDim.x) {
    const uint64_t q = first_quad + qi;
    T z[4];
    quad_z<T>(a.stream, a.dist, q, z);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const uint64_t g = 4 * q + k;
      if (g < a.offset || g >= a.offset + static_cast<uint64_t>(a.n)) continue;
      const int64_t i = static_cast<int64_t>(g - a.offset);
      if (kOp == kFill) {
        a.theta[i] = z[k];
        continue;
      }
      const T x = a.theta[i];
      if (a.mask) {
        const uint32_t bit = 1u << (i & 31);
        if (a.build_threshold >= 0.0f) {
          // Sparse MeZO's mask from the unperturbed theta (fabs and an ordered compare: NaN
          // takes no part). The words were zeroed first; OR is the same in any order.
          if (fabs(x) <= a.threshold) atomicOr(a.mask + (i >> 5), bit);
          if (!(fabs(x) <= a.threshold)) {
            if (a.publish) {
              if (a.publish_dt == static_cast<int>(DType::kFloat16)) {
                store_rounded<__half>(a.publish, i, static_cast<float>(x));
              } else {
                store_rounded<__nv_bfloat16>(a.publish, i, static_cast<float>(x));
              }
            }
            continue;
          }
        } else if ((a.mask[i >> 5] & bit) == 0) {
          if (a.publish) {
            if (a.publish_dt == static_cast<int>(DType::kFloat16)) {
              store_rounded<__half>(a.publish, i, static_cast<float>(x));
            } else {
              store_rounded<__nv_bfloat16>(a.publish, i, static_cast<float>(x));
            }
          }
          continue;
        }
      }
      T v;
      if (kOp == kAxpy) {
        v = fma_t(a.c, z[k], x);
      } else if (kOp == kRestoreUpdate) {
        v = fma_t(a.neg_step, z[k], fma_t(a.c, z[k], x) * a.decay);
      } else if (kOp == kHizooPerturb) {
        v = fma_t(a.c, z[k] / sqrt(a.sigma[i]), x);
      } else {  // kHizooUpdate
        const T s = a.sigma[i];
        const T t = fma_t(a.c, z[k] / sqrt(s), x);
        const T s2 = s * fma_t(a.gain, z[k] * z[k], a.keep);
        a.sigma[i] = s2;
        v = fma_t(a.neg_step, z[k] / sqrt(s2), t * a.decay);
      }
      if (a.publish) {
        // A perturbation leaves the master alone and shows round(master + c z); an update
        // moves the master and shows round(master).
        if (kOp == kRestoreUpdate) a.theta[i] = v;
        if (a.publish_dt == static_cast<int>(DType::kFloat16)) {
          store_rounded<__half>(a.publish, i, static_cast<float>(v));
        } else {
          store_rounded<__nv_bfloat16>(a.publish, i, static_cast<float>(v));
        }
      } else {
        a.theta[i] = v;
      }
    }
  }
}

Stream stream_of(const ZoDirection& d) {
  return Stream{static_cast<uint32_t>(d.seed), static_cast<uint32_t>(d.seed >> 32), d.direction,
                d.step};
}

template <typename T, int kOp>
void launch(const Args<T>& a, cudaStream_t s) {
  if (a.n <= 0) return;
  const uint64_t quads = ((a.offset + static_cast<uint64_t>(a.n) - 1) >> 2) - (a.offset >> 2) + 1;
  const int threads = 256;
  // A grid-stride loop over at most 2^16 blocks: enough to fill any GPU several times over.
  const uint64_t want = (quads + threads - 1) / threads;
  const unsigned blocks = static_cast<unsigned>(want < 65536 ? want : 65536);
  zo_kernel<T, kOp><<<blocks, threads, 0, s>>>(a);
  check_launch("zo_kernel");
}

template <typename T>
Args<T> base_args(const ZoDirection& d, uint64_t offset, int64_t n, void* theta) {
  Args<T> a{};
  a.stream = stream_of(d);
  a.dist = static_cast<int>(d.dist);
  if (a.dist != SOFTZO_ZO_GAUSSIAN && a.dist != SOFTZO_ZO_SEGMENTED) a.dist = SOFTZO_ZO_RADEMACHER;
  a.offset = offset;
  a.n = n;
  a.theta = static_cast<T*>(theta);
  a.build_threshold = -1.0f;
  return a;
}

// decay = fma(-lr, wd, 1) and step = lr * g in T, once per call (zo_scalar.cc's RestoreUpdate).
template <typename T>
void set_update(Args<T>* a, double lr, double g, double wd) {
  const T tl = static_cast<T>(lr), tg = static_cast<T>(g), tw = static_cast<T>(wd);
  a->decay = std::fma(-tl, tw, T(1));
  a->neg_step = -(tl * tg);
}

template <typename T>
void move(const ZoMove& m, cudaStream_t s) {
  Args<T> a = base_args<T>(m.direction, m.offset, m.n, m.theta);
  a.c = static_cast<T>(m.c_restore);
  a.mask = m.mask;
  a.publish = m.publish;
  a.publish_dt = static_cast<int>(m.publish_dt);
  if (m.mask && m.build_threshold >= 0.0) {
    a.build_threshold = 0.0f;
    a.threshold = static_cast<T>(m.build_threshold);
    check(cudaMemsetAsync(m.mask, 0, sizeof(uint32_t) * ((m.n + 31) / 32), s), "zeroing the mask");
  }
  if (m.lr == 0.0 && m.wd == 0.0) {  // the CPU binding's zo_perturb
    launch<T, kAxpy>(a, s);
  } else {
    if (a.build_threshold >= 0.0f) {
      throw std::invalid_argument("softzo: zo_restore_update cannot build a mask; zo_perturb does");
    }
    set_update(&a, m.lr, m.g, m.wd);
    launch<T, kRestoreUpdate>(a, s);
  }
}

template <typename T>
void hizoo(const ZoHizoo& h, cudaStream_t s) {
  Args<T> a = base_args<T>(h.direction, h.offset, h.n, h.theta);
  a.sigma = static_cast<T*>(h.sigma);
  a.c = static_cast<T>(h.c_restore);
  if (!h.update) {
    launch<T, kHizooPerturb>(a, s);
    return;
  }
  set_update(&a, h.lr, h.g, h.wd);
  a.keep = static_cast<T>(h.keep);
  a.gain = static_cast<T>(h.gain);
  launch<T, kHizooUpdate>(a, s);
}

void check_dtype(DType dt) {
  if (dt != DType::kFloat32 && dt != DType::kFloat64) {
    throw std::invalid_argument("softzo CUDA: zeroth-order parameters must be float32 or float64");
  }
}

}  // namespace

void zo_move(const ZoMove& m) {
  check_dtype(m.dt);
  if (m.n < 0) throw std::invalid_argument("softzo: negative length");
  if (m.publish && m.dt != DType::kFloat32) {
    throw std::invalid_argument("softzo CUDA: a published tensor needs a float32 master");
  }
  DeviceGuard guard(m.device);
  if (m.dt == DType::kFloat32) {
    move<float>(m, as_stream(m.stream));
  } else {
    move<double>(m, as_stream(m.stream));
  }
}

void zo_fill(const ZoDirection& d, uint64_t offset, DType dt, void* out, int64_t n, int device,
             void* stream) {
  check_dtype(dt);
  DeviceGuard guard(device);
  if (dt == DType::kFloat32) {
    launch<float, kFill>(base_args<float>(d, offset, n, out), as_stream(stream));
  } else {
    launch<double, kFill>(base_args<double>(d, offset, n, out), as_stream(stream));
  }
}

void zo_hizoo(const ZoHizoo& h) {
  check_dtype(h.dt);
  DeviceGuard guard(h.device);
  if (h.dt == DType::kFloat32) {
    hizoo<float>(h, as_stream(h.stream));
  } else {
    hizoo<double>(h, as_stream(h.stream));
  }
}

}  // namespace cuda
}  // namespace softzo
