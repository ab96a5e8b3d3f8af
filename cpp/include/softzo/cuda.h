// softzo's optional CUDA backend (built with -DSOFTZO_ENABLE_CUDA=ON): the softmax family, fused
// cross-entropy and the zeroth-order perturbation engine on device memory, with the CPU ops'
// semantics (softmax.h, losses.h, zo.h).
//
// Every function takes the device that holds the data and `stream`, a cudaStream_t passed as
// void* (0 is the legacy default stream): all work is enqueued on that stream, nothing waits for
// it, except cross_entropy, which reads back one validation word (bad targets raise
// std::invalid_argument before anything is written, as on the CPU). Results are deterministic:
// no atomics whose order could change a value, reductions in a fixed tree order. This header
// needs no CUDA toolkit; only its implementation (cpp/src/cuda/) does.
#ifndef SOFTZO_CUDA_H_
#define SOFTZO_CUDA_H_

#include <cstdint>
#include <string>

#include "softzo/losses.h"
#include "softzo/softmax.h"
#include "softzo/zo.h"

namespace softzo {
namespace cuda {

// Element types on the device. Half types are read and written as such; all arithmetic and
// accumulation is float32 (sums fold into float64).
enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2, kFloat64 = 3 };

struct DeviceInfo {
  int index = -1;
  std::string name;
  int major = 0, minor = 0;  // compute capability
  int multiprocessors = 0;
  int64_t memory_bytes = 0;
};

// Number of CUDA devices the driver shows (0 without a driver or device: never throws).
int device_count();
DeviceInfo device_info(int device);

// softmax / log_softmax of `rows` contiguous rows of n elements (y may be x), or logsumexp
// (y: rows values of dt). float32, float16 and bfloat16. Rows longer than 2^18 elements are
// split across blocks, their partial sums combined in a fixed order.
void softmax_rows(SoftmaxOp op, DType dt, const void* x, void* y, int64_t rows, int64_t n,
                  AllMasked masked, int device, void* stream);

// How softmax_rows lays out a problem: host-side logic, testable without a GPU.
struct SoftmaxPlan {
  bool split = false;  // rows split into chunks across blocks
  int threads = 0;     // per block
  int64_t chunk = 0;   // elements per chunk (split rows)
  int64_t chunks = 1;  // per row
  int64_t blocks = 0;  // of the main pass
};
SoftmaxPlan softmax_plan(int64_t rows, int64_t n);

// Cross-entropy on the device, the CPU's CrossEntropyArgs with device pointers: logits (and
// soft targets, weights) of dt, targets int64. loss (one value of dt) receives the reduced loss
// (mean or sum); row_loss (rows values) is required for reduction none. grad may be logits.
struct CrossEntropyArgs {
  DType dt = DType::kFloat32;
  const void* logits = nullptr;
  int64_t rows = 0, classes = 0, logits_stride = 0;
  const int64_t* target = nullptr;
  int64_t ignore_index = -100;
  const void* soft_target = nullptr;
  int64_t soft_stride = 0;
  const void* weight = nullptr;
  double label_smoothing = 0.0, lse_square_scale = 0.0, tau = 1.0;
  Reduction reduction = Reduction::kMean;
  void* grad = nullptr;
  int64_t grad_stride = 0;
  void* lse = nullptr;
  void* row_loss = nullptr;
  void* loss = nullptr;
  int device = 0;
  void* stream = nullptr;
};
void cross_entropy(const CrossEntropyArgs& args);

// One move of the zeroth-order engine over n parameters of dt (float32 or float64) at global
// offset `offset` (zo.h): theta = (theta + c_restore z)(1 - lr wd) - lr g z, or theta +=
// c_restore z when lr == wd == 0 (the CPU binding's split, so the bits agree). mask: Sparse
// MeZO's bits (ceil(n / 32) words, local indices), built first from |theta| <= build_threshold
// when build_threshold >= 0 (perturb only). publish (float32 theta only): the float16/bfloat16
// tensor of a float32 master: a perturbation writes round(theta + c_restore z) there and leaves
// theta alone; an update (lr or wd != 0) moves theta and writes round(theta).
struct ZoMove {
  ZoDirection direction;
  uint64_t offset = 0;
  DType dt = DType::kFloat32;
  void* theta = nullptr;
  int64_t n = 0;
  double c_restore = 0.0, lr = 0.0, g = 0.0, wd = 0.0;
  uint32_t* mask = nullptr;
  double build_threshold = -1.0;
  void* publish = nullptr;
  DType publish_dt = DType::kBFloat16;
  int device = 0;
  void* stream = nullptr;
};
void zo_move(const ZoMove& m);

// z itself into out (n values of dt, float32 or float64).
void zo_fill(const ZoDirection& d, uint64_t offset, DType dt, void* out, int64_t n, int device,
             void* stream);

// HiZOO (zo.h): update false: theta += c z / sqrt(sigma); true: the fused restore, sigma and
// theta update with (lr, g, wd, keep, gain).
struct ZoHizoo {
  ZoDirection direction;
  uint64_t offset = 0;
  DType dt = DType::kFloat32;
  void* theta = nullptr;
  void* sigma = nullptr;
  int64_t n = 0;
  double c_restore = 0.0;
  bool update = false;
  double lr = 0.0, g = 0.0, wd = 0.0, keep = 0.0, gain = 0.0;
  int device = 0;
  void* stream = nullptr;
};
void zo_hizoo(const ZoHizoo& h);

}  // namespace cuda
}  // namespace softzo

#endif  // SOFTZO_CUDA_H_
