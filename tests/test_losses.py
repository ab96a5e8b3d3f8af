"""softzo.losses: every loss and gradient against the long-double references of
reference_losses.py (every ISA, float32 and float64), against central finite differences and
against PyTorch (forward and autograd); then the Python contract: grad_out, lse, thread-count
determinism, special values, bad input, integer target dtypes, strides and frameworks."""

import itertools
import warnings

import numpy as np
import pytest
import softzo
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import check_logsumexp
from reference_losses import (
    ref_comp_sum_loss,
    ref_cross_entropy,
    ref_cross_entropy_scales,
    ref_hl_gauss_targets,
    ref_hl_gauss_values,
    ref_kl_div,
    ref_spherical_loss,
    ref_spherical_softmax,
    ref_stablemax,
    ref_stablemax_cross_entropy,
    ref_taylor_softmax,
    ref_z_loss,
)
from softzo import losses

DTYPES = [np.float32, np.float64]
ISAS = softzo.info()["isas_available"]
REDUCTIONS = ["mean", "sum", "none"]
KL_REDUCTIONS = ["batchmean", "sum", "mean", "none"]
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


def _as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


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


def p_t(x, t):
    """Softmax probability of the target class, float64."""
    x = x.astype(np.float64)
    m = x.max(-1)
    return np.exp(x[np.arange(len(t)), t] - m) / np.exp(x - m[:, None]).sum(-1)


# ================================================================ against the references

CE_SHAPES = [(3, 7), (5, 123), (4, 1000), (2, 4099)]
TARGET_KINDS = ["hard", "hard_ignored", "soft", "soft_unnormalized"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", TARGET_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_matches_reference(isa, dtype, kind, reduction, rng):
    # Every option combination on shapes that exercise short rows and vector-loop tails.
    for (n, v), weighted, eps, lam in itertools.product(
        CE_SHAPES, [False, True], [0.0, 0.1], [0.0, 1e-2]
    ):
        x = logits_like(rng, (n, v), dtype)
        target = make_target(rng, kind, n, v, dtype)
        kw = {
            "weight": make_weight(rng, v, dtype, weighted),
            "label_smoothing": eps,
            "lse_square_scale": lam,
            "reduction": reduction,
        }
        loss, grad, lse = losses.cross_entropy(x, target, return_grad=True, return_lse=True, **kw)
        msg = f"shape={(n, v)} weighted={weighted} eps={eps} lam={lam}"
        assert grad.dtype == dtype and lse.dtype == dtype
        assert_cross_entropy(loss, grad, x, target, kw, dtype, msg)
        check_logsumexp(lse, x)  # lse of every row, ignored rows included
        # The loss alone (no gradient asked for) is the same loss.
        alone = losses.cross_entropy(x, target, **kw)
        assert_cross_entropy(alone, grad, x, target, kw, dtype, msg)


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_awkward_lengths(isa, dtype, rng):
    # V = 1..70 covers every tail of 8/16-wide loops; the rest straddle larger multiples.
    for v in list(range(1, 71)) + [127, 128, 129, 255, 256, 257, 1023, 1025]:
        x = logits_like(rng, (3, v), dtype)
        w = make_weight(rng, v, dtype, True)
        for kind, reduction in [("hard_ignored", "none"), ("soft", "mean")]:
            target = make_target(rng, kind, 3, v, dtype)
            kw = {
                "weight": w,
                "label_smoothing": 0.1,
                "lse_square_scale": 1e-3,
                "reduction": reduction,
            }
            loss, grad = losses.cross_entropy(x, target, return_grad=True, **kw)
            assert_cross_entropy(loss, grad, x, target, kw, dtype, f"V={v} {kind}")


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_wide_ranges(isa, dtype, rng):
    # Large spreads (probabilities far below 1e-30) and large common offsets.
    for scale, offset in [(20, 0), (30, -1e4), (3, 5e4), (0.01, 80)]:
        x = (rng.standard_normal((6, 777)) * scale + offset).astype(dtype)
        t = rng.integers(0, 777, 6)
        for reduction in REDUCTIONS:
            loss, grad = losses.cross_entropy(x, t, reduction=reduction, return_grad=True)
            kw = {"reduction": reduction}
            assert_cross_entropy(loss, grad, x, t, kw, dtype, f"scale={scale} offset={offset}")


def test_cross_entropy_custom_ignore_index(isa, rng):
    # ignore_index may be a valid class index (PyTorch allows it): those rows are skipped.
    x = logits_like(rng, (9, 40), np.float64)
    t = rng.integers(0, 40, 9)
    t[[2, 5]] = 3
    t[0] = 7
    for reduction in REDUCTIONS:
        kw = {"ignore_index": 3, "label_smoothing": 0.1, "reduction": reduction}
        loss, grad = losses.cross_entropy(x, t, return_grad=True, **kw)
        assert_cross_entropy(loss, grad, x, t, kw, np.float64)
        assert not grad[[2, 5]].any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_one_hot_soft_targets_equal_hard_targets(isa, dtype, rng):
    # The two target forms are one formula: one-hot rows give the class-index result.
    x = logits_like(rng, (6, 300), dtype)
    t = rng.integers(0, 300, 6)
    onehot = np.eye(300, dtype=dtype)[t]
    w = make_weight(rng, 300, dtype, True)
    for kw in [{}, {"label_smoothing": 0.1, "lse_square_scale": 1e-2}, {"reduction": "none"}]:
        # Soft targets take a plain mean over rows, hard ones torch's weighted mean.
        if kw.get("reduction") != "none":
            kw = dict(kw, reduction="sum")
        hard, hard_grad = losses.cross_entropy(x, t, weight=w, return_grad=True, **kw)
        soft, soft_grad = losses.cross_entropy(x, onehot, weight=w, return_grad=True, **kw)
        assert_loss(soft, hard, dtype, str(kw))
        assert_grad(soft_grad, hard_grad, dtype, str(kw), 1.0)


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


# ================================================================ finite differences


def _fd_cases(rng, n=3, v=7):
    """name -> loss function of float64 logits (n, v): (impl(x, return_grad), ref(x))."""
    t = rng.integers(0, v, n)
    t_ign = t.copy()
    t_ign[1] = -100
    soft = rng.dirichlet(np.ones(v), n)
    w = rng.uniform(0.3, 2.0, v)
    teacher = rng.standard_normal((n, v)) * 2
    ce_all = {"weight": w, "label_smoothing": 0.1, "lse_square_scale": 0.05}
    cases = {
        "ce_mean": (losses.cross_entropy, (t,), {}, ref_cross_entropy),
        "ce_all_options_mean": (
            losses.cross_entropy,
            (t_ign,),
            dict(ce_all, reduction="mean"),
            ref_cross_entropy,
        ),
        "ce_all_options_none": (
            losses.cross_entropy,
            (t_ign,),
            dict(ce_all, reduction="none"),
            ref_cross_entropy,
        ),
        "ce_soft_mean": (losses.cross_entropy, (soft,), dict(ce_all), ref_cross_entropy),
        "ce_soft_sum": (
            losses.cross_entropy,
            (soft,),
            dict(ce_all, reduction="sum"),
            ref_cross_entropy,
        ),
        "z_loss": (losses.z_loss, (t,), {}, ref_z_loss),
        "z_loss_ab_none": (
            losses.z_loss,
            (t,),
            {"a": 2.5, "b": 0.5, "reduction": "none"},
            ref_z_loss,
        ),
        "stablemax_ce": (losses.stablemax_cross_entropy, (t,), {}, ref_stablemax_cross_entropy),
        "kl_div": (losses.kl_div, (teacher,), {"temperature": 2.0}, ref_kl_div),
        "kl_div_mean_T05": (
            losses.kl_div,
            (teacher,),
            {"temperature": 0.5, "reduction": "mean"},
            ref_kl_div,
        ),
    }
    for kind in SPHERICAL_KINDS:
        cases[f"spherical_{kind}"] = (
            losses.spherical_loss,
            (t,),
            {"kind": kind, "reduction": "sum"},
            ref_spherical_loss,
        )
    for tau in TAUS:
        cases[f"comp_sum_tau{tau}"] = (
            losses.comp_sum_loss,
            (t, tau),
            {},
            ref_comp_sum_loss,
        )
    return cases


FD_NAMES = sorted(_fd_cases(np.random.default_rng(0)))


def central_differences(f, x, h=1e-6):
    g = np.empty_like(x)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (_f64(f(xp)).sum() - _f64(f(xm)).sum()) / (2 * h)
    return g


@pytest.mark.parametrize("name", FD_NAMES)
def test_gradient_matches_finite_differences(isa, name, rng):
    # Checks the analytic gradients of the implementation and of the reference independently,
    # on a small float64 problem (the gradient of reduction="none" is that of the sum).
    func, args, kw, ref = _fd_cases(rng)[name]
    x = rng.standard_normal((3, 7))

    def ours(z):
        return func(z, *args, **kw)

    def theirs(z):
        return ref(z, *args, **kw)[0]

    _, grad = func(x, *args, return_grad=True, **kw)
    rgrad = ref(x, *args, **kw)[1]
    for analytic, f in [(grad, ours), (rgrad, theirs)]:
        numeric = central_differences(f, x)
        scale = max(1.0, float(np.abs(numeric).max()))
        np.testing.assert_allclose(_f64(analytic), numeric, rtol=1e-6, atol=1e-7 * scale)


# ================================================================ against PyTorch


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


def check_cross_entropy_vs_torch(torch, rng, shape, dtype, kind, weighted, eps, reduction, lam):
    n, v = shape
    x = logits_like(rng, shape, dtype)
    target = make_target(rng, kind, n, v, dtype)
    w = make_weight(rng, v, dtype, weighted)
    tl, tg = torch_cross_entropy(torch, x, target, w, eps, reduction, lam)
    loss, grad = losses.cross_entropy(
        x,
        target,
        weight=w,
        label_smoothing=eps,
        lse_square_scale=lam,
        reduction=reduction,
        return_grad=True,
    )
    msg = f"shape={shape} {kind} weighted={weighted} eps={eps} {reduction} lam={lam}"
    kw = {"weight": w, "label_smoothing": eps, "lse_square_scale": lam, "reduction": reduction}
    assert_cross_entropy(loss, grad, x, target, kw, dtype, msg, expected=(tl, tg))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("kind", ["hard", "hard_ignored", "soft"])
def test_cross_entropy_matches_torch(kind, weighted, eps, reduction, dtype, rng):
    torch = pytest.importorskip("torch")
    for shape in [(5, 123), (3, 7), (16, 1000)]:
        check_cross_entropy_vs_torch(torch, rng, shape, dtype, kind, weighted, eps, reduction, 0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["hard_ignored", "soft"])
def test_lse_square_scale_matches_torch_plus_palm_term(kind, reduction, rng):
    torch = pytest.importorskip("torch")
    for dtype in DTYPES:
        check_cross_entropy_vs_torch(torch, rng, (7, 300), dtype, kind, True, 0.1, reduction, 1e-2)


BIG_SHAPES = st.sampled_from([(5, 123), (255, 507), (1, 262144), (2, 262144), (3, 100003)])
SMALL_SHAPES = st.tuples(st.integers(1, 33), st.integers(1, 700))


@settings(max_examples=60, deadline=None)
@given(
    shape=st.one_of(BIG_SHAPES, SMALL_SHAPES),
    dtype=st.sampled_from(DTYPES),
    kind=st.sampled_from(["hard", "hard_ignored", "soft"]),
    weighted=st.booleans(),
    eps=st.sampled_from([0.0, 0.1, 1.0]),
    reduction=st.sampled_from(REDUCTIONS),
    lam=st.sampled_from([0.0, 1e-4]),
    isa_name=st.sampled_from(ISAS),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_cross_entropy_matches_torch(
    shape, dtype, kind, weighted, eps, reduction, lam, isa_name, seed
):
    torch = pytest.importorskip("torch")
    with softzo.using_isa(isa_name):
        check_cross_entropy_vs_torch(
            torch, np.random.default_rng(seed), shape, dtype, kind, weighted, eps, reduction, lam
        )


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


# ================================================================ unbatched (1-D) logits

UNBATCHED_CASES = {  # id: (target kind, weighted, label smoothing)
    "index": ("index", False, 0.0),
    "ignored": ("ignored", False, 0.0),
    "weighted": ("index", True, 0.0),
    "weighted_ignored": ("ignored", True, 0.1),
    "smoothed": ("index", False, 0.2),
    "soft": ("soft", False, 0.0),
    "soft_weighted_smoothed": ("soft", True, 0.3),
}


def _unbatched_args(rng, case, dtype, v=37):
    kind, weighted, eps = UNBATCHED_CASES[case]
    x = logits_like(rng, (v,), dtype)
    target = {
        "index": np.array(5),
        "ignored": np.array(-100),
        "soft": rng.dirichlet(np.ones(v)).astype(dtype),
    }[kind]
    return x, target, make_weight(rng, v, dtype, weighted), eps


@pytest.mark.parametrize("case", UNBATCHED_CASES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_unbatched_matches_torch(case, reduction, dtype, rng):
    # PyTorch's unbatched form: (V,) logits and a 0-d target give a 0-d loss (for "none" too)
    # and a (V,) gradient; an ignored target gives NaN for "mean" (0 / 0), as in PyTorch.
    torch = pytest.importorskip("torch")
    x, target, w, eps = _unbatched_args(rng, case, dtype)
    tl, tg = torch_cross_entropy(torch, x, target, w, eps, reduction)
    assert tl.shape == () and tg.shape == x.shape
    kw = {"weight": w, "label_smoothing": eps, "reduction": reduction}
    loss, grad, lse = losses.cross_entropy(x, target, return_grad=True, return_lse=True, **kw)
    assert np.shape(loss) == () and grad.shape == x.shape and np.shape(lse) == ()
    assert grad.dtype == dtype and np.asarray(loss).dtype == dtype
    if np.isnan(tl):
        assert np.isnan(loss) and np.isnan(grad).all() == np.isnan(tg).all()
    else:
        assert_loss(loss, tl, dtype)
    assert_grad(grad[np.isfinite(tg)], tg[np.isfinite(tg)], dtype)
    np.testing.assert_allclose(lse, _f64(softzo.logsumexp(x)), rtol=2 * RTOL[dtype])
    # The same row as a batch of one gives the same numbers.
    batched = losses.cross_entropy(x[None], target[None], return_grad=True, **kw)
    np.testing.assert_array_equal(np.asarray(loss).reshape(-1), np.reshape(batched[0], -1))
    np.testing.assert_array_equal(grad, batched[1][0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_unbatched_grad_out_and_frameworks(dtype, rng):
    x, target, w, _ = _unbatched_args(rng, "weighted", dtype)
    loss, grad = losses.cross_entropy(x, target, weight=w, return_grad=True)
    g = np.full_like(x, 9.0)
    assert losses.cross_entropy(x, target, weight=w, grad_out=g)[1] is g
    np.testing.assert_array_equal(g, grad)
    y = x.copy()
    loss2, grad2 = losses.cross_entropy(y, target, weight=w, grad_out=y)  # in place
    assert grad2 is y and loss2 == loss
    np.testing.assert_array_equal(y, grad)
    strided = np.repeat(x, 3)[::3]  # a class axis that is not unit-stride is copied first
    np.testing.assert_array_equal(losses.cross_entropy(strided, target, weight=w), loss)
    torch = pytest.importorskip("torch")
    lt, gt = losses.cross_entropy(
        torch.from_numpy(x), torch.tensor(5), weight=torch.from_numpy(w), return_grad=True
    )
    assert isinstance(lt, torch.Tensor) and lt.shape == () and gt.shape == x.shape
    np.testing.assert_array_equal(lt.numpy(), loss)
    np.testing.assert_array_equal(gt.numpy(), grad)
    jnp = pytest.importorskip("jax.numpy")
    if dtype != np.float32:  # JAX's default: no float64
        return
    lj, gj = losses.cross_entropy(jnp.asarray(x), jnp.asarray(5), weight=w, return_grad=True)
    assert lj.shape == () and gj.shape == x.shape
    np.testing.assert_array_equal(np.asarray(gj), grad)


@pytest.mark.parametrize(
    "name, args",
    [
        ("z_loss", ()),
        ("spherical_loss", ()),
        ("stablemax_cross_entropy", ()),
        ("comp_sum_loss", (1.7,)),
    ],
)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_other_class_index_losses_take_unbatched_logits(name, args, reduction, rng):
    # Not in PyTorch, but each takes the unbatched form like cross_entropy: one row, 0-d loss.
    x = logits_like(rng, (29,), np.float64)
    t = np.array(4)
    fn = getattr(losses, name)
    loss, grad = fn(x, t, *args, reduction=reduction, return_grad=True)
    ref_loss, ref_grad = fn(x[None], t[None], *args, reduction=reduction, return_grad=True)
    assert np.shape(loss) == () and grad.shape == x.shape
    np.testing.assert_array_equal(np.reshape(loss, -1), np.reshape(ref_loss, -1))
    np.testing.assert_array_equal(grad, ref_grad[0])
    with pytest.raises(ValueError, match="target must be a 0-d class index"):
        fn(x, t[None], *args)


# ================================================================ grad_out and lse

# (target kind, weighted, other keyword arguments)
CE_OPTION_SETS = {
    "plain": ("hard", False, {}),
    "all_options": ("hard_ignored", True, {"label_smoothing": 0.1, "lse_square_scale": 1e-2}),
    "ignored_none": ("hard_ignored", False, {"reduction": "none"}),
    "soft_sum": ("soft", True, {"reduction": "sum", "label_smoothing": 0.1}),
}


def _ce_args(rng, dtype, opts, n=6, v=333):
    """logits, target and keyword arguments for one of CE_OPTION_SETS."""
    kind, weighted, kw = CE_OPTION_SETS[opts]
    kw = dict(kw, weight=make_weight(rng, v, dtype, weighted))
    return logits_like(rng, (n, v), dtype), make_target(rng, kind, n, v, dtype), kw


@pytest.mark.parametrize("opts", list(CE_OPTION_SETS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_out_separate_and_in_place(isa, dtype, opts, rng):
    x, target, kw = _ce_args(rng, dtype, opts)
    x_before = x.copy()
    loss, grad, lse = losses.cross_entropy(x, target, return_grad=True, return_lse=True, **kw)
    np.testing.assert_array_equal(x, x_before)  # out of place: logits untouched

    # A separate grad_out is filled and returned.
    g = np.full_like(x, 7.0)
    loss2, grad2, lse2 = losses.cross_entropy(x, target, grad_out=g, return_lse=True, **kw)
    assert grad2 is g
    np.testing.assert_array_equal(g, grad)
    np.testing.assert_array_equal(loss2, loss)
    np.testing.assert_array_equal(lse2, lse)

    # grad_out=logits: the gradient overwrites the logits; loss and lse are of the old logits.
    y = x.copy()
    loss3, grad3, lse3 = losses.cross_entropy(y, target, grad_out=y, return_lse=True, **kw)
    assert grad3 is y
    np.testing.assert_array_equal(y, grad)
    np.testing.assert_array_equal(loss3, loss)
    np.testing.assert_array_equal(lse3, lse)

    # grad_out alone (no return_grad) returns (loss, grad).
    y = x.copy()
    out = losses.cross_entropy(y, target, grad_out=y, **kw)
    assert len(out) == 2 and out[1] is y
    np.testing.assert_array_equal(y, grad)


@pytest.mark.parametrize("dtype", DTYPES)
def test_grad_out_partially_overlapping_logits(dtype, rng):
    n, v = 4, 50
    buf = rng.standard_normal(n * v + 17).astype(dtype)
    x = buf[: n * v].reshape(n, v)
    t = rng.integers(0, v, n)
    before = buf.copy()
    for g in (buf[17:].reshape(n, v), buf[1 : n * v + 1].reshape(n, v)):
        with pytest.raises(ValueError, match="grad_out"):
            losses.cross_entropy(x, t, grad_out=g)
        np.testing.assert_array_equal(buf, before)  # nothing written anywhere


def test_grad_out_bad_arrays(rng):
    x = logits_like(rng, (4, 9), np.float64)
    t = rng.integers(0, 9, 4)
    with pytest.raises(ValueError, match="grad_out"):
        losses.cross_entropy(x, t, grad_out=np.empty((4, 8)))
    with pytest.raises(TypeError, match="grad_out"):
        losses.cross_entropy(x, t, grad_out=np.empty((4, 9), np.float32))
    ro = np.zeros((4, 9))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="grad_out"):
        losses.cross_entropy(x, t, grad_out=ro)
    assert not ro.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_return_lse_alone(isa, dtype, rng):
    x = logits_like(rng, (7, 1000), dtype, scale=10)
    t = rng.integers(0, 1000, 7)
    t[3] = -100
    loss, lse = losses.cross_entropy(x, t, return_lse=True)
    np.testing.assert_allclose(loss, losses.cross_entropy(x, t), rtol=RTOL[dtype])
    assert lse.shape == (7,) and lse.dtype == dtype
    check_logsumexp(lse, x)
    np.testing.assert_allclose(_f64(lse), _f64(softzo.logsumexp(x)), rtol=2 * RTOL[dtype])


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


# ================================================================ threads


def _all_calls(x, t, t_ign, soft, w, teacher):
    """Every function with its gradient, as zero-argument callables taking num_threads."""
    return {
        "ce": lambda k: losses.cross_entropy(
            x,
            t_ign,
            weight=w,
            label_smoothing=0.1,
            lse_square_scale=1e-3,
            return_grad=True,
            return_lse=True,
            num_threads=k,
        ),
        "ce_none": lambda k: losses.cross_entropy(
            x, t, reduction="none", return_grad=True, num_threads=k
        ),
        "ce_soft": lambda k: losses.cross_entropy(
            x, soft, weight=w, label_smoothing=0.1, return_grad=True, num_threads=k
        ),
        "z_loss": lambda k: losses.z_loss(x, t, return_grad=True, num_threads=k),
        "spherical": lambda k: losses.spherical_loss(x, t, return_grad=True, num_threads=k),
        "taylor": lambda k: losses.spherical_loss(
            x, t, kind="log_taylor", reduction="sum", return_grad=True, num_threads=k
        ),
        "stablemax_ce": lambda k: losses.stablemax_cross_entropy(
            x, t, return_grad=True, num_threads=k
        ),
        "comp_sum": lambda k: losses.comp_sum_loss(x, t, 0.7, return_grad=True, num_threads=k),
        "kl_div": lambda k: losses.kl_div(x, teacher, return_grad=True, num_threads=k),
        "spherical_softmax": lambda k: losses.spherical_softmax(x, num_threads=k),
        "taylor_softmax": lambda k: losses.taylor_softmax(x, num_threads=k),
        "stablemax": lambda k: losses.stablemax(x, num_threads=k),
    }


@pytest.mark.parametrize("shape", [(64, 3000), (3, 150001), (1000, 20)])
def test_bitwise_identical_for_any_thread_count(isa, shape, rng):
    n, v = shape
    x = logits_like(rng, shape, np.float32)
    t = rng.integers(0, v, n)
    t_ign = t.copy()
    t_ign[1] = -100  # only cross_entropy knows ignore_index
    soft = make_target(rng, "soft", n, v, np.float32)
    w = make_weight(rng, v, np.float32, True)
    teacher = logits_like(rng, shape, np.float32)
    for name, call in _all_calls(x, t, t_ign, soft, w, teacher).items():
        one = _as_tuple(call(1))
        for k in (2, 3):
            for a, b in zip(one, _as_tuple(call(k))):
                np.testing.assert_array_equal(a, b, err_msg=f"{name} num_threads={k}")


# ================================================================ special values


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_special_values_like_torch(isa, dtype, weighted, rng):
    n, v = 8, 37
    x = logits_like(rng, (n, v), dtype)
    t = rng.integers(1, v, n)
    x[1, 0] = np.nan  # NaN in a non-target class: NaN row
    x[2, 0] = np.inf  # +inf anywhere: NaN row
    x[3, [0, 5, 9]] = -np.inf  # masked non-target classes: fine
    t[3] = 4
    x[4, t[4]] = -np.inf  # masked target: loss +inf
    x[5] = -np.inf  # nothing left: NaN
    x[6, t[6]] = np.inf  # +inf at the target: NaN
    w = make_weight(rng, v, dtype, weighted)
    kw = {"weight": w, "reduction": "none"}
    loss, grad = losses.cross_entropy(x, t, return_grad=True, **kw)
    bad = [1, 2, 5, 6]
    assert np.isnan(loss[bad]).all()
    assert np.isnan(grad[bad]).all(), "NaN rows give NaN gradients"
    assert loss[4] == np.inf
    good = [0, 3, 7]  # rows are independent with reduction="none"
    assert_cross_entropy(loss[good], grad[good], x[good], t[good], kw, dtype)
    assert not grad[3, [0, 5, 9]].any()  # masked classes have probability 0
    torch = pytest.importorskip("torch")
    tl, _ = torch_cross_entropy(torch, x, t, w, 0.0, "none")
    np.testing.assert_array_equal(np.isnan(loss), np.isnan(tl))
    np.testing.assert_array_equal(np.isinf(loss), np.isinf(tl))
    # A NaN row poisons the reduced losses, as in PyTorch.
    for reduction in ("mean", "sum"):
        assert np.isnan(losses.cross_entropy(x, t, weight=w, reduction=reduction))
    # Without the NaN rows the masked target still gives +inf.
    assert losses.cross_entropy(x[[0, 3, 4]], t[[0, 3, 4]], reduction="sum") == np.inf


def test_cross_entropy_special_rows_in_long_rows(isa, rng):
    # The same special values at several offsets of a long row (vector loop bodies and tails).
    v = 1029
    for pos in (0, 7, 8, 15, 16, 31, 64, v - 9, v - 1):
        for value, expect_nan in [(np.nan, True), (np.inf, True), (-np.inf, False)]:
            x = logits_like(rng, (2, v), np.float32)
            t = np.array([(pos + 1) % v, 3])
            x[0, pos] = value
            loss, grad = losses.cross_entropy(x, t, reduction="none", return_grad=True)
            assert np.isnan(loss[0]) == expect_nan, (pos, value)
            assert np.isnan(grad[0]).all() == expect_nan, (pos, value)
            assert not np.isnan(grad[1]).any()
            if not expect_nan:
                kw = {"reduction": "none"}
                assert_cross_entropy(loss, grad, x, t, kw, np.float32, f"{pos} {value}")


def test_cross_entropy_every_row_ignored():
    # Mean over no rows: NaN like PyTorch; ignored rows have gradient 0.
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    t = np.full(3, -100)
    loss, grad = losses.cross_entropy(x, t, return_grad=True, lse_square_scale=0.1)
    assert np.isnan(loss)
    assert not grad.any() and not np.isnan(grad).any()
    for reduction in ("sum", "none"):
        loss, grad = losses.cross_entropy(x, t, reduction=reduction, return_grad=True)
        assert not np.any(loss) and not grad.any()


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


# ================================================================ bad input

X = np.random.default_rng(1).standard_normal((4, 6))
T = np.array([0, 5, 2, 3])
SOFT = np.full((4, 6), 1 / 6)


def _soft_with(value):
    s = SOFT.copy()
    s[3, 2] = value  # the last row: validation must come before any write
    return s


# (id, keyword overrides of cross_entropy(X, T), exception, message regex)
CE_BAD = [
    ("target_too_big", {"target": np.array([0, 6, 2, 3])}, ValueError, "target"),
    ("target_negative", {"target": np.array([0, 1, -1, 3])}, ValueError, "target"),
    ("target_last_row", {"target": np.array([0, 1, 2, 99])}, ValueError, "target"),
    (
        "target_not_ignore",
        {"target": np.array([-100, 1, 2, 3]), "ignore_index": -1},
        ValueError,
        "target",
    ),
    ("target_short", {"target": np.array([0, 1, 2])}, ValueError, "target"),
    ("target_column", {"target": np.zeros((4, 1), np.int64)}, ValueError, "target"),
    ("target_float_1d", {"target": np.zeros(4)}, (TypeError, ValueError), "target"),
    ("soft_shape", {"target": np.full((4, 7), 1 / 7)}, ValueError, "target"),
    ("soft_dtype", {"target": SOFT.astype(np.float32)}, TypeError, "target"),
    ("soft_nan", {"target": _soft_with(np.nan)}, ValueError, "target"),
    ("soft_inf", {"target": _soft_with(np.inf)}, ValueError, "target"),
    ("soft_neg_inf", {"target": _soft_with(-np.inf)}, ValueError, "target"),
    ("weight_short", {"weight": np.ones(5)}, ValueError, "weight"),
    ("weight_2d", {"weight": np.ones((1, 6))}, ValueError, "weight"),
    ("weight_dtype", {"weight": np.ones(6, np.float32)}, TypeError, "weight"),
    ("reduction", {"reduction": "avg"}, ValueError, "reduction"),
    ("reduction_batchmean", {"reduction": "batchmean"}, ValueError, "reduction"),
    ("smoothing_negative", {"label_smoothing": -0.1}, ValueError, "label_smoothing"),
    ("smoothing_above_1", {"label_smoothing": 1.5}, ValueError, "label_smoothing"),
    ("smoothing_nan", {"label_smoothing": float("nan")}, ValueError, "label_smoothing"),
    ("lse_square_negative", {"lse_square_scale": -1.0}, ValueError, "lse_square_scale"),
    ("num_threads", {"num_threads": 0}, ValueError, "num_threads"),
]
CE_BAD_LOGITS = [
    ("logits_int", {"logits": np.ones((4, 6), np.int32)}, TypeError, "logits"),
    ("logits_int64", {"logits": np.ones((4, 6), np.int64)}, TypeError, "logits"),
    ("logits_float16", {"logits": np.ones((4, 6), np.float16)}, TypeError, "logits"),
    ("logits_0d", {"logits": np.float64(1.0)}, ValueError, "logits"),
    ("unbatched_target_1d", {"logits": np.ones(6)}, ValueError, "0-d class index"),
    ("unbatched_soft_shape", {"logits": np.ones(6), "target": SOFT}, ValueError, "target"),
    ("logits_3d", {"logits": np.ones((1, 4, 6))}, ValueError, "logits"),
]


def _call_ce(over, **extra):
    kw = dict(over)
    logits = kw.pop("logits", X)
    target = kw.pop("target", T)
    return losses.cross_entropy(logits, target, **kw, **extra)


@pytest.mark.parametrize("case", CE_BAD + CE_BAD_LOGITS, ids=lambda c: c[0])
def test_cross_entropy_bad_input(case):
    _, over, exc, match = case
    with pytest.raises(exc, match=match):
        _call_ce(over)
    with pytest.raises(exc, match=match):
        _call_ce(over, return_grad=True)


@pytest.mark.parametrize("case", CE_BAD, ids=lambda c: c[0])
def test_bad_input_leaves_grad_out_unchanged(case):
    # Nothing is written when an error is raised: neither a separate grad_out nor the logits
    # given as grad_out.
    _, over, exc, match = case
    g = np.full((4, 6), 3.25)
    with pytest.raises(exc, match=match):
        _call_ce(over, grad_out=g)
    assert (g == 3.25).all()
    x = X.copy()
    with pytest.raises(exc, match=match):
        _call_ce(dict(over, logits=x), grad_out=x)
    np.testing.assert_array_equal(x, X)


OTHER_BAD = [
    ("z_loss_a_zero", "z_loss", (X, T), {"a": 0.0}, ValueError, r"\ba\b"),
    ("z_loss_a_negative", "z_loss", (X, T), {"a": -1.0}, ValueError, r"\ba\b"),
    ("z_loss_target", "z_loss", (X, np.array([0, 1, 6, 2])), {}, ValueError, "target"),
    ("z_loss_target_shape", "z_loss", (X, T[:3]), {}, ValueError, "target"),
    ("z_loss_outputs_int", "z_loss", (np.ones((4, 6), np.int64), T), {}, TypeError, "outputs"),
    ("z_loss_reduction", "z_loss", (X, T), {"reduction": "avg"}, ValueError, "reduction"),
    ("spherical_kind", "spherical_loss", (X, T), {"kind": "cosine"}, ValueError, "kind"),
    ("spherical_target", "spherical_loss", (X, np.array([0, -1, 2, 3])), {}, ValueError, "target"),
    (
        "spherical_reduction",
        "spherical_loss",
        (X, T),
        {"reduction": "avg"},
        ValueError,
        "reduction",
    ),
    (
        "stablemax_target",
        "stablemax_cross_entropy",
        (X, np.array([6, 1, 2, 3])),
        {},
        ValueError,
        "target",
    ),
    (
        "stablemax_logits_f16",
        "stablemax_cross_entropy",
        (X.astype(np.float16), T),
        {},
        TypeError,
        "logits",
    ),
    ("comp_sum_tau_negative", "comp_sum_loss", (X, T, -0.5), {}, ValueError, "tau"),
    ("comp_sum_tau_nan", "comp_sum_loss", (X, T, float("nan")), {}, ValueError, "tau"),
    (
        "comp_sum_target",
        "comp_sum_loss",
        (X, np.array([0, 1, 2, 60]), 1.0),
        {},
        ValueError,
        "target",
    ),
    ("kl_temperature_zero", "kl_div", (X, X), {"temperature": 0.0}, ValueError, "temperature"),
    ("kl_temperature_negative", "kl_div", (X, X), {"temperature": -2.0}, ValueError, "temperature"),
    (
        "kl_temperature_nan",
        "kl_div",
        (X, X),
        {"temperature": float("nan")},
        ValueError,
        "temperature",
    ),
    ("kl_shapes", "kl_div", (X, X[:, :5]), {}, ValueError, "logits"),
    ("kl_reduction", "kl_div", (X, X), {"reduction": "avg"}, ValueError, "reduction"),
    (
        "hl_values_nan",
        "hl_gauss_targets",
        (np.array([0.0, np.nan]), -1.0, 1.0, 5),
        {},
        ValueError,
        "values",
    ),
    (
        "hl_values_inf",
        "hl_gauss_targets",
        (np.array([np.inf]), -1.0, 1.0, 5),
        {},
        ValueError,
        "values",
    ),
    ("hl_num_bins", "hl_gauss_targets", (np.zeros(2), -1.0, 1.0, 0), {}, ValueError, "num_bins"),
    (
        "hl_sigma",
        "hl_gauss_targets",
        (np.zeros(2), -1.0, 1.0, 5),
        {"sigma": -1.0},
        ValueError,
        "sigma",
    ),
    (
        "spherical_softmax_int",
        "spherical_softmax",
        (np.ones((2, 3), np.int32),),
        {},
        TypeError,
        "float32",
    ),
    (
        "taylor_softmax_f16",
        "taylor_softmax",
        (np.ones((2, 3), np.float16),),
        {},
        TypeError,
        "float32",
    ),
    ("stablemax_int", "stablemax", (np.ones((2, 3), np.int64),), {}, TypeError, "float32"),
]


@pytest.mark.parametrize("case", OTHER_BAD, ids=lambda c: c[0])
def test_other_functions_bad_input(case):
    _, name, args, kw, exc, match = case
    with pytest.raises(exc, match=match):
        getattr(losses, name)(*args, **kw)


# ================================================================ targets, strides, frameworks

INT_DTYPES = [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]


@pytest.mark.parametrize("tdtype", INT_DTYPES)
def test_any_integer_target_dtype(tdtype, rng):
    x = logits_like(rng, (5, 100), np.float32)
    t = rng.integers(0, 100, 5)
    calls = [
        lambda tt: losses.cross_entropy(x, tt, return_grad=True),
        lambda tt: losses.z_loss(x, tt, return_grad=True),
        lambda tt: losses.spherical_loss(x, tt, return_grad=True),
        lambda tt: losses.stablemax_cross_entropy(x, tt, return_grad=True),
        lambda tt: losses.comp_sum_loss(x, tt, 0.5, return_grad=True),
    ]
    for call in calls:
        for a, b in zip(call(t.astype(np.int64)), call(t.astype(tdtype))):
            np.testing.assert_array_equal(a, b)
    if np.issubdtype(tdtype, np.signedinteger):  # -100 fits every signed type
        ti = t.copy()
        ti[2] = -100
        for a, b in zip(
            losses.cross_entropy(x, ti, return_grad=True),
            losses.cross_entropy(x, ti.astype(tdtype), return_grad=True),
        ):
            np.testing.assert_array_equal(a, b)


def _strided_calls(t, soft, w, teacher):
    return [
        lambda z: losses.cross_entropy(z, t, weight=w, label_smoothing=0.1, return_grad=True),
        lambda z: losses.cross_entropy(z, soft, return_grad=True, reduction="none"),
        lambda z: losses.z_loss(z, t, return_grad=True),
        lambda z: losses.stablemax_cross_entropy(z, t, return_grad=True),
        lambda z: losses.kl_div(z, teacher, return_grad=True),
        lambda z: losses.spherical_softmax(z),
    ]


def test_non_contiguous_inputs_are_read_correctly(isa, rng):
    # Inputs whose rows are not unit-stride (or reversed, or column-major) are copied first.
    base = logits_like(rng, (12, 600), np.float64)
    teacher = logits_like(rng, (12, 600), np.float64)
    for view, tview in [
        (base[::2, ::2], teacher[::2, ::2]),
        (base[:, 5:305], teacher[:, 5:305]),
        (np.asfortranarray(base), np.asfortranarray(teacher)),
        (base[::-1, ::-1], teacher[::-1]),
    ]:
        before = view.copy()
        n, v = view.shape
        t = rng.integers(0, v, n)
        soft = np.asfortranarray(make_target(rng, "soft", n, v, np.float64))
        w = make_weight(rng, 2 * v, np.float64, True)[::2]  # a strided weight vector
        for call in _strided_calls(t, soft, w, tview):
            got = call(view)
            expected = call(np.ascontiguousarray(view))
            for a, b in zip(_as_tuple(got), _as_tuple(expected)):
                np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
        np.testing.assert_array_equal(view, before)  # inputs are never modified


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_in_numpy_out(dtype, rng):
    x = logits_like(rng, (5, 40), dtype)
    t = rng.integers(0, 40, 5)
    for reduction in ("mean", "sum"):
        loss = losses.cross_entropy(x, t, reduction=reduction)
        assert type(loss) is dtype  # a NumPy scalar of the logits' dtype
    rows = losses.cross_entropy(x, t, reduction="none")
    assert isinstance(rows, np.ndarray) and rows.shape == (5,) and rows.dtype == dtype
    loss, grad, lse = losses.cross_entropy(x, t, return_grad=True, return_lse=True)
    assert type(loss) is dtype
    assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == x.shape
    assert isinstance(lse, np.ndarray) and lse.dtype == dtype and lse.shape == (5,)
    for loss, grad in [
        losses.z_loss(x, t, return_grad=True),
        losses.spherical_loss(x, t, return_grad=True),
        losses.stablemax_cross_entropy(x, t, return_grad=True),
        losses.comp_sum_loss(x, t, 1.7, return_grad=True),
        losses.kl_div(x, x[::-1].copy(), return_grad=True),
    ]:
        assert type(loss) is dtype
        assert isinstance(grad, np.ndarray) and grad.dtype == dtype and grad.shape == x.shape
    for func in (losses.spherical_softmax, losses.taylor_softmax, losses.stablemax):
        y = func(x)
        assert isinstance(y, np.ndarray) and y.dtype == dtype


def _framework_calls(x, t, w, teacher, values):
    return [
        (
            "ce",
            lambda: losses.cross_entropy(
                x, t, weight=w, label_smoothing=0.1, return_grad=True, return_lse=True
            ),
        ),
        ("ce_none", lambda: losses.cross_entropy(x, t, reduction="none", return_grad=True)),
        ("z_loss", lambda: losses.z_loss(x, t, return_grad=True)),
        ("spherical", lambda: losses.spherical_loss(x, t, kind="log_taylor", return_grad=True)),
        ("stablemax_ce", lambda: losses.stablemax_cross_entropy(x, t, return_grad=True)),
        ("comp_sum", lambda: losses.comp_sum_loss(x, t, 0.5, return_grad=True)),
        ("kl_div", lambda: losses.kl_div(x, teacher, temperature=2.0, return_grad=True)),
        ("spherical_softmax", lambda: losses.spherical_softmax(x)),
        ("taylor_softmax", lambda: losses.taylor_softmax(x)),
        ("stablemax", lambda: losses.stablemax(x)),
        ("hl_gauss", lambda: losses.hl_gauss_targets(values, -1.0, 1.0, 11)),
    ]


def test_torch_in_torch_out(rng):
    torch = pytest.importorskip("torch")
    for dtype in (torch.float32, torch.float64):
        # requires_grad inputs are read through a detached view.
        x = torch.randn(6, 50, dtype=dtype, requires_grad=True)
        t = torch.randint(0, 50, (6,))
        w = torch.rand(50, dtype=dtype) + 0.5
        teacher = torch.randn(6, 50, dtype=dtype)
        values = torch.rand(6, dtype=dtype) * 2 - 1
        ours = _framework_calls(x, t, w, teacher, values)
        reference = _framework_calls(
            x.detach().numpy(), t.numpy(), w.numpy(), teacher.numpy(), values.numpy()
        )
        for (name, call), (_, np_call) in zip(ours, reference):
            got, expected = _as_tuple(call()), _as_tuple(np_call())
            for a, b in zip(got, expected):
                assert isinstance(a, torch.Tensor), name
                assert a.dtype == dtype and not a.requires_grad, name
                assert a.shape == b.shape, name
                np.testing.assert_allclose(a.numpy(), b, rtol=1e-6, atol=1e-9, err_msg=name)
        loss = losses.cross_entropy(x, t)
        assert isinstance(loss, torch.Tensor) and loss.dim() == 0


def test_torch_grad_out_in_place_zero_copy(rng):
    torch = pytest.importorskip("torch")
    x = torch.randn(7, 300)
    t = torch.randint(0, 300, (7,))
    expected_loss, expected_grad = losses.cross_entropy(x, t, return_grad=True)
    ptr = x.data_ptr()
    loss, grad = losses.cross_entropy(x, t, grad_out=x)
    assert grad is x and x.data_ptr() == ptr
    torch.testing.assert_close(x, expected_grad, rtol=0, atol=0)
    torch.testing.assert_close(loss, expected_loss, rtol=0, atol=0)
    # The gradient matches PyTorch's autograd.
    xt = torch.randn(7, 300, requires_grad=True)
    torch.nn.functional.cross_entropy(xt, t).backward()
    _, grad = losses.cross_entropy(xt, t, return_grad=True)
    torch.testing.assert_close(grad, xt.grad, rtol=1e-5, atol=1e-7)


def test_jax_in_jax_out(rng):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    x = logits_like(rng, (6, 50), np.float32)
    t = rng.integers(0, 50, 6).astype(np.int32)
    w = make_weight(rng, 50, np.float32, True)
    teacher = logits_like(rng, (6, 50), np.float32)
    values = rng.uniform(-1, 1, 6).astype(np.float32)
    ours = _framework_calls(*(jnp.asarray(a) for a in (x, t, w, teacher, values)))
    reference = _framework_calls(x, t, w, teacher, values)
    for (name, call), (_, np_call) in zip(ours, reference):
        for a, b in zip(_as_tuple(call()), _as_tuple(np_call())):
            assert isinstance(a, jax.Array), name
            assert a.dtype == jnp.float32 and a.shape == b.shape, name
            np.testing.assert_allclose(np.asarray(a), b, rtol=1e-6, atol=1e-9, err_msg=name)


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
