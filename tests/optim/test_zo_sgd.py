"""ZO-SGD (momentum, sign, conservative) and ZO-Adam against float64 NumPy."""

import numpy as np
from softzo import optim
from zo_testing import fill, quadratic


def test_zo_sgd_and_adam_steps_equal_numpy_reference(rng):
    d = 500
    w, c = rng.uniform(0.5, 2, d), rng.standard_normal(d)
    f = quadratic(w, c)
    for cls, kw in [
        (optim.ZOSGD, {"momentum": 0.9}),
        (optim.ZOSGD, {"sign": True}),
        (optim.ZOAdam, {}),
    ]:
        theta = rng.standard_normal(d)
        x = theta.copy()
        opt = cls([theta], lr=1e-2, eps=1e-3, num_queries=2, seed=9, **kw)
        m = np.zeros(d)
        v = np.zeros(d)
        for k in range(3):
            g = np.zeros(d)
            for q in range(2):
                z = fill("gaussian", d, np.float64, seed=9, step=k, direction=q)
                g += (f(x + 1e-3 * z) - f(x - 1e-3 * z)) / (2e-3) * z / 2
            if cls is optim.ZOAdam:
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g * g
                x = x - 1e-2 * (m / (1 - 0.9 ** (k + 1))) / (
                    np.sqrt(v / (1 - 0.999 ** (k + 1))) + 1e-8
                )
            elif kw.get("sign"):  # ZO-SGD-Sign: sign of each projected gradient, times z
                zs = [fill("gaussian", d, np.float64, seed=9, step=k, direction=q) for q in (0, 1)]
                x = x - 1e-2 * sum(np.sign(f(x + 1e-3 * z) - f(x - 1e-3 * z)) * z / 2 for z in zs)
            else:
                m = 0.9 * m + g
                x = x - 1e-2 * m
            opt.step(lambda theta=theta: f(theta))
            # As in the MeZO test: f is evaluated at in-place moved points (roundings of 1e-16
            # divided by 2 eps), and the reference repeats the difference quotient itself.
            np.testing.assert_allclose(theta, x, rtol=1e-9, atol=1e-10, err_msg=cls.__name__)


def test_zo_sgd_conservative_keeps_the_best_candidate(rng):
    d = 300
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    theta = rng.standard_normal(d)
    x = theta.copy()
    eps = 1e-3
    opt = optim.ZOSGD([theta], lr=0.005, eps=eps, conservative=True, num_queries=2, seed=3)
    assert opt.evaluations_per_step() == 7
    chosen = set()
    for k in range(8):
        # Small steps descend; from step 4 on they overshoot and theta must stay.
        lr = opt.param_groups[0]["lr"] = 0.005 if k < 4 else 0.05
        g = np.zeros(d)
        for q in range(2):
            z = fill("gaussian", d, np.float64, seed=3, step=k, direction=q)
            g += (f(x + eps * z) - f(x - eps * z)) / (2 * eps) * z / 2
        cands = [x, x - lr * g, x + lr * g]
        best = int(np.argmin([f(c) for c in cands]))
        chosen.add(best)
        x = cands[best]
        opt.step(lambda: f(theta))
        np.testing.assert_allclose(theta, x, rtol=1e-9, atol=1e-10)
    assert chosen == {0, 1}  # both outcomes were exercised
