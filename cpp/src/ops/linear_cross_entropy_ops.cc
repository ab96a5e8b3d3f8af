// Fused linear layer + cross-entropy over blocks of classes (softzo/linear_cross_entropy.h):
// one sgemm per (class block, row chunk) into one buffer, the row statistics of exp_sums.h
// merged block by block, and the gradient written over the buffer and fed to the two gradient
// GEMMs. Row work between the GEMMs runs on the library's pool.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/blas.h"
#include "common/thread_pool.h"
#include "dispatch/dispatch.h"
#include "ops/exp_sums.h"
#include "ops/half_rows.h"
#include "softzo/linear_cross_entropy.h"

namespace softzo {
namespace {

// Classes per block: an sgemm of N x 1024 x d runs at OpenBLAS's full speed, and a row's block
// of logits (4 KiB) stays in L1 for its statistics.
constexpr int64_t kClassBlock = 1024;
// The logits buffer (rows of a chunk x one class block): 16 MiB, so 4096 rows per chunk.
constexpr int64_t kBufferFloats = int64_t{1} << 22;
// Rows per tile of the optional gradient filtering.
constexpr int64_t kFilterRows = 128;
// Row tasks on the pool cover about this many logits.
constexpr int64_t kTaskElements = int64_t{1} << 16;

// What a row's statistics say once every block has been seen.
enum class RowKind : char { kIgnored, kNormal, kFar, kNan };

struct RowStats {
  ExpSum sum;              // merged block sums (meaningful for kNormal rows)
  double max = -INFINITY;  // the row's max logit, over every block
  double target_logit = 0.0;
  double logit_sum = 0.0;  // for label smoothing
  double rest = 0.0;       // kFar: sum of exp(z - max) over all but the max, exact
  bool unsafe = false;     // a block left the scaled kernels (NaN or above their range)
  bool nan = false;
  bool max_seen = false;  // kFar, in the exact pass: the max's own term already skipped
  RowKind kind = RowKind::kNormal;
  double l = 0.0;  // lse - max = log1p(rest)
  double g = 0.0;  // the row's gradient weight
};

int resolve_threads(int requested) { return requested > 0 ? requested : default_num_threads(); }

// C (m x n) = op(A) op(B) + beta C as slices of C's rows or columns, one single-threaded
// OpenBLAS call each, on the library's pool. The slices depend on the shape alone, so every
// element of C is computed by the same call for any thread count (OpenBLAS's own threading
// blocks k differently for different thread counts, which changed last bits). Each slice packs
// the operand shared by all slices once more: splitting the larger side of C keeps that the
// smaller one (a 4096 x 1024 x 2048 GEMM, ~100 ms here, copies 24 MB more in 4 slices). At
// most 4 slices, each of at least 256 rows or columns.
void gemm_sliced(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc, int threads) {
  if (m == 0 || n == 0) return;
  constexpr int64_t kMaxSlices = 4, kMinSide = 256;
  const bool by_rows = m >= n;
  const int64_t side = by_rows ? m : n;
  const int64_t slices = std::max<int64_t>(1, std::min(kMaxSlices, side / kMinSide));
  parallel_for(slices, threads, [&](int64_t s) {
    const int64_t lo = side * s / slices, len = side * (s + 1) / slices - lo;
    if (by_rows) {  // rows lo.. of op(A) and C
      blas::gemm(ta, tb, len, n, k, 1.0f, ta ? a + lo : a + lo * lda, lda, b, ldb, beta,
                 c + lo * ldc, ldc);
    } else {  // columns lo.. of op(B) and C
      blas::gemm(ta, tb, m, len, k, 1.0f, a, lda, tb ? b + lo * ldb : b + lo, ldb, beta, c + lo,
                 ldc);
    }
  });
}

template <typename S>
class LinearCrossEntropy {
 public:
  using T = compute_t<S>;
  static_assert(std::is_same_v<T, float>, "sgemm: float32, float16 or bfloat16 inputs");

  explicit LinearCrossEntropy(const LinearCrossEntropyArgs<S>& a)
      : a_(a),
        k_(softmax_kernels<float>()),
        lk_(loss_kernels<float>()),
        n_(a.rows),
        d_(a.dim),
        v_(a.classes),
        threads_(resolve_threads(a.num_threads)),
        block_(std::min<int64_t>(kClassBlock, std::max<int64_t>(a.classes, 1))),
        chunk_(std::max<int64_t>(1, std::min<int64_t>(a.rows, kBufferFloats / block_))),
        eps_(a.label_smoothing) {}

  double run() {
    check();
    // Each OpenBLAS call runs on one thread (gemm_sliced shares the work on the pool).
    const blas::ScopedBlasThreads blas_threads(1);
    h_ = widened(a_.h, n_ * d_, &h_store_);
    check_finite_h();
    stats_.assign(static_cast<size_t>(n_), RowStats{});
    buffer_.assign(static_cast<size_t>(chunk_ * block_), 0.0f);

    sweep([&](int64_t r, float* z, int64_t j0, int64_t nj) { block_stats(r, z, j0, nj); });
    const int64_t far = classify_rows();
    if (far > 0) {  // rare: logits beyond +-65536 (or all below -65426) in some row
      sweep([&](int64_t r, float* z, int64_t j0, int64_t nj) { exact_rest(r, z, j0, nj); });
    }
    std::vector<double> losses(static_cast<size_t>(n_), 0.0);
    for (int64_t r = 0; r < n_; ++r) losses[r] = row_loss(stats_[r]);
    if (a_.grad_h) gradients();

    if (a_.reduction == Reduction::kNone) {
      for (int64_t r = 0; r < n_; ++r) a_.row_loss[r] = from_double<S>(losses[r]);
      return 0.0;
    }
    double total = 0.0;  // in row order: the same for any thread count
    for (double v : losses) total += v;
    if (a_.reduction == Reduction::kMean) return total / static_cast<double>(counted_);  // 0/0: NaN
    return total;
  }

 private:
  void check() const {
    if (n_ < 0 || d_ < 1 || v_ < 1)
      throw std::invalid_argument("h, weight: need dim >= 1 and at least one class");
    if (!a_.h || !a_.weight || !a_.target) throw std::invalid_argument("h, weight, target: null");
    if (!(eps_ >= 0.0 && eps_ <= 1.0))
      throw std::invalid_argument("label_smoothing must be in [0, 1]");
    if (!(a_.softcap >= 0.0 && std::isfinite(a_.softcap)))
      throw std::invalid_argument("softcap must be > 0 and finite (or 0 for none)");
    if (!(a_.grad_filter >= 0.0 && std::isfinite(a_.grad_filter)))
      throw std::invalid_argument("grad_filter must be >= 0 and finite");
    if (!a_.grad_h != !a_.grad_weight)
      throw std::invalid_argument("grad_h and grad_weight: give both or neither");
    if (a_.grad_bias && !a_.grad_h) throw std::invalid_argument("grad_bias needs grad_h");
    if (a_.grad_bias && !a_.bias) throw std::invalid_argument("grad_bias needs bias");
    if (a_.reduction == Reduction::kNone && !a_.row_loss && n_ > 0)
      throw std::invalid_argument("row_loss is required for reduction none");
    for (int64_t r = 0; r < n_; ++r) {
      const int64_t t = a_.target[r];
      if (t != a_.ignore_index && (t < 0 || t >= v_))
        throw std::invalid_argument("target[" + std::to_string(r) + "] = " + std::to_string(t) +
                                    " is out of range for " + std::to_string(v_) +
                                    " classes (and is not ignore_index)");
    }
  }

  // x as float: itself, or widened into *store (in pieces on the pool).
  const float* widened(const S* x, int64_t count, std::vector<float>* store) const {
    if constexpr (kIsHalf<S>) {
      store->resize(static_cast<size_t>(count));
      float* y = store->data();
      convert_in_chunks(count, threads_,
                        [&](int64_t off, int64_t len) { widen(x + off, y + off, len); });
      return y;
    } else {
      (void)count;
      (void)store;
      return x;
    }
  }

  void check_finite_h() const {
    std::vector<char> bad(static_cast<size_t>(n_), 0);
    for_rows(n_, d_, [&](int64_t r) {
      const float* h = h_ + r * d_;
      for (int64_t i = 0; i < d_; ++i) bad[r] |= !std::isfinite(h[i]);
    });
    for (int64_t r = 0; r < n_; ++r) {
      if (bad[r]) throw std::invalid_argument("h: row " + std::to_string(r) + " is not finite");
    }
  }

  // f(r) for rows [0, rows) of n elements each, on the pool.
  template <typename F>
  void for_rows(int64_t rows, int64_t n, F&& f) const {
    const int64_t per_task = std::max<int64_t>(1, kTaskElements / std::max<int64_t>(n, 1));
    const int64_t tasks = (rows + per_task - 1) / per_task;
    parallel_for(tasks, threads_, [&](int64_t t) {
      const int64_t end = std::min(rows, (t + 1) * per_task);
      for (int64_t r = t * per_task; r < end; ++r) f(r);
    });
  }

  // One pass over the class blocks: per block (its weights widened once) and row chunk, the
  // logits z = h W^T + bias (soft-capped) by one sgemm, then f(row, z_row, j0, nj) per row.
  template <typename F>
  void sweep(F&& f) {
    for (int64_t j0 = 0; j0 < v_; j0 += block_) {
      const int64_t nj = std::min(block_, v_ - j0);
      const float* w = block_weights(j0, nj);
      for (int64_t c0 = 0; c0 < n_; c0 += chunk_) {
        const int64_t rows = std::min(chunk_, n_ - c0);
        chunk_logits(c0, rows, j0, nj, w);
        for_rows(rows, nj, [&](int64_t i) { f(c0 + i, buffer_.data() + i * nj, j0, nj); });
        after_chunk(c0, rows, j0, nj, w);
      }
      after_block(j0, nj);
    }
  }

  const float* block_weights(int64_t j0, int64_t nj) {
    if constexpr (kIsHalf<S>) {
      return widened(a_.weight + j0 * d_, nj * d_, &w_store_);
    } else {
      return a_.weight + j0 * d_;
    }
  }

  void chunk_logits(int64_t c0, int64_t rows, int64_t j0, int64_t nj, const float* w) {
    float* z = buffer_.data();
    gemm_sliced(false, true, rows, nj, d_, h_ + c0 * d_, d_, w, d_, 0.0f, z, nj, threads_);
    if (!a_.bias && a_.softcap == 0.0) return;
    const float* b = a_.bias ? block_bias(j0, nj) : nullptr;
    const float cap = static_cast<float>(a_.softcap);
    for_rows(rows, nj, [&](int64_t i) {
      float* row = z + i * nj;
      if (b) {
        for (int64_t j = 0; j < nj; ++j) row[j] += b[j];
      }
      if (cap > 0.0f) k_.vsoftcap(static_cast<size_t>(nj), row, row, cap);
    });
  }

  const float* block_bias(int64_t j0, int64_t nj) {
    if constexpr (kIsHalf<S>) {
      return widened(a_.bias + j0, nj, &bias_store_);
    } else {
      (void)nj;
      return a_.bias + j0;
    }
  }

  bool ignored(int64_t r) const { return a_.target[r] == a_.ignore_index; }

  // ---- the first sweep: each row's statistics, block after block ----------------------------

  void block_stats(int64_t r, const float* z, int64_t j0, int64_t nj) {
    if (ignored(r)) return;
    RowStats& s = stats_[r];
    const size_t n = static_cast<size_t>(nj);
    bool unsafe = false;
    const ExpSum part = blocked_exp_sum(k_, z, n, &unsafe);
    if (unsafe) {  // NaN or beyond the scaled range: only the max is kept (the exact pass)
      float lo;
      size_t at;
      const float m = k_.rmax(n, z, &lo, &at);
      if (std::isnan(m)) s.nan = true;
      s.max = std::max(s.max, static_cast<double>(m));
      s.unsafe = true;
    } else {
      s.max = std::max(s.max, part.max);
      if (!s.unsafe) s.sum = merge(s.sum, part);
    }
    const int64_t t = a_.target[r];
    if (t >= j0 && t < j0 + nj) s.target_logit = static_cast<double>(z[t - j0]);
    if (eps_ != 0.0) s.logit_sum += lk_.rdot(n, z, nullptr);
  }

  // Returns the number of rows that take the exact pass; sets each row's kind and weight.
  int64_t classify_rows() {
    counted_ = 0;
    for (int64_t r = 0; r < n_; ++r) counted_ += !ignored(r);
    const double scale =
        a_.reduction == Reduction::kMean ? 1.0 / static_cast<double>(counted_) : 1.0;
    int64_t far = 0;
    for (int64_t r = 0; r < n_; ++r) {
      RowStats& s = stats_[r];
      s.g = scale * (a_.row_scale ? static_cast<double>(a_.row_scale[r]) : 1.0);
      if (ignored(r)) {
        s.kind = RowKind::kIgnored;
      } else if (s.nan || !std::isfinite(s.max)) {  // NaN, +inf, or only -inf: NaN (PyTorch)
        s.kind = RowKind::kNan;
      } else if (s.unsafe || !in_scaled_range(s.max)) {
        s.kind = RowKind::kFar;
        ++far;
      } else {
        s.l = s.sum.log1p_rest();
      }
    }
    return far;
  }

  // The exact pass for far rows: sum of exp(z - max) with z - max exact (scalar), leaving out
  // the max's first occurrence (its term, 1, is counted exactly in log1p).
  void exact_rest(int64_t r, const float* z, int64_t, int64_t nj) {
    RowStats& s = stats_[r];
    if (s.kind != RowKind::kFar) return;
    const float m = static_cast<float>(s.max);
    size_t skip = static_cast<size_t>(nj);
    if (!s.max_seen) {
      float lo;
      size_t at;
      if (k_.rmax(static_cast<size_t>(nj), z, &lo, &at) == m) {
        skip = at;
        s.max_seen = true;
      }
    }
    s.rest += softzo_f32_raddexpminusmax_exact(static_cast<size_t>(nj), z, m, skip);
    s.l = std::log1p(s.rest);
  }

  // The row's loss, a sum of non-negative terms (exp_sums.h): with lse = M + l,
  //   (1 - eps) (lse - z_t) + eps (lse - mean z) = (1 - eps) ((M - z_t) + l) + eps ((M - mean z) +
  //   l).
  double row_loss(const RowStats& s) const {
    switch (s.kind) {
      case RowKind::kIgnored:
        return 0.0;
      case RowKind::kNan:
        return NAN;
      default: {
        double loss = (1.0 - eps_) * ((s.max - s.target_logit) + s.l);
        if (eps_ != 0.0) loss += eps_ * ((s.max - s.logit_sum / static_cast<double>(v_)) + s.l);
        return loss;
      }
    }
  }

  // ---- the second sweep: dL/dz over the buffer, then the gradient GEMMs ---------------------

  void gradients() {
    if constexpr (kIsHalf<S>) {
      gh_store_.assign(static_cast<size_t>(n_ * d_), 0.0f);
      gh_ = gh_store_.data();
    } else {
      gh_ = a_.grad_h;
      std::fill(gh_, gh_ + n_ * d_, 0.0f);
    }
    if (a_.grad_bias) gb_.assign(static_cast<size_t>(v_), 0.0f);
    ones_.assign(static_cast<size_t>(chunk_), 1.0f);
    tile_kept_.assign(static_cast<size_t>((chunk_ + kFilterRows - 1) / kFilterRows), 1);
    row_small_.assign(static_cast<size_t>(chunk_), 0);
    grad_pass_ = true;
    sweep([&](int64_t r, float* z, int64_t j0, int64_t nj) { block_gradient(r, z, j0, nj); });
    grad_pass_ = false;
    if constexpr (kIsHalf<S>) narrow(gh_, a_.grad_h, n_ * d_);
    if (a_.grad_bias) {
      for (int64_t j = 0; j < v_; ++j) a_.grad_bias[j] = from_double<S>(gb_[j]);
    }
  }

  // z (the block's logits of row r) becomes dL/dz = g (p - q) (times the cap's derivative),
  // p = softmax, q = (1 - eps) onehot(t) + eps / V.
  void block_gradient(int64_t r, float* z, int64_t j0, int64_t nj) {
    const RowStats& s = stats_[r];
    const size_t n = static_cast<size_t>(nj);
    const int64_t t = a_.target[r];
    const bool has_target = t >= j0 && t < j0 + nj;
    const int64_t local = r % chunk_;
    if (s.kind == RowKind::kIgnored) {
      std::fill(z, z + nj, 0.0f);
      row_small_[local] = 1;
      return;
    }
    if (s.kind == RowKind::kNan) {
      std::fill(z, z + nj, NAN);
      row_small_[local] = 0;
      return;
    }
    const bool capped = a_.softcap > 0.0;
    thread_local std::vector<float> scratch;
    float* y = z;
    if (capped) {  // the capped logits are needed for the cap's derivative
      scratch.resize(n);
      y = scratch.data();
    }
    const double g = s.g, uniform = g * eps_ / static_cast<double>(v_);
    double rest;
    if (s.kind == RowKind::kNormal) {
      lk_.vsoftmaxgrad(n, z, y, s.sum.normalizer(), s.sum.e, static_cast<float>(g), nullptr,
                       nullptr, 0.0f, static_cast<float>(uniform), 0.0f);
      rest = std::expm1(s.l);
    } else {  // far: p = exp(z - M) / (1 + rest), exactly, then g p - uniform
      rest = s.rest;
      softzo_f32_vscaleexpminusmax_exact(n, z, y, static_cast<float>(s.max),
                                         static_cast<float>(1.0 / (1.0 + rest)));
      for (size_t j = 0; j < n; ++j) y[j] = static_cast<float>(g * y[j] - uniform);
    }
    if (has_target) {
      float& yt = y[t - j0];
      if (s.target_logit == s.max) {
        // The target holds the max: p_t - 1 = -rest / (1 + rest), formed from the rest rather
        // than as a difference that rounds to 0 when p_t rounds to 1 (as in cross_entropy).
        const double p_t = 1.0 / (1.0 + rest), rho = rest * p_t;
        yt = static_cast<float>(g * (eps_ * p_t - (1.0 - eps_) * rho) - uniform);
      } else {
        yt = static_cast<float>(static_cast<double>(yt) - g * (1.0 - eps_));
      }
    }
    if (capped) {  // d (c tanh(u / c)) / du = 1 - (capped / c)^2
      const float inv = static_cast<float>(1.0 / a_.softcap);
      for (size_t j = 0; j < n; ++j) {
        const float q = z[j] * inv;
        z[j] = y[j] * (1.0f - q * q);
      }
    }
    if (a_.grad_filter > 0.0) {
      const float limit = static_cast<float>(a_.grad_filter * std::fabs(g));
      bool small = !has_target;
      for (size_t j = 0; small && j < n; ++j) small = std::fabs(z[j]) < limit;
      row_small_[local] = small;
    }
  }

  // After the gradient of a chunk's block is in the buffer: grad_h[chunk] += dz W_block and
  // grad_W[block] += dz^T h[chunk] (and the bias's column sums), over runs of kept tiles.
  void after_chunk(int64_t c0, int64_t rows, int64_t j0, int64_t nj, const float* w) {
    if (!grad_pass_) return;
    if (j0 != block_j0_) {  // a new block: its weight gradient starts at 0
      block_j0_ = j0;
      gw_ = block_weight_gradient(j0, nj);
      std::fill(gw_, gw_ + nj * d_, 0.0f);
    }
    const int64_t tiles = (rows + kFilterRows - 1) / kFilterRows;
    for (int64_t t = 0; t < tiles; ++t) {
      bool kept = a_.grad_filter == 0.0;
      for (int64_t i = t * kFilterRows; !kept && i < std::min(rows, (t + 1) * kFilterRows); ++i)
        kept = !row_small_[i];
      tile_kept_[t] = kept;
    }
    const float* dz = buffer_.data();
    for (int64_t t = 0; t < tiles;) {
      if (!tile_kept_[t]) {
        ++t;
        continue;
      }
      int64_t end = t;
      while (end < tiles && tile_kept_[end]) ++end;
      const int64_t r0 = t * kFilterRows, r1 = std::min(rows, end * kFilterRows);
      const float* d = dz + r0 * nj;
      gemm_sliced(false, false, r1 - r0, d_, nj, d, nj, w, d_, 1.0f, gh_ + (c0 + r0) * d_, d_,
                  threads_);
      gemm_sliced(true, false, nj, d_, r1 - r0, d, nj, h_ + (c0 + r0) * d_, d_, 1.0f, gw_, d_,
                  threads_);
      if (a_.grad_bias) blas::gemv_t(r1 - r0, nj, 1.0f, d, nj, ones_.data(), 1.0f, gb_.data() + j0);
      t = end;
    }
  }

  // The float32 accumulator of the block's weight gradient: the output itself, or a buffer.
  float* block_weight_gradient(int64_t j0, int64_t nj) {
    if constexpr (kIsHalf<S>) {
      gw_store_.resize(static_cast<size_t>(nj * d_));
      return gw_store_.data();
    } else {
      return a_.grad_weight + j0 * d_;
    }
  }

  void after_block(int64_t j0, int64_t nj) {
    if constexpr (kIsHalf<S>) {
      if (grad_pass_) narrow(gw_, a_.grad_weight + j0 * d_, nj * d_);
    } else {
      (void)j0;
      (void)nj;
    }
  }

  const LinearCrossEntropyArgs<S>& a_;
  const SoftmaxKernels<float>& k_;
  const LossKernels<float>& lk_;
  const int64_t n_, d_, v_;
  const int threads_;
  const int64_t block_, chunk_;
  const double eps_;
  const float* h_ = nullptr;
  std::vector<float> h_store_, w_store_, bias_store_, buffer_;
  std::vector<RowStats> stats_;
  int64_t counted_ = 0;
  // The gradient pass.
  bool grad_pass_ = false;
  float* gh_ = nullptr;
  float* gw_ = nullptr;
  int64_t block_j0_ = -1;
  std::vector<float> gh_store_, gw_store_, gb_, ones_;
  std::vector<char> tile_kept_, row_small_;
};

}  // namespace

double linear_cross_entropy(const LinearCrossEntropyArgs<float>& args) {
  return LinearCrossEntropy<float>(args).run();
}
double linear_cross_entropy(const LinearCrossEntropyArgs<float16>& args) {
  return LinearCrossEntropy<float16>(args).run();
}
double linear_cross_entropy(const LinearCrossEntropyArgs<bfloat16>& args) {
  return LinearCrossEntropy<bfloat16>(args).run();
}

}  // namespace softzo
