"""Float64/long-double references with PyTorch's semantics, and the tolerances we promise."""

import numpy as np

# Long double (80-bit on x86-64) so that x - max is exact for float32 and nearly so for float64.
WIDE = np.longdouble

# The bounds promised (and measured by tests/test_log_accuracy.py): every output within 4 ulp
# of the correctly rounded answer, relatively, however close to 0 it is; logsumexp within 4 ulp
# of max(|lse|, lse - max) (the second term matters only where max + (lse - max) cancels). Below
# 4x the smallest normal the kernels flush rather than form subnormals, which is the absolute
# floor there.
MAX_ULP = 4.0
# Softmax probabilities in float64 by the online algorithm reach 4.4 ulp: its double lane states
# merge without compensation (the other algorithms measure <= 3.2, float32 <= 2.3).
SOFTMAX_MAX_ULP = {np.float32: 4.0, np.float64: 5.0}


def _rows(x, axis):
    return np.moveaxis(np.asarray(x), axis, -1).astype(WIDE)


def _bad_rows(xl):
    """Rows PyTorch turns into NaN: a NaN or +inf anywhere, or only -inf."""
    return np.isnan(xl).any(-1) | np.isposinf(xl).any(-1) | np.isneginf(xl).all(-1)


def _max_and_log1p_rest(xl):
    """Per row (last axis): the max m, and lse - m = log1p(rest) with rest = the sum over all
    elements but one occurrence of the max of exp(x - m), so that the max's own term is exactly
    1 and lse - m keeps its relative accuracy near 0. Rows without a finite max give m = 0."""
    with np.errstate(all="ignore"):
        m = xl.max(-1, initial=-np.inf)
        m = np.where(np.isfinite(m), m, 0)
        e = np.exp(xl - m[..., None])
        if xl.shape[-1]:
            first = np.expand_dims(np.argmax(xl, -1), -1)
            np.put_along_axis(e, first, 0, -1)
        return m, np.log1p(e.sum(-1))


def ref_softmax(x, axis=-1, all_masked="nan"):
    xl = _rows(x, axis)
    m, lse_m = _max_and_log1p_rest(xl)
    with np.errstate(all="ignore"):
        y = np.exp((xl - m[..., None]) - lse_m[..., None])
    if xl.shape[-1]:
        y[_bad_rows(xl)] = np.nan
        if all_masked == "zero":
            y[np.isneginf(xl).all(-1)] = 0
    return np.moveaxis(y, -1, axis)


def ref_log_softmax(x, axis=-1):
    xl = _rows(x, axis)
    m, lse_m = _max_and_log1p_rest(xl)
    with np.errstate(all="ignore"):
        y = (xl - m[..., None]) - lse_m[..., None]
    if xl.shape[-1]:
        y[_bad_rows(xl)] = np.nan
    return np.moveaxis(y, -1, axis)


def ref_logsumexp(x, axis=-1, parts=False):
    """lse per row with PyTorch's special values; with parts=True also (max, lse - max)."""
    xl = _rows(x, axis)
    out = np.full(xl.shape[:-1], -np.inf, dtype=WIDE)
    m = np.zeros(xl.shape[:-1], WIDE)
    lse_m = np.zeros(xl.shape[:-1], WIDE)
    if xl.shape[-1]:
        m, lse_m = _max_and_log1p_rest(xl)
        out = m + lse_m
        out = np.where(np.isposinf(xl).any(-1), np.inf, out)
        out = np.where(np.isneginf(xl).all(-1), -np.inf, out)
        out = np.where(np.isnan(xl).any(-1), np.nan, out)
    return (out, m, lse_m) if parts else out


def ulp_error(y, ref, dtype):
    """|y - ref| in ulps of ref rounded to dtype, for finite ref; where |ref| is below 4x the
    smallest normal (the kernels' flush floor) an error within that floor counts 0."""
    ref = np.asarray(ref, WIDE)
    err = np.abs(np.asarray(y).astype(WIDE) - ref)
    floor = WIDE(np.finfo(dtype).tiny) * 4
    with np.errstate(over="ignore", invalid="ignore"):
        spacing = np.spacing(np.abs(ref).astype(dtype)).astype(WIDE)
        ulps = err / spacing
    small = np.abs(ref) < floor
    return np.where(small, np.where(err <= floor, 0, np.inf), ulps)


def softmax_error(y, ref):
    """The largest ulp error over finite reference outputs."""
    y = np.asarray(y)
    finite = np.isfinite(ref)
    return ulp_error(y[finite], ref[finite], y.dtype.type).max(initial=0)


def log_error(y, ref):
    """The largest ulp error over outputs finite in both (infinities are compared exactly)."""
    y = np.asarray(y)
    finite = np.isfinite(ref) & np.isfinite(y)
    return ulp_error(y[finite], ref[finite], y.dtype.type).max(initial=0)


def lse_error(lse, ref, lse_m):
    """logsumexp's ulp error, in ulps of max(|lse|, lse - max), over finite outputs."""
    lse = np.asarray(lse)
    finite = np.isfinite(ref) & np.isfinite(lse)
    ref, lse_m = ref[finite], lse_m[finite]
    scale = np.maximum(np.abs(ref), lse_m)
    err = np.abs(lse[finite].astype(WIDE) - ref)
    return ulp_error(scale + err, scale, lse.dtype.type).max(initial=0)


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
    assert (np.asarray(y)[~np.isnan(ref)] <= 1).all(), "softmax entry above 1"
    err = softmax_error(y, ref)
    bound = SOFTMAX_MAX_ULP[np.asarray(y).dtype.type]
    assert err <= bound, f"softmax error {float(err):.3g} ulp"


def check_log_softmax(y, x, axis=-1):
    ref = ref_log_softmax(x, axis)
    assert_same_specials(y, ref)
    assert not (np.asarray(y) > 0).any(), "positive log-probability"
    err = log_error(y, ref)
    assert err <= MAX_ULP, f"log_softmax error {float(err):.3g} ulp"


def check_logsumexp(y, x, axis=-1):
    ref, _, lse_m = ref_logsumexp(x, axis, parts=True)
    y = np.asarray(y)
    assert y.shape == ref.shape
    assert_same_specials(y, ref)
    err = lse_error(y, ref, lse_m)
    assert err <= MAX_ULP, f"logsumexp error {float(err):.3g} ulp"
