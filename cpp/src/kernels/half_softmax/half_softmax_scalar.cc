// Scalar fused half-precision softmax sweeps: the header's definitions one element at a time,
// in natural order, the sum in double.
#include "kernels/half_softmax/half_softmax_kernels.h"

namespace {

template <float (*kWiden)(uint16_t), uint16_t (*kNarrow)(float), int kCubic>
void sweep(size_t n, softzo_half_sweep* s) {
  const softzo_half_exp_row row = softzo_half_exp_setup(s->x ? s->max : 0.0f, !kCubic);
  int16_t hi = INT16_MIN, lo = INT16_MAX;
  double total = 0.0;
  for (size_t i = 0; i < n; ++i) {
    if (s->next) {
      const int16_t key = softzo_half_key(s->next[i]);
      hi = key > hi ? key : hi;
      lo = key < lo ? key : lo;
    }
    if (s->x) {
      const float e = softzo_half_exp(kWiden(s->x[i]), &row, kCubic);
      s->buf[i] = e;
      total += e;
    }
    if (s->y) {
      const float p = s->prev[i];
      s->y[i] = kNarrow(s->scale_flush && p < s->flush_below ? 0.0f : p * s->scale);
    }
  }
  if (s->next) {
    const float top = kWiden(softzo_half_from_key(hi)), bottom = kWiden(softzo_half_from_key(lo));
    s->next_max = top != top || bottom != bottom ? NAN : top;
    s->next_min = bottom;
  }
  if (s->x) s->sum = total;
}

}  // namespace

extern "C" {

void softzo_half_bf16softmaxsweep_scalar(size_t n, softzo_half_sweep* s) {
  sweep<softzo_bf16_to_f32, softzo_f32_to_bf16, 0>(n, s);
}

void softzo_half_f16softmaxsweep_scalar(size_t n, softzo_half_sweep* s) {
  sweep<softzo_f16_to_f32, softzo_f32_to_f16, 1>(n, s);
}

}  // extern "C"
