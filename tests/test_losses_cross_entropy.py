"""softzo.losses.cross_entropy: against the long-double references of reference_losses.py
(every ISA, float32 and float64) and against PyTorch (forward and autograd), unbatched (1-D)
logits, then its Python contract: grad_out, lse, special values and bad input."""

import itertools

import numpy as np
import pytest
import softzo
from hypothesis import given, settings
from hypothesis import strategies as st
from losses_testing import (
    BIG_SHAPES,
    DTYPES,
    ISAS,
    REDUCTIONS,
    RTOL,
    SMALL_SHAPES,
    T,
    X,
    _f64,
    assert_cross_entropy,
    assert_grad,
    assert_loss,
    logits_like,
    make_target,
    make_weight,
    torch_cross_entropy,
)
from reference import check_logsumexp
from softzo import losses

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


# ================================================================ against PyTorch


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


# ================================================================ bad input


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
    ("logits_int16", {"logits": np.ones((4, 6), np.int16)}, TypeError, "logits"),
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
