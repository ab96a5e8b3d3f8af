"""HiZOO against float64 NumPy, and its kernel bitwise identical on every ISA."""

import numpy as np
import pytest
import softzo
from softzo import optim
from zo_testing import fill, quadratic


def test_hizoo_steps_equal_numpy_reference(isa, rng):
    d = 1000
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    theta = rng.standard_normal(d)
    x, sigma = theta.copy(), np.full(d, 2.0)
    lr, eps, alpha, wd = 1e-2, 1e-3, 0.1, 0.01
    opt = optim.HiZOO(
        [theta], lr=lr, eps=eps, hessian_smooth=alpha, sigma0=2.0, weight_decay=wd, seed=4
    )
    tol = 0.0
    for k in range(3):
        z = fill("gaussian", d, np.float64, seed=4, step=k, direction=0)
        u = z / np.sqrt(sigma)
        f0, fp, fm = f(x), f(x + eps * u), f(x - eps * u)
        curvature = fp + fm - 2 * f0
        sigma = (1 - alpha) * sigma + alpha * abs(curvature) / (2 * eps**2) * sigma * z**2
        x = x * (1 - lr * wd) - lr * (fp - fm) / (2 * eps) * z / np.sqrt(sigma)
        assert opt.step(lambda: f(theta)) == pytest.approx(f0, rel=1e-14)
        # f is evaluated at points moved in place, which moves each f by a few ulp of f; the
        # curvature f+ + f- - 2 f0 cancels them, so Sigma's relative error grows by about
        # 16 ulp(f) / |curvature| per step (and theta's step by half that through sqrt).
        tol += 16 * np.spacing(max(f0, fp, fm)) / abs(curvature)
        np.testing.assert_allclose(opt.sigma[0], sigma, rtol=tol)
        np.testing.assert_allclose(theta, x, rtol=tol, atol=1e-10)
    assert tol < 1e-6  # the check above still means something


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dist", ["gaussian", "rademacher"])
def test_hizoo_kernels_are_bitwise_identical_across_isas(dtype, dist, rng):
    d = 65536 + 1003
    start = rng.standard_normal(d).astype(dtype)
    f = quadratic(rng.uniform(0.5, 2, d), np.zeros(d))
    results = {}
    for isa in softzo.info()["isas_available"]:
        with softzo.using_isa(isa):
            theta = start.copy()
            opt = optim.HiZOO(
                [theta],
                lr=1e-3,
                eps=1e-3,
                hessian_smooth=0.01,
                distribution=dist,
                seed=8,
                num_threads=2,
            )
            for _ in range(2):
                opt.step(lambda theta=theta: f(theta))
            results[isa] = (theta, opt.sigma[0])
    ref = results["scalar"]
    for isa, (theta, sigma) in results.items():
        np.testing.assert_array_equal(theta, ref[0], err_msg=isa)
        np.testing.assert_array_equal(sigma, ref[1], err_msg=isa)
