// Benchmarks of the zeroth-order engine for every ISA this build can run here, float32 and
// float64, each direction distribution, next to a read+write streaming roofline over the same
// buffer: the passes a MeZO / Sparse MeZO / HiZOO step is made of, and a whole MeZO step over a
// random tenth of the blocks (subset=).
//
//   build/bench/softzo_bench_zo
//   --benchmark_filter='/f32/gaussian/avx2/16777216/|^stream_scale/f32/16'
//
// Names are pass/dtype/distribution/isa/n[/threads:2]:
//   fill                z written (1 element size per element)
//   perturb             theta += c z (read + write theta)
//   restore_update      MeZO's fused restore and update (read + write theta)
//   perturb_mask_build  Sparse MeZO's first pass: the mask bits built and used (+ n/8 bytes)
//   restore_update_mask Sparse MeZO's last pass, reading the mask bits (+ n/8 bytes)
//   perturb_diag        HiZOO's theta += c z / sqrt(sigma) (+ sigma read)
//   hizoo_update        HiZOO's fused restore, sigma and theta update (sigma read + written)
//   mezo_step_subset10  the three passes of a MeZO step over 10% of the 65536-element blocks
// Bytes/s counts that nominal traffic (no write-allocate reads); items/s counts element passes
// per second (a subset step's three passes each count). "avx512emu" is the AVX-512 code lowered to
// AVX2 by SIMDe (not a speed to quote).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "bench_main.h"
#include "softzo/softzo.h"
#include "testing/stream.h"

namespace {

using softzo::ZoDirection;
using softzo::ZoDistribution;

constexpr int64_t kSizes[] = {int64_t{1} << 16, int64_t{1} << 24};  // in L2; far past the LLC
constexpr int64_t kMaxN = int64_t{1} << 24;
constexpr int64_t kSubsetBlock = 65536;    // MeZO's default subset block
constexpr double kSubsetFraction = 0.1;    // of the blocks, chosen anew every step
constexpr int64_t kSlowIsaMaxN = 1 << 20;  // the scalar and SIMDe kernels take seconds beyond

struct DistInfo {
  const char* name;
  ZoDistribution dist;
};
constexpr DistInfo kDists[] = {{"rademacher", ZoDistribution::kRademacher},
                               {"gaussian", ZoDistribution::kGaussian},
                               {"segmented", ZoDistribution::kSegmented}};

enum class Pass {
  kFill,
  kPerturb,
  kRestoreUpdate,
  kPerturbMaskBuild,
  kRestoreUpdateMask,
  kPerturbDiag,
  kHizooUpdate,
  kMezoStepSubset
};
struct PassInfo {
  const char* name;
  Pass pass;
  int bytes_per_element;  // element sizes moved per element of the pass (theta, sigma)
};
constexpr PassInfo kPasses[] = {{"fill", Pass::kFill, 1},
                                {"perturb", Pass::kPerturb, 2},
                                {"restore_update", Pass::kRestoreUpdate, 2},
                                {"perturb_mask_build", Pass::kPerturbMaskBuild, 2},
                                {"restore_update_mask", Pass::kRestoreUpdateMask, 2},
                                {"perturb_diag", Pass::kPerturbDiag, 3},
                                {"hizoo_update", Pass::kHizooUpdate, 4},
                                {"mezo_step_subset10", Pass::kMezoStepSubset, 2}};

// theta (N(0, 1)-like values), sigma (in [0.5, 1.5)) and the mask bits, allocated and touched
// once.
template <typename T>
struct Buffers {
  std::vector<T> theta, sigma;
  std::vector<uint32_t> mask;
  static Buffers& get() {
    static Buffers b;
    return b;
  }

 private:
  Buffers() : theta(kMaxN), sigma(kMaxN), mask(kMaxN / 32) {
    uint64_t s = 0x9E3779B97F4A7C15u;
    auto next = [&] {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      return static_cast<double>(s >> 11) * 0x1p-53;
    };
    for (int64_t i = 0; i < kMaxN; ++i) {
      theta[i] = static_cast<T>(next() * 4.0 - 2.0);
      sigma[i] = static_cast<T>(0.5 + next());
    }
  }
};

// The blocks of a subset step: each with probability kSubsetFraction, drawn anew per step (as
// MeZO's subset= does), so that repetitions do not find the same blocks in the cache.
std::vector<int64_t> subset_blocks(uint32_t step, int64_t n) {
  std::vector<int64_t> blocks;
  for (int64_t b = 0; b < n / kSubsetBlock; ++b) {
    uint64_t z = (static_cast<uint64_t>(step) << 32 | static_cast<uint64_t>(b)) +
                 0x9E3779B97F4A7C15u;  // splitmix64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    if (static_cast<double>(z >> 11) * 0x1p-53 < kSubsetFraction) blocks.push_back(b);
  }
  return blocks;
}

// One call of the pass; returns the elements it moved. Perturbations alternate in sign, so
// theta stays where it started over repetitions.
template <typename T>
int64_t run_pass(Pass pass, const ZoDirection& d, Buffers<T>& b, int64_t n, int threads) {
  T* theta = b.theta.data();
  T* sigma = b.sigma.data();
  const T eps = static_cast<T>(1e-3);
  softzo::ZoMask mask;
  mask.bits = b.mask.data();
  switch (pass) {
    case Pass::kFill:
      softzo::zo_fill<T>(d, 0, theta, n, threads);  // theta is z afterwards: fine for a fill
      return n;
    case Pass::kPerturb:
      softzo::zo_perturb<T>(d, 0, eps, theta, n, nullptr, threads);
      softzo::zo_perturb<T>(d, 0, -eps, theta, n, nullptr, threads);
      return 2 * n;
    case Pass::kRestoreUpdate:
      softzo::zo_restore_update<T>(d, 0, eps, T(1e-6), T(0.5), T(0), theta, n, nullptr, threads);
      return n;
    case Pass::kPerturbMaskBuild:
      mask.build = true;
      mask.threshold = 1.0;
      softzo::zo_perturb<T>(d, 0, eps, theta, n, &mask, threads);
      softzo::zo_perturb<T>(d, 0, -eps, theta, n, &mask, threads);
      return 2 * n;
    case Pass::kRestoreUpdateMask:
      softzo::zo_restore_update<T>(d, 0, eps, T(1e-6), T(0.5), T(0), theta, n, &mask, threads);
      return n;
    case Pass::kPerturbDiag:
      softzo::zo_perturb_diag<T>(d, 0, eps, sigma, theta, n, threads);
      softzo::zo_perturb_diag<T>(d, 0, -eps, sigma, theta, n, threads);
      return 2 * n;
    case Pass::kHizooUpdate:
      // keep + gain z^2 with keep = 1 - gain and tiny gain: sigma drifts by ~1e-8 per call.
      softzo::zo_hizoo_update<T>(d, 0, eps, T(1e-6), T(0.5), T(0), T(1 - 1e-8), T(1e-8), sigma,
                                 theta, n, threads);
      return n;
    case Pass::kMezoStepSubset: {
      // +eps z, -2 eps z, then restore and update, each over this step's blocks.
      const std::vector<int64_t> blocks = subset_blocks(d.step, n);
      for (const T c : {eps, static_cast<T>(-2 * eps)}) {
        for (int64_t blk : blocks) {
          const int64_t off = blk * kSubsetBlock;
          softzo::zo_perturb<T>(d, static_cast<uint64_t>(off), c, theta + off, kSubsetBlock,
                                nullptr, threads);
        }
      }
      for (int64_t blk : blocks) {
        const int64_t off = blk * kSubsetBlock;
        softzo::zo_restore_update<T>(d, static_cast<uint64_t>(off), eps, T(1e-6), T(0.5), T(0),
                                     theta + off, kSubsetBlock, nullptr, threads);
      }
      return 3 * static_cast<int64_t>(blocks.size()) * kSubsetBlock;
    }
  }
  return 0;
}

template <typename T>
void bm_pass(benchmark::State& state, const PassInfo& p, ZoDistribution dist,
             const std::string& isa, int64_t n, int threads) {
  if (!softzo::use_isa(isa)) {
    state.SkipWithError(("ISA not available: " + isa).c_str());
    return;
  }
  Buffers<T>& b = Buffers<T>::get();
  ZoDirection d;
  d.seed = 20240611;
  d.dist = dist;
  int64_t moved = 0;
  run_pass(p.pass, d, b, n, threads);  // starts the pool, warms the caches
  for (auto _ : state) {
    moved += run_pass(p.pass, d, b, n, threads);
    ++d.step;
    benchmark::ClobberMemory();
  }
  const bool masked = p.pass == Pass::kPerturbMaskBuild || p.pass == Pass::kRestoreUpdateMask;
  state.SetItemsProcessed(moved);
  state.SetBytesProcessed(moved * static_cast<int64_t>(sizeof(T)) * p.bytes_per_element +
                          (masked ? moved / 8 : 0));
}

// One read+write pass over n elements: the roofline of perturb and restore_update.
template <typename T>
void bm_stream_scale(benchmark::State& state, int64_t n, int threads) {
  Buffers<T>& b = Buffers<T>::get();
  const int64_t floats = n * static_cast<int64_t>(sizeof(T) / sizeof(float));
  float* x = reinterpret_cast<float*>(b.theta.data());
  for (auto _ : state) {
    softzo::testing::stream_scale(x, x, floats, 1.0f, threads);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * 2 * static_cast<int64_t>(sizeof(T)));
}

template <typename T>
void register_dtype(const char* dtype) {
  for (int64_t n : kSizes) {
    for (int threads : {1, 2}) {
      if (threads > 1 && n < kSizes[1]) continue;  // in-cache sizes: one thread
      const std::string suffix =
          "/" + std::to_string(n) + (threads > 1 ? "/threads:" + std::to_string(threads) : "");
      benchmark::RegisterBenchmark(
          (std::string("stream_scale/") + dtype + suffix).c_str(),
          [=](benchmark::State& st) { bm_stream_scale<T>(st, n, threads); })
          ->UseRealTime();
      for (const std::string& isa : softzo::available_isa_names()) {
        const bool emulated = softzo::isa_is_emulated(isa);
        if ((isa == "scalar" || emulated) && n > kSlowIsaMaxN) continue;
        const std::string label = emulated ? isa + "emu" : isa;
        for (const DistInfo& di : kDists) {
          for (const PassInfo& p : kPasses) {
            if (p.pass == Pass::kMezoStepSubset && n < kMaxN) continue;  // needs many blocks
            const ZoDistribution dist = di.dist;
            benchmark::RegisterBenchmark(
                (std::string(p.name) + "/" + dtype + "/" + di.name + "/" + label + suffix).c_str(),
                [=](benchmark::State& st) { bm_pass<T>(st, p, dist, isa, n, threads); })
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
