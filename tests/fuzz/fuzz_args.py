"""What the API fuzz modules (fuzz_softmax_losses.py, fuzz_optim.py) share: the per-function
call counts they report, and the argument strategies more than one function draws from (arrays,
axes, out= arrays, logits and class targets).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import strategies as st
from oracle import (
    EITHER,
    HAVE_TORCH,
    INVALID,
    VALID,
    Arg,
    as_numpy,
    float_array,
    mostly,
    odd_array,
    with_odds,
)

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


def with_odds_strategy(valid, odd):
    @st.composite
    def pick(draw):
        return with_odds(draw, valid, odd)

    return pick()
