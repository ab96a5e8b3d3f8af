"""Helpers shared by the half-precision tests (tests/test_half*.py): the two types, errors in
ulps of a half type, conversions to and from torch, and the accuracy checks against PyTorch and
of the fused softmax."""

import numpy as np
import pytest
import softzo

HALF = ["float16", "bfloat16"]
# Mantissa bits and the least normal exponent of each half type.
_FORMAT = {"float16": (10, -14), "bfloat16": (7, -126)}
# The kernels flush results below 4x float32's least normal (bfloat16 shares its range).
_FLUSH = 4 * float(np.finfo(np.float32).tiny)
# Where a result cancels, the float32 pipeline's error is a few float32 ulps of the terms'
# scale s, not of the result: 4 * 2^-23 s is 1/2 ulp of the half type at 2^-11 s (float16) or
# 2^-14 s (bfloat16), so errors are measured in ulps of max(|ref|, that floor).
_CANCEL_FLOOR = {"float16": 2.0**-11, "bfloat16": 2.0**-14}


def half_dtype(name):
    if name == "float16":
        return np.dtype(np.float16)
    return np.dtype(pytest.importorskip("ml_dtypes").bfloat16)


def half_ulps(y, ref, name, scale=0.0):
    """|y - ref| in ulps of the half type at max(|ref|, the cancellation floor of scale), for
    finite ref; a result 0 where |ref| is below the flush floor counts as exact."""
    mant, emin = _FORMAT[name]
    ref = np.asarray(ref, np.float64)
    y = np.asarray(y).astype(np.float64)
    a = np.maximum(np.abs(ref), _CANCEL_FLOOR[name] * scale)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(a > 0, a, 1.0)))
    ulp = np.exp2(np.maximum(e, emin) - mant)
    err = np.abs(y - ref) / ulp
    flushed = (np.abs(ref) < _FLUSH) & (y == 0)
    finite = np.isfinite(ref)
    return np.where(flushed | ~finite, 0.0, err)


def max_ulps(y, ref, name, scale=0.0):
    return float(half_ulps(y, ref, name, scale).max(initial=0.0))


def rounded(x32, name):
    """A float32 array rounded to the half type by NumPy / ml_dtypes (round to nearest even)."""
    return np.asarray(x32, np.float32).astype(half_dtype(name))


def assert_same_bits(y, expected):
    """Bitwise equality of two half arrays (NaN anywhere NaN is expected, any payload)."""
    y, expected = np.asarray(y), np.asarray(expected)
    assert y.dtype == expected.dtype and y.shape == expected.shape
    nan = np.isnan(expected.astype(np.float32))
    np.testing.assert_array_equal(np.isnan(y.astype(np.float32)), nan)
    np.testing.assert_array_equal(y.view(np.uint16)[~nan], expected.view(np.uint16)[~nan])


def to_torch(x):
    """A NumPy half array as a torch tensor of the same type (sharing memory)."""
    torch = pytest.importorskip("torch")
    if x.dtype == np.float16:
        return torch.from_numpy(x)
    return torch.from_numpy(x.view(np.int16)).view(torch.bfloat16)


def from_torch(t):
    return t.detach().double().numpy()


def check_not_worse_than_torch(ours, theirs, what):
    """ours <= max(theirs, 0.5) plus 2^-8 ulp: never worse than PyTorch's half result (or than
    correct rounding, when PyTorch happens to be exact), up to float32's own rounding."""
    assert ours <= max(theirs, 0.5) + 2.0**-8, f"{what}: {ours:.4g} ulp, PyTorch {theirs:.4g}"


# The fused half softmax (kernels/half_softmax/) evaluates its own exp (2^-19 relative, bfloat16;
# 2^-22, float16) and rounds once from float32: within 1/2 + 2^-9 ulp of the exact softmax.
FUSED_BOUND = 0.5 + 2.0**-9


def check_fused_softmax(x, y, ref, name):
    """The fused softmax y of half x against the float64 softmax ref: within FUSED_BOUND ulp,
    and where it differs from the float32 pipeline's result (algorithm="two_pass", correctly
    rounded from a float32 value within ~2^-22), the exact value lies within 2^-8 ulp of the
    midpoint between the two: both are then nearest up to float32's own rounding."""
    assert max_ulps(y, ref, name) <= FUSED_BOUND
    other = np.asarray(softzo.softmax(x, algorithm="two_pass")).astype(np.float64)
    ours = np.asarray(y).astype(np.float64)
    differ = ours != other
    if differ.any():
        mid = (ours[differ] + other[differ]) / 2
        assert max_ulps(mid, ref[differ], name) <= 2.0**-8
