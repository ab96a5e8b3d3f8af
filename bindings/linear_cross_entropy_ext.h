// softzo._factored's fused linear cross-entropy entry (linear_cross_entropy_ext.cc).
#pragma once

#include <nanobind/nanobind.h>

void def_linear_cross_entropy(nanobind::module_& m);
