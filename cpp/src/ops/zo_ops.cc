// Zeroth-order engine ops: fixed-size chunks of the parameter buffer on the thread pool, each a
// kernel call with its own global offset.
#include <stdexcept>
#include <vector>

#include "common/thread_pool.h"
#include "dispatch/dispatch.h"
#include "softzo/zo.h"

namespace softzo {
namespace {

// Chunk length depends on nothing but this constant, so partial sums combine in the same
// order for any thread count. 2^16 elements: 256 KiB of float32, plenty per task.
constexpr int64_t kChunk = int64_t{1} << 16;

softzo_zo_stream stream_of(const ZoDirection& d) {
  softzo_zo_stream s;
  s.seed = d.seed;
  s.step = d.step;
  s.direction = d.direction;
  s.dist = static_cast<int>(d.dist);
  return s;
}

template <typename F>
void each_chunk(int64_t n, int threads, F&& f) {
  if (n < 0) throw std::invalid_argument("softzo: negative length");
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) {
    if (n > 0) f(0, 0, n);
    return;
  }
  parallel_for(chunks, threads > 0 ? threads : default_num_threads(), [&](int64_t c) {
    const int64_t off = c * kChunk;
    f(c, off, n - off < kChunk ? n - off : kChunk);
  });
}

template <typename F>
double chunk_sum(int64_t n, int threads, F&& f) {
  std::vector<double> parts(static_cast<size_t>((n + kChunk - 1) / kChunk), 0.0);
  each_chunk(n, threads, [&](int64_t c, int64_t off, int64_t len) { parts[c] = f(off, len); });
  double s = 0.0;
  for (double p : parts) s += p;
  return s;
}

}  // namespace

template <typename T>
void zo_fill(const ZoDirection& d, uint64_t offset, T* z, int64_t n, int num_threads) {
  const ZoKernels<T>& k = zo_kernels<T>();
  const softzo_zo_stream s = stream_of(d);
  each_chunk(n, num_threads, [&](int64_t, int64_t off, int64_t len) {
    k.fill(static_cast<size_t>(len), offset + static_cast<uint64_t>(off), &s, z + off);
  });
}

// Sparse MeZO's first pass builds each 8192-element block's mask bits just before moving the
// block, so theta is read from L1/L2 the second time (32 KiB of float32) and the mask costs no
// extra pass. Chunks and blocks start at multiples of 32 elements: whole mask words.
constexpr int64_t kMaskBlock = 8192;
static_assert(kChunk % kMaskBlock == 0 && kMaskBlock % 32 == 0, "mask words must not straddle");

template <typename T>
void zo_perturb(const ZoDirection& d, uint64_t offset, T c, T* theta, int64_t n, const ZoMask* mask,
                int num_threads) {
  const ZoKernels<T>& k = zo_kernels<T>();
  const softzo_zo_stream s = stream_of(d);
  each_chunk(n, num_threads, [&](int64_t, int64_t off, int64_t len) {
    const uint64_t g = offset + static_cast<uint64_t>(off);
    if (!mask) {
      k.axpy(static_cast<size_t>(len), g, &s, c, theta + off);
      return;
    }
    uint32_t* bits = mask->bits + off / 32;
    if (!mask->build) {
      k.axpy_mask(static_cast<size_t>(len), g, &s, c, bits, theta + off);
      return;
    }
    for (int64_t b = 0; b < len; b += kMaskBlock) {
      const size_t m = static_cast<size_t>(len - b < kMaskBlock ? len - b : kMaskBlock);
      k.mask_build(m, static_cast<T>(mask->threshold), theta + off + b, bits + b / 32);
      k.axpy_mask(m, g + static_cast<uint64_t>(b), &s, c, bits + b / 32, theta + off + b);
    }
  });
}

template <typename T>
void zo_restore_update(const ZoDirection& d, uint64_t offset, T c_restore, T lr, T g, T wd,
                       T* theta, int64_t n, const ZoMask* mask, int num_threads) {
  if (mask && mask->build) {
    throw std::invalid_argument("softzo: zo_restore_update cannot build a mask; zo_perturb does");
  }
  const ZoKernels<T>& k = zo_kernels<T>();
  const softzo_zo_stream s = stream_of(d);
  each_chunk(n, num_threads, [&](int64_t, int64_t off, int64_t len) {
    const uint64_t at = offset + static_cast<uint64_t>(off);
    if (mask) {
      k.restore_update_mask(static_cast<size_t>(len), at, &s, c_restore, lr, g, wd,
                            mask->bits + off / 32, theta + off);
    } else {
      k.restore_update(static_cast<size_t>(len), at, &s, c_restore, lr, g, wd, theta + off);
    }
  });
}

template <typename T>
void zo_perturb_diag(const ZoDirection& d, uint64_t offset, T c, const T* sigma, T* theta,
                     int64_t n, int num_threads) {
  const ZoKernels<T>& k = zo_kernels<T>();
  const softzo_zo_stream s = stream_of(d);
  each_chunk(n, num_threads, [&](int64_t, int64_t off, int64_t len) {
    k.axpy_diag(static_cast<size_t>(len), offset + static_cast<uint64_t>(off), &s, c, sigma + off,
                theta + off);
  });
}

template <typename T>
void zo_hizoo_update(const ZoDirection& d, uint64_t offset, T c_restore, T lr, T g, T wd, T keep,
                     T gain, T* sigma, T* theta, int64_t n, int num_threads) {
  const ZoKernels<T>& k = zo_kernels<T>();
  const softzo_zo_stream s = stream_of(d);
  each_chunk(n, num_threads, [&](int64_t, int64_t off, int64_t len) {
    k.hizoo_update(static_cast<size_t>(len), offset + static_cast<uint64_t>(off), &s, c_restore, lr,
                   g, wd, keep, gain, sigma + off, theta + off);
  });
}

template <typename T>
double zo_sumsq(const ZoDirection& d, uint64_t offset, int64_t n, int num_threads) {
  const ZoKernels<T>& k = zo_kernels<T>();
  const softzo_zo_stream s = stream_of(d);
  return chunk_sum(n, num_threads, [&](int64_t off, int64_t len) {
    return k.sumsq(static_cast<size_t>(len), offset + static_cast<uint64_t>(off), &s);
  });
}

template <typename T>
double zo_dot(const ZoDirection& d, uint64_t offset, const T* v, int64_t n, int num_threads) {
  const ZoKernels<T>& k = zo_kernels<T>();
  const softzo_zo_stream s = stream_of(d);
  return chunk_sum(n, num_threads, [&](int64_t off, int64_t len) {
    return k.dot(static_cast<size_t>(len), offset + static_cast<uint64_t>(off), &s, v + off);
  });
}

#define SOFTZO_INSTANTIATE_ZO(T)                                                                 \
  template void zo_fill<T>(const ZoDirection&, uint64_t, T*, int64_t, int);                      \
  template void zo_perturb<T>(const ZoDirection&, uint64_t, T, T*, int64_t, const ZoMask*, int); \
  template void zo_restore_update<T>(const ZoDirection&, uint64_t, T, T, T, T, T*, int64_t,      \
                                     const ZoMask*, int);                                        \
  template void zo_perturb_diag<T>(const ZoDirection&, uint64_t, T, const T*, T*, int64_t, int); \
  template void zo_hizoo_update<T>(const ZoDirection&, uint64_t, T, T, T, T, T, T, T*, T*,       \
                                   int64_t, int);                                                \
  template double zo_sumsq<T>(const ZoDirection&, uint64_t, int64_t, int);                       \
  template double zo_dot<T>(const ZoDirection&, uint64_t, const T*, int64_t, int);

SOFTZO_INSTANTIATE_ZO(float)
SOFTZO_INSTANTIATE_ZO(double)

}  // namespace softzo
