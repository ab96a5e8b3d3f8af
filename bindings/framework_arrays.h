// NumPy arrays, torch tensors and JAX arrays as zero-copy views, and new arrays of each
// framework, at a fraction of a microsecond. torch.Tensor.__dlpack__ is a Python method (2.2 us
// per tensor here) and JAX's costs 2.3 us. torch >= 2.10 publishes DLPack's C exchange API
// (type(t).__dlpack_c_exchange_api__): a tensor's DLTensor in ~0.05 us and new tensors from
// torch's own allocator without Python in between; older torch goes through
// torch.utils.dlpack.to_dlpack (one C call, 0.2 us). JAX CPU arrays export the buffer
// protocol. Nothing here imports torch or JAX: a framework is looked up in sys.modules when an
// object might be one of its arrays.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <vector>

namespace softzo_bindings {

namespace nb = nanobind;

enum class Framework { kNone, kNumpy, kTorch, kJax };

// x's framework when the fast paths take it: exactly numpy.ndarray or torch.Tensor (subclasses
// such as nn.Parameter may override __torch_function__, so they take the general path), or a
// JAX array; kNone otherwise.
Framework framework_of(nb::handle x);

// A CPU array's memory for the length of one call (the caller keeps the array alive): data,
// shape and strides in elements, dtype. Its accessors are nb::ndarray's, so the helpers that
// take either are templates.
class ArrayView {
 public:
  void* data() const { return data_; }
  size_t ndim() const { return static_cast<size_t>(t_.ndim); }
  size_t shape(size_t d) const { return static_cast<size_t>(t_.shape[d]); }
  int64_t stride(size_t d) const { return strides_[d]; }
  const int64_t* shape_ptr() const { return t_.shape; }
  const int64_t* stride_ptr() const { return strides_; }
  nb::dlpack::dtype dtype() const { return t_.dtype; }
  size_t itemsize() const { return t_.dtype.bits / 8; }
  size_t size() const;

 private:
  friend bool view_in(nb::handle, Framework, ArrayView*);
  friend bool view_out(nb::handle, Framework, ArrayView*);
  bool take(const nb::dlpack::dltensor& t, bool copy_geometry = false);

  nb::dlpack::dltensor t_{};
  void* data_ = nullptr;
  const int64_t* strides_ = nullptr;
  // Shape and strides, when copied or filled in here: inline up to kInlineDims dimensions.
  static constexpr size_t kInlineDims = 8;
  int64_t inline_geometry_[2 * kInlineDims];
  std::vector<int64_t> geometry_;
  nb::ndarray<nb::ro, nb::device::cpu> in_;  // keeps alive what a nanobind import points into
  nb::ndarray<nb::device::cpu> out_;
};

// A read-only view of x (of framework fw) without a copy. False, holding nothing, when x has
// none here: a torch tensor with its negation bit set (DLPack would drop the sign), a device
// array, a dtype DLPack or the buffer protocol cannot describe.
bool view_in(nb::handle x, Framework fw, ArrayView* view);

// A writable view of x: a writeable NumPy array or a torch tensor that does not require grad
// (JAX arrays are immutable). False, holding nothing, otherwise.
bool view_out(nb::handle x, Framework fw, ArrayView* view);

// A new C-contiguous array of fw (kNumpy, kTorch or kJax) and `dtype`, with `ndim` dimensions
// `shape`; *data points at its first element. torch allocates its own tensors (through the
// exchange API; on older torch and for JAX the data is allocated here, 64-byte aligned so that
// JAX takes it without a copy, and handed over through DLPack).
nb::object new_array(Framework fw, nb::dlpack::dtype dtype, int ndim, const int64_t* shape,
                     void** data);

// A scalar of fw and dtype holding value: a NumPy scalar (numpy.float32 or numpy.float64), a
// 0-d torch tensor or JAX array.
nb::object new_scalar(Framework fw, nb::dlpack::dtype dtype, double value);

// Test hook: whether torch tensors go through the C exchange API (true, where torch has it)
// or the to_dlpack fallback of older torch (false). Returns whether the API is in use.
bool use_torch_exchange_api(bool enable);

inline bool is_float32(nb::dlpack::dtype d) { return d == nb::dtype<float>(); }
inline bool is_float64(nb::dlpack::dtype d) { return d == nb::dtype<double>(); }

}  // namespace softzo_bindings
