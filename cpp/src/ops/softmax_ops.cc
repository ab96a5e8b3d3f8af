// Softmax-family ops: row and chunk splitting, the thread pool, the choice of algorithm, and
// the exact special-value path that keeps the vector kernels simple.
#include <cmath>
#include <stdexcept>
#include <vector>

#include "dispatch/dispatch.h"
#include "ops/thread_pool.h"
#include "softzo/softmax.h"

namespace softzo {
namespace {

// Rows longer than this are split into kChunk pieces that threads share. Both depend only on
// the row length, so the summation order (and every output bit) is independent of threads.
constexpr int64_t kSplitThreshold = int64_t{1} << 18;
constexpr int64_t kChunk = int64_t{1} << 16;
// Short rows are grouped so one task touches about this many elements (~256 KiB of float32),
// enough to amortise the atomic counter and small enough to balance 2 threads on 64 rows.
constexpr int64_t kTaskElements = int64_t{1} << 16;
constexpr double kLn2 = 0.693147180559945309417;
constexpr double kLog2e = 1.44269504088896340736;
// ln 2 split so that e * kLn2Hi is exact for the |e| < 2^21 that two-pass exponents reach: a
// plain e * ln2 would cost ~1e-16 * |e| absolute, too much for float64 at |x| ~ 1e4.
constexpr double kLn2Hi = 0x1.62e42feep-1;
constexpr double kLn2Lo = 0x1.a39ef35793c76p-33;

using Op = SoftmaxOp;

int64_t num_chunks(int64_t n) { return n > kSplitThreshold ? (n + kChunk - 1) / kChunk : 1; }

inline double exact_sum(int64_t n, const float* x, float m) {
  return softzo_f32_raddexpminusmax_exact(static_cast<size_t>(n), x, m);
}
inline double exact_sum(int64_t n, const double* x, double m) {
  return softzo_f64_raddexpminusmax_exact(static_cast<size_t>(n), x, m);
}
inline void exact_scale(int64_t n, const float* x, float* y, float m, float s) {
  softzo_f32_vscaleexpminusmax_exact(static_cast<size_t>(n), x, y, m, s);
}
inline void exact_scale(int64_t n, const double* x, double* y, double m, double s) {
  softzo_f64_vscaleexpminusmax_exact(static_cast<size_t>(n), x, y, m, s);
}

// Runs f(chunk, offset, length) over a row's chunks, on the pool when the row is split.
template <typename F>
void each_chunk(int64_t n, int threads, F&& f) {
  const int64_t chunks = num_chunks(n);
  if (chunks == 1) {
    f(0, 0, n);
    return;
  }
  parallel_for(chunks, threads, [&](int64_t c) {
    const int64_t off = c * kChunk;
    f(c, off, n - off < kChunk ? n - off : kChunk);
  });
}

// A fixed-size array kept inline up to 4 elements: per-chunk partial results (rows that are
// not split, nearly all, have one chunk) and a layout's outer dimensions never touch the heap.
template <typename V>
class SmallArray {
 public:
  explicit SmallArray(int64_t size, V init = V()) {
    if (size > kInline) heap_.resize(static_cast<size_t>(size));
    data_ = size > kInline ? heap_.data() : inline_;
    for (int64_t i = 0; i < size; ++i) data_[i] = init;
  }
  SmallArray(const SmallArray&) = delete;  // data_ may point into this object
  SmallArray& operator=(const SmallArray&) = delete;
  V& operator[](int64_t i) { return data_[i]; }
  const V& operator[](int64_t i) const { return data_[i]; }

 private:
  static constexpr int64_t kInline = 4;
  V inline_[kInline];
  std::vector<V> heap_;
  V* data_;
};

template <typename T>
class RowSolver {
 public:
  RowSolver(Op op, SoftmaxAlgorithm algo, AllMasked masked, int threads)
      : k_(softmax_kernels<T>()), op_(op), algo_(algo), masked_(masked), threads_(threads) {}

  // Computes one row; for kLogSumExp, y is unused and the result is returned.
  T run(const T* x, T* y, int64_t n) {
    if (n == 0) return op_ == Op::kLogSumExp ? static_cast<T>(-INFINITY) : T(0);
    switch (algo_) {
      case SoftmaxAlgorithm::kTwoPass:
        return two_pass(x, y, n);
      case SoftmaxAlgorithm::kOnline:
        return online(x, y, n);
      default:
        return three_pass(x, y, n);
    }
  }

 private:
  // Three passes. Rows whose max is NaN or infinite take the special-value path, rows whose
  // max is outside the scaled kernels' range the exact scalar one.
  T three_pass(const T* x, T* y, int64_t n) {
    const int64_t chunks = num_chunks(n);
    SmallArray<T> maxima(chunks), minima(chunks);
    each_chunk(n, threads_, [&](int64_t c, int64_t off, int64_t len) {
      maxima[c] = k_.rmax(len, x + off, &minima[c]);
    });
    T m = maxima[0], lo = minima[0];
    for (int64_t c = 1; c < chunks; ++c) {
      m = maxima[c] > m || std::isnan(maxima[c]) ? maxima[c] : m;
      lo = minima[c] < lo ? minima[c] : lo;
    }
    if (!std::isfinite(m)) return special(x, y, n);
    if (!in_scaled_range(m)) return far_range(x, y, n, m);

    const double e = std::nearbyint(static_cast<double>(m) * kLog2e);
    const bool reload = op_ == Op::kSoftmax && algo_ == SoftmaxAlgorithm::kThreePassReload;
    SmallArray<double> sums(chunks);
    each_chunk(n, threads_, [&](int64_t c, int64_t off, int64_t len) {
      sums[c] =
          reload ? k_.raddstoreexp(len, x + off, y + off, e, lo) : k_.raddexp(len, x + off, e, lo);
    });
    double s = 0.0;
    for (int64_t c = 0; c < chunks; ++c) s += sums[c];
    if (!reload) return finish(x, y, n, s, e);
    const T inv = static_cast<T>(1.0 / s);
    each_chunk(n, threads_,
               [&](int64_t, int64_t off, int64_t len) { k_.vscale(len, y + off, y + off, inv); });
    return T(0);
  }

  T two_pass(const T* x, T* y, int64_t n) {
    const int64_t chunks = num_chunks(n);
    SmallArray<softzo_extexp> pairs(chunks);
    SmallArray<int> unsafe(chunks, 0);
    each_chunk(n, threads_, [&](int64_t c, int64_t off, int64_t len) {
      pairs[c] = k_.raddextexp(len, x + off, &unsafe[c]);
    });
    double e = -INFINITY, m = 0.0;
    bool safe = true;
    for (int64_t c = 0; c < chunks; ++c) {
      safe = safe && !unsafe[c];
      if (pairs[c].m == 0.0) continue;
      if (pairs[c].e > e) {
        m = e == -INFINITY ? 0.0 : std::ldexp(m, static_cast<int>(e - pairs[c].e));
        e = pairs[c].e;
      }
      m += std::ldexp(pairs[c].m, static_cast<int>(pairs[c].e - e));
    }
    // The clamp at -LIMIT is exact only if the row max is 105+ above it (ulp of 2^-149).
    if (!safe || !(m > 0.0) || e * kLn2 < -SOFTZO_EXTEXP_LIMIT + 110.0) return three_pass(x, y, n);
    return finish(x, y, n, m, e);
  }

  T online(const T* x, T* y, int64_t n) {
    const int64_t chunks = num_chunks(n);
    SmallArray<softzo_online> parts(chunks);
    each_chunk(n, threads_, [&](int64_t c, int64_t off, int64_t len) {
      parts[c] = k_.ronlinesumexp(len, x + off);
    });
    double mx = parts[0].max;
    for (int64_t c = 1; c < chunks; ++c) mx = parts[c].max > mx ? parts[c].max : mx;
    double s = 0.0;
    for (int64_t c = 0; c < chunks; ++c) s += parts[c].sum * std::exp(parts[c].max - mx);
    if (!(std::isfinite(s) && s > 0.0 && in_scaled_range(mx))) return three_pass(x, y, n);
    // sum * e^mx as m * 2^e: e^(mx - e ln2) with the split ln2 keeps mx's full precision.
    const double e = std::nearbyint(mx * kLog2e);
    return finish(x, y, n, s * std::exp((mx - e * kLn2Hi) - e * kLn2Lo), e);
  }

  static bool in_scaled_range(double m) {
    return m <= SOFTZO_EXTEXP_LIMIT && m >= -SOFTZO_EXTEXP_LIMIT + 110.0;
  }

  // The last pass, from sum_i exp(x_i) = m * 2^e.
  T finish(const T* x, T* y, int64_t n, double m, double e) {
    const double lse_hi = e * kLn2Hi, lse_lo = std::log(m) + e * kLn2Lo;
    // c1 = lse rounded to T and c2 the rest: x - c1 is exact where x is near lse.
    const T c1 = static_cast<T>(lse_hi + lse_lo);
    switch (op_) {
      case Op::kLogSumExp:
        return c1;
      case Op::kLogSoftmax:
        write_log_softmax(x, y, n, c1, (lse_hi - static_cast<double>(c1)) + lse_lo);
        return T(0);
      case Op::kSoftmax:
        break;
    }
    each_chunk(n, threads_, [&](int64_t, int64_t off, int64_t len) {
      k_.vscaleextexp(len, x + off, y + off, m, e);
    });
    return T(0);
  }

  // Rows with a finite max beyond +-LIMIT (1e30 entries, rows of only -1e30): exact scalar loops.
  T far_range(const T* x, T* y, int64_t n, T m) {
    const double s = exact_sum(n, x, m);
    switch (op_) {
      case Op::kLogSumExp:
        return static_cast<T>(static_cast<double>(m) + std::log(s));
      case Op::kLogSoftmax:
        write_log_softmax(x, y, n, m, std::log(s));
        return T(0);
      case Op::kSoftmax:
        break;
    }
    exact_scale(n, x, y, m, static_cast<T>(1.0 / s));
    return T(0);
  }

  // (x - c1) - c2 rather than x - (c1 + c2): the subtraction nearest x is then exact for the
  // largest entries (pytorch#11752).
  void write_log_softmax(const T* x, T* y, int64_t n, T c1, double c2) {
    const T c2t = static_cast<T>(c2);
    each_chunk(n, threads_, [&](int64_t, int64_t off, int64_t len) {
      k_.vsubc(len, x + off, y + off, c1, c2t);
    });
  }

  // Rows whose max is NaN or infinite (scalar, rare): PyTorch's semantics.
  T special(const T* x, T* y, int64_t n) {
    bool has_nan = false;
    T m = static_cast<T>(-INFINITY);
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(x[i]))
        has_nan = true;
      else if (x[i] > m)
        m = x[i];
    }
    const T nan = static_cast<T>(NAN);
    if (op_ == Op::kLogSumExp) return has_nan ? nan : m;  // +inf or -inf here
    if (has_nan || m > 0 || op_ == Op::kLogSoftmax) return fill(y, n, nan);
    return fill(y, n, masked_ == AllMasked::kZero ? T(0) : nan);  // all -inf
  }

  T fill(T* y, int64_t n, T v) {
    if (op_ != Op::kLogSumExp) {
      for (int64_t i = 0; i < n; ++i) y[i] = v;
    }
    return v;
  }

  const SoftmaxKernels<T>& k_;
  Op op_;
  SoftmaxAlgorithm algo_;
  AllMasked masked_;
  int threads_;
};

// Row r of a strided layout, as element offsets of x and y. Outer dimensions of size 1 are
// dropped and neighbours that nest in both x and y merged, so C-order arrays have one.
struct RowMap {
  struct Dim {
    int64_t size = 1, x = 0, y = 0;
  };
  int64_t rows = 1, n = 0, x_step = 1, y_step = 1;
  int64_t outer = 0;  // entries of dims in use, outermost first
  SmallArray<Dim> dims;

  RowMap(const StridedLayout& l, bool has_y) : dims(l.ndim) {
    if (l.ndim < 1 || l.axis < 0 || l.axis >= l.ndim)
      throw std::invalid_argument("softzo: axis out of range");
    for (int d = 0; d < l.ndim; ++d) {
      if (l.shape[d] < 0) throw std::invalid_argument("softzo: negative dimension");
      const int64_t ys = has_y ? l.y_strides[d] : 0;
      if (d == l.axis) {
        n = l.shape[d];
        x_step = l.x_strides[d];
        y_step = has_y ? ys : 1;
        continue;
      }
      rows *= l.shape[d];
      if (l.shape[d] == 1) continue;
      Dim& last = dims[outer > 0 ? outer - 1 : 0];
      if (outer > 0 && last.x == l.x_strides[d] * l.shape[d] && last.y == ys * l.shape[d]) {
        last = {last.size * l.shape[d], l.x_strides[d], ys};
      } else {
        dims[outer++] = {l.shape[d], l.x_strides[d], ys};
      }
    }
  }

  void offsets(int64_t r, int64_t* ox, int64_t* oy) const {
    *ox = 0;
    *oy = 0;
    for (int64_t d = outer - 1; d > 0; --d) {
      const int64_t i = r % dims[d].size;
      r /= dims[d].size;
      *ox += i * dims[d].x;
      *oy += i * dims[d].y;
    }
    if (outer > 0) {  // r < dims[0].size here
      *ox += r * dims[0].x;
      *oy += r * dims[0].y;
    }
  }
};

int resolve_threads(int requested) { return requested > 0 ? requested : default_num_threads(); }

template <typename T>
void run_rows(Op op, const T* x, T* y, T* lse_out, const RowMap& map, const SoftmaxOptions& opt) {
  if (map.rows == 0) return;
  const int threads = resolve_threads(opt.num_threads);
  const int64_t n = map.n;
  const SoftmaxAlgorithm algo = opt.algorithm == SoftmaxAlgorithm::kAuto
                                    ? auto_algorithm(n, static_cast<int>(sizeof(T)), op)
                                    : opt.algorithm;
  const bool x_unit = map.x_step == 1, y_unit = op == Op::kLogSumExp || map.y_step == 1;

  // Gathers a strided row into buf, solves it there (in place), and scatters the result.
  auto solve = [&](RowSolver<T>& solver, int64_t r, std::vector<T>& buf) {
    int64_t ox, oy;
    map.offsets(r, &ox, &oy);
    const T* xr = x + ox;
    T* yr = op == Op::kLogSumExp ? nullptr : y + oy;
    if (x_unit && y_unit) {
      const T v = solver.run(xr, yr, n);
      if (lse_out) lse_out[r] = v;
      return;
    }
    buf.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) buf[i] = xr[i * map.x_step];
    const T v = solver.run(buf.data(), buf.data(), n);
    if (lse_out) lse_out[r] = v;
    if (yr) {
      for (int64_t i = 0; i < n; ++i) yr[i * map.y_step] = buf[i];
    }
  };

  if (num_chunks(n) > 1) {  // long rows: one at a time, their chunks shared by the threads
    RowSolver<T> solver(op, algo, opt.all_masked, threads);
    std::vector<T> buf;
    for (int64_t r = 0; r < map.rows; ++r) solve(solver, r, buf);
    return;
  }
  const int64_t rows_per_task = n >= kTaskElements ? 1 : kTaskElements / (n > 0 ? n : 1);
  const int64_t tasks = (map.rows + rows_per_task - 1) / rows_per_task;
  auto task = [&](int64_t t) {
    RowSolver<T> solver(op, algo, opt.all_masked, 1);
    thread_local std::vector<T> buf;
    const int64_t end = (t + 1) * rows_per_task < map.rows ? (t + 1) * rows_per_task : map.rows;
    for (int64_t r = t * rows_per_task; r < end; ++r) solve(solver, r, buf);
  };
  if (tasks == 1 || threads == 1) {  // small problems never touch the pool (no lock, no wake-up)
    for (int64_t t = 0; t < tasks; ++t) task(t);
    return;
  }
  parallel_for(tasks, threads, task);
}

StridedLayout contiguous_layout(int64_t rows, int64_t n, int64_t* shape, int64_t* strides) {
  if (rows < 0 || n < 0) throw std::invalid_argument("softzo: negative rows or n");
  shape[0] = rows;
  shape[1] = n;
  strides[0] = n;
  strides[1] = 1;
  StridedLayout l;
  l.ndim = 2;
  l.shape = shape;
  l.x_strides = strides;
  l.y_strides = strides;
  l.axis = 1;
  return l;
}

template <typename T>
void contiguous(Op op, const T* x, T* y, int64_t rows, int64_t n, const SoftmaxOptions& opt) {
  int64_t shape[2], strides[2];
  const StridedLayout l = contiguous_layout(rows, n, shape, strides);
  if (op == Op::kLogSumExp) {
    run_rows<T>(op, x, nullptr, y, RowMap(l, false), opt);
  } else {
    run_rows<T>(op, x, y, nullptr, RowMap(l, true), opt);
  }
}

}  // namespace

SoftmaxAlgorithm auto_algorithm(int64_t n, int element_size, SoftmaxOp op) {
  // log_softmax and logsumexp have no exp in their last pass, and two-pass's blocked first pass
  // costs what max + sum cost while reading memory once: two-pass, except on rows of at most
  // 4 KiB, where max + sum on a row already in L1 is up to 16% faster than the blocked pass
  // (measured on batches of 4M floats; the two are within 5% at 8 KiB).
  // Softmax: in cache it is compute-bound and reload's one exp per element wins; out of cache it
  // is bandwidth-bound and two-pass moves 12 instead of 20 bytes per float (bench/results).
  if (op != SoftmaxOp::kSoftmax) {
    return n * element_size <= 4096 ? SoftmaxAlgorithm::kThreePassReload
                                    : SoftmaxAlgorithm::kTwoPass;
  }
  return n * element_size <= (int64_t{1} << 20) ? SoftmaxAlgorithm::kThreePassReload
                                                : SoftmaxAlgorithm::kTwoPass;
}

#define SOFTZO_DEFINE_OPS(T)                                                               \
  void softmax(const T* x, T* y, int64_t rows, int64_t n, const SoftmaxOptions& opt) {     \
    contiguous<T>(Op::kSoftmax, x, y, rows, n, opt);                                       \
  }                                                                                        \
  void log_softmax(const T* x, T* y, int64_t rows, int64_t n, const SoftmaxOptions& opt) { \
    contiguous<T>(Op::kLogSoftmax, x, y, rows, n, opt);                                    \
  }                                                                                        \
  void logsumexp(const T* x, T* out, int64_t rows, int64_t n, const SoftmaxOptions& opt) { \
    contiguous<T>(Op::kLogSumExp, x, out, rows, n, opt);                                   \
  }                                                                                        \
  void softmax(const T* x, T* y, const StridedLayout& l, const SoftmaxOptions& opt) {      \
    run_rows<T>(Op::kSoftmax, x, y, nullptr, RowMap(l, true), opt);                        \
  }                                                                                        \
  void log_softmax(const T* x, T* y, const StridedLayout& l, const SoftmaxOptions& opt) {  \
    run_rows<T>(Op::kLogSoftmax, x, y, nullptr, RowMap(l, true), opt);                     \
  }                                                                                        \
  void logsumexp(const T* x, T* out, const StridedLayout& l, const SoftmaxOptions& opt) {  \
    run_rows<T>(Op::kLogSumExp, x, nullptr, out, RowMap(l, false), opt);                   \
  }

SOFTZO_DEFINE_OPS(float)
SOFTZO_DEFINE_OPS(double)

}  // namespace softzo
