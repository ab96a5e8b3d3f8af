"""The fuzz's oracle: argument strategies that say whether a drawn value must be accepted, and
the check that a call either returns the reference result or names a doubtful argument.

Every drawn argument comes with a verdict: VALID (the call must accept it), INVALID (the call
must raise TypeError or ValueError) or EITHER (accepting it is fine if the result is right).
A call whose arguments are all VALID must return the reference; otherwise it must raise a
TypeError/ValueError whose message names one of the arguments that were not VALID, or (with
no INVALID argument) return the reference.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

VALID, EITHER, INVALID = "valid", "either", "invalid"
HAVE_TORCH = "torch" in sys.modules or bool(__import__("importlib").util.find_spec("torch"))
try:  # pandas is optional: its frames are fuzzed where it is installed
    import pandas
except ImportError:
    pandas = None


@dataclass
class Arg:
    """A drawn argument: the value passed, a copy of what it means (for the reference), and
    the verdict."""

    value: Any
    verdict: str = VALID
    meaning: Any = None
    note: str = ""


@dataclass
class Call:
    fn: Callable
    args: dict[str, Arg]
    positional: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def doubtful(self) -> list[str]:
        return [k for k, a in self.args.items() if a.verdict != VALID]

    def must_raise(self) -> bool:
        return any(a.verdict == INVALID for a in self.args.values())

    def describe(self) -> str:
        parts = []
        for k, a in self.args.items():
            v = a.value
            desc = (
                f"ndarray(shape={v.shape}, dtype={v.dtype}, strides={v.strides}, "
                f"type={type(v).__name__})"
                if isinstance(v, np.ndarray)
                else f"{type(v).__name__}:{_short(v)}"
            )
            parts.append(f"{k}={desc} [{a.verdict}{' ' + a.note if a.note else ''}]")
        return f"{getattr(self.fn, '__qualname__', self.fn)}(" + ", ".join(parts) + ")"

    def invoke(self):
        pos = [self.args[k].value for k in self.positional]
        kw = {k: a.value for k, a in self.args.items() if k not in self.positional}
        return self.fn(*pos, **kw)


def _short(v) -> str:
    r = repr(v)
    return r if len(r) < 120 else r[:117] + "..."


def log_case(call: Call) -> None:
    """Writes the call about to run where the parent can read it if this process dies."""
    path = os.environ.get("SOFTZO_FUZZ_LAST_CASE")
    if path:
        with open(path, "w") as f:
            f.write(call.describe())


def check(call: Call, compare: Callable[[Any], None]) -> str:
    """Runs the call and applies the oracle; returns "returned" or "raised"."""
    log_case(call)
    try:
        result = call.invoke()
    except (TypeError, ValueError) as e:
        doubtful = call.doubtful()
        assert doubtful, f"{call.describe()} raised {type(e).__name__}: {e}"
        msg = str(e)
        if os.environ.get("FUZZ_DEBUG"):
            print("RAISED", type(e).__name__, msg[:150], "|", call.doubtful(), file=sys.stderr)
        assert any(name in msg for name in doubtful), (
            f"{type(e).__name__} does not name any of {doubtful}: {msg!r}\n{call.describe()}"
        )
        return "raised"
    assert not call.must_raise(), f"{call.describe()} returned instead of raising"
    compare(result)
    return "returned"


# ---- value strategies ------------------------------------------------------------------------

FLOATS = {np.dtype(np.float32): 32, np.dtype(np.float64): 64}
ODD_DTYPES = [
    "int8", "int32", "int64", "uint8", "uint64", "bool", "complex64", "complex128", "float16",
    "longdouble", ">f4", ">f8", "object", "U3", "datetime64[s]",
]  # fmt: skip


@st.composite
def shapes(draw, min_dims=1, max_dims=3, max_side=7):
    dims = draw(st.integers(min_dims, max_dims))
    sides = st.one_of(st.integers(0, max_side), st.sampled_from([1, 2, 64, 257]))
    shape = tuple(draw(sides) for _ in range(dims))
    while np.prod(shape, dtype=np.int64) > 5000:
        shape = tuple(max(1, s // 2) for s in shape)
    return shape


@st.composite
def values(draw, shape, dtype, lo=-20.0, hi=20.0):
    """Finite values of dtype (float32 / float64) in [lo, hi]."""
    width = FLOATS[np.dtype(dtype)]
    # No magnitudes below 1e-6 (they become 0): this fuzz is about the API, and squares of
    # such values underflow in the spherical family (see the report on the Z-loss).
    element = st.floats(lo, hi, width=width).map(lambda v: v if abs(v) >= 1e-6 else 0.0)
    return draw(hnp.arrays(dtype, shape, elements=element))


@st.composite
def layouts(draw, a: np.ndarray) -> tuple[np.ndarray, str]:
    """The same values in another memory layout: Fortran order, reversed strides, a large
    stride, an unaligned buffer or a read-only view."""
    kind = draw(st.sampled_from(["c", "f", "reversed", "strided", "unaligned", "readonly"]))
    if kind == "f":
        return np.asfortranarray(a), kind
    if kind == "reversed" and a.ndim:
        rev = np.ascontiguousarray(a[(slice(None, None, -1),) * a.ndim])
        return rev[(slice(None, None, -1),) * a.ndim], kind
    if kind == "strided" and a.ndim:
        step = draw(st.sampled_from([2, 3, 1000]))
        big = np.zeros((a.shape[0] * step,) + a.shape[1:], a.dtype)
        big[::step] = a
        return big[::step], kind
    if kind == "unaligned" and a.size:
        raw = np.zeros(a.nbytes + 1, np.uint8)
        u = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        u[...] = a
        return u, kind
    if kind == "readonly":
        r = a.copy()
        r.flags.writeable = False
        return r, kind
    return np.ascontiguousarray(a), "c"


@st.composite
def float_array(draw, shape=None, dtype=None, min_dims=1, max_dims=3, lo=-20.0, hi=20.0):
    """A valid float input: float32/float64 in NumPy (any layout), torch, or a list."""
    shape = draw(shapes(min_dims, max_dims)) if shape is None else shape
    dtype = draw(st.sampled_from([np.float32, np.float64])) if dtype is None else dtype
    a = draw(values(shape, dtype, lo, hi))
    wrapper = draw(st.sampled_from(["numpy", "numpy", "numpy", "layout", "torch", "list"]))
    if wrapper == "layout":
        v, note = draw(layouts(a))
        return Arg(v, VALID, a, note)
    if wrapper == "torch" and HAVE_TORCH:
        import torch

        t = torch.from_numpy(a.copy())
        if a.ndim >= 2 and draw(st.booleans()):
            t = t.transpose(0, 1).contiguous().transpose(0, 1)  # non-contiguous
        return Arg(t, VALID, a, "torch")
    if wrapper == "list" and a.size and dtype == np.float64:
        return Arg(a.tolist(), VALID, a, "list")
    return Arg(a, VALID, a)


@st.composite
def odd_array(draw, shape=None, min_dims=0, max_dims=3):
    """Something that is not a float32/float64 array: another dtype, a 0-d array, a masked
    array, a pandas frame, a scalar, None, a string, ragged lists, a broadcast view."""
    shape = draw(shapes(min_dims, max_dims)) if shape is None else shape
    kind = draw(
        st.sampled_from(
            ["dtype", "dtype", "zero_dim", "masked", "pandas", "scalar", "none", "str", "ragged",
             "broadcast", "nonfinite_object"]
        )
    )  # fmt: skip
    base = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(0, 3, shape)
    if kind == "dtype":
        dt = draw(st.sampled_from(ODD_DTYPES))
        try:
            a = base.astype(dt)
        except (TypeError, ValueError):
            a = base.astype(object)
        meaning = a.astype(np.float64) if a.dtype.kind in "iubf" else None
        return Arg(a, EITHER, meaning, f"dtype {a.dtype}")
    if kind == "zero_dim":  # refused by the array functions (x0 of minimize takes it)
        zero_dim = np.float32(1.5) if draw(st.booleans()) else np.array(2.0)
        return Arg(zero_dim, INVALID, np.asarray(zero_dim, np.float64), "0-d")
    if kind == "masked":
        m = np.ma.masked_array(base, mask=base > 0)
        return Arg(m, INVALID, None, "masked array (its mask would be ignored)")
    if kind == "pandas" and pandas is not None and base.ndim == 2:
        return Arg(pandas.DataFrame(base), EITHER, base, "pandas")
    if kind == "broadcast" and base.ndim >= 1 and base.size:
        b = np.broadcast_to(base[:1].astype(np.float32), (3,) + base.shape[1:])
        return Arg(b, EITHER, np.array(b), "broadcast view (stride 0)")
    if kind == "ragged":
        return Arg([[1.0, 2.0], [3.0]], INVALID, None, "ragged list")
    if kind == "str":
        return Arg("abc", INVALID, None)
    if kind == "nonfinite_object":
        return Arg(np.array([object(), 1.0], dtype=object), INVALID, None)
    if kind == "none":
        return Arg(None, INVALID, None)
    return Arg(1.5, INVALID, None, "scalar")


# Half the examples draw every argument from its valid strategy (one draw shared by all the
# arguments of an example), so that many calls reach the reference comparison.
ALL_VALID = st.shared(st.booleans(), key="softzo-fuzz-all-valid")


@st.composite
def mostly(draw, valid: st.SearchStrategy, bad: st.SearchStrategy, one_in: int = 12):
    """The bad strategy once in ``one_in`` draws, else the valid one (always the valid one in
    an all-valid example)."""
    if draw(ALL_VALID) or draw(st.integers(0, one_in - 1)) != 0:
        return draw(valid)
    return draw(bad)


def int_option(valid: st.SearchStrategy, invalid_ints=(), none_ok: bool = False):
    """An int argument: a valid value, or an int out of range, or not an int at all. ``none_ok``:
    None is valid too (an optional setting such as a seed)."""
    if none_ok:
        valid = st.one_of(valid, st.none())
    not_ints = [1.5, "2", b"1", [1], 2**70, -(2**64)] + ([] if none_ok else [None])
    bad = st.one_of(
        st.sampled_from(list(invalid_ints) or [-(2**70)]).map(lambda v: Arg(v, INVALID)),
        st.sampled_from(not_ints).map(lambda v: Arg(v, INVALID, note="not an int in range")),
        st.sampled_from([True, np.int64(1)]).map(lambda v: Arg(v, EITHER, int(v))),
    )
    return mostly(valid.map(lambda v: Arg(v, VALID, v)), bad)


def float_option(valid: st.SearchStrategy, invalid: list, either: list = ()):
    """A float argument: valid, or out of range / NaN / not a number (invalid), or a value
    some calls may accept (``either``; a numeric string counts, as float() reads it)."""
    bad = st.one_of(
        st.sampled_from([*invalid, float("nan"), None, [0.1], 1j]).map(lambda v: Arg(v, INVALID)),
        st.sampled_from([*either, "0.25"]).map(lambda v: Arg(v, EITHER, float(v))),
    )
    return mostly(valid.map(lambda v: Arg(v, VALID, v)), bad)


def choice_option(choices, invalid=("nope", "", None, 3, b"mean")):
    return mostly(
        st.sampled_from(list(choices)).map(lambda v: Arg(v, VALID, v)),
        st.sampled_from(list(invalid)).map(lambda v: Arg(v, INVALID)),
    )


def num_threads_option():
    return mostly(
        st.sampled_from([None, 1, 2, 3, 64]).map(lambda v: Arg(v, VALID, v)),
        st.one_of(
            st.sampled_from([0, -1, 1.5, "2", 2**31, 2**63, 2**70, [2]]).map(
                lambda v: Arg(v, INVALID)
            ),
            st.sampled_from([True, np.int32(2)]).map(lambda v: Arg(v, EITHER, int(v))),
        ),
    )


def with_odds(draw, valid_strategy, odd_strategy, one_in=6):
    """Mostly the valid strategy, sometimes the odd one (so most calls are valid)."""
    return draw(mostly(valid_strategy, odd_strategy, one_in))


# ---- result comparison -----------------------------------------------------------------------


def as_numpy(result) -> np.ndarray:
    if HAVE_TORCH and type(result).__module__.startswith("torch"):
        t = result.detach().cpu()
        return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
    return np.asarray(result)


def tolerance(dtype) -> tuple[float, float]:
    if str(dtype) in ("bfloat16", "torch.bfloat16"):  # 8 significant bits
        return 1.6e-2, 1e-3
    dt = np.dtype(dtype)
    if dt == np.float64:
        return 1e-10, 1e-12
    if dt == np.float16:
        return 2e-3, 1e-4
    return 2e-5, 2e-6


def assert_close(got, want, what="result", dtype=None, atol_scale=1.0):
    got_np = as_numpy(got)
    want = np.asarray(want, dtype=np.float64)
    assert got_np.shape == want.shape, f"{what}: shape {got_np.shape}, reference {want.shape}"
    rtol, atol = tolerance(dtype or got_np.dtype)
    np.testing.assert_allclose(
        got_np.astype(np.float64), want, rtol=rtol, atol=atol * atol_scale, err_msg=what
    )


def framework_of(value) -> str:
    if HAVE_TORCH and type(value).__module__.startswith("torch"):
        return "torch"
    return "numpy"
