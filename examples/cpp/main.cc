// softzo's public C++ API used from an installed package, checked against a plain
// double-precision computation so that a broken build or install fails loudly (exit 1).
#include <cmath>
#include <cstdio>
#include <vector>

#include "softzo/softzo.h"

namespace {

constexpr int kRows = 2;
constexpr int kN = 9;
// The second row is large on purpose: without subtracting the max, exp would overflow float.
constexpr double kInput[kRows][kN] = {
    {1.0, -2.5, 3.25, 0.0, 10.0, -7.75, 4.5, 2.0, -0.125},
    {100.0, 99.5, 98.0, -50.0, 100.25, 97.0, 0.5, 99.0, 101.0},
};

struct Reference {
  double softmax[kN];
  double log_softmax[kN];
  double logsumexp;
};

Reference reference_row(const double* x) {
  Reference ref;
  double m = x[0];
  for (int i = 1; i < kN; ++i) m = std::fmax(m, x[i]);
  double sum = 0.0;
  for (int i = 0; i < kN; ++i) sum += std::exp(x[i] - m);
  ref.logsumexp = m + std::log(sum);
  for (int i = 0; i < kN; ++i) {
    ref.softmax[i] = std::exp(x[i] - m) / sum;
    ref.log_softmax[i] = x[i] - ref.logsumexp;
  }
  return ref;
}

bool close(double got, double want, double tol) {
  return std::fabs(got - want) <= tol;  // also false for NaN
}

// Number of mismatches of type T for one algorithm; softmax is compared relative to the value
// (values below `tiny` may flush to 0), log_softmax and logsumexp absolutely, scaled up for
// large magnitudes, as softmax.h states.
template <typename T>
int check(const char* dtype, const char* algo_name, softzo::SoftmaxAlgorithm algo, double tol,
          double tiny) {
  std::vector<T> x(kRows * kN), sm(kRows * kN), lsm(kRows * kN), lse(kRows);
  for (int r = 0; r < kRows; ++r) {
    for (int i = 0; i < kN; ++i) x[r * kN + i] = static_cast<T>(kInput[r][i]);
  }
  softzo::SoftmaxOptions opt;
  opt.algorithm = algo;
  softzo::softmax(x.data(), sm.data(), kRows, kN, opt);
  softzo::log_softmax(x.data(), lsm.data(), kRows, kN, opt);
  softzo::logsumexp(x.data(), lse.data(), kRows, kN, opt);

  int bad = 0;
  auto report = [&](const char* op, int r, int i, double got, double want) {
    std::fprintf(stderr, "softzo_example: %s %s/%s row %d [%d]: got %.17g, want %.17g\n", op, dtype,
                 algo_name, r, i, got, want);
    ++bad;
  };
  for (int r = 0; r < kRows; ++r) {
    std::vector<double> xd(x.begin() + r * kN, x.begin() + (r + 1) * kN);  // the rounded input
    const Reference ref = reference_row(xd.data());
    for (int i = 0; i < kN; ++i) {
      const double want_sm = ref.softmax[i], want_lsm = ref.log_softmax[i];
      if (!close(sm[r * kN + i], want_sm, tol * want_sm + tiny)) {
        report("softmax", r, i, sm[r * kN + i], want_sm);
      }
      if (!close(lsm[r * kN + i], want_lsm, tol * std::fmax(1.0, std::fabs(want_lsm)))) {
        report("log_softmax", r, i, lsm[r * kN + i], want_lsm);
      }
    }
    if (!close(lse[r], ref.logsumexp, tol * std::fmax(1.0, std::fabs(ref.logsumexp)))) {
      report("logsumexp", r, -1, lse[r], ref.logsumexp);
    }
  }
  return bad;
}

}  // namespace

int main() {
  struct Algo {
    const char* name;
    softzo::SoftmaxAlgorithm algo;
  };
  const Algo algos[] = {{"auto", softzo::SoftmaxAlgorithm::kAuto},
                        {"two_pass", softzo::SoftmaxAlgorithm::kTwoPass},
                        {"three_pass_reload", softzo::SoftmaxAlgorithm::kThreePassReload},
                        {"three_pass_recompute", softzo::SoftmaxAlgorithm::kThreePassRecompute},
                        {"online", softzo::SoftmaxAlgorithm::kOnline}};
  int bad = 0;
  for (const Algo& a : algos) {
    // float32: ~4 ulp promised for outputs >= 1e-30, 1e-6 leaves headroom; float64: far below
    // 1e-12. Row 1 has softmax outputs of 1e-44 and 1e-66, under float32's range.
    bad += check<float>("f32", a.name, a.algo, 1e-6, 1e-30);
    bad += check<double>("f64", a.name, a.algo, 1e-12, 1e-300);
  }
  if (bad != 0) {
    std::fprintf(stderr, "softzo_example: %d mismatches\n", bad);
    return 1;
  }
  std::printf(
      "softzo_example: softmax, log_softmax, logsumexp match the float64 reference "
      "(isa %s, f32 and f64, 5 algorithms)\n",
      softzo::current_isa_name().c_str());
  return 0;
}
