"""RGE and CGE against float64 NumPy."""

import numpy as np
from softzo import optim
from zo_testing import fill, quadratic


def test_rge_and_cge_steps_equal_numpy_reference(rng):
    d = 50
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    theta = rng.standard_normal(d)
    x = theta.copy()
    optim.RGE([theta], lr=1e-2, mu=1e-4, num_queries=4, seed=8).step(lambda: f(theta))
    g = np.zeros(d)
    for q in range(4):
        z = fill("gaussian", d, np.float64, seed=8, step=0, direction=q)
        u = z / np.linalg.norm(z)
        g += d / 4 * (f(x + 1e-4 * u) - f(x)) / 1e-4 * u
    np.testing.assert_allclose(theta, x - 1e-2 * g, rtol=1e-8, atol=1e-9)

    theta = rng.standard_normal(d)
    x = theta.copy()
    optim.CGE([theta], lr=1e-2, mu=1e-4).step(lambda: f(theta))
    eye = np.eye(d)
    g = np.array([(f(x + 1e-4 * e) - f(x - 1e-4 * e)) / 2e-4 for e in eye])
    np.testing.assert_allclose(theta, x - 1e-2 * g, rtol=1e-10, atol=1e-12)
