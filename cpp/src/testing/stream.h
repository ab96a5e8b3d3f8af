// Streaming reference loops for the roofline that benchmarks report against.
#ifndef SOFTZO_TESTING_STREAM_H_
#define SOFTZO_TESTING_STREAM_H_

#include <cstdint>

namespace softzo {
namespace testing {

// One read pass (a sum, so the loads cannot be dropped), split like the softmax ops split rows.
double stream_read(const float* x, int64_t n, int num_threads);
// One read and one write pass: y = x * s.
void stream_scale(const float* x, float* y, int64_t n, float s, int num_threads);

}  // namespace testing
}  // namespace softzo

#endif  // SOFTZO_TESTING_STREAM_H_
