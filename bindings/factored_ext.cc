// nanobind module softzo._factored: the factored output layer (softzo/factored.h) and the fused
// linear cross-entropy (linear_cross_entropy_ext.cc), a module of its own because it links
// OpenBLAS. Arrays are C-contiguous (python/softzo/spherical.py makes
// them so); each layer holds a mutex, since the GIL is released during compute.
#include <cblas.h>
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <tuple>
#include <utility>

#include "linear_cross_entropy_ext.h"
#include "softzo/factored.h"

namespace nb = nanobind;

namespace {

template <typename T>
using Mat = nb::ndarray<T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
template <typename T>
using Vec = nb::ndarray<T, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using F64 = nb::ndarray<nb::numpy, double>;

softzo::FactoredLayerOptions make_options(int kind, double a, double b, double eps, double lr,
                                          double weight_decay, int64_t stabilize_every,
                                          double sigma_min, double sigma_max) {
  softzo::FactoredLayerOptions o;
  o.kind = static_cast<softzo::SphericalKind>(kind);
  o.a = a;
  o.b = b;
  o.eps = eps;
  o.lr = lr;
  o.weight_decay = weight_decay;
  o.stabilize_every = stabilize_every;
  o.sigma_min = sigma_min;
  o.sigma_max = sigma_max;
  return o;
}

// A new NumPy array of the given shape that owns its buffer.
template <typename T>
nb::ndarray<nb::numpy, T> new_array(std::initializer_list<size_t> shape) {
  size_t n = 1;
  for (size_t s : shape) n *= s;
  T* data = new T[n > 0 ? n : 1]();
  nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<T*>(p); });
  return nb::ndarray<nb::numpy, T>(data, shape, owner);
}

template <typename T>
struct Layer {
  softzo::FactoredSphericalLayer<T> layer;
  std::mutex mu;
  Layer(int64_t D, int64_t d, const softzo::FactoredLayerOptions& o, const T* w0)
      : layer(D, d, o, w0) {}
};

template <typename T>
void check_batch(const Layer<T>& l, const Mat<const T>& h, const Mat<const int64_t>& targets) {
  if (static_cast<int64_t>(h.shape(1)) != l.layer.dim())
    throw std::invalid_argument("h: expected shape (m, dim)");
  if (targets.shape(0) != h.shape(0))
    throw std::invalid_argument("targets: expected one row of targets per example of h");
}

template <typename T>
T* grad_ptr(const Layer<T>& l, Mat<T>& g, const Mat<const T>& h) {
  if (!g.is_valid()) return nullptr;
  if (g.shape(0) != h.shape(0) || static_cast<int64_t>(g.shape(1)) != l.layer.dim())
    throw std::invalid_argument("grad_h: expected the shape of h");
  return g.data();
}

template <typename T, typename Owner>
nb::ndarray<nb::numpy, T> view(T* data, std::initializer_list<size_t> shape, Owner& owner) {
  return nb::ndarray<nb::numpy, T>(data, shape, nb::find(owner));
}

template <typename T>
void bind_layer(nb::module_& m, const char* name) {
  using L = Layer<T>;
  nb::class_<L>(m, name)
      .def(
          "__init__",
          [](L* self, int64_t D, int64_t d, int kind, double a, double b, double eps, double lr,
             double wd, int64_t every, double smin, double smax, Mat<const T> w0) {
            const T* init = nullptr;
            if (w0.is_valid()) {
              if (static_cast<int64_t>(w0.shape(0)) != D || static_cast<int64_t>(w0.shape(1)) != d)
                throw std::invalid_argument("init: expected shape (num_classes, dim)");
              init = w0.data();
            }
            const auto o = make_options(kind, a, b, eps, lr, wd, every, smin, smax);
            nb::gil_scoped_release release;
            new (self) L(D, d, o, init);
          },
          nb::arg("num_classes"), nb::arg("dim"), nb::arg("kind"), nb::arg("a"), nb::arg("b"),
          nb::arg("eps"), nb::arg("lr"), nb::arg("weight_decay"), nb::arg("stabilize_every"),
          nb::arg("sigma_min"), nb::arg("sigma_max"), nb::arg("init").none())
      .def("set_options",
           [](L& l, int kind, double a, double b, double eps, double lr, double wd, int64_t every,
              double smin, double smax) {
             std::lock_guard<std::mutex> lock(l.mu);
             l.layer.set_options(make_options(kind, a, b, eps, lr, wd, every, smin, smax));
           })
      .def("forward",
           [](L& l, Mat<const T> h, Mat<const int64_t> targets) {
             check_batch(l, h, targets);
             const size_t m = h.shape(0), k = targets.shape(1);
             auto A = new_array<double>({m, k});
             auto s = new_array<double>({m});
             auto q = new_array<double>({m});
             {
               nb::gil_scoped_release release;
               std::lock_guard<std::mutex> lock(l.mu);
               l.layer.forward(h.data(), static_cast<int64_t>(m), l.layer.dim(), targets.data(),
                               static_cast<int64_t>(k), A.data(), s.data(), q.data());
             }
             return std::make_tuple(A, s, q);
           })
      .def("loss",
           [](L& l) {
             std::lock_guard<std::mutex> lock(l.mu);
             return l.layer.loss();
           })
      .def(
          "backward_update",
          [](L& l, Mat<const double> ga, Vec<const double> gs, Vec<const double> gq,
             Mat<T> grad_h) {
            // Shapes are the cached forward's: python/softzo/spherical.py checks them.
            T* g = grad_h.is_valid() ? grad_h.data() : nullptr;
            nb::gil_scoped_release release;  // before locking: never wait for the GIL locked
            std::lock_guard<std::mutex> lock(l.mu);
            l.layer.backward_update(ga.data(), gs.data(), gq.data(), g, l.layer.dim());
          },
          nb::arg("grad_A"), nb::arg("grad_s"), nb::arg("grad_q"), nb::arg("grad_h").none())
      .def(
          "backward_scaled",
          [](L& l, double scale, Mat<T> grad_h) {
            T* g = grad_h.is_valid() ? grad_h.data() : nullptr;
            nb::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(l.mu);
            l.layer.backward_update(scale, g, l.layer.dim());
          },
          nb::arg("scale"), nb::arg("grad_h").none())
      .def(
          "step",
          [](L& l, Mat<const T> h, Mat<const int64_t> targets, Mat<T> grad_h) {
            check_batch(l, h, targets);
            T* g = grad_ptr(l, grad_h, h);
            nb::gil_scoped_release release;
            std::lock_guard<std::mutex> lock(l.mu);
            return l.layer.step(h.data(), static_cast<int64_t>(h.shape(0)), l.layer.dim(),
                                targets.data(), static_cast<int64_t>(targets.shape(1)), g,
                                l.layer.dim());
          },
          nb::arg("h"), nb::arg("targets"), nb::arg("grad_h").none())
      .def("weight",
           [](L& l) {
             auto out = new_array<T>(
                 {static_cast<size_t>(l.layer.num_classes()), static_cast<size_t>(l.layer.dim())});
             nb::gil_scoped_release release;
             std::lock_guard<std::mutex> lock(l.mu);
             l.layer.weight(out.data());
             return out;
           })
      .def("topk",
           [](L& l, Mat<const T> h, int64_t k) {
             if (static_cast<int64_t>(h.shape(1)) != l.layer.dim())
               throw std::invalid_argument("h: expected shape (m, dim)");
             if (k < 1 || k > l.layer.num_classes())
               throw std::invalid_argument("k must be in [1, num_classes]");
             const size_t m = h.shape(0), kk = static_cast<size_t>(k);
             auto values = new_array<T>({m, kk});
             auto indices = new_array<int64_t>({m, kk});
             {
               nb::gil_scoped_release release;
               std::lock_guard<std::mutex> lock(l.mu);
               l.layer.topk(h.data(), static_cast<int64_t>(m), l.layer.dim(), k, indices.data(),
                            values.data());
             }
             return std::make_pair(values, indices);
           })
      .def("stabilize",
           [](L& l) {
             nb::gil_scoped_release release;
             std::lock_guard<std::mutex> lock(l.mu);
             l.layer.stabilize();
           })
      .def("refresh",
           [](L& l) {
             nb::gil_scoped_release release;
             std::lock_guard<std::mutex> lock(l.mu);
             l.layer.refresh();
           })
      // Views of the state (they keep the layer alive).
      .def("v",
           [](L& l) {
             return view(
                 l.layer.v(),
                 {static_cast<size_t>(l.layer.num_classes()), static_cast<size_t>(l.layer.dim())},
                 l);
           })
      .def("small_state",
           [](L& l) {
             const size_t d = static_cast<size_t>(l.layer.dim());
             return nb::make_tuple(view(l.layer.u(), {d, d}, l), view(l.layer.u_inv(), {d, d}, l),
                                   view(l.layer.q(), {d, d}, l), view(l.layer.w_bar(), {d}, l),
                                   view(l.layer.omega(), {d}, l));
           })
      .def_prop_rw(
          "steps", [](L& l) { return l.layer.steps(); },
          [](L& l, int64_t s) { l.layer.set_steps(s); });

  m.def(
      "dense_step",
      [](Mat<T> w, Mat<const T> h, Mat<const int64_t> targets, int kind, double a, double b,
         double eps, double lr, double wd, Mat<T> grad_h) {
        if (h.shape(1) != w.shape(1)) throw std::invalid_argument("h: expected shape (m, dim)");
        if (targets.shape(0) != h.shape(0))
          throw std::invalid_argument("targets: expected one row of targets per example of h");
        T* g = nullptr;
        if (grad_h.is_valid()) {
          if (grad_h.shape(0) != h.shape(0) || grad_h.shape(1) != h.shape(1))
            throw std::invalid_argument("grad_h: expected the shape of h");
          g = grad_h.data();
        }
        const auto o = make_options(kind, a, b, eps, lr, wd, 0, 0.5, 2.0);
        const int64_t d = static_cast<int64_t>(w.shape(1));
        nb::gil_scoped_release release;
        return softzo::dense_spherical_step(w.data(), static_cast<int64_t>(w.shape(0)), d, h.data(),
                                            static_cast<int64_t>(h.shape(0)), d, targets.data(),
                                            static_cast<int64_t>(targets.shape(1)), o, g, d);
      },
      nb::arg("weight").noconvert(), nb::arg("h"), nb::arg("targets"), nb::arg("kind"),
      nb::arg("a"), nb::arg("b"), nb::arg("eps"), nb::arg("lr"), nb::arg("weight_decay"),
      nb::arg("grad_h").noconvert().none());
}

}  // namespace

NB_MODULE(_factored, m) {
  m.doc() = "softzo's factored output layer; use softzo.spherical instead.";
  bind_layer<float>(m, "FactoredLayer32");
  bind_layer<double>(m, "FactoredLayer64");
  def_linear_cross_entropy(m);
  // OpenBLAS's own pool is process-wide; on a loaded machine one thread is often faster.
  m.def("set_blas_threads", [](int n) {
    if (n < 1) throw std::invalid_argument("num_threads must be >= 1, got " + std::to_string(n));
    scipy_openblas_set_num_threads(n);
  });
  m.def("blas_threads", [] { return scipy_openblas_get_num_threads(); });
}
