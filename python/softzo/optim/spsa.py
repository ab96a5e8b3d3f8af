"""Spall's SPSA, and SPSA with BlackVIP's gradient correction."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from ._checks import check_count, check_positive
from ._engine import PROBE_DIRECTION, Momentum
from .mezo import MeZO


class _SpallGains:
    """Spall's gain sequences, k the step count from 0: the perturbation size
    c_k = c / (k + 1)^gamma (every group's eps) and the step size a_k = a / (k + 1 + A)^alpha."""

    def _begin_step(self) -> None:
        ck = self.c / (self.step_count + 1) ** self.gamma
        for g in self.param_groups:
            g["eps"] = ck

    def _ak(self) -> float:
        return float(self.a) / (self.step_count + 1 + self.A) ** self.alpha


class SPSA(_SpallGains, MeZO):
    """SPSA (Spall 1992/1998) with Rademacher directions and Spall's gain sequences:
    a_k = a / (k + 1 + A)^alpha, c_k = c / (k + 1)^gamma (k from 0); ĝ = (f(θ+c_kΔ) −
    f(θ−c_kΔ)) / (2 c_k) Δ, averaged over ``num_queries`` directions. ``A=None`` is
    0.1 * ``maxiter`` (Spall's advice; :func:`minimize` sets ``maxiter`` from its budget).

    ``a="auto"`` calibrates a before the first step so that the first move is about
    ``target_step`` per coordinate, a_0 |ĝ_i| = target_step (Spall 1998, section III), with
    |ĝ_i| = |f(θ+c_0Δ_p) − f(θ−c_0Δ_p)| / (2 c_0) averaged over ``calibration_probes``
    directions Δ_p, as Spall advises, so that one unluckily small or large probe does not set
    the step size. The probes cost 2 * calibration_probes evaluations on the first step
    (``calibration_evaluations()``), use their own Philox directions (direction numbers from
    2^31, which no step uses), are deterministic given the seed, and leave θ where it was
    (within the rounding of the in-place moves, as a step's evaluations do). If every probe
    sees equal values (|ĝ| = 0), |ĝ_i| is taken as 1. ``subspace=``, ``subset=``: see
    :class:`MeZO`.
    """

    def __init__(
        self,
        params: Iterable[Any],
        a: float | str = "auto",
        c: float = 0.1,
        *,
        A: float | None = None,
        alpha: float = 0.602,
        gamma: float = 0.101,
        target_step: float = 0.1,
        calibration_probes: int = 10,
        maxiter: int = 1000,
        num_queries: int = 1,
        subspace: dict[str, Any] | None = None,
        subset: dict[str, Any] | None = None,
        **engine: Any,
    ) -> None:
        if a != "auto":
            a = check_positive("a", a)
        self.a = a
        self.c = check_positive("c", c)
        self._A = None if A is None else check_positive("A", A, True)
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.target_step = check_positive("target_step", target_step)
        self.calibration_probes = check_count("calibration_probes", calibration_probes)
        self.maxiter = check_count("maxiter", maxiter)
        super().__init__(
            params,
            lr=0.0,
            eps=c,
            distribution="rademacher",
            num_queries=num_queries,
            subspace=subspace,
            subset=subset,
            **engine,
        )

    @property
    def A(self) -> float:
        """The stability constant: as given, or 0.1 * maxiter."""
        return 0.1 * self.maxiter if self._A is None else self._A

    def _lr(self, gi: int) -> float:
        return self._ak()

    def calibration_evaluations(self) -> int:
        return 2 * self.calibration_probes if self.a == "auto" else 0

    def _step(self, closure: Callable[[], Any]) -> float:
        if self.a == "auto":
            self._begin_step()
            probes = [PROBE_DIRECTION + p for p in range(self.calibration_probes)]
            deltas, _ = self._two_points(closure, probes)  # theta restored after each
            self._calibrate(deltas)
        return super()._step(closure)

    def _calibrate(self, deltas: list[float]) -> None:
        """a from the probes' (f+ - f-) / 2: a_0 mean |ĝ_i| = target_step."""
        g0 = float(np.mean(np.abs(deltas))) / self.param_groups[0]["eps"]
        self.a = self.target_step * (1 + self.A) ** self.alpha / (g0 if g0 > 0 else 1.0)

    def _extra_state(self) -> dict[str, Any]:
        return {"a": self.a}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.a = state["a"]


class SPSA_GC(_SpallGains, Momentum):
    """SPSA with gradient correction (BlackVIP, Oh et al. 2023): Nesterov-style momentum on the
    SPSA estimate, m_k = beta m_{k-1} + ĝ, theta <- theta - a_k (ĝ + beta m_k), with Spall's gains
    a_k = a / (k + 1 + A)^alpha and c_k = c / (k + 1)^gamma and ĝ averaged over ``num_queries``
    directions (BlackVIP's defaults: a = c = 0.01, alpha = 0.4, gamma = 0.1, beta = 0.9, 5).
    ``subspace=``: see :class:`MeZO`."""

    def __init__(
        self,
        params: Iterable[Any],
        a: float = 0.01,
        c: float = 0.01,
        *,
        A: float = 0.0,
        alpha: float = 0.4,
        gamma: float = 0.1,
        beta: float = 0.9,
        num_queries: int = 5,
        subspace: dict[str, Any] | None = None,
        distribution: str = "rademacher",
        **engine: Any,
    ) -> None:
        super().__init__(
            params,
            {"eps": check_positive("c", c)},
            distribution=distribution,
            num_queries=num_queries,
            subspace=subspace,
            engine=engine,
        )
        self.a, self.c = check_positive("a", a), float(c)
        self.A = check_positive("A", A, True)
        self.alpha, self.gamma = float(alpha), float(gamma)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta!r}")
        self.beta = float(beta)

    def _apply(self, i, view, grad, group):
        m = self._accumulate(i, self.beta, grad)
        view -= (self._ak() * (grad + self.beta * m)).astype(view.dtype)
