// Plain loops the compiler vectorises: what the memory system gives any kernel here.
#include "testing/stream.h"

#include <vector>

#include "common/thread_pool.h"

namespace softzo {
namespace testing {
namespace {
constexpr int64_t kChunk = int64_t{1} << 16;  // the softmax ops' chunk size
}

double stream_read(const float* x, int64_t n, int num_threads) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks);
  parallel_for(chunks, num_threads, [&](int64_t c) {
    const int64_t end = (c + 1) * kChunk < n ? (c + 1) * kChunk : n;
    float acc[16] = {};  // 16 independent sums so the adds do not serialise on latency
    int64_t i = c * kChunk;
    for (; i + 16 <= end; i += 16) {
      for (int j = 0; j < 16; ++j) acc[j] += x[i + j];
    }
    double s = 0;
    for (; i < end; ++i) s += x[i];
    for (float a : acc) s += a;
    partial[c] = s;
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

void stream_scale(const float* x, float* y, int64_t n, float s, int num_threads) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  parallel_for(chunks, num_threads, [&](int64_t c) {
    const int64_t end = (c + 1) * kChunk < n ? (c + 1) * kChunk : n;
    for (int64_t i = c * kChunk; i < end; ++i) y[i] = x[i] * s;
  });
}

}  // namespace testing
}  // namespace softzo
