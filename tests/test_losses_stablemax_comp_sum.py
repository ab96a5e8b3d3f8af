"""softzo.losses: StableMax cross-entropy and the comp-sum losses against the long-double
references of reference_losses.py (every ISA, float32 and float64), and comp-sum's special
taus."""

import numpy as np
import pytest
from losses_testing import (
    DTYPES,
    REDUCTIONS,
    TAUS,
    assert_grad,
    assert_loss,
    logits_like,
    reduction_factor,
)
from reference_losses import ref_comp_sum_loss, ref_stablemax_cross_entropy
from softzo import losses


def p_t(x, t):
    """Softmax probability of the target class, float64."""
    x = x.astype(np.float64)
    m = x.max(-1)
    return np.exp(x[np.arange(len(t)), t] - m) / np.exp(x - m[:, None]).sum(-1)


# ================================================================ against the references


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_stablemax_cross_entropy_matches_reference(isa, dtype, reduction, rng):
    for n, v in [(3, 1), (4, 7), (5, 123), (3, 1000), (2, 4099)]:
        x = logits_like(rng, (n, v), dtype)
        x[0, : v // 2] = 0  # the seam of s(x) at 0
        if v > 3:
            x[1, 1:3] = [-1e6, 1e6]
        t = rng.integers(0, v, n)
        loss, grad = losses.stablemax_cross_entropy(x, t, reduction=reduction, return_grad=True)
        rloss, rgrad = ref_stablemax_cross_entropy(x, t, reduction)
        assert_loss(loss, rloss, dtype, f"shape={(n, v)}")
        # Terms ds_k/S and ds_t/s_t are at most 1 (and cancel exactly for V = 1).
        assert_grad(grad, rgrad, dtype, f"shape={(n, v)}", reduction_factor(reduction, n))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tau", TAUS)
def test_comp_sum_loss_matches_reference(isa, tau, dtype, reduction, rng):
    for n, v in [(3, 1), (4, 7), (5, 123), (3, 1000), (2, 4099)]:
        x = logits_like(rng, (n, v), dtype, scale=2.0)
        t = rng.integers(0, v, n)
        loss, grad = losses.comp_sum_loss(x, t, tau, reduction=reduction, return_grad=True)
        rloss, rgrad = ref_comp_sum_loss(x, t, tau, reduction)
        assert_loss(loss, rloss, dtype, f"shape={(n, v)}")
        # p_t^(tau-1) (p - onehot): terms of size p_t^(tau-1) (1 for V = 1, where they cancel).
        scale = reduction_factor(reduction, n) * np.exp((tau - 1) * np.log(p_t(x, t))).max()
        assert_grad(grad, rgrad, dtype, f"shape={(n, v)}", scale)


def test_comp_sum_special_taus(rng):
    # tau = 0: 1/p_t - 1; tau = 1: cross-entropy; tau = 2: 1 - p_t (the contract's table).
    x = logits_like(rng, (6, 50), np.float64, scale=1.0)
    t = rng.integers(0, 50, 6)
    pt = p_t(x, t)
    kw = {"reduction": "none"}
    np.testing.assert_allclose(losses.comp_sum_loss(x, t, 0.0, **kw), 1 / pt - 1, rtol=1e-12)
    np.testing.assert_allclose(losses.comp_sum_loss(x, t, 2.0, **kw), 1 - pt, rtol=1e-12)
    np.testing.assert_allclose(
        losses.comp_sum_loss(x, t, 1.0, **kw), losses.cross_entropy(x, t, **kw), rtol=1e-12
    )
