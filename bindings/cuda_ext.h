// softzo._core's CUDA entries (see cuda_ext.cc).
#pragma once

#include <nanobind/nanobind.h>

namespace softzo_bindings {

void def_cuda(nanobind::module_& m);

}  // namespace softzo_bindings
