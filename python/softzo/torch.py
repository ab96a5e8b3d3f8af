"""PyTorch autograd for softzo's fused losses: functions and ``nn.Module`` wrappers.

Importing this module imports torch (an optional dependency: ``import softzo`` never does).
Each loss runs :mod:`softzo.losses` once in the forward pass with ``return_grad=True`` on the
CPU tensors (read without copying, outside autograd), keeps the gradient, and the backward pass
only scales it by the incoming gradient: no softmax or log-softmax is saved. Logits must be
float32 or float64 CPU tensors of shape (N, V), or (V,) with a 0-d target (PyTorch's unbatched
form, for the class-index losses); other devices and dtypes raise the errors of
:mod:`softzo.losses`. Gradients flow to the logits (or outputs) only: targets, class weights and
teacher logits get none. When the logits do not need a gradient (``torch.no_grad()``, or
``requires_grad=False``) only the loss is computed. The losses are differentiable once
(no double backward).

``CrossEntropyLoss(inplace_backward=True)`` writes the gradient over the logits' own storage
(``grad_out=logits``): no N x V buffer is allocated at all, and the logits tensor holds the
gradient after the forward pass. The logits must not be needed afterwards; an autograd node that
saved them for its own backward (e.g. ``tanh``) then raises the usual "modified by an inplace
operation" error instead of computing a wrong gradient.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.autograd.function import once_differentiable

from . import losses
from ._arrays import check_choice

__all__ = [
    "CompSumLoss",
    "CompSumLossFunction",
    "CrossEntropyFunction",
    "CrossEntropyLoss",
    "FactoredOutputFunction",
    "FactoredOutputHead",
    "FactoredOutputLayer",
    "KLDivLoss",
    "KLDivLossFunction",
    "SphericalLoss",
    "SphericalLossFunction",
    "StableMaxCrossEntropyFunction",
    "StableMaxCrossEntropyLoss",
    "ZLoss",
    "ZLossFunction",
    "comp_sum_loss",
    "cross_entropy",
    "kl_div",
    "spherical_loss",
    "stablemax_cross_entropy",
    "z_loss",
]


# ---- the shared forward and backward ---------------------------------------------------------

# torch >= 2.1; older versions simply do not detect a node that saved the overwritten logits.
_increment_version = getattr(torch.autograd.graph, "increment_version", lambda tensor: None)


def _save_gradient(ctx: Any, loss: torch.Tensor, grad: torch.Tensor, inplace: bool = False) -> Any:
    """Keeps the gradient for the backward pass and returns the loss.

    save_for_backward, unlike an attribute of ctx, lets the engine drop its reference once the
    backward pass is done (without retain_graph): a leaf's AccumulateGrad can then adopt the
    tensor as .grad instead of copying it.
    """
    ctx.save_for_backward(grad)
    ctx.inplace = inplace
    ctx.scaled = False
    return loss


def _inplace_forward(ctx: Any, x: torch.Tensor, loss_into: Callable[..., Any]) -> Any:
    """loss_into(x.detach()), which writes the gradient over the logits' own storage."""
    if x.dim() == 2 and x.shape[1] > 1 and x.stride(1) != 1:
        raise ValueError(
            "inplace_backward=True needs logits with a unit-stride class axis, got strides "
            f"{tuple(x.stride())}; pass logits.contiguous() or inplace_backward=False"
        )
    xd = x.detach()
    loss, grad = loss_into(xd)
    # The logits now hold the gradient: any other node that saved them must fail loudly.
    _increment_version(x)
    return _save_gradient(ctx, loss, grad, inplace=True)


def _scaled_gradient(ctx: Any, grad_output: torch.Tensor) -> tuple:
    """The saved gradient times grad_output, and None for every other input."""
    if ctx.scaled:
        raise RuntimeError(
            "softzo.torch: the in-place gradient was already scaled by an earlier backward "
            "pass; inplace_backward=True supports one backward pass per forward pass"
        )
    (grad,) = ctx.saved_tensors
    if grad_output.dim() == 1:  # reduction "none" of batched logits: one scale per row
        scale = None if bool((grad_output == 1).all()) else grad_output.unsqueeze(1)
    else:
        scale = None if grad_output.item() == 1.0 else grad_output
    if scale is not None:
        if ctx.inplace:  # the storage is the caller's logits, given up: scale it in place
            grad = grad.mul_(scale)
            ctx.scaled = True
        else:  # a new tensor keeps the saved gradient valid for retain_graph=True
            grad = grad * scale
    return (grad,) + (None,) * (len(ctx.needs_input_grad) - 1)


_scaled_gradient_once = once_differentiable(_scaled_gradient)


class _LossFunction(torch.autograd.Function):
    """Backward shared by every loss: the saved gradient times grad_output."""

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple:
        # The losses are differentiable once. Grad mode is on in a backward pass only under
        # create_graph=True; once_differentiable (4 us per call here) then makes a second
        # differentiation raise, as it always did.
        if torch.is_grad_enabled():
            return _scaled_gradient_once(ctx, grad_output)
        return _scaled_gradient(ctx, grad_output)


def _needs_grad(x: Any) -> bool:
    return torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad


# ---- autograd functions ----------------------------------------------------------------------


class CrossEntropyFunction(_LossFunction):
    """Autograd function of :func:`softzo.losses.cross_entropy` (gradient to ``logits``)."""

    @staticmethod
    def forward(
        ctx: Any,
        logits: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor | None,
        ignore_index: int,
        label_smoothing: float,
        lse_square_scale: float,
        reduction: str,
        inplace_backward: bool,
        num_threads: int | None,
    ) -> torch.Tensor:
        if inplace_backward:

            def into_logits(x: torch.Tensor) -> Any:
                return losses._cross_entropy(
                    x, target, weight, ignore_index, label_smoothing, lse_square_scale, reduction,
                    False, x, False, num_threads,
                )  # fmt: skip

            return _inplace_forward(ctx, logits, into_logits)
        loss, grad = losses._cross_entropy(
            logits, target, weight, ignore_index, label_smoothing, lse_square_scale, reduction,
            True, None, False, num_threads,
        )  # fmt: skip
        return _save_gradient(ctx, loss, grad)


class ZLossFunction(_LossFunction):
    """Autograd function of :func:`softzo.losses.z_loss` (gradient to ``outputs``)."""

    @staticmethod
    def forward(ctx, outputs, target, a, b, reduction, num_threads):
        loss, grad = losses.z_loss(
            outputs, target, a=a, b=b, reduction=reduction, return_grad=True,
            num_threads=num_threads,
        )  # fmt: skip
        return _save_gradient(ctx, loss, grad)


class StableMaxCrossEntropyFunction(_LossFunction):
    """Autograd function of :func:`softzo.losses.stablemax_cross_entropy`."""

    @staticmethod
    def forward(ctx, logits, target, reduction, num_threads):
        loss, grad = losses.stablemax_cross_entropy(
            logits, target, reduction=reduction, return_grad=True, num_threads=num_threads
        )
        return _save_gradient(ctx, loss, grad)


class SphericalLossFunction(_LossFunction):
    """Autograd function of :func:`softzo.losses.spherical_loss` (gradient to ``o``)."""

    @staticmethod
    def forward(ctx, o, target, kind, eps, reduction, num_threads):
        loss, grad = losses.spherical_loss(
            o, target, kind=kind, eps=eps, reduction=reduction, return_grad=True,
            num_threads=num_threads,
        )  # fmt: skip
        return _save_gradient(ctx, loss, grad)


class CompSumLossFunction(_LossFunction):
    """Autograd function of :func:`softzo.losses.comp_sum_loss`."""

    @staticmethod
    def forward(ctx, logits, target, tau, reduction, num_threads):
        loss, grad = losses.comp_sum_loss(
            logits, target, tau, reduction=reduction, return_grad=True, num_threads=num_threads
        )
        return _save_gradient(ctx, loss, grad)


class KLDivLossFunction(_LossFunction):
    """Autograd function of :func:`softzo.losses.kl_div` (gradient to ``student_logits`` only)."""

    @staticmethod
    def forward(ctx, student_logits, teacher_logits, temperature, reduction, num_threads):
        loss, grad = losses.kl_div(
            student_logits, teacher_logits, temperature=temperature, reduction=reduction,
            return_grad=True, num_threads=num_threads,
        )  # fmt: skip
        return _save_gradient(ctx, loss, grad)


# ---- functional API --------------------------------------------------------------------------


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    lse_square_scale: float = 0.0,
    reduction: str = "mean",
    inplace_backward: bool = False,
    num_threads: int | None = None,
) -> torch.Tensor:
    """Differentiable :func:`softzo.losses.cross_entropy` (torch's ``F.cross_entropy`` semantics).

    ``target``: (N,) class indices or (N, V) soft targets; for unbatched (V,) logits a 0-d
    index or (V,) soft targets, giving a 0-d loss. ``inplace_backward=True`` overwrites the
    logits with their gradient in the forward pass (see the module docstring).
    """
    return _cross_entropy(
        logits, target, weight, ignore_index, label_smoothing, lse_square_scale, reduction,
        inplace_backward, num_threads,
    )  # fmt: skip


def _cross_entropy(
    logits, target, weight, ignore_index, label_smoothing, lse_square_scale, reduction,
    inplace_backward, num_threads,
):  # fmt: skip
    """:func:`cross_entropy` with positional arguments (the module's call)."""
    if _needs_grad(logits):
        return CrossEntropyFunction.apply(
            logits, target, weight, ignore_index, label_smoothing, lse_square_scale, reduction,
            bool(inplace_backward), num_threads,
        )  # fmt: skip
    return losses._cross_entropy(
        logits, target, weight, ignore_index, label_smoothing, lse_square_scale, reduction,
        False, None, False, num_threads,
    )  # fmt: skip


def z_loss(
    outputs: torch.Tensor,
    target: torch.Tensor,
    *,
    a: float = 1.0,
    b: float = 0.0,
    reduction: str = "mean",
    num_threads: int | None = None,
) -> torch.Tensor:
    """Differentiable :func:`softzo.losses.z_loss`: softplus(a (b - z_c)) / a."""
    if not _needs_grad(outputs):
        return losses.z_loss(
            outputs, target, a=a, b=b, reduction=reduction, num_threads=num_threads
        )
    return ZLossFunction.apply(outputs, target, a, b, reduction, num_threads)


def stablemax_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    reduction: str = "mean",
    num_threads: int | None = None,
) -> torch.Tensor:
    """Differentiable :func:`softzo.losses.stablemax_cross_entropy`: -log stablemax(logits)_t."""
    if not _needs_grad(logits):
        return losses.stablemax_cross_entropy(
            logits, target, reduction=reduction, num_threads=num_threads
        )
    return StableMaxCrossEntropyFunction.apply(logits, target, reduction, num_threads)


def spherical_loss(
    o: torch.Tensor,
    target: torch.Tensor,
    *,
    kind: str = "log_spherical",
    eps: float = 1e-6,
    reduction: str = "mean",
    num_threads: int | None = None,
) -> torch.Tensor:
    """Differentiable :func:`softzo.losses.spherical_loss` ("log_spherical", "log_taylor", "mse")."""
    if not _needs_grad(o):
        return losses.spherical_loss(
            o, target, kind=kind, eps=eps, reduction=reduction, num_threads=num_threads
        )
    return SphericalLossFunction.apply(o, target, kind, eps, reduction, num_threads)


def comp_sum_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    tau: float,
    *,
    reduction: str = "mean",
    num_threads: int | None = None,
) -> torch.Tensor:
    """Differentiable :func:`softzo.losses.comp_sum_loss`: Phi^tau(1 / softmax(logits)_t)."""
    if not _needs_grad(logits):
        return losses.comp_sum_loss(
            logits, target, tau, reduction=reduction, num_threads=num_threads
        )
    return CompSumLossFunction.apply(logits, target, tau, reduction, num_threads)


def kl_div(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    reduction: str = "batchmean",
    num_threads: int | None = None,
) -> torch.Tensor:
    """Differentiable :func:`softzo.losses.kl_div`: KL(softmax(t / T) || softmax(s / T)).

    Takes logits, not log-probabilities (unlike ``torch.nn.functional.kl_div``); no T^2 factor.
    The teacher gets no gradient.
    """
    if not _needs_grad(student_logits):
        return losses.kl_div(
            student_logits,
            teacher_logits,
            temperature=temperature,
            reduction=reduction,
            num_threads=num_threads,
        )
    return KLDivLossFunction.apply(
        student_logits, teacher_logits, temperature, reduction, num_threads
    )


# ---- modules ---------------------------------------------------------------------------------


class CrossEntropyLoss(torch.nn.Module):
    """``torch.nn.CrossEntropyLoss`` on softzo's fused kernel, for (N, V) or unbatched (V,) logits.

    ``lse_square_scale`` adds PaLM's ``lse_square_scale * lse**2`` per counted row.
    ``inplace_backward=True`` writes the gradient over the logits' storage in the forward pass
    (no N x V allocation); the logits must not be used afterwards. ``weight`` is a buffer.
    """

    def __init__(
        self,
        weight: torch.Tensor | None = None,
        ignore_index: int = -100,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
        lse_square_scale: float = 0.0,
        inplace_backward: bool = False,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index = ignore_index
        self.reduction = check_choice(reduction, "reduction", losses.REDUCTIONS)
        self.label_smoothing = label_smoothing
        self.lse_square_scale = lse_square_scale
        self.inplace_backward = inplace_backward

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _cross_entropy(
            logits, target, self.weight, self.ignore_index, self.label_smoothing,
            self.lse_square_scale, self.reduction, self.inplace_backward, None,
        )  # fmt: skip

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, lse_square_scale={self.lse_square_scale}, "
            f"inplace_backward={self.inplace_backward}"
        )


class ZLoss(torch.nn.Module):
    """Z-loss of de Brébisson & Vincent: softplus(a (b - z_c)) / a, z the row-standardised outputs."""

    def __init__(self, a: float = 1.0, b: float = 0.0, reduction: str = "mean") -> None:
        super().__init__()
        self.a, self.b = a, b
        self.reduction = check_choice(reduction, "reduction", losses.REDUCTIONS)

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return z_loss(outputs, target, a=self.a, b=self.b, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}, reduction={self.reduction!r}"


class StableMaxCrossEntropyLoss(torch.nn.Module):
    """Cross-entropy over StableMax probabilities (Prieto et al. 2025): -log stablemax(x)_t."""

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_choice(reduction, "reduction", losses.REDUCTIONS)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return stablemax_cross_entropy(logits, target, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class SphericalLoss(torch.nn.Module):
    """Spherical-family loss of (N, D) outputs: kind "log_spherical", "log_taylor" or "mse"."""

    def __init__(
        self, kind: str = "log_spherical", eps: float = 1e-6, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.kind, self.eps = kind, eps
        self.reduction = check_choice(reduction, "reduction", losses.REDUCTIONS)

    def forward(self, o: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return spherical_loss(o, target, kind=self.kind, eps=self.eps, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, eps={self.eps}, reduction={self.reduction!r}"


class CompSumLoss(torch.nn.Module):
    """Comp-sum loss Phi^tau(1 / p_t): tau 0 sum-exponential, 1 cross-entropy, 2 MAE (1 - p_t)."""

    def __init__(self, tau: float, reduction: str = "mean") -> None:
        super().__init__()
        self.tau = tau
        self.reduction = check_choice(reduction, "reduction", losses.REDUCTIONS)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return comp_sum_loss(logits, target, self.tau, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, reduction={self.reduction!r}"


class KLDivLoss(torch.nn.Module):
    """Distillation KL(softmax(teacher / T) || softmax(student / T)) from logits (no T^2 factor).

    Unlike ``torch.nn.KLDivLoss``, both inputs are logits; "none" gives per-row KL, shape (N,).
    """

    def __init__(self, temperature: float = 1.0, reduction: str = "batchmean") -> None:
        super().__init__()
        self.temperature = temperature
        self.reduction = check_choice(reduction, "reduction", losses.KL_REDUCTIONS)

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return kl_div(
            student_logits,
            teacher_logits,
            temperature=self.temperature,
            reduction=self.reduction,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


# ---- the factored output layer ---------------------------------------------------------------


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
