// Benchmarks of the fused losses (loss + gradient) for every ISA this build can run here,
// float32 and float64, on LLM-like batches and every input distribution, next to a streaming
// roofline over the same bytes.
//
//   build/bench/softzo_bench_losses --benchmark_filter='/f32/avx2/normal/64x32000/|^stream_read3'
//   build/bench/softzo_bench_losses --benchmark_filter='^cross_entropy/f32/avx512/.*/64x32000/'
//
// (Google Benchmark appends /real_time to every name: end a filter with "/", not "$".)
//
// Names are loss/dtype/isa/input/rows x classes[/threads:2], input being one of bench_inputs.h's
// distributions (normal, wide30, wide100, masked, padded, temp0.1; targets are never a masked or
// padded class, KL's teacher masks the student's classes, and the Z-loss, undefined on -inf,
// skips masked). Bytes/s counts the nominal traffic of the fused two-pass scheme: logits read
// twice, the gradient written once (3 element sizes per element; the in-place variant writes
// over the logits it reads, a fresh copy of them made before each iteration, untimed, which
// leaves them in cache where they fit, as the layer that just produced them would).
// stream_read3/dtype/shape reads the same bytes once per element three times over, the
// roofline to compare against.
// "avx512emu" is the AVX-512 code lowered to AVX2 by SIMDe (not a speed to quote).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "bench_inputs.h"
#include "bench_main.h"
#include "softzo/softzo.h"
#include "testing/stream.h"

namespace {

using softzo_bench::Dist;

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

// Logits, the teacher's logits (KL), a scratch copy of the logits (the in-place variant
// overwrites it), the gradient and targets, allocated and touched once. The inputs hold one
// distribution and shape at a time, refilled (untimed) when a benchmark asks for another:
// benchmarks are registered distribution by distribution, so a run refills once per pair.
template <typename T>
struct Buffers {
  std::vector<T> x, teacher, scratch, y;
  std::vector<int64_t> target;
  // The roofline's source: floats of 1 (plain values, never subnormal, whatever x holds).
  std::vector<float> stream;
  static Buffers& get() {
    static Buffers b;
    return b;
  }

  void fill(Dist dist, const Shape& s) {
    if (dist == dist_ && s.rows == rows_ && s.n == n_) return;
    softzo_bench::fill_logits(x.data(), s.rows, s.n, dist, 1);
    softzo_bench::fill_logits(teacher.data(), s.rows, s.n, dist, 2);
    for (int64_t r = 0; r < s.rows; ++r)
      target[r] = softzo_bench::real_class(&x[r * s.n], s.n, 3, r);
    dist_ = dist;
    rows_ = s.rows;
    n_ = s.n;
  }

 private:
  Buffers()
      : x(kMaxElements),
        teacher(kMaxElements),
        scratch(kMaxElements),
        y(kMaxElements),
        target(4096),
        stream(kMaxElements * sizeof(T) / sizeof(float), 1.0f) {}

  Dist dist_ = Dist::kNormal;
  int64_t rows_ = 0, n_ = 0;  // nothing filled yet
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
    benchmark::DoNotOptimize(softzo::kl_div<T>(b.x.data(), s.n, b.teacher.data(), s.n, s.rows, s.n,
                                               1.0, static_cast<double>(s.rows), b.y.data(), s.n,
                                               nullptr, threads));
    return;
  }
  softzo::CrossEntropyArgs<T> a;
  // In place: the gradient overwrites a scratch copy of the logits, made again before each
  // iteration (bm_loss), so every iteration reads the distribution's values.
  a.logits = loss == Loss::kCrossEntropyInPlace ? b.scratch.data() : b.x.data();
  a.rows = s.rows;
  a.classes = a.logits_stride = a.grad_stride = s.n;
  a.target = b.target.data();
  a.label_smoothing = loss == Loss::kSmoothedCE ? 0.1 : 0.0;
  a.grad = loss == Loss::kCrossEntropyInPlace ? b.scratch.data() : b.y.data();
  a.num_threads = threads;
  benchmark::DoNotOptimize(softzo::cross_entropy(a));
}

template <typename T>
void bm_loss(benchmark::State& state, Loss loss, const std::string& isa, Dist dist, Shape shape,
             int threads) {
  if (!softzo::use_isa(isa)) {
    state.SkipWithError(("ISA not available: " + isa).c_str());
    return;
  }
  Buffers<T>& b = Buffers<T>::get();
  b.fill(dist, shape);
  const int64_t elements = shape.rows * shape.n;
  const bool in_place = loss == Loss::kCrossEntropyInPlace;
  auto fresh_logits = [&] { std::copy_n(b.x.begin(), elements, b.scratch.begin()); };
  if (in_place) fresh_logits();
  run_loss(loss, b, shape, threads);  // starts the pool, warms the caches
  for (auto _ : state) {
    if (in_place) {
      state.PauseTiming();
      fresh_logits();
      state.ResumeTiming();
    }
    run_loss(loss, b, shape, threads);
    benchmark::ClobberMemory();
  }
  const int64_t units = loss == Loss::kKlDiv ? 4 : 3;  // KL reads two row sets twice each
  state.SetItemsProcessed(state.iterations() * elements);
  state.SetBytesProcessed(state.iterations() * elements * units * static_cast<int64_t>(sizeof(T)));
}

// Three read passes over the logits' bytes: the traffic of the fused losses at read speed.
template <typename T>
void bm_stream3(benchmark::State& state, Shape shape, int threads) {
  Buffers<T>& b = Buffers<T>::get();
  const int64_t floats = shape.rows * shape.n * static_cast<int64_t>(sizeof(T) / sizeof(float));
  const float* x = b.stream.data();
  for (auto _ : state) {
    for (int pass = 0; pass < 3; ++pass) {
      benchmark::DoNotOptimize(softzo::testing::stream_read(x, floats, threads));
    }
  }
  state.SetItemsProcessed(state.iterations() * shape.rows * shape.n);
  state.SetBytesProcessed(state.iterations() * shape.rows * shape.n * 3 *
                          static_cast<int64_t>(sizeof(T)));
}

std::string size_suffix(const Shape& shape, int threads) {
  return "/" + shape.name() + (threads > 1 ? "/threads:" + std::to_string(threads) : "");
}

template <typename T>
void register_dtype(const char* dtype) {
  for (const Shape& shape : kShapes) {  // the roofline does not depend on the values
    for (int threads : {1, 2}) {
      benchmark::RegisterBenchmark(
          (std::string("stream_read3/") + dtype + size_suffix(shape, threads)).c_str(),
          [=](benchmark::State& st) { bm_stream3<T>(st, shape, threads); })
          ->UseRealTime();
    }
  }
  for (const softzo_bench::DistInfo& dist : softzo_bench::kDists) {
    for (const Shape& shape : kShapes) {
      for (int threads : {1, 2}) {
        for (const std::string& isa : softzo::available_isa_names()) {
          const std::string label = softzo::isa_is_emulated(isa) ? isa + "emu" : isa;
          for (const LossInfo& l : kLosses) {
            // The Z-loss standardises its outputs: one -inf makes it undefined (NaN).
            if (l.loss == Loss::kZLoss && dist.dist == Dist::kMasked) continue;
            const Loss loss = l.loss;
            const Dist d = dist.dist;
            benchmark::RegisterBenchmark(
                (std::string(l.name) + "/" + dtype + "/" + label + "/" + dist.name +
                 size_suffix(shape, threads))
                    .c_str(),
                [=](benchmark::State& st) { bm_loss<T>(st, loss, isa, d, shape, threads); })
                ->UseRealTime();
          }
        }
      }
    }
  }
}

void register_all() {
  register_dtype<float>("f32");
  register_dtype<double>("f64");
}

}  // namespace

int main(int argc, char** argv) { return run_benchmarks(argc, argv, register_all); }
