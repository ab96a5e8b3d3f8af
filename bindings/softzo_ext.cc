// nanobind module softzo._core: zero-copy array views over the C++ API, GIL released around
// compute. Argument rules live in python/softzo; this file only checks what needs pointers. The
// *_any entries take any framework's arrays (framework_arrays.h) and return None for whatever
// the Python rules must handle.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <string>
#include <vector>

#include "array_checks.h"
#include "cuda_ext.h"
#include "framework_arrays.h"
#include "loss_any.h"
#include "softzo/softzo.h"

namespace nb = nanobind;
using softzo_bindings::ArrayView;
using softzo_bindings::check_out;
using softzo_bindings::Framework;
using softzo_bindings::framework_of;
using softzo_bindings::is_float32;
using softzo_bindings::is_float64;
using softzo_bindings::new_array;
using softzo_bindings::view_in;
using softzo_bindings::view_out;

namespace {

template <typename T>
using In = nb::ndarray<const T, nb::device::cpu>;
template <typename T>
using Out = nb::ndarray<T, nb::device::cpu>;

// algorithm is an index into python/softzo's ALGORITHMS, which lists SoftmaxAlgorithm's values
// in order: an int crosses the binding faster than a string (this matters for 1K rows).
softzo::SoftmaxAlgorithm algorithm_from_code(int code) {
  if (code < 0 || code > static_cast<int>(softzo::SoftmaxAlgorithm::kOnline)) {
    throw nb::value_error(("algorithm code out of range: " + std::to_string(code)).c_str());
  }
  return static_cast<softzo::SoftmaxAlgorithm>(code);
}

// x's shape and strides, and out's strides (or none), viewed in place: no copies, so a call
// allocates nothing here.
template <typename A, typename B>
softzo::StridedLayout layout(const A& x, const B* y, int axis) {
  softzo::StridedLayout l;
  l.ndim = static_cast<int>(x.ndim());
  l.shape = x.shape_ptr();
  l.x_strides = x.stride_ptr();
  l.y_strides = y ? y->stride_ptr() : nullptr;
  l.axis = axis;
  return l;
}

softzo::SoftmaxOptions options(int algorithm, bool zero_masked, int num_threads) {
  softzo::SoftmaxOptions opt;
  opt.algorithm = algorithm_from_code(algorithm);
  opt.all_masked = zero_masked ? softzo::AllMasked::kZero : softzo::AllMasked::kNan;
  opt.num_threads = num_threads;
  return opt;
}

template <typename T>
void softmax_into(In<T> x, Out<T> out, int axis, int algorithm, bool zero_masked, int num_threads,
                  bool log) {
  check_out(x, out);
  const softzo::SoftmaxOptions opt = options(algorithm, zero_masked, num_threads);
  const softzo::StridedLayout l = layout(x, &out, axis);
  nb::gil_scoped_release release;
  if (log) {
    softzo::log_softmax(x.data(), out.data(), l, opt);
  } else {
    softzo::softmax(x.data(), out.data(), l, opt);
  }
}

// out is a fresh C-contiguous array of x's shape without the axis.
template <typename T>
void logsumexp_into(In<T> x, Out<T> out, int axis, int algorithm, int num_threads) {
  check_out(x, out);
  const softzo::SoftmaxOptions opt = options(algorithm, false, num_threads);
  const softzo::StridedLayout l = layout(x, static_cast<const Out<T>*>(nullptr), axis);
  nb::gil_scoped_release release;
  softzo::logsumexp(x.data(), out.data(), l, opt);
}

// C-contiguous strides (in elements) of a shape.
std::vector<int64_t> contiguous_strides(int ndim, const int64_t* shape) {
  std::vector<int64_t> strides(ndim);
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    strides[d] = s;
    s *= shape[d];
  }
  return strides;
}

// x's float view and its axis (made non-negative), or false when this path does not take x.
bool float_input(nb::handle x, int* axis, Framework* fw, ArrayView* xv) {
  *fw = framework_of(x);
  if (*fw == Framework::kNone || !view_in(x, *fw, xv)) return false;
  const int ndim = static_cast<int>(xv->ndim());
  const bool is_float = is_float32(xv->dtype()) || is_float64(xv->dtype());
  if (!is_float || ndim == 0 || *axis < -ndim || *axis >= ndim) return false;
  if (*axis < 0) *axis += ndim;
  return true;
}

// softmax or log_softmax of any framework's array (NumPy arrays take the Python layer's own
// short path first) into out, or into a new array of x's framework when out is None. Returns
// None when this path does not take the arguments (a dtype, device, read-only or mismatched
// out, ...): the Python layer's general path then raises the error that names the argument.
nb::object softmax_any(nb::handle x, nb::handle out, int axis, int algorithm, bool zero_masked,
                       int num_threads, bool log) {
  Framework fw;
  ArrayView xv;
  if (!float_input(x, &axis, &fw, &xv)) return nb::none();
  const int ndim = static_cast<int>(xv.ndim());
  nb::object result;
  void* y = nullptr;
  std::vector<int64_t> fresh_strides;
  const int64_t* y_strides = nullptr;
  ArrayView ov;
  if (out.is_none()) {
    result = new_array(fw, xv.dtype(), ndim, xv.shape_ptr(), &y);
    fresh_strides = contiguous_strides(ndim, xv.shape_ptr());
    y_strides = fresh_strides.data();
  } else {
    const Framework out_fw = framework_of(out);
    if (!view_out(out, out_fw, &ov) || ov.dtype() != xv.dtype() ||
        static_cast<int>(ov.ndim()) != ndim) {
      return nb::none();
    }
    for (int d = 0; d < ndim; ++d) {
      if (ov.shape(d) != xv.shape(d)) return nb::none();
    }
    check_out(xv, ov);
    y = ov.data();
    y_strides = ov.stride_ptr();
    result = nb::borrow(out);
  }
  const softzo::SoftmaxOptions opt = options(algorithm, zero_masked, num_threads);
  softzo::StridedLayout l = layout(xv, static_cast<const ArrayView*>(nullptr), axis);
  l.y_strides = y_strides;
  const bool f32 = is_float32(xv.dtype());
  nb::gil_scoped_release release;
  if (f32) {
    const auto* xp = static_cast<const float*>(xv.data());
    log ? softzo::log_softmax(xp, static_cast<float*>(y), l, opt)
        : softzo::softmax(xp, static_cast<float*>(y), l, opt);
  } else {
    const auto* xp = static_cast<const double*>(xv.data());
    log ? softzo::log_softmax(xp, static_cast<double*>(y), l, opt)
        : softzo::softmax(xp, static_cast<double*>(y), l, opt);
  }
  return result;
}

// logsumexp of any framework's array into a new array of its framework (x's shape without
// the axis; 0-d for 1-D x), or None as softmax_any.
nb::object logsumexp_any(nb::handle x, int axis, int algorithm, int num_threads) {
  Framework fw;
  ArrayView xv;
  if (!float_input(x, &axis, &fw, &xv)) return nb::none();
  std::vector<int64_t> shape;
  for (size_t d = 0; d < xv.ndim(); ++d) {
    if (static_cast<int>(d) != axis) shape.push_back(xv.shape_ptr()[d]);
  }
  void* y = nullptr;
  nb::object result = new_array(fw, xv.dtype(), static_cast<int>(shape.size()), shape.data(), &y);
  const softzo::SoftmaxOptions opt = options(algorithm, false, num_threads);
  const softzo::StridedLayout l = layout(xv, static_cast<const ArrayView*>(nullptr), axis);
  const bool f32 = is_float32(xv.dtype());
  nb::gil_scoped_release release;
  if (f32) {
    softzo::logsumexp(static_cast<const float*>(xv.data()), static_cast<float*>(y), l, opt);
  } else {
    softzo::logsumexp(static_cast<const double*>(xv.data()), static_cast<double*>(y), l, opt);
  }
  return result;
}

// ---- losses: 2-D row-major views, class axis unit-stride (python/softzo/losses.py ensures) --

template <typename T>
using Opt = nb::ndarray<T, nb::device::cpu>;  // may be None (is_valid() false)

template <typename A>
int64_t row_stride(const A& a) {
  return a.ndim() == 2 ? static_cast<int64_t>(a.stride(0)) : 0;
}

template <typename T, typename A>
T* ptr(const A& a) {
  return a.is_valid() ? const_cast<T*>(static_cast<const T*>(a.data())) : nullptr;
}

softzo::Reduction parse_reduction(int r) {
  return r == 0 ? softzo::Reduction::kNone
                : (r == 1 ? softzo::Reduction::kSum : softzo::Reduction::kMean);
}

template <typename T>
double cross_entropy_into(In<T> logits, nb::ndarray<const int64_t, nb::device::cpu> target,
                          Opt<const T> soft, Opt<const T> weight, int64_t ignore_index,
                          double label_smoothing, double lse_square_scale, double tau,
                          int reduction, Opt<T> grad, Opt<T> lse, Opt<T> row_loss,
                          int num_threads) {
  if (grad.is_valid()) check_out(logits, Out<T>(grad), "grad_out", "logits");
  softzo::CrossEntropyArgs<T> a;
  a.logits = logits.data();
  a.rows = static_cast<int64_t>(logits.shape(0));
  a.classes = static_cast<int64_t>(logits.shape(1));
  a.logits_stride = row_stride(logits);
  a.target = target.is_valid() ? target.data() : nullptr;
  a.ignore_index = ignore_index;
  a.soft_target = ptr<const T>(soft);
  a.soft_stride = soft.is_valid() ? row_stride(soft) : 0;
  a.weight = ptr<const T>(weight);
  a.label_smoothing = label_smoothing;
  a.lse_square_scale = lse_square_scale;
  a.tau = tau;
  a.reduction = parse_reduction(reduction);
  a.grad = ptr<T>(grad);
  a.grad_stride = grad.is_valid() ? row_stride(grad) : 0;
  a.lse = ptr<T>(lse);
  a.row_loss = ptr<T>(row_loss);
  a.num_threads = num_threads;
  nb::gil_scoped_release release;
  return softzo::cross_entropy(a);
}

template <typename T>
double spherical_loss_into(In<T> o, nb::ndarray<const int64_t, nb::device::cpu> target, int kind,
                           double a_, double b_, double eps, int reduction, Opt<T> grad,
                           Opt<T> row_loss, int num_threads) {
  if (grad.is_valid()) check_out(o, Out<T>(grad), "grad_out", "outputs");
  softzo::SphericalLossArgs<T> a;
  a.outputs = o.data();
  a.rows = static_cast<int64_t>(o.shape(0));
  a.classes = static_cast<int64_t>(o.shape(1));
  a.stride = row_stride(o);
  a.target = target.data();
  a.kind = static_cast<softzo::SphericalKind>(kind);
  a.a = a_;
  a.b = b_;
  a.eps = eps;
  a.reduction = parse_reduction(reduction);
  a.grad = ptr<T>(grad);
  a.grad_stride = grad.is_valid() ? row_stride(grad) : 0;
  a.row_loss = ptr<T>(row_loss);
  a.num_threads = num_threads;
  nb::gil_scoped_release release;
  return softzo::spherical_loss(a);
}

template <typename T>
void normalize_into(In<T> x, Out<T> y, int kind, double eps, int num_threads) {
  check_out(x, y);
  nb::gil_scoped_release release;
  softzo::normalize_rows<T>(static_cast<softzo::Normalizer>(kind), x.data(), row_stride(x),
                            y.data(), row_stride(y), static_cast<int64_t>(x.shape(0)),
                            static_cast<int64_t>(x.shape(1)), eps, num_threads);
}

template <typename T>
double stablemax_ce_into(In<T> logits, nb::ndarray<const int64_t, nb::device::cpu> target,
                         int reduction, Opt<T> grad, Opt<T> row_loss, int num_threads) {
  if (grad.is_valid()) check_out(logits, Out<T>(grad), "grad_out", "logits");
  nb::gil_scoped_release release;
  return softzo::stablemax_cross_entropy<T>(
      logits.data(), static_cast<int64_t>(logits.shape(0)), static_cast<int64_t>(logits.shape(1)),
      row_stride(logits), target.data(), parse_reduction(reduction), ptr<T>(grad),
      grad.is_valid() ? row_stride(grad) : 0, ptr<T>(row_loss), num_threads);
}

template <typename T>
double kl_div_into(In<T> student, In<T> teacher, double temperature, double divisor, Opt<T> grad,
                   Opt<T> row_loss, int num_threads) {
  if (grad.is_valid()) {
    check_out(student, Out<T>(grad), "grad", "student_logits");
    check_out(teacher, Out<T>(grad), "grad", "teacher_logits");
  }
  nb::gil_scoped_release release;
  return softzo::kl_div<T>(
      student.data(), row_stride(student), teacher.data(), row_stride(teacher),
      static_cast<int64_t>(student.shape(0)), static_cast<int64_t>(student.shape(1)), temperature,
      divisor, ptr<T>(grad), grad.is_valid() ? row_stride(grad) : 0, ptr<T>(row_loss), num_threads);
}

template <typename T>
void hl_gauss_into(nb::ndarray<const T, nb::device::cpu, nb::c_contig> values, double vmin,
                   double vmax, double sigma, nb::ndarray<T, nb::device::cpu, nb::c_contig> out) {
  const int64_t bins = out.ndim() == 2 ? static_cast<int64_t>(out.shape(1)) : 0;
  nb::gil_scoped_release release;
  softzo::hl_gauss_targets<T>(values.data(), static_cast<int64_t>(values.size()), vmin, vmax, bins,
                              sigma, out.data());
}

template <typename T>
void def_losses(nb::module_& m) {
  m.def("_cross_entropy", &cross_entropy_into<T>, nb::arg("logits"), nb::arg("target").none(),
        nb::arg("soft").none(), nb::arg("weight").none(), nb::arg("ignore_index"),
        nb::arg("label_smoothing"), nb::arg("lse_square_scale"), nb::arg("tau"),
        nb::arg("reduction"), nb::arg("grad").none().noconvert(), nb::arg("lse").none().noconvert(),
        nb::arg("row_loss").none().noconvert(), nb::arg("num_threads"));
  m.def("_spherical_loss", &spherical_loss_into<T>, nb::arg("o"), nb::arg("target"),
        nb::arg("kind"), nb::arg("a"), nb::arg("b"), nb::arg("eps"), nb::arg("reduction"),
        nb::arg("grad").none().noconvert(), nb::arg("row_loss").none().noconvert(),
        nb::arg("num_threads"));
  m.def("_normalize", &normalize_into<T>, nb::arg("x"), nb::arg("out").noconvert(), nb::arg("kind"),
        nb::arg("eps"), nb::arg("num_threads"));
  m.def("_stablemax_cross_entropy", &stablemax_ce_into<T>, nb::arg("logits"), nb::arg("target"),
        nb::arg("reduction"), nb::arg("grad").none().noconvert(),
        nb::arg("row_loss").none().noconvert(), nb::arg("num_threads"));
  m.def("_kl_div", &kl_div_into<T>, nb::arg("student"), nb::arg("teacher"), nb::arg("temperature"),
        nb::arg("divisor"), nb::arg("grad").none().noconvert(),
        nb::arg("row_loss").none().noconvert(), nb::arg("num_threads"));
  m.def("_hl_gauss_targets", &hl_gauss_into<T>, nb::arg("values"), nb::arg("vmin"), nb::arg("vmax"),
        nb::arg("sigma"), nb::arg("out").noconvert());
}

// ---- zeroth-order engine: flat C-contiguous buffers, offsets over the concatenated parameters --

template <typename T>
using Flat = nb::ndarray<T, nb::device::cpu, nb::c_contig>;

softzo::ZoDirection direction(uint64_t seed, uint32_t step, uint32_t dir, int dist) {
  if (dist < 0 || dist > 2) throw nb::value_error("distribution code must be 0, 1 or 2");
  softzo::ZoDirection d;
  d.seed = seed;
  d.step = step;
  d.direction = dir;
  d.dist = static_cast<softzo::ZoDistribution>(dist);
  return d;
}

template <typename T>
void def_zo(nb::module_& m) {
  m.def(
      "_zo_fill",
      [](uint64_t seed, uint32_t step, uint32_t dir, int dist, uint64_t offset, Flat<T> out,
         int threads) {
        const softzo::ZoDirection d = direction(seed, step, dir, dist);
        nb::gil_scoped_release release;
        softzo::zo_fill<T>(d, offset, out.data(), static_cast<int64_t>(out.size()), threads);
      },
      nb::arg("seed"), nb::arg("step"), nb::arg("direction"), nb::arg("dist"), nb::arg("offset"),
      nb::arg("out").noconvert(), nb::arg("num_threads"));
  // mask: None for every element, else Sparse MeZO's bits (ceil(n / 32) uint32 words); with
  // build_threshold >= 0 they are first set to |theta| <= build_threshold (a perturb only).
  m.def(
      "_zo_restore_update",
      [](uint64_t seed, uint32_t step, uint32_t dir, int dist, uint64_t offset, Flat<T> theta,
         double c_restore, double lr, double g, double wd, Flat<uint32_t> mask,
         double build_threshold, int threads) {
        const softzo::ZoDirection d = direction(seed, step, dir, dist);
        const int64_t n = static_cast<int64_t>(theta.size());
        softzo::ZoMask zm;
        const softzo::ZoMask* mp = nullptr;
        if (mask.is_valid()) {
          if (static_cast<int64_t>(mask.size()) < (n + 31) / 32) {
            throw nb::value_error("mask needs ceil(theta.size / 32) uint32 words");
          }
          zm.bits = mask.data();
          zm.build = build_threshold >= 0;
          zm.threshold = build_threshold;
          mp = &zm;
        }
        nb::gil_scoped_release release;
        if (lr == 0.0 && wd == 0.0) {  // zo_restore_update refuses to build a mask
          softzo::zo_perturb<T>(d, offset, static_cast<T>(c_restore), theta.data(), n, mp, threads);
        } else {
          softzo::zo_restore_update<T>(d, offset, static_cast<T>(c_restore), static_cast<T>(lr),
                                       static_cast<T>(g), static_cast<T>(wd), theta.data(), n, mp,
                                       threads);
        }
      },
      nb::arg("seed"), nb::arg("step"), nb::arg("direction"), nb::arg("dist"), nb::arg("offset"),
      nb::arg("theta").noconvert(), nb::arg("c_restore"), nb::arg("lr"), nb::arg("g"),
      nb::arg("wd"), nb::arg("mask").none().noconvert(), nb::arg("build_threshold"),
      nb::arg("num_threads"));
  // HiZOO: sigma (the diagonal Hessian estimate, > 0) has theta's size and dtype. update=False:
  // theta += c z / sqrt(sigma); update=True: the fused restore, sigma and theta update.
  m.def(
      "_zo_hizoo",
      [](uint64_t seed, uint32_t step, uint32_t dir, int dist, uint64_t offset, Flat<T> theta,
         Flat<T> sigma, double c_restore, bool update, double lr, double g, double wd, double keep,
         double gain, int threads) {
        const softzo::ZoDirection d = direction(seed, step, dir, dist);
        if (sigma.size() != theta.size()) throw nb::value_error("sigma must have theta's size");
        const int64_t n = static_cast<int64_t>(theta.size());
        nb::gil_scoped_release release;
        if (!update) {
          softzo::zo_perturb_diag<T>(d, offset, static_cast<T>(c_restore), sigma.data(),
                                     theta.data(), n, threads);
        } else {
          softzo::zo_hizoo_update<T>(d, offset, static_cast<T>(c_restore), static_cast<T>(lr),
                                     static_cast<T>(g), static_cast<T>(wd), static_cast<T>(keep),
                                     static_cast<T>(gain), sigma.data(), theta.data(), n, threads);
        }
      },
      nb::arg("seed"), nb::arg("step"), nb::arg("direction"), nb::arg("dist"), nb::arg("offset"),
      nb::arg("theta").noconvert(), nb::arg("sigma").noconvert(), nb::arg("c_restore"),
      nb::arg("update"), nb::arg("lr"), nb::arg("g"), nb::arg("wd"), nb::arg("keep"),
      nb::arg("gain"), nb::arg("num_threads"));
  m.def(
      "_zo_dot",
      [](uint64_t seed, uint32_t step, uint32_t dir, int dist, uint64_t offset, Flat<const T> v,
         int threads) {
        const softzo::ZoDirection d = direction(seed, step, dir, dist);
        nb::gil_scoped_release release;
        return softzo::zo_dot<T>(d, offset, v.data(), static_cast<int64_t>(v.size()), threads);
      },
      nb::arg("seed"), nb::arg("step"), nb::arg("direction"), nb::arg("dist"), nb::arg("offset"),
      nb::arg("v"), nb::arg("num_threads"));
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "softzo's compiled core; use the functions of the softzo package instead.";

  m.def("_softmax", &softmax_into<float>, nb::arg("x"), nb::arg("out").noconvert(), nb::arg("axis"),
        nb::arg("algorithm"), nb::arg("zero_masked"), nb::arg("num_threads"), nb::arg("log"));
  m.def("_softmax", &softmax_into<double>, nb::arg("x"), nb::arg("out").noconvert(),
        nb::arg("axis"), nb::arg("algorithm"), nb::arg("zero_masked"), nb::arg("num_threads"),
        nb::arg("log"));
  m.def("_logsumexp", &logsumexp_into<float>, nb::arg("x"), nb::arg("out").noconvert(),
        nb::arg("axis"), nb::arg("algorithm"), nb::arg("num_threads"));
  m.def("_logsumexp", &logsumexp_into<double>, nb::arg("x"), nb::arg("out").noconvert(),
        nb::arg("axis"), nb::arg("algorithm"), nb::arg("num_threads"));
  m.def("_softmax_any", &softmax_any, nb::arg("x"), nb::arg("out").none(), nb::arg("axis"),
        nb::arg("algorithm"), nb::arg("zero_masked"), nb::arg("num_threads"), nb::arg("log"));
  m.def("_logsumexp_any", &logsumexp_any, nb::arg("x"), nb::arg("axis"), nb::arg("algorithm"),
        nb::arg("num_threads"));
  m.def("_use_torch_exchange_api", &softzo_bindings::use_torch_exchange_api, nb::arg("enable"),
        "Test hook: torch tensors through DLPack's C exchange API (True, where torch has it) or "
        "torch.utils.dlpack (False); returns whether the exchange API is in use.");

  def_losses<float>(m);
  def_losses<double>(m);
  softzo_bindings::def_loss_any(m);
  softzo_bindings::def_cuda(m);
  def_zo<float>(m);
  def_zo<double>(m);
  m.def(
      "_zo_sumsq",
      [](uint64_t seed, uint32_t step, uint32_t dir, int dist, uint64_t offset, int64_t n, bool f64,
         int threads) {
        const softzo::ZoDirection d = direction(seed, step, dir, dist);
        nb::gil_scoped_release release;
        return f64 ? softzo::zo_sumsq<double>(d, offset, n, threads)
                   : softzo::zo_sumsq<float>(d, offset, n, threads);
      },
      nb::arg("seed"), nb::arg("step"), nb::arg("direction"), nb::arg("dist"), nb::arg("offset"),
      nb::arg("n"), nb::arg("f64"), nb::arg("num_threads"));

  m.def("current_isa", &softzo::current_isa_name, "The ISA the kernels use now.");
  m.def("available_isas", &softzo::available_isa_names,
        "ISAs this build runs here ('avx512' may be SIMDe-emulated).");
  m.def("isa_is_emulated", &softzo::isa_is_emulated, nb::arg("name"));
  m.def("use_isa_in_this_thread", &softzo::use_isa_in_this_thread, nb::arg("name"),
        "Switch this thread's later calls to this ISA ('' for the process's); False if it is "
        "not available.");
  m.def("use_isa", &softzo::use_isa, nb::arg("name"),
        "Switch every later call to this ISA; False if it is not available.");
  m.def("num_threads", &softzo::num_threads, "Default thread count.");
  m.def("set_num_threads", &softzo::set_num_threads, nb::arg("n"));
  m.def(
      "auto_algorithm",
      [](int64_t n, int itemsize, const std::string& op) {
        softzo::SoftmaxOp o = softzo::SoftmaxOp::kSoftmax;
        if (op == "log_softmax") {
          o = softzo::SoftmaxOp::kLogSoftmax;
        } else if (op == "logsumexp") {
          o = softzo::SoftmaxOp::kLogSumExp;
        } else if (op != "softmax") {
          throw nb::value_error("op must be 'softmax', 'log_softmax' or 'logsumexp'");
        }
        switch (softzo::auto_algorithm(n, itemsize, o)) {
          case softzo::SoftmaxAlgorithm::kTwoPass:
            return "two_pass";
          case softzo::SoftmaxAlgorithm::kThreePassRecompute:
            return "three_pass_recompute";
          case softzo::SoftmaxAlgorithm::kOnline:
            return "online";
          default:
            return "three_pass_reload";
        }
      },
      nb::arg("n"), nb::arg("itemsize"), nb::arg("op") = "softmax",
      "The algorithm 'auto' picks for op on rows of n elements of itemsize bytes.");
}
