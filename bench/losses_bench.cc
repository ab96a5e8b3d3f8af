// Benchmarks of the fused losses (loss + gradient) for every ISA this build can run here,
// float32 and float64, on LLM-like batches, next to a streaming roofline over the same bytes.
//
//   build/bench/softzo_bench_losses --benchmark_filter='/f32/avx2/64x32000$|^stream'
//
// Names are loss/dtype/isa/rows x classes[/threads:2]. Bytes/s counts the nominal traffic of
// the fused two-pass scheme: logits read twice, the gradient written once (3 element sizes per
// element; the in-place variant writes over the logits it reads). stream_read3/dtype/shape
// reads the same bytes once per element three times over, the roofline to compare against.
// "avx512emu" is the AVX-512 code lowered to AVX2 by SIMDe (not a speed to quote).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_main.h"
#include "softzo/softzo.h"
#include "testing/stream.h"

namespace {

struct Shape {
  int64_t rows, n;
  std::string name() const { return std::to_string(rows) + "x" + std::to_string(n); }
};
const Shape kShapes[] = {{64, 32000}, {8, 128256}, {4096, 1024}};
constexpr int64_t kMaxElements = 4 * 1024 * 1024;

enum class Loss { kCrossEntropy, kCrossEntropyInPlace, kSmoothedCE, kZLoss, kStableMax, kKlDiv };
struct LossInfo {
  const char* name;
  Loss loss;
};
constexpr LossInfo kLosses[] = {{"cross_entropy", Loss::kCrossEntropy},
                                {"cross_entropy_inplace", Loss::kCrossEntropyInPlace},
                                {"cross_entropy_smoothed", Loss::kSmoothedCE},
                                {"z_loss", Loss::kZLoss},
                                {"stablemax_ce", Loss::kStableMax},
                                {"kl_div", Loss::kKlDiv}};

// Logits, a second row set (teacher / scratch), the gradient and targets, allocated and
// touched once.
template <typename T>
struct Buffers {
  std::vector<T> x, x2, y;
  std::vector<int64_t> target;
  static Buffers& get() {
    static Buffers b;
    return b;
  }

 private:
  Buffers() : x(kMaxElements), x2(kMaxElements), y(kMaxElements), target(4096) {
    uint64_t s = 0x9E3779B97F4A7C15u;
    auto next = [&] {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      return static_cast<double>(s >> 11) * 0x1p-53;
    };
    for (int64_t i = 0; i < kMaxElements; ++i) {
      x[i] = static_cast<T>(next() * 16.0 - 8.0);
      x2[i] = static_cast<T>(next() * 16.0 - 8.0);
    }
    for (size_t r = 0; r < target.size(); ++r) target[r] = static_cast<int64_t>(next() * 1024);
  }
};

template <typename T>
void run_loss(Loss loss, Buffers<T>& b, const Shape& s, int threads) {
  if (loss == Loss::kZLoss || loss == Loss::kStableMax) {
    if (loss == Loss::kZLoss) {
      softzo::SphericalLossArgs<T> a;
      a.outputs = b.x.data();
      a.rows = s.rows;
      a.classes = a.stride = a.grad_stride = s.n;
      a.target = b.target.data();
      a.grad = b.y.data();
      a.num_threads = threads;
      benchmark::DoNotOptimize(softzo::spherical_loss(a));
    } else {
      benchmark::DoNotOptimize(softzo::stablemax_cross_entropy<T>(
          b.x.data(), s.rows, s.n, s.n, b.target.data(), softzo::Reduction::kMean, b.y.data(), s.n,
          nullptr, threads));
    }
    return;
  }
  if (loss == Loss::kKlDiv) {
    benchmark::DoNotOptimize(softzo::kl_div<T>(b.x.data(), s.n, b.x2.data(), s.n, s.rows, s.n, 1.0,
                                               static_cast<double>(s.rows), b.y.data(), s.n,
                                               nullptr, threads));
    return;
  }
  softzo::CrossEntropyArgs<T> a;
  // In place: the gradient overwrites a scratch copy's rows each iteration, so the logits
  // stay what they were (a gradient row's values are in [-1, 1]: the fast path either way).
  a.logits = loss == Loss::kCrossEntropyInPlace ? b.x2.data() : b.x.data();
  a.rows = s.rows;
  a.classes = a.logits_stride = a.grad_stride = s.n;
  a.target = b.target.data();
  a.label_smoothing = loss == Loss::kSmoothedCE ? 0.1 : 0.0;
  a.grad = loss == Loss::kCrossEntropyInPlace ? b.x2.data() : b.y.data();
  a.num_threads = threads;
  benchmark::DoNotOptimize(softzo::cross_entropy(a));
}

template <typename T>
void bm_loss(benchmark::State& state, Loss loss, const std::string& isa, Shape shape, int threads) {
  if (!softzo::use_isa(isa)) {
    state.SkipWithError(("ISA not available: " + isa).c_str());
    return;
  }
  Buffers<T>& b = Buffers<T>::get();
  run_loss(loss, b, shape, threads);  // starts the pool, warms the caches
  for (auto _ : state) {
    run_loss(loss, b, shape, threads);
    benchmark::ClobberMemory();
  }
  const int64_t elements = shape.rows * shape.n;
  const int64_t units = loss == Loss::kKlDiv ? 4 : 3;  // KL reads two row sets twice each
  state.SetItemsProcessed(state.iterations() * elements);
  state.SetBytesProcessed(state.iterations() * elements * units * static_cast<int64_t>(sizeof(T)));
}

// Three read passes over the logits' bytes: the traffic of the fused losses at read speed.
template <typename T>
void bm_stream3(benchmark::State& state, Shape shape, int threads) {
  Buffers<T>& b = Buffers<T>::get();
  const int64_t floats = shape.rows * shape.n * static_cast<int64_t>(sizeof(T) / sizeof(float));
  const float* x = reinterpret_cast<const float*>(b.x.data());
  for (auto _ : state) {
    for (int pass = 0; pass < 3; ++pass) {
      benchmark::DoNotOptimize(softzo::testing::stream_read(x, floats, threads));
    }
  }
  state.SetItemsProcessed(state.iterations() * shape.rows * shape.n);
  state.SetBytesProcessed(state.iterations() * shape.rows * shape.n * 3 *
                          static_cast<int64_t>(sizeof(T)));
}

template <typename T>
void register_dtype(const char* dtype) {
  for (const Shape& shape : kShapes) {
    for (int threads : {1, 2}) {
      const std::string suffix =
          "/" + shape.name() + (threads > 1 ? "/threads:" + std::to_string(threads) : "");
      benchmark::RegisterBenchmark((std::string("stream_read3/") + dtype + suffix).c_str(),
                                   [=](benchmark::State& st) { bm_stream3<T>(st, shape, threads); })
          ->UseRealTime();
      for (const std::string& isa : softzo::available_isa_names()) {
        const std::string label = softzo::isa_is_emulated(isa) ? isa + "emu" : isa;
        for (const LossInfo& l : kLosses) {
          const Loss loss = l.loss;
          benchmark::RegisterBenchmark(
              (std::string(l.name) + "/" + dtype + "/" + label + suffix).c_str(),
              [=](benchmark::State& st) { bm_loss<T>(st, loss, isa, shape, threads); })
              ->UseRealTime();
        }
      }
    }
  }
}

void register_all() {
  benchmark::AddCustomContext("softzo_default_isa", softzo::current_isa_name());
  register_dtype<float>("f32");
  register_dtype<double>("f64");
}

}  // namespace

int main(int argc, char** argv) { return run_benchmarks(argc, argv, register_all); }
