// softzo._factored.linear_cross_entropy: the fused linear layer + cross-entropy
// (softzo/linear_cross_entropy.h) on C-contiguous NumPy arrays that python/softzo/losses.py
// prepares: float32 arrays, or the uint16 bits of float16 / bfloat16 ones (dtype says which).
// Results come back as new NumPy arrays of the same kind; the loss as a 0-d array rounded once.
#include "linear_cross_entropy_ext.h"

#include <nanobind/ndarray.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "softzo/linear_cross_entropy.h"

namespace nb = nanobind;

namespace {

using Any = nb::ndarray<nb::ro, nb::c_contig, nb::device::cpu>;
using Indices = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Scales = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

// A new NumPy array (float32, or uint16 bits of a half type) that owns its buffer.
template <typename Bits>
nb::ndarray<nb::numpy, Bits> new_array(size_t ndim, const size_t* shape) {
  size_t n = 1;
  for (size_t d = 0; d < ndim; ++d) n *= shape[d];
  Bits* data = new Bits[n > 0 ? n : 1]();
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<Bits*>(p); });
  return nb::ndarray<nb::numpy, Bits>(data, ndim, shape, owner);
}

// Arrays of the element type the dtype code names: 0 float32, 1 float16, 2 bfloat16.
void check_array(const Any& a, const char* name, size_t ndim, int code) {
  const bool ok = code == 0 ? a.dtype() == nb::dtype<float>() : a.dtype() == nb::dtype<uint16_t>();
  if (!ok || a.ndim() != ndim) {
    throw nb::value_error((std::string(name) + ": expected a C-contiguous " + std::to_string(ndim) +
                           "-D array of the dtype's element type")
                              .c_str());
  }
}

template <typename T, typename Bits>
nb::tuple run(Any h, Any weight, Any bias, Indices target, int64_t ignore_index,
              double label_smoothing, double softcap, int reduction, double grad_filter,
              Scales row_scale, bool want_grad, int num_threads) {
  const size_t n = h.shape(0), d = h.shape(1), v = weight.shape(0);
  if (weight.shape(1) != d) throw nb::value_error("weight: expected shape (classes, dim)");
  if (bias.is_valid() && bias.shape(0) != v) throw nb::value_error("bias: expected (classes,)");
  if (target.shape(0) != n) throw nb::value_error("target: expected one per row of h");
  if (row_scale.is_valid() && row_scale.shape(0) != n)
    throw nb::value_error("row_scale: expected one per row of h");
  softzo::LinearCrossEntropyArgs<T> a;
  a.h = static_cast<const T*>(h.data());
  a.weight = static_cast<const T*>(weight.data());
  a.bias = bias.is_valid() ? static_cast<const T*>(bias.data()) : nullptr;
  a.rows = static_cast<int64_t>(n);
  a.dim = static_cast<int64_t>(d);
  a.classes = static_cast<int64_t>(v);
  a.target = target.data();
  a.ignore_index = ignore_index;
  a.label_smoothing = label_smoothing;
  a.softcap = softcap;
  a.reduction = reduction == 0   ? softzo::Reduction::kNone
                : reduction == 1 ? softzo::Reduction::kSum
                                 : softzo::Reduction::kMean;
  a.grad_filter = grad_filter;
  a.row_scale = row_scale.is_valid() ? row_scale.data() : nullptr;
  a.num_threads = num_threads;
  nb::object rows = nb::none(), gh = nb::none(), gw = nb::none(), gb = nb::none();
  if (reduction == 0) {
    auto r = new_array<Bits>(1, &n);
    a.row_loss = reinterpret_cast<T*>(r.data());
    rows = r.cast();
  }
  if (want_grad) {
    const size_t hs[2] = {n, d}, ws[2] = {v, d};
    auto g_h = new_array<Bits>(2, hs), g_w = new_array<Bits>(2, ws);
    a.grad_h = reinterpret_cast<T*>(g_h.data());
    a.grad_weight = reinterpret_cast<T*>(g_w.data());
    gh = g_h.cast();
    gw = g_w.cast();
    if (bias.is_valid()) {
      auto g_b = new_array<Bits>(1, &v);
      a.grad_bias = reinterpret_cast<T*>(g_b.data());
      gb = g_b.cast();
    }
  }
  double value;
  {
    nb::gil_scoped_release release;
    value = softzo::linear_cross_entropy(a);
  }
  auto loss = new_array<Bits>(0, nullptr);  // 0-d, rounded once to the dtype
  if constexpr (sizeof(Bits) == 2) {
    const uint16_t bits = std::is_same_v<T, softzo::float16> ? softzo::to_float16(value).bits
                                                             : softzo::to_bfloat16(value).bits;
    std::memcpy(loss.data(), &bits, sizeof bits);
  } else {
    *loss.data() = static_cast<float>(value);
  }
  return nb::make_tuple(loss, rows, gh, gw, gb);
}

nb::tuple linear_cross_entropy(Any h, Any weight, Any bias, Indices target, int dtype,
                               int64_t ignore_index, double label_smoothing, double softcap,
                               int reduction, double grad_filter, Scales row_scale, bool want_grad,
                               int num_threads) {
  if (dtype < 0 || dtype > 2) throw nb::value_error("dtype code must be 0, 1 or 2");
  check_array(h, "h", 2, dtype);
  check_array(weight, "weight", 2, dtype);
  if (bias.is_valid()) check_array(bias, "bias", 1, dtype);
  switch (dtype) {
    case 0:
      return run<float, float>(h, weight, bias, target, ignore_index, label_smoothing, softcap,
                               reduction, grad_filter, row_scale, want_grad, num_threads);
    case 1:
      return run<softzo::float16, uint16_t>(h, weight, bias, target, ignore_index, label_smoothing,
                                            softcap, reduction, grad_filter, row_scale, want_grad,
                                            num_threads);
    default:
      return run<softzo::bfloat16, uint16_t>(h, weight, bias, target, ignore_index, label_smoothing,
                                             softcap, reduction, grad_filter, row_scale, want_grad,
                                             num_threads);
  }
}

}  // namespace

void def_linear_cross_entropy(nb::module_& m) {
  m.def("linear_cross_entropy", &linear_cross_entropy, nb::arg("h"), nb::arg("weight"),
        nb::arg("bias").none(), nb::arg("target"), nb::arg("dtype"), nb::arg("ignore_index"),
        nb::arg("label_smoothing"), nb::arg("softcap"), nb::arg("reduction"),
        nb::arg("grad_filter"), nb::arg("row_scale").none(), nb::arg("want_grad"),
        nb::arg("num_threads"),
        "Fused linear + cross-entropy; returns (loss, row_loss, grad_h, grad_weight, grad_bias) "
        "as NumPy arrays (None where not asked for). Use softzo.losses.linear_cross_entropy.");
}
