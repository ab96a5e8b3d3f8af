// The exact factored output layer (Vincent, de Brebisson & Bouthillier 2015, arXiv 1412.7091):
// SGD on a D x d output layer W with a spherical-family loss at O(d^2) per example, whatever D.
//
// W is never stored. It is W = V U + 1 omega^T with V (D x d) in the layer's precision and the
// d x d / d-sized state U, U^-1, Q = W^T W, w_bar = W^T 1 and omega in double: that state is
// D-independent and cheap, and its low-rank recurrences (Woodbury) drift in single precision.
// A minibatch touches only the rows of V at its targets. Dense linear algebra goes through the
// OpenBLAS of scipy-openblas32; link softzo::factored.
//
// Every step is exactly plain SGD on W (up to rounding):
//   W <- (1 - lr wd) W - lr dL/dW,  dL/dW = sum_j (gs_j 1 + 2 gq_j W h_j + sum_k ga_jk e_c) h_j^T
// where L depends on o_j = W h_j only through s_j = 1^T o_j, q_j = |o_j|^2 and the target
// outputs A_jk = o_j[c_jk] (SphericalKind: the Z-loss, log-spherical, log-Taylor, MSE, or any
// loss whose upstream gradients (ga, gs, gq) the caller supplies).
//
// Errors (bad shapes, targets out of range or repeated within an example, non-finite h, a
// learning rate that would make the update singular) throw std::invalid_argument before any
// state changes.
#ifndef SOFTZO_FACTORED_H_
#define SOFTZO_FACTORED_H_

#include <cstdint>
#include <vector>

#include "softzo/losses.h"

namespace softzo {

struct FactoredLayerOptions {
  SphericalKind kind = SphericalKind::kZLoss;
  double a = 1.0, b = 0.0;  // Z-loss softplus(a (b - z_c)) / a
  double eps = 1e-6;        // log-spherical o^2 + eps
  double lr = 0.01;
  double weight_decay = 0.0;  // coupled L2, as torch.optim.SGD: lr * weight_decay < 1
  // Every this many updates (0: never by itself), U's singular values outside
  // [sigma_min, sigma_max] are set to 1 by a change of V that leaves W unchanged (one pass over
  // V), and U^-1 is recomputed from the SVD, since the Woodbury recurrence drifts.
  int64_t stabilize_every = 100;
  double sigma_min = 0.5, sigma_max = 2.0;
};

// Multi-label targets: `targets` is m x k class indices, -1 marking an unused slot. With several
// targets the loss is summed over them, except MSE, which is |o - y|^2 for the multi-hot y.
template <typename T>
class FactoredSphericalLayer {
 public:
  // W starts as w0 (D x d, row-major), or 0 when w0 is null.
  FactoredSphericalLayer(int64_t num_classes, int64_t dim, const FactoredLayerOptions& options,
                         const T* w0 = nullptr);

  int64_t num_classes() const { return D_; }
  int64_t dim() const { return d_; }
  const FactoredLayerOptions& options() const { return opt_; }
  void set_options(const FactoredLayerOptions& options);  // validated
  int64_t steps() const { return steps_; }

  // Forward for m examples h (m x d, row stride h_stride): target outputs A (m x k; 0 at unused
  // slots), s_j = sum_i o_ji and q_j = sum_i o_ji^2 (any of them may be null). Cached for
  // backward_update.
  void forward(const T* h, int64_t m, int64_t h_stride, const int64_t* targets, int64_t k,
               double* A, double* s, double* q);
  // The layer's own loss on the cached forward: the mean over the m examples (row_loss: each
  // example's, may be null). Its gradients are kept for backward_update(scale, ...).
  double loss(double* row_loss = nullptr);
  // Backward and update from upstream gradients of any loss (ga: m x k, gs, gq: m), or from
  // those of loss() times scale. Writes dL/dh (m x d, row stride grad_stride; may be null),
  // taken at the W before the update. Consumes the cached forward.
  void backward_update(const double* ga, const double* gs, const double* gq, T* grad_h,
                       int64_t grad_stride);
  void backward_update(double scale, T* grad_h, int64_t grad_stride);
  // forward, loss and backward_update(1): one SGD step. Returns the mean loss.
  double step(const T* h, int64_t m, int64_t h_stride, const int64_t* targets, int64_t k, T* grad_h,
              int64_t grad_stride);

  // W itself (D x d) into out. O(D d^2).
  void weight(T* out) const;
  // Per example, the top k classes by the loss's score (o for the Z-loss and MSE, o^2 for
  // log-spherical, 1 + o + o^2/2 for log-Taylor), best first: indices and outputs o (m x k).
  // O(D d m).
  void topk(const T* h, int64_t m, int64_t h_stride, int64_t k, int64_t* indices, T* values) const;
  // The stabilisation described in FactoredLayerOptions, now.
  void stabilize();
  // Recomputes Q and w_bar from V, U and omega (O(D d^2)); useful after loading state.
  void refresh();

  // The state, for serialisation: V (D x d), U, U^-1, Q (d x d), w_bar, omega (d). Writing it
  // is the caller's responsibility to keep consistent (W = V U + 1 omega^T).
  T* v() { return v_.data(); }
  double* u() { return u_.data(); }
  double* u_inv() { return u_inv_.data(); }
  double* q() { return q_.data(); }
  double* w_bar() { return w_bar_.data(); }
  double* omega() { return omega_.data(); }
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  // The cached forward of one minibatch (all in double).
  struct Batch {
    bool valid = false, has_loss = false;
    int64_t m = 0, k = 0;
    std::vector<int64_t> slot, rows;  // rows: the unique target classes; slot: each (j, k)'s
    std::vector<double> h, hq, hu;    // h, h Q, h U^T (m x d)
    std::vector<double> s, q, hw, a;  // s, q, h . omega (m), A (m x k)
    std::vector<double> vt;           // V's rows at `rows`
    std::vector<double> ga, gs, gq;   // loss()'s gradients
  };
  int64_t D_, d_;
  FactoredLayerOptions opt_;
  int64_t steps_ = 0;
  std::vector<T> v_;
  std::vector<double> u_, u_inv_, q_, w_bar_, omega_;
  Batch batch_;
};

// The dense reference step that the factored layer replaces, fused through BLAS: o = W h,
// the loss terms from each row's s, q and targets, dL/dh, and W <- (1 - lr wd) W - lr dL/dW in
// place; O(D d m). Returns the mean loss. grad_h may be null.
template <typename T>
double dense_spherical_step(T* w, int64_t num_classes, int64_t dim, const T* h, int64_t m,
                            int64_t h_stride, const int64_t* targets, int64_t k,
                            const FactoredLayerOptions& options, T* grad_h, int64_t grad_stride);

}  // namespace softzo

#endif  // SOFTZO_FACTORED_H_
