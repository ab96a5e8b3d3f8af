"""Helpers shared by the loss tests (tests/test_losses_*.py): the options every family runs
over, tolerances and the assertions made with them, logits/target/weight makers, PyTorch's
cross-entropy, hypothesis shapes and the small arrays of the bad-input tables."""

import numpy as np
import softzo
from hypothesis import strategies as st
from reference_losses import ref_cross_entropy, ref_cross_entropy_scales

DTYPES = [np.float32, np.float64]
ISAS = softzo.info()["isas_available"]
REDUCTIONS = ["mean", "sum", "none"]


SPHERICAL_KINDS = ["log_spherical", "log_taylor", "mse"]
TAUS = [0.0, 0.5, 1.0, 1.7, 2.0, 3.0]

# Relative tolerance, and an absolute one taken relative to the largest compared value (losses:
# at least 1), which covers entries that cancel to nearly 0 (lse - x_t of a dominant target,
# p_t - 1 in a gradient).
RTOL = {np.float32: 1e-5, np.float64: 1e-10}
ATOL = {np.float32: 1e-6, np.float64: 1e-12}


def _f64(x):
    return np.asarray(x, dtype=np.float64)


def assert_loss(ours, ref, dtype, msg="", scale=1.0, k=1):
    """scale: the size of the terms the loss is made of, where it can cancel to far below them
    (a KL divergence of nearly equal distributions); k: a factor on the tolerances."""
    ours, ref = _f64(ours), _f64(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape, msg)
    scale = max(scale, float(np.abs(ref[np.isfinite(ref)]).max(initial=0)))
    np.testing.assert_allclose(
        ours, ref, rtol=k * RTOL[dtype], atol=k * ATOL[dtype] * scale, err_msg=msg
    )


def assert_grad(ours, ref, dtype, msg="", scale=0.0, k=1):
    """scale: the size of the terms the gradient is made of, where it can cancel to far below
    them (cross-entropy with V = 1 is a sum of terms that cancel exactly)."""
    ours, ref = _f64(ours), _f64(ref)
    assert ours.shape == ref.shape, (ours.shape, ref.shape, msg)
    scale = max(scale, float(np.abs(ref[np.isfinite(ref)]).max(initial=0)))
    np.testing.assert_allclose(
        ours, ref, rtol=k * RTOL[dtype], atol=k * ATOL[dtype] * scale, err_msg=msg
    )


def assert_cross_entropy(loss, grad, x, target, kw, dtype, msg="", expected=None):
    """loss and grad of cross_entropy(x, target, **kw) against the reference (or against
    `expected`), to tolerances relative to the size of the terms they are made of."""
    if expected is None:
        expected = ref_cross_entropy(x, target, **kw)[:2]
    loss_scale, grad_scale = ref_cross_entropy_scales(x, target, **kw)
    assert_loss(loss, expected[0], dtype, msg, loss_scale)
    assert_grad(grad, expected[1], dtype, msg, grad_scale)


def reduction_factor(reduction, n, v=1):
    """What the reduction multiplies each row's gradient by."""
    return {"mean": 1 / (n * v), "batchmean": 1 / n}.get(reduction, 1.0)


def logits_like(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def make_target(rng, kind, n, v, dtype, ignore_index=-100):
    """hard: class indices; hard_ignored: some rows (never row 0) = ignore_index;
    soft: rows on the simplex; soft_unnormalized: positive rows that do not sum to 1 (the
    contract's formula does not assume they do, nor does PyTorch)."""
    if kind.startswith("hard"):
        t = rng.integers(0, v, n)
        if kind == "hard_ignored":
            drop = rng.random(n) < 0.35
            drop[0] = False
            t[drop] = ignore_index
        return t
    if kind == "soft":
        return rng.dirichlet(np.ones(v), n).astype(dtype)
    return (rng.random((n, v)) * 2).astype(dtype)


def make_weight(rng, v, dtype, weighted):
    return rng.uniform(0.2, 2.0, v).astype(dtype) if weighted else None


def _wide_torch(torch, a):
    """A float64 tensor of a float array (exact), an int64 one of an int array."""
    a = np.asarray(a)
    return torch.from_numpy(a.astype(np.float64 if a.dtype.kind == "f" else np.int64))


def torch_cross_entropy(torch, x, target, weight, eps, reduction, lam=0.0, ignore_index=-100):
    """PyTorch's loss and autograd gradient (of the sum for "none"), plus the PaLM lse^2 term
    written out from the contract (not weighted; mean over non-ignored rows). PyTorch runs in
    float64 on the (exactly widened) inputs: its float32 error grows with V (4e-5 relative in
    the gradient at V = 262144), and what is compared here is the semantics."""
    F = torch.nn.functional
    xt = _wide_torch(torch, x).requires_grad_()
    tt = _wide_torch(torch, target)
    wt = None if weight is None else _wide_torch(torch, weight)
    loss = F.cross_entropy(
        xt, tt, weight=wt, ignore_index=ignore_index, label_smoothing=eps, reduction=reduction
    )
    if lam:
        keep = (tt != ignore_index) if tt.dim() == 1 else torch.ones(len(x), dtype=torch.bool)
        rows = lam * torch.logsumexp(xt, -1) ** 2 * keep
        loss = loss + {"none": rows, "sum": rows.sum(), "mean": rows.sum() / keep.sum()}[reduction]
    loss.sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


BIG_SHAPES = st.sampled_from([(5, 123), (255, 507), (1, 262144), (2, 262144), (3, 100003)])
SMALL_SHAPES = st.tuples(st.integers(1, 33), st.integers(1, 700))


X = np.random.default_rng(1).standard_normal((4, 6))
T = np.array([0, 5, 2, 3])
