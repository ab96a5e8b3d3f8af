// softzo._core's loss entries that take NumPy arrays, torch tensors and JAX arrays as they
// come (see loss_any.cc).
#pragma once

#include <nanobind/nanobind.h>

namespace softzo_bindings {

void def_loss_any(nanobind::module_& m);

}  // namespace softzo_bindings
