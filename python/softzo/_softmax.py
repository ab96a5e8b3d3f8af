"""softmax, log_softmax and logsumexp: argument rules in Python, numerics in softzo._core."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _cuda
from ._arrays import (
    HALF_DTYPES,
    as_input,
    check_choice,
    check_num_threads,
    check_out,
    dtype_name,
    empty_like_framework,
    finish,
    normalize_axis,
)

ALGORITHMS = ("auto", "two_pass", "three_pass_reload", "three_pass_recompute", "online")
ALL_MASKED = ("nan", "zero")
# What _core takes for an algorithm: its index here, the order of softzo::SoftmaxAlgorithm.
_ALGORITHM_CODES = {name: code for code, name in enumerate(ALGORITHMS)}


def _softmax_family(x, axis, out, algorithm, all_masked, num_threads, log):
    # The common call (valid options, num_threads None or a positive int) goes straight to
    # _core._softmax_any, which checks the array (NumPy, torch or JAX) in C++ and returns None
    # for anything it does not take: 0.8 us for a 16-element NumPy row, where these checks in
    # Python cost 1.3 us (~2 us of a 1K-row call before either; ~9 us for a torch tensor).
    # Anything else, or anything _core refuses (a read-only out), takes the general path,
    # which raises the clear errors; _core's own checks (overlap) name the argument either way.
    if (
        type(axis) is int
        and type(algorithm) is str
        and type(all_masked) is str
        and (num_threads is None or (type(num_threads) is int and num_threads >= 1))
    ):
        code = _ALGORITHM_CODES.get(algorithm)
        if code is not None and (all_masked == "nan" or all_masked == "zero"):
            try:  # TypeError: an axis or thread count beyond C's int
                result = _core._softmax_any(
                    x, out, axis, code, all_masked == "zero", num_threads or 0, log
                )
            except TypeError:
                result = None
            if result is not None:
                return result
    if _cuda.is_device_array(x):
        check_choice(algorithm, "algorithm", ALGORITHMS)
        check_choice(all_masked, "all_masked", ALL_MASKED)
        check_num_threads(num_threads)
        return _cuda.softmax_family(x, axis, out, all_masked, 1 if log else 0)
    xv, framework = as_input(x, "x")
    ax = normalize_axis(axis, xv.ndim)
    check_choice(algorithm, "algorithm", ALGORITHMS)
    check_choice(all_masked, "all_masked", ALL_MASKED)
    threads = check_num_threads(num_threads)
    shape = tuple(xv.shape)
    if out is None:
        result = empty_like_framework(shape, dtype_name(xv), framework)
        target = result
    else:
        target = check_out(out, xv, shape)
        result = out
    code = _ALGORITHM_CODES[algorithm]
    if dtype_name(xv) in HALF_DTYPES:  # _core views every half array itself, with any strides
        done = _core._softmax_any(
            xv, None if out is None else target, ax, code, all_masked == "zero", threads, log
        )
        return _half_result(done, xv, out)
    _core._softmax(xv, target, ax, code, all_masked == "zero", threads, log)
    return finish(result, framework) if out is None else result


def _half_result(done: Any, xv: Any, out: Any = None) -> Any:
    if done is None:  # the arguments passed every check above, so this is a view _core refused
        raise TypeError(f"x: cannot read this {dtype_name(xv)} {type(xv).__name__} in place")
    return done if out is None else out


def softmax(
    x: Any,
    axis: int = -1,
    *,
    out: Any = None,
    algorithm: str = "auto",
    all_masked: str = "nan",
    num_threads: int | None = None,
) -> Any:
    """Softmax along ``axis``: y_i = exp(x_i - max x) / sum_j exp(x_j - max x).

    Args:
        x: float32, float64, float16 or bfloat16 array of any shape and strides: a NumPy array
            (bfloat16: ml_dtypes'), a PyTorch CPU tensor or a JAX CPU array (read without
            copying; never modified unless ``out is x``). Half types are computed in float32
            (each row widened exactly into a per-thread buffer) and rounded once to the type.
            In a build with the CUDA backend, also a float32/float16/bfloat16 CUDA torch tensor
            or CuPy array (the result stays on its device; see README, CUDA).
        axis: the axis to normalise over (any axis, negative counts from the end).
        out: optional array of x's shape and dtype to write into; ``out=x`` works in place.
            It must not otherwise overlap x.
        algorithm: "two_pass" (Dukhan & Ablavatski 2020, extended-exponent sums), "three_pass_reload",
            "three_pass_recompute", "online" (Milakov & Gimelshein 2018), or "auto", which picks by
            row size (three-pass reload in cache, two-pass beyond). float16 / bfloat16 rows of up
            to 2^18 elements take the fused half kernels for "auto" and "three_pass_reload" (their
            own exp, within 1/2 + 2^-9 ulp of the half type; README, float16 and bfloat16), the
            others the float32 kernels on widened rows.
        all_masked: a row of only -inf gives NaN ("nan", PyTorch's answer) or zeros ("zero").
        num_threads: threads for this call (default: ``softzo.info()["num_threads"]``). Results are
            bitwise identical for any count.

    Returns:
        A new array of x's framework (or ``out``). Semantics per row follow PyTorch: -inf entries
        give 0, any NaN or +inf gives a NaN row; +-FLT_MAX and 1e30-style masks give the float64
        answer rounded (max relative error about 4 ulp for outputs >= 1e-30).

    Raises:
        TypeError: x or out of an unsupported dtype (integers, complex) or type.
        ValueError: 0-d x, axis out of range, out of the wrong shape or overlapping x, bad options.
    """
    return _softmax_family(x, axis, out, algorithm, all_masked, num_threads, log=False)


def log_softmax(
    x: Any,
    axis: int = -1,
    *,
    out: Any = None,
    algorithm: str = "auto",
    num_threads: int | None = None,
) -> Any:
    """Log-softmax along ``axis``, computed as (x - m) - log(sum exp(x - m)) (pytorch#11752).

    Same arguments, array rules and errors as :func:`softmax`. A row of only -inf, or with a NaN
    or +inf, gives a NaN row; -inf entries elsewhere give -inf. Absolute error is at most
    1e-6 * max(1, |y|) in float32. For log_softmax the two three-pass variants are the same
    computation (nothing is stored between passes).
    """
    return _softmax_family(x, axis, out, algorithm, "nan", num_threads, log=True)


def logsumexp(
    x: Any,
    axis: int = -1,
    *,
    algorithm: str = "auto",
    num_threads: int | None = None,
) -> Any:
    """log(sum(exp(x))) along ``axis``; the result drops that axis.

    A row with a NaN gives NaN, else a +inf gives +inf, all -inf gives -inf, and an empty row
    gives -inf (PyTorch's convention). 1-D NumPy input gives a NumPy scalar; torch gives a 0-d
    tensor. Errors as :func:`softmax`.
    """
    # The common call skips the general argument handling, as in _softmax_family.
    if (
        type(axis) is int
        and type(algorithm) is str
        and algorithm in _ALGORITHM_CODES
        and (num_threads is None or (type(num_threads) is int and num_threads >= 1))
    ):
        try:  # TypeError: an axis or thread count beyond C's int
            result = _core._logsumexp_any(x, axis, _ALGORITHM_CODES[algorithm], num_threads or 0)
        except TypeError:
            result = None
        if result is not None:
            return result[()] if type(result) is np.ndarray and result.ndim == 0 else result
    if _cuda.is_device_array(x):
        check_choice(algorithm, "algorithm", ALGORITHMS)
        check_num_threads(num_threads)
        return _cuda.softmax_family(x, axis, None, "nan", 2)
    xv, framework = as_input(x, "x")
    ax = normalize_axis(axis, xv.ndim)
    check_choice(algorithm, "algorithm", ALGORITHMS)
    threads = check_num_threads(num_threads)
    if dtype_name(xv) in HALF_DTYPES:
        done = _half_result(_core._logsumexp_any(xv, ax, _ALGORITHM_CODES[algorithm], threads), xv)
        return done[()] if type(done) is np.ndarray and done.ndim == 0 else done
    shape = tuple(s for d, s in enumerate(xv.shape) if d != ax)
    result = empty_like_framework(shape, dtype_name(xv), framework)
    _core._logsumexp(xv, result, ax, _ALGORITHM_CODES[algorithm], threads)
    if framework == "numpy" and result.ndim == 0:
        return result[()]
    return finish(result, framework)
