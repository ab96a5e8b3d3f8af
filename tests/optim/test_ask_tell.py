"""AskTell follows step's path, Sparse MeZO's mask included."""

import numpy as np
import pytest
from softzo import optim
from softzo.optim._methods import METHODS
from zo_testing import quadratic


@pytest.mark.parametrize("method", ["mezo", "spsa", "spsa_gc", "zo_sgd", "zo_adam"])
def test_ask_tell_follows_the_same_path_as_step(method, rng):
    d = 64
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    x0 = rng.standard_normal(d)
    options = {"seed": 3, "num_queries": 2}
    if method in ("mezo", "zo_sgd", "zo_adam"):
        options.update(lr=1e-2, eps=1e-3)
    at = optim.AskTell(x0, method=method, **options)
    theta = x0.copy()
    opt = METHODS[method]([theta], **options)
    for _ in range(4):
        # SPSA's a="auto" evaluates its calibration probes first, on the first step only.
        rows = 4 + at.opt.calibration_evaluations()
        points = at.ask()
        assert points.shape == (rows, d)
        at.tell([f(p) for p in points])
        opt.step(lambda: f(theta))
    # step() evaluates at points moved in place (roundings of 1e-16 over 2 eps).
    np.testing.assert_allclose(at.x, theta, rtol=1e-8, atol=1e-9)
    with pytest.raises(ValueError, match="values"):
        at.ask()
        at.tell([1.0])


def test_ask_tell_sparse_mezo_follows_step(rng):
    d = 3 * optim.MASK_SAMPLE + 11  # the threshold comes from a sample
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    x0 = rng.standard_normal(d)
    options = {"lr": 1e-3, "eps": 1e-3, "weight_decay": 0.01, "sparsity": 0.7, "seed": 5}
    at = optim.AskTell(x0, method="mezo", **options)
    theta = x0.copy()
    opt = optim.MeZO([theta], **options)
    for _ in range(3):
        before = at.x.copy()
        points = at.ask()
        opt.step(lambda: f(theta))
        keep = opt.mask(0)
        assert 0.25 < keep.mean() < 0.35
        # Candidates differ from x on the mask only; the step's mask is the same.
        for row in points:
            np.testing.assert_array_equal(row[~keep], before[~keep])
            assert np.all(row[keep] != before[keep])
        at.tell([f(p) for p in points])
        np.testing.assert_array_equal(at.x[~keep], before[~keep])
        np.testing.assert_allclose(at.x, theta, rtol=1e-9, atol=1e-10)
