// nanobind module softzo._testing: hooks for the tests and the benchmarks, kept out of the
// production module softzo._core and out of the installed C++ library: a named ISA's kernels
// lists, a kernel's raw exp (and soft cap, half conversions) and its exhaustive ULP sweep, Philox's
// known-answer check, the CPU's floating-point status, and the streaming roofline loops.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <string>
#include <vector>

#include "dispatch/dispatch.h"
#include "testing/kernel_testing.h"
#include "testing/stream.h"

namespace nb = nanobind;

namespace {

template <typename T>
void vexp_into(nb::ndarray<const T, nb::device::cpu> x, nb::ndarray<T, nb::device::cpu> out,
               const std::string& isa) {
  const size_t n = x.size();
  if (out.size() != n) throw nb::value_error("out must have as many elements as x");
  if (!softzo::testing::run_vexp(isa, x.data(), out.data(), n)) {
    throw nb::value_error(("isa '" + isa + "' is not available").c_str());
  }
}

template <typename T>
void vsoftcap_into(nb::ndarray<const T, nb::device::cpu, nb::c_contig> x,
                   nb::ndarray<T, nb::device::cpu, nb::c_contig> out, T c, const std::string& isa) {
  if (out.size() != x.size()) throw nb::value_error("out must have as many elements as x");
  if (!softzo::testing::run_vsoftcap(isa, x.data(), out.data(), x.size(), c)) {
    throw nb::value_error(("isa '" + isa + "' is not available").c_str());
  }
}

softzo::Isa isa_named(const std::string& name) {
  softzo::Isa isa;
  if (!softzo::parse_isa(name.c_str(), &isa) || !softzo::isa_info(isa).available) {
    throw nb::value_error(("isa '" + name + "' is not available here").c_str());
  }
  return isa;
}

// Each family's kernel names, from its list.
#define SOFTZO_NAMES(LIST) \
  std::vector<std::string> { LIST(SOFTZO_KERNEL_NAME, float, f32, any) }

}  // namespace

NB_MODULE(_testing, m) {
  m.doc() = "softzo's test and benchmark hooks (not part of the public API).";

  m.def(
      "kernels",
      [] {
        nb::dict d;
        d["softmax"] = SOFTZO_NAMES(SOFTZO_SOFTMAX_KERNELS);
        d["losses"] = SOFTZO_NAMES(SOFTZO_LOSS_KERNELS);
        d["zo"] = SOFTZO_NAMES(SOFTZO_ZO_KERNELS);
        d["convert"] = SOFTZO_NAMES(SOFTZO_CONVERT_KERNELS);
        d["half_softmax"] = SOFTZO_NAMES(SOFTZO_HALF_SOFTMAX_KERNELS);
        return d;
      },
      "Each family's kernel names, from its list (kernels/<family>/<family>_kernels.h).");
  m.def(
      "missing_kernels",
      [](const std::string& name) {
        // Every entry of an available ISA's tables must be filled: the names of empty ones.
        const softzo::Isa isa = isa_named(name);
        std::vector<std::string> missing;
        const auto* s = softzo::softmax_kernels_for<float>(isa);
        const auto* l = softzo::loss_kernels_for<float>(isa);
        const auto* z = softzo::zo_kernels_for<float>(isa);
        const softzo::ConvertKernels* c = softzo::convert_kernels_for(isa);
        const softzo::HalfSoftmaxKernels* h = softzo::half_softmax_kernels_for(isa);
        if (!s || !l || !z || !c || !h) return std::vector<std::string>{"a whole family's table"};
#define SOFTZO_CHECK_ENTRY(table, ret, name, params, dt, isa) \
  if (!table->name) missing.push_back(#name);
#define SOFTZO_CHECK_S(...) SOFTZO_CHECK_ENTRY(s, __VA_ARGS__)
#define SOFTZO_CHECK_L(...) SOFTZO_CHECK_ENTRY(l, __VA_ARGS__)
#define SOFTZO_CHECK_Z(...) SOFTZO_CHECK_ENTRY(z, __VA_ARGS__)
#define SOFTZO_CHECK_C(...) SOFTZO_CHECK_ENTRY(c, __VA_ARGS__)
#define SOFTZO_CHECK_H(...) SOFTZO_CHECK_ENTRY(h, __VA_ARGS__)
        SOFTZO_SOFTMAX_KERNELS(SOFTZO_CHECK_S, float, f32, any)
        SOFTZO_LOSS_KERNELS(SOFTZO_CHECK_L, float, f32, any)
        SOFTZO_ZO_KERNELS(SOFTZO_CHECK_Z, float, f32, any)
        SOFTZO_CONVERT_KERNELS(SOFTZO_CHECK_C, void, half, any)
        SOFTZO_HALF_SOFTMAX_KERNELS(SOFTZO_CHECK_H, void, half, any)
        return missing;
      },
      nb::arg("isa"), "The kernels an ISA's float32 tables lack (should be none).");

  m.def("vexp", &vexp_into<float>, nb::arg("x"), nb::arg("out").noconvert(), nb::arg("isa"));
  m.def("vexp", &vexp_into<double>, nb::arg("x"), nb::arg("out").noconvert(), nb::arg("isa"));
  m.def("vsoftcap", &vsoftcap_into<float>, nb::arg("x"), nb::arg("out").noconvert(), nb::arg("c"),
        nb::arg("isa"));
  m.def("vsoftcap", &vsoftcap_into<double>, nb::arg("x"), nb::arg("out").noconvert(), nb::arg("c"),
        nb::arg("isa"));
  // The half conversions on raw bits (uint16): kind "float16" or "bfloat16".
  m.def(
      "widen",
      [](const std::string& kind, nb::ndarray<const uint16_t, nb::device::cpu, nb::c_contig> x,
         nb::ndarray<float, nb::device::cpu, nb::c_contig> out, const std::string& isa) {
        if (out.size() != x.size()) throw nb::value_error("out must have as many elements as x");
        if (!softzo::testing::run_widen(isa, kind == "bfloat16", x.data(), out.data(), x.size()))
          throw nb::value_error(("isa '" + isa + "' is not available").c_str());
      },
      nb::arg("kind"), nb::arg("x"), nb::arg("out").noconvert(), nb::arg("isa"));
  m.def(
      "narrow",
      [](const std::string& kind, nb::ndarray<const float, nb::device::cpu, nb::c_contig> x,
         nb::ndarray<uint16_t, nb::device::cpu, nb::c_contig> out, const std::string& isa) {
        if (out.size() != x.size()) throw nb::value_error("out must have as many elements as x");
        if (!softzo::testing::run_narrow(isa, kind == "bfloat16", x.data(), out.data(), x.size()))
          throw nb::value_error(("isa '" + isa + "' is not available").c_str());
      },
      nb::arg("kind"), nb::arg("x"), nb::arg("out").noconvert(), nb::arg("isa"));
  m.def(
      "exp_f32_ulp_sweep",
      [](const std::string& isa, float lo, float hi) {
        softzo::testing::UlpReport r;
        {
          nb::gil_scoped_release release;
          r = softzo::testing::exp_f32_ulp_sweep(isa, lo, hi);
        }
        if (!r.ok) throw nb::value_error(("isa '" + isa + "' is not available").c_str());
        return nb::make_tuple(r.max_ulp, r.worst_input, r.count);
      },
      nb::arg("isa"), nb::arg("lo"), nb::arg("hi"),
      "Max ULP error of the ISA's float32 exp over every float in [lo, hi]: "
      "(max_ulp, worst input, floats checked).");
  m.def(
      "philox4x32_10",
      [](std::vector<uint32_t> ctr, std::vector<uint32_t> key) {
        if (ctr.size() != 4 || key.size() != 2)
          throw nb::value_error("need 4 counter, 2 key words");
        uint32_t out[4];
        softzo_philox4x32_10(ctr.data(), key.data(), out);
        return std::vector<uint32_t>(out, out + 4);
      },
      nb::arg("counter"), nb::arg("key"), "Philox4x32-10 of one counter (known-answer tests).");

  // The calling thread's floating-point status flags, and FTZ/DAZ (see testing/kernel_testing.h).
  m.def("fp_flags", &softzo::testing::fp_flags);
  m.def("clear_fp_flags", &softzo::testing::clear_fp_flags);
  m.def("set_flush_denormals", &softzo::testing::set_flush_denormals, nb::arg("on"));

  // Roofline references for the benchmarks (float32, contiguous).
  m.def(
      "stream_read",
      [](nb::ndarray<const float, nb::device::cpu, nb::c_contig> x, int num_threads) {
        nb::gil_scoped_release release;
        return softzo::testing::stream_read(x.data(), static_cast<int64_t>(x.size()), num_threads);
      },
      nb::arg("x"), nb::arg("num_threads"));
  m.def(
      "stream_scale",
      [](nb::ndarray<const float, nb::device::cpu, nb::c_contig> x,
         nb::ndarray<float, nb::device::cpu, nb::c_contig> out, int num_threads) {
        if (out.size() != x.size()) throw nb::value_error("out must have as many elements as x");
        nb::gil_scoped_release release;
        softzo::testing::stream_scale(x.data(), out.data(), static_cast<int64_t>(x.size()), 0.5f,
                                      num_threads);
      },
      nb::arg("x"), nb::arg("out").noconvert(), nb::arg("num_threads"));
}
