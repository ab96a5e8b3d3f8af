"""softzo.torch's factored output layer: FactoredOutputHead (an ``nn.Module`` over
:class:`softzo.spherical.FactoredOutputLayer`) and its autograd function."""

from __future__ import annotations

from typing import Any

import torch
from torch.autograd.function import once_differentiable

__all__ = ["FactoredOutputFunction", "FactoredOutputHead", "FactoredOutputLayer"]


class FactoredOutputFunction(torch.autograd.Function):
    """Mean loss of a :class:`softzo.spherical.FactoredOutputLayer` on (h, targets); its backward
    returns dL/dh and applies the layer's SGD step, scaled by the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, targets: torch.Tensor, layer: Any) -> torch.Tensor:
        hd = h.detach()
        value = layer.evaluate(hd, targets)
        ctx.layer, ctx.batch_id = layer, layer.batch_id
        ctx.save_for_backward(hd, targets)
        return torch.tensor(value, dtype=h.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, None, None]:
        layer = ctx.layer
        if layer.batch_id != ctx.batch_id:  # another forward ran since: redo this one's
            h, targets = ctx.saved_tensors
            layer.evaluate(h, targets)
        grad = layer.backward_scaled(float(grad_output))
        return torch.from_numpy(grad), None, None


class FactoredOutputHead(torch.nn.Module):
    """The last layer of a model and its loss, trained by its own exact factored SGD (softzo.
    spherical.FactoredOutputLayer, O(dim^2) per example whatever num_classes).

    ``forward(h, targets)`` returns the mean loss; ``backward()`` gives the rest of the model
    dL/dh and updates this layer in place (lr, weight_decay), so the layer has no torch
    Parameters and the model's optimiser never sees it. Each backward is one SGD step of the
    layer. The layer's state travels in ``state_dict()`` (as extra state).
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        loss: str = "z_loss",
        lr: float,
        weight_decay: float = 0.0,
        dtype: Any = torch.float32,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        from .spherical import FactoredOutputLayer as _Layer

        self.layer = _Layer(
            num_classes, dim, loss=loss, lr=lr, weight_decay=weight_decay, dtype=dtype,
            seed=seed, **options,
        )  # fmt: skip

    def forward(self, h: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if h.device.type != "cpu":
            raise ValueError(f"h must be a CPU tensor, got device {h.device}")
        return FactoredOutputFunction.apply(h, targets, self.layer)

    @torch.no_grad()
    def topk(self, h: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The k best classes per example, best first: (outputs, indices)."""
        values, indices = self.layer.topk(h.detach(), k)
        return torch.from_numpy(values), torch.from_numpy(indices)

    def weight(self) -> torch.Tensor:
        """W materialised (num_classes x dim), a new tensor."""
        return torch.from_numpy(self.layer.weight())

    def get_extra_state(self) -> dict[str, Any]:
        return self.layer.state_dict()

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.layer.load_state_dict(state)

    def extra_repr(self) -> str:
        layer = self.layer
        return (
            f"num_classes={layer.num_classes}, dim={layer.dim}, loss={layer.loss!r}, "
            f"lr={layer.lr}, weight_decay={layer.weight_decay}, dtype={layer.dtype}"
        )


class FactoredOutputLayer(FactoredOutputHead):
    """Deprecated name of :class:`FactoredOutputHead` (``softzo.spherical.FactoredOutputLayer``
    is the layer itself, a different class); constructing it warns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import warnings

        warnings.warn(
            "softzo.torch.FactoredOutputLayer is now FactoredOutputHead "
            "(softzo.spherical.FactoredOutputLayer is the layer itself)",
            DeprecationWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)
