// Benchmarks of softmax, log_softmax and logsumexp for every ISA this build can run here, every
// algorithm, float32 and float64, on every input distribution, plus a streaming roofline over
// the same buffer sizes, so one run shows how close each kernel gets to memory bandwidth and
// how far its speed depends on the values.
//
//   cmake -S . -B build -DSOFTZO_BUILD_BENCH=ON && cmake --build build -j
//   build/bench/softzo_bench_softmax                     # everything: ~20 min on 2 cores
//   build/bench/softzo_bench_softmax --benchmark_filter='/f32/.*/avx2/normal/32768/'
//   build/bench/softzo_bench_softmax --benchmark_filter='^log_softmax/f32/two_pass/.*/32768/'
//
// Names are op/dtype/algorithm/isa/input/size[/threads:2], size being n or rows x n and input
// one of bench_inputs.h's distributions (normal, wide30, wide100, masked, padded, temp0.1); the
// roofline is stream_read/dtype/size (one read pass) and stream_scale/dtype/size (one read+write
// pass). Google Benchmark appends /real_time to every name: end a filter with "/", not "$".
// "avx512emu" is the AVX-512 code lowered to AVX2 by SIMDe (not a speed to quote). Bytes/s is
// nominal traffic: one element size per read pass, two per read+write pass, with no write-
// allocate reads. Each benchmark runs for 0.05 s unless --benchmark_min_time says otherwise
// (benchmark 1.7 takes plain seconds, e.g. 0.5; 1.8+ also accepts 0.5s or 100x).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <new>
#include <string>
#include <vector>

#include "bench_inputs.h"
#include "bench_main.h"
#include "softzo/softzo.h"
#include "testing/stream.h"

namespace {

using softzo::SoftmaxAlgorithm;
using softzo_bench::Dist;

using Op = softzo::SoftmaxOp;

struct OpInfo {
  const char* name;
  Op op;
};
constexpr OpInfo kOps[] = {
    {"softmax", Op::kSoftmax}, {"log_softmax", Op::kLogSoftmax}, {"logsumexp", Op::kLogSumExp}};

struct AlgoInfo {
  const char* name;
  SoftmaxAlgorithm algo;
};
constexpr AlgoInfo kAlgos[] = {{"two_pass", SoftmaxAlgorithm::kTwoPass},
                               {"three_pass_reload", SoftmaxAlgorithm::kThreePassReload},
                               {"three_pass_recompute", SoftmaxAlgorithm::kThreePassRecompute},
                               {"online", SoftmaxAlgorithm::kOnline},
                               {"auto", SoftmaxAlgorithm::kAuto}};

const char* algo_name(SoftmaxAlgorithm algo) {
  for (const AlgoInfo& a : kAlgos) {
    if (a.algo == algo) return a.name;
  }
  return "?";
}

struct Shape {
  int64_t rows;
  int64_t n;
  bool batched;
  int64_t elements() const { return rows * n; }
  std::string name() const {
    return batched ? std::to_string(rows) + "x" + std::to_string(n) : std::to_string(n);
  }
};

constexpr int64_t kK = 1024, kM = 1024 * 1024;
// Single rows from L1 to far past the last-level cache, then LLM-like batches: a vocabulary
// of 32000 and of 128256 (Llama 3), and many short attention rows.
const Shape kSingleRows[] = {{1, kK, false},
                             {1, 32 * kK, false},
                             {1, 256 * kK, false},
                             {1, 4 * kM, false},
                             {1, 64 * kM, false}};
const Shape kBatches[] = {{64, 32000, true}, {8, 128256, true}, {4096, 1024, true}};
// The scalar and the SIMDe-emulated kernels take seconds per call beyond this.
constexpr int64_t kSlowIsaMaxElements = 4 * kM;
// From here on a second registration runs on 2 threads.
constexpr int64_t kThreadedMinElements = kM;
constexpr int kMaxElementsLog2 = 26;  // 64M

// Nominal memory traffic in element sizes per element: 1 per read pass, 2 per read+write pass.
int traffic_units(Op op, SoftmaxAlgorithm algo) {
  const bool one_read = algo == SoftmaxAlgorithm::kTwoPass || algo == SoftmaxAlgorithm::kOnline;
  switch (op) {
    case Op::kLogSumExp:
      return one_read ? 1 : 2;  // (max,) sum
    case Op::kLogSoftmax:
      return one_read ? 3 : 4;  // reload stores nothing for log_softmax: it is recompute here
    case Op::kSoftmax:
      if (one_read) return 3;
      return algo == SoftmaxAlgorithm::kThreePassReload ? 5 : 4;
  }
  return 0;
}

// One input and one output buffer per dtype, and the roofline's source (floats of 1: plain
// values, never subnormal, whatever the input holds), big enough for the largest size, allocated
// and touched once so no benchmark pays for page faults; smaller sizes use their prefix. The input
// holds one distribution and shape at a time, refilled (untimed) when a benchmark asks for
// another: benchmarks are registered distribution by distribution, shape by shape, so a run
// refills once per pair.
template <typename T>
struct Buffers {
  T* x = nullptr;
  T* y = nullptr;
  float* stream = nullptr;

  static Buffers& get() {
    static Buffers b;
    return b;
  }

  const T* input(Dist dist, const Shape& s) {
    if (dist != dist_ || s.rows != rows_ || s.n != n_) {
      softzo_bench::fill_logits(x, s.rows, s.n, dist, 1);
      dist_ = dist;
      rows_ = s.rows;
      n_ = s.n;
    }
    return x;
  }

 private:
  Buffers() {
    const size_t n = size_t{1} << kMaxElementsLog2;
    x = allocate<T>(n);
    y = allocate<T>(n);
    for (size_t i = 0; i < n; ++i) x[i] = y[i] = T(0);  // first touch
    const size_t floats = n * sizeof(T) / sizeof(float);
    stream = allocate<float>(floats);
    for (size_t i = 0; i < floats; ++i) stream[i] = 1.0f;
  }

  Dist dist_ = Dist::kNormal;
  int64_t rows_ = 0, n_ = 0;  // nothing filled yet

  // 64-byte aligned so vector loads never split a cache line; never freed (process lifetime).
  template <typename U>
  static U* allocate(size_t n) {
    void* p = std::aligned_alloc(64, n * sizeof(U));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<U*>(p);
  }
};

template <typename T>
void run_op(Op op, const T* x, T* y, const Shape& s, const softzo::SoftmaxOptions& opt) {
  switch (op) {
    case Op::kSoftmax:
      softzo::softmax(x, y, s.rows, s.n, opt);
      break;
    case Op::kLogSoftmax:
      softzo::log_softmax(x, y, s.rows, s.n, opt);
      break;
    case Op::kLogSumExp:
      softzo::logsumexp(x, y, s.rows, s.n, opt);
      break;
  }
}

template <typename T>
void bm_op(benchmark::State& state, Op op, SoftmaxAlgorithm algo, const std::string& isa, Dist dist,
           Shape shape, int threads) {
  if (!softzo::use_isa(isa)) {
    state.SkipWithError(("ISA not available: " + isa).c_str());
    return;
  }
  Buffers<T>& buf = Buffers<T>::get();
  const T* x = buf.input(dist, shape);
  softzo::SoftmaxOptions opt;
  opt.algorithm = algo;
  opt.num_threads = threads;
  // Untimed call: starts the pool's threads and warms the cache for the in-cache sizes, which
  // matters where a single iteration already exceeds the min time.
  run_op(op, x, buf.y, shape, opt);
  for (auto _ : state) {
    run_op(op, x, buf.y, shape, opt);
    benchmark::ClobberMemory();
  }
  const SoftmaxAlgorithm used =
      algo == SoftmaxAlgorithm::kAuto
          ? softzo::auto_algorithm(shape.n, static_cast<int>(sizeof(T)), op)
          : algo;
  if (algo == SoftmaxAlgorithm::kAuto) state.SetLabel(algo_name(used));
  const int64_t elements = shape.elements();
  state.SetItemsProcessed(state.iterations() * elements);
  state.SetBytesProcessed(state.iterations() * elements * traffic_units(op, used) *
                          static_cast<int64_t>(sizeof(T)));
}

// The roofline: the library's own streaming loops (testing/stream.h), chunked like the ops'
// split rows and run on the same pool. They stream floats; a float64 buffer is the same bytes.
template <typename T>
void bm_stream(benchmark::State& state, bool write, Shape shape, int threads) {
  Buffers<T>& buf = Buffers<T>::get();
  const int64_t n = shape.elements();
  const int64_t floats = n * static_cast<int64_t>(sizeof(T) / sizeof(float));
  const float* x = buf.stream;
  float* y = reinterpret_cast<float*>(buf.y);
  auto once = [&] {
    if (write) {
      softzo::testing::stream_scale(x, y, floats, 0.5f, threads);
    } else {
      double sum = softzo::testing::stream_read(x, floats, threads);
      benchmark::DoNotOptimize(sum);
    }
  };
  once();
  for (auto _ : state) {
    once();
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
  state.SetBytesProcessed(state.iterations() * n * (write ? 2 : 1) *
                          static_cast<int64_t>(sizeof(T)));
}

struct IsaEntry {
  std::string name;   // what use_isa() takes
  std::string label;  // what the benchmark name shows
  bool slow;          // scalar or emulated: large sizes skipped
};

std::string size_suffix(const Shape& shape, int threads) {
  return "/" + shape.name() + (threads > 1 ? "/threads:" + std::to_string(threads) : "");
}

template <typename T>
void register_dtype(const char* dtype, const std::vector<Shape>& shapes,
                    const std::vector<IsaEntry>& isas) {
  for (const Shape& shape : shapes) {  // the roofline does not depend on the values
    for (int threads : {1, 2}) {
      if (threads > 1 && shape.elements() < kThreadedMinElements) continue;
      for (bool write : {false, true}) {
        benchmark::RegisterBenchmark(
            (std::string(write ? "stream_scale/" : "stream_read/") + dtype +
             size_suffix(shape, threads))
                .c_str(),
            [=](benchmark::State& st) { bm_stream<T>(st, write, shape, threads); })
            ->UseRealTime();  // the pool's workers are not in the main thread's CPU time
      }
    }
  }
  for (const softzo_bench::DistInfo& dist : softzo_bench::kDists) {
    for (const Shape& shape : shapes) {
      for (int threads : {1, 2}) {
        if (threads > 1 && shape.elements() < kThreadedMinElements) continue;
        for (const OpInfo& op : kOps) {
          for (const AlgoInfo& algo : kAlgos) {
            for (const IsaEntry& isa : isas) {
              if (isa.slow && shape.elements() > kSlowIsaMaxElements) continue;
              const std::string name = std::string(op.name) + "/" + dtype + "/" + algo.name + "/" +
                                       isa.label + "/" + dist.name + size_suffix(shape, threads);
              const Op o = op.op;
              const SoftmaxAlgorithm a = algo.algo;
              const std::string isa_name = isa.name;
              const Dist d = dist.dist;
              benchmark::RegisterBenchmark(name.c_str(), [=](benchmark::State& st) {
                bm_op<T>(st, o, a, isa_name, d, shape, threads);
              })->UseRealTime();
            }
          }
        }
      }
    }
  }
}

void register_all() {
  std::vector<IsaEntry> isas;
  std::string isa_list;
  for (const std::string& name : softzo::available_isa_names()) {
    const bool emulated = softzo::isa_is_emulated(name);
    isas.push_back({name, emulated ? name + "emu" : name, emulated || name == "scalar"});
    isa_list += (isa_list.empty() ? "" : ",") + isas.back().label;
  }
  benchmark::AddCustomContext("softzo_isas", isa_list);

  std::vector<Shape> f32_shapes(std::begin(kSingleRows), std::end(kSingleRows));
  f32_shapes.insert(f32_shapes.end(), std::begin(kBatches), std::end(kBatches));
  const std::vector<Shape> f64_shapes(std::begin(kSingleRows), std::end(kSingleRows));
  register_dtype<float>("f32", f32_shapes, isas);
  register_dtype<double>("f64", f64_shapes, isas);
}

}  // namespace

int main(int argc, char** argv) { return run_benchmarks(argc, argv, register_all); }
