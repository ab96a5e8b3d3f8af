"""The coordinate-wise gradient estimate (central differences along every coordinate)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from ._checks import sgd_defaults
from ._engine import ZerothOrder


class CGE(ZerothOrder):
    """Coordinate-wise gradient estimate (ZO-AE-DS): central differences along every coordinate,
    ĝ_j = [f(x + mu e_j) - f(x - mu e_j)] / (2 mu), 2d evaluations per step, then SGD. Each
    probed entry is saved and written back, so the parameters are restored exactly."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        mu: float = 1e-3,
        **engine: Any,
    ) -> None:
        super().__init__(
            params,
            sgd_defaults(lr, mu),
            distribution="gaussian",
            num_queries=1,
            engine=engine,
        )
        if any(w is not None for w in self._lowp):
            raise TypeError("CGE needs float32 or float64 params (its probes are single entries)")

    def evaluations_per_step(self) -> int:
        return 2 * sum(v.size for v, _, _ in self._views)

    def _step(self, closure: Callable[[], Any]) -> float:
        values = []
        for view, _, gi in self._views:
            mu = self.param_groups[gi]["eps"]
            for j in range(view.size):
                saved = view[j]
                try:
                    view[j] = saved + mu
                    fp = self._evaluate(closure)
                    view[j] = saved - mu
                    fm = self._evaluate(closure)
                finally:
                    view[j] = saved
                if self._rounds is None and not (math.isfinite(fp) and math.isfinite(fm)):
                    raise ValueError(
                        f"closure returned a non-finite loss ({fp}, {fm}); the parameters were "
                        "restored and not updated"
                    )
                values += [fp, fm]
        values = self._agree(values)  # every entry is restored: a failure just raises
        total, count, start = 0.0, 0, 0
        for view, _, gi in self._views:
            mu = self.param_groups[gi]["eps"]
            grad = np.empty(view.size, dtype=np.float64)
            for j in range(view.size):
                fp, fm = values[start + 2 * j], values[start + 2 * j + 1]
                grad[j] = (fp - fm) / (2.0 * mu)
                total += fp + fm
                count += 2
            start += 2 * view.size
            view -= (self.param_groups[gi]["lr"] * grad).astype(view.dtype)
        self.step_count += 1
        return total / count
