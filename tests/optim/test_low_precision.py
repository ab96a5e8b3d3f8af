"""float16 / bfloat16 parameters: the float32 master, exact restore, and one step."""

import numpy as np
import pytest
from softzo import optim
from zo_testing import fill, quadratic


def test_float16_parameters_restore_exactly_with_lr_zero(rng):
    torch = pytest.importorskip("torch")
    params = [
        torch.randn(300, dtype=torch.float16),
        torch.randn(7, 11, dtype=torch.bfloat16),
        rng.standard_normal(501).astype(np.float16),
    ]
    before = [p.clone() if hasattr(p, "clone") else p.copy() for p in params]

    def loss():
        return sum(
            float(np.asarray(p.float() if hasattr(p, "float") else p, np.float64).sum())
            for p in params
        )

    for cls, kw in [(optim.MeZO, {"sparsity": 0.5}), (optim.HiZOO, {}), (optim.RGE, {})]:
        opt = cls(params, lr=0.0, seed=1, **kw)
        for _ in range(100):
            opt.step(loss)
        for p, b in zip(params, before):
            if hasattr(p, "clone"):
                assert torch.equal(p.view(torch.int16), b.view(torch.int16)), cls.__name__
            else:
                np.testing.assert_array_equal(p.view(np.uint16), b.view(np.uint16))


def test_float16_step_equals_reference(rng):
    d = 2000
    w, c = rng.uniform(0.5, 2, d), rng.standard_normal(d)
    f = quadratic(w, c)
    theta = rng.standard_normal(d).astype(np.float16)
    master = theta.astype(np.float32)
    lr, eps = 1e-2, 1e-2
    opt = optim.MeZO([theta], lr=lr, eps=eps, seed=6)
    opt.step(lambda: f(theta.astype(np.float64)))
    # The closure saw round16(master ± eps z); the master takes the step in float32 and the
    # parameter is the master rounded.
    z = fill("gaussian", d, np.float32, seed=6, step=0, direction=0)
    m64, z64 = master.astype(np.float64), z.astype(np.float64)
    points = [
        (m64 + s * np.float64(np.float32(eps)) * z64).astype(np.float32).astype(np.float16)
        for s in (1, -1)
    ]
    pg = (f(points[0].astype(np.float64)) - f(points[1].astype(np.float64))) / (2 * eps)
    expected = m64 - lr * pg * z64
    np.testing.assert_allclose(opt._views[0][0], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(theta, opt._views[0][0].astype(np.float16))
    assert np.mean(theta != master.astype(np.float16)) > 0.5  # the step did move it
    with pytest.raises(TypeError, match="CGE"):
        optim.CGE([theta])
