// The main() every benchmark binary shares: the ISA softzo picked as a context field, and a
// short default --benchmark_min_time (each binary registers hundreds of benchmarks) unless the
// command line sets one.
#ifndef SOFTZO_BENCH_BENCH_MAIN_H_
#define SOFTZO_BENCH_BENCH_MAIN_H_

#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "softzo/runtime.h"

inline int run_benchmarks(int argc, char** argv, void (*register_all)()) {
  static char default_min_time[] = "--benchmark_min_time=0.05";
  std::vector<char*> args(argv, argv + argc);
  bool has_min_time = false;
  for (int i = 1; i < argc; ++i) {
    has_min_time = has_min_time || std::strncmp(argv[i], "--benchmark_min_time", 20) == 0;
  }
  if (!has_min_time) args.insert(args.begin() + 1, default_min_time);
  int args_count = static_cast<int>(args.size());
  args.push_back(nullptr);

  benchmark::AddCustomContext("softzo_default_isa", softzo::current_isa_name());
  register_all();
  benchmark::Initialize(&args_count, args.data());
  if (benchmark::ReportUnrecognizedArguments(args_count, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}

#endif  // SOFTZO_BENCH_BENCH_MAIN_H_
