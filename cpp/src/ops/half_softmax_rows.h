// float16 and bfloat16 softmax rows through the fused sweeps (kernels/half_softmax/): each
// sweep takes the range of row r + 1, the exps of row r into one of two float32 buffers, and
// the outputs of row r - 1 from the other, so a batch of rows costs one sweep per row plus one.
// Rows whose max is NaN or infinite (and rows of only -inf) leave the pipeline for the caller's
// exact path. Used by ops/softmax_ops.cc for contiguous rows of the three-pass reload
// algorithm (auto's choice for every row that is not split across threads).
#ifndef SOFTZO_OPS_HALF_SOFTMAX_ROWS_H_
#define SOFTZO_OPS_HALF_SOFTMAX_ROWS_H_

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "dispatch/dispatch.h"
#include "softzo/half.h"

namespace softzo {

// Softmax of rows [first, end) of length n >= 1: row_at(r, &x, &y) gives row r's contiguous
// input and output (y may be x), exact(r) computes a row the sweeps do not take.
template <typename S, typename RowAt, typename Exact>
void half_softmax_rows(int64_t first, int64_t end, int64_t n, RowAt&& row_at, Exact&& exact) {
  static_assert(std::is_same_v<S, float16> || std::is_same_v<S, bfloat16>);
  const HalfSoftmaxKernels& k = half_softmax_kernels();
  const auto sweep = std::is_same_v<S, bfloat16> ? k.bf16softmaxsweep : k.f16softmaxsweep;
  const size_t un = static_cast<size_t>(n);
  // Two buffers of n floats, each on a 64-byte boundary (whole cache lines for the stores).
  const size_t stride = (un + 15) / 16 * 16;
  thread_local std::vector<float> buffers;
  if (buffers.size() < 2 * stride + 16) buffers.resize(2 * stride + 16);
  float* base = buffers.data() + (16 - reinterpret_cast<uintptr_t>(buffers.data()) / 4 % 16) % 16;
  float* buf[2] = {base, base + stride};
  int which = 0;
  // Where min - max >= this, every term times the scale (>= 1 / n, the terms in
  // [2^(-1/32), 2^(1/32)] times exp(x_i - max)) is a normal float.
  const double normal_spread = std::log(static_cast<double>(FLT_MIN)) +
                               std::log(static_cast<double>(n)) + std::log(2.0) / 32 + 1e-4;
  auto bits = [](const S* p) -> const uint16_t* { return &p->bits; };

  softzo_half_sweep s{};
  const S* x;
  S* y;
  row_at(first, &x, &y);
  s.next = bits(x);
  sweep(un, &s);
  softzo_half_sweep pending{};  // the scale stage of the last row whose exps are buffered
  for (int64_t r = first; r < end; ++r) {
    const float max = s.next_max, min = s.next_min;
    row_at(r, &x, &y);
    s = pending;
    const bool fast = std::isfinite(max);
    if (!fast) exact(r);
    if (r + 1 < end) {
      const S* xn;
      S* yn;
      row_at(r + 1, &xn, &yn);
      s.next = bits(xn);
    }
    if (fast) {
      s.x = bits(x);
      s.max = max;
      s.flush = !(min - max >= -SOFTZO_HALF_EXP_FLUSH);
      s.buf = buf[which];
    }
    if (s.next || s.x || s.y) sweep(un, &s);
    pending = softzo_half_sweep{};
    if (fast) {
      pending.prev = buf[which];
      pending.y = &y->bits;
      pending.scale = static_cast<float>(1.0 / s.sum);  // the max's own term is >= 2^(-1/32)
      pending.flush_below = static_cast<float>(softzo_flush_threshold(FLT_MIN, pending.scale));
      pending.scale_flush = !(static_cast<double>(min) - max >= normal_spread);
      which ^= 1;
    }
  }
  if (pending.y) sweep(un, &pending);
}

}  // namespace softzo

#endif  // SOFTZO_OPS_HALF_SOFTMAX_ROWS_H_
