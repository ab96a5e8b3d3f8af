// The single-value conversions of softzo/half.h, on the same rules as the conversion kernels.
#include "softzo/half.h"

#include "kernels/convert/convert_kernels.h"
#include "ops/half_rows.h"

namespace softzo {

float16 to_float16(double v) { return from_double<float16>(v); }
bfloat16 to_bfloat16(double v) { return from_double<bfloat16>(v); }
double to_double(float16 h) { return static_cast<double>(softzo_f16_to_f32(h.bits)); }
double to_double(bfloat16 h) { return static_cast<double>(softzo_bf16_to_f32(h.bits)); }

}  // namespace softzo
