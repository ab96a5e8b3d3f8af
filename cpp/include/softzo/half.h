// Half-precision storage types for the softmax family and the losses: IEEE binary16 (float16)
// and bfloat16, held as their 16 bits. softzo never computes in them: each row is widened to
// float32 (exactly), computed by the float32 kernels, and the results are rounded back to the
// half type (round to nearest even; NaN and inf kept).
#ifndef SOFTZO_HALF_H_
#define SOFTZO_HALF_H_

#include <cstdint>

namespace softzo {

struct float16 {
  uint16_t bits;
};

struct bfloat16 {
  uint16_t bits;
};

static_assert(sizeof(float16) == 2 && sizeof(bfloat16) == 2, "half types are 16 bits");

// v rounded once to the half type (to nearest even; overflow to inf, NaN kept), and back
// (exactly).
float16 to_float16(double v);
bfloat16 to_bfloat16(double v);
double to_double(float16 h);
double to_double(bfloat16 h);

}  // namespace softzo

#endif  // SOFTZO_HALF_H_
