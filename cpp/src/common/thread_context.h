// Per-thread settings that the thread pool carries from a caller to the threads that run its
// tasks: today the ISA a test asked for (dispatch/dispatch.h), so that no global state is flipped
// to run a call on one ISA.
#ifndef SOFTZO_COMMON_THREAD_CONTEXT_H_
#define SOFTZO_COMMON_THREAD_CONTEXT_H_

namespace softzo {

// The ISA this thread's calls use instead of the process's, or -1 for none.
int thread_isa_override();
void set_thread_isa_override(int isa);

}  // namespace softzo

#endif  // SOFTZO_COMMON_THREAD_CONTEXT_H_
