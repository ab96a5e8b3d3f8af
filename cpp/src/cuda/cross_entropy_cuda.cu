// Fused cross-entropy on CUDA: loss, gradient and logsumexp of (rows, classes) logits in one
// block per row, with the CPU's options and formulas (ops/loss_ops.cc): class indices or soft
// targets, class weights, ignore_index, label smoothing, PaLM's lse^2 term, comp-sum's tau, the
// reductions, and the gradient written over the logits when grad == logits.
//
// Launches, all on the caller's stream: a prep kernel (the denominators of the mean and the
// target checks; soft targets: each row's target mass), one read-back of the check word (bad
// targets raise before anything is written, as on the CPU), the row kernel (max pass, sum pass,
// then the gradient pass; the row's second and third reads mostly hit L2), and for mean / sum a
// one-block kernel that adds the row losses in a fixed order. Every result is deterministic.
#include <cstdio>
#include <string>

#include "cuda/row_stats.cuh"

namespace softzo {
namespace cuda {
namespace {

struct Totals {
  double weight_total;         // sum of the class weights (classes without weights)
  double counted;              // rows not ignored
  double target_weight;        // sum of their targets' weights
  unsigned long long bad_row;  // first row with a bad target, or ~0
};

template <typename T>
__device__ __forceinline__ float weight_of(const T* w, int64_t j) {
  return w ? to_float(w[j]) : 1.0f;
}

// One block: the denominators, and the first row whose class index is out of range.
template <typename T>
__global__ void prep_kernel(const int64_t* target, int64_t rows, int64_t classes,
                            int64_t ignore_index, const T* w, Totals* totals) {
  __shared__ double scratch[kMaxWarps];
  __shared__ unsigned long long bad;
  if (threadIdx.x == 0) bad = ~0ull;
  __syncthreads();  // before any thread's atomicMin
  double wt = 0.0;
  if (w) {
    for (int64_t j = threadIdx.x; j < classes; j += blockDim.x) wt += to_float(w[j]);
  }
  wt = w ? block_sum(wt, scratch) : static_cast<double>(classes);
  double counted = 0.0, tw = 0.0;
  if (target) {
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
      const int64_t t = target[r];
      if (t == ignore_index) continue;
      if (t < 0 || t >= classes) {
        atomicMin(&bad, static_cast<unsigned long long>(r));  // a minimum: any order
        continue;
      }
      counted += 1.0;
      tw += weight_of(w, t);
    }
    counted = block_sum(counted, scratch);
    tw = block_sum(tw, scratch);
  } else {
    counted = tw = static_cast<double>(rows);
  }
  __syncthreads();
  if (threadIdx.x == 0) *totals = Totals{wt, counted, tw, bad};
}

// Soft targets, one block per row: the row's target mass sum_j w_j t_j; a non-finite value
// (in the plain or the weighted sum) marks the row bad.
template <typename T>
__global__ void soft_prep_kernel(const T* soft, int64_t stride, int64_t classes, const T* w,
                                 double* mass, Totals* totals) {
  __shared__ double scratch[kMaxWarps];
  const int64_t row = blockIdx.x;
  const T* t = soft + row * stride;
  double s = 0.0, sw = 0.0;
  for (int64_t j = threadIdx.x; j < classes; j += blockDim.x) {
    const double v = to_float(t[j]);
    s += v;
    sw += v * weight_of(w, j);
  }
  s = block_sum(s, scratch);
  sw = block_sum(sw, scratch);
  if (threadIdx.x == 0) {
    mass[row] = sw;
    if (!isfinite(s) || !isfinite(sw)) {
      atomicMin(&totals->bad_row, static_cast<unsigned long long>(row));
    }
  }
}

struct Params {
  int64_t rows, classes, logits_stride, soft_stride, grad_stride, ignore_index;
  double label_smoothing, lse_square_scale, tau;
  int reduction;  // 0 none, 1 sum, 2 mean
};

// A row's scalars, formed once by thread 0 and kept in shared memory, so that the threads'
// passes over the row carry a few floats instead of a dozen live doubles (1024 threads allow
// 64 registers each).
struct RowConsts {
  Finish f;
  double m, l, lse, xt, mass, coef, b, c, g, zg, z, tau_coef, ce_target;
  float pa, gb, gc, qb, qc;  // gradient: pa p - w (gb t + gc); dot: w (qb t + qc)
  int state;                 // 0 normal, 1 ignored row, 2 NaN row
};

// kSoft: soft targets (else class indices); kWeighted: class weights. Specialised so that the
// common case (class indices, no weights) carries no dead code.
template <typename T, bool kSoft, bool kWeighted>
__global__ void __launch_bounds__(1024)
    row_kernel(const T* logits, const int64_t* target, const T* soft, const T* w_, T* grad, T* lse,
               T* row_loss, double* row_value, const Totals* totals, const double* target_mass,
               Params p) {
  const T* w = kWeighted ? w_ : nullptr;
  __shared__ Shared sh;
  __shared__ RowConsts k;
  const int64_t row = blockIdx.x, n = p.classes;
  const T* x = logits + row * p.logits_stride;
  T* y = grad ? grad + row * p.grad_stride : nullptr;
  const T* tw = kSoft ? soft + row * p.soft_stride : nullptr;
  const bool none = p.reduction == 0;
  const RowStats s = range_stats(x, 0, n, sh);

  if (threadIdx.x == 0) {
    const int64_t t = kSoft ? -1 : target[row];
    const bool ok = s.status == kNormal;
    k.f = make_finish(s);
    k.m = s.max;
    k.l = ok ? log1p(s.rest) : 0.0;
    k.lse = ok ? s.max + k.l : special_lse(s);
    if (lse) lse[row] = from_double<T>(k.lse);
    // Read before an in-place gradient overwrites it (every thread is past range_stats).
    k.xt = !kSoft && t != p.ignore_index ? static_cast<double>(to_float(x[t])) : 0.0;
    const double eps = p.label_smoothing;
    k.c = eps / static_cast<double>(n);
    k.b = kSoft ? 1.0 - eps : 0.0;
    k.coef = kSoft ? 0.0 : (1.0 - eps) * (t == p.ignore_index ? 0.0 : weight_of(w, t));
    k.mass = kSoft ? k.b * target_mass[row] + k.c * totals->weight_total
                   : k.coef + k.c * totals->weight_total;
    k.g = none ? 1.0 : (p.reduction == 2 ? 1.0 / totals->target_weight : 1.0);
    k.zg = none ? 1.0 : (p.reduction == 2 ? 1.0 / totals->counted : 1.0);
    k.z = k.zg * 2.0 * p.lse_square_scale * k.lse;  // d (lambda lse^2) / d lse
    // Row loss as a sum of non-negative terms (ops/loss_ops.cc): with lse = M + l,
    //   coef (M - x_t + l) + (mass - coef) l - sum_j q_j (x_j - M).
    k.ce_target = k.coef * ((k.m - k.xt) + k.l);
    k.tau_coef = p.tau != 1.0 ? exp((1.0 - p.tau) * k.ce_target) : 1.0;
    k.pa = static_cast<float>(k.g * k.mass * k.tau_coef + k.z);
    k.gb = static_cast<float>(k.g * k.b);
    k.gc = static_cast<float>(k.g * k.c);
    k.qb = static_cast<float>(k.b);
    k.qc = static_cast<float>(k.c);
    k.state = !kSoft && t == p.ignore_index ? 1 : (isfinite(k.lse) ? 0 : 2);
  }
  __syncthreads();
  const int state = k.state;
  if (state != 0) {  // ignored rows: 0 loss and gradient; NaN / +inf logits: PyTorch's NaN row
    const float v = state == 1 ? 0.0f : NAN;
    if (y) transform(x, y, 0, n, [v](int64_t, float) { return v; });
    if (threadIdx.x == 0) {
      if (none) {
        row_loss[row] = from_float<T>(v);
      } else {
        row_value[row] = v;
      }
    }
    return;
  }

  // sum_j q_j (x_j - M), terms with q_j == 0 counting 0 (masked -inf classes add nothing).
  const bool has_q = kSoft || p.label_smoothing != 0.0;
  double dot = 0.0;
  if (has_q) {
    const float mf = k.f.max, qb = k.qb, qc = k.qc;
    float part = 0.0f;
    visit(
        x, 0, n,
        [&](int64_t j, float v) {
          const float q = weight_of(w, j) * fmaf(qb, kSoft ? to_float(tw[j]) : 0.0f, qc);
          part += q != 0.0f ? q * (v - mf) : 0.0f;
        },
        [&] {
          dot += static_cast<double>(part);
          part = 0.0f;
        });
    dot = block_sum(dot, sh.sums);
  }

  if (y) {
    // Gradient g (mass p - q - coef e_t) tau_coef + z p; the target entry is rewritten below.
    const float pa = k.pa, gb = k.gb, gc = k.gc, inv = k.f.inv;
    const Scale sc = k.f.scale;
    auto q_of = [&](int64_t j) {
      return weight_of(w, j) * fmaf(gb, kSoft ? to_float(tw[j]) : 0.0f, gc);
    };
    if (k.f.scaled) {  // the branch outside the loop keeps the double exp out of the hot path
      transform(x, y, 0, n, [&](int64_t j, float v) {
        return fmaf(pa, scaled_exp<IsFloat<T>::value>(v, sc) * inv, -q_of(j));
      });
    } else {
      const double m = k.m, ie = k.f.inv_exact;
      transform(x, y, 0, n, [&](int64_t j, float v) {
        return fmaf(pa, static_cast<float>(exp(static_cast<double>(v) - m) * ie), -q_of(j));
      });
    }
    __syncthreads();  // the target entry below is written after the pass's own write
  }
  if (threadIdx.x == 0) {
    if (y && !kSoft) {
      const int64_t t = target[row];
      const double wt = weight_of(w, t), rest = s.rest, inv = 1.0 / (1.0 + rest);
      const double g = k.g, tc = k.tau_coef;
      double yt;
      if (k.xt == k.m) {
        // p_t = 1 / (1 + rest) and p_t - 1 = -rest / (1 + rest): formed from the rest, not as
        // a difference that cancels to 0 when p_t rounds to 1.
        yt = g * tc * ((k.mass - k.coef) * inv - k.coef * rest * inv) + k.z * inv - g * k.c * wt;
      } else {
        const double pt = exp(k.xt - k.m) * inv;
        yt = (g * k.mass * tc + k.z) * pt - g * k.c * wt - g * k.coef * tc;
      }
      y[t] = from_double<T>(yt);
    }
    double ce = k.ce_target + (has_q ? (k.mass - k.coef) * k.l - dot : 0.0);
    if (p.tau != 1.0) ce = expm1((1.0 - p.tau) * ce) / (1.0 - p.tau);
    const double v = ce * k.g + p.lse_square_scale * k.lse * k.lse * k.zg;
    if (none) {
      row_loss[row] = from_double<T>(v);
    } else {
      row_value[row] = v;
    }
  }
}

// One block: the reduced loss, row values added in a fixed order.
template <typename T>
__global__ void reduce_kernel(const double* row_value, int64_t rows, const Totals* totals,
                              bool mean, T* loss) {
  __shared__ double scratch[kMaxWarps];
  double acc = 0.0;
  for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) acc += row_value[r];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) *loss = from_double<T>(mean && totals->target_weight == 0.0 ? NAN : acc);
}

template <typename T>
void run(const CrossEntropyArgs& a, cudaStream_t stream) {
  const int64_t rows = a.rows;
  const auto* logits = static_cast<const T*>(a.logits);
  const auto* soft = static_cast<const T*>(a.soft_target);
  const auto* w = static_cast<const T*>(a.weight);
  const size_t per_row = static_cast<size_t>(rows) * sizeof(double);
  StreamBuffer buf(sizeof(Totals) + 2 * per_row, stream);
  Totals* totals = buf.as<Totals>();
  double* mass = buf.as<double>(sizeof(Totals));
  double* row_value = buf.as<double>(sizeof(Totals) + per_row);
  prep_kernel<T><<<1, 1024, 0, stream>>>(a.target, rows, a.classes, a.ignore_index, w, totals);
  check_launch("prep_kernel");
  if (soft && rows > 0) {
    soft_prep_kernel<T><<<static_cast<unsigned>(rows), 256, 0, stream>>>(
        soft, a.soft_stride, a.classes, w, mass, totals);
    check_launch("soft_prep_kernel");
  }
  // The one wait: bad targets must raise before anything is written, as on the CPU.
  unsigned long long bad = 0;
  check(cudaMemcpyAsync(&bad, &totals->bad_row, sizeof bad, cudaMemcpyDeviceToHost, stream),
        "reading the target check");
  check(cudaStreamSynchronize(stream), "the target check");
  if (bad != ~0ull) {
    if (a.target) {
      int64_t t = 0;
      check(cudaMemcpyAsync(&t, a.target + bad, sizeof t, cudaMemcpyDeviceToHost, stream),
            "reading a target");
      check(cudaStreamSynchronize(stream), "reading a target");
      throw std::invalid_argument("target[" + std::to_string(bad) + "] = " + std::to_string(t) +
                                  " is out of range for " + std::to_string(a.classes) +
                                  " classes (and is not ignore_index)");
    }
    throw std::invalid_argument("target (soft) row " + std::to_string(bad) +
                                " has a non-finite value");
  }
  if (rows == 0) {
    if (a.reduction != Reduction::kNone) {
      reduce_kernel<T><<<1, 32, 0, stream>>>(row_value, 0, totals, a.reduction == Reduction::kMean,
                                             static_cast<T*>(a.loss));
      check_launch("reduce_kernel");
    }
    return;
  }
  Params p;
  p.rows = rows;
  p.classes = a.classes;
  p.logits_stride = a.logits_stride;
  p.soft_stride = a.soft_stride;
  p.grad_stride = a.grad_stride;
  p.ignore_index = a.ignore_index;
  p.label_smoothing = a.label_smoothing;
  p.lse_square_scale = a.lse_square_scale;
  p.tau = a.tau;
  p.reduction = a.reduction == Reduction::kNone ? 0 : (a.reduction == Reduction::kSum ? 1 : 2);
  // A whole row per block: 1024 threads on vocabulary-sized rows keep 16 KiB of loads in flight
  // per block.
  const int threads = a.classes <= 1024 ? 128 : (a.classes <= 8192 ? 256 : 1024);
  auto* kernel = soft ? (w ? row_kernel<T, true, true> : row_kernel<T, true, false>)
                      : (w ? row_kernel<T, false, true> : row_kernel<T, false, false>);
  kernel<<<static_cast<unsigned>(rows), threads, 0, stream>>>(
      logits, a.target, soft, w, static_cast<T*>(a.grad), static_cast<T*>(a.lse),
      static_cast<T*>(a.row_loss), row_value, totals, mass, p);
  check_launch("cross_entropy row_kernel");
  if (a.reduction != Reduction::kNone) {
    reduce_kernel<T><<<1, 1024, 0, stream>>>(
        row_value, rows, totals, a.reduction == Reduction::kMean, static_cast<T*>(a.loss));
    check_launch("reduce_kernel");
  }
}

}  // namespace

void cross_entropy(const CrossEntropyArgs& a) {
  if (a.rows < 0 || a.classes < 1) throw std::invalid_argument("logits: need at least one class");
  if (a.rows > 0x7fffffffLL) throw std::invalid_argument("softzo CUDA: more than 2^31 - 1 rows");
  if (!(a.label_smoothing >= 0.0 && a.label_smoothing <= 1.0))
    throw std::invalid_argument("label_smoothing must be in [0, 1]");
  if (!(a.lse_square_scale >= 0.0)) throw std::invalid_argument("lse_square_scale must be >= 0");
  if (!(a.tau >= 0.0 && std::isfinite(a.tau))) throw std::invalid_argument("tau must be >= 0");
  if (!a.target == !a.soft_target)
    throw std::invalid_argument("target: give class indices or soft targets (exactly one)");
  if (a.reduction == Reduction::kNone ? (!a.row_loss && a.rows > 0) : !a.loss)
    throw std::invalid_argument("softzo CUDA cross_entropy: no output for the loss");
  DeviceGuard guard(a.device);
  const cudaStream_t s = as_stream(a.stream);
  switch (a.dt) {
    case DType::kFloat32:
      run<float>(a, s);
      break;
    case DType::kFloat16:
      run<__half>(a, s);
      break;
    case DType::kBFloat16:
      run<__nv_bfloat16>(a, s);
      break;
    default:
      throw std::invalid_argument("softzo CUDA: cross_entropy takes float32, float16, bfloat16");
  }
}

}  // namespace cuda
}  // namespace softzo
