// Runtime ISA choice: one table of kernel pointers per ISA, picked from CPUID once.
#ifndef SOFTZO_DISPATCH_DISPATCH_H_
#define SOFTZO_DISPATCH_DISPATCH_H_

#include <stddef.h>

#include "kernels/losses/losses_kernels.h"
#include "kernels/softmax/softmax_kernels.h"
#include "kernels/zo/zo_kernels.h"

namespace softzo {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
constexpr int kNumIsas = 3;

template <typename T>
struct SoftmaxKernels {
  T (*rmax)(size_t, const T*, T*);
  double (*raddexp)(size_t, const T*, double, T);
  double (*raddstoreexp)(size_t, const T*, T*, double, T);
  void (*vscale)(size_t, const T*, T*, T);
  softzo_extexp (*raddextexp)(size_t, const T*, int*);
  void (*vscaleextexp)(size_t, const T*, T*, double, double);
  softzo_online (*ronlinesumexp)(size_t, const T*);
  void (*vsubc)(size_t, const T*, T*, T, T);
  void (*vexp)(size_t, const T*, T*);
  double (*vsoftmaxgrad)(size_t, const T*, T*, double, double, T, const T*, const T*, T, T);
  double (*rklgrad)(size_t, const T*, const T*, T*, double, double, double, double, T, T);
};

template <typename T>
struct LossKernels {
  double (*rdot)(size_t, const T*, const T*);
  double (*rsumsqdiff)(size_t, const T*, T);
  void (*vquad)(size_t, const T*, T*, T, T, T, T);
  double (*rstablesum)(size_t, const T*);
  void (*vstable)(size_t, const T*, T*, T, int);
};

template <typename T>
struct ZoKernels {
  void (*fill)(size_t, uint64_t, const softzo_zo_stream*, T*);
  void (*axpy)(size_t, uint64_t, const softzo_zo_stream*, T, T*);
  void (*restore_update)(size_t, uint64_t, const softzo_zo_stream*, T, T, T, T, T*);
  void (*mask_build)(size_t, T, const T*, uint32_t*);
  void (*axpy_mask)(size_t, uint64_t, const softzo_zo_stream*, T, const uint32_t*, T*);
  void (*restore_update_mask)(size_t, uint64_t, const softzo_zo_stream*, T, T, T, T,
                              const uint32_t*, T*);
  void (*axpy_diag)(size_t, uint64_t, const softzo_zo_stream*, T, const T*, T*);
  void (*hizoo_update)(size_t, uint64_t, const softzo_zo_stream*, T, T, T, T, T, T, T*, T*);
  double (*sumsq)(size_t, uint64_t, const softzo_zo_stream*);
  double (*dot)(size_t, uint64_t, const softzo_zo_stream*, const T*);
};

struct IsaInfo {
  const char* name;
  bool available;  // compiled in and runnable here (natively or emulated)
  bool emulated;   // AVX-512 through SIMDe on a CPU without AVX-512
};

// Kernels of the ISA in use (or of an explicitly named one, for tests and benchmarks).
template <typename T>
const SoftmaxKernels<T>& softmax_kernels();
template <typename T>
const SoftmaxKernels<T>* softmax_kernels_for(Isa isa);  // nullptr if unavailable
template <typename T>
const LossKernels<T>& loss_kernels();
template <typename T>
const LossKernels<T>* loss_kernels_for(Isa isa);  // nullptr if unavailable
template <typename T>
const ZoKernels<T>& zo_kernels();

IsaInfo isa_info(Isa isa);
Isa native_isa();   // best ISA the CPU runs natively, lowered by SOFTZO_ISA
Isa current_isa();  // the ISA in use now
// Selects any available ISA (an emulated one too); returns false if it is unavailable. Safe
// while other threads compute: an op reads the ISA when it builds its kernel tables (a call,
// or a task of rows), so every row is computed by the kernels of one ISA.
bool set_current_isa(Isa isa);
bool parse_isa(const char* name, Isa* isa);

}  // namespace softzo

#endif  // SOFTZO_DISPATCH_DISPATCH_H_
