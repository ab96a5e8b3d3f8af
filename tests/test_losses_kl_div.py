"""softzo.losses.kl_div: against the long-double reference of reference_losses.py (every
ISA, float32 and float64) and against PyTorch (forward and autograd), and teacher
probabilities of 0."""

import itertools
import warnings

import numpy as np
import pytest
import softzo
from hypothesis import given, settings
from hypothesis import strategies as st
from losses_testing import (
    BIG_SHAPES,
    DTYPES,
    ISAS,
    SMALL_SHAPES,
    _wide_torch,
    assert_grad,
    assert_loss,
    logits_like,
    reduction_factor,
)
from reference_losses import ref_kl_div
from softzo import losses

KL_REDUCTIONS = ["batchmean", "sum", "mean", "none"]


# ================================================================ against the references


def kl_scales(s, t, temp, reduction):
    """Sizes of the terms of the KL loss (log-probabilities, up to max|logit|/T + log V) and of
    its gradient (probabilities / T), times the reduction: they cancel when p_s ~ p_t."""
    n, v = s.shape
    logp = (max(np.abs(s).max(), np.abs(t).max()) / temp + np.log(v) + 1) * n
    factor = reduction_factor(reduction, n, v if reduction == "mean" else 1)
    if reduction == "none":
        logp /= n
    return logp * factor, factor / temp


@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_kl_div_matches_reference(isa, dtype, reduction, rng):
    for (n, v), temp in itertools.product(
        [(3, 1), (4, 7), (5, 123), (3, 1000), (2, 4099)], [1.0, 0.5, 4.0]
    ):
        s = logits_like(rng, (n, v), dtype)
        t = logits_like(rng, (n, v), dtype)
        kw = {"temperature": temp, "reduction": reduction}
        loss, grad = losses.kl_div(s, t, return_grad=True, **kw)
        rloss, rgrad = ref_kl_div(s, t, **kw)
        lscale, gscale = kl_scales(s, t, temp, reduction)
        msg = f"shape={(n, v)} T={temp}"
        assert_loss(loss, rloss, dtype, msg, lscale)
        assert_grad(grad, rgrad, dtype, msg, gscale)
        assert_loss(losses.kl_div(s, t, **kw), rloss, dtype, msg, lscale)
    # KL(p || p) = 0 with a zero gradient.
    s = logits_like(rng, (4, 100), dtype)
    loss, grad = losses.kl_div(s, s.copy(), reduction="none", return_grad=True)
    assert np.abs(loss).max() <= 10 * np.finfo(dtype).eps
    assert np.abs(grad).max() <= 10 * np.finfo(dtype).eps


# ================================================================ against PyTorch


def torch_kl_div(torch, s, t, temp, reduction):
    """PyTorch's KL divergence (float64, as for cross-entropy) and its autograd gradient."""
    F = torch.nn.functional
    st_ = _wide_torch(torch, s).requires_grad_()
    with warnings.catch_warnings():  # torch warns that "mean" is not "batchmean"
        warnings.simplefilter("ignore")
        loss = F.kl_div(
            F.log_softmax(st_ / temp, -1),
            F.log_softmax(_wide_torch(torch, t) / temp, -1),
            log_target=True,
            reduction=reduction,
        )
    if reduction == "none":
        loss = loss.sum(-1)  # softzo returns the per-row KL
    loss.sum().backward()
    return loss.detach().numpy(), st_.grad.numpy()


def check_kl_div_vs_torch(torch, rng, shape, dtype, temp, reduction):
    s = logits_like(rng, shape, dtype)
    t = logits_like(rng, shape, dtype)
    tl, tg = torch_kl_div(torch, s, t, temp, reduction)
    loss, grad = losses.kl_div(s, t, temperature=temp, reduction=reduction, return_grad=True)
    lscale, gscale = kl_scales(s, t, temp, reduction)
    msg = f"shape={shape} T={temp} {reduction}"
    assert_loss(loss, tl, dtype, msg, lscale)
    assert_grad(grad, tg, dtype, msg, gscale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", KL_REDUCTIONS)
@pytest.mark.parametrize("temp", [1.0, 0.5, 4.0])
def test_kl_div_matches_torch(temp, reduction, dtype, rng):
    torch = pytest.importorskip("torch")
    for shape in [(5, 123), (3, 7), (16, 1000)]:
        check_kl_div_vs_torch(torch, rng, shape, dtype, temp, reduction)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.one_of(BIG_SHAPES, SMALL_SHAPES),
    dtype=st.sampled_from(DTYPES),
    temp=st.sampled_from([1.0, 0.5, 2.0, 10.0]),
    reduction=st.sampled_from(KL_REDUCTIONS),
    isa_name=st.sampled_from(ISAS),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_kl_div_matches_torch(shape, dtype, temp, reduction, isa_name, seed):
    torch = pytest.importorskip("torch")
    with softzo.using_isa(isa_name):
        check_kl_div_vs_torch(torch, np.random.default_rng(seed), shape, dtype, temp, reduction)


# ================================================================ special values


def test_kl_div_zero_teacher_probabilities_count_zero(rng):
    # -inf where both are masked: PyTorch gives NaN for -inf - -inf; the contract counts 0.
    s = logits_like(rng, (3, 20), np.float64)
    t = logits_like(rng, (3, 20), np.float64)
    s[0, :5] = t[0, :5] = -np.inf
    t[1, 3] = -np.inf  # teacher mass 0, student mass > 0: term 0, gradient p_s
    for reduction in KL_REDUCTIONS:
        loss, grad = losses.kl_div(s, t, reduction=reduction, return_grad=True)
        rloss, rgrad = ref_kl_div(s, t, reduction=reduction)
        assert np.isfinite(loss).all()
        assert_loss(loss, rloss, np.float64)
        assert_grad(grad, rgrad, np.float64)
