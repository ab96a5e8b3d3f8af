// Fills the kernel tables from the ISA list and picks the ISA in use from CPUID.
#include "dispatch/dispatch.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/thread_context.h"

namespace softzo {
namespace {

template <typename T>
struct Table {
  const SoftmaxKernels<T>* softmax[kNumIsas] = {nullptr, nullptr, nullptr};
  const LossKernels<T>* loss[kNumIsas] = {nullptr, nullptr, nullptr};
  const ZoKernels<T>* zo[kNumIsas] = {nullptr, nullptr, nullptr};
  void set(int i, const SoftmaxKernels<T>* s, const LossKernels<T>* l, const ZoKernels<T>* z) {
    softmax[i] = s;
    loss[i] = l;
    zo[i] = z;
  }
};

// Each family's table for one ISA, straight from its kernel list.
#define SOFTZO_SOFTMAX_ENTRY(...) SOFTZO_KERNEL_ENTRY(, __VA_ARGS__)
#define SOFTZO_LOSS_ENTRY(...) SOFTZO_KERNEL_ENTRY(, __VA_ARGS__)
#define SOFTZO_ZO_ENTRY(...) SOFTZO_KERNEL_ENTRY(zo_, __VA_ARGS__)
#define SOFTZO_TABLES(T, dt, isa)                                \
  static const SoftmaxKernels<T> softmax_##dt##_##isa = {        \
      SOFTZO_SOFTMAX_KERNELS(SOFTZO_SOFTMAX_ENTRY, T, dt, isa)}; \
  static const LossKernels<T> loss_##dt##_##isa = {              \
      SOFTZO_LOSS_KERNELS(SOFTZO_LOSS_ENTRY, T, dt, isa)};       \
  static const ZoKernels<T> zo_##dt##_##isa = {SOFTZO_ZO_KERNELS(SOFTZO_ZO_ENTRY, T, dt, isa)};
#define SOFTZO_CONVERT_ENTRY(...) SOFTZO_KERNEL_ENTRY(, __VA_ARGS__)
#define SOFTZO_ISA_TABLES(isa)                                        \
  SOFTZO_TABLES(float, f32, isa)                                      \
  SOFTZO_TABLES(double, f64, isa)                                     \
  static const ConvertKernels convert_##isa = {                       \
      SOFTZO_CONVERT_KERNELS(SOFTZO_CONVERT_ENTRY, void, half, isa)}; \
  static const HalfSoftmaxKernels half_softmax_##isa = {              \
      SOFTZO_HALF_SOFTMAX_KERNELS(SOFTZO_CONVERT_ENTRY, void, half, isa)};

SOFTZO_ISA_TABLES(scalar)
#if SOFTZO_HAVE_AVX2
SOFTZO_ISA_TABLES(avx2)
#endif
#if SOFTZO_HAVE_AVX512
SOFTZO_ISA_TABLES(avx512)
#endif
#if SOFTZO_HAVE_AVX512EMU
SOFTZO_ISA_TABLES(avx512emu)
#endif

// F16C (the AVX2 files' float16 conversions) came with or before AVX2 on every x86 CPU; it is
// checked anyway.
bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
}

struct Registry {
  Table<float> f32;
  Table<double> f64;
  const ConvertKernels* convert[kNumIsas] = {nullptr, nullptr, nullptr};
  const HalfSoftmaxKernels* half_softmax[kNumIsas] = {nullptr, nullptr, nullptr};
  IsaInfo info[kNumIsas];
  Isa native = Isa::kScalar;
  std::atomic<int> current{0};

  Registry() {
    info[0] = {"scalar", true, false};
    info[1] = {"avx2", false, false};
    info[2] = {"avx512", false, false};
    f32.set(0, &softmax_f32_scalar, &loss_f32_scalar, &zo_f32_scalar);
    f64.set(0, &softmax_f64_scalar, &loss_f64_scalar, &zo_f64_scalar);
    convert[0] = &convert_scalar;
    half_softmax[0] = &half_softmax_scalar;
#if SOFTZO_HAVE_AVX2
    if (cpu_has_avx2()) {
      f32.set(1, &softmax_f32_avx2, &loss_f32_avx2, &zo_f32_avx2);
      f64.set(1, &softmax_f64_avx2, &loss_f64_avx2, &zo_f64_avx2);
      convert[1] = &convert_avx2;
      half_softmax[1] = &half_softmax_avx2;
      info[1].available = true;
      native = Isa::kAvx2;
    }
#endif
#if SOFTZO_HAVE_AVX512
    // SOFTZO_EMULATE_AVX512=1 keeps the SIMDe build in the avx512 slot even on AVX-512 hardware,
    // so its emulation-only code paths can be tested there too.
    const char* emulate = std::getenv("SOFTZO_EMULATE_AVX512");
    if (cpu_has_avx512() && !(emulate && std::strcmp(emulate, "1") == 0)) {
      f32.set(2, &softmax_f32_avx512, &loss_f32_avx512, &zo_f32_avx512);
      f64.set(2, &softmax_f64_avx512, &loss_f64_avx512, &zo_f64_avx512);
      convert[2] = &convert_avx512;
      half_softmax[2] = &half_softmax_avx512;
      info[2].available = true;
      native = Isa::kAvx512;
    }
#endif
#if SOFTZO_HAVE_AVX512EMU
    // SIMDe lowers AVX-512 to AVX2 here, so emulation needs an AVX2 CPU. It is registered only
    // where native AVX-512 is absent and is never chosen by default: it exists for the tests.
    if (!info[2].available && cpu_has_avx2()) {
      f32.set(2, &softmax_f32_avx512emu, &loss_f32_avx512emu, &zo_f32_avx512emu);
      f64.set(2, &softmax_f64_avx512emu, &loss_f64_avx512emu, &zo_f64_avx512emu);
      convert[2] = &convert_avx512emu;
      half_softmax[2] = &half_softmax_avx512emu;
      info[2] = {"avx512", true, true};
    }
#endif
    // SOFTZO_ISA can only lower the choice.
    if (const char* env = std::getenv("SOFTZO_ISA")) {
      Isa wanted;
      if (!parse_isa(env, &wanted)) {
        std::fprintf(stderr, "softzo: ignoring unknown SOFTZO_ISA=%s\n", env);
      } else if (static_cast<int>(wanted) < static_cast<int>(native)) {
        native = wanted;
      }
    }
    current.store(static_cast<int>(native));
  }
};

Registry& registry() {
  static Registry r;
  return r;
}

template <typename T>
const Table<T>& table();
template <>
const Table<float>& table<float>() {
  return registry().f32;
}
template <>
const Table<double>& table<double>() {
  return registry().f64;
}

// The ISA this thread's calls use: its override, else the process's.
int current_index() {
  const int o = thread_isa_override();
  return o >= 0 ? o : registry().current.load(std::memory_order_relaxed);
}

}  // namespace

template <typename T>
const SoftmaxKernels<T>& softmax_kernels() {
  return *table<T>().softmax[current_index()];
}
template <typename T>
const LossKernels<T>& loss_kernels() {
  return *table<T>().loss[current_index()];
}
template <typename T>
const ZoKernels<T>& zo_kernels() {
  return *table<T>().zo[current_index()];
}
template <typename T>
const SoftmaxKernels<T>* softmax_kernels_for(Isa isa) {
  return table<T>().softmax[static_cast<int>(isa)];
}
template <typename T>
const LossKernels<T>* loss_kernels_for(Isa isa) {
  return table<T>().loss[static_cast<int>(isa)];
}
template <typename T>
const ZoKernels<T>* zo_kernels_for(Isa isa) {
  return table<T>().zo[static_cast<int>(isa)];
}

const ConvertKernels& convert_kernels() { return *registry().convert[current_index()]; }
const ConvertKernels* convert_kernels_for(Isa isa) {
  return registry().convert[static_cast<int>(isa)];
}
const HalfSoftmaxKernels& half_softmax_kernels() {
  return *registry().half_softmax[current_index()];
}
const HalfSoftmaxKernels* half_softmax_kernels_for(Isa isa) {
  return registry().half_softmax[static_cast<int>(isa)];
}

#define SOFTZO_INSTANTIATE_ACCESSORS(T)                          \
  template const SoftmaxKernels<T>& softmax_kernels<T>();        \
  template const LossKernels<T>& loss_kernels<T>();              \
  template const ZoKernels<T>& zo_kernels<T>();                  \
  template const SoftmaxKernels<T>* softmax_kernels_for<T>(Isa); \
  template const LossKernels<T>* loss_kernels_for<T>(Isa);       \
  template const ZoKernels<T>* zo_kernels_for<T>(Isa);
SOFTZO_INSTANTIATE_ACCESSORS(float)
SOFTZO_INSTANTIATE_ACCESSORS(double)

IsaInfo isa_info(Isa isa) { return registry().info[static_cast<int>(isa)]; }
Isa native_isa() { return registry().native; }
Isa current_isa() { return static_cast<Isa>(current_index()); }

bool set_current_isa(Isa isa) {
  if (!registry().info[static_cast<int>(isa)].available) return false;
  registry().current.store(static_cast<int>(isa));
  return true;
}

bool set_thread_isa(Isa isa) {
  if (!registry().info[static_cast<int>(isa)].available) return false;
  set_thread_isa_override(static_cast<int>(isa));
  return true;
}

void clear_thread_isa() { set_thread_isa_override(-1); }

bool parse_isa(const char* name, Isa* isa) {
  for (int i = 0; i < kNumIsas; ++i) {
    static const char* const kNames[kNumIsas] = {"scalar", "avx2", "avx512"};
    if (std::strcmp(name, kNames[i]) == 0) {
      *isa = static_cast<Isa>(i);
      return true;
    }
  }
  return false;
}

}  // namespace softzo
