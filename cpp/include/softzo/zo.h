// The zeroth-order perturbation engine on raw parameter buffers: random directions z drawn by
// Philox4x32-10 from (seed, step, direction) with the element index as counter, regenerated in
// place at memory speed and never stored.
//
// z_g (g = offset + i) depends only on the direction and g, so a model's parameters can be
// perturbed tensor by tensor with offsets that run over their concatenation, on any thread
// count, chunking or ISA, and see the same z. Long buffers are split into fixed chunks that the
// thread pool shares; sums combine chunks in order, so they too are independent of threads.
#ifndef SOFTZO_ZO_H_
#define SOFTZO_ZO_H_

#include <cstdint>

namespace softzo {

enum class ZoDistribution : int {
  kRademacher = 0,  // +-1, one Philox block per 128 elements
  kGaussian = 1,    // standard normal (vectorised Box-Muller)
  kSegmented = 2,   // BlackVIP: magnitude uniform in [0.5, 1), random sign
};

struct ZoDirection {
  uint64_t seed = 0;
  uint32_t step = 0;
  uint32_t direction = 0;
  ZoDistribution dist = ZoDistribution::kGaussian;
};

// Sparse MeZO's mask, 1 bit per element: element i of a call takes part iff bit i & 31 of
// bits[i >> 5] is set (ceil(n / 32) words). It is decided once per step from the unperturbed
// theta and kept for the step's other passes: no rule on the moved values could recover it
// (zo_kernels.h), so 1/32 of a float32 tensor is the price of a consistent mask.
struct ZoMask {
  uint32_t* bits = nullptr;
  // zo_perturb only: first set the bits to |theta_i| <= threshold (NaN: 0), each block of theta
  // just before it moves, so the mask costs no extra pass over theta.
  bool build = false;
  double threshold = 0.0;
};

// z itself (tests, ask/tell interfaces).
template <typename T>
void zo_fill(const ZoDirection& d, uint64_t offset, T* z, int64_t n, int num_threads = 0);
// theta += c z, in place (mask: null for every element).
template <typename T>
void zo_perturb(const ZoDirection& d, uint64_t offset, T c, T* theta, int64_t n,
                const ZoMask* mask = nullptr, int num_threads = 0);
// theta = (theta + c_restore z)(1 - lr wd) - lr g z in one pass: MeZO's restore and update.
// Throws std::invalid_argument if mask->build is set.
template <typename T>
void zo_restore_update(const ZoDirection& d, uint64_t offset, T c_restore, T lr, T g, T wd,
                       T* theta, int64_t n, const ZoMask* mask = nullptr, int num_threads = 0);
// HiZOO (Zhao et al. 2024): theta += c z / sqrt(sigma), sigma > 0 the diagonal Hessian estimate.
template <typename T>
void zo_perturb_diag(const ZoDirection& d, uint64_t offset, T c, const T* sigma, T* theta,
                     int64_t n, int num_threads = 0);
// HiZOO's last pass: theta += c_restore z / sqrt(sigma); sigma <- sigma (keep + gain z^2);
// theta <- theta (1 - lr wd) - lr g z / sqrt(sigma), with the new sigma.
template <typename T>
void zo_hizoo_update(const ZoDirection& d, uint64_t offset, T c_restore, T lr, T g, T wd, T keep,
                     T gain, T* sigma, T* theta, int64_t n, int num_threads = 0);
// sum z_i^2 and sum z_i v_i.
template <typename T>
double zo_sumsq(const ZoDirection& d, uint64_t offset, int64_t n, int num_threads = 0);
template <typename T>
double zo_dot(const ZoDirection& d, uint64_t offset, const T* v, int64_t n, int num_threads = 0);

}  // namespace softzo

#endif  // SOFTZO_ZO_H_
