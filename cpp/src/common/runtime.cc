// The runtime settings of the public API (softzo/runtime.h) over dispatch and the pool.
#include "softzo/runtime.h"

#include "common/thread_pool.h"
#include "dispatch/dispatch.h"

namespace softzo {

std::string current_isa_name() { return isa_info(current_isa()).name; }

std::vector<std::string> available_isa_names() {
  std::vector<std::string> names;
  for (int i = 0; i < kNumIsas; ++i) {
    const IsaInfo info = isa_info(static_cast<Isa>(i));
    if (info.available) names.push_back(info.name);
  }
  return names;
}

bool isa_is_emulated(const std::string& name) {
  Isa isa;
  return parse_isa(name.c_str(), &isa) && isa_info(isa).emulated;
}

bool use_isa(const std::string& name) {
  Isa isa;
  return parse_isa(name.c_str(), &isa) && set_current_isa(isa);
}

bool use_isa_in_this_thread(const std::string& name) {
  if (name.empty()) {
    clear_thread_isa();
    return true;
  }
  Isa isa;
  return parse_isa(name.c_str(), &isa) && set_thread_isa(isa);
}

int num_threads() { return default_num_threads(); }
void set_num_threads(int n) { set_default_num_threads(n); }

}  // namespace softzo
