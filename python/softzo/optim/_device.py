"""CUDA parameters for the perturbation engine: flat views of torch CUDA tensors that run the
engine's moves on softzo's CUDA kernels, on the tensor's current stream, with the CPU's z."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _core, _cuda

# float16 / bfloat16 tensors keep a float32 master on the device, as on the CPU.
_PUBLISHED = {"float16": 1, "bfloat16": 2}


class DeviceFlat:
    """A flat piece [start, stop) of a contiguous CUDA tensor (or of its float32 master)."""

    def __init__(self, tensor: Any, start: int = 0, stop: int | None = None) -> None:
        self.tensor = tensor  # 1-D, contiguous
        self.start = start
        self.stop = tensor.numel() if stop is None else stop
        self.size = self.stop - self.start
        self.shape = (self.size,)
        self.dtype = np.dtype(str(tensor.dtype).replace("torch.", ""))
        self.device = tensor.device.index if tensor.device.index is not None else 0

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, slice) and key.step in (None, 1):
            lo, hi, _ = key.indices(self.size)
            return DeviceFlat(self.tensor, self.start + lo, self.start + max(lo, hi))
        if key is Ellipsis:
            return self.to_numpy()
        raise TypeError("a CUDA parameter view takes contiguous slices only")

    def __setitem__(self, key: Any, value: Any) -> None:
        import torch

        if key is not Ellipsis:
            raise TypeError("a CUDA parameter view is assigned whole (view[...] = values)")
        src = torch.as_tensor(np.asarray(value), dtype=self.tensor.dtype)
        self.piece().copy_(src.reshape(-1))

    def piece(self) -> Any:
        return self.tensor[self.start : self.stop]

    def to_numpy(self) -> np.ndarray:
        return self.piece().cpu().numpy()

    def copy(self) -> np.ndarray:
        return self.to_numpy().copy()

    def take(self, indices: np.ndarray) -> np.ndarray:
        """The values at the given element indices (for Sparse MeZO's quantile sample)."""
        import torch

        idx = torch.as_tensor(indices, dtype=torch.int64, device=self.tensor.device)
        return self.piece()[idx].cpu().numpy()

    def move(self, seed, step, direction, dist, offset, c, lr, g, wd, bits, thr, publish=None):
        """theta = (theta + c z)(1 - lr wd) - lr g z on the device (zo_move in softzo/cuda.h)."""
        import torch

        stream = int(torch.cuda.current_stream(self.device).cuda_stream)
        dt = 0 if self.dtype == np.float32 else 3
        pub_ptr, pub_dt = 0, 2
        if publish is not None:
            target = publish.target[self.start : self.stop]
            pub_ptr, pub_dt = int(target.data_ptr()), _PUBLISHED[publish.dtype]
        _core._cuda_zo_move(
            seed, step, direction, dist, offset, dt, int(self.piece().data_ptr()), self.size,
            c, lr, g, wd, 0 if bits is None else int(bits.data_ptr()),
            thr if bits is not None else -1.0, pub_ptr, pub_dt, self.device, stream,
        )  # fmt: skip


class DeviceLowPrecision:
    """A float16 / bfloat16 CUDA parameter: its float32 master (a DeviceFlat) and the tensor
    the kernels round into; the master never carries a perturbation."""

    def __init__(self, target: Any) -> None:
        import torch

        self.target = target  # flat view of the parameter
        self.dtype = str(target.dtype).replace("torch.", "")
        self.master = DeviceFlat(target.to(torch.float32))
        self.applied = 0.0

    def publish(self, view: DeviceFlat) -> None:
        """target <- the master rounded to nearest even."""
        self.target.copy_(view.piece())


def device_view(p: Any, name: str) -> tuple[DeviceFlat, DeviceLowPrecision | None]:
    """The engine's view of a CUDA torch parameter (ValueError without the CUDA backend)."""
    _cuda.require(name)
    import torch

    if not p.is_contiguous():
        raise ValueError(f"{name} must be contiguous: it is updated in place, without a copy")
    flat = p.detach().view(-1)
    if p.dtype in (torch.float16, torch.bfloat16):
        low = DeviceLowPrecision(flat)
        return low.master, low
    if p.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be float32, float64, float16 or bfloat16, got {p.dtype}")
    return DeviceFlat(flat), None


def new_mask_bits(view: DeviceFlat) -> Any:
    """Sparse MeZO's bits for a CUDA parameter: ceil(n / 32) words on its device."""
    import torch

    return torch.zeros((view.size + 31) // 32, dtype=torch.int32, device=view.tensor.device)


def fill(view: DeviceFlat, seed, step, direction, dist, offset) -> Any:
    """z on the device for view's elements (a new float tensor of its dtype)."""
    import torch

    out = torch.empty(view.size, dtype=view.tensor.dtype, device=view.tensor.device)
    stream = int(torch.cuda.current_stream(view.device).cuda_stream)
    dt = 0 if view.dtype == np.float32 else 3
    _core._cuda_zo_fill(seed, step, direction, dist, offset, dt, int(out.data_ptr()), view.size,
                        view.device, stream)  # fmt: skip
    return out
