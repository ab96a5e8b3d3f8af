"""Hypothesis fuzz of softzo's softmax family, softzo.losses, softzo.torch's autograd
functions and the runtime settings (set_isa, using_isa, set_num_threads): each call either
returns the reference result or raises TypeError/ValueError naming a doubtful argument
(tests/fuzz/oracle.py). The optimisers and the factored layer are in fuzz_optim.py.

Not collected by the main run: tests/fuzz/test_fuzz.py runs this file in a child pytest, so
that a crash fails a test (and names the last case) instead of ending the session.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/: the references

import reference_losses as rl
import softzo
from fuzz_args import (
    _compute_dtype,
    _count,
    _shape_of,
    axis_arg,
    logits_arg,
    out_arg,
    report_counts,  # noqa: F401 - the fixture that writes the counts
    target_arg,
    with_odds_strategy,
    x_arg,
)
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
)
from reference import ref_log_softmax, ref_logsumexp, ref_softmax
from softzo import losses

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
