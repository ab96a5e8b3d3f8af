"""The parameters as flat NumPy views, and the float32 masters of float16 / bfloat16 ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import check_not_masked, framework_of


class LowPrecision:
    """A float16 / bfloat16 parameter: the float32 master and the tensor it is rounded into."""

    def __init__(self, target: Any, is_torch: bool) -> None:
        self.target = target  # flat view (NumPy float16 array or torch tensor) of the parameter
        self.is_torch = is_torch
        if is_torch:
            self.master = target.float().numpy().copy()
        else:
            self.master = target.astype(np.float32)
        self.applied = 0.0  # the perturbation (multiple of z) the tensor shows over the master

    def publish(self, values: np.ndarray) -> None:
        """target <- values rounded to nearest even."""
        if self.is_torch:
            import torch

            self.target.copy_(torch.from_numpy(values))
        else:
            self.target[...] = values


def flat_view(p: Any, index: int) -> tuple[np.ndarray, LowPrecision | None]:
    """A writable 1-D float32/64 NumPy view of parameter ``p`` (NumPy array or torch CPU tensor),
    or, for float16 / bfloat16, its float32 master copy and the low-precision handle. CUDA torch
    tensors give the device views of ``_device``."""
    name = f"params[{index}]"
    fw = framework_of(p)
    if fw == "torch":
        if p.device.type == "cuda":
            from ._device import device_view

            return device_view(p, name)
        if p.device.type != "cpu":
            raise ValueError(f"{name} is on device '{p.device}'; softzo runs on the CPU and CUDA")
        if not p.is_contiguous():
            raise ValueError(f"{name} must be contiguous: it is updated in place, without a copy")
        import torch

        if p.dtype in (torch.float16, torch.bfloat16):
            low = LowPrecision(p.detach().view(-1), True)
            return low.master, low
        arr = p.detach().numpy()
    elif isinstance(p, np.ndarray):
        check_not_masked(p, name)
        arr = p
    else:
        raise TypeError(f"{name} must be a NumPy array or a PyTorch tensor, got {type(p).__name__}")
    if arr.dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(
            f"{name} must be float32, float64, float16 or (torch) bfloat16, got {arr.dtype}"
        )
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if not arr.flags.aligned:
        raise ValueError(f"{name} is not aligned to its element size: it is updated in place")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous: it is updated in place, without a copy")
    if arr.dtype == np.float16:
        low = LowPrecision(arr.reshape(-1), False)
        return low.master, low
    return arr.reshape(-1), None
