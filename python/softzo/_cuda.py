"""CUDA arrays (torch tensors and CuPy arrays) on softzo's optional CUDA backend.

Arrays are read and written in place through their device pointers (no copy), results are
allocated by the caller's framework (torch's or CuPy's allocator, on the array's device), and
every kernel is enqueued on the framework's current stream for that device
(``torch.cuda.current_stream(device)``, ``cupy.cuda.get_current_stream()``), never on another
stream. The rules of the CPU functions apply; what the CUDA backend does not do raises
ValueError naming the argument.
"""

from __future__ import annotations

import sys
from typing import Any

from . import _core

BUILD_HINT = (
    "this softzo was built without its CUDA backend; rebuild it with "
    "pip install . -C cmake.define.SOFTZO_ENABLE_CUDA=ON"
)
# Codes of softzo::cuda::DType.
_DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2, "float64": 3}


def built() -> bool:
    """Whether this build has the CUDA backend."""
    return bool(_core._cuda_built())


def is_device_array(x: Any) -> bool:
    """A torch tensor on a CUDA device, or a CuPy array."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return x.device.type == "cuda"
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def require(name: str) -> None:
    """ValueError naming the argument when this build cannot take CUDA arrays."""
    if not built():
        raise ValueError(f"{name} is a CUDA array, but {BUILD_HINT}")


class Device:
    """One CUDA array's framework plumbing: pointer, dtype, device, stream, new arrays."""

    def __init__(self, x: Any, name: str) -> None:
        require(name)
        self.name = name
        self.is_torch = not _is_cupy(x)
        if self.is_torch:
            if x.requires_grad:
                x = x.detach()
            if x.is_conj() or x.is_neg():
                x = x.resolve_conj().resolve_neg()
            self.dtype = str(x.dtype).replace("torch.", "")
            self.device = x.device.index if x.device.index is not None else 0
        else:
            self.dtype = str(x.dtype)
            self.device = x.device.id
        self.array = x

    @property
    def stream(self) -> int:
        """The framework's current stream on this array's device, as an integer handle."""
        if self.is_torch:
            import torch

            return int(torch.cuda.current_stream(self.device).cuda_stream)
        import cupy

        with cupy.cuda.Device(self.device):
            return int(cupy.cuda.get_current_stream().ptr)

    @property
    def dtype_code(self) -> int:
        return _DTYPE_CODES[self.dtype]

    def empty(self, shape: tuple[int, ...], dtype: str | None = None) -> Any:
        """A new C-contiguous array of this framework on this device (stream-ordered)."""
        dtype = dtype or self.dtype
        if self.is_torch:
            import torch

            return torch.empty(shape, dtype=getattr(torch, dtype), device=self.array.device)
        import cupy

        with cupy.cuda.Device(self.device):
            return cupy.empty(shape, dtype=dtype)

    def same_device(self, other: Any, name: str) -> Device:
        """other as a Device, checked to be of this framework and device."""
        if not is_device_array(other) or _is_cupy(other) == self.is_torch:
            raise ValueError(f"{name} must be a CUDA array of the same framework as {self.name}")
        d = Device(other, name)
        if d.device != self.device:
            raise ValueError(f"{name} is on CUDA device {d.device}, {self.name} on {self.device}")
        return d


def _is_cupy(x: Any) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and isinstance(x, cupy.ndarray)


def ptr(x: Any) -> int:
    """The device address of x's first element (0 for None)."""
    if x is None:
        return 0
    return int(x.data_ptr()) if hasattr(x, "data_ptr") else int(x.data.ptr)


def contiguous(x: Any) -> Any:
    if hasattr(x, "is_contiguous"):
        return x if x.is_contiguous() else x.contiguous()
    import cupy

    return cupy.ascontiguousarray(x)


def _move_axis_last(x: Any, axis: int) -> Any:
    if hasattr(x, "movedim"):
        return x.movedim(axis, -1)
    import cupy

    return cupy.moveaxis(x, axis, -1)


SOFTMAX_DTYPES = ("float32", "float16", "bfloat16")


def softmax_family(x: Any, axis: Any, out: Any, all_masked: str, op: int) -> Any:
    """softmax (op 0), log_softmax (1) or logsumexp (2) of a CUDA array along ``axis``.

    Rows along the last axis of a contiguous array are read in place; another axis or
    non-contiguous memory costs one copy into a contiguous buffer (and one back for ``out``).
    """
    from ._arrays import normalize_axis

    d = Device(x, "x")
    if d.dtype not in SOFTMAX_DTYPES:
        raise TypeError(f"x must be float32, float16 or bfloat16 on CUDA, got {d.dtype}")
    xa = d.array
    if xa.ndim == 0:
        raise ValueError("x must have at least one dimension, got a 0-d array")
    ax = normalize_axis(axis, xa.ndim)
    last_contiguous = ax == xa.ndim - 1 and (
        xa.is_contiguous() if hasattr(xa, "is_contiguous") else xa.flags.c_contiguous
    )
    rows_view = xa if last_contiguous else contiguous(_move_axis_last(xa, ax))
    n = rows_view.shape[-1] if rows_view.ndim else 1
    rows = 1
    for s in rows_view.shape[:-1]:
        rows *= s
    if op == 2:
        if out is not None:
            raise ValueError("logsumexp takes no out")
        result = d.empty(tuple(rows_view.shape[:-1]))
        _core._cuda_softmax(
            2, d.dtype_code, ptr(rows_view), ptr(result), rows, n, False, d.device, d.stream
        )
        return result
    in_place_rows = out is not None and out is xa and rows_view is xa
    if out is not None and not in_place_rows:
        od = d.same_device(out, "out")
        if od.dtype != d.dtype:
            raise TypeError(f"out must have x's dtype {d.dtype}, got {od.dtype}")
        if tuple(out.shape) != tuple(xa.shape):
            raise ValueError(f"out must have shape {tuple(xa.shape)}, got {tuple(out.shape)}")
        if od.is_torch and out.requires_grad:
            raise ValueError("out must not require grad: softzo writes it outside autograd")
    target = rows_view if in_place_rows else d.empty(tuple(rows_view.shape))
    _core._cuda_softmax(
        op, d.dtype_code, ptr(rows_view), ptr(target), rows, n, all_masked == "zero", d.device,
        d.stream,
    )  # fmt: skip
    result = _move_axis_last_back(target, ax, xa.ndim)
    if out is None or in_place_rows:
        return out if in_place_rows else result
    out[...] = result  # a copy on the same stream, torch's or CuPy's
    return out


def _move_axis_last_back(y: Any, axis: int, ndim: int) -> Any:
    if axis == ndim - 1:
        return y
    if hasattr(y, "movedim"):
        return y.movedim(-1, axis)
    import cupy

    return cupy.moveaxis(y, -1, axis)


def cross_entropy(
    logits, target, weight, ignore_index, label_smoothing, lse_square_scale, tau, reduction,
    return_grad, grad_out, return_lse,
):  # fmt: skip
    """softzo.losses.cross_entropy (and comp_sum_loss, tau != 1) on CUDA arrays."""
    d = Device(logits, "logits")
    if d.dtype not in SOFTMAX_DTYPES:
        raise TypeError(f"logits must be float32, float16 or bfloat16 on CUDA, got {d.dtype}")
    x = d.array
    unbatched = x.ndim == 1
    if x.ndim not in (1, 2):
        raise ValueError(f"logits must be 2-D (rows, classes) or 1-D (classes,), got {x.shape}")
    x2 = x.reshape(1, -1) if unbatched else x
    n, v = x2.shape
    if v == 0:
        raise ValueError(f"logits must have at least one class, got shape {tuple(x.shape)}")
    if v > 1 and _stride(x2, 1) != 1:
        x2 = contiguous(x2)
    red = {"none": 0, "sum": 1, "mean": 2}[reduction]
    dt = d.dtype
    soft = hard = None
    td = d.same_device(target, "target")
    if td.dtype.startswith("float") or td.dtype == "bfloat16":
        if td.dtype != dt:
            raise TypeError(f"target must have the logits' dtype {dt}, got {td.dtype}")
        if tuple(target.shape) != tuple(x.shape):
            raise ValueError(f"target (soft) must have the logits' shape {tuple(x.shape)}")
        soft = contiguous(td.array.reshape(n, v))
    else:
        if "int" not in td.dtype:
            raise TypeError(f"target must hold integer class indices, got dtype {td.dtype}")
        want = () if unbatched else (n,)
        if tuple(target.shape) != want:
            raise ValueError(f"target must have shape {want} to match the rows, got {target.shape}")
        hard = contiguous(td.array.reshape(n))
        if td.dtype != "int64":
            hard = hard.long() if td.is_torch else hard.astype("int64")
    w = None
    if weight is not None:
        wd = d.same_device(weight, "weight")
        if wd.dtype != dt:
            raise TypeError(f"weight must have the logits' dtype {dt}, got {wd.dtype}")
        if tuple(weight.shape) != (v,):
            raise ValueError(f"weight must have shape ({v},), got {tuple(weight.shape)}")
        w = contiguous(wd.array)
    want_grad = return_grad or grad_out is not None
    grad = grad_result = None
    if grad_out is not None:
        gd = d.same_device(grad_out, "grad_out")
        if gd.dtype != dt or tuple(grad_out.shape) != tuple(x.shape):
            raise ValueError(
                f"grad_out must have the logits' dtype {dt} and shape {tuple(x.shape)}"
            )
        if gd.is_torch and grad_out.requires_grad:
            raise ValueError("grad_out must not require grad: softzo writes it outside autograd")
        g2 = grad_out.reshape(1, -1) if unbatched else grad_out
        if v > 1 and _stride(g2, 1) != 1:
            raise ValueError("grad_out must be unit-stride along the class axis")
        if grad_out is not logits and x2 is not x and _overlaps(g2, x):
            raise ValueError("grad_out overlaps logits without being logits itself")
        grad, grad_result = g2, grad_out
    elif want_grad:
        grad = d.empty((n, v))
    lse = d.empty((n,)) if return_lse else None
    rows = d.empty((n,)) if red == 0 else None
    loss = d.empty(()) if red != 0 else None
    _core._cuda_cross_entropy(
        d.dtype_code, ptr(x2), n, v, _stride(x2, 0) if n > 1 else v, ptr(hard), ignore_index,
        ptr(soft), v if soft is not None else 0, ptr(w), label_smoothing, lse_square_scale, tau,
        red, ptr(grad), _stride(grad, 0) if grad is not None and n > 1 else v, ptr(lse),
        ptr(rows), ptr(loss), d.device, d.stream,
    )  # fmt: skip
    result = rows.reshape(()) if (rows is not None and unbatched) else (rows if red == 0 else loss)
    out = (result,)
    if want_grad:
        out += (
            grad_result if grad_result is not None else (grad.reshape(v) if unbatched else grad),
        )
    if return_lse:
        out += (lse.reshape(()) if unbatched else lse,)
    return out if len(out) > 1 else result


def _stride(a: Any, dim: int) -> int:
    """Stride in elements."""
    if hasattr(a, "stride") and callable(a.stride):
        return int(a.stride(dim))
    return int(a.strides[dim] // a.itemsize)


def _overlaps(a: Any, b: Any) -> bool:
    size_a = a.numel() * a.element_size() if hasattr(a, "numel") else a.nbytes
    size_b = b.numel() * b.element_size() if hasattr(b, "numel") else b.nbytes
    pa, pb = ptr(a), ptr(b)
    return pa < pb + size_b and pb < pa + size_a


def info() -> dict | None:
    """The CUDA backend as softzo.info() reports it, or None in a CPU-only build."""
    if not built():
        return None
    count = _core._cuda_device_count()
    devices = [_core._cuda_device_info(i) for i in range(count)]
    return {"device_count": count, "devices": devices}
