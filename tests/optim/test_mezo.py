"""MeZO and Sparse MeZO against float64 NumPy: one step, the 1-bit mask kernels, the restore
bound, and logistic regression on digits."""

import functools

import numpy as np
import pytest
from softzo import _core, optim
from zo_testing import DISTS, fill, quadratic


@pytest.mark.parametrize("dist", ["gaussian", "rademacher"])
def test_mezo_step_equals_numpy_reference(dist, rng):
    d = 1000
    w, c = rng.uniform(0.5, 2, d), rng.standard_normal(d)
    f = quadratic(w, c)
    theta = rng.standard_normal(d)
    x0 = theta.copy()
    lr, eps, wd = 1e-3, 1e-3, 0.01
    opt = optim.MeZO([theta], lr=lr, eps=eps, weight_decay=wd, distribution=dist, seed=5)
    loss = opt.step(lambda theta=theta: f(theta))
    z = fill(dist, d, np.float64, seed=5, step=0, direction=0)
    fp, fm = f(x0 + eps * z), f(x0 - eps * z)
    expected = x0 * (1 - lr * wd) - lr * (fp - fm) / (2 * eps) * z
    # The optimiser evaluates f at theta moved in place (+eps z, then -2 eps z), which differs
    # from x0 - eps z by roundings of ~1e-16; the difference quotient divides that by 2 eps.
    np.testing.assert_allclose(theta, expected, rtol=1e-12, atol=1e-11)
    assert loss == pytest.approx((fp + fm) / 2, rel=1e-12)


def test_mezo_trains_logistic_regression_on_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    from softzo import losses

    X, y = datasets.load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    Xtr, ytr = X[train], y[train]
    W = np.zeros((64, 10))
    b = np.zeros(10)

    def loss():  # no gradient is ever computed
        return losses.cross_entropy(Xtr @ W + b, ytr)

    opt = optim.MeZO([W, b], lr=2e-3, eps=1e-3, seed=0)
    for _ in range(4000):
        opt.step(loss)
    accuracy = np.mean(np.argmax(X[test] @ W + b, 1) == y[test])
    assert accuracy >= 0.90


def packed_mask(keep):
    """NumPy's own packing of a boolean mask into little-endian uint32 words."""
    words = (keep.size + 31) // 32
    padded = np.zeros(32 * words, dtype=bool)
    padded[: keep.size] = keep
    return np.packbits(padded, bitorder="little").view(np.uint32)


@pytest.mark.parametrize("dist", ["gaussian", "rademacher"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_kernels_touch_exactly_the_masked_entries(isa, dist, dtype, rng):
    n = 2 * 65536 + 8192 + 45  # chunks, mask blocks and a ragged last word
    theta = rng.standard_normal(n).astype(dtype)
    theta[::1001] = np.nan  # NaN never takes part
    orig = theta.copy()
    thr = 0.7
    keep = np.abs(orig) <= thr  # False for NaN
    bits = np.full((n + 31) // 32, 0xFFFFFFFF, dtype=np.uint32)  # stale bits are overwritten
    call = functools.partial(_core._zo_restore_update, 5, 2, 1, DISTS[dist], 77)
    call(theta, 1e-2, 0.0, 0.0, 0.0, bits, thr, 2)  # build the mask, then +eps z
    np.testing.assert_array_equal(bits, packed_mask(keep))
    dense = orig.copy()
    call(dense, 1e-2, 0.0, 0.0, 0.0, None, -1.0, 1)  # the unmasked kernel on every entry
    np.testing.assert_array_equal(theta[keep], dense[keep])
    np.testing.assert_array_equal(theta[~keep].view(np.uint8), orig[~keep].view(np.uint8))
    # The fused restore and update, with the stored bits (no rebuild).
    call(theta, -1e-2, 1e-3, 2.0, 0.1, bits, -1.0, 2)
    call(dense, -1e-2, 1e-3, 2.0, 0.1, None, -1.0, 1)
    np.testing.assert_array_equal(theta[keep], dense[keep])
    np.testing.assert_array_equal(theta[~keep].view(np.uint8), orig[~keep].view(np.uint8))
    with pytest.raises(ValueError, match="mask"):
        call(theta, -1e-2, 0.0, 0.0, 0.0, bits[:-1], -1.0, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_mezo_step_equals_numpy_reference(isa, dtype, rng):
    d = 3 * optim.MASK_SAMPLE + 7  # the threshold comes from a sample
    w, c = rng.uniform(0.5, 2, d), rng.standard_normal(d)
    f = quadratic(w, c)
    theta = rng.standard_normal(d).astype(dtype)
    x0 = theta.copy()
    lr, eps, wd, s = 1e-3, 1e-3, 0.01, 0.75
    opt = optim.MeZO([theta], lr=lr, eps=eps, weight_decay=wd, sparsity=s, seed=5)
    opt.step(lambda: f(theta.astype(np.float64)))
    keep = opt.mask(0)
    # The mask is |theta| <= the sampled quantile, and holds about 1 - s of the entries
    # (the estimator's standard deviation is 0.0034 here).
    np.testing.assert_array_equal(keep, np.abs(x0) <= opt._thresholds[0])
    assert abs(keep.mean() - (1 - s)) < 0.02
    # Entries outside the mask are bitwise unchanged by the whole step.
    np.testing.assert_array_equal(theta[~keep].view(np.uint8), x0[~keep].view(np.uint8))
    # The others took the MeZO step with z restricted to the mask, in float64.
    z = fill("gaussian", d, dtype, seed=5, step=0, direction=0).astype(np.float64) * keep
    x = x0.astype(np.float64)
    # The closure saw the points in theta's dtype.
    points = [(x + sgn * np.float64(dtype(eps)) * z).astype(dtype) for sgn in (1, -1)]
    pg = (f(points[0].astype(np.float64)) - f(points[1].astype(np.float64))) / (2 * eps)
    expected = x * (1 - lr * wd) - lr * pg * z
    tol = 1e-11 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(theta[keep], expected[keep], rtol=tol, atol=tol)


def test_sparse_mezo_restores_within_the_rounding_bound(rng):
    theta = rng.standard_normal(50_000).astype(np.float32)
    orig = theta.copy()
    opt = optim.MeZO([theta], lr=0.0, eps=1e-3, sparsity=0.5, seed=2)
    opt.step(lambda: 0.0)
    keep = opt.mask(0)
    z = fill("gaussian", theta.size, np.float32, seed=2, step=0, direction=0)
    ulp = np.spacing((np.abs(orig) + 2e-3 * np.abs(z)).astype(np.float32))
    assert np.all(np.abs(theta - orig)[keep] <= 1.5 * ulp[keep])
    np.testing.assert_array_equal(theta[~keep], orig[~keep])
