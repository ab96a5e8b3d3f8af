// Runtime ISA choice: one table of kernel pointers per family and ISA, generated from the
// family's kernel list and picked from CPUID once.
#ifndef SOFTZO_DISPATCH_DISPATCH_H_
#define SOFTZO_DISPATCH_DISPATCH_H_

#include <stddef.h>

#include "kernels/convert/convert_kernels.h"
#include "kernels/half_softmax/half_softmax_kernels.h"
#include "kernels/losses/losses_kernels.h"
#include "kernels/softmax/softmax_kernels.h"
#include "kernels/zo/zo_kernels.h"

namespace softzo {

enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };
constexpr int kNumIsas = 3;

// One field per kernel of the list: softmax_kernels<T>().raddexp(...).
template <typename T>
struct SoftmaxKernels {
  SOFTZO_SOFTMAX_KERNELS(SOFTZO_KERNEL_FIELD, T, unused, unused)
};
template <typename T>
struct LossKernels {
  SOFTZO_LOSS_KERNELS(SOFTZO_KERNEL_FIELD, T, unused, unused)
};
template <typename T>
struct ZoKernels {
  SOFTZO_ZO_KERNELS(SOFTZO_KERNEL_FIELD, T, unused, unused)
};

// The half-precision conversions: one table per ISA (no float / double instantiations).
struct ConvertKernels {
  SOFTZO_CONVERT_KERNELS(SOFTZO_KERNEL_FIELD, void, unused, unused)
};
// The fused half-precision softmax sweeps: likewise one table per ISA.
struct HalfSoftmaxKernels {
  SOFTZO_HALF_SOFTMAX_KERNELS(SOFTZO_KERNEL_FIELD, void, unused, unused)
};

struct IsaInfo {
  const char* name;
  bool available;  // compiled in and runnable here (natively or emulated)
  bool emulated;   // AVX-512 through SIMDe on a CPU without AVX-512
};

// The kernels of the ISA in use: this thread's override (set by tests, carried to the pool's
// threads), else the process's.
template <typename T>
const SoftmaxKernels<T>& softmax_kernels();
template <typename T>
const LossKernels<T>& loss_kernels();
template <typename T>
const ZoKernels<T>& zo_kernels();
const ConvertKernels& convert_kernels();
const HalfSoftmaxKernels& half_softmax_kernels();
// The kernels of a named ISA; nullptr if it is unavailable here.
template <typename T>
const SoftmaxKernels<T>* softmax_kernels_for(Isa isa);
template <typename T>
const LossKernels<T>* loss_kernels_for(Isa isa);
template <typename T>
const ZoKernels<T>* zo_kernels_for(Isa isa);
const ConvertKernels* convert_kernels_for(Isa isa);
const HalfSoftmaxKernels* half_softmax_kernels_for(Isa isa);

IsaInfo isa_info(Isa isa);
Isa native_isa();   // best ISA the CPU runs natively, lowered by SOFTZO_ISA
Isa current_isa();  // the ISA in use now (this thread's override included)
// Selects any available ISA (an emulated one too) for the whole process; false if unavailable.
bool set_current_isa(Isa isa);
// Selects an available ISA for this thread's calls only (false if unavailable); see
// common/thread_context.h.
bool set_thread_isa(Isa isa);
void clear_thread_isa();
bool parse_isa(const char* name, Isa* isa);

}  // namespace softzo

#endif  // SOFTZO_DISPATCH_DISPATCH_H_
