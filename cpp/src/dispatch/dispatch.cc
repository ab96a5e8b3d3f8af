// Fills the kernel tables from the ISA list and picks the ISA in use from CPUID.
#include "dispatch/dispatch.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace softzo {
namespace {

template <typename T>
struct Table {
  const SoftmaxKernels<T>* isa[kNumIsas] = {nullptr, nullptr, nullptr};
  const LossKernels<T>* loss[kNumIsas] = {nullptr, nullptr, nullptr};
  const ZoKernels<T>* zo[kNumIsas] = {nullptr, nullptr, nullptr};
  void set(int i, const SoftmaxKernels<T>* s, const LossKernels<T>* l, const ZoKernels<T>* z) {
    isa[i] = s;
    loss[i] = l;
    zo[i] = z;
  }
};

#define SOFTZO_KERNEL_SET(T, dt, sfx)                                                          \
  SoftmaxKernels<T> {                                                                          \
    softzo_##dt##_rmax_##sfx, softzo_##dt##_raddexp_##sfx, softzo_##dt##_raddstoreexp_##sfx,   \
        softzo_##dt##_vscale_##sfx, softzo_##dt##_raddextexp_##sfx,                            \
        softzo_##dt##_vscaleextexp_##sfx, softzo_##dt##_ronlinesumexp_##sfx,                   \
        softzo_##dt##_vsubc_##sfx, softzo_##dt##_vexp_##sfx, softzo_##dt##_vsoftmaxgrad_##sfx, \
        softzo_##dt##_rklgrad_##sfx                                                            \
  }

#define SOFTZO_LOSS_SET(T, dt, sfx)                                                      \
  LossKernels<T> {                                                                       \
    softzo_##dt##_rdot_##sfx, softzo_##dt##_rsumsqdiff_##sfx, softzo_##dt##_vquad_##sfx, \
        softzo_##dt##_rstablesum_##sfx, softzo_##dt##_vstable_##sfx                      \
  }

#define SOFTZO_ZO_SET(T, dt, sfx)                                                     \
  ZoKernels<T> {                                                                      \
    softzo_##dt##_zo_fill_##sfx, softzo_##dt##_zo_axpy_##sfx,                         \
        softzo_##dt##_zo_restore_update_##sfx, softzo_##dt##_zo_mask_build_##sfx,     \
        softzo_##dt##_zo_axpy_mask_##sfx, softzo_##dt##_zo_restore_update_mask_##sfx, \
        softzo_##dt##_zo_axpy_diag_##sfx, softzo_##dt##_zo_hizoo_update_##sfx,        \
        softzo_##dt##_zo_sumsq_##sfx, softzo_##dt##_zo_dot_##sfx                      \
  }

#define SOFTZO_KERNEL_SETS(sfx)                                                          \
  static const SoftmaxKernels<float> k_f32_##sfx = SOFTZO_KERNEL_SET(float, f32, sfx);   \
  static const SoftmaxKernels<double> k_f64_##sfx = SOFTZO_KERNEL_SET(double, f64, sfx); \
  static const LossKernels<float> l_f32_##sfx = SOFTZO_LOSS_SET(float, f32, sfx);        \
  static const LossKernels<double> l_f64_##sfx = SOFTZO_LOSS_SET(double, f64, sfx);      \
  static const ZoKernels<float> z_f32_##sfx = SOFTZO_ZO_SET(float, f32, sfx);            \
  static const ZoKernels<double> z_f64_##sfx = SOFTZO_ZO_SET(double, f64, sfx);

SOFTZO_KERNEL_SETS(scalar)
#if SOFTZO_HAVE_AVX2
SOFTZO_KERNEL_SETS(avx2)
#endif
#if SOFTZO_HAVE_AVX512
SOFTZO_KERNEL_SETS(avx512)
#endif
#if SOFTZO_HAVE_AVX512EMU
SOFTZO_KERNEL_SETS(avx512emu)
#endif

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
}

struct Registry {
  Table<float> f32;
  Table<double> f64;
  IsaInfo info[kNumIsas];
  Isa native = Isa::kScalar;
  std::atomic<int> current{0};

  Registry() {
    info[0] = {"scalar", true, false};
    info[1] = {"avx2", false, false};
    info[2] = {"avx512", false, false};
    f32.set(0, &k_f32_scalar, &l_f32_scalar, &z_f32_scalar);
    f64.set(0, &k_f64_scalar, &l_f64_scalar, &z_f64_scalar);
#if SOFTZO_HAVE_AVX2
    if (cpu_has_avx2()) {
      f32.set(1, &k_f32_avx2, &l_f32_avx2, &z_f32_avx2);
      f64.set(1, &k_f64_avx2, &l_f64_avx2, &z_f64_avx2);
      info[1].available = true;
      native = Isa::kAvx2;
    }
#endif
#if SOFTZO_HAVE_AVX512
    if (cpu_has_avx512()) {
      f32.set(2, &k_f32_avx512, &l_f32_avx512, &z_f32_avx512);
      f64.set(2, &k_f64_avx512, &l_f64_avx512, &z_f64_avx512);
      info[2].available = true;
      native = Isa::kAvx512;
    }
#endif
#if SOFTZO_HAVE_AVX512EMU
    // SIMDe lowers AVX-512 to AVX2 here, so emulation needs an AVX2 CPU. It is registered
    // where native AVX-512 is absent, or in place of the native kernels when the environment
    // sets SOFTZO_EMULATE_AVX512=1 (so that the emulated build is tested on AVX-512 machines
    // too), and is never chosen by default: it exists for the tests.
    const char* emulate = std::getenv("SOFTZO_EMULATE_AVX512");
    const bool forced = emulate && std::strcmp(emulate, "1") == 0;
    if ((!info[2].available || forced) && cpu_has_avx2()) {
      f32.set(2, &k_f32_avx512emu, &l_f32_avx512emu, &z_f32_avx512emu);
      f64.set(2, &k_f64_avx512emu, &l_f64_avx512emu, &z_f64_avx512emu);
      info[2] = {"avx512", true, true};
      native = Isa::kAvx2;
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

}  // namespace

template <typename T>
const SoftmaxKernels<T>& softmax_kernels() {
  return *table<T>().isa[registry().current.load(std::memory_order_relaxed)];
}

template <typename T>
const SoftmaxKernels<T>* softmax_kernels_for(Isa isa) {
  return table<T>().isa[static_cast<int>(isa)];
}

template <typename T>
const LossKernels<T>& loss_kernels() {
  return *table<T>().loss[registry().current.load(std::memory_order_relaxed)];
}

template <typename T>
const LossKernels<T>* loss_kernels_for(Isa isa) {
  return table<T>().loss[static_cast<int>(isa)];
}

template <typename T>
const ZoKernels<T>& zo_kernels() {
  return *table<T>().zo[registry().current.load(std::memory_order_relaxed)];
}

template const ZoKernels<float>& zo_kernels<float>();
template const ZoKernels<double>& zo_kernels<double>();
template const LossKernels<float>& loss_kernels<float>();
template const LossKernels<double>& loss_kernels<double>();
template const LossKernels<float>* loss_kernels_for<float>(Isa);
template const LossKernels<double>* loss_kernels_for<double>(Isa);
template const SoftmaxKernels<float>& softmax_kernels<float>();
template const SoftmaxKernels<double>& softmax_kernels<double>();
template const SoftmaxKernels<float>* softmax_kernels_for<float>(Isa);
template const SoftmaxKernels<double>* softmax_kernels_for<double>(Isa);

IsaInfo isa_info(Isa isa) { return registry().info[static_cast<int>(isa)]; }
Isa native_isa() { return registry().native; }
Isa current_isa() { return static_cast<Isa>(registry().current.load()); }

bool set_current_isa(Isa isa) {
  if (!registry().info[static_cast<int>(isa)].available) return false;
  registry().current.store(static_cast<int>(isa));
  return true;
}

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
