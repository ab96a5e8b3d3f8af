// Loss ops: argument checks, per-row statistics, the reductions, and the rare rows (NaN, inf,
// far-range logits) that the vector kernels leave to exact scalar code. Cross-entropy, KL and
// the spherical family also take float16 / bfloat16 rows, computed in float32 (half_rows.h).
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/thread_pool.h"
#include "dispatch/dispatch.h"
#include "ops/exp_sums.h"
#include "ops/half_rows.h"
#include "ops/spherical_terms.h"
#include "softzo/losses.h"

namespace softzo {
namespace {

// One task covers about this many elements, as in the softmax ops.
constexpr int64_t kTaskElements = int64_t{1} << 16;
// Cross-entropy gradient rows up to this size (L2 on current cores) take the reload way.
constexpr int64_t kReloadBytes = int64_t{1} << 20;
constexpr double kRestShift = SOFTZO_REST_SHIFT;

int resolve_threads(int requested) { return requested > 0 ? requested : default_num_threads(); }

// Runs f(r) for every row, rows grouped into tasks of ~kTaskElements elements.
template <typename F>
void for_rows(int64_t rows, int64_t n, int threads, F&& f) {
  const int64_t per_task = n >= kTaskElements ? 1 : kTaskElements / (n > 0 ? n : 1);
  const int64_t tasks = (rows + per_task - 1) / per_task;
  parallel_for(tasks, resolve_threads(threads), [&](int64_t t) {
    const int64_t end = (t + 1) * per_task < rows ? (t + 1) * per_task : rows;
    for (int64_t r = t * per_task; r < end; ++r) f(r);
  });
}

// Sum in row order: the reduction is the same for any thread count.
double ordered_sum(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x;
  return s;
}

// A row's lse as max + l with l = log1p(rest) (exp_sums.h), from the blocked two-pass sum, and
// the sum itself for the gradient passes. ok is false for rows the kernels leave to the exact
// path: a NaN or +inf, all -inf, or a max beyond the scaled kernels' range.
inline double exact_rest(int64_t n, const float* x, float m, int64_t skip) {
  return softzo_f32_raddexpminusmax_exact(static_cast<size_t>(n), x, m, static_cast<size_t>(skip));
}
inline double exact_rest(int64_t n, const double* x, double m, int64_t skip) {
  return softzo_f64_raddexpminusmax_exact(static_cast<size_t>(n), x, m, static_cast<size_t>(skip));
}

struct RowLse {
  ExpSum sum;
  double max = 0, l = 0, q = 0;  // l = log1p(q), q = the others' terms over the max's
  bool ok = false;
  double value() const { return max + l; }
};

template <typename T>
RowLse row_lse(const SoftmaxKernels<T>& k, const T* x, int64_t n) {
  RowLse r;
  bool unsafe = false;
  r.sum = blocked_exp_sum(k, x, static_cast<size_t>(n), &unsafe);
  if (unsafe || !in_scaled_range(r.sum.max)) return r;
  r.max = r.sum.max;
  r.q = r.sum.rest_ratio();
  r.l = std::log1p(r.q);
  r.ok = true;
  return r;
}

// The exact path: max M, then lse = M + log1p(sum over the others of exp(x - M)), x - M carried
// exactly (scalar kernels). NaN for rows with a NaN, +inf for a +inf (PyTorch's NaN loss is
// decided by the caller), -inf for all -inf rows; *max_out and *l_out hold M and the log1p.
template <typename T>
double slow_lse(const T* x, int64_t n, T* max_out, double* l_out, double* q_out = nullptr) {
  T m = -INFINITY;
  int64_t at = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) return NAN;
    if (x[i] > m) {
      m = x[i];
      at = i;
    }
  }
  *max_out = m;
  *l_out = 0.0;
  if (std::isinf(m)) return m;  // +inf, or -inf for an all -inf row
  const double q = exact_rest(n, x, m, at);
  if (q_out) *q_out = q;
  *l_out = std::log1p(q);
  return static_cast<double>(m) + *l_out;
}

template <typename T>
void fill(T* y, int64_t n, T v) {
  for (int64_t i = 0; i < n; ++i) y[i] = v;
}

double reduction_divisor(Reduction red, double count) {
  return red == Reduction::kMean ? count : 1.0;
}

// Per-class weights (n of them, or null) as compute_t<S>: w itself, or widened into *store.
template <typename S>
const compute_t<S>* class_weights(const S* w, int64_t n, std::vector<compute_t<S>>* store) {
  if constexpr (kIsHalf<S>) {
    if (!w) return nullptr;
    store->resize(static_cast<size_t>(n));
    widen(w, store->data(), n);
    return store->data();
  } else {
    (void)n;
    (void)store;
    return w;
  }
}

// ---- cross-entropy --------------------------------------------------------------------------

// Rows of S: float, double, or a half type computed in float (ops/half_rows.h).
template <typename S>
class CrossEntropy {
 public:
  using T = compute_t<S>;

  explicit CrossEntropy(const CrossEntropyArgs<S>& a) : CrossEntropy(a, current_isa()) {}
  // Both tables from one ISA, even while another thread calls set_isa.
  CrossEntropy(const CrossEntropyArgs<S>& a, Isa isa)
      : a_(a), k_(*softmax_kernels_for<T>(isa)), lk_(*loss_kernels_for<T>(isa)), n_(a.classes) {}

  double run() {
    check();
    weight_ = class_weights(a_.weight, n_, &weight_store_);
    const int64_t rows = a_.rows;
    // Denominators first: the gradient scale must be known before any row is written.
    double weight_total = static_cast<double>(n_), counted = 0.0, target_weight = 0.0;
    if (weight_) weight_total = lk_.rdot(static_cast<size_t>(n_), weight_, nullptr);
    if (a_.target) {
      for (int64_t r = 0; r < rows; ++r) {
        if (a_.target[r] == a_.ignore_index) continue;
        counted += 1.0;
        target_weight += weight_ ? static_cast<double>(weight_[a_.target[r]]) : 1.0;
      }
    } else {
      counted = target_weight = static_cast<double>(rows);
      check_soft_targets();
    }
    weight_total_ = weight_total;
    ce_scale_ = 1.0 / reduction_divisor(a_.reduction, target_weight);
    z_scale_ = 1.0 / reduction_divisor(a_.reduction, counted);
    std::vector<double> losses(static_cast<size_t>(rows), 0.0);
    for_rows(rows, n_, a_.num_threads, [&](int64_t r) { losses[r] = row_at(r); });
    if (a_.reduction == Reduction::kNone) {
      for (int64_t r = 0; r < rows; ++r) a_.row_loss[r] = from_double<S>(losses[r]);
      return 0.0;
    }
    // The CE and lse^2 parts have different denominators (weights vs rows); row() returns
    // them already divided, so the sum is the loss. A mean over no counted weight is 0 / 0.
    if (a_.reduction == Reduction::kMean && target_weight == 0.0) return NAN;
    return ordered_sum(losses);
  }

 private:
  void check() const {
    if (a_.rows < 0 || a_.classes < 0) throw std::invalid_argument("logits: negative shape");
    if (a_.reduction == Reduction::kNone && !a_.row_loss && a_.rows > 0)
      throw std::invalid_argument("row_loss is required for reduction none");
    if (!(a_.label_smoothing >= 0.0 && a_.label_smoothing <= 1.0))
      throw std::invalid_argument("label_smoothing must be in [0, 1]");
    if (!(a_.lse_square_scale >= 0.0)) throw std::invalid_argument("lse_square_scale must be >= 0");
    if (!(a_.tau >= 0.0 && std::isfinite(a_.tau))) throw std::invalid_argument("tau must be >= 0");
    if (a_.tau != 1.0 && (!a_.target || a_.weight || a_.label_smoothing != 0.0))
      throw std::invalid_argument(
          "tau: comp-sum losses take class indices, no weight or smoothing");
    if (!a_.target == !a_.soft_target)
      throw std::invalid_argument("target: give class indices or soft targets (exactly one)");
    if (a_.target) {
      for (int64_t r = 0; r < a_.rows; ++r) {
        const int64_t t = a_.target[r];
        if (t != a_.ignore_index && (t < 0 || t >= a_.classes))
          throw std::invalid_argument("target[" + std::to_string(r) + "] = " + std::to_string(t) +
                                      " is out of range for " + std::to_string(a_.classes) +
                                      " classes (and is not ignore_index)");
      }
    }
  }

  // Soft targets: each row's target mass sum_j w_j t_j, which also rejects non-finite values
  // before any output is written.
  void check_soft_targets() {
    target_mass_.assign(static_cast<size_t>(a_.rows), 0.0);
    std::vector<char> bad(static_cast<size_t>(a_.rows), 0);
    for_rows(a_.rows, n_, a_.num_threads, [&](int64_t r) {
      thread_local RowBuffer<S> buf;
      const T* t = soft_row(r, buf);
      const double s = lk_.rdot(static_cast<size_t>(n_), t, nullptr);
      const double sw = weight_ ? lk_.rdot(static_cast<size_t>(n_), t, weight_) : s;
      bad[r] = !std::isfinite(s) || !std::isfinite(sw);
      target_mass_[r] = sw;
    });
    for (int64_t r = 0; r < a_.rows; ++r) {
      if (bad[r])
        throw std::invalid_argument("target (soft) row " + std::to_string(r) +
                                    " has a non-finite value");
    }
  }

  // Row r of the soft targets as T: in place, or widened into buf.
  const T* soft_row(int64_t r, RowBuffer<S>& buf) const {
    const S* t = a_.soft_target + r * a_.soft_stride;
    if constexpr (kIsHalf<S>) {
      return buf.load(t, n_, 1, 1);
    } else {
      (void)buf;
      return t;
    }
  }

  // Row r: in place, or (half types) widened into per-thread buffers, computed there with the
  // gradient written over the widened logits, and the gradient narrowed into a_.grad.
  double row_at(int64_t r) {
    const S* xs = a_.logits + r * a_.logits_stride;
    S* ys = a_.grad ? a_.grad + r * a_.grad_stride : nullptr;
    const T* tw = nullptr;
    if constexpr (kIsHalf<S>) {
      thread_local RowBuffer<S> logits_buf, soft_buf;
      if (a_.soft_target) tw = soft_row(r, soft_buf);
      T* x = logits_buf.load(xs, n_, 1, 1);
      const double loss = row(r, x, ys ? x : nullptr, tw);
      if (ys) logits_buf.store(x, ys, n_, 1, 1);
      return loss;
    } else {
      if (a_.soft_target) tw = a_.soft_target + r * a_.soft_stride;
      return row(r, xs, ys, tw);
    }
  }

  // One row of logits x, gradient y (may be x, or null) and soft targets soft (or null): returns
  // its loss already scaled for the reduction (unscaled for kNone).
  double row(int64_t r, const T* x, T* y, const T* soft) {
    const bool hard = a_.target != nullptr;
    const int64_t t = hard ? a_.target[r] : -1;
    const bool ignored = hard && t == a_.ignore_index;
    const double eps = a_.label_smoothing, uni = eps / static_cast<double>(n_);
    // Target weights q_j = w_j (b t_j + c) (kernel form) with their total mass, and the
    // extra -coef at the target class for class indices.
    double b = 0.0, c = uni, mass = 0.0, coef = 0.0, xt = 0.0;
    const T* tw = nullptr;
    if (hard && !ignored) {
      coef = (1.0 - eps) * (weight_ ? static_cast<double>(weight_[t]) : 1.0);
      mass = coef + uni * weight_total_;
      xt = static_cast<double>(x[t]);  // before an in-place gradient overwrites it
    } else if (!hard) {
      tw = soft;
      b = 1.0 - eps;
      mass = b * target_mass_[r] + uni * weight_total_;
    }
    const bool has_q = !hard || eps != 0.0;

    // The row's lse = M + l (l = log1p(rest)). Gradient rows that fit in L2 take the reload
    // way, which stores the exps in y and needs one exp per element instead of two; the
    // others the blocked two-pass sum (one read of the row, the exps recomputed in pass 2).
    // sum_j q_j (x_j - M) is taken before an in-place gradient overwrites x.
    const bool reload = y && !ignored && n_ * static_cast<int64_t>(sizeof(T)) <= kReloadBytes;
    RowLse lse;
    double dot = 0.0;
    if (reload) {
      lse = reload_lse(x, y, has_q ? tw : nullptr, has_q, b, c, &dot);
    } else {
      lse = row_lse(k_, x, n_);
    }
    T xmax = 0;
    double l = 0.0, q = 0.0;
    const double lse_v = lse.ok ? lse.value() : slow_lse(x, n_, &xmax, &l, &q);
    if (lse.ok) {
      xmax = static_cast<T>(lse.max);
      l = lse.l;
      q = lse.q;
    }
    if (a_.lse) a_.lse[r] = from_double<S>(lse_v);
    if (ignored) {
      if (y) fill(y, n_, T(0));
      return 0.0;
    }
    if (!std::isfinite(lse_v)) return nan_row(y);

    // Row loss, as a sum of terms that are >= 0 for non-negative weights and targets (so it is
    // never negative, and relatively accurate near 0): with lse = M + l,
    //   coef (lse - x_t) + sum_j q_j (lse - x_j) = coef (M - x_t) + mass l - sum_j q_j (x_j - M).
    // (M - x_t) + l rounds once: in long double for float64 rows (exp_sums.h's Wide).
    typedef typename Wide<T>::type W;
    const double m = static_cast<double>(xmax);
    const double ce_target = coef * static_cast<double>((static_cast<W>(m) - static_cast<W>(xt)) +
                                                        std::log1p(static_cast<W>(q)));
    double tau_coef = 1.0;  // comp-sum: d loss / d ce = p_t^(tau - 1)
    if (a_.tau != 1.0) tau_coef = std::exp((1.0 - a_.tau) * ce_target);
    const bool none = a_.reduction == Reduction::kNone;
    const double g = none ? 1.0 : ce_scale_, zg = none ? 1.0 : z_scale_;
    const double z = zg * 2.0 * a_.lse_square_scale * lse_v;  // d (lambda lse^2) / d lse
    if (y) {
      // Gradient: g (mass p - q - coef e_t) tau_coef + z p.
      const double pa = g * mass * tau_coef + z;
      if (reload && lse.ok) {
        // y holds exp(x) 2^-(e - 64): p = y 2^-64 / normalizer.
        const double s = std::ldexp(pa / lse.sum.normalizer(), -static_cast<int>(kRestShift));
        lk_.vgradfromexp(static_cast<size_t>(n_), y, y, static_cast<T>(s), weight_, tw,
                         static_cast<T>(g * b), static_cast<T>(g * c));
      } else if (lse.ok) {
        const double ret = lk_.vsoftmaxgrad(static_cast<size_t>(n_), x, y, lse.sum.normalizer(),
                                            lse.sum.e, static_cast<T>(pa), weight_, tw,
                                            static_cast<T>(g * b), static_cast<T>(g * c), xmax);
        if (has_q) dot = g != 0.0 && std::isfinite(g) ? ret / g : q_dot(x, tw, b, c, xmax);
      } else {
        if (has_q && !reload) dot = q_dot(x, tw, b, c, xmax);  // before x is overwritten
        slow_grad(x, y, xmax, l, pa, tw, g * b, g * c);
      }
      if (hard) {
        if (xt == m) {
          // The target holds the max: p_t = 1 / (1 + rest), and p_t - 1 = -rest / (1 + rest)
          // is formed from the rest, not as a difference that cancels to 0 when p_t rounds to 1.
          const double rest = std::expm1(l), p_t = 1.0 / (1.0 + rest), rho = rest * p_t;
          const double q_t = g * c * (weight_ ? static_cast<double>(weight_[t]) : 1.0);
          y[t] = static_cast<T>(g * tau_coef * ((mass - coef) * p_t - coef * rho) + z * p_t - q_t);
        } else {
          y[t] = static_cast<T>(static_cast<double>(y[t]) - g * coef * tau_coef);
        }
      }
    } else if (has_q) {
      dot = q_dot(x, tw, b, c, xmax);
    }
    double ce = ce_target + (has_q ? (mass - coef) * l - dot : 0.0);
    if (a_.tau != 1.0) ce = std::expm1((1.0 - a_.tau) * ce) / (1.0 - a_.tau);
    return ce * g + a_.lse_square_scale * lse_v * lse_v * zg;
  }

  // The reload way to a row's lse: the max (and where it is), sum_j q_j (x_j - M) if has_q,
  // then exp(x) 2^-(e - 64) written to y and summed with the max's term kept apart. Rows the
  // exact paths take (NaN, inf, beyond the scaled range) come back !ok with y untouched.
  RowLse reload_lse(const T* x, T* y, const T* tw, bool has_q, double b, double c, double* dot) {
    RowLse r;
    const size_t n = static_cast<size_t>(n_);
    T lo;
    size_t imax;
    const T m = k_.rmax(n, x, &lo, &imax);
    if (!(m == m) || !in_scaled_range(static_cast<double>(m))) return r;
    if (has_q) *dot = q_dot(x, tw, b, c, m);
    const double e = exponent_of(static_cast<double>(m)), es = e - kRestShift;
    r.sum.max = static_cast<double>(m);
    r.sum.e = e;
    r.sum.term = scale_down(k_.raddstoreexp(1, x + imax, y + imax, es, m), -kRestShift);
    r.sum.add_rest(scale_down(k_.raddstoreexp(imax, x, y, es, lo), -kRestShift));
    r.sum.add_rest(
        scale_down(k_.raddstoreexp(n - imax - 1, x + imax + 1, y + imax + 1, es, lo), -kRestShift));
    r.max = r.sum.max;
    r.q = r.sum.rest_ratio();
    r.l = std::log1p(r.q);
    r.ok = true;
    return r;
  }

  // sum_j q_j (x_j - s) without writing anything (the kernel with y = null).
  double q_dot(const T* x, const T* tw, double b, double c, T s) const {
    return lk_.vsoftmaxgrad(static_cast<size_t>(n_), x, nullptr, 1.0, 0.0, T(0), weight_, tw,
                            static_cast<T>(b), static_cast<T>(c), s);
  }

  // Far-range rows: p_j = exp(x_j - M) / (1 + rest) with x_j - M exact, then the same affine
  // update.
  void slow_grad(const T* x, T* y, T xmax, double l, double pa, const T* tw, double b,
                 double c) const {
    const double s = std::exp(l);
    for (int64_t j = 0; j < n_; ++j) {
      const double p = std::exp(static_cast<double>(x[j]) - static_cast<double>(xmax)) / s;
      double q = (tw ? b * static_cast<double>(tw[j]) : 0.0) + c;
      if (weight_) q *= static_cast<double>(weight_[j]);
      const double v = pa * p - q;  // 0 rather than a subnormal, as in the kernels
      y[j] = std::fabs(v) >= static_cast<double>(std::numeric_limits<T>::min()) ? static_cast<T>(v)
                                                                                : T(0);
    }
  }

  double nan_row(T* y) const {
    if (y) fill(y, n_, static_cast<T>(NAN));
    return NAN;
  }

  const CrossEntropyArgs<S>& a_;
  const SoftmaxKernels<T>& k_;
  const LossKernels<T>& lk_;
  const int64_t n_;
  const T* weight_ = nullptr;  // the class weights as T (a_.weight itself, or widened)
  std::vector<T> weight_store_;
  double weight_total_ = 0.0, ce_scale_ = 1.0, z_scale_ = 1.0;
  std::vector<double> target_mass_;
};

void check_targets(const int64_t* target, int64_t rows, int64_t classes) {
  for (int64_t r = 0; r < rows; ++r) {
    if (target[r] < 0 || target[r] >= classes)
      throw std::invalid_argument("target[" + std::to_string(r) +
                                  "] = " + std::to_string(target[r]) + " is out of range for " +
                                  std::to_string(classes) + " classes");
  }
}

// Combines per-row losses: row_loss for kNone, else the ordered sum over the divisor.
template <typename T>
double reduce_rows(const std::vector<double>& losses, Reduction red, T* row_loss) {
  if (red == Reduction::kNone) {
    for (size_t r = 0; r < losses.size(); ++r) row_loss[r] = from_double<T>(losses[r]);
    return 0.0;
  }
  return ordered_sum(losses) / reduction_divisor(red, static_cast<double>(losses.size()));
}

double gradient_scale(Reduction red, int64_t rows) {
  return red == Reduction::kMean ? 1.0 / static_cast<double>(rows) : 1.0;
}

// The spherical family (spherical_terms.h). The Z-loss takes mean and variance from two passes,
// the second about the mean, rather than from q / n - mu^2.
// Row r is o, its gradient goes to y (may be o, or null).
template <typename S, typename T = compute_t<S>>
double spherical_row(const SphericalLossArgs<S>& a, const LossKernels<T>& k, int64_t r, double g,
                     const T* o, T* y) {
  const int64_t n = a.classes;
  const int64_t c = a.target[r];
  const double oc = static_cast<double>(o[c]), dn = static_cast<double>(n);
  const double s = k.rdot(static_cast<size_t>(n), o, nullptr);
  SphericalTerms t;
  double h = 0.0;  // gradient: c1 (o - h) + c0 + ga e_c
  if (a.kind == SphericalKind::kZLoss) {
    const double mu = s / dn;
    const T mu_t = static_cast<T>(mu);
    // Second moment about mu rounded to T, corrected to the exact mean: sum (o - mu)^2 =
    // sum (o - mu_t)^2 - n (mu - mu_t)^2.
    const double dm = mu - static_cast<double>(mu_t);
    double var = (k.rsumsqdiff(static_cast<size_t>(n), o, mu_t) - dn * dm * dm) / dn;
    // A spread within the rounding of mu (32 ulp: the blocked sums) may be that rounding alone:
    // float64 [0.99] * 3 has mu 1 ulp off and sigma ~1e-16, which would make z_c +-1. A row of
    // equal outputs is flat (z_c := 0), as documented; the extra pass runs only on such rows.
    const double noise = 32.0 * std::numeric_limits<T>::epsilon() * std::fabs(mu);
    if (var > 0.0 && var <= noise * noise && k.rsumsqdiff(static_cast<size_t>(n), o, o[0]) == 0.0) {
      var = 0.0;
    }
    t = zloss_terms(oc, mu, std::isnan(var) ? var : std::sqrt(var > 0.0 ? var : 0.0), dn, a.a, a.b);
    h = mu;
  } else {
    const double q = k.rdot(static_cast<size_t>(n), o, o);
    t = spherical_terms(a.kind, oc, s, q, dn, a.a, a.b, a.eps);
  }
  // About the mean, the Z-loss's constant gs + 2 gq mu is exactly -ga / n; forming it from gs
  // and gq would cancel catastrophically for rows with a large offset.
  const double ga = g * t.ga, c1 = 2.0 * g * t.gq;
  const double c0 = a.kind == SphericalKind::kZLoss ? -ga / dn : g * t.gs;
  const double loss = t.loss;
  if (y) {
    k.vquad(static_cast<size_t>(n), o, y, static_cast<T>(h), T(0), static_cast<T>(c1),
            static_cast<T>(c0));
    y[c] = static_cast<T>(static_cast<double>(y[c]) + ga);
  }
  return loss;
}

// y = f(x) / sum f(x) for one row of a normalizer.
template <typename T>
void normalize_row(Normalizer kind, const LossKernels<T>& k, const T* x, T* y, int64_t n,
                   double eps) {
  const size_t un = static_cast<size_t>(n);
  const double dn = static_cast<double>(n);
  if (kind == Normalizer::kStableMax) {
    k.vstable(un, x, y, static_cast<T>(1.0 / k.rstablesum(un, x)), 0);
    return;
  }
  const double q = k.rdot(un, x, x);
  if (kind == Normalizer::kSpherical) {
    const double inv = 1.0 / (q + dn * eps);
    k.vquad(un, x, y, T(0), static_cast<T>(inv), T(0), static_cast<T>(eps * inv));
  } else {
    const double inv = 1.0 / (dn + k.rdot(un, x, nullptr) + 0.5 * q);
    k.vquad(un, x, y, T(0), static_cast<T>(0.5 * inv), static_cast<T>(inv), static_cast<T>(inv));
  }
}

// The exact KL row for the rows the kernels leave out (NaN, inf, far range), in double.
template <typename T>
double slow_kl_row(const T* s, const T* t, int64_t n, double g, T* y) {
  T ms, mt;
  double ms_l, mt_l;
  const double ls = slow_lse(s, n, &ms, &ms_l), lt = slow_lse(t, n, &mt, &mt_l);
  if (!std::isfinite(ls) || !std::isfinite(lt)) {
    if (y) fill(y, n, static_cast<T>(NAN));
    return NAN;
  }
  double kl = 0.0;
  for (int64_t j = 0; j < n; ++j) {
    const double lp = static_cast<double>(t[j]) - lt, lq = static_cast<double>(s[j]) - ls;
    const double p = std::exp(lp);
    if (p != 0.0) kl += p * (lp - lq);
    if (y) y[j] = static_cast<T>(g * (std::exp(lq) - p));
  }
  return kl;
}

}  // namespace

double cross_entropy(const CrossEntropyArgs<float>& args) {
  return CrossEntropy<float>(args).run();
}
double cross_entropy(const CrossEntropyArgs<double>& args) {
  return CrossEntropy<double>(args).run();
}
double cross_entropy(const CrossEntropyArgs<float16>& args) {
  return CrossEntropy<float16>(args).run();
}
double cross_entropy(const CrossEntropyArgs<bfloat16>& args) {
  return CrossEntropy<bfloat16>(args).run();
}

template <typename S>
double spherical_loss_impl(const SphericalLossArgs<S>& a) {
  using T = compute_t<S>;
  if (a.rows < 0 || a.classes < 1) throw std::invalid_argument("outputs: need at least one class");
  if (a.kind == SphericalKind::kZLoss && !(a.a > 0.0)) throw std::invalid_argument("a must be > 0");
  if (a.kind == SphericalKind::kLogSpherical && !(a.eps > 0.0))
    throw std::invalid_argument("eps must be > 0");
  if (a.reduction == Reduction::kNone && !a.row_loss && a.rows > 0)
    throw std::invalid_argument("row_loss is required for reduction none");
  check_targets(a.target, a.rows, a.classes);
  const LossKernels<T>& k = loss_kernels<T>();
  const double g = gradient_scale(a.reduction, a.rows);
  std::vector<double> losses(static_cast<size_t>(a.rows), 0.0);
  for_rows(a.rows, a.classes, a.num_threads, [&](int64_t r) {
    const S* o = a.outputs + r * a.stride;
    S* y = a.grad ? a.grad + r * a.grad_stride : nullptr;
    if constexpr (kIsHalf<S>) {  // widened, computed in place, the gradient narrowed
      thread_local RowBuffer<S> buf;
      T* v = buf.load(o, a.classes, 1, 1);
      losses[r] = spherical_row(a, k, r, g, v, y ? v : nullptr);
      if (y) buf.store(v, y, a.classes, 1, 1);
    } else {
      losses[r] = spherical_row(a, k, r, g, o, y);
    }
  });
  return reduce_rows(losses, a.reduction, a.row_loss);
}
double spherical_loss(const SphericalLossArgs<float>& a) { return spherical_loss_impl(a); }
double spherical_loss(const SphericalLossArgs<double>& a) { return spherical_loss_impl(a); }
double spherical_loss(const SphericalLossArgs<float16>& a) { return spherical_loss_impl(a); }
double spherical_loss(const SphericalLossArgs<bfloat16>& a) { return spherical_loss_impl(a); }

template <typename T>
void normalize_rows(Normalizer kind, const T* x, int64_t x_stride, T* y, int64_t y_stride,
                    int64_t rows, int64_t n, double eps, int num_threads) {
  if (kind == Normalizer::kSpherical && !(eps > 0.0))
    throw std::invalid_argument("eps must be > 0");
  const LossKernels<T>& k = loss_kernels<T>();
  for_rows(rows, n, num_threads,
           [&](int64_t r) { normalize_row(kind, k, x + r * x_stride, y + r * y_stride, n, eps); });
}

template <typename T>
double stablemax_cross_entropy(const T* logits, int64_t rows, int64_t classes, int64_t stride,
                               const int64_t* target, Reduction reduction, T* grad,
                               int64_t grad_stride, T* row_loss, int num_threads) {
  if (reduction == Reduction::kNone && !row_loss && rows > 0)
    throw std::invalid_argument("row_loss is required for reduction none");
  check_targets(target, rows, classes);
  const LossKernels<T>& k = loss_kernels<T>();
  const double g = gradient_scale(reduction, rows);
  std::vector<double> losses(static_cast<size_t>(rows), 0.0);
  for_rows(rows, classes, num_threads, [&](int64_t r) {
    const T* x = logits + r * stride;
    const int64_t t = target[r];
    const size_t n = static_cast<size_t>(classes);
    // The target's own s(x_t) kept apart, as for cross-entropy (exp_sums.h): the loss
    // log(sum / s_t) = log1p(rest / s_t) and the target's gradient stay relatively accurate
    // when x_t dominates, and the loss is never negative.
    const double rest = k.rstablesum(static_cast<size_t>(t), x) +
                        k.rstablesum(n - static_cast<size_t>(t) - 1, x + t + 1);
    T st, dst;  // s(x_t) and s'(x_t), from the kernels so every ISA agrees
    k.vstable(1, x + t, &st, T(1), 0);
    k.vstable(1, x + t, &dst, T(1), 1);
    const double s_t = static_cast<double>(st), sum = s_t + rest;
    losses[r] = std::isfinite(s_t) ? std::log1p(rest / s_t) : NAN;  // inf / inf
    if (grad) {
      // d / d x_k [log sum s - log s(x_t)] = s'(x_k) / sum - delta_kt s'(x_t) / s(x_t), at t
      // -s'(x_t) rest / (sum s(x_t)).
      T* y = grad + r * grad_stride;
      k.vstable(n, x, y, static_cast<T>(g / sum), 1);
      y[t] = static_cast<T>(-g * static_cast<double>(dst) * rest / (sum * s_t));
    }
  });
  return reduce_rows(losses, reduction, row_loss);
}

template <typename S>
double kl_div(const S* student, int64_t student_stride, const S* teacher, int64_t teacher_stride,
              int64_t rows, int64_t classes, double temperature, double divisor, S* grad,
              int64_t grad_stride, S* row_loss, int num_threads) {
  using T = compute_t<S>;
  if (!(temperature > 0.0 && std::isfinite(temperature)))
    throw std::invalid_argument("temperature must be > 0 and finite");
  if (divisor == 0.0 && !row_loss && rows > 0)
    throw std::invalid_argument("row_loss is required for per-row losses");
  const Isa isa = current_isa();  // both tables from one ISA, even while set_isa runs
  const SoftmaxKernels<T>& k = *softmax_kernels_for<T>(isa);
  const LossKernels<T>& lk = *loss_kernels_for<T>(isa);
  const double g = divisor == 0.0 ? 1.0 : 1.0 / divisor;
  const double inv_t = 1.0 / temperature;
  std::vector<double> losses(static_cast<size_t>(rows), 0.0);
  for_rows(rows, classes, num_threads, [&](int64_t r) {
    const S* s_row = student + r * student_stride;
    const S* t_row = teacher + r * teacher_stride;
    S* y_row = grad ? grad + r * grad_stride : nullptr;
    const T *s, *t;
    T* y;
    if constexpr (kIsHalf<S>) {  // widened; the gradient goes over the student's copy
      thread_local RowBuffer<S> student_buf, teacher_buf;
      T* sw = student_buf.load(s_row, classes, 1, 1);
      s = sw;
      t = teacher_buf.load(t_row, classes, 1, 1);
      y = y_row ? sw : nullptr;
    } else {
      s = s_row;
      t = t_row;
      y = y_row;
    }
    thread_local std::vector<T> buf;
    if (temperature != 1.0) {  // the tempered rows, in cache
      buf.resize(2 * static_cast<size_t>(classes));
      for (int64_t j = 0; j < classes; ++j) {
        buf[j] = static_cast<T>(static_cast<double>(s[j]) * inv_t);
        buf[classes + j] = static_cast<T>(static_cast<double>(t[j]) * inv_t);
      }
      s = buf.data();
      t = buf.data() + classes;
    }
    const RowLse ls = row_lse(k, s, classes), lt = row_lse(k, t, classes);
    // d KL / d student = (q - p) / temperature.
    const double gy = g * inv_t;
    if (!ls.ok || !lt.ok) {
      losses[r] = slow_kl_row(s, t, classes, gy, y);
    } else {
      const double c = (lt.max - ls.max) + (lt.l - ls.l);
      losses[r] = lk.rklgrad(static_cast<size_t>(classes), s, t, y, ls.sum.normalizer(), ls.sum.e,
                             lt.sum.normalizer(), lt.sum.e, static_cast<T>(gy), static_cast<T>(c));
    }
    if constexpr (kIsHalf<S>) {
      if (y_row) narrow(y, y_row, classes);
    }
  });
  if (divisor == 0.0) {
    for (int64_t r = 0; r < rows; ++r) row_loss[r] = from_double<S>(losses[r]);
    return 0.0;
  }
  return ordered_sum(losses) / divisor;
}

template <typename T>
void hl_gauss_targets(const T* values, int64_t count, double vmin, double vmax, int64_t num_bins,
                      double sigma, T* out) {
  if (!(vmin < vmax) || !std::isfinite(vmin) || !std::isfinite(vmax))
    throw std::invalid_argument("vmin, vmax: need finite vmin < vmax");
  if (num_bins < 1) throw std::invalid_argument("num_bins must be >= 1");
  if (!(sigma > 0.0 && std::isfinite(sigma))) throw std::invalid_argument("sigma must be > 0");
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(static_cast<double>(values[i])))
      throw std::invalid_argument("values[" + std::to_string(i) + "] is not finite");
  }
  const double width = (vmax - vmin) / static_cast<double>(num_bins);
  const double k = 1.0 / (sigma * std::sqrt(2.0));
  for (int64_t i = 0; i < count; ++i) {
    const double v = std::fmin(std::fmax(static_cast<double>(values[i]), vmin), vmax);
    T* row = out + i * num_bins;
    // CDF differences as erf differences: Phi(b) - Phi(a) = (erf(kb) - erf(ka)) / 2.
    double lo = std::erf((vmin - v) * k);
    const double total = std::erf((vmax - v) * k) - lo;
    for (int64_t j = 0; j < num_bins; ++j) {
      const double edge = j + 1 == num_bins ? vmax : vmin + static_cast<double>(j + 1) * width;
      const double hi = std::erf((edge - v) * k);
      row[j] = static_cast<T>((hi - lo) / total);
      lo = hi;
    }
  }
}

#define SOFTZO_INSTANTIATE_LOSSES(T)                                                              \
  template void normalize_rows<T>(Normalizer, const T*, int64_t, T*, int64_t, int64_t, int64_t,   \
                                  double, int);                                                   \
  template double stablemax_cross_entropy<T>(const T*, int64_t, int64_t, int64_t, const int64_t*, \
                                             Reduction, T*, int64_t, T*, int);                    \
  template double kl_div<T>(const T*, int64_t, const T*, int64_t, int64_t, int64_t, double,       \
                            double, T*, int64_t, T*, int);                                        \
  template void hl_gauss_targets<T>(const T*, int64_t, double, double, int64_t, double, T*);

SOFTZO_INSTANTIATE_LOSSES(float)
SOFTZO_INSTANTIATE_LOSSES(double)
template double kl_div<float16>(const float16*, int64_t, const float16*, int64_t, int64_t, int64_t,
                                double, double, float16*, int64_t, float16*, int);
template double kl_div<bfloat16>(const bfloat16*, int64_t, const bfloat16*, int64_t, int64_t,
                                 int64_t, double, double, bfloat16*, int64_t, bfloat16*, int);

}  // namespace softzo
