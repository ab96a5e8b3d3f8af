"""softzo.losses, the spherical family: the Z-loss and the spherical losses against the
long-double references of reference_losses.py (every ISA, float32 and float64), the
normalizers (spherical, Taylor and StableMax softmax) on any shape and axis, and the Z-loss's
affine invariance."""

import itertools

import numpy as np
import pytest
from losses_testing import (
    DTYPES,
    REDUCTIONS,
    RTOL,
    SPHERICAL_KINDS,
    _f64,
    assert_grad,
    assert_loss,
    reduction_factor,
)
from reference_losses import (
    ref_spherical_loss,
    ref_spherical_softmax,
    ref_stablemax,
    ref_taylor_softmax,
    ref_z_loss,
)
from softzo import losses

# ================================================================ against the references


Z_SHAPES = [(1, 1), (3, 2), (4, 7), (5, 123), (3, 1000), (2, 4099)]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_z_loss_matches_reference(isa, dtype, reduction, rng):
    for (n, d), (a, b) in itertools.product(Z_SHAPES, [(1.0, 0.0), (2.0, 0.5), (0.5, -1.0)]):
        o = (rng.standard_normal((n, d)) * 2 + 1).astype(dtype)
        if n > 2:
            o[1] = 0.25  # sigma == 0: z_c := 0, gradient 0
        t = rng.integers(0, d, n)
        loss, grad = losses.z_loss(o, t, a=a, b=b, reduction=reduction, return_grad=True)
        rloss, rgrad = ref_z_loss(o, t, a, b, reduction)
        msg = f"shape={(n, d)} a={a} b={b}"
        assert_loss(loss, rloss, dtype, msg)
        # Terms of size |g|/sigma <= 1/sigma: with D = 2 they cancel exactly.
        sigma = o.astype(np.float64).std(-1)
        scale = reduction_factor(reduction, n) / sigma[sigma > 0].min(initial=np.inf)
        assert_grad(grad, rgrad, dtype, msg, scale)
        if n > 2:
            assert not grad[1].any(), msg
        assert_loss(losses.z_loss(o, t, a=a, b=b, reduction=reduction), rloss, dtype, msg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", SPHERICAL_KINDS)
def test_spherical_loss_matches_reference(isa, kind, dtype, rng):
    for (n, d), eps, reduction in itertools.product(
        [(3, 1), (4, 7), (5, 123), (3, 1000), (2, 4099)], [1e-6, 1e-2], REDUCTIONS
    ):
        o = rng.standard_normal((n, d)).astype(dtype)
        t = rng.integers(0, d, n)
        kw = {"kind": kind, "eps": eps, "reduction": reduction}
        loss, grad = losses.spherical_loss(o, t, return_grad=True, **kw)
        rloss, rgrad = ref_spherical_loss(o, t, **kw)
        msg = f"shape={(n, d)} eps={eps} reduction={reduction}"
        assert_loss(loss, rloss, dtype, msg)
        # With D = 1 the two terms of the gradient cancel exactly; their size:
        oc = np.abs(o[np.arange(n), t].astype(np.float64))
        term = {"log_spherical": 2 * oc / (oc * oc + eps), "log_taylor": 2.0, "mse": 2.0}[kind]
        assert_grad(grad, rgrad, dtype, msg, reduction_factor(reduction, n) * np.max(term))


SOFTMAX_VARIANTS = [
    ("spherical_softmax", ref_spherical_softmax, {}),
    ("spherical_softmax", ref_spherical_softmax, {"eps": 0.5}),
    ("taylor_softmax", ref_taylor_softmax, {}),
    ("stablemax", ref_stablemax, {}),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name,ref,kw", SOFTMAX_VARIANTS, ids=[f"{v[0]}{v[2]}" for v in SOFTMAX_VARIANTS]
)
def test_softmax_variants_match_reference(isa, name, ref, kw, dtype, rng):
    # Any shape and any axis, like softzo.softmax; every output is a distribution.
    func = getattr(losses, name)
    cases = [(rng.standard_normal((3, 5, 7)) * 2, axis) for axis in range(-3, 3)]
    cases += [(rng.standard_normal(v) * 3, 0) for v in (1, 2, 17, 64, 1001)]
    cases += [(rng.standard_normal((4, 4099)) * 3, -1), (rng.standard_normal((33, 2)), 0)]
    for x, axis in cases:
        x = x.astype(dtype)
        y = func(x, axis, **kw)
        assert y.shape == x.shape and y.dtype == dtype
        expected = ref(x, axis, **kw)
        np.testing.assert_allclose(_f64(y), _f64(expected), rtol=RTOL[dtype] * 2, atol=0)
        np.testing.assert_allclose(_f64(y).sum(axis), 1.0, rtol=RTOL[dtype])
    # The default axis is the last one.
    x = rng.standard_normal((6, 9)).astype(dtype)
    np.testing.assert_array_equal(func(x, **kw), func(x, -1, **kw))


# ================================================================ Z-loss invariance


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_z_loss_affine_invariance(isa, reduction, rng):
    # z-scoring removes alpha*o + beta (alpha > 0); the gradient scales by 1/alpha.
    o = rng.standard_normal((8, 301))
    t = rng.integers(0, 301, 8)
    kw = {"a": 1.5, "b": 0.3, "reduction": reduction, "return_grad": True}
    loss, grad = losses.z_loss(o, t, **kw)
    for alpha, beta in [(1.0, 7.0), (0.25, 0.0), (3.0, -2.0), (1e3, 1e3), (1e-3, 5.0)]:
        loss2, grad2 = losses.z_loss(alpha * o + beta, t, **kw)
        np.testing.assert_allclose(loss2, loss, rtol=1e-9, err_msg=f"{alpha} {beta}")
        np.testing.assert_allclose(
            grad2 * alpha, grad, rtol=1e-8, atol=1e-12 * np.abs(grad).max(), err_msg=f"{alpha}"
        )
    # float32 with an exact transform (power-of-two scale, no shift): tight too.
    o32 = o.astype(np.float32)
    loss, grad = losses.z_loss(o32, t, **kw)
    loss2, grad2 = losses.z_loss(o32 * np.float32(4), t, **kw)
    np.testing.assert_allclose(loss2, loss, rtol=1e-5)
    np.testing.assert_allclose(grad2 * 4, grad, rtol=1e-5, atol=1e-6 * np.abs(grad).max())
