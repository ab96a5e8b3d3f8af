"""Float64/long-double references with PyTorch's semantics, and the tolerances we promise."""

import numpy as np

# Long double (80-bit on x86-64) so that x - max is exact for float32 and nearly so for float64.
WIDE = np.longdouble

# Softmax: relative error for outputs >= 1e-30 (about 4 ulp in float32); log_softmax and
# logsumexp: absolute error relative to max(1, |value|). From ALGORITHMS.md §1.
SOFTMAX_RTOL = {np.float32: 5e-7, np.float64: 1e-13}
LOG_ATOL = {np.float32: 1e-6, np.float64: 1e-13}


def _rows(x, axis):
    return np.moveaxis(np.asarray(x), axis, -1).astype(WIDE)


def _bad_rows(xl):
    """Rows PyTorch turns into NaN: a NaN or +inf anywhere, or only -inf."""
    return np.isnan(xl).any(-1) | np.isposinf(xl).any(-1) | np.isneginf(xl).all(-1)


def ref_softmax(x, axis=-1, all_masked="nan"):
    xl = _rows(x, axis)
    with np.errstate(all="ignore"):
        m = xl.max(-1, keepdims=True, initial=-np.inf)
        e = np.exp(xl - m)
        y = e / e.sum(-1, keepdims=True)
    if xl.shape[-1]:
        y[_bad_rows(xl)] = np.nan
        if all_masked == "zero":
            y[np.isneginf(xl).all(-1)] = 0
    return np.moveaxis(y, -1, axis)


def ref_log_softmax(x, axis=-1):
    xl = _rows(x, axis)
    with np.errstate(all="ignore"):
        m = xl.max(-1, keepdims=True, initial=-np.inf)
        y = (xl - m) - np.log(np.exp(xl - m).sum(-1, keepdims=True))
    if xl.shape[-1]:
        y[_bad_rows(xl)] = np.nan
    return np.moveaxis(y, -1, axis)


def ref_logsumexp(x, axis=-1):
    xl = _rows(x, axis)
    out = np.full(xl.shape[:-1], -np.inf, dtype=WIDE)
    if xl.shape[-1] == 0:
        return out
    with np.errstate(all="ignore"):
        m = xl.max(-1)
        finite_m = np.where(np.isfinite(m), m, 0)
        out = finite_m + np.log(np.exp(xl - finite_m[..., None]).sum(-1))
    out = np.where(np.isposinf(xl).any(-1), np.inf, out)
    out = np.where(np.isneginf(xl).all(-1), -np.inf, out)
    out = np.where(np.isnan(xl).any(-1), np.nan, out)
    return out


def softmax_error(y, ref):
    """(max relative error over outputs >= 1e-30, max absolute error below, where flushing
    denormal results to zero is allowed)."""
    y = np.asarray(y, dtype=WIDE)
    finite = ~np.isnan(ref)
    big = finite & (ref >= 1e-30)
    small = finite & ~big
    rel = (np.abs(y[big] - ref[big]) / ref[big]).max(initial=0)
    return rel, np.abs(y[small] - ref[small]).max(initial=0)


def log_error(y, ref):
    y = np.asarray(y, dtype=WIDE)
    finite = np.isfinite(ref) & np.isfinite(y)  # infinities are compared exactly above
    err = np.abs(y[finite] - ref[finite]) / np.maximum(1, np.abs(ref[finite]))
    return err.max(initial=0)


def assert_same_specials(y, ref):
    """NaN exactly where the reference has NaN, and the infinities of the reference rounded to
    y's dtype (a log-softmax of -FLT_MAX next to FLT_MAX is -inf in float32)."""
    y = np.asarray(y)
    with np.errstate(over="ignore"):
        rounded = ref.astype(y.dtype)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(rounded))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(rounded))
    inf = np.isinf(rounded)
    np.testing.assert_array_equal(y[inf], rounded[inf])


def check_softmax(y, x, axis=-1, all_masked="nan"):
    ref = ref_softmax(x, axis, all_masked)
    assert_same_specials(y, ref)
    # -inf inputs give exactly 0 (not merely tiny) in rows that are not NaN.
    zero = np.isneginf(np.asarray(x)) & ~np.isnan(ref)
    assert not np.asarray(y)[zero].any()
    rel, small = softmax_error(y, ref)
    assert rel <= SOFTMAX_RTOL[np.asarray(y).dtype.type], f"softmax relative error {rel:.3g}"
    assert small <= 1e-30, f"softmax error {small:.3g} on outputs below 1e-30"


def check_log_softmax(y, x, axis=-1):
    ref = ref_log_softmax(x, axis)
    assert_same_specials(y, ref)
    err = log_error(y, ref)
    assert err <= LOG_ATOL[np.asarray(y).dtype.type], f"log_softmax error {err:.3g}"


def check_logsumexp(y, x, axis=-1):
    ref = ref_logsumexp(x, axis)
    y = np.asarray(y)
    assert y.shape == ref.shape
    assert_same_specials(y, ref)
    err = log_error(y, ref)
    assert err <= LOG_ATOL[y.dtype.type], f"logsumexp error {err:.3g}"
