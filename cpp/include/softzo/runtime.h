// softzo's runtime settings: which ISA the kernels use and how many threads they get.
#ifndef SOFTZO_RUNTIME_H_
#define SOFTZO_RUNTIME_H_

#include <string>
#include <vector>

namespace softzo {

// The ISA in use: "scalar", "avx2" or "avx512". Chosen once from CPUID, lowered by the
// environment variable SOFTZO_ISA.
std::string current_isa_name();
// The ISAs this build can run here, in increasing order. "avx512" appears on CPUs without
// AVX-512 when the library was built with SIMDe emulation (isa_is_emulated() tells).
std::vector<std::string> available_isa_names();
bool isa_is_emulated(const std::string& name);
// Switches the kernels of every later call; returns false (and changes nothing) for an ISA
// that is not available. Meant for tests and benchmarks.
bool use_isa(const std::string& name);
// The same for the calling thread's later calls only (and the library's pool threads while they
// run those calls' tasks), without touching any other thread: "" goes back to the process's
// ISA. Safe to use from several threads at once, unlike use_isa.
bool use_isa_in_this_thread(const std::string& name);

int num_threads();            // default thread count of calls that pass 0
void set_num_threads(int n);  // n >= 1

}  // namespace softzo

#endif  // SOFTZO_RUNTIME_H_
