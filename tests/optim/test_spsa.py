"""SPSA-GC against float64 NumPy (SPSA's own gains and calibration: test_minimize.py)."""

import numpy as np
from softzo import optim
from zo_testing import fill, quadratic


def test_spsa_gc_step_equals_numpy_reference(rng):
    d = 200
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    theta = rng.standard_normal(d)
    x = theta.copy()
    opt = optim.SPSA_GC([theta], a=0.01, c=0.01, num_queries=3, seed=6)
    m = np.zeros(d)
    for k in range(3):
        ck = 0.01 / (k + 1) ** 0.1
        g = np.zeros(d)
        for q in range(3):
            z = fill("rademacher", d, np.float64, seed=6, step=k, direction=q)
            g += (f(x + ck * z) - f(x - ck * z)) / (2 * ck) * z / 3
        m = 0.9 * m + g
        x = x - 0.01 / (k + 1) ** 0.4 * (g + 0.9 * m)
        opt.step(lambda: f(theta))
        np.testing.assert_allclose(theta, x, rtol=1e-9, atol=1e-10)
