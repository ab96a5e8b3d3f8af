// Test hooks into individual kernels of a named ISA (not part of the public API).
#ifndef SOFTZO_TESTING_KERNEL_TESTING_H_
#define SOFTZO_TESTING_KERNEL_TESTING_H_

#include <cstddef>
#include <cstdint>
#include <string>

namespace softzo {
namespace testing {

// y = the ISA's exp kernel applied to x; false if the ISA is unavailable.
bool run_vexp(const std::string& isa, const float* x, float* y, size_t n);
bool run_vexp(const std::string& isa, const double* x, double* y, size_t n);

struct UlpReport {
  bool ok = false;
  double max_ulp = 0;
  float worst_input = 0;
  int64_t count = 0;
};

// Every float32 in [lo, hi] through the ISA's exp, against exp in double, on the thread pool.
// An error is measured in ulps of the float32 result (for results in the normal range).
UlpReport exp_f32_ulp_sweep(const std::string& isa, float lo, float hi);

// The calling thread's SSE/AVX floating-point status (MXCSR): the sticky exception flags
// (bit 1: a denormal operand was used, bit 4: a result underflowed), cleared by
// clear_fp_flags; set_flush_denormals turns FTZ and DAZ on or off. The tests use them to prove
// that no kernel forms or consumes a subnormal, and that results do not depend on FTZ/DAZ.
unsigned fp_flags();
void clear_fp_flags();
void set_flush_denormals(bool on);

}  // namespace testing
}  // namespace softzo

#endif  // SOFTZO_TESTING_KERNEL_TESTING_H_
