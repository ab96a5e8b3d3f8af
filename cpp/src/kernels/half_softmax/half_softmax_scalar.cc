// Scalar fused half-precision softmax sweeps: the header's definitions one element at a time,
// in natural order, the sum in double.
#include "kernels/half_softmax/half_softmax_kernels.h"

namespace {

void sweep(size_t n, softzo_half_sweep* s, int bf16) {
  const softzo_half_exp_row row = softzo_half_exp_setup(s->x ? s->max : 0.0f, bf16);
  softzo_half_sweep_acc acc = {INT16_MIN, INT16_MAX, 0.0};
  softzo_half_sweep_elements(0, n, s, &row, bf16, &acc);
  softzo_half_sweep_finish(s, bf16, &acc);
}

}  // namespace

extern "C" {

void softzo_half_bf16softmaxsweep_scalar(size_t n, softzo_half_sweep* s) { sweep(n, s, 1); }

void softzo_half_f16softmaxsweep_scalar(size_t n, softzo_half_sweep* s) { sweep(n, s, 0); }

}  // extern "C"
