"""softzo.losses.linear_cross_entropy: the last linear layer fused with the cross-entropy,
never storing the N x V logits (the op is in softzo._factored, next to the BLAS it uses)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import as_input, check_num_threads, dtype_name, finish, numpy_half_dtype
from ._loss_args import _class_indices, _float_arg, _int_arg, _reduction

__all__ = ["linear_cross_entropy"]

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
