"""HiZOO: MeZO preconditioned by a diagonal Hessian estimate."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from .. import _core
from ._checks import check_positive, group_defaults
from ._engine import ZerothOrder


class HiZOO(ZerothOrder):
    """HiZOO (Zhao et al. 2024, "Second-order fine-tuning without pain for LLMs"): MeZO with a
    diagonal Hessian estimate Sigma (one buffer per parameter, started at ``sigma0``).

    Per query: f0 = f(theta), f± = f(theta ± eps Sigma^(-1/2) z), then in one pass
    theta is restored, Sigma <- (1 - alpha) Sigma + alpha |f+ + f- - 2 f0| / (2 eps^2) Sigma z^2
    and theta <- theta (1 - lr wd) - lr (f+ - f-) / (2 eps) Sigma^(-1/2) z with the new Sigma
    (alpha = ``hessian_smooth``; the paper's LLM runs use 1e-8 to 1e-6). ``num_queries`` > 1
    repeats this that many times per step, each with lr / num_queries: 3 evaluations each.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-6,
        eps: float = 1e-3,
        *,
        hessian_smooth: float = 1e-8,
        sigma0: float = 1.0,
        weight_decay: float = 0.0,
        distribution: str = "gaussian",
        num_queries: int = 1,
        **engine: Any,
    ) -> None:
        defaults = group_defaults(lr, eps, weight_decay)
        alpha = float(hessian_smooth)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"hessian_smooth must be in [0, 1), got {hessian_smooth!r}")
        super().__init__(
            params,
            defaults,
            distribution=distribution,
            num_queries=num_queries,
            engine=engine,
        )
        self.hessian_smooth = alpha
        s0 = check_positive("sigma0", sigma0)
        self.sigma = [np.full(v.size, s0, dtype=v.dtype) for v, _, _ in self._views]

    def evaluations_per_step(self) -> int:
        return 3 * self.num_queries

    def _move_diag(self, direction: int, coef: list[float], update: dict | None = None) -> None:
        """theta += coef z / sqrt(Sigma); with ``update`` (per-group lists lr, g, wd, gain) the
        fused restore, Sigma update and step."""
        for i, (view, offset, gi) in enumerate(self._views):
            args = (
                (True, update["lr"][gi], update["g"][gi], update["wd"][gi])
                if update
                else (False, 0.0, 0.0, 0.0)
            )
            gain = update["gain"][gi] if update else 0.0

            def kernel(theta, c, args=args, gain=gain, sigma=self.sigma[i], offset=offset):
                _core._zo_hizoo(
                    self.seed,
                    self.step_count & 0xFFFFFFFF,
                    direction,
                    self.dist,
                    offset,
                    theta,
                    sigma,
                    c,
                    *args,
                    1.0 - self.hessian_smooth,
                    gain,
                    self.threads,
                )

            self._apply_move(i, coef[gi], update is not None, kernel)

    def _step(self, closure: Callable[[], Any]) -> float:
        eps = [g["eps"] for g in self.param_groups]
        f0s = []
        for q in range(self.num_queries):
            f0 = self._base_loss(closure)
            # Perturbs by ±eps Sigma^(-1/2) z, leaving theta at theta - eps Sigma^(-1/2) z.
            f_plus, f_minus = self._two_point(closure, q, self._move_diag)
            try:
                f0, f_plus, f_minus = self._agree([f0, f_plus, f_minus])
            except BaseException:
                self._move_diag(q, eps)
                raise
            delta = 0.5 * (f_plus - f_minus)
            curvature = abs(f_plus + f_minus - 2.0 * f0)
            update = {
                "lr": [g["lr"] for g in self.param_groups],
                "g": [delta / e / self.num_queries for e in eps],
                "wd": [g["weight_decay"] for g in self.param_groups],
                "gain": [self.hessian_smooth * curvature / (2 * e * e) for e in eps],
            }
            self._move_diag(q, eps, update)
            f0s.append(f0)
        self.step_count += 1
        return float(np.mean(f0s))

    def _extra_state(self) -> dict[str, Any]:
        return {"sigma": [s.copy() for s in self.sigma], "hessian_smooth": self.hessian_smooth}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.sigma = [
            np.array(s, dtype=v.dtype) for s, (v, _, _) in zip(state["sigma"], self._views)
        ]
        self.hessian_smooth = float(state["hessian_smooth"])
