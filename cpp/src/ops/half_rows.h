// float16 and bfloat16 in the ops: every op computes in float32 (compute_t), and a half row is
// widened into a per-thread float32 buffer, run through the float32 pipeline there, and the
// results narrowed back (round to nearest even). Rows of float and double are used in place.
// Widening is exact, so a half op's only roundings beyond float32's are the final ones.
#ifndef SOFTZO_OPS_HALF_ROWS_H_
#define SOFTZO_OPS_HALF_ROWS_H_

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "common/thread_pool.h"
#include "dispatch/dispatch.h"
#include "softzo/half.h"

namespace softzo {

template <typename S>
struct ComputeType {
  using type = S;
};
template <>
struct ComputeType<float16> {
  using type = float;
};
template <>
struct ComputeType<bfloat16> {
  using type = float;
};
// The type an op on S computes in: S itself, or float for the half types.
template <typename S>
using compute_t = typename ComputeType<S>::type;
template <typename S>
constexpr bool kIsHalf = !std::is_same_v<S, compute_t<S>>;

// n half values widened to float, or float narrowed to half, on the current ISA's kernels.
inline void widen(const float16* x, float* y, int64_t n) {
  convert_kernels().f16tof32(static_cast<size_t>(n), &x->bits, y);
}
inline void widen(const bfloat16* x, float* y, int64_t n) {
  convert_kernels().bf16tof32(static_cast<size_t>(n), &x->bits, y);
}
inline void narrow(const float* x, float16* y, int64_t n) {
  convert_kernels().f32tof16(static_cast<size_t>(n), x, &y->bits);
}
inline void narrow(const float* x, bfloat16* y, int64_t n) {
  convert_kernels().f32tobf16(static_cast<size_t>(n), x, &y->bits);
}

// v rounded to float with round-to-odd: rounding that to a type with at least 2 fewer
// significand bits (float16: 13 fewer, bfloat16: 16) gives v correctly rounded, where plain
// double -> float -> half could round twice.
inline float round_to_odd_float(double v) {
  float f = static_cast<float>(v);
  if (std::isfinite(f) && static_cast<double>(f) != v) {
    uint32_t b = softzo_float_bits(f);
    if (std::fabs(static_cast<double>(f)) > std::fabs(v)) --b;  // toward zero (sign-magnitude)
    f = softzo_bits_float(b | 1u);
  }
  return f;
}

// A double result (a loss, a logsumexp) stored as S, rounded once.
template <typename S>
inline S from_double(double v) {
  if constexpr (std::is_same_v<S, float16>) {
    return float16{softzo_f32_to_f16(round_to_odd_float(v))};
  } else if constexpr (std::is_same_v<S, bfloat16>) {
    return bfloat16{softzo_f32_to_bf16(round_to_odd_float(v))};
  } else {
    return static_cast<S>(v);
  }
}

// Long rows are widened and narrowed by the pool in pieces of this many elements (the softmax
// ops' chunk), so a 64M-element half row is not converted on one thread.
constexpr int64_t kConvertChunk = int64_t{1} << 16;

template <typename F>
void convert_in_chunks(int64_t n, int threads, F&& f) {
  if (n <= 4 * kConvertChunk || threads <= 1) {
    f(0, n);
    return;
  }
  parallel_for((n + kConvertChunk - 1) / kConvertChunk, threads, [&](int64_t c) {
    const int64_t off = c * kConvertChunk;
    f(off, n - off < kConvertChunk ? n - off : kConvertChunk);
  });
}

// One row of S as compute_t<S> values: the row itself when it is contiguous float or double,
// else gathered (strided) and widened (half) into this object's buffer, and scattered back.
template <typename S>
class RowBuffer {
 public:
  using T = compute_t<S>;

  // The row x[0], x[step], ..., x[(n - 1) step] as n contiguous T values in this buffer
  // (contiguous float and double rows need none: callers use them in place).
  T* load(const S* x, int64_t n, int64_t step, int threads) {
    values_.resize(static_cast<size_t>(n));
    T* v = values_.data();
    if constexpr (!kIsHalf<S>) {
      for (int64_t i = 0; i < n; ++i) v[i] = x[i * step];
    } else if (step == 1) {
      convert_in_chunks(n, threads,
                        [&](int64_t off, int64_t len) { widen(x + off, v + off, len); });
    } else {
      widen(gather(x, n, step), v, n);
    }
    return v;
  }

  // The row x[0], x[step], ..., x[(n - 1) step] as n contiguous S values (this object's
  // staging), for kernels that read S itself; scatter writes them back to y[0], y[step], ....
  S* gather(const S* x, int64_t n, int64_t step) {
    staging_.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) staging_[i] = x[i * step];
    return staging_.data();
  }
  void scatter(S* y, int64_t n, int64_t step) const {
    for (int64_t i = 0; i < n; ++i) y[i * step] = staging_[i];
  }

  // Writes n values v (from load) to y[0], y[step], ... as S.
  void store(const T* v, S* y, int64_t n, int64_t step, int threads) {
    if constexpr (!kIsHalf<S>) {
      for (int64_t i = 0; i < n; ++i) y[i * step] = v[i];
    } else if (step == 1) {
      convert_in_chunks(n, threads,
                        [&](int64_t off, int64_t len) { narrow(v + off, y + off, len); });
    } else {
      staging_.resize(static_cast<size_t>(n));
      narrow(v, staging_.data(), n);
      scatter(y, n, step);
    }
  }

 private:
  std::vector<T> values_;
  std::vector<S> staging_;  // strided rows, contiguous
};

}  // namespace softzo

#endif  // SOFTZO_OPS_HALF_ROWS_H_
