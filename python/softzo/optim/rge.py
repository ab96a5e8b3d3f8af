"""The randomised gradient estimate (unit-sphere directions, one-sided differences)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from .. import _core
from ._checks import sgd_defaults
from ._engine import ZerothOrder


class RGE(ZerothOrder):
    """Randomised gradient estimate (ZO-AE-DS): ĝ = (d / q) sum_i [f(x + mu u_i) - f(x)] / mu u_i
    with u_i uniform on the unit sphere (Gaussian z / ||z||, the norm taken over all parameters),
    then SGD: theta <- theta - lr ĝ. One base evaluation and ``num_queries`` forward ones."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        mu: float = 1e-3,
        *,
        num_queries: int = 10,
        **engine: Any,
    ) -> None:
        super().__init__(
            params,
            sgd_defaults(lr, mu),
            distribution="gaussian",
            num_queries=num_queries,
            engine=engine,
        )
        self.dim = sum(v.size for v, _, _ in self._views)

    def evaluations_per_step(self) -> int:
        return 1 + self.num_queries

    def _norm(self, direction: int) -> float:
        total = 0.0
        for view, offset, _ in self._views:
            total += _core._zo_sumsq(
                self.seed,
                self.step_count & 0xFFFFFFFF,
                direction,
                self.dist,
                offset,
                view.size,
                view.dtype == np.float64,
                self.threads,
            )
        return math.sqrt(total)

    def _step(self, closure: Callable[[], Any]) -> float:
        ng = len(self.param_groups)
        # u = z / ||z||. The norm's last bits depend on the ISA (the order of its sum), so
        # across processes rank 0's is used: the moves must be the same everywhere.
        norms = [self._norm(q) for q in range(self.num_queries)]
        if self._rounds is not None:
            norms = self._rounds.from_rank0(norms)
        values = [self._base_loss(closure)]
        scales = []
        for q in range(self.num_queries):
            scale = 1.0 / norms[q]
            move = [g["eps"] * scale for g in self.param_groups]
            self._move(q, move)
            try:
                fq = self._evaluate(closure)
            finally:
                self._move(q, [-m for m in move])
            if self._rounds is None and not math.isfinite(fq):
                raise ValueError(
                    f"closure returned a non-finite loss ({fq}); the parameters were restored"
                )
            values.append(fq)
            scales.append(scale)
        f0, *fs = self._agree(values)  # theta is restored: a failure just raises
        coefs = [
            [(fq - f0) / g["eps"] * scale * self.dim / self.num_queries for g in self.param_groups]
            for fq, scale in zip(fs, scales)
        ]
        lr = [g["lr"] for g in self.param_groups]
        for q, c in enumerate(coefs):
            self._move(q, [0.0] * ng, lr, c)
        self.step_count += 1
        return f0
