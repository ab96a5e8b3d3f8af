// How the kernel lists work. Each family header (softmax/softmax_kernels.h,
// losses/losses_kernels.h, zo/zo_kernels.h) holds ONE list: an X-macro
// SOFTZO_<FAMILY>_KERNELS(X, T, dt, isa) with one line per kernel,
//   X(return type, name, (parameters), dt, isa)
// and that kernel's contract in a comment above it. From the list come the per-ISA declarations
// (below), the dispatch table's fields and entries (dispatch/dispatch.h, dispatch.cc), and the
// kernel names the tests check (softzo._testing.kernels()). Adding a kernel is one line in the
// list plus its body in each ISA file (softzo_<dt>_<prefix><name>_<isa>, defined there).
#ifndef SOFTZO_KERNELS_KERNEL_LIST_H_
#define SOFTZO_KERNELS_KERNEL_LIST_H_

// A declaration: ret softzo_<dt>_<prefix><name>_<isa>(parameters);
#define SOFTZO_KERNEL_DECLARE(prefix, ret, name, params, dt, isa) \
  ret softzo_##dt##_##prefix##name##_##isa params;
// A dispatch-table field: ret (*name)(parameters);
#define SOFTZO_KERNEL_FIELD(ret, name, params, dt, isa) ret(*name) params;
// A dispatch-table entry: the ISA's function.
#define SOFTZO_KERNEL_ENTRY(prefix, ret, name, params, dt, isa) \
  softzo_##dt##_##prefix##name##_##isa,
// The kernel's name, as a string.
#define SOFTZO_KERNEL_NAME(ret, name, params, dt, isa) #name,

// Every ISA file in the build, for the float32 and float64 instantiations of a family list.
#define SOFTZO_FOR_EACH_KERNEL_ISA(APPLY) \
  APPLY(scalar)                           \
  APPLY(avx2)                             \
  APPLY(avx512)                           \
  APPLY(avx512emu)

#endif  // SOFTZO_KERNELS_KERNEL_LIST_H_
