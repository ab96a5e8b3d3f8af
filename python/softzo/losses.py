"""Fused classification losses: cross-entropy, Z-loss and the spherical family, StableMax,
comp-sum, HL-Gauss and KL distillation, on softzo's kernels.

Every loss reads the logits once for the row's logsumexp (or statistics) and once more to write
the gradient and the target terms; no N x V intermediate is ever allocated (with
``grad_out=logits`` not even the gradient). Inputs are NumPy arrays, PyTorch CPU tensors or JAX
CPU arrays, read without copying (a class axis that is not unit-stride is copied first); results
come back in the input's framework. Cross-entropy, comp-sum, KL, the Z-loss and the spherical
losses also take float16 and bfloat16 (NumPy's, ml_dtypes', torch's, JAX's), computed in float32
with the results rounded once to the input's type. The class-index losses also take PyTorch's
unbatched form: 1-D logits (V,) with a 0-d target give 0-d per-row results and a (V,) gradient.
For autograd, see :mod:`softzo.torch`. :func:`linear_cross_entropy` fuses the last linear layer
with the cross-entropy, never storing the N x V logits.

Each loss first offers its arrays to softzo._core's ``*_any`` entry, which views NumPy, torch
and JAX arrays in C++ and makes the results there (about 1 us of fixed cost per call); it
returns None for anything it does not take, and the general path below (NumPy views of
everything, copies where needed) then handles the call or raises the error that names the
argument.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core, _cuda
from ._arrays import (
    HALF_DTYPES,
    as_input,
    check_choice,
    check_not_masked,
    check_num_threads,
    dtype_name,
    framework_of,
)
from ._linear_cross_entropy import linear_cross_entropy
from ._loss_args import (
    _REDUCTION_CODE,
    REDUCTIONS,
    _class_indices,
    _finish_grad,
    _float_arg,
    _grad_target,
    _gradient,
    _int_arg,
    _is_soft,
    _like_logits,
    _loss_result,
    _numpy_view,
    _per_row,
    _reduction,
    _scores,
    _threads,
    _weight,
    _wrap,
)

__all__ = [
    "comp_sum_loss",
    "cross_entropy",
    "hl_gauss_targets",
    "hl_gauss_values",
    "kl_div",
    "linear_cross_entropy",
    "spherical_loss",
    "spherical_softmax",
    "stablemax",
    "stablemax_cross_entropy",
    "taylor_softmax",
    "z_loss",
]

_INF = float("inf")
_SPHERICAL_KINDS = {"log_spherical": 1, "log_taylor": 2, "mse": 3}  # 0 is the Z-loss
_NORMALIZERS = {"spherical": 0, "taylor": 1, "stablemax": 2}


# ---- cross-entropy ---------------------------------------------------------------------------


def cross_entropy(
    logits: Any,
    target: Any,
    *,
    weight: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    lse_square_scale: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
    grad_out: Any = None,
    return_lse: bool = False,
    num_threads: int | None = None,
) -> Any:
    """Cross-entropy of (N, V) logits, with its gradient from the same two passes.

    Matches ``torch.nn.functional.cross_entropy`` (class indices or soft targets, ``weight``,
    ``ignore_index``, ``label_smoothing``, ``reduction``), plus PaLM's auxiliary
    ``lse_square_scale * lse**2`` per counted row (unweighted; averaged over counted rows for
    "mean"). This is not the Z-loss of de Brébisson & Vincent: that is :func:`z_loss`.

    Args:
        logits: (N, V) float32, float64, float16 or bfloat16 (computed in float32: each row
            widened exactly, the loss, gradient and lse rounded once to the type), or (V,):
            PyTorch's unbatched form, one row whose loss (for "none" too) and logsumexp are 0-d
            and whose gradient is (V,).
        target: (N,) integer class indices in [0, V) or ``ignore_index`` (0-d for (V,) logits);
            or soft targets of the logits' shape and dtype (finite; weighted by ``weight`` and
            smoothed like PyTorch).
        weight: optional (V,) class weights of the logits' dtype.
        return_grad: also return d loss / d logits (for "none": of the sum of row losses);
            ignored rows get 0.
        grad_out: an array of the logits' shape, unit-stride along the classes, for the
            gradient (implies ``return_grad``); ``grad_out=logits`` writes it over the logits in
            place, with no N x V allocation.
        return_lse: also return each row's logsumexp, shape (N,).

    Returns:
        ``loss`` (a scalar, or (N,) for "none"), or a tuple ``(loss, grad)``, ``(loss, lse)`` or
        ``(loss, grad, lse)``. NaN or +inf logits make that row's loss and gradient NaN, as in
        PyTorch; -inf logits are masked classes.
    """
    return _cross_entropy(
        logits, target, weight, ignore_index, label_smoothing, lse_square_scale, reduction,
        return_grad, grad_out, return_lse, num_threads,
    )  # fmt: skip


def _cross_entropy(
    logits, target, weight, ignore_index, label_smoothing, lse_square_scale, reduction,
    return_grad, grad_out, return_lse, num_threads,
):  # fmt: skip
    """:func:`cross_entropy` with positional arguments (softzo.torch's forward pass calls it)."""
    red = _REDUCTION_CODE.get(reduction) if type(reduction) is str else None
    if (
        red is not None
        and type(ignore_index) is int
        and type(label_smoothing) is float
        and 0.0 <= label_smoothing <= 1.0
        and type(lse_square_scale) is float
        and 0.0 <= lse_square_scale < _INF
        and _threads(num_threads)
    ):
        try:  # TypeError: an ignore_index or a thread count beyond C's integers
            result = _core._cross_entropy_any(
                logits, target, weight, ignore_index, label_smoothing, lse_square_scale, 1.0,
                red, bool(return_grad), grad_out, bool(return_lse), num_threads or 0,
            )  # fmt: skip
        except TypeError:
            result = None
        if result is not None:
            return result
    if _cuda.is_device_array(logits):
        return _cuda.cross_entropy(
            logits, target, weight, _int_arg(ignore_index, "ignore_index"),
            _float_arg(label_smoothing, "label_smoothing", 0.0, 1.0),
            _float_arg(lse_square_scale, "lse_square_scale", 0.0), 1.0,
            check_choice(reduction, "reduction", REDUCTIONS), return_grad, grad_out, return_lse,
        )  # fmt: skip
    x, fw, unbatched, half = _scores(logits, "logits", half_ok=True)
    n, v = x.shape
    smoothing = _float_arg(label_smoothing, "label_smoothing", 0.0, 1.0)
    lse_scale = _float_arg(lse_square_scale, "lse_square_scale", 0.0)
    red = _reduction(reduction)
    threads = check_num_threads(num_threads)
    hard = soft = None
    if _is_soft(target, 1 if unbatched else 2):
        soft = _like_logits(target, "target", x, half)
        shape = (v,) if unbatched else x.shape
        if soft.shape != shape:
            raise ValueError(f"target (soft) must have the logits' shape {shape}, got {soft.shape}")
        soft = soft.reshape(n, v)
        if v > 1 and soft.strides[1] != soft.itemsize:
            soft = np.ascontiguousarray(soft)
    else:
        hard = _class_indices(target, n, unbatched)
    w = _weight(weight, x, half)
    ignore = _int_arg(ignore_index, "ignore_index")
    want_grad = return_grad or grad_out is not None
    grad, grad_result = (
        _grad_target(grad_out, x, fw, unbatched, half) if want_grad else (None, None)
    )
    lse = np.empty(n, dtype=x.dtype) if return_lse else None
    rows = np.empty(n, dtype=x.dtype) if reduction == "none" else None
    value = _core._cross_entropy(
        x, hard, soft, w, ignore, smoothing, lse_scale, 1.0, red, grad, lse, rows, threads
    )
    loss = _loss_result(value, rows, x.dtype, fw, reduction, unbatched, half)
    out = (loss,)
    if want_grad:
        out += (_finish_grad(grad, grad_result, grad_out, fw, unbatched, half),)
    if return_lse:
        out += (_wrap(_per_row(lse, unbatched), fw, half),)
    return out if len(out) > 1 else loss


def comp_sum_loss(
    logits: Any,
    target: Any,
    tau: float,
    *,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: int | None = None,
) -> Any:
    """Comp-sum loss (Mao, Mohri & Zhong 2023): Phi^tau(1 / p_t) with p = softmax(logits).

    Phi^1(u) = log u and Phi^tau(u) = (u^(1 - tau) - 1) / (1 - tau): tau = 0 is the
    sum-exponential loss, 1 cross-entropy, 1.7 generalised cross-entropy (q = 0.7) and 2 the
    mean absolute error 1 - p_t. The gradient is p_t^(tau - 1) (p - onehot(t)). Returns
    ``loss`` or ``(loss, grad)``.
    """
    tau_v = _float_arg(tau, "tau", 0.0)
    red = _reduction(reduction)
    threads = check_num_threads(num_threads)
    # Comp-sum rides on the cross-entropy kernel, with no row ignored.
    no_row = -(2**62)
    result = _core._cross_entropy_any(
        logits, target, None, no_row, 0.0, 0.0, tau_v, red, bool(return_grad), None, False, threads
    )
    if result is not None:
        return result
    if _cuda.is_device_array(logits):
        return _cuda.cross_entropy(
            logits, target, None, no_row, 0.0, 0.0, tau_v, reduction, return_grad, None, False
        )
    x, fw, unbatched, half = _scores(logits, "logits", half_ok=True)
    hard = _class_indices(target, x.shape[0], unbatched)
    grad = np.empty(x.shape, dtype=x.dtype) if return_grad else None
    rows = np.empty(x.shape[0], dtype=x.dtype) if reduction == "none" else None
    value = _core._cross_entropy(
        x, hard, None, None, no_row, 0.0, 0.0, tau_v, red, grad, None, rows, threads
    )
    loss = _loss_result(value, rows, x.dtype, fw, reduction, unbatched, half)
    return (loss, _wrap(_gradient(grad, unbatched), fw, half)) if return_grad else loss


# ---- the spherical family --------------------------------------------------------------------


def z_loss(
    outputs: Any,
    target: Any,
    *,
    a: float = 1.0,
    b: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: int | None = None,
) -> Any:
    """The Z-loss of de Brébisson & Vincent (2016): softplus(a (b - z_c)) / a.

    z = (o - mean(o)) / std(o) over each row of (N, D) ``outputs`` (or one (D,) row with a 0-d
    target, as cross_entropy's unbatched form) (population std), so the loss
    is invariant to o -> alpha o + beta (alpha > 0). A row whose outputs are all equal has
    z_c := 0 and gradient 0. Returns ``loss`` or ``(loss, grad)``. Not PaLM's "z_loss" term,
    which is ``cross_entropy(lse_square_scale=...)``.
    """
    a_v = _float_arg(a, "a", 0.0)
    if a_v == 0.0:
        raise ValueError("a must be > 0")
    return _spherical(
        outputs, target, 0, a_v, _float_arg(b, "b"), 1e-6, reduction, return_grad, num_threads
    )


def spherical_loss(
    o: Any,
    target: Any,
    *,
    kind: str = "log_spherical",
    eps: float = 1e-6,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: int | None = None,
) -> Any:
    """Spherical-family losses of (N, D) outputs, or one (D,) row with a 0-d target (Vincent,
    de Brébisson & Bouthillier 2015).

    kind "log_spherical": -log(o_c^2 + eps) + log(sum o^2 + D eps); "log_taylor":
    -log(1 + o_c + o_c^2 / 2) + log(D + sum o + sum o^2 / 2); "mse": sum_k (o_k - onehot_k)^2.
    Each depends on o only through sum o, sum o^2 and o_c. Returns ``loss`` or ``(loss, grad)``.
    """
    check_choice(kind, "kind", tuple(_SPHERICAL_KINDS))
    eps_v = _float_arg(eps, "eps", 0.0)
    if eps_v == 0.0 and kind == "log_spherical":
        raise ValueError("eps must be > 0")
    return _spherical(
        o, target, _SPHERICAL_KINDS[kind], 1.0, 0.0, eps_v, reduction, return_grad, num_threads
    )


def _spherical(o, target, kind, a, b, eps, reduction, return_grad, num_threads):
    red = _reduction(reduction)
    threads = check_num_threads(num_threads)
    result = _core._spherical_loss_any(o, target, kind, a, b, eps, red, bool(return_grad), threads)
    if result is not None:
        return result
    x, fw, unbatched, half = _scores(o, "outputs" if kind == 0 else "o", half_ok=True)
    hard = _class_indices(target, x.shape[0], unbatched)
    grad = np.empty(x.shape, dtype=x.dtype) if return_grad else None
    rows = np.empty(x.shape[0], dtype=x.dtype) if reduction == "none" else None
    value = _core._spherical_loss(x, hard, kind, a, b, eps, red, grad, rows, threads)
    loss = _loss_result(value, rows, x.dtype, fw, reduction, unbatched, half)
    return (loss, _wrap(_gradient(grad, unbatched), fw, half)) if return_grad else loss


def _normalize(x: Any, axis: int, kind: str, eps: float, num_threads: Any) -> Any:
    from ._arrays import normalize_axis

    threads = check_num_threads(num_threads)
    if type(axis) is int:  # 1-D and 2-D arrays along their last axis, in _core
        try:  # TypeError: an axis beyond C's int
            result = _core._normalize_any(x, axis, _NORMALIZERS[kind], eps, threads)
        except TypeError:
            result = None
        if result is not None:
            return result
    view, fw = as_input(x, "x")
    if dtype_name(view) in HALF_DTYPES:
        raise TypeError(
            f"x must be float32 or float64 for {kind} normalisation, got {dtype_name(view)}"
        )
    arr = _numpy_view(view, fw)
    ax = normalize_axis(axis, arr.ndim)
    moved = np.moveaxis(arr, ax, -1)
    flat = moved.reshape(-1, moved.shape[-1]) if moved.shape[-1] else moved.reshape(0, 0)
    if flat.shape[1] > 1 and flat.strides[1] != flat.itemsize:
        flat = np.ascontiguousarray(flat)
    out = np.empty(flat.shape, dtype=flat.dtype)
    if out.size:
        _core._normalize(flat, out, _NORMALIZERS[kind], eps, threads)
    result = np.moveaxis(out.reshape(moved.shape), -1, ax)
    return _wrap(np.ascontiguousarray(result), fw)


def spherical_softmax(
    x: Any, axis: int = -1, *, eps: float = 1e-6, num_threads: int | None = None
) -> Any:
    """(x^2 + eps) / sum(x^2 + eps) along ``axis`` (de Brébisson & Vincent 2016)."""
    eps_v = _float_arg(eps, "eps", 0.0)
    if eps_v == 0.0:
        raise ValueError("eps must be > 0")
    return _normalize(x, axis, "spherical", eps_v, num_threads)


def taylor_softmax(x: Any, axis: int = -1, *, num_threads: int | None = None) -> Any:
    """(1 + x + x^2 / 2) / sum(1 + x + x^2 / 2) along ``axis`` (second-order Taylor of exp)."""
    return _normalize(x, axis, "taylor", 0.0, num_threads)


# ---- StableMax -------------------------------------------------------------------------------


def stablemax(x: Any, axis: int = -1, *, num_threads: int | None = None) -> Any:
    """StableMax (Prieto et al. 2025): s(x) / sum s(x), s(x) = x + 1 (x >= 0), 1 / (1 - x)."""
    return _normalize(x, axis, "stablemax", 0.0, num_threads)


def stablemax_cross_entropy(
    logits: Any,
    target: Any,
    *,
    reduction: str = "mean",
    return_grad: bool = False,
    num_threads: int | None = None,
) -> Any:
    """-log stablemax(logits)_t per row of (N, V) logits (or of (V,) logits with a 0-d target);
    ``loss`` or ``(loss, grad)``."""
    red = _reduction(reduction)
    threads = check_num_threads(num_threads)
    result = _core._stablemax_cross_entropy_any(logits, target, red, bool(return_grad), threads)
    if result is not None:
        return result
    x, fw, unbatched, _ = _scores(logits, "logits")
    hard = _class_indices(target, x.shape[0], unbatched)
    grad = np.empty(x.shape, dtype=x.dtype) if return_grad else None
    rows = np.empty(x.shape[0], dtype=x.dtype) if reduction == "none" else None
    value = _core._stablemax_cross_entropy(x, hard, red, grad, rows, threads)
    loss = _loss_result(value, rows, x.dtype, fw, reduction, unbatched)
    return (loss, _wrap(_gradient(grad, unbatched), fw)) if return_grad else loss


# ---- distillation ----------------------------------------------------------------------------

KL_REDUCTIONS = ("batchmean", "sum", "mean", "none")
_KL_REDUCTION_CODE = {"none": 0, "sum": 1, "mean": 2, "batchmean": 3}  # _core._kl_div_any's


def kl_div(
    student_logits: Any,
    teacher_logits: Any,
    *,
    temperature: float = 1.0,
    reduction: str = "batchmean",
    return_grad: bool = False,
    num_threads: int | None = None,
) -> Any:
    """KL(softmax(teacher / T) || softmax(student / T)), fused: neither softmax is stored.

    Equals ``F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), log_target=True,
    reduction=...)`` for "batchmean", "sum" and "mean"; "none" gives the per-row KL, shape (N,).
    There is no T^2 factor (multiply by T**2 for Hinton-style distillation). Classes the teacher
    gives probability 0 add 0. The gradient is with respect to the student logits:
    (softmax(s / T) - softmax(t / T)) / T, scaled by the reduction.
    """
    temp = _float_arg(temperature, "temperature", 0.0)
    if temp == 0.0:
        raise ValueError("temperature must be > 0")
    code = _KL_REDUCTION_CODE[check_choice(reduction, "reduction", KL_REDUCTIONS)]
    threads = check_num_threads(num_threads)
    result = _core._kl_div_any(
        student_logits, teacher_logits, temp, code, bool(return_grad), threads
    )
    if result is not None:
        return result
    s, fw, _, half = _scores(student_logits, "student_logits", unbatched_ok=False, half_ok=True)
    t, _, _, t_half = _scores(teacher_logits, "teacher_logits", unbatched_ok=False, half_ok=True)
    if t_half != half or t.dtype != s.dtype:
        want, got = half or s.dtype, t_half or t.dtype
        raise TypeError(f"teacher_logits must have the student's dtype {want}, got {got}")
    if t.shape != s.shape:
        raise ValueError(f"teacher_logits must have shape {s.shape}, got {t.shape}")
    n, v = s.shape
    divisor = {"batchmean": n, "sum": 1, "mean": n * v, "none": 0}[reduction]
    if divisor == 0 and reduction != "none":
        divisor = float("nan")  # the mean of no rows, as in PyTorch (0 would mean "none")
    grad = np.empty(s.shape, dtype=s.dtype) if return_grad else None
    rows = np.empty(n, dtype=s.dtype) if reduction == "none" else None
    value = _core._kl_div(s, t, temp, float(divisor), grad, rows, threads)
    red_name = "none" if reduction == "none" else "sum"
    loss = _loss_result(value, rows, s.dtype, fw, red_name, half=half)
    return (loss, _wrap(grad, fw, half)) if return_grad else loss


# ---- HL-Gauss --------------------------------------------------------------------------------


def hl_gauss_targets(
    values: Any, vmin: float, vmax: float, num_bins: int, sigma: float | None = None
) -> Any:
    """HL-Gauss soft targets (Farebrother et al. 2024) for scalar regression targets.

    Each value (clipped to [vmin, vmax]) becomes the mass that Normal(value, sigma) puts on each
    of ``num_bins`` equal bins over [vmin, vmax], renormalised over that support; ``sigma``
    defaults to 0.75 bin widths. Returns (N, num_bins) rows summing to 1 (float32 for float32
    values, else float64), ready as soft targets for :func:`cross_entropy`.
    """
    fw = framework_of(values)
    check_not_masked(values, "values")
    try:
        arr = values.detach().cpu().numpy() if fw == "torch" else np.asarray(values)
    except (TypeError, ValueError) as e:  # ragged lists, unconvertible objects
        raise TypeError(f"values must be an array of real numbers: {e}") from None
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"values must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32 if arr.dtype == np.float32 else np.float64, copy=False)
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {arr.shape}")
    lo, hi = _float_arg(vmin, "vmin"), _float_arg(vmax, "vmax")
    if not lo < hi:
        raise ValueError(f"vmin must be < vmax, got {vmin} and {vmax}")
    bins = _int_arg(num_bins, "num_bins")
    if not 1 <= bins < 2**31:
        raise ValueError(f"num_bins must be in [1, 2**31), got {bins}")
    width = (hi - lo) / bins
    sig = 0.75 * width if sigma is None else _float_arg(sigma, "sigma", 0.0)
    if sig == 0.0:
        raise ValueError("sigma must be > 0")
    arr = np.require(arr, requirements=["C", "A"])  # contiguous and aligned
    if not np.isfinite(arr).all():
        raise ValueError("values must be finite")
    out = np.empty((arr.shape[0], bins), dtype=arr.dtype)
    _core._hl_gauss_targets(arr, lo, hi, sig, out)
    return _wrap(out, fw)


def hl_gauss_values(probs: Any, vmin: float, vmax: float) -> Any:
    """Expected value sum_k probs_k * center_k of (N, num_bins) bin probabilities (the
    prediction an HL-Gauss model makes after a softmax over its logits)."""
    p, fw, _, _ = _scores(probs, "probs", unbatched_ok=False)
    lo, hi = _float_arg(vmin, "vmin"), _float_arg(vmax, "vmax")
    if not lo < hi:
        raise ValueError(f"vmin must be < vmax, got {vmin} and {vmax}")
    bins = p.shape[1]
    centers = lo + (np.arange(bins, dtype=np.float64) + 0.5) * (hi - lo) / bins
    return _wrap(np.asarray(p @ centers.astype(p.dtype), dtype=p.dtype), fw)
