// Fused classification losses on raw row-major pointers: cross-entropy (hard or soft targets,
// class weights, ignored rows, label smoothing, PaLM's lse² term, comp-sum), the Z-loss and the
// spherical family, StableMax, KL divergence for distillation, and HL-Gauss targets.
//
// Every loss reads the logits in at most two passes per row (one for logsumexp, one that
// writes the gradient and the target terms) and never stores N x V intermediates. Rows are
// shared by the library's thread pool; per-row results are combined in row order, so every bit
// of the output is independent of the thread count. Row strides are in elements; the class
// axis must be contiguous. Errors (a target out of range, non-finite soft targets) throw
// std::invalid_argument before anything is written.
#ifndef SOFTZO_LOSSES_H_
#define SOFTZO_LOSSES_H_

#include <cstdint>

#include "softzo/half.h"

namespace softzo {

enum class Reduction { kNone, kSum, kMean };

template <typename T>
struct CrossEntropyArgs {
  const T* logits = nullptr;  // rows x classes, row stride logits_stride
  int64_t rows = 0, classes = 0, logits_stride = 0;
  // Either class indices (rows) ...
  const int64_t* target = nullptr;
  int64_t ignore_index = -100;  // rows with this target: loss 0, gradient 0, not counted
  // ... or soft targets (rows x classes, row stride soft_stride), any finite values.
  const T* soft_target = nullptr;
  int64_t soft_stride = 0;
  const T* weight = nullptr;  // per-class weights (classes), or null
  double label_smoothing = 0.0;
  double lse_square_scale = 0.0;  // PaLM's auxiliary lambda * lse^2 (not the Z-loss)
  // Comp-sum exponent (Mao, Mohri & Zhong 2023): the row loss becomes Phi^tau(1 / p_t);
  // 1 is cross-entropy. Only with class indices, without weights or label smoothing.
  double tau = 1.0;
  Reduction reduction = Reduction::kMean;
  // Optional outputs. grad (row stride grad_stride) may be logits itself (written in place);
  // it receives the gradient of the returned loss (for kNone: of the sum of row losses).
  T* grad = nullptr;
  int64_t grad_stride = 0;
  T* lse = nullptr;       // rows
  T* row_loss = nullptr;  // rows; required for kNone
  int num_threads = 0;    // 0: the library default
};

// PyTorch's F.cross_entropy semantics (weighted mean over non-ignored rows, label smoothing
// spread over all classes, soft-target mean over rows); lse_square_scale adds lambda * lse^2
// per counted row, unweighted, averaged over counted rows. Returns the reduced loss
// (0 for kNone, whose losses go to row_loss).
double cross_entropy(const CrossEntropyArgs<float>& args);
double cross_entropy(const CrossEntropyArgs<double>& args);
// float16 / bfloat16 logits (and soft targets, weights, outputs of that type), computed in float32:
// each row is widened exactly, and the gradient, lse and row losses are rounded once to the
// half type. The returned loss is a double; round it to the half type for PyTorch's result.
double cross_entropy(const CrossEntropyArgs<float16>& args);
double cross_entropy(const CrossEntropyArgs<bfloat16>& args);

// Per-row losses that depend on the row only through a few statistics (de Brebisson &
// Vincent's spherical family), for outputs o (rows x classes) and class-index targets.
enum class SphericalKind { kZLoss, kLogSpherical, kLogTaylor, kMse };

template <typename T>
struct SphericalLossArgs {
  const T* outputs = nullptr;
  int64_t rows = 0, classes = 0, stride = 0;
  const int64_t* target = nullptr;
  SphericalKind kind = SphericalKind::kZLoss;
  double a = 1.0, b = 0.0;  // Z-loss: softplus(a (b - z_c)) / a
  double eps = 1e-6;        // log-spherical: o^2 + eps
  Reduction reduction = Reduction::kMean;
  T* grad = nullptr;  // may be outputs itself
  int64_t grad_stride = 0;
  T* row_loss = nullptr;
  int num_threads = 0;
};
double spherical_loss(const SphericalLossArgs<float>& args);
double spherical_loss(const SphericalLossArgs<double>& args);
double spherical_loss(const SphericalLossArgs<float16>& args);  // computed in float32
double spherical_loss(const SphericalLossArgs<bfloat16>& args);

// Row-wise normalisations y = f(x) / sum f(x) (y may be x): spherical softmax f = x^2 + eps,
// Taylor softmax f = 1 + x + x^2 / 2, StableMax f = s(x) (x + 1 above 0, 1 / (1 - x) below).
enum class Normalizer { kSpherical, kTaylor, kStableMax };
template <typename T>
void normalize_rows(Normalizer kind, const T* x, int64_t x_stride, T* y, int64_t y_stride,
                    int64_t rows, int64_t n, double eps, int num_threads);

// StableMax cross-entropy (Prieto et al. 2025): -log(s(x_t) / sum s(x)).
template <typename T>
double stablemax_cross_entropy(const T* logits, int64_t rows, int64_t classes, int64_t stride,
                               const int64_t* target, Reduction reduction, T* grad,
                               int64_t grad_stride, T* row_loss, int num_threads);

// KL(softmax(teacher / temp) || softmax(student / temp)) per row, fused (neither softmax is
// stored). divisor: what the summed KL is divided by (rows for "batchmean", 1 for "sum", ...);
// 0 means per-row losses in row_loss. grad: d loss / d student (may be null). T: float, double,
// float16 or bfloat16 (computed in float32).
template <typename T>
double kl_div(const T* student, int64_t student_stride, const T* teacher, int64_t teacher_stride,
              int64_t rows, int64_t classes, double temperature, double divisor, T* grad,
              int64_t grad_stride, T* row_loss, int num_threads);

// HL-Gauss (Farebrother et al. 2024): each value (clipped to [vmin, vmax]) becomes the mass of
// a Normal(value, sigma) over num_bins equal bins, renormalised over [vmin, vmax].
template <typename T>
void hl_gauss_targets(const T* values, int64_t count, double vmin, double vmax, int64_t num_bins,
                      double sigma, T* out);

}  // namespace softzo

#endif  // SOFTZO_LOSSES_H_
