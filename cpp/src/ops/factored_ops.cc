// The exact factored output layer (softzo/factored.h). Notation: a minibatch is h (m x d, one
// example per row); c_j = -2 lr gq_j; the update is W <- W M + 1 b^T + E with
//   M = alpha I + h^T C h (alpha = 1 - lr wd),  b = -lr h^T gs,  E = -lr sum ga_jk e_c h_j^T,
// so U <- U M, omega <- M omega + b, and only V's target rows change: V_r += E_r U_new^-1.
// Every product below is O(d^2 m) or smaller; only stabilize/refresh/weight/topk touch all of V.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "common/blas.h"
#include "common/thread_pool.h"
#include "dispatch/dispatch.h"
#include "ops/spherical_terms.h"
#include "softzo/factored.h"

namespace softzo {
namespace {

constexpr int64_t kBlockRows = 1024;  // rows of V per block in the passes over all of V

double dot(const double* x, const double* y, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += x[i] * y[i];
  return s;
}

void check_options(const FactoredLayerOptions& o) {
  if (!(o.lr >= 0.0) || !std::isfinite(o.lr)) throw std::invalid_argument("lr must be >= 0");
  if (!(o.weight_decay >= 0.0) || !(o.lr * o.weight_decay < 1.0))
    throw std::invalid_argument("weight_decay must be >= 0 with lr * weight_decay < 1");
  if (o.kind == SphericalKind::kZLoss && !(o.a > 0.0)) throw std::invalid_argument("a must be > 0");
  if (o.kind == SphericalKind::kLogSpherical && !(o.eps > 0.0))
    throw std::invalid_argument("eps must be > 0");
  if (o.stabilize_every < 0) throw std::invalid_argument("stabilize_every must be >= 0");
  if (!(o.sigma_min > 0.0 && o.sigma_min <= 1.0 && o.sigma_max >= 1.0))
    throw std::invalid_argument("need 0 < sigma_min <= 1 <= sigma_max");
}

// targets: m x k classes in [0, D) or -1 (unused), none repeated within an example.
void check_targets(const int64_t* targets, int64_t m, int64_t k, int64_t D) {
  if (k < 1) throw std::invalid_argument("targets: need at least one target slot per example");
  for (int64_t j = 0; j < m; ++j) {
    const int64_t* t = targets + j * k;
    for (int64_t i = 0; i < k; ++i) {
      if (t[i] < -1 || t[i] >= D)
        throw std::invalid_argument("targets: class " + std::to_string(t[i]) + " of example " +
                                    std::to_string(j) + " is out of range [0, " +
                                    std::to_string(D) + ") (-1 marks an unused slot)");
      for (int64_t p = 0; p < i; ++p)
        if (t[i] >= 0 && t[p] == t[i])
          throw std::invalid_argument("targets: class " + std::to_string(t[i]) +
                                      " is repeated in example " + std::to_string(j));
    }
  }
}

template <typename T>
void check_h(const T* h, int64_t m, int64_t d, int64_t h_stride) {
  if (m < 1) throw std::invalid_argument("h: need at least one example");
  if (h_stride < d) throw std::invalid_argument("h: row stride is shorter than dim");
  for (int64_t j = 0; j < m; ++j)
    for (int64_t i = 0; i < d; ++i)
      if (!std::isfinite(static_cast<double>(h[j * h_stride + i])))
        throw std::invalid_argument("h: non-finite value in example " + std::to_string(j));
}

// The loss terms of example j (targets in a[0..k), slot < 0: unused), its gradients scaled by g.
double example_terms(const FactoredLayerOptions& o, double n, const double* a, const int64_t* slot,
                     int64_t k, double s, double q, double g, double* ga, double* gs, double* gq) {
  double loss = 0.0;
  *gs = *gq = 0.0;
  if (o.kind == SphericalKind::kMse) {  // |o - y|^2 for the multi-hot y
    loss = q;
    *gq = g;
    for (int64_t i = 0; i < k; ++i) {
      ga[i] = slot[i] >= 0 ? -2.0 * g : 0.0;
      if (slot[i] >= 0) loss += 1.0 - 2.0 * a[i];
    }
    return loss;
  }
  for (int64_t i = 0; i < k; ++i) {
    ga[i] = 0.0;
    if (slot[i] < 0) continue;
    const SphericalTerms t = spherical_terms(o.kind, a[i], s, q, n, o.a, o.b, o.eps);
    loss += t.loss;
    ga[i] = g * t.ga;
    *gs += g * t.gs;
    *gq += g * t.gq;
  }
  return loss;
}

// LU-factors the n x n matrix a in place; throws if it is numerically singular (the update
// I + h^T C h has an eigenvalue near 0: the learning rate is too large for the factored form).
void lu_or_throw(std::vector<double>& a, int64_t n, std::vector<int>& pivots) {
  pivots.resize(static_cast<size_t>(n));
  const int info = blas::getrf(n, a.data(), pivots.data());
  double lo = INFINITY, hi = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const double p = std::fabs(a[i * n + i]);
    lo = std::min(lo, p);
    hi = std::max(hi, p);
  }
  if (info != 0 || !(lo > 1e-12 * hi))
    throw std::invalid_argument(
        "lr: this step's update W <- W (I - 2 lr h^T diag(grad_q) h) is (nearly) singular; "
        "lower lr");
}

}  // namespace

template <typename T>
FactoredSphericalLayer<T>::FactoredSphericalLayer(int64_t num_classes, int64_t dim,
                                                  const FactoredLayerOptions& options, const T* w0)
    : D_(num_classes), d_(dim), opt_(options) {
  if (num_classes < 1) throw std::invalid_argument("num_classes must be >= 1");
  if (dim < 1) throw std::invalid_argument("dim must be >= 1");
  check_options(options);
  const size_t dd = static_cast<size_t>(d_ * d_);
  v_.assign(static_cast<size_t>(D_ * d_), T(0));
  if (w0) std::memcpy(v_.data(), w0, v_.size() * sizeof(T));
  u_.assign(dd, 0.0);
  for (int64_t i = 0; i < d_; ++i) u_[i * d_ + i] = 1.0;
  u_inv_ = u_;
  omega_.assign(static_cast<size_t>(d_), 0.0);
  refresh();
}

template <typename T>
void FactoredSphericalLayer<T>::set_options(const FactoredLayerOptions& options) {
  check_options(options);
  opt_ = options;
  batch_.has_loss = false;  // the cached loss gradients belong to the old loss
}

template <typename T>
void FactoredSphericalLayer<T>::refresh() {
  std::vector<double> wb(static_cast<size_t>(kBlockRows * d_)), vb(wb.size());
  std::vector<double> q(static_cast<size_t>(d_ * d_), 0.0), w_bar(static_cast<size_t>(d_), 0.0);
  for (int64_t r0 = 0; r0 < D_; r0 += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, D_ - r0);
    for (int64_t i = 0; i < rows * d_; ++i) vb[i] = static_cast<double>(v_[r0 * d_ + i]);
    blas::gemm(false, false, rows, d_, d_, 1.0, vb.data(), d_, u_.data(), d_, 0.0, wb.data(), d_);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < d_; ++i) {
        wb[r * d_ + i] += omega_[i];
        w_bar[i] += wb[r * d_ + i];
      }
    blas::gemm(true, false, d_, d_, rows, 1.0, wb.data(), d_, wb.data(), d_, 1.0, q.data(), d_);
  }
  q_ = std::move(q);
  w_bar_ = std::move(w_bar);
}

template <typename T>
void FactoredSphericalLayer<T>::forward(const T* h, int64_t m, int64_t h_stride,
                                        const int64_t* targets, int64_t k, double* A, double* s,
                                        double* q) {
  check_h(h, m, d_, h_stride);
  check_targets(targets, m, k, D_);
  Batch& b = batch_;
  b.valid = b.has_loss = false;
  b.m = m;
  b.k = k;
  // The unique target classes, and each target's slot among them.
  std::vector<std::pair<int64_t, int64_t>> order;
  for (int64_t i = 0; i < m * k; ++i)
    if (targets[i] >= 0) order.emplace_back(targets[i], i);
  std::sort(order.begin(), order.end());
  b.rows.clear();
  b.slot.assign(static_cast<size_t>(m * k), -1);
  for (const auto& [cls, i] : order) {
    if (b.rows.empty() || b.rows.back() != cls) b.rows.push_back(cls);
    b.slot[i] = static_cast<int64_t>(b.rows.size()) - 1;
  }
  const int64_t nt = static_cast<int64_t>(b.rows.size()), d = d_;
  b.h.resize(static_cast<size_t>(m * d));
  for (int64_t j = 0; j < m; ++j)
    for (int64_t i = 0; i < d; ++i) b.h[j * d + i] = static_cast<double>(h[j * h_stride + i]);
  b.vt.resize(static_cast<size_t>(nt * d));
  for (int64_t r = 0; r < nt; ++r)
    for (int64_t i = 0; i < d; ++i) b.vt[r * d + i] = static_cast<double>(v_[b.rows[r] * d + i]);
  b.hq.resize(b.h.size());
  b.hu.resize(b.h.size());
  blas::gemm(false, false, m, d, d, 1.0, b.h.data(), d, q_.data(), d, 0.0, b.hq.data(), d);
  blas::gemm(false, true, m, d, d, 1.0, b.h.data(), d, u_.data(), d, 0.0, b.hu.data(), d);
  b.s.resize(static_cast<size_t>(m));
  b.q.resize(static_cast<size_t>(m));
  b.hw.resize(static_cast<size_t>(m));
  b.a.assign(static_cast<size_t>(m * k), 0.0);
  for (int64_t j = 0; j < m; ++j) {
    const double* hj = &b.h[j * d];
    b.s[j] = dot(hj, w_bar_.data(), d);
    b.q[j] = dot(hj, &b.hq[j * d], d);
    b.hw[j] = dot(hj, omega_.data(), d);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t sl = b.slot[j * k + i];
      if (sl >= 0) b.a[j * k + i] = dot(&b.vt[sl * d], &b.hu[j * d], d) + b.hw[j];
    }
  }
  if (A) std::copy(b.a.begin(), b.a.end(), A);
  if (s) std::copy(b.s.begin(), b.s.end(), s);
  if (q) std::copy(b.q.begin(), b.q.end(), q);
  b.valid = true;
}

template <typename T>
double FactoredSphericalLayer<T>::loss(double* row_loss) {
  Batch& b = batch_;
  if (!b.valid) throw std::invalid_argument("loss: no forward to take the loss of");
  const int64_t m = b.m, k = b.k;
  b.ga.resize(static_cast<size_t>(m * k));
  b.gs.resize(static_cast<size_t>(m));
  b.gq.resize(static_cast<size_t>(m));
  const double g = 1.0 / static_cast<double>(m);
  double total = 0.0;
  for (int64_t j = 0; j < m; ++j) {
    const double l = example_terms(opt_, static_cast<double>(D_), &b.a[j * k], &b.slot[j * k], k,
                                   b.s[j], b.q[j], g, &b.ga[j * k], &b.gs[j], &b.gq[j]);
    if (row_loss) row_loss[j] = l;
    total += l;
  }
  b.has_loss = true;
  return total * g;
}

template <typename T>
void FactoredSphericalLayer<T>::backward_update(double scale, T* grad_h, int64_t grad_stride) {
  Batch& b = batch_;
  if (!b.valid || !b.has_loss)
    throw std::invalid_argument("backward_update: call forward and loss first");
  std::vector<double> ga(b.ga), gs(b.gs), gq(b.gq);
  for (double& x : ga) x *= scale;
  for (double& x : gs) x *= scale;
  for (double& x : gq) x *= scale;
  backward_update(ga.data(), gs.data(), gq.data(), grad_h, grad_stride);
}

template <typename T>
void FactoredSphericalLayer<T>::backward_update(const double* ga, const double* gs,
                                                const double* gq, T* grad_h, int64_t grad_stride) {
  Batch& b = batch_;
  if (!b.valid) throw std::invalid_argument("backward_update: call forward first");
  const int64_t m = b.m, k = b.k, d = d_, nt = static_cast<int64_t>(b.rows.size());
  if (grad_h && grad_stride < d) throw std::invalid_argument("grad_h: row stride < dim");
  for (int64_t i = 0; i < m * k; ++i)
    if (!std::isfinite(ga[i])) throw std::invalid_argument("grad_A: non-finite value");
  for (int64_t j = 0; j < m; ++j)
    if (!std::isfinite(gs[j]) || !std::isfinite(gq[j]))
      throw std::invalid_argument("grad_s, grad_q: non-finite value");
  const double eta = opt_.lr, alpha = 1.0 - opt_.lr * opt_.weight_decay;
  const size_t md = static_cast<size_t>(m * d), dd = static_cast<size_t>(d * d);
  const double* h = b.h.data();

  // dL/dh_j = gs_j w_bar + 2 gq_j Q h_j + sum_k ga_jk W_c = ... + (sum_k ga_jk V_c) U + (...)
  // omega.
  std::vector<double> p(md, 0.0), gh(md), ga_sum(static_cast<size_t>(m), 0.0);
  for (int64_t j = 0; j < m; ++j)
    for (int64_t i = 0; i < k; ++i) {
      const int64_t sl = b.slot[j * k + i];
      if (sl < 0) continue;
      ga_sum[j] += ga[j * k + i];
      for (int64_t t = 0; t < d; ++t) p[j * d + t] += ga[j * k + i] * b.vt[sl * d + t];
    }
  blas::gemm(false, false, m, d, d, 1.0, p.data(), d, u_.data(), d, 0.0, gh.data(), d);
  for (int64_t j = 0; j < m; ++j)
    for (int64_t t = 0; t < d; ++t)
      gh[j * d + t] += gs[j] * w_bar_[t] + 2.0 * gq[j] * b.hq[j * d + t] + ga_sum[j] * omega_[t];

  // The pieces of the update: C h, b, and E at the target rows.
  std::vector<double> c(static_cast<size_t>(m)), ch(md), bv(static_cast<size_t>(d), 0.0);
  std::vector<double> et(static_cast<size_t>(nt * d), 0.0);
  for (int64_t j = 0; j < m; ++j) {
    c[j] = -2.0 * eta * gq[j];
    for (int64_t t = 0; t < d; ++t) {
      ch[j * d + t] = c[j] * h[j * d + t];
      bv[t] -= eta * gs[j] * h[j * d + t];
    }
    for (int64_t i = 0; i < k; ++i) {
      const int64_t sl = b.slot[j * k + i];
      if (sl < 0) continue;
      for (int64_t t = 0; t < d; ++t) et[sl * d + t] -= eta * ga[j * k + i] * h[j * d + t];
    }
  }

  // U_new = U M = alpha U + (U h^T) C h.
  std::vector<double> u_new(u_);
  for (double& x : u_new) x *= alpha;
  blas::gemm(true, false, d, d, m, 1.0, b.hu.data(), d, ch.data(), d, 1.0, u_new.data(), d);

  // U_new^-1 = M^-1 U^-1: Woodbury through an m x m system when m < d, else M itself.
  std::vector<double> u_inv_new(u_inv_);
  std::vector<int> piv;
  if (m < d) {
    // M^-1 = (I - h^T (alpha I + C h h^T)^-1 C h) / alpha.
    std::vector<double> km(static_cast<size_t>(m * m)), x(md);
    blas::gemm(false, true, m, m, d, 1.0, h, d, h, d, 0.0, km.data(), m);
    for (int64_t j = 0; j < m; ++j) {
      for (int64_t l = 0; l < m; ++l) km[j * m + l] *= c[j];
      km[j * m + j] += alpha;
    }
    blas::gemm(false, false, m, d, d, 1.0, ch.data(), d, u_inv_.data(), d, 0.0, x.data(), d);
    lu_or_throw(km, m, piv);
    blas::getrs(m, d, km.data(), piv.data(), x.data());
    blas::gemm(true, false, d, d, m, -1.0, h, d, x.data(), d, 1.0, u_inv_new.data(), d);
    for (double& v : u_inv_new) v /= alpha;
  } else {
    std::vector<double> mm(dd, 0.0);
    for (int64_t i = 0; i < d; ++i) mm[i * d + i] = alpha;
    blas::gemm(true, false, d, d, m, 1.0, h, d, ch.data(), d, 1.0, mm.data(), d);
    lu_or_throw(mm, d, piv);
    blas::getrs(d, d, mm.data(), piv.data(), u_inv_new.data());
  }

  // omega_new = M omega + b and M w_bar (M is symmetric; h omega and h w_bar are cached).
  std::vector<double> omega_new(static_cast<size_t>(d)), w_bar_new(static_cast<size_t>(d));
  for (int64_t t = 0; t < d; ++t) {
    double so = 0.0, sw = 0.0;
    for (int64_t j = 0; j < m; ++j) {
      so += c[j] * b.hw[j] * h[j * d + t];
      sw += c[j] * b.s[j] * h[j * d + t];
    }
    omega_new[t] = alpha * omega_[t] + so + bv[t];
    w_bar_new[t] = alpha * w_bar_[t] + sw;  // M w_bar; D b and E's rows are added below
  }

  // Q for W M + 1 b^T: M Q M + M w_bar b^T + b w_bar^T M + D b b^T, with
  // M Q M = alpha^2 Q + alpha (Q h^T C h + h^T C h Q) + h^T C (h Q h^T) C h.
  std::vector<double> q_new(q_), t1(dd), s_mm(static_cast<size_t>(m * m)), rh(md);
  for (double& x : q_new) x *= alpha * alpha;
  blas::gemm(true, false, d, d, m, alpha, b.hq.data(), d, ch.data(), d, 0.0, t1.data(), d);
  blas::gemm(false, true, m, m, d, 1.0, b.hq.data(), d, h, d, 0.0, s_mm.data(), m);
  for (int64_t j = 0; j < m; ++j)
    for (int64_t l = 0; l < m; ++l) s_mm[j * m + l] *= c[j] * c[l];
  blas::gemm(false, false, m, d, m, 1.0, s_mm.data(), m, h, d, 0.0, rh.data(), d);
  blas::gemm(true, false, d, d, m, 1.0, h, d, rh.data(), d, 1.0, q_new.data(), d);
  const double dn = static_cast<double>(D_);
  for (int64_t i = 0; i < d; ++i)
    for (int64_t t = 0; t < d; ++t)
      q_new[i * d + t] += t1[i * d + t] + t1[t * d + i] + w_bar_new[i] * bv[t] +
                          bv[i] * w_bar_new[t] + dn * bv[i] * bv[t];
  for (int64_t t = 0; t < d; ++t) w_bar_new[t] += dn * bv[t];

  // The target rows: F = W_r M + b^T (old rows carried through M), N = the new rows as stored.
  // Q += N^T N - F^T F and w_bar += sum (N - F) keep Q and w_bar those of the rounded V.
  std::vector<double> v_new(b.vt);
  if (nt > 0) {
    const size_t nd = static_cast<size_t>(nt * d);
    std::vector<double> wt(nd), wh(static_cast<size_t>(nt * m)), ft(nd), nr(nd);
    blas::gemm(false, false, nt, d, d, 1.0, b.vt.data(), d, u_.data(), d, 0.0, wt.data(), d);
    for (int64_t r = 0; r < nt; ++r)
      for (int64_t t = 0; t < d; ++t) wt[r * d + t] += omega_[t];
    blas::gemm(false, true, nt, m, d, 1.0, wt.data(), d, h, d, 0.0, wh.data(), m);
    for (int64_t r = 0; r < nt; ++r)
      for (int64_t j = 0; j < m; ++j) wh[r * m + j] *= c[j];
    for (int64_t r = 0; r < nt; ++r)
      for (int64_t t = 0; t < d; ++t) ft[r * d + t] = alpha * wt[r * d + t] + bv[t];
    blas::gemm(false, false, nt, d, m, 1.0, wh.data(), m, h, d, 1.0, ft.data(), d);
    blas::gemm(false, false, nt, d, d, 1.0, et.data(), d, u_inv_new.data(), d, 1.0, v_new.data(),
               d);
    for (double& x : v_new) x = static_cast<double>(static_cast<T>(x));
    blas::gemm(false, false, nt, d, d, 1.0, v_new.data(), d, u_new.data(), d, 0.0, nr.data(), d);
    for (int64_t r = 0; r < nt; ++r)
      for (int64_t t = 0; t < d; ++t) {
        nr[r * d + t] += omega_new[t];
        w_bar_new[t] += nr[r * d + t] - ft[r * d + t];
      }
    blas::gemm(true, false, d, d, nt, 1.0, nr.data(), d, nr.data(), d, 1.0, q_new.data(), d);
    blas::gemm(true, false, d, d, nt, -1.0, ft.data(), d, ft.data(), d, 1.0, q_new.data(), d);
  }
  for (int64_t i = 0; i < d; ++i)
    for (int64_t t = 0; t < i; ++t) {
      const double avg = 0.5 * (q_new[i * d + t] + q_new[t * d + i]);
      q_new[i * d + t] = q_new[t * d + i] = avg;
    }

  // Nothing can fail from here on.
  if (grad_h)
    for (int64_t j = 0; j < m; ++j)
      for (int64_t t = 0; t < d; ++t) grad_h[j * grad_stride + t] = static_cast<T>(gh[j * d + t]);
  for (int64_t r = 0; r < nt; ++r)
    for (int64_t t = 0; t < d; ++t) v_[b.rows[r] * d + t] = static_cast<T>(v_new[r * d + t]);
  u_ = std::move(u_new);
  u_inv_ = std::move(u_inv_new);
  q_ = std::move(q_new);
  w_bar_ = std::move(w_bar_new);
  omega_ = std::move(omega_new);
  b.valid = b.has_loss = false;
  ++steps_;
  if (opt_.stabilize_every > 0 && steps_ % opt_.stabilize_every == 0) stabilize();
}

template <typename T>
double FactoredSphericalLayer<T>::step(const T* h, int64_t m, int64_t h_stride,
                                       const int64_t* targets, int64_t k, T* grad_h,
                                       int64_t grad_stride) {
  forward(h, m, h_stride, targets, k, nullptr, nullptr, nullptr);
  const double l = loss();
  backward_update(1.0, grad_h, grad_stride);
  return l;
}

template <typename T>
void FactoredSphericalLayer<T>::stabilize() {
  const int64_t d = d_;
  std::vector<double> a(u_), sv(static_cast<size_t>(d)), pu(a.size()), rt(a.size());
  if (blas::gesdd(d, a.data(), sv.data(), pu.data(), rt.data()) != 0)
    throw std::runtime_error("stabilize: the SVD of U did not converge");
  // U = P diag(sv) R^T. Setting sigma_i to 1 is U <- (I + sum (1/sigma_i - 1) p_i p_i^T) U,
  // which W = V U keeps by V <- V (I + sum (sigma_i - 1) p_i p_i^T): one pass over V.
  std::vector<int64_t> fix;
  for (int64_t i = 0; i < d; ++i)
    if (sv[i] < opt_.sigma_min || sv[i] > opt_.sigma_max) fix.push_back(i);
  const int64_t nf = static_cast<int64_t>(fix.size());
  if (nf > 0) {
    std::vector<T> pk(static_cast<size_t>(d * nf)), z(static_cast<size_t>(kBlockRows * nf));
    for (int64_t i = 0; i < d; ++i)
      for (int64_t f = 0; f < nf; ++f) pk[i * nf + f] = static_cast<T>(pu[i * d + fix[f]]);
    for (int64_t r0 = 0; r0 < D_; r0 += kBlockRows) {
      const int64_t rows = std::min(kBlockRows, D_ - r0);
      T* vb = v_.data() + r0 * d;
      blas::gemm(false, false, rows, nf, d, T(1), vb, d, pk.data(), nf, T(0), z.data(), nf);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t f = 0; f < nf; ++f) z[r * nf + f] *= static_cast<T>(sv[fix[f]] - 1.0);
      blas::gemm(false, true, rows, d, nf, T(1), z.data(), nf, pk.data(), nf, T(1), vb, d);
    }
    for (int64_t f : fix) sv[f] = 1.0;
    std::vector<double> ps(pu);  // P diag(sv)
    for (int64_t i = 0; i < d; ++i)
      for (int64_t l = 0; l < d; ++l) ps[i * d + l] *= sv[l];
    blas::gemm(false, false, d, d, d, 1.0, ps.data(), d, rt.data(), d, 0.0, u_.data(), d);
  }
  // U^-1 = R diag(1/sv) P^T, fresh rather than carried by Woodbury.
  std::vector<double> rs(a.size());
  for (int64_t i = 0; i < d; ++i)
    for (int64_t l = 0; l < d; ++l) rs[i * d + l] = rt[l * d + i] / sv[l];
  blas::gemm(false, true, d, d, d, 1.0, rs.data(), d, pu.data(), d, 0.0, u_inv_.data(), d);
}

template <typename T>
void FactoredSphericalLayer<T>::weight(T* out) const {
  std::vector<double> vb(static_cast<size_t>(kBlockRows * d_)), wb(vb.size());
  for (int64_t r0 = 0; r0 < D_; r0 += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, D_ - r0);
    for (int64_t i = 0; i < rows * d_; ++i) vb[i] = static_cast<double>(v_[r0 * d_ + i]);
    blas::gemm(false, false, rows, d_, d_, 1.0, vb.data(), d_, u_.data(), d_, 0.0, wb.data(), d_);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < d_; ++i)
        out[(r0 + r) * d_ + i] = static_cast<T>(wb[r * d_ + i] + omega_[i]);
  }
}

template <typename T>
void FactoredSphericalLayer<T>::topk(const T* h, int64_t m, int64_t h_stride, int64_t k,
                                     int64_t* indices, T* values) const {
  check_h(h, m, d_, h_stride);
  if (k < 1 || k > D_) throw std::invalid_argument("k must be in [1, num_classes]");
  std::vector<double> hd(static_cast<size_t>(m * d_)), hu(hd.size());
  for (int64_t j = 0; j < m; ++j)
    for (int64_t i = 0; i < d_; ++i) hd[j * d_ + i] = static_cast<double>(h[j * h_stride + i]);
  blas::gemm(false, true, m, d_, d_, 1.0, hd.data(), d_, u_.data(), d_, 0.0, hu.data(), d_);
  std::vector<T> hu_t(hu.begin(), hu.end()), ob(static_cast<size_t>(m * kBlockRows));
  std::vector<double> hw(static_cast<size_t>(m));
  for (int64_t j = 0; j < m; ++j) hw[j] = dot(&hd[j * d_], omega_.data(), d_);
  const SphericalKind kind = opt_.kind;
  auto score = [kind](double o) {
    if (kind == SphericalKind::kLogSpherical) return o * o;
    if (kind == SphericalKind::kLogTaylor) return 1.0 + o + 0.5 * o * o;
    return o;
  };
  // Per example a min-heap of (score, -index): the best k so far; ties go to the lower index.
  using Entry = std::pair<double, int64_t>;
  std::vector<std::vector<Entry>> heaps(static_cast<size_t>(m));
  std::vector<std::vector<double>> outs(static_cast<size_t>(m));
  auto worse = [](const Entry& x, const Entry& y) { return x > y; };
  for (int64_t r0 = 0; r0 < D_; r0 += kBlockRows) {
    const int64_t rows = std::min(kBlockRows, D_ - r0);
    blas::gemm(false, true, m, rows, d_, T(1), hu_t.data(), d_, v_.data() + r0 * d_, d_, T(0),
               ob.data(), rows);
    for (int64_t j = 0; j < m; ++j) {
      auto& heap = heaps[j];
      for (int64_t r = 0; r < rows; ++r) {
        const Entry e{score(static_cast<double>(ob[j * rows + r]) + hw[j]), -(r0 + r)};
        if (static_cast<int64_t>(heap.size()) < k) {
          heap.push_back(e);
          std::push_heap(heap.begin(), heap.end(), worse);
        } else if (e > heap.front()) {
          std::pop_heap(heap.begin(), heap.end(), worse);
          heap.back() = e;
          std::push_heap(heap.begin(), heap.end(), worse);
        }
      }
    }
  }
  std::vector<double> vrow(static_cast<size_t>(d_));
  for (int64_t j = 0; j < m; ++j) {
    auto& heap = heaps[j];
    std::sort(heap.begin(), heap.end(), worse);  // best first
    for (int64_t i = 0; i < k; ++i) {
      const int64_t cls = -heap[i].second;
      indices[j * k + i] = cls;
      for (int64_t t = 0; t < d_; ++t) vrow[t] = static_cast<double>(v_[cls * d_ + t]);
      values[j * k + i] = static_cast<T>(dot(vrow.data(), &hu[j * d_], d_) + hw[j]);
    }
  }
}

template <typename T>
double dense_spherical_step(T* w, int64_t num_classes, int64_t dim, const T* h, int64_t m,
                            int64_t h_stride, const int64_t* targets, int64_t k,
                            const FactoredLayerOptions& opt, T* grad_h, int64_t grad_stride) {
  check_options(opt);
  if (num_classes < 1 || dim < 1) throw std::invalid_argument("weight: empty");
  check_h(h, m, dim, h_stride);
  check_targets(targets, m, k, num_classes);
  const int64_t D = num_classes, d = dim;
  std::vector<T> o(static_cast<size_t>(m * D));
  blas::gemm(false, true, m, D, d, T(1), h, h_stride, w, d, T(0), o.data(), D);
  const LossKernels<T>& kern = loss_kernels<T>();
  const double g = 1.0 / static_cast<double>(m);
  std::vector<double> losses(static_cast<size_t>(m));
  std::vector<int64_t> used(static_cast<size_t>(m * k));
  parallel_for(m, default_num_threads(), [&](int64_t j) {
    T* oj = &o[j * D];
    const int64_t* tj = targets + j * k;
    std::vector<double> a(static_cast<size_t>(k)), ga(static_cast<size_t>(k));
    for (int64_t i = 0; i < k; ++i) {
      used[j * k + i] = tj[i] >= 0 ? 0 : -1;
      a[i] = tj[i] >= 0 ? static_cast<double>(oj[tj[i]]) : 0.0;
    }
    const double s = kern.rdot(static_cast<size_t>(D), oj, nullptr);
    const double q = kern.rdot(static_cast<size_t>(D), oj, oj);
    double gs, gq;
    losses[j] = example_terms(opt, static_cast<double>(D), a.data(), &used[j * k], k, s, q, g,
                              ga.data(), &gs, &gq);
    // dL/do = gs + 2 gq o + ga e_c, in place.
    kern.vquad(static_cast<size_t>(D), oj, oj, T(0), T(0), static_cast<T>(2.0 * gq),
               static_cast<T>(gs));
    for (int64_t i = 0; i < k; ++i)
      if (tj[i] >= 0) oj[tj[i]] = static_cast<T>(static_cast<double>(oj[tj[i]]) + ga[i]);
  });
  if (grad_h) blas::gemm(false, false, m, d, D, T(1), o.data(), D, w, d, T(0), grad_h, grad_stride);
  blas::gemm(true, false, D, d, m, static_cast<T>(-opt.lr), o.data(), D, h, h_stride,
             static_cast<T>(1.0 - opt.lr * opt.weight_decay), w, d);
  double total = 0.0;
  for (double l : losses) total += l;
  return total * g;
}

template class FactoredSphericalLayer<float>;
template class FactoredSphericalLayer<double>;
template double dense_spherical_step<float>(float*, int64_t, int64_t, const float*, int64_t,
                                            int64_t, const int64_t*, int64_t,
                                            const FactoredLayerOptions&, float*, int64_t);
template double dense_spherical_step<double>(double*, int64_t, int64_t, const double*, int64_t,
                                             int64_t, const int64_t*, int64_t,
                                             const FactoredLayerOptions&, double*, int64_t);

}  // namespace softzo
