// The spherical family's per-example terms (de Brebisson & Vincent): a loss L(o_c, s, q) of the
// target output o_c, s = sum o and q = sum o^2 over n classes, with its upstream gradients, from
// which d L / d o = gs + 2 gq o + ga e_c. Shared by the dense losses and the factored layer.
#ifndef SOFTZO_OPS_SPHERICAL_TERMS_H_
#define SOFTZO_OPS_SPHERICAL_TERMS_H_

#include <cmath>

#include "softzo/losses.h"

namespace softzo {

struct SphericalTerms {
  double loss, ga, gs, gq;
};

// Z-loss softplus(a (b - z)) / a with z = (o_c - mu) / sigma. sigma = 0 (all outputs equal)
// gives z := 0 and zero gradients; a NaN sigma propagates.
inline SphericalTerms zloss_terms(double oc, double mu, double sigma, double n, double a,
                                  double b) {
  const double zc = sigma > 0.0 ? (oc - mu) / sigma : 0.0;
  const double u = a * (b - zc);
  SphericalTerms t;
  t.loss = (std::fmax(u, 0.0) + std::log1p(std::exp(-std::fabs(u)))) / a;
  if (std::isnan(sigma) || std::isnan(oc)) t.loss = NAN;
  if (!(sigma > 0.0)) {
    t.ga = t.gs = t.gq = std::isnan(sigma) ? NAN : 0.0;
    return t;
  }
  const double g = -1.0 / (1.0 + std::exp(-u));  // d L / d z_c = -sigmoid(u)
  t.ga = g / sigma;
  t.gs = g * (-1.0 + zc * mu / sigma) / (n * sigma);
  t.gq = -g * zc / (2.0 * n * sigma * sigma);
  return t;
}

// One target's terms from (o_c, s, q). For the Z-loss, mu and sigma come from s and q here;
// callers holding the row itself compute them more accurately and call zloss_terms.
inline SphericalTerms spherical_terms(SphericalKind kind, double oc, double s, double q, double n,
                                      double a, double b, double eps) {
  SphericalTerms t{0.0, 0.0, 0.0, 0.0};
  switch (kind) {
    case SphericalKind::kZLoss: {
      const double mu = s / n, var = q / n - mu * mu;
      return zloss_terms(oc, mu, std::sqrt(var > 0.0 ? var : 0.0), n, a, b);
    }
    case SphericalKind::kLogSpherical: {
      const double den = q + n * eps;
      t.loss = -std::log(oc * oc + eps) + std::log(den);
      t.ga = -2.0 * oc / (oc * oc + eps);
      t.gq = 1.0 / den;
      break;
    }
    case SphericalKind::kLogTaylor: {
      const double num = 1.0 + oc + 0.5 * oc * oc, den = n + s + 0.5 * q;
      t.loss = -std::log(num) + std::log(den);
      t.ga = -(1.0 + oc) / num;
      t.gs = 1.0 / den;
      t.gq = 0.5 / den;
      break;
    }
    case SphericalKind::kMse:  // sum_k (o_k - onehot_k)^2 = q - 2 o_c + 1
      t.loss = q - 2.0 * oc + 1.0;
      t.ga = -2.0;
      t.gq = 1.0;
      break;
  }
  return t;
}

}  // namespace softzo

#endif  // SOFTZO_OPS_SPHERICAL_TERMS_H_
