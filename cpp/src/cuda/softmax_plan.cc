// How the CUDA softmax family lays out a problem (plain C++: built and tested without a GPU).
#include <stdexcept>

#include "softzo/cuda.h"

namespace softzo {
namespace cuda {

namespace {
// Rows longer than this are split into chunks that separate blocks sum (the CPU's threshold).
constexpr int64_t kSplitThreshold = int64_t{1} << 18;
// 32K elements (128 KiB of float32) per chunk: two chunk blocks per multiprocessor keep about
// 34 MiB in flight on 132 multiprocessors, so a chunk's second read (the sum after the max)
// comes from the 50-60 MiB L2 rather than from memory.
constexpr int64_t kChunk = int64_t{1} << 15;
}  // namespace

SoftmaxPlan softmax_plan(int64_t rows, int64_t n) {
  if (rows < 0 || n < 0) throw std::invalid_argument("softzo: negative rows or n");
  SoftmaxPlan p;
  p.split = n > kSplitThreshold;
  if (p.split) {
    p.threads = 512;
    p.chunk = kChunk;
    p.chunks = (n + kChunk - 1) / kChunk;
  } else {
    // Enough threads that each holds a few 16-byte loads in flight, few enough that short rows
    // do not leave most of a block idle.
    p.threads = n <= 1024 ? 128 : (n <= 8192 ? 256 : 512);
    p.chunk = n;
    p.chunks = 1;
  }
  p.blocks = rows * p.chunks;
  return p;
}

}  // namespace cuda
}  // namespace softzo
