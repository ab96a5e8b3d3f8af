"""ZO-Adam (ZO-AdaMM)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._checks import check_positive, group_defaults
from ._engine import Buffered


class ZOAdam(Buffered):
    """ZO-Adam (Chen et al. 2019, ZO-AdaMM): Adam's moments on the two-point estimate.
    ``subspace=``: see :class:`MeZO`."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        eps: float = 1e-3,
        *,
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        weight_decay: float = 0.0,
        subspace: dict[str, Any] | None = None,
        distribution: str = "gaussian",
        num_queries: int = 1,
        **engine: Any,
    ) -> None:
        defaults = group_defaults(lr, eps, weight_decay)
        super().__init__(
            params,
            defaults,
            distribution=distribution,
            num_queries=num_queries,
            subspace=subspace,
            engine=engine,
        )
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        self.betas = (float(b1), float(b2))
        self.adam_eps = check_positive("adam_eps", adam_eps)
        self.moments = [(np.zeros(v.shape), np.zeros(v.shape)) for v, _, _ in self._views]

    def _apply(self, i, view, grad, group):
        if group["weight_decay"]:
            grad += group["weight_decay"] * view
        b1, b2 = self.betas
        m, v = self.moments[i]
        m *= b1
        m += (1 - b1) * grad
        v *= b2
        v += (1 - b2) * grad * grad
        t = self.step_count + 1
        mhat = m / (1 - b1**t)
        vhat = v / (1 - b2**t)
        view -= (group["lr"] * mhat / (np.sqrt(vhat) + self.adam_eps)).astype(view.dtype)

    def _extra_state(self):
        return {"moments": [(m.copy(), v.copy()) for m, v in self.moments]}

    def _load_extra_state(self, state):
        self.moments = [(np.array(m), np.array(v)) for m, v in state["moments"]]
