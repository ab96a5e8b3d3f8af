"""Framework-neutral argument handling: NumPy, PyTorch (CPU) and JAX arrays in, the same out."""

from __future__ import annotations

import operator
import sys
from typing import Any

import numpy as np

SUPPORTED_DTYPES = ("float32", "float64", "float16", "bfloat16")
# Computed in float32: each row is widened exactly and the results rounded once to the type.
HALF_DTYPES = ("float16", "bfloat16")
# str(dtype) costs microseconds in NumPy 2; a dict lookup keeps small calls cheap.
_NUMPY_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}


def framework_of(x: Any) -> str:
    """'numpy', 'torch' or 'jax': the framework an output for x must belong to."""
    if isinstance(x, np.ndarray):
        return "numpy"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    if type(x).__module__.split(".")[0] in ("jax", "jaxlib"):
        return "jax"
    return "numpy"


def dtype_name(x: Any) -> str:
    name = _NUMPY_NAMES.get(x.dtype) if isinstance(x.dtype, np.dtype) else None
    return name or str(x.dtype).replace("torch.", "")


def as_input(x: Any, name: str) -> tuple[Any, str]:
    """A read-only view of x that nanobind accepts without copying, and x's framework."""
    framework = framework_of(x)
    if framework == "torch":
        if x.device.type != "cpu":
            raise ValueError(device_message(name, x.device))
        if x.is_conj() or x.is_neg():
            x = x.resolve_conj().resolve_neg()
        view = x.detach()
    elif framework == "jax":
        devices = {d.platform for d in x.devices()}
        if devices != {"cpu"}:
            raise ValueError(f"{name} is on {sorted(devices)}; softzo runs on the CPU")
        view = x
    else:
        check_not_masked(x, name)
        try:
            view = x if isinstance(x, np.ndarray) else np.asarray(x)
        except (TypeError, ValueError) as e:  # ragged lists, unconvertible objects
            raise TypeError(f"{name} must be an array of float32 or float64: {e}") from None
        if view.dtype.byteorder not in "=|" and view.dtype.newbyteorder("=") != view.dtype:
            raise TypeError(f"{name} must be in native byte order, got dtype {view.dtype.str}")
        if not view.flags.aligned:  # the kernels load whole elements: one aligned copy
            view = view.copy()
    dt = dtype_name(view)
    if dt not in SUPPORTED_DTYPES:
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {dt}")
    if view.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension, got a 0-d array")
    return view, framework


def check_not_masked(x: Any, name: str) -> None:
    """Refuses NumPy masked arrays: softzo reads the data and would silently ignore the mask."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(
            f"{name} is a NumPy masked array, whose mask softzo would ignore; pass "
            f"{name}.filled(value) (e.g. -inf for masked logits) or {name}.data"
        )


def device_message(name: str, device: Any) -> str:
    """Why an array on a non-CPU device was refused here: a CUDA array given to a build without
    the CUDA backend (how to build it), one mixed with CPU arrays, or another device."""
    from . import _cuda

    if getattr(device, "type", None) == "cuda":
        if not _cuda.built():
            return f"{name} is on device '{device}', but {_cuda.BUILD_HINT}"
        return (
            f"{name} is on device '{device}': either this function has no CUDA kernel yet (the "
            "CUDA backend runs the softmax family, cross_entropy, comp_sum_loss, softzo.torch's "
            "cross-entropy and the MeZO / SPSA engine) or the other arrays are on the CPU"
        )
    return f"{name} is on device '{device}'; softzo runs on the CPU and on CUDA devices"


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array of {ndim} dimensions")
    return axis % ndim


def check_num_threads(num_threads: Any) -> int:
    """0 (the library default) for None, else a validated positive count."""
    if num_threads is None:
        return 0
    try:
        n = operator.index(num_threads)
    except TypeError:
        raise TypeError(
            f"num_threads must be an int or None, got {type(num_threads).__name__}"
        ) from None
    if not 1 <= n < 2**31:
        raise ValueError(f"num_threads must be >= 1 (and below 2**31), got {n}")
    return n


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def empty_like_framework(shape: tuple[int, ...], dtype: str, framework: str) -> Any:
    """A new C-contiguous array for the result, of the framework the input came from."""
    if framework == "torch":
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype))
    return np.empty(shape, dtype=dtype)


def finish(out: Any, framework: str) -> Any:
    """Hands a NumPy result to JAX without a copy where JAX can take the buffer."""
    if framework != "jax":
        return out
    import jax

    try:
        return jax.dlpack.from_dlpack(out)
    except (BufferError, RuntimeError, TypeError, ValueError):  # alignment, old JAX: one copy
        import jax.numpy as jnp

        return jnp.asarray(out)


def check_out(
    out: Any, x: Any, shape: tuple[int, ...], name: str = "out", dtype: str | None = None
) -> Any:
    """A writable view of ``out`` (called ``name`` in messages), checked against x (of dtype
    ``dtype`` when given: a half input that the caller holds as a float32 copy)."""
    framework = framework_of(out)
    if framework == "jax":
        raise TypeError(
            f"{name} must be a writable NumPy array or PyTorch tensor; JAX arrays are immutable"
        )
    if framework == "torch":
        if out.device.type != "cpu":
            raise ValueError(device_message(name, out.device))
        if out.requires_grad:
            raise ValueError(f"{name} must not require grad: softzo writes it outside autograd")
        if out.is_neg():  # memory written through it would read back negated
            raise ValueError(f"{name} is a negated view (is_neg()): softzo cannot write through it")
        view = out.detach()
    elif isinstance(out, np.ndarray):
        if not out.flags.writeable:
            raise ValueError(f"{name} is read-only")
        if not out.flags.aligned:
            raise ValueError(f"{name} is not aligned to its element size")
        view = out
    else:
        raise TypeError(f"{name} must be a NumPy array or PyTorch tensor, got {type(out).__name__}")
    want = dtype or dtype_name(x)
    if dtype_name(view) != want:
        raise TypeError(f"{name} must have x's dtype {want}, got {dtype_name(view)}")
    if tuple(view.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(view.shape)}")
    return view


def numpy_half_dtype(dtype: str) -> np.dtype:
    """NumPy's float16, or ml_dtypes' bfloat16 (the type JAX uses; an optional dependency)."""
    if dtype == "float16":
        return np.dtype(np.float16)
    try:
        import ml_dtypes
    except ImportError:
        raise TypeError("bfloat16 NumPy arrays need ml_dtypes (pip install ml_dtypes)") from None
    return np.dtype(ml_dtypes.bfloat16)


def float32_copy(view: Any, framework: str) -> np.ndarray:
    """A float32 NumPy copy of a float16 / bfloat16 view (exact): the general path computes half
    inputs in float32 and rounds the results once (see ``to_dtype``)."""
    if framework == "torch":
        return view.float().numpy()
    return np.asarray(view).astype(np.float32)


def to_dtype(arr: np.ndarray, dtype: str, framework: str) -> Any:
    """A float32 NumPy result rounded (to nearest even) to ``dtype``, as an array of
    ``framework``."""
    if framework == "torch":
        import torch

        return torch.from_numpy(arr).to(getattr(torch, dtype))
    return finish(arr.astype(numpy_half_dtype(dtype)), framework)


def copy_into(out: Any, arr: np.ndarray) -> None:
    """Writes a float32 NumPy result into ``out`` (a half array's checked view), rounded."""
    if isinstance(out, np.ndarray):
        out[...] = arr
    else:
        import torch

        out.copy_(torch.from_numpy(arr))
