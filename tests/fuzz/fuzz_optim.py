"""Hypothesis fuzz of softzo.spherical's factored output layer (and its BLAS threads) and of
softzo.optim (the optimisers, minimize, AskTell): each call either returns a valid result or
raises TypeError/ValueError naming a doubtful argument (tests/fuzz/oracle.py). The softmax
family, the losses and the runtime settings are in fuzz_softmax_losses.py.

Not collected by the main run: tests/fuzz/test_fuzz.py runs this file in a child pytest, so
that a crash fails a test (and names the last case) instead of ending the session.
"""

from __future__ import annotations

import numpy as np
from fuzz_args import (
    _count,
    report_counts,  # noqa: F401 - the fixture that writes the counts
    target_arg,
    with_odds_strategy,
)
from hypothesis import given
from hypothesis import strategies as st
from oracle import (
    EITHER,
    INVALID,
    VALID,
    Arg,
    Call,
    as_numpy,
    assert_close,
    check,
    choice_option,
    float_array,
    float_option,
    int_option,
    mostly,
    num_threads_option,
    odd_array,
)
from softzo import optim, spherical

# ---- the factored output layer ----------------------------------------------------------------


@given(value=int_option(st.integers(1, 4), invalid_ints=[0, -2]))
def test_set_blas_threads(value):
    before = spherical.blas_threads()
    call = Call(spherical.set_blas_threads, {"num_threads": value}, positional=("num_threads",))
    try:
        _count("set_blas_threads", check(call, lambda r: None))
    finally:
        spherical.set_blas_threads(before)


@given(data=st.data())
def test_factored_layer(data):
    # Three layers in four are built from valid arguments only, so the methods get exercised.
    strict = data.draw(st.integers(0, 3), "valid constructor") > 0

    def opt(strategy):
        return strategy.filter(lambda a: a.verdict == VALID) if strict else strategy

    args = {
        "num_classes": data.draw(
            opt(int_option(st.integers(1, 40), invalid_ints=[0, -1])), "num_classes"
        ),
        "dim": data.draw(opt(int_option(st.integers(1, 12), invalid_ints=[0])), "dim"),
        "loss": data.draw(opt(choice_option(spherical.LOSSES)), "loss"),
        "lr": data.draw(opt(float_option(st.sampled_from([0.0, 0.01, 0.5]), [-0.1])), "lr"),
        "weight_decay": data.draw(
            opt(float_option(st.sampled_from([0.0, 0.1]), [-1.0], either=[1e9])), "weight_decay"
        ),
        "dtype": data.draw(
            opt(
                mostly(
                    st.sampled_from([np.float32, np.float64, "float32", "float64"]).map(Arg),
                    st.one_of(
                        st.sampled_from([np.float16, np.int32, "float128", None]).map(
                            lambda v: Arg(v, INVALID)
                        ),
                        st.just(Arg("f", EITHER, note="NumPy's code for float32")),
                    ),
                )
            ),
            "dtype",
        ),
        "seed": data.draw(
            opt(int_option(st.integers(0, 2**32), invalid_ints=[-1], none_ok=True)), "seed"
        ),
        "a": data.draw(opt(float_option(st.sampled_from([1.0, 2.0]), [-1.0], [0.0])), "a"),
        "eps": data.draw(opt(float_option(st.sampled_from([1e-6, 0.1]), [-1.0], [0.0])), "eps"),
        "stabilize_every": data.draw(
            opt(int_option(st.sampled_from([0, 1, 100]), invalid_ints=[-1])), "stabilize_every"
        ),
        "sigma_min": data.draw(opt(float_option(st.sampled_from([0.5]), [0.0, 2.0])), "sigma_min"),
    }
    call = Call(spherical.FactoredOutputLayer, args, positional=("num_classes", "dim"))
    made = {}
    _count("FactoredOutputLayer", check(call, lambda layer: made.setdefault("layer", layer)))
    layer = made.get("layer")
    if layer is None:
        return
    d, c, ldt = layer.dim, layer.num_classes, layer.dtype
    m = data.draw(st.integers(1, 4), "m")
    h = data.draw(
        with_odds_strategy(float_array(shape=(m, d), dtype=ldt, lo=-2, hi=2), odd_array()), "h"
    )
    hm = h.meaning
    if h.verdict != VALID and hm is not None and np.shape(hm) == (m, d):
        h.verdict = EITHER
    targets = data.draw(target_arg(Arg(np.zeros((m, c)), VALID, np.zeros((m, c))), False), "tg")
    tv = targets.value
    if targets.note == "class out of range" and ((tv == -1) | ((tv >= 0) & (tv < c))).all():
        targets = Arg(tv, VALID, tv, "-1: an unused slot")  # documented, as in dense_step
    w = layer.weight().astype(np.float64)
    step_args = {"h": h, "targets": targets}
    method = data.draw(st.sampled_from(["step", "evaluate", "topk"]), "method")
    if method == "topk":
        step_args = {"h": h, "k": data.draw(int_option(st.integers(1, c), [0, c + 1]), "k")}

    def compare(result):
        hv = np.array(hm, np.float64)
        if method == "topk":
            k = int(step_args["k"].meaning)
            o = hv @ w.T
            score = {"log_spherical": o * o, "log_taylor": 1 + o + o * o / 2}.get(layer.loss, o)
            best = np.sort(score, axis=1)[:, ::-1][:, :k]
            _, got_i = result
            got_score = np.take_along_axis(score, np.asarray(got_i), 1)
            assert_close(got_score, best, "topk scores", dtype=ldt, atol_scale=1e3)
            return
        dense = w.copy()
        ref_loss, ref_grad = spherical.dense_step(
            dense, hv, targets.meaning, loss=layer.loss, lr=0.0, a=args["a"].meaning,
            eps=args["eps"].meaning,
        )  # fmt: skip
        loss = result[0] if method == "step" else result
        assert_close(np.float64(loss), ref_loss, "loss", dtype=ldt, atol_scale=1e3)
        if method == "step":
            # The Z-loss standardises o: its gradient carries rounding amplified by |o| / std(o)
            # (two classes: the loss is constant in h, both gradients are rounding noise).
            o = hv @ w.T
            cond = 1.0
            if layer.loss == "z_loss" and o.size:
                cond = max(1.0, float(np.abs(o).max() / max(o.std(axis=1).min(), 1e-300)))
            assert_close(result[1], ref_grad, "grad", dtype=ldt, atol_scale=1e3 * cond)

    call = Call(getattr(layer, method), step_args, positional=tuple(step_args))
    _count(f"FactoredOutputLayer.{method}", check(call, compare))


# ---- optimisers --------------------------------------------------------------------------------

OPTIMIZERS = ["MeZO", "SPSA", "HiZOO", "ZOSGD", "ZOAdam", "SPSA_GC", "RGE", "CGE"]


@st.composite
def params_arg(draw):
    """A list of parameters: float arrays in any layout, or something the engine must refuse."""
    count = draw(st.integers(1, 3))
    items, verdict, notes = [], VALID, []
    for _ in range(count):
        shape = draw(st.sampled_from([(5,), (3, 4), (1,), (2, 3, 2), (40,)]))
        if draw(st.integers(0, 6)) == 0:
            odd = draw(odd_array(shape=shape))
            items.append(odd.value)
            # A 0-d float array is a parameter of one element, updated in place.
            odd_verdict = (
                EITHER if isinstance(odd.value, np.ndarray) and odd.note == "0-d" else odd.verdict
            )
            verdict = INVALID if odd_verdict == INVALID or verdict == INVALID else EITHER
            notes.append(odd.note or type(odd.value).__name__)
            continue
        a = draw(float_array(shape=shape, lo=-2, hi=2))
        # Parameters are updated in place: lists and read-only arrays are refused, and
        # non-contiguous layouts too (a 1-D "Fortran" array is contiguous all the same).
        if isinstance(a.value, list) or a.note == "readonly":
            verdict = INVALID
        elif a.note and verdict == VALID:
            verdict = EITHER
        notes.append(a.note)
        items.append(a.value)
    if draw(st.integers(0, 9)) == 0:
        return Arg(draw(st.sampled_from([[], None, 3, "params"])), INVALID, note="no params")
    return Arg(items, verdict, None, ",".join(notes))


@given(data=st.data(), name=st.sampled_from(OPTIMIZERS))
def test_optimizers(data, name):
    params = data.draw(params_arg(), "params")
    cls = getattr(optim, name)
    step_size = "a" if name in ("SPSA", "SPSA_GC") else "lr"
    args = {
        "params": params,
        step_size: data.draw(
            float_option(st.sampled_from([1e-3, 0.1]), [-1.0, float("inf")]), step_size
        ),
        # A seed is taken modulo 2^64 (negative ones too).
        "seed": data.draw(
            mostly(
                st.integers(0, 2**64 - 1).map(lambda v: Arg(v, VALID)),
                st.sampled_from([-1, 2**70]).map(lambda v: Arg(v, EITHER)),
            ),
            "seed",
        ),
        "num_threads": data.draw(num_threads_option(), "num_threads"),
    }
    if name == "MeZO":
        args["distribution"] = data.draw(
            choice_option(("gaussian", "rademacher", "segmented")), "distribution"
        )
    if name in ("MeZO", "HiZOO", "ZOSGD", "RGE"):
        args["num_queries"] = data.draw(
            int_option(st.integers(1, 3), invalid_ints=[0, -1]), "num_queries"
        )
    if name == "MeZO":
        args["sparsity"] = data.draw(
            st.one_of(st.just(Arg(None)), float_option(st.sampled_from([0.5]), [1.5, -0.1])),
            "sparsity",
        )
    call = Call(cls, args, positional=("params",))
    made = {}
    _count(name, check(call, lambda opt: made.setdefault("opt", opt)))
    opt = made.get("opt")
    if opt is None:
        return
    before = [np.array(as_numpy(p), dtype=np.float64, copy=True) for p in params.value]
    value = data.draw(
        st.one_of(
            st.sampled_from([1.0, np.float32(2.0), np.array(3.0)]).map(lambda v: Arg(v, VALID)),
            st.sampled_from([float("nan"), float("inf"), None, [1.0], np.ones(2)]).map(
                lambda v: Arg(v, INVALID)
            ),
            st.just(Arg("1.0", EITHER, note="float() reads it")),
        ),
        "closure value",
    )
    # The closure's return value is the argument under test.
    step = Call(lambda closure: opt.step(lambda: closure), {"closure": value}, ("closure",))

    def compare(result):
        after = [np.array(as_numpy(p), dtype=np.float64) for p in params.value]
        assert all(np.isfinite(a).all() for a in after)

    outcome = check(step, compare)
    if outcome == "raised":  # the step was undone: parameters as before, within rounding
        for p, b in zip(params.value, before):
            np.testing.assert_allclose(as_numpy(p).astype(np.float64), b, rtol=1e-6, atol=1e-6)
    _count(f"{name}.step", outcome)


@st.composite
def x0_arg(draw):
    """A starting point: like SciPy, a scalar or 0-d array is one coordinate."""
    x0 = draw(with_odds_strategy(float_array(shape=(draw(st.integers(1, 6)),)), odd_array()))
    if x0.note in ("0-d", "scalar"):
        x0.verdict, x0.meaning = EITHER, np.asarray(x0.value, np.float64)
    return x0


@given(data=st.data())
def test_minimize(data):
    x0 = data.draw(x0_arg(), "x0")
    args = {
        "fun": Arg(lambda x: float(np.sum(np.asarray(x, np.float64) ** 2))),
        "x0": x0,
        "method": data.draw(
            choice_option(("spsa", "mezo", "zo_adam", "rge", "cge", "spsa_gc", "zo_sgd")),
            "method",
        ),
        "maxfev": data.draw(int_option(st.integers(1, 60), invalid_ints=[0, -5]), "maxfev"),
        # A seed is taken modulo 2^64, as the optimisers' (negative and huge ones too).
        "seed": data.draw(
            mostly(
                st.one_of(st.integers(0, 100), st.none()).map(lambda v: Arg(v, VALID)),
                st.sampled_from([-1, 2**70]).map(lambda v: Arg(v, EITHER)),
            ),
            "seed",
        ),
        "bounds": data.draw(
            st.sampled_from([Arg(None), Arg([(-1.0, 1.0)] * 3, EITHER), Arg("box", INVALID)]),
            "bounds",
        ),
    }
    call = Call(optim.minimize, args, positional=("fun", "x0"))

    def compare(result):
        assert result.nfev <= int(args["maxfev"].meaning)
        assert np.shape(result.x) == (np.size(x0.meaning),)  # 1-D, as in SciPy
        assert np.isfinite(result.fun)

    _count("minimize", check(call, compare))


@given(data=st.data())
def test_ask_tell(data):
    x0 = data.draw(x0_arg(), "x0")
    args = {
        "x0": x0,
        "method": data.draw(choice_option(("spsa", "mezo")), "method"),
    }
    call = Call(optim.AskTell, args, positional=("x0",))
    made = {}
    _count("AskTell", check(call, lambda at: made.setdefault("at", at)))
    at = made.get("at")
    if at is None:
        return
    points = at.ask()
    assert points.shape[1:] == (np.size(x0.meaning),)
    n = points.shape[0]
    values = data.draw(
        st.one_of(
            st.just(Arg([1.0] * n, VALID)),
            st.sampled_from([[1.0] * (n + 1), "x", None, [float("nan")] * n]).map(
                lambda v: Arg(v, INVALID)
            ),
        ),
        "values",
    )
    _count("AskTell.tell", check(Call(at.tell, {"values": values}, ("values",)), lambda r: None))
