// The input distributions both benchmark binaries sweep (the same as bench/_common.py's), by the
// name component their benchmark names carry: rows as they come in practice, some spread far
// beyond the float32 exp's range, where a kernel that forms subnormal numbers slows down ~10x.
#ifndef SOFTZO_BENCH_BENCH_INPUTS_H_
#define SOFTZO_BENCH_BENCH_INPUTS_H_

#include <cmath>
#include <cstdint>
#include <limits>

namespace softzo_bench {

enum class Dist { kNormal, kWide30, kWide100, kMasked, kPadded, kTemp01 };

struct DistInfo {
  const char* name;
  Dist dist;
};
// normal: N(0,1); wide30, wide100: N(0,30^2), N(0,100^2); masked: N(0,1) with 10% of the
// entries -inf; padded: N(0,1) with the second half of every row -1e4; temp0.1: N(0,1)/0.1.
constexpr DistInfo kDists[] = {{"normal", Dist::kNormal},   {"wide30", Dist::kWide30},
                               {"wide100", Dist::kWide100}, {"masked", Dist::kMasked},
                               {"padded", Dist::kPadded},   {"temp0.1", Dist::kTemp01}};

constexpr double kPad = -1e4;
constexpr double kMaskedFraction = 0.1;

// splitmix64 of a counter: element i's random bits do not depend on how much was filled
// before, so a buffer refilled for another shape starts with the same values.
inline uint64_t mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15u;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

// Uniform in (0, 1): 53 random bits, offset by half a step so that log() never sees 0.
inline double uniform(uint64_t seed, uint64_t i) {
  return (static_cast<double>(mix(seed ^ mix(i)) >> 11) + 0.5) * 0x1p-53;
}

// The mask depends on the position only (not on the buffer's seed), so a teacher and its
// student share their masked classes, as a masked vocabulary does.
inline bool masked(uint64_t i) { return uniform(0x6D61736Bu, i) < kMaskedFraction; }

// rows x n logits of the distribution; each buffer has its own seed.
template <typename T>
void fill_logits(T* x, int64_t rows, int64_t n, Dist dist, uint64_t seed) {
  const double two_pi = 6.283185307179586;
  for (int64_t i = 0; i < rows * n; ++i) {
    const uint64_t u = static_cast<uint64_t>(i);
    // Box-Muller: one normal from two uniforms.
    double v = std::sqrt(-2.0 * std::log(uniform(seed, 2 * u))) *
               std::cos(two_pi * uniform(seed, 2 * u + 1));
    switch (dist) {
      case Dist::kWide30:
        v *= 30;
        break;
      case Dist::kWide100:
        v *= 100;
        break;
      case Dist::kTemp01:
        v /= 0.1;
        break;
      case Dist::kMasked:
        if (masked(u)) v = -std::numeric_limits<double>::infinity();
        break;
      case Dist::kPadded:
        if (i % n >= n / 2) v = kPad;
        break;
      case Dist::kNormal:
        break;
    }
    x[i] = static_cast<T>(v);
  }
}

// A target class per row that is neither masked nor padding, from a random start.
template <typename T>
int64_t real_class(const T* row, int64_t n, uint64_t seed, int64_t r) {
  const int64_t start =
      static_cast<int64_t>(mix(seed ^ mix(static_cast<uint64_t>(r))) % static_cast<uint64_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    const int64_t j = (start + k) % n;
    if (row[j] > static_cast<T>(kPad / 2)) return j;
  }
  return start;  // a row without a real class: never drawn here
}

}  // namespace softzo_bench

#endif  // SOFTZO_BENCH_BENCH_INPUTS_H_
