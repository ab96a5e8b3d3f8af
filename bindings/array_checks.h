// Checks on arrays about to be written: broadcast (zero-stride) outputs and outputs that
// overlap an input without being it. Templates over nb::ndarray and ArrayView alike.
#pragma once

#include <nanobind/nanobind.h>

#include <cstdint>
#include <string>

namespace softzo_bindings {

namespace nb = nanobind;

// [first, last] byte addresses an array touches; false when it has no elements.
template <typename A>
bool byte_extent(const A& a, uintptr_t* lo, uintptr_t* hi) {
  intptr_t low = 0, high = 0;
  for (size_t d = 0; d < a.ndim(); ++d) {
    if (a.shape(d) == 0) return false;
    const intptr_t span = static_cast<intptr_t>(a.shape(d) - 1) * a.stride(d);
    (span < 0 ? low : high) += span;
  }
  const auto base = reinterpret_cast<uintptr_t>(a.data());
  *lo = base + low * static_cast<intptr_t>(a.itemsize());
  *hi = base + (high + 1) * static_cast<intptr_t>(a.itemsize()) - 1;
  return true;
}

// Raises ValueError naming `name` (and `input`) when out cannot be written as x's result.
template <typename A, typename B>
void check_out(const A& x, const B& out, const char* name = "out", const char* input = "x") {
  if (out.size() == 0) return;  // nothing is written
  for (size_t d = 0; d < out.ndim(); ++d) {
    if (out.stride(d) == 0 && out.shape(d) > 1) {
      throw nb::value_error(
          (std::string(name) + " has overlapping elements (a zero stride, e.g. a broadcast view)")
              .c_str());
    }
  }
  bool same = x.data() == out.data() && x.ndim() == out.ndim();
  for (size_t d = 0; same && d < x.ndim(); ++d) {
    same = x.shape(d) == out.shape(d) && (x.stride(d) == out.stride(d) || x.shape(d) == 1);
  }
  uintptr_t xlo, xhi, olo, ohi;
  if (!same && byte_extent(x, &xlo, &xhi) && byte_extent(out, &olo, &ohi) && xlo <= ohi &&
      olo <= xhi) {
    const std::string o(name), i(input);
    throw nb::value_error((o + " overlaps " + i + " without being " + i + " itself; pass " + o +
                           "=" + i + " for in-place operation or a separate array")
                              .c_str());
  }
}

}  // namespace softzo_bindings
