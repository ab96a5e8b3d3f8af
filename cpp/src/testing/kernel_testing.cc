// Kernel test hooks: a named ISA's exp, and the exhaustive float32 exp sweep.
#include "testing/kernel_testing.h"

#include <xmmintrin.h>

#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

#include "common/thread_pool.h"
#include "dispatch/dispatch.h"

namespace softzo {
namespace testing {
namespace {

template <typename T>
const SoftmaxKernels<T>* kernels_named(const std::string& isa) {
  Isa id;
  return parse_isa(isa.c_str(), &id) ? softmax_kernels_for<T>(id) : nullptr;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Floats ordered as integers: negative floats map below positive ones, monotonically.
int64_t ordinal(float f) {
  const uint32_t u = bits_of(f);
  return u & 0x80000000u ? -static_cast<int64_t>(u & 0x7FFFFFFFu) : static_cast<int64_t>(u);
}

float from_ordinal(int64_t o) {
  return o < 0 ? float_of(static_cast<uint32_t>(-o) | 0x80000000u)
               : float_of(static_cast<uint32_t>(o));
}

}  // namespace

bool run_vexp(const std::string& isa, const float* x, float* y, size_t n) {
  const auto* k = kernels_named<float>(isa);
  if (k) k->vexp(n, x, y);
  return k != nullptr;
}

bool run_vexp(const std::string& isa, const double* x, double* y, size_t n) {
  const auto* k = kernels_named<double>(isa);
  if (k) k->vexp(n, x, y);
  return k != nullptr;
}

UlpReport exp_f32_ulp_sweep(const std::string& isa, float lo, float hi) {
  UlpReport report;
  const auto* k = kernels_named<float>(isa);
  if (!k || !(lo <= hi)) return report;
  const int64_t first = ordinal(lo), last = ordinal(hi);
  constexpr int64_t kBlock = 1 << 16;
  const int64_t total = last - first + 1;
  const int64_t tasks = (total + kBlock - 1) / kBlock;
  std::mutex mu;
  parallel_for(tasks, 0, [&](int64_t t) {
    std::vector<float> x(kBlock), y(kBlock);
    const int64_t begin = first + t * kBlock;
    const int64_t len = total - t * kBlock < kBlock ? total - t * kBlock : kBlock;
    for (int64_t i = 0; i < len; ++i) x[i] = from_ordinal(begin + i);
    k->vexp(static_cast<size_t>(len), x.data(), y.data());
    double worst = 0;
    float worst_x = 0;
    for (int64_t i = 0; i < len; ++i) {
      const double ref = std::exp(static_cast<double>(x[i]));
      if (ref < 0x1p-126 || ref > 0x1.fffffep127) continue;  // flushed or overflowed
      const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(ref)) - 23);
      const double err = std::fabs(static_cast<double>(y[i]) - ref) / ulp;
      if (err > worst || std::isnan(err)) {
        worst = std::isnan(err) ? INFINITY : err;
        worst_x = x[i];
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    if (worst > report.max_ulp) {
      report.max_ulp = worst;
      report.worst_input = worst_x;
    }
  });
  report.ok = true;
  report.count = total;
  return report;
}

unsigned fp_flags() { return _mm_getcsr() & 0x3Fu; }

void clear_fp_flags() { _mm_setcsr(_mm_getcsr() & ~0x3Fu); }

void set_flush_denormals(bool on) {
  constexpr unsigned kFtzDaz = 0x8040u;  // bit 15: flush to zero, bit 6: denormals are zero
  _mm_setcsr(on ? (_mm_getcsr() | kFtzDaz) : (_mm_getcsr() & ~kFtzDaz));
}

}  // namespace testing
}  // namespace softzo
