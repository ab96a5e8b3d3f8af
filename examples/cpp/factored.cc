// Consumer check of softzo::factored: 50 factored SGD steps equal 50 dense ones.
#include <softzo/factored.h>

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

int main() {
  const int64_t D = 1000, d = 16, m = 8, steps = 50;
  std::mt19937_64 gen(7);
  std::normal_distribution<double> normal;
  std::vector<double> w(D * d);
  for (double& x : w) x = 0.1 * normal(gen);
  softzo::FactoredLayerOptions opt;  // the Z-loss
  opt.lr = 0.5;
  softzo::FactoredSphericalLayer<double> layer(D, d, opt, w.data());
  std::vector<double> h(m * d);
  std::vector<int64_t> targets(m);
  double worst_loss = 0.0;
  for (int64_t s = 0; s < steps; ++s) {
    for (double& x : h) x = normal(gen);
    for (int64_t& t : targets) t = static_cast<int64_t>(gen() % D);
    const double a = layer.step(h.data(), m, d, targets.data(), 1, nullptr, 0);
    const double b = softzo::dense_spherical_step<double>(w.data(), D, d, h.data(), m, d,
                                                          targets.data(), 1, opt, nullptr, 0);
    worst_loss = std::fmax(worst_loss, std::fabs(a - b) / std::fabs(b));
  }
  std::vector<double> wf(D * d);
  layer.weight(wf.data());
  double diff = 0.0, scale = 0.0;
  for (int64_t i = 0; i < D * d; ++i) {
    diff = std::fmax(diff, std::fabs(wf[i] - w[i]));
    scale = std::fmax(scale, std::fabs(w[i]));
  }
  std::printf("factored vs dense after %lld steps: W %.2e, loss %.2e (relative)\n",
              static_cast<long long>(steps), diff / scale, worst_loss);
  return diff / scale < 1e-9 && worst_loss < 1e-9 ? 0 : 1;
}
