"""softzo.losses.hl_gauss_targets and hl_gauss_values against the long-double references of
reference_losses.py, and cross-entropy with HL-Gauss targets."""

import numpy as np
import pytest
from losses_testing import (
    DTYPES,
    REDUCTIONS,
    RTOL,
    _f64,
    assert_cross_entropy,
    logits_like,
    torch_cross_entropy,
)
from reference_losses import ref_hl_gauss_targets, ref_hl_gauss_values
from softzo import losses

# ================================================================ HL-Gauss


@pytest.mark.parametrize("vdtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize(
    "num_bins,sigma", [(1, None), (2, None), (51, None), (101, None), (51, 0.02), (51, 3.0)]
)
def test_hl_gauss_targets_match_reference(vdtype, num_bins, sigma, rng):
    vmin, vmax = -10.0, 10.0
    values = np.concatenate([rng.uniform(-13, 13, 200), [vmin, vmax, 0.0, -12.0, 15.0]])
    if vdtype == np.int64:
        values = np.round(values)
    values = values.astype(vdtype)
    out = losses.hl_gauss_targets(values, vmin, vmax, num_bins, sigma=sigma)
    out_dtype = np.float32 if vdtype == np.float32 else np.float64
    assert out.shape == (len(values), num_bins) and out.dtype == out_dtype
    ref = ref_hl_gauss_targets(values, vmin, vmax, num_bins, sigma)
    atol, rtol = (1e-6, 1e-5) if out_dtype == np.float32 else (1e-13, 1e-9)
    np.testing.assert_allclose(out, ref, rtol=rtol, atol=atol)
    assert (out >= 0).all()
    np.testing.assert_allclose(_f64(out).sum(-1), 1.0, rtol=0, atol=20 * np.finfo(out_dtype).eps)
    # Values are clipped to [vmin, vmax] first.
    clipped = losses.hl_gauss_targets(np.clip(values, vmin, vmax), vmin, vmax, num_bins, sigma)
    np.testing.assert_allclose(out, clipped, rtol=1e-12, atol=1e-15)


def test_hl_gauss_default_sigma_is_three_quarters_of_a_bin(rng):
    values = rng.uniform(0, 5, 20)
    np.testing.assert_allclose(
        losses.hl_gauss_targets(values, 0.0, 5.0, 20),
        losses.hl_gauss_targets(values, 0.0, 5.0, 20, sigma=0.75 * 5.0 / 20),
        rtol=1e-13,
        atol=1e-16,
    )


def test_hl_gauss_values(rng):
    probs = rng.dirichlet(np.ones(31), 9)
    got = losses.hl_gauss_values(probs, -2.0, 5.0)
    assert got.shape == (9,)
    np.testing.assert_allclose(got, ref_hl_gauss_values(probs, -2.0, 5.0), rtol=1e-12)
    # A value on a bin centre far from the ends gives a symmetric histogram whose mean is the
    # value itself (the truncation is ~1e-38 away).
    edges = np.linspace(-10, 10, 102)
    centres = ((edges[:-1] + edges[1:]) / 2)[20:-20]
    back = losses.hl_gauss_values(losses.hl_gauss_targets(centres, -10, 10, 101), -10, 10)
    np.testing.assert_allclose(back, centres, rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_with_hl_gauss_targets(isa, dtype, rng):
    values = rng.uniform(-3, 3, 16)
    soft = losses.hl_gauss_targets(values, -2.0, 2.0, 64).astype(dtype)
    x = logits_like(rng, (16, 64), dtype)
    for reduction in REDUCTIONS:
        loss, grad = losses.cross_entropy(x, soft, reduction=reduction, return_grad=True)
        assert_cross_entropy(loss, grad, x, soft, {"reduction": reduction}, dtype)
    torch = pytest.importorskip("torch")
    tl, _ = torch_cross_entropy(torch, x, soft, None, 0.0, "mean")
    np.testing.assert_allclose(losses.cross_entropy(x, soft), tl, rtol=2 * RTOL[dtype])
