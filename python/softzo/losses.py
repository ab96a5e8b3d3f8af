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
    check_num_threads,
    check_out,
    copy_into,
    dtype_name,
    finish,
    float32_copy,
    framework_of,
    numpy_half_dtype,
    to_dtype,
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

REDUCTIONS = ("mean", "sum", "none")
_INF = float("inf")
_REDUCTION_CODE = {"none": 0, "sum": 1, "mean": 2}
_SPHERICAL_KINDS = {"log_spherical": 1, "log_taylor": 2, "mse": 3}  # 0 is the Z-loss
_NORMALIZERS = {"spherical": 0, "taylor": 1, "stablemax": 2}


# ---- argument plumbing: everything becomes a NumPy view of the caller's memory ---------------


def _numpy_view(x: Any, framework: str) -> np.ndarray:
    if framework == "torch":
        return x.numpy()
    return x if isinstance(x, np.ndarray) else np.asarray(x)


def _scores(
    x: Any, name: str, unbatched_ok: bool = True, half_ok: bool = False
) -> tuple[np.ndarray, str, bool, str | None]:
    """A 2-D float view (rows, classes) of x with a unit-stride class axis (copied only if it is
    not), its framework, whether x was 1-D (classes,): PyTorch's unbatched form, one row, and
    its half dtype ("float16", "bfloat16") or None. Half inputs (only where half_ok) become a
    float32 copy: this general path computes them in float32 and rounds the results once."""
    view, framework = as_input(x, name)
    half = dtype_name(view) if dtype_name(view) in HALF_DTYPES else None
    if half and not half_ok:
        raise TypeError(f"{name} must be float32 or float64 for this loss, got {half}")
    arr = float32_copy(view, framework) if half else _numpy_view(view, framework)
    unbatched = unbatched_ok and arr.ndim == 1
    if unbatched:
        arr = arr[np.newaxis]
    if arr.ndim != 2:
        shapes = "2-D (rows, classes) or 1-D (classes,)" if unbatched_ok else "2-D (rows, classes)"
        raise ValueError(f"{name} must be {shapes}, got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one class, got shape {tuple(view.shape)}")
    if arr.shape[1] > 1 and arr.strides[1] != arr.itemsize:
        arr = np.ascontiguousarray(arr)
    return arr, framework, unbatched, half


def _like_logits(value: Any, name: str, x: np.ndarray, half: str | None) -> np.ndarray:
    """Soft targets or class weights as a NumPy view of the logits' dtype (a float32 copy for
    half logits, which must then be matched in kind)."""
    view, fw = as_input(value, name)
    want = half or dtype_name(x)
    if dtype_name(view) != want:
        raise TypeError(f"{name} must have the logits' dtype {want}, got {dtype_name(view)}")
    return float32_copy(view, fw) if half else _numpy_view(view, fw)


def _class_indices(target: Any, rows: int, unbatched: bool = False) -> np.ndarray:
    """int64 class indices, one per row: shape (rows,), or () for unbatched logits."""
    view = target.detach().cpu().numpy() if hasattr(target, "detach") else np.asarray(target)
    if view.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {view.dtype}")
    if unbatched and view.shape != ():
        raise ValueError(
            f"target must be a 0-d class index for 1-D (unbatched) logits, got shape {view.shape}"
        )
    if not unbatched and view.shape != (rows,):
        raise ValueError(f"target must have shape ({rows},) to match the rows, got {view.shape}")
    return np.ascontiguousarray(view, dtype=np.int64).reshape(rows)


def _per_row(arr: np.ndarray, unbatched: bool) -> np.ndarray:
    """Per-row results as the caller shaped the logits: (rows,), or 0-d when unbatched."""
    return arr.reshape(()) if unbatched else arr


def _gradient(grad: np.ndarray, unbatched: bool) -> np.ndarray:
    return grad.reshape(grad.shape[1]) if unbatched else grad


def _is_soft(target: Any) -> bool:
    dtype = getattr(target, "dtype", None)
    if dtype is None:
        target = np.asarray(target)
        dtype = target.dtype
    return "float" in str(dtype)


def _float_arg(value: Any, name: str, lo: float | None = None, hi: float | None = None) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}") from None
    if not np.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be finite and {bounds}, got {value!r}")
    return v


def _grad_target(
    grad_out: Any, logits: np.ndarray, framework: str, unbatched: bool, half: str | None = None
) -> tuple[np.ndarray, Any]:
    """The array the gradient is written to (a 2-D NumPy view) and what to return for it: the
    caller's ``grad_out``, or None for a new array (wrapped after it is written: JAX copies).
    For half logits it is a float32 array, and the second item is grad_out's checked view, which
    ``_finish_grad`` rounds it into."""
    if grad_out is None:
        return np.empty(logits.shape, dtype=logits.dtype), None  # wrapped once it is written
    shape = logits.shape[1:] if unbatched else logits.shape
    gv = check_out(grad_out, logits, shape, "grad_out", dtype=half)
    if half:
        return np.empty(logits.shape, dtype=np.float32), gv
    g = _numpy_view(gv, framework_of(gv)).reshape(logits.shape)
    if g.shape[1] > 1 and g.strides[1] != g.itemsize:
        raise ValueError("grad_out must be unit-stride along the class axis")
    return g, grad_out


def _finish_grad(grad: np.ndarray, grad_result: Any, grad_out: Any, fw, unbatched, half) -> Any:
    """The gradient to return: a new array of the caller's framework (and dtype), or grad_out."""
    if grad_result is None:
        return _wrap(_gradient(grad, unbatched), fw, half)
    if half:
        copy_into(grad_result, _gradient(grad, unbatched))
        return grad_out
    return grad_result


def _wrap(arr: np.ndarray, framework: str, half: str | None = None) -> Any:
    """A NumPy result handed to the caller's framework without a copy; a float32 result of a
    half input rounded to its type."""
    if half:
        return to_dtype(arr, half, framework)
    if framework == "torch":
        import torch

        return torch.from_numpy(arr)
    return finish(arr, framework)


def _scalar(value: float, dtype: np.dtype, framework: str, half: str | None = None) -> Any:
    if half:  # rounded from float64, once
        result = to_dtype(np.asarray(value, dtype=np.float64), half, framework)
        return result[()] if framework == "numpy" else result
    return (
        _wrap(np.asarray(value, dtype=dtype), framework)
        if framework != "numpy"
        else (dtype.type(value))
    )


def _reduction(reduction: Any) -> int:
    return _REDUCTION_CODE[check_choice(reduction, "reduction", REDUCTIONS)]


def _loss_result(value, row_loss, dtype, framework, reduction, unbatched=False, half=None):
    if reduction == "none":
        return _wrap(_per_row(row_loss, unbatched), framework, half)
    return _scalar(value, dtype, framework, half)


def _threads(num_threads: Any) -> bool:
    """num_threads as the fast paths take it: None or a positive int (else the general path
    checks it)."""
    return num_threads is None or (type(num_threads) is int and num_threads >= 1)


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
        grad_out: an array of the logits' shape for the gradient (implies ``return_grad``);
            ``grad_out=logits`` writes it over the logits in place, with no N x V allocation.
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
    if _is_soft(target):
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


def _weight(weight: Any, x: np.ndarray, half: str | None = None) -> np.ndarray | None:
    if weight is None:
        return None
    w = np.ascontiguousarray(_like_logits(weight, "weight", x, half))
    if w.shape != (x.shape[1],):
        raise ValueError(f"weight must have shape ({x.shape[1]},), got {w.shape}")
    return w


def _int_arg(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return int(value)


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
    arr = values.detach().cpu().numpy() if fw == "torch" else np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"values must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float32 if arr.dtype == np.float32 else np.float64, copy=False)
    if arr.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {arr.shape}")
    lo, hi = _float_arg(vmin, "vmin"), _float_arg(vmax, "vmax")
    if not lo < hi:
        raise ValueError(f"vmin must be < vmax, got {vmin} and {vmax}")
    bins = _int_arg(num_bins, "num_bins")
    if bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {bins}")
    width = (hi - lo) / bins
    sig = 0.75 * width if sigma is None else _float_arg(sigma, "sigma", 0.0)
    if sig == 0.0:
        raise ValueError("sigma must be > 0")
    arr = np.ascontiguousarray(arr)
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


# ---- fused linear layer + cross-entropy ------------------------------------------------------

_LCE_DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}


def linear_cross_entropy(
    h: Any,
    weight: Any,
    target: Any,
    *,
    bias: Any = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    softcap: float | None = None,
    return_grad: bool = False,
    num_threads: int | None = None,
    grad_filter: float | None = None,
) -> Any:
    """Cross-entropy of the logits ``h @ weight.T + bias`` without ever storing them.

    The fused last layer of a language model (Cut Cross-Entropy, Wijmans et al. 2024, on the
    CPU): the logits are computed one block of 1024 classes at a time by an sgemm
    (scipy-openblas32), the first sweep keeps each row's logsumexp as extended-exponent sums
    merged block after block, and the second recomputes each block and writes
    softmax - target straight into the two gradient GEMMs. Peak extra memory is a 16 MiB block
    buffer and O(N) row statistics (plus float32 copies of h and grad_h, N x d, for half
    inputs), never N x V. Equals ``F.cross_entropy(F.linear(h, weight, bias), target, ...)``.

    Args:
        h: (N, d) hidden states; float32, float16 or bfloat16 (NumPy, torch CPU or JAX; halves
            are computed in float32 and the results rounded once to their type).
        weight: (V, d) classifier weights, h's dtype.
        target: (N,) integer class indices in [0, V), or ``ignore_index`` (loss and gradient 0,
            left out of the mean).
        bias: optional (V,) bias of h's dtype.
        label_smoothing: PyTorch's, in [0, 1] (spread over all V classes).
        reduction: "mean" (over rows not ignored; NaN if there are none, as PyTorch), "sum" or
            "none" ((N,) losses; the gradients are those of their sum).
        softcap: Gemma 2's logit soft cap: logits ``softcap * tanh(z / softcap)`` (> 0), or None.
        return_grad: also return d loss / d h, d loss / d weight (and d loss / d bias with a bias).
        num_threads: threads for this call (default: ``softzo.info()["num_threads"]``); each
            GEMM is cut into slices fixed by its shape, each one single-threaded OpenBLAS call
            on the library's pool, so the results are the same for any count.
        grad_filter: Cut Cross-Entropy's gradient filtering: blocks of 128 rows x 1024 classes
            whose |softmax - target| entries are all below this value (and hold no target) are
            left out of the gradient GEMMs (CCE uses 2**-12 for bfloat16). None (the default):
            exact.

    Returns:
        ``loss`` (a scalar of h's dtype, or (N,) for "none"), or with ``return_grad`` the tuple
        ``(loss, grad_h, grad_weight)`` or ``(loss, grad_h, grad_weight, grad_bias)``, in h's
        framework and dtype.

    Raises:
        TypeError: a dtype other than float32 / float16 / bfloat16, or arrays of different dtypes.
        ValueError: shapes that do not match (d, V, N), targets out of range, non-finite values
            in h, options out of range.
    """
    loss, rows, grads = _linear_cross_entropy(
        h, weight, target, bias, ignore_index, label_smoothing, reduction, softcap,
        return_grad, num_threads, grad_filter, None,
    )  # fmt: skip
    result = rows if reduction == "none" else loss
    return (result, *grads) if return_grad else result


def _linear_cross_entropy(
    h, weight, target, bias, ignore_index, label_smoothing, reduction, softcap, want_grad,
    num_threads, grad_filter, row_scale,
):  # fmt: skip
    """:func:`linear_cross_entropy` with every option positional, and row_scale (N weights of
    the rows' gradients, for softzo.torch's backward of reduction "none"); returns
    (loss, row losses or None, (grad_h, grad_weight[, grad_bias]) or ())."""
    from ._blas import _factored

    hv, fw = as_input(h, "h")
    dtype = dtype_name(hv)
    if dtype not in _LCE_DTYPES:
        raise TypeError(f"h must be float32, float16 or bfloat16, got {dtype}")
    if hv.ndim != 2:
        raise ValueError(f"h must be 2-D (N, d), got shape {tuple(hv.shape)}")
    n, d = hv.shape
    wv, _ = as_input(weight, "weight")
    if dtype_name(wv) != dtype:
        raise TypeError(f"weight must have h's dtype {dtype}, got {dtype_name(wv)}")
    if wv.ndim != 2 or wv.shape[1] != d or wv.shape[0] < 1:
        raise ValueError(f"weight must have shape (V, {d}) with V >= 1, got {tuple(wv.shape)}")
    v = wv.shape[0]
    bv = None
    if bias is not None:
        bv, _ = as_input(bias, "bias")
        if dtype_name(bv) != dtype:
            raise TypeError(f"bias must have h's dtype {dtype}, got {dtype_name(bv)}")
        if tuple(bv.shape) != (v,):
            raise ValueError(f"bias must have shape ({v},), got {tuple(bv.shape)}")
    hard = _class_indices(target, n)
    smoothing = _float_arg(label_smoothing, "label_smoothing", 0.0, 1.0)
    red = _reduction(reduction)
    cap = 0.0
    if softcap is not None:
        cap = _float_arg(softcap, "softcap", 0.0)
        if cap == 0.0:
            raise ValueError("softcap must be > 0 (or None for no cap)")
    filt = 0.0 if grad_filter is None else _float_arg(grad_filter, "grad_filter", 0.0)
    threads = check_num_threads(num_threads)
    code = _LCE_DTYPES[dtype]
    scales = None if row_scale is None else np.ascontiguousarray(row_scale, dtype=np.float32)
    loss, rows, gh, gw, gb = _factored.linear_cross_entropy(
        _bits(hv, dtype), _bits(wv, dtype), None if bv is None else _bits(bv, dtype), hard, code,
        _int_arg(ignore_index, "ignore_index"), smoothing, cap, red, filt, scales,
        bool(want_grad), threads,
    )  # fmt: skip
    grads = tuple(_from_bits(g, dtype, fw) for g in (gh, gw, gb) if g is not None)
    loss = _from_bits(loss, dtype, fw)
    return (loss[()] if fw == "numpy" else loss), _from_bits(rows, dtype, fw), grads


def _bits(view: Any, dtype: str) -> np.ndarray:
    """A C-contiguous NumPy view (a copy only if not contiguous) of a float32 array, or of the
    16-bit patterns of a half one: what softzo._factored takes."""
    if type(view).__module__.startswith("torch"):
        view = view.contiguous()
        arr = view.numpy() if dtype == "float32" else view.view(_torch_int16()).numpy()
    else:
        arr = np.ascontiguousarray(view)
    return arr if dtype == "float32" else arr.view(np.uint16)


def _torch_int16():
    import torch

    return torch.int16


def _from_bits(arr: np.ndarray | None, dtype: str, framework: str) -> Any:
    """A result of softzo._factored (float32, or uint16 bits of dtype) in the caller's framework."""
    if arr is None:
        return None
    if framework == "torch":
        import torch

        if dtype == "float32":
            return torch.from_numpy(arr)
        return torch.from_numpy(arr.view(np.int16)).view(getattr(torch, dtype))
    typed = arr if dtype == "float32" else arr.view(numpy_half_dtype(dtype))
    return finish(typed, framework)
