"""MeZO and Sparse MeZO."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ._checks import check_fraction, group_defaults
from ._engine import ZerothOrder
from ._subset import Subset


class MeZO(ZerothOrder):
    """MeZO (Malladi et al. 2023): SGD on the two-point estimate (f(θ+εz) − f(θ−εz))/(2ε) · z.

    theta_g <- theta_g (1 - lr wd) - lr * proj_grad * z_g, with z Gaussian by default; the
    restore of the second evaluation and the update are one pass over the parameters.
    ``num_queries`` > 1 averages that many directions per step.

    ``sparsity=s`` in (0, 1) is Sparse MeZO (Liu et al. 2024): per tensor and step, only the
    entries with |theta_i| <= t are perturbed and updated (weight decay included), t the
    (1 - s) quantile of |theta| estimated from ``MASK_SAMPLE`` entries drawn at random, so a
    fraction s of the entries stays bitwise unchanged. The mask is decided from the unperturbed
    theta in the step's first pass (fused with the +eps z move) and kept as 1 bit per entry
    (1/32 of a float32 tensor) for the step's other passes: recomputing it from perturbed values
    cannot be made consistent (see cpp/src/kernels/zo/zo_kernels.h). ``mask(i)`` returns it.

    ``subspace=dict(history=32, every=history, variance=0.99)`` is ZOODiP's subspace gradient
    (Seo et al., CVPR 2025): the last ``history`` parameter vectors are kept (recorded after
    each step); every ``every`` steps their centred principal directions are computed, and from
    then on the estimate ĝ loses its components along the minor ones, those past the leading
    directions that explain ``variance`` of the history's variance: ĝ <- (I - V V^T) ĝ, weight
    decay unchanged. Memory: up to 2 * history + 2 float64 vectors of the parameters' size (the
    history, V and the estimate), which the caller opts into; the restore is then not fused
    with the update. The same option
    exists on SPSA, SPSA_GC, ZOSGD and ZOAdam (every two-point method, AskTell included), not
    on HiZOO (its step is preconditioned by its Hessian estimate), RGE or CGE. It cannot be
    combined with ``sparsity``: the projection mixes entries, so entries outside the mask
    would move.

    ``subset=dict(fraction=f, block=65536)`` (also on SPSA) perturbs and updates random
    subsets: the flat index space of all parameters concatenated is cut into blocks of
    ``block`` elements from index 0 (a block may span two tensors; the last may be shorter),
    or ``block="tensor"`` makes each parameter one block (LeZO-style). Each step chooses
    k = max(1, round(f * num_blocks)) distinct blocks uniformly, with NumPy's Philox keyed by
    (seed, step) only, so the choice is recomputed rather than stored and is the same after
    ``load_state_dict``. z is zero outside the chosen blocks and every pass of the step
    (each query's ±eps z, the restore and update, SPSA's calibration probes) runs on those
    blocks only, so a step costs about f of a full one; inside them z is the value the full
    vector would have there. Weight decay is part of the update, so it too applies to the
    chosen blocks only (k is at least 1, so parameters smaller than one block always take
    the full step). ``subset_ranges(step)`` returns the chosen [start, stop) ranges.
    float16 / bfloat16 parameters work, but a tensor the subset touches at all is copied and
    re-rounded whole in each pass. Not combinable with ``sparsity`` or ``subspace``.
    """

    _device_moves = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-6,
        eps: float = 1e-3,
        *,
        weight_decay: float = 0.0,
        sparsity: float | None = None,
        subspace: dict[str, Any] | None = None,
        subset: dict[str, Any] | None = None,
        distribution: str = "gaussian",
        num_queries: int = 1,
        **engine: Any,
    ) -> None:
        defaults = group_defaults(lr, eps, weight_decay)
        if sparsity is not None:
            sparsity = check_fraction("sparsity", sparsity, False)
        # Each pair selects differently: the subspace projection moves entries outside Sparse
        # MeZO's mask and outside the subset's blocks; the mask bits are indexed per whole tensor.
        if sparsity is not None and subspace is not None:
            raise ValueError(
                "sparsity and subspace cannot be combined: the subspace projection would "
                "move entries outside Sparse MeZO's mask"
            )
        if subset is not None:
            for name, value in (("sparsity", sparsity), ("subspace", subspace)):
                if value is not None:
                    raise ValueError(f"subset and {name} cannot be combined")
        super().__init__(
            params,
            defaults,
            distribution=distribution,
            num_queries=num_queries,
            subspace=subspace,
            engine=engine,
        )
        self.sparsity = sparsity
        self._subset = None if subset is None else Subset(subset, self._views)

    def _fused_restore(self) -> bool:
        return self.num_queries == 1 and self._subspace is None

    def _lr(self, gi: int) -> float:
        return self.param_groups[gi]["lr"]

    def _update(self, deltas: list[float], restore_last: bool) -> None:
        ng = len(self.param_groups)
        lr = [self._lr(gi) for gi in range(ng)]
        wd = [g["weight_decay"] for g in self.param_groups]
        if self._subspace is not None:
            for (view, _, gi), grad in zip(self._views, self._projected_estimate(deltas)):
                view[...] = view.astype(np.float64) * (1.0 - lr[gi] * wd[gi]) - lr[gi] * grad
            self._publish_all()
            return
        for q, delta in enumerate(deltas):
            last = q == len(deltas) - 1
            coef = [g["eps"] for g in self.param_groups] if (last and restore_last) else [0.0] * ng
            # Weight decay once per step, with the first query's pass.
            self._move(
                q,
                coef,
                lr,
                [self._grad_coef(delta, gi) for gi in range(ng)],
                wd if q == 0 else None,
            )
