// Device helpers shared by the CUDA kernel files: element loads and stores in float32, the
// scaled exp, deterministic block reductions, error checks and the device guard.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "softzo/cuda.h"

namespace softzo {
namespace cuda {

// ---- host side ----------------------------------------------------------------------------

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    throw std::runtime_error(std::string("softzo CUDA: ") + what + ": " + cudaGetErrorString(err));
  }
}

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Makes `device` current for the scope (kernels launch on the current device) and restores the
// caller's device after.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (device != previous_) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~DeviceGuard() { cudaSetDevice(previous_); }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
};

// A stream-ordered scratch buffer (cudaMallocAsync), freed in stream order.
class StreamBuffer {
 public:
  StreamBuffer(size_t bytes, cudaStream_t s) : stream_(s) {
    check(cudaMallocAsync(&ptr_, bytes ? bytes : 16, s), "cudaMallocAsync");
  }
  ~StreamBuffer() { cudaFreeAsync(ptr_, stream_); }
  StreamBuffer(const StreamBuffer&) = delete;
  StreamBuffer& operator=(const StreamBuffer&) = delete;
  template <typename T>
  T* as(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(ptr_) + byte_offset);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

// ---- elements -------------------------------------------------------------------------------

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_float<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// From double with one rounding where the type allows (float: cvt.rn; half types through
// float, whose extra rounding is far below half an ulp of the half type except in ties).
template <typename T>
__device__ __forceinline__ T from_double(double v) {
  return from_float<T>(static_cast<float>(v));
}

// ---- the scaled exp: exp(x) * 2^-e without rounding x - max ----------------------------------
//
// x is reduced itself (Cody-Waite with FMAs: exact for |x| <= 2^16 = SOFTZO_EXTEXP_LIMIT) and
// the power of two is applied exactly through the exponent bits, so the rounding of x - max
// (ulp(|x - max|)/2 of relative error, 1e-6 at |x - max| = 20) never enters, as in the CPU
// kernels (kernels/softmax/softmax_kernels.h). Results whose binary exponent would fall below
// -125 are flushed to 0 (CPU: SOFTZO_MIN_SCALED_F32), so no subnormal value is formed.

constexpr float kLog2eF = 1.44269504088896341f;
// ln 2 = kLn2HiF + kLn2LoF. With an FMA, x - n kLn2HiF is exact: both are multiples of 2^-24 and
// the difference is below 1/2.
constexpr float kLn2HiF = 0x1.62e430p-1f;
constexpr float kLn2LoF = -0x1.05c610p-29f;
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
constexpr int kRoundMagicBits = 0x4B400000;

// exp(r) for |r| <= ln2 / 2: Taylor to degree 7 (truncation r^8/8! < 5e-9 relative) by Horner
// with FMAs, about 1 ulp; used for float32 data.
__device__ __forceinline__ float exp_reduced_poly(float r) {
  float p = 1.0f / 5040.0f;
  p = fmaf(p, r, 1.0f / 720.0f);
  p = fmaf(p, r, 1.0f / 120.0f);
  p = fmaf(p, r, 1.0f / 24.0f);
  p = fmaf(p, r, 1.0f / 6.0f);
  p = fmaf(p, r, 0.5f);
  p = fmaf(p, r, 1.0f);
  return fmaf(p, r, 1.0f);
}

// exp(r) through the special-function unit (2 ulp): for float16/bfloat16 data, whose half-ulp
// is 2^13 / 2^16 float ulps, and whose bandwidth (2 bytes per element) would leave the FMA
// pipes short of the degree-7 polynomial.
__device__ __forceinline__ float exp_reduced_mufu(float r) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(r * kLog2eF));
  return y;
}

// The row's scale: e and the integer constant that turns t's bits into the exponent n - e.
struct Scale {
  float e;    // integral
  int shift;  // kRoundMagicBits + e
};

__device__ __forceinline__ Scale make_scale(double e) {
  return Scale{static_cast<float>(e), kRoundMagicBits + static_cast<int>(e)};
}

// exp(x) * 2^-e, 0 for x = -inf and where the result would fall below 2^-125. Needs
// x <= (e + 66) ln2 and the row max within +-SOFTZO_EXTEXP_LIMIT (then |n| < 2^22 wherever the
// result is kept, so t's bits hold n).
template <bool kPoly>
__device__ __forceinline__ float scaled_exp(float x, Scale s) {
  const float t = fmaf(x, kLog2eF, kRoundMagic);
  const float n = t - kRoundMagic;
  float r = fmaf(n, -kLn2HiF, x);
  r = fmaf(n, -kLn2LoF, r);
  const float p = kPoly ? exp_reduced_poly(r) : exp_reduced_mufu(r);
  const unsigned bits =
      (static_cast<unsigned>(__float_as_int(t)) - static_cast<unsigned>(s.shift) + 127u) << 23;
  return n - s.e < -125.0f ? 0.0f : p * __int_as_float(static_cast<int>(bits));
}

template <typename T>
struct IsFloat {
  static constexpr bool value = false;
};
template <>
struct IsFloat<float> {
  static constexpr bool value = true;
};

// ---- deterministic reductions over a block --------------------------------------------------
//
// A fixed shuffle tree inside each warp, then warp 0 over the warps' results: the same order
// on every run for a given block size.

constexpr int kMaxWarps = 32;

__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  return v;
}

// The sum over the block, returned to every thread. scratch: kMaxWarps doubles of shared memory.
__device__ __forceinline__ double block_sum(double v, double* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read from a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    double w = lane < warps ? scratch[lane] : 0.0;
    w = warp_sum(w);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  return scratch[0];
}

// (max, first index of the max, any NaN) of a block, returned to every thread. A larger value
// wins; equal values keep the smaller index, so the result is the row's first maximum.
struct MaxAt {
  float max;
  int64_t at;
  int nan;
};

__device__ __forceinline__ MaxAt combine(MaxAt a, MaxAt b) {
  MaxAt r;
  const bool take_b = b.max > a.max || (b.max == a.max && b.at < a.at);
  r.max = take_b ? b.max : a.max;
  r.at = take_b ? b.at : a.at;
  r.nan = a.nan | b.nan;
  return r;
}

__device__ __forceinline__ MaxAt warp_max(MaxAt v) {
  for (int o = 16; o > 0; o >>= 1) {
    MaxAt w;
    w.max = __shfl_down_sync(0xffffffffu, v.max, o);
    w.at = __shfl_down_sync(0xffffffffu, v.at, o);
    w.nan = __shfl_down_sync(0xffffffffu, v.nan, o);
    v = combine(v, w);
  }
  return v;
}

__device__ __forceinline__ MaxAt block_max(MaxAt v, MaxAt* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    MaxAt w = lane < warps ? scratch[lane] : MaxAt{-INFINITY, INT64_MAX, 0};
    w = warp_max(w);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  return scratch[0];
}

// ---- row visits: 16-byte loads in the aligned middle, scalar loads at the ends ---------------

template <typename T>
struct Vec16 {
  static constexpr int kWidth = 16 / sizeof(T);
  union {
    uint4 raw;
    T v[kWidth];
  };
};

// Calls f(i, value) for the elements i in [lo, hi) of x that this thread owns, in increasing
// i per thread (a thread's first maximum is then its first in row order), and done() after each
// 16-byte vector or single element: sums keep a float partial per vector and fold it into
// double there (one conversion per vector instead of per element).
template <typename T, typename F, typename D>
__device__ __forceinline__ void visit(const T* __restrict__ x, int64_t lo, int64_t hi, F&& f,
                                      D&& done) {
  constexpr int W = Vec16<T>::kWidth;
  const int64_t tid = threadIdx.x, step = blockDim.x;
  const uintptr_t addr = reinterpret_cast<uintptr_t>(x + lo);
  int64_t head = static_cast<int64_t>(((16 - (addr & 15)) & 15) / sizeof(T));
  if ((addr % sizeof(T)) != 0 || head > hi - lo) head = hi - lo;
  for (int64_t i = lo + tid; i < lo + head; i += step) {
    f(i, to_float(x[i]));
    done();
  }
  const int64_t start = lo + head;
  const int64_t vecs = (hi - start) / W;
  const uint4* xv = reinterpret_cast<const uint4*>(x + start);
  for (int64_t j = tid; j < vecs; j += step) {
    Vec16<T> v;
    v.raw = xv[j];
#pragma unroll
    for (int k = 0; k < W; ++k) f(start + j * W + k, to_float(v.v[k]));
    done();
  }
  for (int64_t i = start + vecs * W + tid; i < hi; i += step) {
    f(i, to_float(x[i]));
    done();
  }
}

// y[i] = f(i, x[i]) for i in [lo, hi): 16-byte accesses when x and y are equally aligned.
template <typename T, typename F>
__device__ __forceinline__ void transform(const T* x, T* y, int64_t lo, int64_t hi, F&& f) {
  constexpr int W = Vec16<T>::kWidth;
  const int64_t tid = threadIdx.x, step = blockDim.x;
  const uintptr_t ax = reinterpret_cast<uintptr_t>(x + lo),
                  ay = reinterpret_cast<uintptr_t>(y + lo);
  int64_t head = static_cast<int64_t>(((16 - (ax & 15)) & 15) / sizeof(T));
  const bool vec = (ax & 15) == (ay & 15) && (ax % sizeof(T)) == 0;
  if (!vec || head > hi - lo) head = hi - lo;
  for (int64_t i = lo + tid; i < lo + head; i += step) y[i] = from_float<T>(f(i, to_float(x[i])));
  const int64_t start = lo + head;
  const int64_t vecs = (hi - start) / W;
  const uint4* xv = reinterpret_cast<const uint4*>(x + start);
  uint4* yv = reinterpret_cast<uint4*>(y + start);
  for (int64_t j = tid; j < vecs; j += step) {
    Vec16<T> v;
    v.raw = xv[j];
#pragma unroll
    for (int k = 0; k < W; ++k) v.v[k] = from_float<T>(f(start + j * W + k, to_float(v.v[k])));
    yv[j] = v.raw;
  }
  for (int64_t i = start + vecs * W + tid; i < hi; i += step) {
    y[i] = from_float<T>(f(i, to_float(x[i])));
  }
}

}  // namespace cuda
}  // namespace softzo
