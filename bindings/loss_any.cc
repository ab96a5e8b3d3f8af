// The losses of softzo.losses on NumPy arrays, torch tensors and JAX arrays in one C++ call:
// the arrays are viewed and checked here, the results made in the logits' framework. Each
// entry returns None when it does not take its arrays (another dtype, a class axis that is not
// unit-stride, a shape mismatch, ...): the Python layer's general path then copies what needs
// copying or raises the error that names the argument. Scalar options arrive validated.
#include "loss_any.h"

#include <nanobind/nanobind.h>

#include <cstdint>

#include "array_checks.h"
#include "framework_arrays.h"
#include "softzo/losses.h"

namespace softzo_bindings {

namespace {

// Rows of class scores: a 2-D array (rows, classes), or a 1-D one (classes,) as one row, which
// PyTorch calls unbatched; its per-row results are then 0-d.
struct Scores {
  Framework fw = Framework::kNone;
  ArrayView view;
  int64_t rows = 0, classes = 0, stride = 0;  // stride: between rows, in elements
  bool unbatched = false;

  nb::dlpack::dtype dtype() const { return view.dtype(); }
  bool f32() const { return is_float32(view.dtype()); }
  template <typename T>
  const T* data() const {
    return static_cast<const T*>(view.data());
  }
};

bool unit_stride(const ArrayView& v, size_t d) { return v.shape(d) <= 1 || v.stride(d) == 1; }

// Reads rows and classes off s->view: float (float16 / bfloat16 only where half_ok), 2-D (or
// 1-D when unbatched_ok), at least one row and one class, unit-stride classes.
bool shape_scores(Scores* s, bool unbatched_ok, bool half_ok) {
  const ArrayView& v = s->view;
  if (!is_float32(v.dtype()) && !is_float64(v.dtype()) && !(half_ok && is_half(v.dtype()))) {
    return false;
  }
  if (v.ndim() == 2) {
    s->rows = static_cast<int64_t>(v.shape(0));
    s->classes = static_cast<int64_t>(v.shape(1));
    s->stride = v.stride(0);
  } else if (v.ndim() == 1 && unbatched_ok) {
    s->rows = 1;
    s->classes = static_cast<int64_t>(v.shape(0));
    s->stride = s->classes;
    s->unbatched = true;
  } else {
    return false;
  }
  // An empty batch takes the general path: its arrays may have no data pointer at all, which
  // the kernels' argument checks would read as a missing target.
  return s->rows > 0 && s->classes >= 1 && unit_stride(v, v.ndim() - 1);
}

bool scores_of(nb::handle x, bool unbatched_ok, bool half_ok, Scores* s) {
  s->fw = framework_of(x);
  return s->fw != Framework::kNone && view_in(x, s->fw, &s->view) &&
         shape_scores(s, unbatched_ok, half_ok);
}

enum class Target { kNone, kIndices, kSoft };

// int64 class indices, one per row (0-d for unbatched scores), or soft targets: scores of the
// logits' dtype and shape (only where soft_ok).
Target target_of(nb::handle t, const Scores& s, bool soft_ok, Scores* target) {
  target->fw = framework_of(t);
  if (target->fw == Framework::kNone || !view_in(t, target->fw, &target->view)) {
    return Target::kNone;
  }
  const ArrayView& v = target->view;
  if (v.dtype() == nb::dtype<int64_t>()) {
    const bool fits = s.unbatched ? v.ndim() == 0
                                  : v.ndim() == 1 && static_cast<int64_t>(v.shape(0)) == s.rows &&
                                        unit_stride(v, 0);
    return fits ? Target::kIndices : Target::kNone;
  }
  const bool soft = soft_ok && v.dtype() == s.dtype() && shape_scores(target, s.unbatched, true) &&
                    target->unbatched == s.unbatched && target->rows == s.rows &&
                    target->classes == s.classes;
  return soft ? Target::kSoft : Target::kNone;
}

bool class_weights(nb::handle w, const Scores& s, ArrayView* v) {
  const Framework fw = framework_of(w);
  return fw != Framework::kNone && view_in(w, fw, v) && v->dtype() == s.dtype() && v->ndim() == 1 &&
         static_cast<int64_t>(v->shape(0)) == s.classes && unit_stride(*v, 0);
}

// The caller's array for the gradient: writable, of the logits' dtype and shape, unit-stride
// classes. Raises ValueError (naming grad_out) when it overlaps the logits without being them.
bool grad_out_view(nb::handle g, const Scores& s, ArrayView* v) {
  const Framework fw = framework_of(g);
  if ((fw != Framework::kNumpy && fw != Framework::kTorch) || !view_out(g, fw, v) ||
      v->dtype() != s.dtype() || v->ndim() != s.view.ndim() || !unit_stride(*v, v->ndim() - 1)) {
    return false;
  }
  for (size_t d = 0; d < v->ndim(); ++d) {
    if (v->shape(d) != s.view.shape(d)) return false;
  }
  check_out(s.view, *v, "grad_out", "logits");
  return true;
}

// A new array of the scores' framework and dtype: per-row values ((rows,), 0-d when
// unbatched) or a gradient (the scores' shape, C-contiguous; also a normalisation's result).
struct NewArray {
  nb::object object;
  void* data = nullptr;
};

NewArray per_row(const Scores& s) {
  NewArray a;
  a.object = new_array(s.fw, s.dtype(), s.unbatched ? 0 : 1, &s.rows, &a.data);
  return a;
}

NewArray gradient(const Scores& s) {
  NewArray a;
  a.object =
      new_array(s.fw, s.dtype(), static_cast<int>(s.view.ndim()), s.view.shape_ptr(), &a.data);
  return a;
}

// The optional outputs every loss shares: the gradient (new, or the caller's grad_out) and the
// per-row losses that reduction "none" returns.
struct Outputs {
  NewArray grad, rows;
  int64_t grad_stride = 0;
};

Outputs outputs(const Scores& s, bool want_grad, bool per_row_losses) {
  Outputs o;
  if (want_grad) {
    o.grad = gradient(s);
    o.grad_stride = s.classes;
  }
  if (per_row_losses) o.rows = per_row(s);
  return o;
}

// loss, or (loss, grad[, lse]) / (loss, lse): the loss is the per-row array when there is one,
// else a scalar of the logits' framework.
nb::object result(const Scores& s, double value, const Outputs& o, const NewArray& lse) {
  nb::object loss = o.rows.object.is_valid() ? o.rows.object : new_scalar(s.fw, s.dtype(), value);
  if (!o.grad.object.is_valid() && !lse.object.is_valid()) return loss;
  if (!lse.object.is_valid()) return nb::make_tuple(loss, o.grad.object);
  if (!o.grad.object.is_valid()) return nb::make_tuple(loss, lse.object);
  return nb::make_tuple(loss, o.grad.object, lse.object);
}

softzo::Reduction reduction_of(int code) {  // python/softzo/losses.py's _REDUCTION_CODE
  return code == 0 ? softzo::Reduction::kNone
                   : (code == 1 ? softzo::Reduction::kSum : softzo::Reduction::kMean);
}

template <typename T>
T* typed(const NewArray& a) {
  return static_cast<T*>(a.data);
}

// ---- cross-entropy (and the comp-sum family, tau != 1) ----------------------------------------

struct CrossEntropyCall {
  const Scores* logits;
  Target kind;
  const Scores* target;
  const ArrayView* weight;  // or null
  int64_t ignore_index;
  double label_smoothing, lse_square_scale, tau;
  int reduction;
  int num_threads;
};

template <typename T>
double run_cross_entropy(const CrossEntropyCall& c, const Outputs& o, const NewArray& lse) {
  softzo::CrossEntropyArgs<T> a;
  a.logits = c.logits->data<T>();
  a.rows = c.logits->rows;
  a.classes = c.logits->classes;
  a.logits_stride = c.logits->stride;
  if (c.kind == Target::kIndices) {
    a.target = static_cast<const int64_t*>(c.target->view.data());
  } else {
    a.soft_target = c.target->data<T>();
    a.soft_stride = c.target->stride;
  }
  a.ignore_index = c.ignore_index;
  a.weight = c.weight ? static_cast<const T*>(c.weight->data()) : nullptr;
  a.label_smoothing = c.label_smoothing;
  a.lse_square_scale = c.lse_square_scale;
  a.tau = c.tau;
  a.reduction = reduction_of(c.reduction);
  a.grad = typed<T>(o.grad);
  a.grad_stride = o.grad_stride;
  a.lse = typed<T>(lse);
  a.row_loss = typed<T>(o.rows);
  a.num_threads = c.num_threads;
  nb::gil_scoped_release release;
  return softzo::cross_entropy(a);
}

nb::object cross_entropy_any(nb::handle logits, nb::handle target, nb::handle weight,
                             int64_t ignore_index, double label_smoothing, double lse_square_scale,
                             double tau, int reduction, bool want_grad, nb::handle grad_out,
                             bool want_lse, int num_threads) {
  Scores x, t;
  ArrayView w;
  if (!scores_of(logits, true, true, &x)) return nb::none();
  const Target kind = target_of(target, x, tau == 1.0, &t);
  if (kind == Target::kNone || (!weight.is_none() && !class_weights(weight, x, &w))) {
    return nb::none();
  }
  Outputs o;
  ArrayView g;
  if (!grad_out.is_none()) {
    if (!grad_out_view(grad_out, x, &g)) return nb::none();
    o.grad.object = nb::borrow(grad_out);
    o.grad.data = g.data();
    o.grad_stride = x.unbatched ? x.classes : g.stride(0);
  } else {
    o = outputs(x, want_grad, false);
  }
  if (reduction == 0) o.rows = per_row(x);
  const NewArray lse = want_lse ? per_row(x) : NewArray{};
  const CrossEntropyCall c{&x,
                           kind,
                           &t,
                           weight.is_none() ? nullptr : &w,
                           ignore_index,
                           label_smoothing,
                           lse_square_scale,
                           tau,
                           reduction,
                           num_threads};
  const double value =
      by_dtype(x.dtype(), [&](auto tag) { return run_cross_entropy<decltype(tag)>(c, o, lse); });
  return result(x, value, o, lse);
}

// ---- the spherical family (the Z-loss is kind 0) -----------------------------------------------

template <typename T>
double run_spherical(const Scores& x, const ArrayView& t, int kind, double a_, double b_,
                     double eps, int reduction, const Outputs& o, int num_threads) {
  softzo::SphericalLossArgs<T> a;
  a.outputs = x.data<T>();
  a.rows = x.rows;
  a.classes = x.classes;
  a.stride = x.stride;
  a.target = static_cast<const int64_t*>(t.data());
  a.kind = static_cast<softzo::SphericalKind>(kind);
  a.a = a_;
  a.b = b_;
  a.eps = eps;
  a.reduction = reduction_of(reduction);
  a.grad = typed<T>(o.grad);
  a.grad_stride = o.grad_stride;
  a.row_loss = typed<T>(o.rows);
  a.num_threads = num_threads;
  nb::gil_scoped_release release;
  return softzo::spherical_loss(a);
}

nb::object spherical_any(nb::handle outputs_, nb::handle target, int kind, double a, double b,
                         double eps, int reduction, bool want_grad, int num_threads) {
  Scores x, t;
  if (!scores_of(outputs_, true, true, &x) || target_of(target, x, false, &t) != Target::kIndices) {
    return nb::none();
  }
  const Outputs o = outputs(x, want_grad, reduction == 0);
  const double value = by_dtype(x.dtype(), [&](auto tag) {
    return run_spherical<decltype(tag)>(x, t.view, kind, a, b, eps, reduction, o, num_threads);
  });
  return result(x, value, o, NewArray{});
}

// ---- StableMax cross-entropy
// ---------------------------------------------------------------------

template <typename T>
double run_stablemax(const Scores& x, const ArrayView& t, int reduction, const Outputs& o,
                     int num_threads) {
  nb::gil_scoped_release release;
  return softzo::stablemax_cross_entropy<T>(
      x.data<T>(), x.rows, x.classes, x.stride, static_cast<const int64_t*>(t.data()),
      reduction_of(reduction), typed<T>(o.grad), o.grad_stride, typed<T>(o.rows), num_threads);
}

nb::object stablemax_cross_entropy_any(nb::handle logits, nb::handle target, int reduction,
                                       bool want_grad, int num_threads) {
  Scores x, t;
  if (!scores_of(logits, true, false, &x) || target_of(target, x, false, &t) != Target::kIndices) {
    return nb::none();
  }
  const Outputs o = outputs(x, want_grad, reduction == 0);
  const double value = x.f32() ? run_stablemax<float>(x, t.view, reduction, o, num_threads)
                               : run_stablemax<double>(x, t.view, reduction, o, num_threads);
  return result(x, value, o, NewArray{});
}

// ---- KL distillation ---------------------------------------------------------------------------

template <typename T>
double run_kl_div(const Scores& s, const Scores& t, double temperature, double divisor,
                  const Outputs& o, int num_threads) {
  nb::gil_scoped_release release;
  return softzo::kl_div<T>(s.data<T>(), s.stride, t.data<T>(), t.stride, s.rows, s.classes,
                           temperature, divisor, typed<T>(o.grad), o.grad_stride, typed<T>(o.rows),
                           num_threads);
}

// reduction: 0 "none", 1 "sum", 2 "mean", 3 "batchmean" (python/softzo/losses.py's order).
nb::object kl_div_any(nb::handle student, nb::handle teacher, double temperature, int reduction,
                      bool want_grad, int num_threads) {
  Scores s, t;
  if (!scores_of(student, false, true, &s) || !scores_of(teacher, false, true, &t) ||
      t.dtype() != s.dtype() || t.rows != s.rows || t.classes != s.classes) {
    return nb::none();
  }
  const double divisor = reduction == 3   ? static_cast<double>(s.rows)
                         : reduction == 2 ? static_cast<double>(s.rows) * s.classes
                                          : static_cast<double>(reduction);  // sum 1, none 0
  const Outputs o = outputs(s, want_grad, reduction == 0);
  const double value = by_dtype(s.dtype(), [&](auto tag) {
    return run_kl_div<decltype(tag)>(s, t, temperature, divisor, o, num_threads);
  });
  return result(s, value, o, NewArray{});
}

// ---- row normalisations (spherical, Taylor, StableMax) -----------------------------------------

template <typename T>
void run_normalize(const Scores& x, int kind, double eps, void* y, int num_threads) {
  nb::gil_scoped_release release;
  softzo::normalize_rows<T>(static_cast<softzo::Normalizer>(kind), x.data<T>(), x.stride,
                            static_cast<T*>(y), x.classes, x.rows, x.classes, eps, num_threads);
}

// The normalisation of a 1-D or 2-D array along its last axis, into a new C-contiguous array.
nb::object normalize_any(nb::handle x_, int axis, int kind, double eps, int num_threads) {
  Scores x;
  if (!scores_of(x_, true, false, &x) ||
      (axis != -1 && axis != static_cast<int>(x.view.ndim()) - 1)) {
    return nb::none();
  }
  const NewArray y = gradient(x);  // x's shape
  x.f32() ? run_normalize<float>(x, kind, eps, y.data, num_threads)
          : run_normalize<double>(x, kind, eps, y.data, num_threads);
  return y.object;
}

}  // namespace

void def_loss_any(nb::module_& m) {
  // .none() on every array: None takes the general path, which names the argument.
  m.def("_cross_entropy_any", &cross_entropy_any, nb::arg("logits").none(),
        nb::arg("target").none(), nb::arg("weight").none(), nb::arg("ignore_index"),
        nb::arg("label_smoothing"), nb::arg("lse_square_scale"), nb::arg("tau"),
        nb::arg("reduction"), nb::arg("want_grad"), nb::arg("grad_out").none(), nb::arg("want_lse"),
        nb::arg("num_threads"));
  m.def("_spherical_loss_any", &spherical_any, nb::arg("outputs").none(), nb::arg("target").none(),
        nb::arg("kind"), nb::arg("a"), nb::arg("b"), nb::arg("eps"), nb::arg("reduction"),
        nb::arg("want_grad"), nb::arg("num_threads"));
  m.def("_stablemax_cross_entropy_any", &stablemax_cross_entropy_any, nb::arg("logits").none(),
        nb::arg("target").none(), nb::arg("reduction"), nb::arg("want_grad"),
        nb::arg("num_threads"));
  m.def("_normalize_any", &normalize_any, nb::arg("x").none(), nb::arg("axis"), nb::arg("kind"),
        nb::arg("eps"), nb::arg("num_threads"));
  m.def("_kl_div_any", &kl_div_any, nb::arg("student").none(), nb::arg("teacher").none(),
        nb::arg("temperature"), nb::arg("reduction"), nb::arg("want_grad"), nb::arg("num_threads"));
}

}  // namespace softzo_bindings
