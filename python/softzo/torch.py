"""PyTorch autograd for softzo's fused losses: functions and ``nn.Module`` wrappers.

Importing this module imports torch (an optional dependency: ``import softzo`` never does).
Each loss runs :mod:`softzo.losses` once in the forward pass with ``return_grad=True`` on the
CPU tensors (read without copying, outside autograd), keeps the gradient, and the backward pass
only scales it by the incoming gradient: no softmax or log-softmax is saved. Logits must be
float32, float64, float16 or bfloat16 CPU tensors (halves are computed in float32, and the loss
and gradient rounded once to their type; StableMax takes float32 and float64 only) of shape
(N, V), or (V,) with a 0-d target (PyTorch's unbatched
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

from . import _linear_cross_entropy as _linear_ce
from . import losses
from ._arrays import check_choice
from ._torch_factored import FactoredOutputFunction, FactoredOutputHead, FactoredOutputLayer

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
    "LinearCrossEntropyFunction",
    "LinearCrossEntropyLoss",
    "SphericalLoss",
    "SphericalLossFunction",
    "StableMaxCrossEntropyFunction",
    "StableMaxCrossEntropyLoss",
    "ZLoss",
    "ZLossFunction",
    "comp_sum_loss",
    "cross_entropy",
    "kl_div",
    "linear_cross_entropy",
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


class LinearCrossEntropyFunction(torch.autograd.Function):
    """Autograd function of :func:`softzo.losses.linear_cross_entropy` (gradients to ``h``,
    ``weight`` and ``bias``).

    For "mean" and "sum" the forward pass computes the gradients too (its two sweeps over the
    classes) and the backward pass scales them. For "none" the rows' gradients depend on the
    incoming per-row weights, so the forward pass computes the losses only (one sweep) and the
    backward pass both sweeps with those weights.
    """

    @staticmethod
    def forward(
        ctx, h, weight, bias, target, ignore_index, label_smoothing, reduction, softcap,
        num_threads, grad_filter,
    ):  # fmt: skip
        ctx.options = (ignore_index, label_smoothing, reduction, softcap, num_threads, grad_filter)
        ctx.has_bias = bias is not None
        eager = reduction != "none"
        loss, rows, grads = _linear_ce._linear_cross_entropy(
            h, weight, target, bias, ignore_index, label_smoothing, reduction, softcap, eager,
            num_threads, grad_filter, None,
        )  # fmt: skip
        ctx.eager = eager
        if eager:
            ctx.save_for_backward(*grads)
            return loss
        ctx.save_for_backward(h, weight, bias, target)
        return rows

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple:
        if ctx.eager:
            grads = ctx.saved_tensors
            if grad_output.item() != 1.0:
                grads = tuple(g * grad_output for g in grads)
        else:
            h, weight, bias, target = ctx.saved_tensors
            ignore_index, label_smoothing, reduction, softcap, threads, grad_filter = ctx.options
            _, _, grads = _linear_ce._linear_cross_entropy(
                h, weight, target, bias, ignore_index, label_smoothing, reduction, softcap, True,
                threads, grad_filter, grad_output.detach().float().contiguous().numpy(),
            )  # fmt: skip
        grad_h, grad_weight = grads[0], grads[1]
        grad_bias = grads[2] if ctx.has_bias else None
        needs = ctx.needs_input_grad
        return (
            grad_h if needs[0] else None,
            grad_weight if needs[1] else None,
            grad_bias if needs[2] else None,
        ) + (None,) * 7


# ---- functional API --------------------------------------------------------------------------


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    *,
    bias: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
    softcap: float | None = None,
    num_threads: int | None = None,
    grad_filter: float | None = None,
) -> torch.Tensor:
    """Differentiable :func:`softzo.losses.linear_cross_entropy`:
    ``F.cross_entropy(F.linear(h, weight, bias), target)`` without the N x V logits, for (N, d)
    ``h`` and (N,) ``target``; gradients flow to ``h``, ``weight`` and ``bias``."""
    if any(_needs_grad(x) for x in (h, weight, bias)):
        return LinearCrossEntropyFunction.apply(
            h, weight, bias, target, ignore_index, label_smoothing, reduction, softcap,
            num_threads, grad_filter,
        )  # fmt: skip
    return losses.linear_cross_entropy(
        h, weight, target, bias=bias, ignore_index=ignore_index, label_smoothing=label_smoothing,
        reduction=reduction, softcap=softcap, num_threads=num_threads, grad_filter=grad_filter,
    )  # fmt: skip


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


class LinearCrossEntropyLoss(torch.nn.Module):
    """A language model's last layer and its loss in one: ``F.cross_entropy(F.linear(h, weight,
    bias), target)`` computed without the N x V logits (:func:`linear_cross_entropy`).

    ``forward(h, weight, target, bias=None)``: ``h`` of shape (..., d) with ``target`` of shape
    (...), ``weight`` (V, d) (e.g. ``lm_head.weight``), in float32, float16 or bfloat16; for
    "none" the losses have target's shape. ``softcap`` is Gemma 2's final logit cap (30.0
    there); ``grad_filter`` Cut Cross-Entropy's optional gradient filtering (None: exact).
    """

    def __init__(
        self,
        ignore_index: int = -100,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        softcap: float | None = None,
        grad_filter: float | None = None,
        num_threads: int | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.reduction = check_choice(reduction, "reduction", losses.REDUCTIONS)
        self.softcap = softcap
        self.grad_filter = grad_filter
        self.num_threads = num_threads

    def forward(
        self,
        h: torch.Tensor,
        weight: torch.Tensor,
        target: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        loss = linear_cross_entropy(
            h.reshape(-1, h.shape[-1]), weight, target.reshape(-1), bias=bias,
            ignore_index=self.ignore_index, label_smoothing=self.label_smoothing,
            reduction=self.reduction, softcap=self.softcap, num_threads=self.num_threads,
            grad_filter=self.grad_filter,
        )  # fmt: skip
        return loss.reshape(target.shape) if self.reduction == "none" else loss

    def extra_repr(self) -> str:
        return (
            f"ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}, "
            f"reduction={self.reduction!r}, softcap={self.softcap}, grad_filter={self.grad_filter}"
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
