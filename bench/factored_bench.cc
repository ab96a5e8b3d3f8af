// Benchmarks of the exact factored output layer (softzo/factored.h): one SGD step against the
// number of classes D, next to the dense step it replaces (o = W h, the loss terms, dL/dh and
// the update of W through BLAS), float32 and float64, the Z-loss, 1 and 2 BLAS threads.
//
//   build/bench/softzo_bench_factored --benchmark_filter='/f32/.*D:10000/'
//
// Names are step/dtype/[isa/]D:classes/d:dim/m:batch[/threads:2]:
//   factored_step   FactoredSphericalLayer::step, O(d^2) per example whatever D: BLAS on d x d
//                   and m x d blocks plus scalar loops, no ISA kernels, hence no ISA in the name.
//                   Bytes: the target rows of V read and written, and the d x d state (U, U^-1,
//                   Q in double) read and written.
//   dense_step      dense_spherical_step on a D x d W, O(D d m), per ISA (its per-row sums and
//                   gradient map are the loss kernels). Bytes: W read twice (o = W h and
//                   dL/dh) and written once.
// Items/s counts examples (rows of h) per second. The stabilisation (a pass over V every 100
// steps by default) is off here; bench/results/factored.md reports it amortised.
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench_main.h"
#include "softzo/factored.h"
#include "softzo/runtime.h"

namespace {

constexpr int64_t kDim = 256, kBatch = 128;
constexpr int64_t kFactoredClasses[] = {10000, 100000, 1000000};
constexpr int64_t kDenseClasses[] = {10000, 100000};  // 1e6: seconds per step and 1 GiB of W

uint64_t g_state = 0x9E3779B97F4A7C15u;
double uniform() {  // xorshift64 in [0, 1)
  g_state ^= g_state << 13;
  g_state ^= g_state >> 7;
  g_state ^= g_state << 17;
  return static_cast<double>(g_state >> 11) * 0x1p-53;
}

template <typename T>
std::vector<T> random_values(int64_t n, double scale) {
  std::vector<T> v(static_cast<size_t>(n));
  for (T& x : v) x = static_cast<T>((2.0 * uniform() - 1.0) * scale);
  return v;
}

softzo::FactoredLayerOptions options() {
  softzo::FactoredLayerOptions o;
  o.lr = 0.01;
  o.stabilize_every = 0;  // timed separately in bench/results/factored.md
  return o;
}

// A minibatch: h (m x d) and distinct targets, fixed for the whole run.
template <typename T>
struct Batch {
  std::vector<T> h, grad;
  std::vector<int64_t> targets;
  explicit Batch(int64_t classes) : h(random_values<T>(kBatch * kDim, 1.0)), grad(kBatch * kDim) {
    for (int64_t j = 0; j < kBatch; ++j) targets.push_back((j * 7919) % classes);
  }
};

// One layer per (dtype, D), built once: V uniform in +-1/sqrt(d) as torch.nn.Linear's default,
// W = V (U = I) after refresh().
template <typename T>
softzo::FactoredSphericalLayer<T>& layer_for(int64_t classes) {
  static std::map<int64_t, std::unique_ptr<softzo::FactoredSphericalLayer<T>>> layers;
  auto& slot = layers[classes];
  if (!slot) {
    slot = std::make_unique<softzo::FactoredSphericalLayer<T>>(classes, kDim, options());
    const double bound = 1.0 / std::sqrt(static_cast<double>(kDim));
    T* v = slot->v();
    for (int64_t i = 0; i < classes * kDim; ++i) v[i] = static_cast<T>((2 * uniform() - 1) * bound);
    slot->refresh();
  }
  return *slot;
}

template <typename T>
void bm_factored(benchmark::State& state, int64_t classes, int threads) {
  scipy_openblas_set_num_threads(threads);
  auto& layer = layer_for<T>(classes);
  Batch<T> b(classes);
  layer.step(b.h.data(), kBatch, kDim, b.targets.data(), 1, b.grad.data(), kDim);  // warm-up
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        layer.step(b.h.data(), kBatch, kDim, b.targets.data(), 1, b.grad.data(), kDim));
  }
  const int64_t v_rows = 2 * kBatch * kDim * static_cast<int64_t>(sizeof(T));
  const int64_t state_bytes = 2 * 3 * kDim * kDim * static_cast<int64_t>(sizeof(double));
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * (v_rows + state_bytes));
}

template <typename T>
void bm_dense(benchmark::State& state, const std::string& isa, int64_t classes, int threads) {
  if (!softzo::use_isa(isa)) {
    state.SkipWithError(("ISA not available: " + isa).c_str());
    return;
  }
  scipy_openblas_set_num_threads(threads);
  softzo::set_num_threads(threads);
  std::vector<T> w = random_values<T>(classes * kDim, 1.0 / std::sqrt(static_cast<double>(kDim)));
  Batch<T> b(classes);
  const softzo::FactoredLayerOptions opt = options();
  softzo::dense_spherical_step<T>(w.data(), classes, kDim, b.h.data(), kBatch, kDim,
                                  b.targets.data(), 1, opt, b.grad.data(), kDim);  // warm-up
  for (auto _ : state) {
    benchmark::DoNotOptimize(softzo::dense_spherical_step<T>(w.data(), classes, kDim, b.h.data(),
                                                             kBatch, kDim, b.targets.data(), 1, opt,
                                                             b.grad.data(), kDim));
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * 3 * classes * kDim *
                          static_cast<int64_t>(sizeof(T)));
}

std::string shape_suffix(int64_t classes, int threads) {
  return "/D:" + std::to_string(classes) + "/d:" + std::to_string(kDim) +
         "/m:" + std::to_string(kBatch) + (threads > 1 ? "/threads:2" : "");
}

template <typename T>
void register_dtype(const char* dtype) {
  for (int threads : {1, 2}) {
    for (int64_t classes : kFactoredClasses) {
      benchmark::RegisterBenchmark(
          (std::string("factored_step/") + dtype + shape_suffix(classes, threads)).c_str(),
          [=](benchmark::State& st) { bm_factored<T>(st, classes, threads); })
          ->UseRealTime();
    }
    for (const std::string& isa : softzo::available_isa_names()) {
      const std::string label = softzo::isa_is_emulated(isa) ? isa + "emu" : isa;
      for (int64_t classes : kDenseClasses) {
        benchmark::RegisterBenchmark(
            (std::string("dense_step/") + dtype + "/" + label + shape_suffix(classes, threads))
                .c_str(),
            [=](benchmark::State& st) { bm_dense<T>(st, isa, classes, threads); })
            ->UseRealTime();
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
