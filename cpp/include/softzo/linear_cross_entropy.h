// Fused linear layer + cross-entropy without the N x V logits (Cut Cross-Entropy, Wijmans et
// al. 2024, on the CPU): the loss of logits z = h W^T (+ bias) and its gradients with respect to
// h, W and the bias, computed over blocks of classes. Part of softzo::factored (it links the
// OpenBLAS of scipy-openblas32 for the block GEMMs).
//
// Per block of classes, one sgemm gives the block's logits for a chunk of rows into a buffer
// of at most 4M floats. The first sweep over the blocks builds each row's logsumexp as the
// extended-exponent sums of ops/exp_sums.h, merged block after block with the row max's own
// term kept apart. The second sweep recomputes each block's logits, turns them in place into
// dL/dz = g (softmax - target distribution) (times the soft cap's derivative) and feeds that
// straight to the two gradient GEMMs: grad_h += dz W_block, grad_W_block += dz^T h. Peak extra
// memory: the block buffer, O(N) row statistics, and for float16 / bfloat16 inputs float32
// copies of h and grad_h (N x d) and one block of W and grad_W (block x d); never N x V.
//
// Results do not depend on the thread count: blocks and chunks depend on the shape only, every
// row's statistics are merged in block order, and each GEMM is cut into slices fixed by its
// shape, each one single-threaded OpenBLAS call, shared by the library's pool.
#ifndef SOFTZO_LINEAR_CROSS_ENTROPY_H_
#define SOFTZO_LINEAR_CROSS_ENTROPY_H_

#include <cstdint>

#include "softzo/half.h"
#include "softzo/losses.h"

namespace softzo {

// T: float, float16 or bfloat16 (computed in float32, results rounded once to T).
template <typename T>
struct LinearCrossEntropyArgs {
  const T* h = nullptr;       // rows x dim, row-major, contiguous
  const T* weight = nullptr;  // classes x dim, row-major, contiguous
  const T* bias = nullptr;    // classes, or null
  int64_t rows = 0, dim = 0, classes = 0;
  const int64_t* target = nullptr;  // rows: class indices in [0, classes) or ignore_index
  int64_t ignore_index = -100;      // those rows: loss 0, gradient 0, not counted in the mean
  double label_smoothing = 0.0;     // in [0, 1], spread over all classes as in PyTorch
  double softcap = 0.0;             // > 0: logits c tanh(z / c) (Gemma 2); 0: none
  Reduction reduction = Reduction::kMean;
  // > 0: Cut Cross-Entropy's gradient filtering: blocks of 128 rows x one class block whose
  // |softmax - target| entries are all below grad_filter (and hold no target) are left out of
  // the gradient GEMMs. 0 (the default): exact.
  double grad_filter = 0.0;
  // Optional per-row weights of the gradient: the gradients are those of
  // sum_r row_scale[r] loss_r (reduction kNone), or of row_scale-weighted mean / sum.
  const float* row_scale = nullptr;
  T* grad_h = nullptr;       // rows x dim, or null
  T* grad_weight = nullptr;  // classes x dim, or null (with grad_h: both or neither)
  T* grad_bias = nullptr;    // classes, or null
  T* row_loss = nullptr;     // rows; required for kNone
  int num_threads = 0;       // 0: the library default (OpenBLAS runs on 1 thread per slice)
};

// Returns the reduced loss (kMean: over rows whose target is not ignore_index, NaN if there are
// none, as PyTorch; 0 for kNone, whose losses go to row_loss). Rows whose logits hold NaN or
// +inf get a NaN loss and gradient, as in PyTorch; rows whose logits exceed the scaled kernels'
// range (|z| > 65536) take an exact scalar path. Throws std::invalid_argument (nothing written)
// for bad shapes or options, targets out of range, or non-finite values in h.
double linear_cross_entropy(const LinearCrossEntropyArgs<float>& args);
double linear_cross_entropy(const LinearCrossEntropyArgs<float16>& args);
double linear_cross_entropy(const LinearCrossEntropyArgs<bfloat16>& args);

}  // namespace softzo

#endif  // SOFTZO_LINEAR_CROSS_ENTROPY_H_
