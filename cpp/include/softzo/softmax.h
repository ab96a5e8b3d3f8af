// softzo's softmax family on raw pointers: softmax, log_softmax and logsumexp over one axis.
//
// Semantics follow PyTorch, so softzo is a drop-in (per row):
//   some -inf, rest finite : softmax 0 there, log_softmax -inf there, logsumexp finite
//   all -inf               : softmax NaN (or 0 with AllMasked::kZero), log_softmax NaN,
//                            logsumexp -inf
//   any +inf               : softmax/log_softmax NaN row, logsumexp +inf (NaN if a NaN is there)
//   any NaN                : NaN row, logsumexp NaN
// Finite values, +-FLT_MAX included, give the float64 answer rounded to the output type within
// ~4 ulp (softmax, outputs >= 1e-30) or 1e-6 * max(1, |y|) absolute (log_softmax).
// Results are bitwise identical for any thread count. Rows longer than 2^18 elements are split
// into fixed chunks that threads share; indices are 64-bit throughout.
#ifndef SOFTZO_SOFTMAX_H_
#define SOFTZO_SOFTMAX_H_

#include <cstdint>

#include "softzo/half.h"

namespace softzo {

enum class SoftmaxAlgorithm {
  kAuto,                // picks by row length (see softmax_ops.cc and bench/results)
  kTwoPass,             // Dukhan & Ablavatski 2020: (mantissa, exponent) sums, 2 reads 1 write
  kThreePassReload,     // max; store exp and sum; scale in place: 1 exp per element
  kThreePassRecompute,  // max; sum of exp; exp again and scale: 2 exps, no re-read of y
  kOnline,              // Milakov & Gimelshein 2018: running (max, sum) in one read
};

enum class AllMasked { kNan, kZero };  // softmax of an all -inf row: PyTorch's NaN, or zeros

struct SoftmaxOptions {
  SoftmaxAlgorithm algorithm = SoftmaxAlgorithm::kAuto;
  AllMasked all_masked = AllMasked::kNan;
  int num_threads = 0;  // 0: default_num_threads()
};

// An n-dimensional strided view; strides count elements, not bytes, and may be negative or 0.
struct StridedLayout {
  int ndim = 0;
  const int64_t* shape = nullptr;
  const int64_t* x_strides = nullptr;
  const int64_t* y_strides = nullptr;  // ignored by logsumexp (it writes a contiguous result)
  int axis = 0;                        // 0 <= axis < ndim
};

// Contiguous rows: x and y hold rows * n elements; y may equal x (in place), and must not
// otherwise overlap it. Throws std::invalid_argument for negative sizes.
void softmax(const float* x, float* y, int64_t rows, int64_t n, const SoftmaxOptions& opt = {});
void softmax(const double* x, double* y, int64_t rows, int64_t n, const SoftmaxOptions& opt = {});
void log_softmax(const float* x, float* y, int64_t rows, int64_t n, const SoftmaxOptions& opt = {});
void log_softmax(const double* x, double* y, int64_t rows, int64_t n,
                 const SoftmaxOptions& opt = {});
// out[r] = log(sum_i exp(x[r*n + i])); -inf for n == 0.
void logsumexp(const float* x, float* out, int64_t rows, int64_t n, const SoftmaxOptions& opt = {});
void logsumexp(const double* x, double* out, int64_t rows, int64_t n,
               const SoftmaxOptions& opt = {});

// Any axis of any strided layout. Rows with a non-unit stride along the axis are gathered into
// a per-thread buffer. logsumexp writes rows in C order of the remaining dimensions.
void softmax(const float* x, float* y, const StridedLayout& layout, const SoftmaxOptions& opt = {});
void softmax(const double* x, double* y, const StridedLayout& layout,
             const SoftmaxOptions& opt = {});
void log_softmax(const float* x, float* y, const StridedLayout& layout,
                 const SoftmaxOptions& opt = {});
void log_softmax(const double* x, double* y, const StridedLayout& layout,
                 const SoftmaxOptions& opt = {});
void logsumexp(const float* x, float* out, const StridedLayout& layout,
               const SoftmaxOptions& opt = {});
void logsumexp(const double* x, double* out, const StridedLayout& layout,
               const SoftmaxOptions& opt = {});

// float16 and bfloat16 (softzo/half.h): the same ops, computed in float32. Each row is widened
// exactly into a per-thread float32 buffer and the results are rounded once to the half type
// (round to nearest even), so they are within 1 ulp of the half type of the exact answer.
#define SOFTZO_DECLARE_HALF_SOFTMAX(H)                                                             \
  void softmax(const H* x, H* y, int64_t rows, int64_t n, const SoftmaxOptions& opt = {});         \
  void log_softmax(const H* x, H* y, int64_t rows, int64_t n, const SoftmaxOptions& opt = {});     \
  void logsumexp(const H* x, H* out, int64_t rows, int64_t n, const SoftmaxOptions& opt = {});     \
  void softmax(const H* x, H* y, const StridedLayout& layout, const SoftmaxOptions& opt = {});     \
  void log_softmax(const H* x, H* y, const StridedLayout& layout, const SoftmaxOptions& opt = {}); \
  void logsumexp(const H* x, H* out, const StridedLayout& layout, const SoftmaxOptions& opt = {});
SOFTZO_DECLARE_HALF_SOFTMAX(float16)
SOFTZO_DECLARE_HALF_SOFTMAX(bfloat16)
#undef SOFTZO_DECLARE_HALF_SOFTMAX

enum class SoftmaxOp { kSoftmax, kLogSoftmax, kLogSumExp };

// The algorithm kAuto picks for op on rows of n elements of element_size bytes.
SoftmaxAlgorithm auto_algorithm(int64_t n, int element_size, SoftmaxOp op = SoftmaxOp::kSoftmax);

}  // namespace softzo

#endif  // SOFTZO_SOFTMAX_H_
