"""Hypothesis fuzz of every public function of softzo: each call either returns the reference
result or raises TypeError/ValueError naming a doubtful argument (tests/fuzz/oracle.py).

Not collected by the main run: tests/fuzz/test_fuzz.py runs this file in a child pytest, so
that a crash fails a test (and names the last case) instead of ending the session.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/: the references

import reference_losses as rl
import softzo
from oracle import (
    EITHER,
    HAVE_TORCH,
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
    framework_of,
    int_option,
    mostly,
    num_threads_option,
    odd_array,
    values,
    with_odds,
)
from reference import ref_log_softmax, ref_logsumexp, ref_softmax
from softzo import losses, optim, spherical

COUNTS: dict[str, dict[str, int]] = {}


def _count(name: str, outcome: str) -> None:
    COUNTS.setdefault(name, {"returned": 0, "raised": 0})[outcome] += 1


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    """Per function: calls that returned (checked against the reference) and that raised."""
    yield
    path = os.environ.get("SOFTZO_FUZZ_COUNTS")
    if path:
        with open(path, "w") as f:
            json.dump(COUNTS, f)


# ---- shared argument strategies ----------------------------------------------------------------


@st.composite
def x_arg(draw, **kw):
    return with_odds(draw, float_array(**kw), odd_array())


@st.composite
def axis_arg(draw, ndim):
    valid = st.integers(-max(ndim, 1), max(ndim, 1) - 1) if ndim else st.just(0)
    bad = st.one_of(
        st.sampled_from([ndim, -ndim - 1, 2**70, -(2**70)]).map(lambda v: Arg(v, INVALID)),
        st.sampled_from([0.0, None, "0", [0]]).map(lambda v: Arg(v, INVALID)),
        st.sampled_from([np.int64(0), np.int8(-1)]).map(lambda v: Arg(v, VALID, int(v))),
    )
    return with_odds(draw, valid.map(lambda v: Arg(v, VALID, v)), bad, 8)


def _compute_dtype(arg: Arg):
    """The dtype whose rounding a returned result carries, for its tolerance: float32 or
    float16 for such arrays, whatever their verdict (a broadcast view may be taken or refused;
    float16 is taken by the half-precision functions), else float64."""
    try:
        dt = as_numpy(arg.value).dtype
    except Exception:  # noqa: BLE001 - objects NumPy cannot read
        return np.float64
    return dt.type if dt in (np.float32, np.float16) else np.float64


def _shape_of(arg: Arg):
    m = arg.meaning
    return None if m is None else np.shape(m)


@st.composite
def out_arg(draw, x: Arg, shape, strided=VALID):
    """None, a fresh array, x itself (in place), or a wrong one: dtype, shape, overlapping x,
    read-only, a broadcast view, a list, a JAX-like immutable."""
    if shape is None:
        return Arg(None)
    dt = as_numpy(x.value).dtype if x.verdict == VALID and not isinstance(x.value, list) else None
    kind = draw(
        mostly(
            st.sampled_from(["none"] * 4 + ["fresh", "fresh", "strided", "in_place", "torch"]),
            st.sampled_from(
                ["dtype", "shape", "overlap", "readonly", "broadcast", "list", "unaligned"]
            ),
            5,
        )
    )

    if dt is None or kind == "none":
        return Arg(None)
    if kind == "fresh":
        return Arg(np.full(shape, np.nan, dt), VALID)
    if kind == "strided":
        big = np.full(shape[:-1] + (shape[-1] * 2,), np.nan, dt) if shape else None
        return Arg(big[..., ::2], strided) if big is not None else Arg(None)
    if kind == "in_place":
        v = x.value
        if isinstance(v, np.ndarray) and v.flags.writeable:
            # x's own layout: strided along the last axis is `strided`'s verdict; unaligned is
            # refused by name (the kernels store whole elements).
            unit = v.ndim == 0 or v.shape[-1] <= 1 or v.strides[-1] == v.itemsize
            verdict = (VALID if unit else strided) if v.flags.aligned else INVALID
            return Arg(v, verdict, note="out is x")
        return Arg(None)
    if kind == "dtype":
        other = np.float64 if dt == np.float32 else np.float32
        return Arg(np.empty(shape, other), INVALID)
    if kind == "shape":
        return Arg(np.empty(shape + (2,), dt), INVALID)
    if kind == "overlap" and isinstance(x.value, np.ndarray) and x.value.ndim:
        if x.value.flags.writeable and x.value.shape[0] > 1 and x.value.size:  # empty: no overlap
            return Arg(x.value[::-1], INVALID, note="out is x reversed")
        return Arg(None)
    if kind == "readonly":
        r = np.empty(shape, dt)
        r.flags.writeable = False
        return Arg(r, INVALID)
    if kind == "broadcast" and shape and int(np.prod(shape)) > 1:
        return Arg(np.broadcast_to(np.empty(1, dt), shape), INVALID)
    if kind == "list":
        return Arg([0.0] * int(np.prod(shape)), INVALID)
    if kind == "unaligned" and int(np.prod(shape)):
        raw = np.zeros(int(np.prod(shape)) * np.dtype(dt).itemsize + 1, np.uint8)
        u = np.frombuffer(raw.data, dt, int(np.prod(shape)), offset=1).reshape(shape)
        return Arg(u, INVALID, note="unaligned")
    if kind == "torch" and HAVE_TORCH:
        import torch

        return Arg(torch.empty(shape, dtype=getattr(torch, str(np.dtype(dt)))), VALID)
    return Arg(None)


# ---- softmax, log_softmax, logsumexp -------------------------------------------------------------


@given(data=st.data(), fn=st.sampled_from(["softmax", "log_softmax", "logsumexp"]))
def test_softmax_family(data, fn):
    x = data.draw(x_arg(), "x")
    ndim = len(_shape_of(x)) if x.meaning is not None else 1
    args = {"x": x, "axis": data.draw(axis_arg(ndim), "axis")}
    if fn != "logsumexp":
        args["out"] = data.draw(out_arg(x, _shape_of(x)), "out")
    args["algorithm"] = data.draw(choice_option(softzo.ALGORITHMS), "algorithm")
    if fn == "softmax":
        args["all_masked"] = data.draw(choice_option(("nan", "zero")), "all_masked")
    args["num_threads"] = data.draw(num_threads_option(), "num_threads")
    call = Call(getattr(softzo, fn), args, positional=("x",))
    meaning = None if x.meaning is None else np.array(x.meaning, dtype=np.float64)

    def compare(result):
        assert meaning is not None
        axis = int(args["axis"].meaning)
        ref = {"softmax": ref_softmax, "log_softmax": ref_log_softmax}.get(fn, ref_logsumexp)(
            meaning, axis
        )
        if fn == "logsumexp" and np.ndim(ref) == 0 and framework_of(x.value) == "numpy":
            assert np.ndim(result) == 0
        out = args.get("out", Arg(None)).value
        if out is not None:
            assert result is out
        else:
            assert framework_of(result) == framework_of(x.value)
        assert_close(result, ref, fn, atol_scale=20 if fn != "softmax" else 1)

    _count(fn, check(call, compare))


# ---- losses ----------------------------------------------------------------------------------


@st.composite
def logits_arg(draw):
    shape = draw(st.tuples(st.integers(0, 5), st.integers(1, 9)) | st.just((2, 300)))
    return with_odds(draw, float_array(shape=shape), odd_array(max_dims=3))


@st.composite
def target_arg(draw, logits: Arg, allow_soft=True):
    shape = _shape_of(logits)
    if shape is None or len(shape) != 2:
        return Arg(np.zeros(2, np.int64), EITHER)
    n, v = shape
    kind = draw(
        mostly(st.sampled_from(["ok"] * 6 + ["soft", "list"]),
               st.sampled_from(["range", "dtype", "shape"]), 5)
    )  # fmt: skip
    t = draw(st.lists(st.integers(0, v - 1), min_size=n, max_size=n)) if v else [0] * n
    if kind == "soft" and allow_soft:
        dt = as_numpy(logits.value).dtype if logits.verdict == VALID else np.float64
        p = np.random.default_rng(len(t)).random((n, v)).astype(dt)
        p /= p.sum(1, keepdims=True)
        return Arg(p, VALID, p, "soft")
    if kind == "range" and n:
        bad = list(t)
        bad[draw(st.integers(0, n - 1))] = draw(st.sampled_from([v, -1, 2**40, -(2**40), v + 7]))
        return Arg(np.array(bad, np.int64), INVALID, note="class out of range")
    if kind == "dtype":
        dt = draw(st.sampled_from(["bool", "complex64", "U3", "object", "float16"]))
        return Arg(np.array(t).astype(dt), INVALID if dt != "object" else EITHER, np.array(t))
    if kind == "shape":
        return Arg(np.array(t + [0], np.int64), INVALID)
    it = draw(st.sampled_from([np.int64, np.int32, np.uint8 if v <= 255 else np.int16]))
    if kind == "list":
        return Arg(list(t), VALID, np.array(t, np.int64))
    return Arg(np.array(t, dtype=it), VALID, np.array(t, np.int64))


REDUCTIONS = ("mean", "sum", "none")


def _ref_loss_check(result, ref_loss, ref_grad, want_grad, dtype, scale=1.0):
    if want_grad:
        assert isinstance(result, tuple)
        loss, grad = result[0], result[1]
        assert_close(grad, ref_grad, "grad", dtype=dtype, atol_scale=scale)
    else:
        loss = result[0] if isinstance(result, tuple) else result
    assert_close(loss, ref_loss, "loss", dtype=dtype, atol_scale=scale)


@given(data=st.data())
def test_cross_entropy(data):
    logits = data.draw(logits_arg(), "logits")
    target = data.draw(target_arg(logits), "target")
    shape = _shape_of(logits)
    v = shape[1] if shape and len(shape) == 2 else 3
    dt = _compute_dtype(logits)
    args = {
        "logits": logits,
        "target": target,
        "weight": data.draw(
            mostly(
                st.sampled_from([Arg(None), Arg(np.linspace(0.5, 2, v).astype(dt), VALID)]),
                st.sampled_from(
                    [
                        Arg(np.ones(v + 1, dt), INVALID),
                        Arg(np.ones(v, np.int64), INVALID),
                        Arg(np.ones((1, v), dt), INVALID),
                    ]
                ),
            ),
            "weight",
        ),
        "ignore_index": data.draw(
            int_option(st.sampled_from([-100, 0, 1]), invalid_ints=[]), "ignore_index"
        ),
        "label_smoothing": data.draw(
            float_option(st.sampled_from([0.0, 0.1, 1.0]), [-0.1, 1.5, float("inf")]),
            "label_smoothing",
        ),
        "lse_square_scale": data.draw(
            float_option(st.sampled_from([0.0, 1e-4]), [-1e-4, float("inf")]), "lse_square_scale"
        ),
        "reduction": data.draw(choice_option(REDUCTIONS), "reduction"),
        "return_grad": Arg(data.draw(st.booleans(), "return_grad")),
        "return_lse": Arg(data.draw(st.booleans(), "return_lse")),
        "num_threads": data.draw(num_threads_option(), "num_threads"),
    }
    # The losses write the gradient with unit stride along classes (a strided grad_out is
    # refused by name).
    go = data.draw(out_arg(logits, shape, strided=EITHER), "grad_out")
    args["grad_out"] = go
    call = Call(losses.cross_entropy, args, positional=("logits", "target"))
    meaning = None if logits.meaning is None else np.array(logits.meaning, np.float64)
    weight = args["weight"].value

    def compare(result):
        want_grad = args["return_grad"].value or go.value is not None
        ignore = int(args["ignore_index"].meaning)
        ref_loss, ref_grad, ref_lse = rl.ref_cross_entropy(
            meaning, target.meaning, weight, ignore, args["label_smoothing"].meaning,
            args["lse_square_scale"].meaning, args["reduction"].meaning,
        )  # fmt: skip
        loss_scale, _ = rl.ref_cross_entropy_scales(
            meaning, target.meaning, weight, ignore, args["label_smoothing"].meaning,
            args["lse_square_scale"].meaning, args["reduction"].meaning,
        )  # fmt: skip
        _ref_loss_check(result, ref_loss, ref_grad, want_grad, dt, 10 * max(1, loss_scale))
        if args["return_lse"].value:
            assert_close(result[-1], ref_lse, "lse", dtype=dt, atol_scale=10)
        if go.value is not None:
            assert result[1] is go.value

    _count("cross_entropy", check(call, compare))


@given(data=st.data(), fn=st.sampled_from(["z_loss", "spherical_loss", "comp_sum_loss",
                                            "stablemax_cross_entropy"]))  # fmt: skip
def test_row_losses(data, fn):
    logits = data.draw(logits_arg(), "logits")
    target = data.draw(target_arg(logits, allow_soft=False), "target")
    dt = _compute_dtype(logits)
    name = {"z_loss": "outputs", "spherical_loss": "o"}.get(fn, "logits")
    args = {name: logits, "target": target}
    if fn == "z_loss":
        args["a"] = data.draw(float_option(st.sampled_from([1.0, 2.5]), [0.0, -1.0]), "a")
        args["b"] = data.draw(float_option(st.sampled_from([0.0, -1.0]), [float("inf")]), "b")
    if fn == "spherical_loss":
        args["kind"] = data.draw(choice_option(("log_spherical", "log_taylor", "mse")), "kind")
        args["eps"] = data.draw(
            float_option(st.sampled_from([1e-6, 0.1]), [-1.0], either=[0.0]), "eps"
        )
    if fn == "comp_sum_loss":
        args["tau"] = data.draw(float_option(st.sampled_from([0.0, 0.5, 1.0, 2.0]), [-1.0]), "tau")
    args["reduction"] = data.draw(choice_option(REDUCTIONS), "reduction")
    args["return_grad"] = Arg(data.draw(st.booleans(), "return_grad"))
    args["num_threads"] = data.draw(num_threads_option(), "num_threads")
    positional = (name, "target", "tau") if fn == "comp_sum_loss" else (name, "target")
    call = Call(getattr(losses, fn), args, positional=positional)

    def compare(result):
        x = np.array(logits.meaning, np.float64)
        red = args["reduction"].meaning
        if fn == "z_loss":
            ref = rl.ref_z_loss(x, target.meaning, args["a"].meaning, args["b"].meaning, red)
        elif fn == "spherical_loss":
            ref = rl.ref_spherical_loss(
                x, target.meaning, args["kind"].meaning, args["eps"].meaning, red
            )
        elif fn == "comp_sum_loss":
            ref = rl.ref_comp_sum_loss(x, target.meaning, args["tau"].meaning, red)
        else:
            ref = rl.ref_stablemax_cross_entropy(x, target.meaning, red)
        scale = 1e3 if fn == "spherical_loss" else 100
        _ref_loss_check(result, ref[0], ref[1], args["return_grad"].value, dt, scale)

    _count(fn, check(call, compare))


@given(data=st.data(), fn=st.sampled_from(["spherical_softmax", "taylor_softmax", "stablemax"]))
def test_normalizers(data, fn):
    x = data.draw(x_arg(lo=-3.0, hi=3.0), "x")
    ndim = len(_shape_of(x)) if x.meaning is not None else 1
    args = {"x": x, "axis": data.draw(axis_arg(ndim), "axis")}
    if fn == "spherical_softmax":
        args["eps"] = data.draw(float_option(st.sampled_from([1e-6, 0.5]), [0.0, -1.0]), "eps")
    args["num_threads"] = data.draw(num_threads_option(), "num_threads")
    call = Call(getattr(losses, fn), args, positional=("x",))

    def compare(result):
        m, axis = np.array(x.meaning, np.float64), int(args["axis"].meaning)
        if fn == "spherical_softmax":
            ref = rl.ref_spherical_softmax(m, axis, args["eps"].meaning)
        elif fn == "taylor_softmax":
            ref = rl.ref_taylor_softmax(m, axis)
        else:
            ref = rl.ref_stablemax(m, axis)
        assert framework_of(result) == framework_of(x.value)
        assert_close(result, ref, fn, atol_scale=10)

    _count(fn, check(call, compare))


@given(data=st.data())
def test_kl_div(data):
    s = data.draw(logits_arg(), "student_logits")
    shape = _shape_of(s)
    t = (
        data.draw(float_array(shape=shape, dtype=as_numpy(s.value).dtype), "teacher_logits")
        if s.verdict == VALID and data.draw(st.integers(0, 5))
        else data.draw(odd_array(), "teacher_logits")
    )
    args = {
        "student_logits": s,
        "teacher_logits": t,
        "temperature": data.draw(
            float_option(st.sampled_from([1.0, 2.0, 0.5]), [0.0, -1.0]), "temperature"
        ),
        "reduction": data.draw(choice_option(("batchmean", "sum", "mean", "none")), "reduction"),
        "return_grad": Arg(data.draw(st.booleans(), "return_grad")),
        "num_threads": data.draw(num_threads_option(), "num_threads"),
    }
    call = Call(losses.kl_div, args, positional=("student_logits", "teacher_logits"))

    def compare(result):
        dt = as_numpy(s.value).dtype
        ref = rl.ref_kl_div(
            np.array(s.meaning, np.float64), np.array(t.meaning, np.float64),
            args["temperature"].meaning, args["reduction"].meaning,
        )  # fmt: skip
        _ref_loss_check(result, ref[0], ref[1], args["return_grad"].value, dt, 100)

    _count("kl_div", check(call, compare))


@given(data=st.data())
def test_hl_gauss(data):
    values = data.draw(
        with_odds_strategy(float_array(shape=(data.draw(st.integers(0, 6)),)), odd_array()),
        "values",
    )
    args = {
        "values": values,
        "vmin": data.draw(float_option(st.sampled_from([-1.0, 0.0]), [float("inf")]), "vmin"),
        "vmax": data.draw(float_option(st.sampled_from([1.0, 5.0]), [-5.0]), "vmax"),
        "num_bins": data.draw(int_option(st.integers(1, 40), invalid_ints=[0, -3]), "num_bins"),
        "sigma": data.draw(
            st.one_of(st.just(Arg(None)), float_option(st.sampled_from([0.1]), [0.0, -1.0])),
            "sigma",
        ),
    }
    call = Call(losses.hl_gauss_targets, args, positional=("values", "vmin", "vmax", "num_bins"))

    def compare(result):
        v = np.array(values.meaning, np.float64)
        ref = rl.ref_hl_gauss_targets(
            v, args["vmin"].meaning, args["vmax"].meaning, int(args["num_bins"].meaning),
            args["sigma"].meaning,
        )  # fmt: skip
        assert_close(result, ref, "hl_gauss_targets", atol_scale=10)
        back = losses.hl_gauss_values(result, args["vmin"].meaning, args["vmax"].meaning)
        assert_close(back, rl.ref_hl_gauss_values(as_numpy(result), args["vmin"].meaning,
                                                  args["vmax"].meaning), "hl_gauss_values")  # fmt: skip

    _count("hl_gauss", check(call, compare))


def with_odds_strategy(valid, odd):
    @st.composite
    def pick(draw):
        return with_odds(draw, valid, odd)

    return pick()


# ---- runtime settings --------------------------------------------------------------------------


ISA_NAMES = st.one_of(st.sampled_from(softzo.info()["isas_available"]).map(
    lambda v: Arg(v, VALID)), st.sampled_from(["avx1024", "", None, 2, b"avx2", "AVX2"]).map(
    lambda v: Arg(v, INVALID)))  # fmt: skip


@given(value=ISA_NAMES)
def test_set_isa(value):
    before = softzo.info()["isa"]
    call = Call(softzo.set_isa, {"name": value}, positional=("name",))
    try:
        _count("set_isa", check(call, lambda r: None))
        if value.verdict == VALID:
            assert softzo.info()["isa"] == value.value
    finally:
        softzo.set_isa(before)


@given(value=ISA_NAMES)
def test_using_isa(value):
    before = softzo.info()["isa"]

    def enter(name):
        with softzo.using_isa(name):
            return softzo.info()["isa"]

    def same_isa(result):
        assert result == value.value, (result, value.value)

    call = Call(enter, {"name": value}, positional=("name",))
    _count("using_isa", check(call, same_isa))
    assert softzo.info()["isa"] == before  # the block's setting ends with it


@given(value=num_threads_option())
def test_set_num_threads(value):
    before = softzo.info()["num_threads"]
    call = Call(softzo.set_num_threads, {"n": value}, positional=("n",))
    if value.value is None:
        value.verdict = INVALID
    try:
        _count("set_num_threads", check(call, lambda r: None))
        if value.verdict == VALID:
            assert softzo.info()["num_threads"] == value.meaning
    finally:
        softzo.set_num_threads(before)


@given(value=int_option(st.integers(1, 4), invalid_ints=[0, -2]))
def test_set_blas_threads(value):
    before = spherical.blas_threads()
    call = Call(spherical.set_blas_threads, {"num_threads": value}, positional=("num_threads",))
    try:
        _count("set_blas_threads", check(call, lambda r: None))
    finally:
        spherical.set_blas_threads(before)


# ---- the factored output layer ----------------------------------------------------------------


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


# ---- softzo.torch: the autograd functions on tensors ---------------------------------------------


@st.composite
def tensor_logits(draw, half_ok: bool):
    """(N, V) CPU tensors: float32/float64 (maybe requiring grad, maybe non-contiguous),
    float16/bfloat16 (valid where ``half_ok``), int64, or a NumPy array in disguise."""
    import torch

    shape = draw(st.tuples(st.integers(1, 4), st.integers(1, 9)))
    base = draw(values(shape, np.float64, -8.0, 8.0))
    kind = draw(mostly(st.sampled_from(["float32", "float64"]),
                       st.sampled_from(["float16", "bfloat16", "int64", "numpy"]), 6))  # fmt: skip
    if kind == "numpy":
        return Arg(base.astype(np.float32), EITHER, base.astype(np.float32), "numpy")
    t = torch.tensor(base, dtype=getattr(torch, kind))
    if draw(st.booleans()) and shape[0] > 1:
        t = t.t().contiguous().t()  # non-contiguous rows
    if kind.startswith("float") and kind != "float16" and draw(st.booleans()):
        t.requires_grad_(True)
    valid = ("float32", "float64") + (("float16", "bfloat16") if half_ok else ())
    verdict = VALID if kind in valid else INVALID
    return Arg(t, verdict, t.detach().double().numpy(), kind)


@pytest.mark.skipif(not HAVE_TORCH, reason="torch is not installed")
@given(
    data=st.data(),
    fn=st.sampled_from(["cross_entropy", "z_loss", "stablemax_cross_entropy", "spherical_loss",
                        "comp_sum_loss", "kl_div"]),
)  # fmt: skip
def test_torch_functions(data, fn):
    import softzo.torch as szt
    import torch

    logits = data.draw(tensor_logits(fn != "stablemax_cross_entropy"), "logits")
    n, v = np.shape(logits.meaning)
    name = {"z_loss": "outputs", "spherical_loss": "o", "kl_div": "student_logits"}.get(
        fn, "logits"
    )
    args = {name: logits}
    if fn == "kl_div":
        teacher = data.draw(values((n, v), np.float64, -8.0, 8.0), "teacher")
        tdt = logits.value.dtype if isinstance(logits.value, torch.Tensor) else torch.float32
        args["teacher_logits"] = Arg(torch.tensor(teacher, dtype=tdt), VALID, teacher)
        args["temperature"] = data.draw(float_option(st.sampled_from([1.0, 2.0]), [0.0]), "T")
        args["reduction"] = data.draw(choice_option(("batchmean", "sum", "mean", "none")), "red")
    else:
        t = data.draw(st.lists(st.integers(0, v - 1), min_size=n, max_size=n), "t")
        target = data.draw(
            mostly(
                st.just(Arg(torch.tensor(t), VALID, np.array(t))),
                st.sampled_from(
                    [Arg(torch.tensor(t, dtype=torch.float32), INVALID),
                     Arg(torch.tensor([v] * n), INVALID), Arg(torch.tensor(t[:-1] or [0, 0]), INVALID)]
                ),
            ),
            "target",
        )  # fmt: skip
        args["target"] = target
        args["reduction"] = data.draw(choice_option(REDUCTIONS), "reduction")
    if fn == "comp_sum_loss":
        args["tau"] = data.draw(float_option(st.sampled_from([0.5, 1.0, 2.0]), [-1.0]), "tau")
    call = Call(
        getattr(szt, fn),
        args,
        positional=(name, "target", "tau")[: 3 if fn == "comp_sum_loss" else 2],
    )
    if fn == "kl_div":
        call.positional = (name, "teacher_logits")

    def compare(result):
        assert framework_of(result) == framework_of(logits.value)
        x = np.array(logits.meaning)
        red = args["reduction"].meaning
        if fn == "cross_entropy":
            ref = rl.ref_cross_entropy(x, args["target"].meaning, reduction=red)
        elif fn == "z_loss":
            ref = rl.ref_z_loss(x, args["target"].meaning, reduction=red)
        elif fn == "stablemax_cross_entropy":
            ref = rl.ref_stablemax_cross_entropy(x, args["target"].meaning, red)
        elif fn == "spherical_loss":
            ref = rl.ref_spherical_loss(x, args["target"].meaning, reduction=red)
        elif fn == "comp_sum_loss":
            ref = rl.ref_comp_sum_loss(x, args["target"].meaning, args["tau"].meaning, red)
        else:
            ref = rl.ref_kl_div(x, args["teacher_logits"].meaning, args["temperature"].meaning, red)
        dt = str(result.dtype) if str(result.dtype) == "torch.bfloat16" else as_numpy(result).dtype
        assert_close(result, ref[0], "loss", dtype=dt, atol_scale=1e3)
        lt = logits.value
        if isinstance(lt, torch.Tensor) and lt.requires_grad:
            upstream = torch.ones_like(result)
            (grad,) = torch.autograd.grad(result, lt, upstream)
            assert_close(grad, ref[1], "grad", dtype=dt, atol_scale=1e3)

    _count(f"torch.{fn}", check(call, compare))
