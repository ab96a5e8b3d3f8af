// softzo._core's CUDA entries: device pointers (as integers), shapes and the caller's stream,
// checked and provided by python/softzo/_cuda.py, which reads them off torch tensors and CuPy
// arrays. Without SOFTZO_HAVE_CUDA only _cuda_built() and the (host-side) plan exist.
#include "cuda_ext.h"

#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>

#include <cstdint>

#include "softzo/cuda.h"

namespace nb = nanobind;

namespace softzo_bindings {

namespace {

#ifdef SOFTZO_HAVE_CUDA
namespace cu = softzo::cuda;

void* ptr(uintptr_t p) { return reinterpret_cast<void*>(p); }

cu::DType dtype_of(int code) {
  if (code < 0 || code > 3) throw nb::value_error("dtype code must be 0..3");
  return static_cast<cu::DType>(code);
}

softzo::ZoDirection direction(uint64_t seed, uint32_t step, uint32_t dir, int dist) {
  if (dist < 0 || dist > 2) throw nb::value_error("distribution code must be 0, 1 or 2");
  softzo::ZoDirection d;
  d.seed = seed;
  d.step = step;
  d.direction = dir;
  d.dist = static_cast<softzo::ZoDistribution>(dist);
  return d;
}
#endif

}  // namespace

void def_cuda(nb::module_& m) {
#ifdef SOFTZO_HAVE_CUDA
  m.def("_cuda_built", [] { return true; });
  m.def("_cuda_device_count", &cu::device_count);
  m.def(
      "_cuda_device_info",
      [](int device) {
        const cu::DeviceInfo d = cu::device_info(device);
        nb::dict r;
        r["index"] = d.index;
        r["name"] = d.name;
        r["compute_capability"] = nb::make_tuple(d.major, d.minor);
        r["multiprocessors"] = d.multiprocessors;
        r["memory_bytes"] = d.memory_bytes;
        return r;
      },
      nb::arg("device"));
  // op: 0 softmax, 1 log_softmax, 2 logsumexp.
  m.def(
      "_cuda_softmax",
      [](int op, int dt, uintptr_t x, uintptr_t y, int64_t rows, int64_t n, bool zero_masked,
         int device, uintptr_t stream) {
        const softzo::SoftmaxOp o = op == 0   ? softzo::SoftmaxOp::kSoftmax
                                    : op == 1 ? softzo::SoftmaxOp::kLogSoftmax
                                              : softzo::SoftmaxOp::kLogSumExp;
        nb::gil_scoped_release release;
        cu::softmax_rows(o, dtype_of(dt), ptr(x), ptr(y), rows, n,
                         zero_masked ? softzo::AllMasked::kZero : softzo::AllMasked::kNan, device,
                         ptr(stream));
      },
      nb::arg("op"), nb::arg("dt"), nb::arg("x"), nb::arg("y"), nb::arg("rows"), nb::arg("n"),
      nb::arg("zero_masked"), nb::arg("device"), nb::arg("stream"));
  // Pointers 0 stand for absent arrays; reduction 0 none, 1 sum, 2 mean.
  m.def(
      "_cuda_cross_entropy",
      [](int dt, uintptr_t logits, int64_t rows, int64_t classes, int64_t stride, uintptr_t target,
         int64_t ignore_index, uintptr_t soft, int64_t soft_stride, uintptr_t weight,
         double label_smoothing, double lse_square_scale, double tau, int reduction, uintptr_t grad,
         int64_t grad_stride, uintptr_t lse, uintptr_t row_loss, uintptr_t loss, int device,
         uintptr_t stream) {
        cu::CrossEntropyArgs a;
        a.dt = dtype_of(dt);
        a.logits = ptr(logits);
        a.rows = rows;
        a.classes = classes;
        a.logits_stride = stride;
        a.target = static_cast<const int64_t*>(ptr(target));
        a.ignore_index = ignore_index;
        a.soft_target = ptr(soft);
        a.soft_stride = soft_stride;
        a.weight = ptr(weight);
        a.label_smoothing = label_smoothing;
        a.lse_square_scale = lse_square_scale;
        a.tau = tau;
        a.reduction = reduction == 0   ? softzo::Reduction::kNone
                      : reduction == 1 ? softzo::Reduction::kSum
                                       : softzo::Reduction::kMean;
        a.grad = ptr(grad);
        a.grad_stride = grad_stride;
        a.lse = ptr(lse);
        a.row_loss = ptr(row_loss);
        a.loss = ptr(loss);
        a.device = device;
        a.stream = ptr(stream);
        nb::gil_scoped_release release;
        cu::cross_entropy(a);
      },
      nb::arg("dt"), nb::arg("logits"), nb::arg("rows"), nb::arg("classes"), nb::arg("stride"),
      nb::arg("target"), nb::arg("ignore_index"), nb::arg("soft"), nb::arg("soft_stride"),
      nb::arg("weight"), nb::arg("label_smoothing"), nb::arg("lse_square_scale"), nb::arg("tau"),
      nb::arg("reduction"), nb::arg("grad"), nb::arg("grad_stride"), nb::arg("lse"),
      nb::arg("row_loss"), nb::arg("loss"), nb::arg("device"), nb::arg("stream"));
  m.def(
      "_cuda_zo_move",
      [](uint64_t seed, uint32_t step, uint32_t dir, int dist, uint64_t offset, int dt,
         uintptr_t theta, int64_t n, double c, double lr, double g, double wd, uintptr_t mask,
         double build_threshold, uintptr_t publish, int publish_dt, int device, uintptr_t stream) {
        cu::ZoMove mv;
        mv.direction = direction(seed, step, dir, dist);
        mv.offset = offset;
        mv.dt = dtype_of(dt);
        mv.theta = ptr(theta);
        mv.n = n;
        mv.c_restore = c;
        mv.lr = lr;
        mv.g = g;
        mv.wd = wd;
        mv.mask = static_cast<uint32_t*>(ptr(mask));
        mv.build_threshold = build_threshold;
        mv.publish = ptr(publish);
        mv.publish_dt = dtype_of(publish_dt);
        mv.device = device;
        mv.stream = ptr(stream);
        nb::gil_scoped_release release;
        cu::zo_move(mv);
      },
      nb::arg("seed"), nb::arg("step"), nb::arg("direction"), nb::arg("dist"), nb::arg("offset"),
      nb::arg("dt"), nb::arg("theta"), nb::arg("n"), nb::arg("c"), nb::arg("lr"), nb::arg("g"),
      nb::arg("wd"), nb::arg("mask"), nb::arg("build_threshold"), nb::arg("publish"),
      nb::arg("publish_dt"), nb::arg("device"), nb::arg("stream"));
  m.def(
      "_cuda_zo_fill",
      [](uint64_t seed, uint32_t step, uint32_t dir, int dist, uint64_t offset, int dt,
         uintptr_t out, int64_t n, int device, uintptr_t stream) {
        const softzo::ZoDirection d = direction(seed, step, dir, dist);
        nb::gil_scoped_release release;
        cu::zo_fill(d, offset, dtype_of(dt), ptr(out), n, device, ptr(stream));
      },
      nb::arg("seed"), nb::arg("step"), nb::arg("direction"), nb::arg("dist"), nb::arg("offset"),
      nb::arg("dt"), nb::arg("out"), nb::arg("n"), nb::arg("device"), nb::arg("stream"));
#else
  m.def("_cuda_built", [] { return false; });
#endif
  m.def(
      "_cuda_softmax_plan",
      [](int64_t rows, int64_t n) {
        const softzo::cuda::SoftmaxPlan p = softzo::cuda::softmax_plan(rows, n);
        return nb::make_tuple(p.split, p.threads, p.chunk, p.chunks, p.blocks);
      },
      nb::arg("rows"), nb::arg("n"),
      "How the CUDA softmax family lays out rows x n: (split, threads, chunk, chunks, blocks).");
}

}  // namespace softzo_bindings
