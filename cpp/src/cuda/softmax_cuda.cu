// The softmax family on CUDA: softmax, log_softmax and logsumexp of contiguous rows, float32,
// float16 and bfloat16 in, float32 arithmetic, sums folded into float64.
//
// Per row, as on the CPU (ops/exp_sums.h): the max M and its first index, then
// rest = sum over every element but that one of exp(x - M), so that the max's own term is
// exactly 1, lse = M + log1p(rest), log_softmax = (x - M) - log1p(rest) and
// softmax = exp(x - M) / (1 + rest) <= 1. exp(x - M) is formed as exp(x) 2^-e (e = round(M
// log2 e)), reducing x itself, so x - M is never rounded. Rows whose max is NaN, +-inf or beyond
// +-SOFTZO_EXTEXP_LIMIT take exact (slow, rare) paths with PyTorch's special values.
//
// A row of up to 2^18 elements is one block: a max pass, a sum pass and an output pass over
// the row (the second and third reads mostly hit L2). Longer rows are cut into 32K-element
// chunks: one block per chunk finds its own max and rest, one block per row combines the
// chunks in chunk order (a fixed tree, so the result is the same on every run), and one block
// per chunk writes the outputs.
#include "cuda/row_stats.cuh"

namespace softzo {
namespace cuda {
namespace {

// PyTorch's values for rows that are not kNormal (softmax / log_softmax).
__device__ __forceinline__ float special_output(int status, bool log, bool zero_masked) {
  if (status == kAllNegInf && !log && zero_masked) return 0.0f;
  return NAN;
}

template <typename T>
__device__ void write_row(const T* x, T* y, int64_t lo, int64_t hi, const Finish& f, bool log,
                          bool zero_masked) {
  if (f.status != kNormal) {
    const float v = special_output(f.status, log, zero_masked);
    transform(x, y, lo, hi, [&](int64_t, float) { return v; });
    return;
  }
  // Each case its own loop: a double exp inlined into the unrolled fast loop would cost it
  // registers.
  const float m = f.max, lt = f.log1p_rest, inv = f.inv;
  const Scale sc = f.scale;
  if (log) {
    transform(x, y, lo, hi, [&](int64_t, float v) { return (v - m) - lt; });
  } else if (f.scaled) {
    transform(x, y, lo, hi, [&](int64_t, float v) {
      return fminf(scaled_exp<IsFloat<T>::value>(v, sc) * inv, 1.0f);
    });
  } else {
    const double ie = f.inv_exact;
    transform(x, y, lo, hi, [&](int64_t, float v) {
      return static_cast<float>(exp(static_cast<double>(v) - static_cast<double>(m)) * ie);
    });
  }
}

// op: 0 softmax, 1 log_softmax, 2 logsumexp (y holds one value per row).
template <typename T>
__global__ void row_kernel(const T* __restrict__ x, T* y, int64_t n, int op, bool zero_masked) {
  __shared__ Shared sh;
  const int64_t row = blockIdx.x;
  const T* xr = x + row * n;
  const RowStats s = range_stats(xr, 0, n, sh);
  if (op == 2) {
    if (threadIdx.x == 0) y[row] = from_double<T>(special_lse(s));
    return;
  }
  write_row(xr, y + row * n, 0, n, make_finish(s), op == 1, zero_masked);
}

template <typename T>
__global__ void chunk_stats_kernel(const T* __restrict__ x, int64_t n, int64_t chunk,
                                   int64_t chunks, RowStats* parts) {
  __shared__ Shared sh;
  const int64_t row = blockIdx.x / chunks, c = blockIdx.x % chunks;
  const int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
  const RowStats s = range_stats(x + row * n, lo, hi, sh);
  if (threadIdx.x == 0) parts[blockIdx.x] = s;
}

// One block per row: the row's statistics from its chunks', combined in a fixed order.
template <typename T>
__global__ void combine_kernel(const RowStats* parts, int64_t chunks, RowStats* stats, T* lse) {
  __shared__ Shared sh;
  __shared__ int status;
  const int64_t row = blockIdx.x;
  const RowStats* p = parts + row * chunks;
  MaxAt mine{-INFINITY, INT64_MAX, 0};
  int flags = 0;  // bit 0: a NaN chunk, bit 1: a +inf chunk, bit 2: a chunk with a finite max
  for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
    const RowStats& q = p[c];
    flags |= q.status == kNan ? 1 : (q.status == kPosInf ? 2 : (q.status == kNormal ? 4 : 0));
    if (q.status == kNormal) mine = combine(mine, MaxAt{static_cast<float>(q.max), q.at, 0});
  }
  if (threadIdx.x == 0) status = 0;
  __syncthreads();
  atomicOr(&status, flags);  // an OR: the same bits in any order
  const MaxAt top = block_max(mine, sh.maxat);
  const int all = status;
  RowStats s{top.max, 0.0, top.at, kNormal};
  if (all & 1) {
    s.status = kNan;
  } else if (all & 2) {
    s.status = kPosInf;
  } else if (!(all & 4)) {
    s.status = kAllNegInf;
  } else {
    double acc = 0.0;
    for (int64_t c = threadIdx.x; c < chunks; c += blockDim.x) {
      const RowStats& q = p[c];
      if (q.status != kNormal) continue;
      if (q.at == top.at) {
        acc += q.rest;
      } else {  // this chunk's max term (1) and rest, at the row max's scale
        const double f = exp(q.max - s.max);  // both floats: the difference is exact
        acc += f + q.rest * f;
      }
    }
    s.rest = block_sum(acc, sh.sums);
  }
  if (threadIdx.x == 0) {
    stats[row] = s;
    if (lse) lse[row] = from_double<T>(special_lse(s));
  }
}

template <typename T>
__global__ void chunk_output_kernel(const T* __restrict__ x, T* y, int64_t n, int64_t chunk,
                                    int64_t chunks, const RowStats* stats, bool log,
                                    bool zero_masked) {
  const int64_t row = blockIdx.x / chunks, c = blockIdx.x % chunks;
  const int64_t lo = c * chunk, hi = lo + chunk < n ? lo + chunk : n;
  write_row(x + row * n, y + row * n, lo, hi, make_finish(stats[row]), log, zero_masked);
}

template <typename T>
__global__ void fill_kernel(T* y, int64_t count, float v) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = from_float<T>(v);
  }
}

template <typename T>
void run(SoftmaxOp op, const T* x, T* y, int64_t rows, int64_t n, bool zero_masked,
         cudaStream_t stream) {
  const int code = op == SoftmaxOp::kSoftmax ? 0 : (op == SoftmaxOp::kLogSoftmax ? 1 : 2);
  if (rows == 0) return;
  if (n == 0) {  // logsumexp of nothing is -inf; the other ops have nothing to write
    if (code == 2) fill_kernel<T><<<1, 256, 0, stream>>>(y, rows, -INFINITY);
    check_launch("fill_kernel");
    return;
  }
  const SoftmaxPlan plan = softmax_plan(rows, n);
  if (!plan.split) {
    row_kernel<T>
        <<<static_cast<unsigned>(rows), plan.threads, 0, stream>>>(x, y, n, code, zero_masked);
    check_launch("row_kernel");
    return;
  }
  StreamBuffer buf(sizeof(RowStats) * static_cast<size_t>(plan.blocks + rows), stream);
  RowStats* parts = buf.as<RowStats>();
  RowStats* stats = parts + plan.blocks;
  const unsigned blocks = static_cast<unsigned>(plan.blocks);
  chunk_stats_kernel<T><<<blocks, plan.threads, 0, stream>>>(x, n, plan.chunk, plan.chunks, parts);
  check_launch("chunk_stats_kernel");
  combine_kernel<T><<<static_cast<unsigned>(rows), 256, 0, stream>>>(parts, plan.chunks, stats,
                                                                     code == 2 ? y : nullptr);
  check_launch("combine_kernel");
  if (code == 2) return;
  chunk_output_kernel<T><<<blocks, plan.threads, 0, stream>>>(x, y, n, plan.chunk, plan.chunks,
                                                              stats, code == 1, zero_masked);
  check_launch("chunk_output_kernel");
}

}  // namespace

void softmax_rows(SoftmaxOp op, DType dt, const void* x, void* y, int64_t rows, int64_t n,
                  AllMasked masked, int device, void* stream) {
  if (rows < 0 || n < 0) throw std::invalid_argument("softzo: negative rows or n");
  if (rows > 0x7fffffffLL) throw std::invalid_argument("softzo CUDA: more than 2^31 - 1 rows");
  DeviceGuard guard(device);
  const cudaStream_t s = as_stream(stream);
  const bool zero = masked == AllMasked::kZero;
  switch (dt) {
    case DType::kFloat32:
      run(op, static_cast<const float*>(x), static_cast<float*>(y), rows, n, zero, s);
      break;
    case DType::kFloat16:
      run(op, static_cast<const __half*>(x), static_cast<__half*>(y), rows, n, zero, s);
      break;
    case DType::kBFloat16:
      run(op, static_cast<const __nv_bfloat16*>(x), static_cast<__nv_bfloat16*>(y), rows, n, zero,
          s);
      break;
    default:
      throw std::invalid_argument(
          "softzo CUDA: the softmax family takes float32, float16, bfloat16");
  }
}

}  // namespace cuda
}  // namespace softzo
