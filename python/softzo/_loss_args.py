"""The losses' argument plumbing: every array becomes a NumPy view of the caller's memory
(a float32 copy for half inputs), options are checked by name, and results go back to the
caller's framework and dtype. Shared by softzo.losses and the fused linear cross-entropy."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import (
    HALF_DTYPES,
    as_input,
    check_choice,
    check_out,
    copy_into,
    dtype_name,
    finish,
    float32_copy,
    framework_of,
    to_dtype,
)

REDUCTIONS = ("mean", "sum", "none")
_REDUCTION_CODE = {"none": 0, "sum": 1, "mean": 2}


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
    if view.size == 0 and isinstance(target, (list, tuple)):
        view = view.astype(np.int64)  # [] is float64 to NumPy
    if view.dtype.kind not in "iu":
        raise TypeError(f"target must hold integer class indices, got dtype {view.dtype}")
    if unbatched and view.shape != ():
        raise ValueError(
            f"target must be a 0-d class index for 1-D (unbatched) logits, got shape {view.shape}"
        )
    if not unbatched and view.shape != (rows,):
        raise ValueError(f"target must have shape ({rows},) to match the rows, got {view.shape}")
    return np.require(view, np.int64, ["C", "A"]).reshape(rows)  # contiguous, aligned


def _per_row(arr: np.ndarray, unbatched: bool) -> np.ndarray:
    """Per-row results as the caller shaped the logits: (rows,), or 0-d when unbatched."""
    return arr.reshape(()) if unbatched else arr


def _gradient(grad: np.ndarray, unbatched: bool) -> np.ndarray:
    return grad.reshape(grad.shape[1]) if unbatched else grad


def _is_soft(target: Any, ndim: int) -> bool:
    """Soft targets are floats of at least the logits' ``ndim`` dimensions (2, or 1 for
    unbatched logits); anything else is read as class indices (a 1-D float list of a batch then
    raises naming the target's dtype, and [] means no class indices)."""
    dtype = getattr(target, "dtype", None)
    if dtype is None:
        try:
            target = np.asarray(target)
        except (TypeError, ValueError) as e:  # ragged lists, unconvertible objects
            raise TypeError(f"target must be class indices or soft targets: {e}") from None
        dtype = target.dtype
    return "float" in str(dtype) and np.ndim(target) >= ndim


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
    if g.size and g.shape[1] > 1 and g.strides[1] != g.itemsize:
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
