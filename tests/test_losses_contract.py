"""softzo.losses, what holds for every loss: analytic gradients against central finite
differences (of the implementation and of the references), unbatched (1-D) logits, thread-count
determinism, bad input, integer target dtypes, strides and frameworks (NumPy, PyTorch, JAX)."""

import numpy as np
import pytest
from losses_testing import (
    DTYPES,
    REDUCTIONS,
    SPHERICAL_KINDS,
    TAUS,
    T,
    X,
    _f64,
    logits_like,
    make_target,
    make_weight,
)
from reference_losses import (
    ref_comp_sum_loss,
    ref_cross_entropy,
    ref_kl_div,
    ref_spherical_loss,
    ref_stablemax_cross_entropy,
    ref_z_loss,
)
from softzo import losses


def _as_tuple(r):
    return r if isinstance(r, tuple) else (r,)


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


# ================================================================ unbatched (1-D) logits


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


# ================================================================ bad input


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
