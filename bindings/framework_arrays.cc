// Zero-copy views of NumPy, torch and JAX arrays, and new arrays of each (see the header).
#include "framework_arrays.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "softzo/half.h"

namespace softzo_bindings {

namespace {

using DLTensor = nb::dlpack::dltensor;

// ---- DLPack's managed tensors and C exchange API, as far as used here -----------------------

struct DLPackVersion {
  uint32_t major, minor;
};

// DLManagedTensor: the unversioned form, which every torch since 1.x takes in a capsule.
struct ManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(ManagedTensor* self);
};

// DLManagedTensorVersioned (DLPack >= 1.0).
struct ManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(ManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
};

// DLPackExchangeAPI (DLPack 1.2): the function table a framework publishes as the capsule
// type(t).__dlpack_c_exchange_api__.
struct ExchangeApi {
  struct Header {
    DLPackVersion version;
    Header* prev_api;
  } header;
  int (*managed_tensor_allocator)(DLTensor* prototype, ManagedTensorVersioned** out,
                                  void* error_ctx,
                                  void (*set_error)(void* error_ctx, const char* kind,
                                                    const char* message));
  int (*managed_tensor_from_py_object_no_sync)(void* py_object, ManagedTensorVersioned** out);
  // Takes ownership of `tensor` and returns the framework's Python object for it.
  int (*managed_tensor_to_py_object_no_sync)(ManagedTensorVersioned* tensor, void** out);
  // Fills `out` with a non-owning view of the object (may be null in a producer's table).
  int (*dltensor_from_py_object_no_sync)(void* py_object, DLTensor* out);
  int (*current_work_stream)(int32_t device_type, int32_t device_id, void** out_stream);
};

// ---- the frameworks, looked up once in sys.modules -----------------------------------------

// Kept for the life of the process (never released: a static nb::object would be destroyed
// after the interpreter has finalised).
struct NumpyApi {
  PyTypeObject* ndarray = nullptr;
  PyObject* empty = nullptr;
  PyObject* float32 = nullptr;  // numpy.dtype objects
  PyObject* float64 = nullptr;
  PyObject* float16 = nullptr;
  PyObject* uint16 = nullptr;
  PyObject* float32_scalar = nullptr;  // numpy.float32 and numpy.float64
  PyObject* float64_scalar = nullptr;
  PyObject* view = nullptr;  // attribute names
  PyObject* dtype = nullptr;
};

struct TorchApi {
  PyTypeObject* tensor = nullptr;
  const ExchangeApi* exchange = nullptr;  // null before torch 2.10
  PyObject* to_dlpack = nullptr;          // torch.utils.dlpack.to_dlpack, a C function
  PyObject* from_dlpack = nullptr;        // torch.utils.dlpack.from_dlpack
  PyObject* is_neg = nullptr;             // attribute names
  PyObject* requires_grad = nullptr;
};

bool exchange_enabled = true;  // the test hook's switch

// A module someone already imported, or null: these lookups never import anything.
PyObject* imported(const char* name) {
  PyObject* key = PyUnicode_FromString(name);
  PyObject* module = key ? PyImport_GetModule(key) : nullptr;
  Py_XDECREF(key);
  if (!module) PyErr_Clear();
  return module;
}

PyObject* attribute(PyObject* owner, const char* name) {
  PyObject* value = owner ? PyObject_GetAttrString(owner, name) : nullptr;
  if (!value) PyErr_Clear();
  return value;
}

// Looked up once numpy has been imported (softzo imports it before any call reaches here).
const NumpyApi& numpy_api() {
  static NumpyApi api;
  static bool looked_up = false;
  if (!looked_up) {
    PyObject* np = imported("numpy");
    if (!np) return api;
    looked_up = true;
    PyObject* type = attribute(np, "ndarray");
    PyObject* dtype = attribute(np, "dtype");
    api.empty = attribute(np, "empty");
    api.float32 = dtype ? PyObject_CallFunction(dtype, "s", "float32") : nullptr;
    api.float64 = dtype ? PyObject_CallFunction(dtype, "s", "float64") : nullptr;
    api.float16 = dtype ? PyObject_CallFunction(dtype, "s", "float16") : nullptr;
    api.uint16 = dtype ? PyObject_CallFunction(dtype, "s", "uint16") : nullptr;
    api.float32_scalar = attribute(np, "float32");
    api.float64_scalar = attribute(np, "float64");
    api.view = PyUnicode_InternFromString("view");
    api.dtype = PyUnicode_InternFromString("dtype");
    PyErr_Clear();
    if (type && PyType_Check(type) && api.empty && api.float32 && api.float64 && api.float16 &&
        api.uint16 && api.float32_scalar && api.float64_scalar && api.view && api.dtype) {
      api.ndarray = reinterpret_cast<PyTypeObject*>(type);
    } else {
      Py_XDECREF(type);
    }
    Py_XDECREF(dtype);
    Py_XDECREF(np);
  }
  return api;
}

// NumPy's bfloat16 dtype (ml_dtypes'), once ml_dtypes has been imported (by whoever made a
// bfloat16 NumPy array or JAX array); null before.
PyObject* numpy_bfloat16() {
  static PyObject* dtype = nullptr;
  if (!dtype) {
    PyObject* ml = imported("ml_dtypes");
    PyObject* type = attribute(ml, "bfloat16");
    PyObject* np = imported("numpy");
    PyObject* np_dtype = attribute(np, "dtype");
    Py_XDECREF(np);
    dtype = type && np_dtype ? PyObject_CallOneArg(np_dtype, type) : nullptr;
    if (!dtype) PyErr_Clear();
    Py_XDECREF(np_dtype);
    Py_XDECREF(type);
    Py_XDECREF(ml);
  }
  return dtype;
}

const ExchangeApi* exchange_api_of(PyObject* type) {
  PyObject* capsule = attribute(type, "__dlpack_c_exchange_api__");
  const auto* api = static_cast<const ExchangeApi*>(
      capsule ? PyCapsule_GetPointer(capsule, "dlpack_exchange_api") : nullptr);
  PyErr_Clear();
  Py_XDECREF(capsule);  // the table itself lives as long as the process
  const bool usable = api && api->header.version.major == 1 &&
                      api->managed_tensor_to_py_object_no_sync &&
                      api->dltensor_from_py_object_no_sync;
  return usable ? api : nullptr;
}

// Looked up on the first call after torch has been imported; empty (no tensor type) before,
// and for good should this torch lack what is needed (its tensors then take the general path).
const TorchApi& torch_api() {
  static TorchApi api;
  static bool looked_up = false;
  if (!looked_up) {
    PyObject* torch = imported("torch");
    if (!torch) return api;
    looked_up = true;
    PyObject* type = attribute(torch, "Tensor");
    PyObject* utils = PyImport_ImportModule("torch.utils.dlpack");  // loaded with torch
    PyErr_Clear();
    api.to_dlpack = attribute(utils, "to_dlpack");
    api.from_dlpack = attribute(utils, "from_dlpack");
    api.is_neg = PyUnicode_InternFromString("is_neg");
    api.requires_grad = PyUnicode_InternFromString("requires_grad");
    if (type && PyType_Check(type) && api.to_dlpack && api.from_dlpack && api.is_neg &&
        api.requires_grad) {
      api.exchange = exchange_api_of(type);
      api.tensor = reinterpret_cast<PyTypeObject*>(type);
    } else {
      Py_XDECREF(type);
    }
    Py_XDECREF(utils);
    Py_DECREF(torch);
  }
  return api;
}

const ExchangeApi* torch_exchange() { return exchange_enabled ? torch_api().exchange : nullptr; }

// JAX's array type is recognised by its module (jaxlib moves it between releases) and kept;
// other JAX types (tracers, from jax.*) count as JAX, so that their errors come from the
// general path, but are looked up each time.
PyTypeObject* jax_array_type = nullptr;

bool is_jax_type(PyTypeObject* tp) {
  if (tp == jax_array_type) return true;
  PyObject* module = attribute(reinterpret_cast<PyObject*>(tp), "__module__");
  const char* name = module && PyUnicode_Check(module) ? PyUnicode_AsUTF8(module) : nullptr;
  const bool array = name && std::strncmp(name, "jaxlib", 6) == 0;
  const bool jax = array || (name && std::strncmp(name, "jax.", 4) == 0);
  PyErr_Clear();
  Py_XDECREF(module);
  if (array && !jax_array_type) {
    Py_INCREF(tp);
    jax_array_type = tp;
  }
  return jax;
}

// ---- views -----------------------------------------------------------------------------------

// True (1), false (0) or an error (-1, cleared) from a tensor's is_neg() or requires_grad.
int torch_flag(nb::handle x, PyObject* name, bool method) {
  PyObject* r = method ? PyObject_CallMethodNoArgs(x.ptr(), name) : PyObject_GetAttr(x.ptr(), name);
  const int flag = r ? PyObject_IsTrue(r) : -1;
  Py_XDECREF(r);
  if (flag < 0) PyErr_Clear();
  return flag;
}

// A torch tensor's DLTensor through the exchange API: its data stays valid for the call, since
// the caller holds the tensor (as torch's own operators hold their inputs). Its shape and
// strides point into the tensor, and the kernels read them with the GIL released, so
// view->take copies them (as torch's kernels copy theirs): another thread's resize_ cannot
// move them mid-call.
bool torch_exchange_view(const ExchangeApi* api, nb::handle x, DLTensor* t) {
  if (api->dltensor_from_py_object_no_sync(x.ptr(), t) == 0) return true;
  PyErr_Clear();  // sparse, nested, ...: the general path names the problem
  return false;
}

// The DLPack capsule of a torch tensor, or an invalid object.
nb::object torch_capsule(nb::handle x) {
  PyObject* capsule = PyObject_CallOneArg(torch_api().to_dlpack, x.ptr());
  if (!capsule) PyErr_Clear();
  return nb::steal(capsule);
}

// A uint16 view of x when x is a NumPy bfloat16 (ml_dtypes) array, which neither DLPack nor the
// buffer protocol exports; an invalid object otherwise.
nb::object numpy_bfloat16_bits(nb::handle x) {
  PyObject* bf16 = numpy_bfloat16();
  if (!bf16) return nb::object();
  const NumpyApi& api = numpy_api();
  PyObject* dtype = PyObject_GetAttr(x.ptr(), api.dtype);
  const int same = dtype ? PyObject_RichCompareBool(dtype, bf16, Py_EQ) : -1;
  Py_XDECREF(dtype);
  PyObject* bits = same == 1 ? PyObject_CallMethodOneArg(x.ptr(), api.view, api.uint16) : nullptr;
  if (!bits) PyErr_Clear();
  return nb::steal(bits);
}

// JAX's DLPack capsule of x (its buffer protocol has no bfloat16), or an invalid object.
nb::object jax_capsule(nb::handle x) {
  PyObject* capsule = PyObject_CallMethod(x.ptr(), "__dlpack__", nullptr);
  if (!capsule) PyErr_Clear();
  return nb::steal(capsule);
}

template <typename ND>
DLTensor described(const ND& nd) {
  DLTensor t{};
  t.data = const_cast<void*>(static_cast<const void*>(nd.data()));
  t.device = {nd.device_type(), nd.device_id()};
  t.ndim = static_cast<int32_t>(nd.ndim());
  t.dtype = nd.dtype();
  t.shape = const_cast<int64_t*>(nd.shape_ptr());
  t.strides = const_cast<int64_t*>(nd.stride_ptr());
  return t;
}

// ---- new arrays --------------------------------------------------------------------------------

constexpr size_t kAlign = 64;

size_t round_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

size_t element_count(int ndim, const int64_t* shape) {
  size_t n = 1;
  for (int d = 0; d < ndim; ++d) n *= static_cast<size_t>(shape[d]);
  return n;
}

// Large output blocks, recycled: a freed data block of 1-32 MiB waits in one of a few slots
// for the next output of the same size. glibc returns such blocks' pages to the kernel (or maps
// fresh ones) depending on its heap's history, and a loop that makes a 64 x 32000 bfloat16
// softmax per call then paid 30 page faults and ~60 us a call (15% of the kernel) in some runs
// and none in others. At most 4 blocks (128 MiB) wait; the deleter may run on any thread.
class BlockCache {
 public:
  static constexpr size_t kMin = size_t{1} << 20, kMax = size_t{32} << 20;

  void* take(size_t bytes) {
    if (bytes < kMin || bytes > kMax) return nullptr;
    std::lock_guard<std::mutex> lock(mutex_);
    for (Slot& s : slots_) {
      if (s.block && s.bytes == bytes) {
        void* p = s.block;
        s.block = nullptr;
        return p;
      }
    }
    return nullptr;
  }
  // Keeps the block (true) or leaves it to the caller to free.
  bool give(void* block, size_t bytes) {
    if (bytes < kMin || bytes > kMax) return false;
    std::lock_guard<std::mutex> lock(mutex_);
    Slot* slot = &slots_[next_++ % kSlots];  // the oldest goes
    std::free(slot->block);
    *slot = {block, bytes};
    return true;
  }

 private:
  static constexpr size_t kSlots = 4;
  struct Slot {
    void* block = nullptr;
    size_t bytes = 0;
  };
  std::mutex mutex_;
  Slot slots_[kSlots];
  size_t next_ = 0;
};

// Never destroyed: a tensor may die during interpreter shutdown, after static destructors.
BlockCache& block_cache() {
  static BlockCache* cache = new BlockCache;
  return *cache;
}

// The managed tensor (either DLPack form) with its shape and row-major strides in one small
// block, the data (64-byte aligned, its size in manager_ctx) in its own, from the cache above
// where one waits. The consumer calls the deleter when its tensor dies, from any thread.
template <typename Managed>
Managed* new_managed(nb::dlpack::dtype dtype, int ndim, const int64_t* shape) {
  const size_t header = sizeof(Managed) + 2 * sizeof(int64_t) * ndim;
  size_t bytes = round_up(element_count(ndim, shape) * (dtype.bits / 8));
  bytes = bytes ? bytes : kAlign;
  void* data = block_cache().take(bytes);
  if (!data) data = std::aligned_alloc(kAlign, bytes);
  void* block = data ? std::malloc(header) : nullptr;
  if (!block) {
    std::free(data);
    throw std::bad_alloc();
  }
  auto* mt = new (block) Managed{};
  auto* dims = reinterpret_cast<int64_t*>(mt + 1);
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    dims[d] = shape[d];
    dims[ndim + d] = stride;
    stride *= shape[d];
  }
  DLTensor& t = mt->dl_tensor;
  t.data = data;
  t.device = {nb::device::cpu::value, 0};
  t.ndim = ndim;
  t.dtype = dtype;
  t.shape = dims;
  t.strides = dims + ndim;
  mt->manager_ctx = reinterpret_cast<void*>(bytes);
  mt->deleter = [](Managed* self) {
    void* data = self->dl_tensor.data;
    if (!block_cache().give(data, reinterpret_cast<size_t>(self->manager_ctx))) std::free(data);
    std::free(self);
  };
  return mt;
}

// A new tensor of data allocated here. torch's own allocator, reached through the exchange
// API, costs 0.19 us more per call here (it makes a tensor, exports it and wraps it again);
// the one difference a user can see is that the storage cannot grow (resize_ to more
// elements raises), as with torch.from_numpy.
nb::object new_torch(nb::dlpack::dtype dtype, int ndim, const int64_t* shape, void** data) {
  if (const ExchangeApi* api = torch_exchange()) {
    auto* mt = new_managed<ManagedTensorVersioned>(dtype, ndim, shape);
    mt->version = {1, 0};
    *data = mt->dl_tensor.data;
    void* tensor = nullptr;
    if (api->managed_tensor_to_py_object_no_sync(mt, &tensor) != 0 || !tensor) {
      throw nb::python_error();  // the call took the tensor's ownership either way
    }
    return nb::steal(static_cast<PyObject*>(tensor));
  }
  auto* mt = new_managed<ManagedTensor>(dtype, ndim, shape);
  *data = mt->dl_tensor.data;
  // Until torch takes it (and renames it "used_dltensor"), the capsule owns the tensor.
  PyObject* capsule = PyCapsule_New(mt, "dltensor", [](PyObject* self) {
    if (PyCapsule_IsValid(self, "dltensor")) {
      auto* owned = static_cast<ManagedTensor*>(PyCapsule_GetPointer(self, "dltensor"));
      owned->deleter(owned);
    }
  });
  if (!capsule) {
    mt->deleter(mt);
    throw nb::python_error();
  }
  nb::object owner = nb::steal(capsule);
  PyObject* tensor = PyObject_CallOneArg(torch_api().from_dlpack, capsule);
  if (!tensor) throw nb::python_error();
  return nb::steal(tensor);
}

// bfloat16 arrays are made as uint16 (whose memory nanobind can view) and returned as a
// bfloat16 view of it.
nb::object new_numpy(nb::dlpack::dtype dtype, int ndim, const int64_t* shape, void** data) {
  const NumpyApi& api = numpy_api();
  PyObject* bf16 = nullptr;
  if (is_bfloat16(dtype) && !(bf16 = numpy_bfloat16())) {
    throw nb::type_error("bfloat16 NumPy arrays need ml_dtypes (pip install ml_dtypes)");
  }
  nb::object dims = nb::steal(PyTuple_New(ndim));
  for (int d = 0; d < ndim; ++d) {
    PyTuple_SET_ITEM(dims.ptr(), d, PyLong_FromLongLong(shape[d]));
  }
  PyObject* numpy_dtype = is_float32(dtype)   ? api.float32
                          : is_float64(dtype) ? api.float64
                          : is_float16(dtype) ? api.float16
                                              : api.uint16;
  PyObject* args[] = {dims.ptr(), numpy_dtype};
  PyObject* array = PyObject_Vectorcall(api.empty, args, 2, nullptr);
  if (!array) throw nb::python_error();
  nb::object result = nb::steal(array);
  nb::ndarray<nb::device::cpu> view;
  if (!nb::try_cast(result, view, false)) throw nb::type_error("numpy.empty gave no array");
  *data = view.data();
  if (!bf16) return result;
  PyObject* typed = PyObject_CallMethodOneArg(result.ptr(), api.view, bf16);
  if (!typed) throw nb::python_error();
  return nb::steal(typed);
}

nb::object new_jax(nb::dlpack::dtype dtype, int ndim, const int64_t* shape, void** data) {
  const size_t bytes = round_up(element_count(ndim, shape) * (dtype.bits / 8));
  void* block = std::aligned_alloc(kAlign, bytes ? bytes : kAlign);
  if (!block) throw std::bad_alloc();
  nb::capsule owner(block, [](void* p) noexcept { std::free(p); });
  std::vector<size_t> dims(shape, shape + ndim);
  *data = block;
  // nanobind hands jax.dlpack.from_dlpack an object with __dlpack__; JAX takes 64-byte
  // aligned data without a copy.
  return nb::ndarray<nb::jax>(block, static_cast<size_t>(ndim), dims.data(), owner, nullptr, dtype)
      .cast();
}

}  // namespace

Framework framework_of(nb::handle x) {
  PyTypeObject* tp = Py_TYPE(x.ptr());
  if (tp == numpy_api().ndarray) return Framework::kNumpy;
  if (tp == torch_api().tensor) return Framework::kTorch;
  if (is_jax_type(tp)) return Framework::kJax;
  return Framework::kNone;
}

size_t ArrayView::size() const { return element_count(t_.ndim, t_.shape); }

bool ArrayView::take(const DLTensor& t, bool copy_geometry) {
  if (t.device.device_type != nb::device::cpu::value || t.ndim < 0) return false;
  // The kernels load whole elements: an unaligned array (a NumPy view at an odd byte offset)
  // takes the general path, which copies an input and refuses an out= by name.
  const size_t item = t.dtype.bits >= 8 ? t.dtype.bits / 8 : 1;
  char* data = static_cast<char*>(t.data) + t.byte_offset;
  if (reinterpret_cast<uintptr_t>(data) % item != 0) return false;
  t_ = t;
  data_ = data;
  strides_ = t.strides;
  const size_t n = static_cast<size_t>(t.ndim);
  if (n > 0 && (copy_geometry || !t.strides)) {
    if (n > kInlineDims) geometry_.resize(2 * n);
    int64_t* shape = n > kInlineDims ? geometry_.data() : inline_geometry_;
    int64_t* strides = shape + n;
    for (size_t d = n; d-- > 0;) {
      shape[d] = t.shape[d];
      // DLPack's default when a producer gives no strides: row-major
      strides[d] = t.strides ? t.strides[d] : (d + 1 == n ? 1 : strides[d + 1] * t.shape[d + 1]);
    }
    t_.shape = shape;
    strides_ = strides;
  }
  return true;
}

bool view_in(nb::handle x, Framework fw, ArrayView* view) {
  nb::object source;
  switch (fw) {
    case Framework::kNumpy:
      source = nb::borrow(x);
      break;
    case Framework::kTorch:  // DLPack has no negation bit: such a tensor would read negated
      if (torch_flag(x, torch_api().is_neg, true) != 0) return false;
      if (const ExchangeApi* api = torch_exchange()) {
        DLTensor t;
        return torch_exchange_view(api, x, &t) && view->take(t, true);
      }
      source = torch_capsule(x);
      break;
    case Framework::kJax:  // its buffer protocol: a memoryview has no __dlpack__ to try first
      source = nb::steal(PyMemoryView_FromObject(x.ptr()));
      if (!source.is_valid()) {
        PyErr_Clear();
        source = jax_capsule(x);
      }
      break;
    default:
      return false;
  }
  if (source.is_valid() && nb::try_cast(source, view->in_, false)) {
    return view->take(described(view->in_));
  }
  if (fw != Framework::kNumpy) return false;
  const nb::object bits = numpy_bfloat16_bits(x);
  if (!bits.is_valid() || !nb::try_cast(bits, view->in_, false)) return false;
  const bool ok = view->take(described(view->in_));
  view->t_.dtype = kBfloat16;
  return ok;
}

bool view_out(nb::handle x, Framework fw, ArrayView* view) {
  nb::object source;
  if (fw == Framework::kNumpy) {
    source = nb::borrow(x);
  } else if (fw == Framework::kTorch) {
    if (torch_flag(x, torch_api().requires_grad, false) != 0 ||
        torch_flag(x, torch_api().is_neg, true) != 0) {
      return false;
    }
    if (const ExchangeApi* api = torch_exchange()) {
      DLTensor t;
      return torch_exchange_view(api, x, &t) && view->take(t, true);
    }
    source = torch_capsule(x);
  }
  if (source.is_valid() && nb::try_cast(source, view->out_, false)) {
    return view->take(described(view->out_));
  }
  if (fw != Framework::kNumpy) return false;
  const nb::object bits = numpy_bfloat16_bits(x);  // a view of a writeable array is writeable
  if (!bits.is_valid() || !nb::try_cast(bits, view->out_, false)) return false;
  const bool ok = view->take(described(view->out_));
  view->t_.dtype = kBfloat16;
  return ok;
}

nb::object new_array(Framework fw, nb::dlpack::dtype dtype, int ndim, const int64_t* shape,
                     void** data) {
  switch (fw) {
    case Framework::kTorch:
      return new_torch(dtype, ndim, shape, data);
    case Framework::kJax:
      return new_jax(dtype, ndim, shape, data);
    default:
      return new_numpy(dtype, ndim, shape, data);
  }
}

nb::object new_scalar(Framework fw, nb::dlpack::dtype dtype, double value) {
  if (is_half(dtype)) {  // the bits rounded here, once (NumPy's bfloat16(value) rounds twice)
    const uint16_t bits =
        is_float16(dtype) ? softzo::to_float16(value).bits : softzo::to_bfloat16(value).bits;
    void* data = nullptr;
    nb::object result = new_array(fw, dtype, 0, nullptr, &data);
    std::memcpy(data, &bits, sizeof bits);
    if (fw != Framework::kNumpy) return result;
    PyObject* scalar = PyObject_GetItem(result.ptr(), nb::tuple().ptr());  // a[()]
    if (!scalar) throw nb::python_error();
    return nb::steal(scalar);
  }
  if (fw == Framework::kNumpy) {
    const NumpyApi& api = numpy_api();
    nb::object v = nb::steal(PyFloat_FromDouble(value));
    PyObject* s =
        PyObject_CallOneArg(is_float32(dtype) ? api.float32_scalar : api.float64_scalar, v.ptr());
    if (!s) throw nb::python_error();
    return nb::steal(s);
  }
  void* data = nullptr;
  nb::object result = new_array(fw, dtype, 0, nullptr, &data);
  if (is_float32(dtype)) {
    *static_cast<float*>(data) = static_cast<float>(value);
  } else {
    *static_cast<double*>(data) = value;
  }
  return result;
}

bool use_torch_exchange_api(bool enable) {
  exchange_enabled = enable;
  return torch_exchange() != nullptr;
}

}  // namespace softzo_bindings
