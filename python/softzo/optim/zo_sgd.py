"""ZO-SGD and its ZO-Bench variants: momentum, sign, conservative."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from ._checks import check_positive, group_defaults
from ._engine import Momentum


class ZOSGD(Momentum):
    """ZO-SGD (ZO-Bench's family): theta <- theta - lr * m, m = momentum * m + ĝ
    (+ weight_decay * theta); ``sign=True`` is ZO-SGD-Sign, ĝ = sign(projected grad) z.

    ``conservative=True`` is ZO-SGD-Cons (ZO-Bench, Zhang et al. 2024): with s = lr * m the step
    above, theta moves to whichever of theta, theta - s and theta + s has the lowest loss (ties
    keep the earlier one, so theta stays unless a move is strictly better). That costs 3 more
    evaluations per step (2 q + 3) and a copy of theta and of s while the candidates are tried.
    ``subspace=``: see :class:`MeZO`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        eps: float = 1e-3,
        *,
        momentum: float = 0.0,
        sign: bool = False,
        conservative: bool = False,
        weight_decay: float = 0.0,
        subspace: dict[str, Any] | None = None,
        distribution: str = "gaussian",
        num_queries: int = 1,
        **engine: Any,
    ) -> None:
        defaults = group_defaults(
            lr, eps, weight_decay, momentum=check_positive("momentum", momentum, True)
        )
        super().__init__(
            params,
            defaults,
            distribution=distribution,
            num_queries=num_queries,
            subspace=subspace,
            engine=engine,
        )
        self.sign = bool(sign)
        self.conservative = bool(conservative)
        self._steps: list[np.ndarray] | None = None

    def evaluations_per_step(self) -> int:
        return 2 * self.num_queries + (3 if self.conservative else 0)

    def _step(self, closure: Callable[[], Any]) -> float:
        if not self.conservative:
            return super()._step(closure)
        f0 = self._agree([self._base_loss(closure)])[0]
        start = [v.copy() for v, _, _ in self._views]
        self._steps = []
        try:
            mean = super()._step(closure)  # _apply records the steps s instead of moving
            steps, self._steps = self._steps, None
            losses = []
            for sgn in (-1.0, 1.0):
                for (view, _, _), x0, s in zip(self._views, start, steps):
                    view[...] = x0 + sgn * s
                self._publish_all()
                losses.append(self._evaluate(closure))
            # A non-finite candidate is not an error: it just loses.
            losses = [f0] + self._agree(losses, finite=False)
            best = int(np.argmin(np.where(np.isfinite(losses), losses, np.inf)))
        except BaseException:
            for (view, _, _), x0 in zip(self._views, start):
                view[...] = x0
            self._publish_all()
            self._steps = None
            raise
        for (view, _, _), x0, s in zip(self._views, start, steps):
            view[...] = x0 if best == 0 else x0 + (-1.0 if best == 1 else 1.0) * s
        self._publish_all()
        return mean

    def _apply(self, i, view, grad, group):
        if group["weight_decay"]:
            grad += group["weight_decay"] * view
        if group["momentum"]:
            grad = self._accumulate(i, group["momentum"], grad)
        if self._steps is not None:
            self._steps.append(group["lr"] * grad)
            return
        view -= (group["lr"] * grad).astype(view.dtype)
