"""Zeroth-order optimisers on softzo's perturbation engine: SPSA, SPSA-GC, MeZO (and Sparse
MeZO), HiZOO, ZO-SGD (momentum, sign, conservative), ZO-Adam, RGE and CGE, in the torch.optim
style (parameters updated in place) and the scipy style (:func:`minimize`).

Random directions z are never stored: each step regenerates z from (seed, step, direction) with
Philox4x32-10, the element index over the concatenated parameters being the counter, so z is the
same for any thread count or ISA and a run resumes bit-exactly from ``state_dict()``. A MeZO step
perturbs theta by +eps z, evaluates, moves to -eps z, evaluates, then restores and updates in one
pass; besides the optimiser's own state (momentum, Adam moments, HiZOO's Hessian, Sparse MeZO's
1-bit mask, the opt-in ``subspace=`` history of ZOODiP's subspace gradient) it allocates nothing
of the parameters' size.

Restoring float32 / float64 parameters is in-place float arithmetic: theta + eps z - 2 eps z +
eps z returns to theta within the rounding of those additions (about 3 ulp(|theta| + eps |z|) per
element), not bit-exactly.

float16 / bfloat16 parameters (torch tensors, NumPy float16) restore exactly. Each keeps a
float32 master copy, the optimiser's source of truth: a perturbation writes round(master + a z)
into the low-precision tensor without touching the master, the restore writes round(master)
back (bit-exact), and the update moves the master and writes it rounded. The master costs 4
bytes per low-precision parameter, which exact restore with a real update needs (the update
lr g z is far below half an ulp of float16 and would be lost by rounding), plus one float32
scratch buffer of the largest such tensor. Perturbing in place in float16 instead drifts: 1000
steps moved 98% of weights by an rms of 3e-4 with no update at all (ALGORITHMS.md, section 5).
The master is read from the tensor once, at construction (and by ``load_state_dict``): writes to
the tensor made outside the optimiser afterwards are overwritten by its next step.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from . import _core
from ._arrays import check_choice, check_not_masked, check_num_threads, framework_of

__all__ = [
    "CGE",
    "RGE",
    "SPSA",
    "SPSA_GC",
    "ZOSGD",
    "AskTell",
    "HiZOO",
    "MeZO",
    "ZOAdam",
    "minimize",
]

DISTRIBUTIONS = {"rademacher": 0, "gaussian": 1, "segmented": 2}
_SEED_MASK = (1 << 64) - 1
# Sparse MeZO's per-tensor threshold: the quantile of |theta| over this many entries drawn
# uniformly with replacement (Philox, keyed by the seed, countered by step and tensor), so the
# requested fraction is met to within sqrt(p (1 - p) / 16384) <= 0.004 (one standard deviation)
# at O(1) cost and memory per tensor; smaller tensors use every entry.
MASK_SAMPLE = 16384
# SPSA's a="auto" probes use directions PROBE_DIRECTION + p of step 0: a step's queries count
# from 0, so no step ever draws these streams.
PROBE_DIRECTION = 1 << 31


class _LowPrecision:
    """A float16 / bfloat16 parameter: the float32 master and the tensor it is rounded into."""

    def __init__(self, target: Any, is_torch: bool) -> None:
        self.target = target  # flat view (NumPy float16 array or torch tensor) of the parameter
        self.is_torch = is_torch
        if is_torch:
            self.master = target.float().numpy().copy()
        else:
            self.master = target.astype(np.float32)
        self.applied = 0.0  # the perturbation (multiple of z) the tensor shows over the master

    def publish(self, values: np.ndarray) -> None:
        """target <- values rounded to nearest even."""
        if self.is_torch:
            import torch

            self.target.copy_(torch.from_numpy(values))
        else:
            self.target[...] = values


def _flat_view(p: Any, index: int) -> tuple[np.ndarray, _LowPrecision | None]:
    """A writable 1-D float32/64 NumPy view of parameter ``p`` (NumPy array or torch CPU tensor),
    or, for float16 / bfloat16, its float32 master copy and the low-precision handle."""
    name = f"params[{index}]"
    fw = framework_of(p)
    if fw == "torch":
        if p.device.type != "cpu":
            raise ValueError(f"{name} is on device '{p.device}'; softzo runs on the CPU")
        if not p.is_contiguous():
            raise ValueError(f"{name} must be contiguous: it is updated in place, without a copy")
        import torch

        if p.dtype in (torch.float16, torch.bfloat16):
            low = _LowPrecision(p.detach().view(-1), True)
            return low.master, low
        arr = p.detach().numpy()
    elif isinstance(p, np.ndarray):
        check_not_masked(p, name)
        arr = p
    else:
        raise TypeError(f"{name} must be a NumPy array or a PyTorch tensor, got {type(p).__name__}")
    if arr.dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(
            f"{name} must be float32, float64, float16 or (torch) bfloat16, got {arr.dtype}"
        )
    if not arr.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if not arr.flags.aligned:
        raise ValueError(f"{name} is not aligned to its element size: it is updated in place")
    if not arr.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous: it is updated in place, without a copy")
    if arr.dtype == np.float16:
        low = _LowPrecision(arr.reshape(-1), False)
        return low.master, low
    return arr.reshape(-1), None


class _Subspace:
    """ZOODiP's subspace gradient (Seo et al., CVPR 2025, arXiv 2503.14868): a ring buffer of the
    last ``history`` parameter vectors (recorded after every step); every ``every`` steps, the
    principal directions of the centred buffer (NumPy's SVD) are split into the leading ones,
    which explain a fraction ``variance`` of its variance, and the minor rest. The estimate
    then loses its components along the minor directions, ĝ <- (I - V V^T) ĝ with V the minor
    directions (orthonormal): directions along which recent iterates barely moved (a
    coordinate that has converged and only jitters) carry mostly the estimate's noise.
    Directions the history never explored, and the leading ones, are kept: projecting onto the
    leading directions alone would confine every later step, and so every later history, to
    them, and the subspace could only shrink.

    Memory: the buffer and the minor directions, at most 2 * history float64 vectors of the
    parameters' size (plus two for the estimate while it is projected), which the caller opts
    into."""

    KEYS = ("history", "every", "variance")

    def __init__(self, options: dict[str, Any], size: int) -> None:
        _check_options("subspace", options, self.KEYS, "{'history': 32}")
        self.history = _check_count("subspace['history']", options.get("history", 32))
        if self.history < 2:
            raise ValueError("subspace['history'] must be >= 2 (principal directions need two)")
        self.every = _check_count("subspace['every']", options.get("every", self.history))
        self.variance = _check_fraction("subspace['variance']", options.get("variance", 0.99), True)
        self.buffer = np.zeros((self.history, size), dtype=np.float64)
        self.count = 0  # parameter vectors recorded so far
        self.minor: np.ndarray | None = None  # (r, size), orthonormal rows

    def record(self, views: list[tuple[np.ndarray, int, int]], step: int) -> None:
        """Appends theta (after step ``step``); recomputes the directions every ``every`` steps."""
        row = self.buffer[self.count % self.history]
        for view, offset, _ in views:
            row[offset : offset + view.size] = view
        self.count += 1
        if step % self.every == 0:
            self.minor = self.minor_directions()

    def minor_directions(self) -> np.ndarray | None:
        """The centred history's principal directions past the leading ones that explain
        ``variance`` of its variance, within its numerical rank (None when there are none)."""
        rows = self.buffer[: min(self.count, self.history)]
        centred = rows - rows.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        energy = s * s
        if energy.sum() == 0.0:
            return None
        # np.linalg.matrix_rank's tolerance: directions below it are arbitrary, not minor.
        rank = int(np.sum(s > s[0] * max(centred.shape) * np.finfo(np.float64).eps))
        leading = int(np.searchsorted(np.cumsum(energy) / energy.sum(), self.variance)) + 1
        return vt[leading:rank].copy() if leading < rank else None

    def project(self, g: np.ndarray) -> np.ndarray:
        if self.minor is None:
            return g
        return g - self.minor.T @ (self.minor @ g)

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "every": self.every,
            "variance": self.variance,
            "buffer": self.buffer.copy(),
            "count": self.count,
            "minor": None if self.minor is None else self.minor.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        buffer = np.array(state["buffer"], dtype=np.float64)
        if buffer.shape[1] != self.buffer.shape[1]:
            raise ValueError("state_dict's subspace history does not match these parameters")
        self.history, self.every = int(state["history"]), int(state["every"])
        self.variance = float(state["variance"])
        self.buffer, self.count = buffer, int(state["count"])
        self.minor = None if state["minor"] is None else np.array(state["minor"], np.float64)


class _Subset:
    """Random-subset perturbations: the flat index space (all parameters concatenated, the
    Philox element index) is cut into blocks of ``block`` elements from index 0, so a block may
    span two tensors and the last one may be shorter; ``block="tensor"`` makes every parameter
    one block. Each step draws k = max(1, round(fraction * num_blocks)) distinct blocks,
    uniformly, from a generator keyed by (seed, step) alone: the choice is recomputed, never
    stored, and the same after a resume."""

    KEYS = ("fraction", "block")

    def __init__(self, options: dict[str, Any], views: list[tuple[np.ndarray, int, int]]) -> None:
        _check_options("subset", options, self.KEYS, "{'fraction': 0.25}")
        if "fraction" not in options:
            raise ValueError("subset needs 'fraction', the share of blocks perturbed per step")
        self.fraction = _check_fraction("subset['fraction']", options["fraction"], True)
        block = options.get("block", 65536)
        if isinstance(block, str):
            if block != "tensor":
                raise ValueError(f"subset['block'] must be an int >= 1 or 'tensor', got {block!r}")
        elif isinstance(block, bool) or not isinstance(block, (int, np.integer)):
            raise TypeError(f"subset['block'] must be an int >= 1 or 'tensor', got {block!r}")
        elif block < 1:
            raise ValueError(f"subset['block'] must be an int >= 1 or 'tensor', got {block!r}")
        self.block = block if block == "tensor" else int(block)
        size = sum(v.size for v, _, _ in views)
        if self.block == "tensor":
            starts = np.array([offset for _, offset, _ in views], dtype=np.int64)
        else:
            starts = np.arange(0, size, self.block, dtype=np.int64)
        self.bounds = np.append(starts, size)  # block b is [bounds[b], bounds[b + 1])
        self.num_blocks = len(starts)
        self.k = max(1, round(self.fraction * self.num_blocks))
        self._runs: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None

    def blocks(self, seed: int, step: int) -> np.ndarray:
        """The sorted indices of the blocks chosen at ``step``. Counter word 1 is 1: Sparse
        MeZO's threshold sample uses [0, 0, step, i]."""
        gen = np.random.Generator(np.random.Philox(key=seed, counter=[0, 1, step, 0]))
        return np.sort(gen.choice(self.num_blocks, self.k, replace=False))

    def ranges(self, seed: int, step: int) -> np.ndarray:
        """(k, 2) flat [start, stop) ranges of the blocks chosen at ``step``, in order."""
        b = self.blocks(seed, step)
        return np.stack([self.bounds[b], self.bounds[b + 1]], axis=1)

    def pieces(self, seed: int, step: int, offset: int, n: int) -> list[tuple[int, int]]:
        """The parts of the parameter at flat [offset, offset + n) inside the step's blocks,
        as [start, stop) relative to the parameter, adjacent blocks merged (fewer calls)."""
        if self._runs is None or self._runs[0] != (seed, step):
            r = self.ranges(seed, step)
            new = np.ones(len(r), dtype=bool)
            new[1:] = r[1:, 0] != r[:-1, 1]  # a run starts where a block does not continue one
            ends = np.append(new[1:], True)
            self._runs = ((seed, step), r[new, 0], r[ends, 1])
        _, starts, stops = self._runs
        first = int(np.searchsorted(stops, offset, side="right"))
        last = int(np.searchsorted(starts, offset + n, side="left"))
        out = []
        for start, stop in zip(starts[first:last], stops[first:last]):
            lo, hi = max(int(start), offset) - offset, min(int(stop), offset + n) - offset
            if hi > lo:
                out.append((lo, hi))
        return out

    def options(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "block": self.block}


class _ZerothOrder:
    """Shared machinery: parameter groups, directions, the two-point estimate and state."""

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        seed: int,
        distribution: str,
        num_queries: int,
        num_threads: int | None,
        subspace: dict[str, Any] | None = None,
    ) -> None:
        check_choice(distribution, "distribution", tuple(DISTRIBUTIONS))
        if not isinstance(num_queries, int) or num_queries < 1:
            raise ValueError(f"num_queries must be an int >= 1, got {num_queries!r}")
        if not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        try:
            params = list(params)
        except TypeError:
            raise TypeError(
                f"params must be an iterable of arrays or of param-group dicts, got {params!r}"
            ) from None
        if not params:
            raise ValueError("params is empty")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups: list[dict[str, Any]] = []
        self._views: list[tuple[np.ndarray, int, int]] = []  # (flat view, offset, group)
        self._lowp: list[_LowPrecision | None] = []  # float16 / bfloat16 handles
        offset = 0
        for gi, g in enumerate(groups):
            group = {**defaults, **g, "params": list(g["params"])}
            for key in defaults:
                group[key] = float(group[key])
            self.param_groups.append(group)
            for p in group["params"]:
                view, low = _flat_view(p, len(self._views))
                self._views.append((view, offset, gi))
                self._lowp.append(low)
                offset += view.size
        self._scratch: np.ndarray | None = None
        # Sparse MeZO: per-tensor bits and thresholds of the current step (None: no mask).
        self.sparsity: float | None = None
        self._bits: list[np.ndarray | None] = [None] * len(self._views)
        self._thresholds: list[float] = [-1.0] * len(self._views)
        self._building = False
        self.seed = int(seed) & _SEED_MASK
        self.dist = DISTRIBUTIONS[distribution]
        self.num_queries = num_queries
        self.threads = check_num_threads(num_threads)
        self.step_count = 0
        self._subspace = None if subspace is None else _Subspace(subspace, offset)
        self._subset: _Subset | None = None  # MeZO's random-subset perturbations

    # -- the engine ------------------------------------------------------------------------------

    def _move(
        self,
        direction: int,
        coef: list[float],
        lr: list[float] | None = None,
        g: list[float] | None = None,
        wd: list[float] | None = None,
    ) -> None:
        """theta_g = (theta_g + coef_g z)(1 - lr_g wd_g) - lr_g g_g z for every parameter (on the
        elements of Sparse MeZO's mask, or of the step's random subset, only, when there is one)."""
        building, self._building = self._building, False
        for i, (view, offset, gi) in enumerate(self._views):
            c = coef[gi]
            lr_i, g_i, wd_i = lr[gi] if lr else 0.0, g[gi] if g else 0.0, wd[gi] if wd else 0.0
            bits = self._bits[i]
            thr = self._thresholds[i] if building and bits is not None else -1.0
            pieces = [(0, view.size)]
            if self._subset is not None:
                pieces = self._subset.pieces(self.seed, self.step_count, offset, view.size)
                if not pieces:
                    continue  # z is 0 on the whole tensor: every move of the step skips it

            def kernel(
                theta,
                c,
                lr_i=lr_i,
                g_i=g_i,
                wd_i=wd_i,
                bits=bits,
                thr=thr,
                offset=offset,
                pieces=pieces,
            ):
                # A piece starting at element s of the tensor draws z_{offset + s} onwards: the
                # values the whole-tensor call would use there.
                for start, stop in pieces:
                    _core._zo_restore_update(
                        self.seed,
                        self.step_count & 0xFFFFFFFF,
                        direction,
                        self.dist,
                        offset + start,
                        theta[start:stop],
                        c,
                        lr_i,
                        g_i,
                        wd_i,
                        bits,
                        thr,
                        self.threads,
                    )

            self._apply_move(i, c, lr_i != 0.0 or wd_i != 0.0, kernel)

    def _apply_move(
        self, i: int, c: float, updates: bool, kernel: Callable[[np.ndarray, float], None]
    ) -> None:
        """Runs ``kernel(theta, c)`` on parameter i. Low precision: the master never carries a
        perturbation; the tensor shows round(master + applied z), recomputed from the master."""
        view = self._views[i][0]
        low = self._lowp[i]
        if low is None:
            kernel(view, c)
            return
        applied = low.applied + c
        if updates:
            if applied != 0.0:
                raise AssertionError("an update must end the perturbation it restores")
            kernel(view, 0.0)
        if applied == 0.0:
            low.applied = 0.0
            low.publish(view)  # the exact restore
            return
        if self._scratch is None:
            largest = max(v.size for (v, _, _), w in zip(self._views, self._lowp) if w is not None)
            self._scratch = np.empty(largest, dtype=np.float32)
        tmp = self._scratch[: view.size]
        np.copyto(tmp, view)
        kernel(tmp, applied)
        low.applied = applied
        low.publish(tmp)

    def _publish_all(self) -> None:
        """Low-precision tensors <- their masters, rounded (after an update of the masters)."""
        for (view, _, _), low in zip(self._views, self._lowp):
            if low is not None:
                low.applied = 0.0
                low.publish(view)

    def _fill(self, direction: int, view: np.ndarray, offset: int, out: np.ndarray) -> None:
        _core._zo_fill(
            self.seed, self.step_count & 0xFFFFFFFF, direction, self.dist, offset, out, self.threads
        )

    def _two_point(
        self, closure: Callable[[], Any], direction: int, move: Callable | None = None
    ) -> tuple[float, float]:
        """(f(theta + eps z) - f(theta - eps z)) / 2 and their mean. theta is left at
        theta - eps z for the caller to restore (MeZO fuses that with its update), and restored
        here when the closure raises or returns a non-finite value. ``move`` (default
        ``_move``) applies a multiple of the direction."""
        move = move or self._move
        eps = [g["eps"] for g in self.param_groups]
        applied = 0.0  # multiple of eps currently added
        try:
            move(direction, eps)
            applied = 1.0
            f_plus = _loss_value(closure())
            move(direction, [-2.0 * e for e in eps])
            applied = -1.0
            f_minus = _loss_value(closure())
        except BaseException:
            if applied:
                move(direction, [-applied * e for e in eps])
            raise
        if not (math.isfinite(f_plus) and math.isfinite(f_minus)):
            move(direction, eps)
            raise ValueError(
                f"closure returned a non-finite loss ({f_plus}, {f_minus}); the parameters were "
                "restored and not updated"
            )
        return 0.5 * (f_plus - f_minus), 0.5 * (f_plus + f_minus)

    def step(self, closure: Callable[[], Any]) -> float:
        """One optimisation step; ``closure()`` evaluates the loss at the current parameters.
        Returns the mean of the evaluated losses (an estimate of the loss before the step)."""
        if not callable(closure):
            raise TypeError("step needs a closure that returns the loss")
        loss = self._step(closure)
        self._after_step()
        return loss

    def _step(self, closure: Callable[[], Any]) -> float:
        self._begin_step()
        self._prepare_mask()
        deltas, means = [], []
        eps = [g["eps"] for g in self.param_groups]
        for q in range(self.num_queries):
            delta, mean = self._two_point(closure, q)
            if q == self.num_queries - 1 and self._fused_restore():
                # Last query: restore (+eps) and update in the same pass.
                self._update(deltas + [delta], restore_last=True)
                means.append(mean)
                break
            self._move(q, eps)
            deltas.append(delta)
            means.append(mean)
        else:
            self._update(deltas, restore_last=False)
        self.step_count += 1
        return float(np.mean(means))

    def _fused_restore(self) -> bool:
        return False

    def _prepare_mask(self) -> None:
        """Sparse MeZO: each tensor's threshold for this step; the step's first move sets the
        mask bits from the unperturbed theta, and every later move of the step reuses them."""
        if self.sparsity is None:
            return
        for i, (view, _, _) in enumerate(self._views):
            if self._bits[i] is None:
                self._bits[i] = np.zeros((view.size + 31) // 32, dtype=np.uint32)
            self._thresholds[i] = self._mask_threshold(i, view)
        self._building = True

    def _mask_threshold(self, i: int, view: np.ndarray) -> float:
        """The (1 - sparsity) quantile of |theta| over MASK_SAMPLE entries (every entry of a
        smaller tensor): the smallest sampled |theta_j| with at least that fraction of the
        sample at or below it."""
        if view.size <= MASK_SAMPLE:
            sample = np.abs(view)
        else:
            gen = np.random.Generator(
                np.random.Philox(key=self.seed, counter=[0, 0, self.step_count, i])
            )
            sample = np.abs(view[gen.integers(0, view.size, MASK_SAMPLE)])
        sample = sample[~np.isnan(sample)]
        if sample.size == 0:
            return 0.0
        return float(np.quantile(sample, 1.0 - self.sparsity, method="inverted_cdf"))

    def mask(self, index: int) -> np.ndarray | None:
        """Sparse MeZO: the boolean mask (flat) of parameter ``index`` used by the last step
        (True: perturbed and updated), or None without ``sparsity``."""
        bits = self._bits[index]
        if bits is None:
            return None
        n = self._views[index][0].size
        return np.unpackbits(bits.view(np.uint8), bitorder="little")[:n].astype(bool)

    def subset_ranges(self, step: int | None = None) -> np.ndarray | None:
        """MeZO's ``subset=``: the (k, 2) int64 array of the flat [start, stop) index ranges (over
        the parameters concatenated in order) of the blocks chosen at ``step``, sorted; by
        default the last step taken. None without ``subset``. The choice depends only on
        (seed, step), so any step, past or future, can be asked for."""
        if self._subset is None:
            return None
        if step is None:
            if self.step_count == 0:
                raise ValueError("no step taken yet: pass step= (the next one is step 0)")
            step = self.step_count - 1
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        return self._subset.ranges(self.seed, int(step))

    def _begin_step(self) -> None:
        """Per-step schedules (SPSA's c_k) before the first evaluation."""

    def evaluations_per_step(self) -> int:
        """Closure calls one ``step`` makes (not counting ``calibration_evaluations()``)."""
        return 2 * self.num_queries

    def calibration_evaluations(self) -> int:
        """Closure calls the next ``step`` makes once, on top of ``evaluations_per_step()``:
        SPSA's ``a="auto"`` probes before its first step; 0 otherwise."""
        return 0

    def _after_step(self) -> None:
        """Bookkeeping once the parameters hold the step's result (the subspace history)."""
        if self._subspace is not None:
            self._subspace.record(self._views, self.step_count)

    def _update(self, deltas: list[float], restore_last: bool) -> None:
        raise NotImplementedError

    def _estimate_one(self, i: int, deltas: list[float]) -> np.ndarray:
        """ĝ of parameter i in float64: sum over the queries of the projected gradient times z."""
        view, offset, gi = self._views[i]
        grad = np.zeros(view.shape, dtype=np.float64)
        z = np.empty(view.shape, dtype=view.dtype)
        for q, delta in enumerate(deltas):
            self._fill(q, view, offset, z)
            grad += self._grad_coef(delta, gi) * z
        return grad

    def _projected_estimate(self, deltas: list[float]) -> list[np.ndarray]:
        """ĝ of every parameter after the subspace projection (which couples them all)."""
        flat = np.empty(self._subspace.buffer.shape[1], dtype=np.float64)
        for i, (view, offset, _) in enumerate(self._views):
            flat[offset : offset + view.size] = self._estimate_one(i, deltas)
        flat = self._subspace.project(flat)
        return [flat[offset : offset + view.size] for view, offset, _ in self._views]

    def _grad_coef(self, delta: float, gi: int) -> float:
        """Per-group projected gradient: delta / eps_g, averaged over the queries."""
        if getattr(self, "sign", False):
            return float(np.sign(delta)) / self.num_queries
        return delta / self.param_groups[gi]["eps"] / self.num_queries

    # -- state -------------------------------------------------------------------------------------

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-exactly: the step, the seed, the hyper-parameters of
        every group and the optimiser's buffers (copies)."""
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        for g, src in zip(groups, self.param_groups):
            g["num_params"] = len(src["params"])
        return {
            "type": type(self).__name__,
            "step": self.step_count,
            "seed": self.seed,
            "distribution": self.dist,
            "num_queries": self.num_queries,
            "param_groups": groups,
            "sizes": [int(v.size) for v, _, _ in self._views],
            "sparsity": self.sparsity,
            "subspace": None if self._subspace is None else self._subspace.state_dict(),
            "subset": None if self._subset is None else self._subset.options(),
            "masters": [
                None if w is None else v.copy() for (v, _, _), w in zip(self._views, self._lowp)
            ],
            "state": self._extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a ``state_dict()`` of the same optimiser type over the same parameter shapes."""
        if not isinstance(state, dict) or state.get("type") != type(self).__name__:
            got = state.get("type") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state_dict is for {got}, not {type(self).__name__}")
        sizes = [int(v.size) for v, _, _ in self._views]
        if state.get("sizes") != sizes or len(state.get("param_groups", [])) != len(
            self.param_groups
        ):
            raise ValueError("state_dict does not match these parameters (sizes or groups differ)")
        if (state.get("subspace") is None) != (self._subspace is None):
            raise ValueError("state_dict and this optimiser differ in the subspace option")
        subset = None if self._subset is None else self._subset.options()
        if state.get("subset") != subset:
            raise ValueError(
                f"state_dict's subset option {state.get('subset')!r} differs from this "
                f"optimiser's {subset!r}"
            )
        if self._subspace is not None:
            self._subspace.load_state_dict(state["subspace"])
        self._load_extra_state(state["state"])
        self.sparsity = state.get("sparsity")
        for (view, _, _), low, master in zip(self._views, self._lowp, state.get("masters", [])):
            if low is not None and master is not None:
                view[...] = master
        self._publish_all()
        for g, saved in zip(self.param_groups, state["param_groups"]):
            g.update({k: v for k, v in saved.items() if k != "num_params"})
        self.step_count = int(state["step"])
        self.seed = int(state["seed"])
        self.dist = int(state["distribution"])
        self.num_queries = int(state["num_queries"])


def _loss_value(value: Any) -> float:
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        raise TypeError(
            f"closure must return a number or a scalar array, got {type(value).__name__}"
        ) from None


def _check_options(name: str, options: Any, keys: tuple[str, ...], example: str) -> None:
    """A dict of options with known keys only (``subspace=``, ``subset=``)."""
    if not isinstance(options, dict):
        raise TypeError(f"{name} must be a dict like {example}, got {options!r}")
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise ValueError(f"{name} has unknown keys {unknown}; it takes {list(keys)}")


def _check_fraction(name: str, value: Any, one_allowed: bool) -> float:
    """A number in (0, 1], or in (0, 1) without ``one_allowed``."""
    interval = "(0, 1]" if one_allowed else "(0, 1)"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a number in {interval}, got {value!r}")
    if not (0.0 < float(value) < 1.0 or (one_allowed and float(value) == 1.0)):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def _group_defaults(lr: Any, eps: Any, weight_decay: Any, **extra: float) -> dict[str, float]:
    """The per-group hyperparameters every two-point optimiser takes, checked."""
    return {
        "lr": _check_positive("lr", lr, True),
        "eps": _check_positive("eps", eps),
        "weight_decay": _check_positive("weight_decay", weight_decay, True),
        **extra,
    }


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def _check_positive(name: str, value: Any, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


class MeZO(_ZerothOrder):
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
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        defaults = _group_defaults(lr, eps, weight_decay)
        if sparsity is not None:
            sparsity = _check_fraction("sparsity", sparsity, False)
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
            seed=seed,
            distribution=distribution,
            num_queries=num_queries,
            num_threads=num_threads,
            subspace=subspace,
        )
        self.sparsity = sparsity
        self._subset = None if subset is None else _Subset(subset, self._views)

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


class SPSA(MeZO):
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
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        if a != "auto":
            a = _check_positive("a", a)
        self.a = a
        self.c = _check_positive("c", c)
        self._A = None if A is None else _check_positive("A", A, True)
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.target_step = _check_positive("target_step", target_step)
        self.calibration_probes = _check_count("calibration_probes", calibration_probes)
        self.maxiter = _check_count("maxiter", maxiter)
        super().__init__(
            params,
            lr=0.0,
            eps=c,
            distribution="rademacher",
            num_queries=num_queries,
            subspace=subspace,
            subset=subset,
            seed=seed,
            num_threads=num_threads,
        )

    @property
    def A(self) -> float:
        """The stability constant: as given, or 0.1 * maxiter."""
        return 0.1 * self.maxiter if self._A is None else self._A

    def _begin_step(self) -> None:
        ck = self.c / (self.step_count + 1) ** self.gamma
        for g in self.param_groups:
            g["eps"] = ck

    def _lr(self, gi: int) -> float:
        return self._ak()

    def _ak(self) -> float:
        return float(self.a) / (self.step_count + 1 + self.A) ** self.alpha

    def calibration_evaluations(self) -> int:
        return 2 * self.calibration_probes if self.a == "auto" else 0

    def _step(self, closure: Callable[[], Any]) -> float:
        if self.a == "auto":
            self._begin_step()
            eps = [g["eps"] for g in self.param_groups]
            deltas = []
            for p in range(self.calibration_probes):
                delta, _ = self._two_point(closure, PROBE_DIRECTION + p)
                self._move(PROBE_DIRECTION + p, eps)  # back to theta
                deltas.append(delta)
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


class HiZOO(_ZerothOrder):
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
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        defaults = _group_defaults(lr, eps, weight_decay)
        alpha = float(hessian_smooth)
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"hessian_smooth must be in [0, 1), got {hessian_smooth!r}")
        super().__init__(
            params,
            defaults,
            seed=seed,
            distribution=distribution,
            num_queries=num_queries,
            num_threads=num_threads,
        )
        self.hessian_smooth = alpha
        s0 = _check_positive("sigma0", sigma0)
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

    def step(self, closure: Callable[[], Any]) -> float:
        if not callable(closure):
            raise TypeError("step needs a closure that returns the loss")
        eps = [g["eps"] for g in self.param_groups]
        f0s = []
        for q in range(self.num_queries):
            f0 = _loss_value(closure())
            if not math.isfinite(f0):
                raise ValueError(f"closure returned a non-finite loss ({f0}); nothing was changed")
            # Perturbs by ±eps Sigma^(-1/2) z and restores; delta = (f+ - f-) / 2.
            delta, mean = self._two_point(closure, q, self._move_diag)
            curvature = abs(2.0 * mean - 2.0 * f0)  # |f+ + f- - 2 f0|
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


class _Buffered(_ZerothOrder):
    """Optimisers with per-parameter state: z is materialised one parameter at a time."""

    def _update(self, deltas: list[float], restore_last: bool) -> None:
        if restore_last:
            raise AssertionError("buffered optimisers restore before updating")
        projected = None if self._subspace is None else self._projected_estimate(deltas)
        for i, (view, _, gi) in enumerate(self._views):
            grad = self._estimate_one(i, deltas) if projected is None else projected[i]
            self._apply(i, view, grad, self.param_groups[gi])
        self._publish_all()

    def _apply(self, i: int, view: np.ndarray, grad: np.ndarray, group: dict[str, Any]) -> None:
        raise NotImplementedError


class ZOSGD(_Buffered):
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
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        defaults = _group_defaults(
            lr, eps, weight_decay, momentum=_check_positive("momentum", momentum, True)
        )
        super().__init__(
            params,
            defaults,
            seed=seed,
            distribution=distribution,
            num_queries=num_queries,
            num_threads=num_threads,
            subspace=subspace,
        )
        self.sign = bool(sign)
        self.conservative = bool(conservative)
        self.buffers: list[np.ndarray | None] = [None] * len(self._views)
        self._steps: list[np.ndarray] | None = None

    def evaluations_per_step(self) -> int:
        return 2 * self.num_queries + (3 if self.conservative else 0)

    def _step(self, closure: Callable[[], Any]) -> float:
        if not self.conservative:
            return super()._step(closure)
        f0 = _loss_value(closure())
        if not math.isfinite(f0):
            raise ValueError(f"closure returned a non-finite loss ({f0}); nothing was changed")
        start = [v.copy() for v, _, _ in self._views]
        self._steps = []
        try:
            mean = super()._step(closure)  # _apply records the steps s instead of moving
            steps, self._steps = self._steps, None
            losses = [f0]
            for sgn in (-1.0, 1.0):
                for (view, _, _), x0, s in zip(self._views, start, steps):
                    view[...] = x0 + sgn * s
                self._publish_all()
                losses.append(_loss_value(closure()))
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
            if self.buffers[i] is None:
                self.buffers[i] = np.zeros(view.shape, dtype=np.float64)
            self.buffers[i] *= group["momentum"]
            self.buffers[i] += grad
            grad = self.buffers[i]
        if self._steps is not None:
            self._steps.append(group["lr"] * grad)
            return
        view -= (group["lr"] * grad).astype(view.dtype)

    def _extra_state(self):
        return {"buffers": [None if b is None else b.copy() for b in self.buffers]}

    def _load_extra_state(self, state):
        self.buffers = [
            None if b is None else np.array(b, dtype=np.float64) for b in state["buffers"]
        ]


class ZOAdam(_Buffered):
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
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        defaults = _group_defaults(lr, eps, weight_decay)
        super().__init__(
            params,
            defaults,
            seed=seed,
            distribution=distribution,
            num_queries=num_queries,
            num_threads=num_threads,
            subspace=subspace,
        )
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas!r}")
        self.betas = (float(b1), float(b2))
        self.adam_eps = _check_positive("adam_eps", adam_eps)
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


class SPSA_GC(_Buffered):
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
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        super().__init__(
            params,
            {"eps": _check_positive("c", c)},
            seed=seed,
            distribution=distribution,
            num_queries=num_queries,
            num_threads=num_threads,
            subspace=subspace,
        )
        self.a, self.c = _check_positive("a", a), float(c)
        self.A = _check_positive("A", A, True)
        self.alpha, self.gamma = float(alpha), float(gamma)
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must be in [0, 1), got {beta!r}")
        self.beta = float(beta)
        self.buffers: list[np.ndarray | None] = [None] * len(self._views)

    def _begin_step(self) -> None:
        for g in self.param_groups:
            g["eps"] = self.c / (self.step_count + 1) ** self.gamma

    def _apply(self, i, view, grad, group):
        ak = self.a / (self.step_count + 1 + self.A) ** self.alpha
        if self.buffers[i] is None:
            self.buffers[i] = np.zeros(view.shape, dtype=np.float64)
        self.buffers[i] *= self.beta
        self.buffers[i] += grad
        view -= (ak * (grad + self.beta * self.buffers[i])).astype(view.dtype)

    def _extra_state(self):
        return {"buffers": [None if b is None else b.copy() for b in self.buffers]}

    def _load_extra_state(self, state):
        self.buffers = [
            None if b is None else np.array(b, dtype=np.float64) for b in state["buffers"]
        ]


class RGE(_ZerothOrder):
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
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        super().__init__(
            params,
            {"lr": _check_positive("lr", lr, True), "eps": _check_positive("mu", mu)},
            seed=seed,
            distribution="gaussian",
            num_queries=num_queries,
            num_threads=num_threads,
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

    def step(self, closure: Callable[[], Any]) -> float:
        if not callable(closure):
            raise TypeError("step needs a closure that returns the loss")
        ng = len(self.param_groups)
        f0 = _loss_value(closure())
        if not math.isfinite(f0):
            raise ValueError(f"closure returned a non-finite loss ({f0}); nothing was changed")
        coefs = []
        for q in range(self.num_queries):
            scale = 1.0 / self._norm(q)  # u = z / ||z||
            move = [g["eps"] * scale for g in self.param_groups]
            self._move(q, move)
            try:
                fq = _loss_value(closure())
            finally:
                self._move(q, [-m for m in move])
            if not math.isfinite(fq):
                raise ValueError(
                    f"closure returned a non-finite loss ({fq}); the parameters were restored"
                )
            coefs.append(
                [
                    (fq - f0) / g["eps"] * scale * self.dim / self.num_queries
                    for g in self.param_groups
                ]
            )
        lr = [g["lr"] for g in self.param_groups]
        for q, c in enumerate(coefs):
            self._move(q, [0.0] * ng, lr, c)
        self.step_count += 1
        return f0


class CGE(_ZerothOrder):
    """Coordinate-wise gradient estimate (ZO-AE-DS): central differences along every coordinate,
    ĝ_j = [f(x + mu e_j) - f(x - mu e_j)] / (2 mu), 2d evaluations per step, then SGD. Each
    probed entry is saved and written back, so the parameters are restored exactly."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        mu: float = 1e-3,
        *,
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        super().__init__(
            params,
            {"lr": _check_positive("lr", lr, True), "eps": _check_positive("mu", mu)},
            seed=seed,
            distribution="gaussian",
            num_queries=1,
            num_threads=num_threads,
        )
        if any(w is not None for w in self._lowp):
            raise TypeError("CGE needs float32 or float64 params (its probes are single entries)")

    def evaluations_per_step(self) -> int:
        return 2 * sum(v.size for v, _, _ in self._views)

    def step(self, closure: Callable[[], Any]) -> float:
        if not callable(closure):
            raise TypeError("step needs a closure that returns the loss")
        grads = []
        total, count = 0.0, 0
        for view, _, gi in self._views:
            mu = self.param_groups[gi]["eps"]
            grad = np.empty(view.size, dtype=np.float64)
            for j in range(view.size):
                saved = view[j]
                try:
                    view[j] = saved + mu
                    fp = _loss_value(closure())
                    view[j] = saved - mu
                    fm = _loss_value(closure())
                finally:
                    view[j] = saved
                if not (math.isfinite(fp) and math.isfinite(fm)):
                    raise ValueError(
                        f"closure returned a non-finite loss ({fp}, {fm}); the parameters were "
                        "restored and not updated"
                    )
                grad[j] = (fp - fm) / (2.0 * mu)
                total += fp + fm
                count += 2
            grads.append(grad)
        for (view, _, gi), grad in zip(self._views, grads):
            view -= (self.param_groups[gi]["lr"] * grad).astype(view.dtype)
        self.step_count += 1
        return total / count


_METHODS = {
    "mezo": MeZO,
    "hizoo": HiZOO,
    "spsa": SPSA,
    "spsa_gc": SPSA_GC,
    "zo_sgd": ZOSGD,
    "zo_adam": ZOAdam,
    "rge": RGE,
    "cge": CGE,
}


class AskTell:
    """The two-point methods for callers who evaluate candidates themselves (in batches, on
    other machines): ``ask()`` returns the 2q points x ± eps z_q of the next step, ``tell(values)``
    takes their objective values in the same order and updates x.

        at = AskTell(x0, method="spsa", a=0.1, c=0.01)
        for _ in range(100):
            points = at.ask()                 # (2q, d) float64
            at.tell([f(p) for p in points])
        at.x                                  # the current point

    ``method``: "mezo", "spsa", "spsa_gc", "zo_sgd" or "zo_adam"; other keyword arguments go to
    the optimiser class (``sparsity=`` and ``subspace=`` included). Every update is the one
    ``step`` would make with the same values. With SPSA's ``a="auto"``, the first ``ask()``
    starts with the 2 * calibration_probes probe points x ± c_0 Δ_p, as ``step`` evaluates them
    first. With ``sparsity=`` (Sparse MeZO), z is zero outside the step's mask, decided by
    ``ask()`` from |x| as ``step`` decides it from the unperturbed parameters; with ``subset=``
    (MeZO, SPSA), outside the step's blocks.
    """

    _TWO_POINT = ("mezo", "spsa", "spsa_gc", "zo_sgd", "zo_adam")

    def __init__(self, x0: Any, *, method: str = "spsa", **options: Any) -> None:
        cls = _METHODS[check_choice(method, "method", self._TWO_POINT)]
        self.x = _start_point(x0)
        self.opt = cls([self.x], **options)
        self._asked = False
        self._probes = 0  # calibration probes among the rows of the last ask()

    def ask(self) -> np.ndarray:
        """The candidates of the next step: SPSA's calibration probes when due, then rows
        [x + eps z_0, x - eps z_0, x + eps z_1, ...]."""
        opt = self.opt
        opt._begin_step()
        eps = opt.param_groups[0]["eps"]
        keep = self._mask()
        self._probes = opt.calibration_evaluations() // 2
        directions = [PROBE_DIRECTION + p for p in range(self._probes)]
        directions += list(range(opt.num_queries))
        z = np.empty_like(self.x)
        rows = []
        for direction in directions:
            opt._fill(direction, self.x, 0, z)
            if keep is not None:
                z *= keep
            rows += [self.x + eps * z, self.x - eps * z]
        self._asked = True
        return np.stack(rows)

    def _mask(self) -> np.ndarray | None:
        """Sparse MeZO: this step's mask |x| <= t (NaN excluded), also stored as the bits the
        update kernel reads; MeZO's ``subset=``: the step's blocks; None without either."""
        opt = self.opt
        if opt._subset is not None:
            keep = np.zeros(self.x.size, dtype=bool)
            for start, stop in opt._subset.ranges(opt.seed, opt.step_count):
                keep[start:stop] = True
            return keep
        if opt.sparsity is None:
            return None
        threshold = opt._mask_threshold(0, self.x)
        keep = np.abs(self.x) <= threshold
        words = np.zeros(4 * ((keep.size + 31) // 32), dtype=np.uint8)
        packed = np.packbits(keep, bitorder="little")
        words[: packed.size] = packed
        opt._bits[0] = words.view(np.uint32)
        opt._thresholds[0] = threshold
        return keep

    def tell(self, values: Any) -> None:
        """Objective values of the points of the last ``ask()``, in order."""
        if not self._asked:
            raise ValueError("tell() needs the values of an ask() first")
        opt = self.opt
        try:
            v = np.asarray(values, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise TypeError(f"values must be numbers, got {values!r}") from None
        expected = 2 * (self._probes + opt.num_queries)
        if v.size != expected:
            raise ValueError(f"values must hold {expected} numbers, got {v.size}")
        if not np.all(np.isfinite(v)):
            raise ValueError("values must be finite; x was not updated")
        deltas = [float(v[2 * j] - v[2 * j + 1]) / 2 for j in range(v.size // 2)]
        if self._probes:
            opt._calibrate(deltas[: self._probes])
        opt._update(deltas[self._probes :], False)
        opt.step_count += 1
        opt._after_step()
        self._asked = False


def minimize(
    fun: Callable[[np.ndarray], float],
    x0: Any,
    *,
    method: str = "spsa",
    maxfev: int = 2000,
    bounds: Any = None,
    seed: int | None = None,
    callback: Callable[[np.ndarray], Any] | None = None,
    progress: bool | dict[str, Any] = False,
    options: dict[str, Any] | None = None,
) -> Any:
    """Minimises ``fun(x)`` with a zeroth-order method, scipy.optimize style.

    Args:
        fun: objective of a 1-D float64 array.
        x0: starting point (copied).
        method: "spsa", "spsa_gc", "mezo", "hizoo", "zo_sgd", "zo_adam", "rge" or "cge".
        maxfev: budget of function evaluations, never exceeded: the run takes as many steps
            as fit, (maxfev - calibration) // evaluations_per_step() (each two-point step
            costs 2 per query; SPSA's ``a="auto"`` spends 2 * calibration_probes once, first),
            and SPSA's ``maxiter`` (hence A = 0.1 maxiter) is that number unless given. When
            the probes would leave no room for a step, SPSA uses fewer (at least 1) unless
            ``calibration_probes`` is given; a budget that fits no step evaluates x0 once.
        bounds: optional ``(lo, hi)`` arrays, a sequence of ``(lo, hi)`` pairs (a (2, 2) array
            is read as pairs) or a ``scipy.optimize.Bounds``; lo <= hi, infinite allowed. The
            iterate is kept at least eps (SPSA's c_k, RGE's and CGE's mu) inside every wall (at
            the middle where the box is narrower than 2 eps), so that a perturbation of at most
            eps per coordinate lands inside the box and the difference quotient is the
            unconstrained one: Rademacher and segmented directions (SPSA, SPSA-GC, and the
            others with ``distribution="rademacher"``), RGE's unit vectors, CGE's coordinates.
            Gaussian directions (MeZO's, ZO-SGD's, ZO-Adam's default, HiZOO) can reach further;
            their coordinates beyond a wall are evaluated at the wall (clipped), which biases
            the estimate in those coordinates only. ``fun`` is never called outside the box.
        seed: seed of the directions (0 if None).
        callback: called with x (a copy) after each step; returning True stops.
        progress: True shows a tqdm bar over the evaluation budget with the best value so far
            (tqdm is optional: ImportError only when asked for); a dict is passed to tqdm as
            keyword arguments (``{"file": sys.stdout, "mininterval": 1}``).
        options: keyword arguments of the optimiser class (lr, eps, a, c, num_queries,
            ``subspace=dict(history=..., every=..., variance=...)``, ...).

    Returns:
        scipy.optimize.OptimizeResult with x (the best evaluated point), fun (its value; inf
        when no finite value was seen), nfev, nit, success, message and last_x (the final
        iterate). If ``fun`` returns a non-finite value (NaN, ±inf), the run stops there:
        success is False, the message names the value and the evaluation, x and fun are the
        best finite point so far, and last_x is the iterate of the interrupted step, restored
        (the step is not applied). The torch.optim-style ``step`` raises ValueError instead.
    """
    from scipy.optimize import OptimizeResult

    cls = _METHODS[check_choice(method, "method", tuple(_METHODS))]
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if not isinstance(progress, (bool, dict)):
        raise TypeError(f"progress must be a bool or a dict of tqdm options, got {progress!r}")
    maxfev = _check_count("maxfev", maxfev)
    x = _start_point(x0)
    lo, hi = _bounds(bounds, x.size)
    opts = dict(options or {})
    opt = cls([x], seed=0 if seed is None else seed, **opts)
    per_step = opt.evaluations_per_step()
    if isinstance(opt, SPSA):
        if "calibration_probes" not in opts:
            # A small budget still takes steps: fewer probes (at least 1) rather than none at all.
            room = (maxfev - per_step) // 2
            opt.calibration_probes = max(1, min(opt.calibration_probes, room))
        if "maxiter" not in opts:
            opt.maxiter = max(1, (maxfev - opt.calibration_evaluations()) // per_step)

    def keep_inside() -> None:
        """x <- x clipped to the box shrunk by the perturbation size eps on every side."""
        margin = np.minimum(opt.param_groups[0]["eps"], (hi - lo) / 2)
        np.clip(x, lo + margin, hi - margin, out=x)

    if lo is not None:
        keep_inside()
    nfev = 0
    best = (math.inf, x.copy())
    nonfinite = None  # (value, evaluation number) that stopped the run

    def evaluate() -> float:
        nonlocal nfev, best, nonfinite
        point = x if lo is None else np.clip(x, lo, hi)  # a no-op beyond rounding, mostly
        value = float(fun(point.copy()))
        nfev += 1
        if not math.isfinite(value):
            nonfinite = (value, nfev)
            raise _NonFiniteValue
        if value < best[0]:
            best = (value, point.copy())
        return value

    bar = None
    if progress is not False:
        try:
            from tqdm import tqdm
        except ImportError:
            raise ImportError("progress=True needs tqdm: pip install tqdm") from None
        kwargs = {"desc": method, "unit": "fev", **(progress if isinstance(progress, dict) else {})}
        bar = tqdm(total=maxfev, **kwargs)
    nit, message = 0, "maximum number of function evaluations reached"
    try:
        while nfev + opt.calibration_evaluations() + per_step <= maxfev:
            try:
                opt.step(evaluate)
            except _NonFiniteValue:
                value, at = nonfinite
                message = (
                    f"fun returned a non-finite value ({value}) at evaluation {at}; stopped "
                    "there, x is the best finite point"
                )
                break
            if lo is not None:
                keep_inside()
            nit += 1
            if bar is not None:
                bar.update(nfev - bar.n)
                bar.set_postfix(best=f"{best[0]:.6g}", refresh=False)
            if callback is not None and callback(x.copy()) is True:
                message = "stopped by callback"
                break
        if nfev == 0:  # a budget too small for one step still reports f(x0)
            try:
                evaluate()
            except _NonFiniteValue:
                message = f"fun returned a non-finite value ({nonfinite[0]}) at x0"
    finally:
        if bar is not None:
            bar.close()
    return OptimizeResult(
        x=best[1],
        fun=best[0],
        nfev=nfev,
        nit=nit,
        success=nonfinite is None,
        message=message,
        last_x=x.copy(),
    )


class _NonFiniteValue(Exception):
    """Raised through the optimiser's step (which restores theta) when fun is not finite."""


def _start_point(x0: Any) -> np.ndarray:
    """x0 as a new 1-D float64 array (a scalar is one coordinate, as in SciPy)."""
    check_not_masked(x0, "x0")
    if framework_of(x0) == "torch":
        x0 = x0.detach().cpu().numpy()
    try:
        arr = np.asarray(x0)
    except (TypeError, ValueError) as e:  # ragged lists, unconvertible objects
        raise TypeError(f"x0 must be an array of real numbers: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"x0 must hold real numbers, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64).reshape(-1)


def _bounds(bounds: Any, d: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(lo, hi) as float64 arrays of size d, or (None, None)."""
    if bounds is None:
        return None, None
    try:
        if hasattr(bounds, "lb") and hasattr(bounds, "ub"):  # scipy.optimize.Bounds
            pair = (bounds.lb, bounds.ub)
        else:
            b = np.asarray(bounds, dtype=np.float64)
            pair = (b[:, 0], b[:, 1]) if b.ndim == 2 and b.shape[1] == 2 else tuple(b)
        lo, hi = (np.broadcast_to(np.asarray(v, dtype=np.float64), (d,)).copy() for v in pair)
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds must be (lo, hi) or {d} (lo, hi) pairs for x0 of size {d}"
        ) from None
    if not np.all(lo <= hi) or np.any(lo == np.inf) or np.any(hi == -np.inf):
        raise ValueError("bounds must satisfy lo <= hi, lo < inf and hi > -inf (no NaN)")
    return lo, hi
