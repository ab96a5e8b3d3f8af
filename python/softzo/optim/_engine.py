"""The perturbation engine every optimiser runs on: parameter groups, the moves theta += c z
(fused with an update, masked by Sparse MeZO, limited to a subset), the two-point estimate,
``step``, and ``state_dict``."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from typing import Any, Callable

import numpy as np

from .. import _core
from .._arrays import check_choice, check_num_threads
from ._checks import loss_value
from ._comm import Rounds, channel_for
from ._device import DeviceFlat, DeviceLowPrecision, new_mask_bits
from ._low_precision import LowPrecision, flat_view
from ._subset import Subset
from ._subspace import Subspace

DISTRIBUTIONS = {"rademacher": 0, "gaussian": 1, "segmented": 2}
SEED_MASK = (1 << 64) - 1
# Sparse MeZO's per-tensor threshold: the quantile of |theta| over this many entries drawn
# uniformly with replacement (Philox, keyed by the seed, countered by step and tensor), so the
# requested fraction is met to within sqrt(p (1 - p) / 16384) <= 0.004 (one standard deviation)
# at O(1) cost and memory per tensor; smaller tensors use every entry.
MASK_SAMPLE = 16384
# SPSA's a="auto" probes use directions PROBE_DIRECTION + p of step 0: a step's queries count
# from 0, so no step ever draws these streams.
PROBE_DIRECTION = 1 << 31
# Seconds a process waits at an exchange for the others (their evaluations included) before it
# restores its parameters and raises: long enough for a slow forward pass, short of gloo's 30 min.
DEFAULT_TIMEOUT = 300.0
# The keywords every optimiser takes (its **engine), with their defaults.
ENGINE_DEFAULTS = {
    "seed": 0,
    "num_threads": None,
    "process_group": None,
    "parallel": "data",
    "timeout": DEFAULT_TIMEOUT,
}


class ZerothOrder:
    """Shared machinery: parameter groups, directions, the two-point estimate and state.

    Every optimiser passes its ``**engine`` keywords here: ``seed`` (of the directions, 0),
    ``num_threads`` (None: softzo's default), ``process_group`` (None, or a torch.distributed
    group), ``parallel`` ("data" or "directions") and ``timeout`` (seconds, 300); see
    :mod:`softzo.optim`."""

    # Whether every step is engine moves only (MeZO, SPSA), which run on CUDA parameters;
    # optimisers that materialise z or keep per-parameter state in NumPy do not yet.
    _device_moves = False

    def __init__(
        self,
        params: Iterable[Any],
        defaults: dict[str, Any],
        *,
        distribution: str,
        num_queries: int,
        subspace: dict[str, Any] | None = None,
        engine: dict[str, Any],
    ) -> None:
        unknown = sorted(set(engine) - set(ENGINE_DEFAULTS))
        if unknown:
            raise TypeError(f"{type(self).__name__} got unexpected keyword arguments {unknown}")
        engine = {**ENGINE_DEFAULTS, **engine}
        seed, num_threads, parallel = engine["seed"], engine["num_threads"], engine["parallel"]
        check_choice(distribution, "distribution", tuple(DISTRIBUTIONS))
        check_choice(parallel, "parallel", ("data", "directions"))
        if not isinstance(num_queries, int) or not 1 <= num_queries < 2**31:
            raise ValueError(
                f"num_queries must be an int >= 1 (and below 2**31), got {num_queries!r}"
            )
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
        self._lowp: list[LowPrecision | None] = []  # float16 / bfloat16 handles
        offset = 0
        for gi, g in enumerate(groups):
            group = {**defaults, **g, "params": list(g["params"])}
            for key in defaults:
                group[key] = float(group[key])
            self.param_groups.append(group)
            for p in group["params"]:
                view, low = flat_view(p, len(self._views))
                self._views.append((view, offset, gi))
                self._lowp.append(low)
                offset += view.size
        self._on_device = any(isinstance(v, DeviceFlat) for v, _, _ in self._views)
        if self._on_device:
            if not all(isinstance(v, DeviceFlat) for v, _, _ in self._views):
                raise ValueError("params mixes CUDA and CPU tensors; give one kind")
            if not self._device_moves:
                raise ValueError(
                    f"{type(self).__name__} does not run on CUDA parameters yet; MeZO and SPSA do"
                )
            if subspace is not None or engine["process_group"] is not None:
                raise ValueError("subspace= and process_group= take CPU parameters only for now")
        self._scratch: np.ndarray | None = None
        # Sparse MeZO: per-tensor bits and thresholds of the current step (None: no mask).
        self.sparsity: float | None = None
        self._bits: list[np.ndarray | None] = [None] * len(self._views)
        self._thresholds: list[float] = [-1.0] * len(self._views)
        self._building = False
        self.seed = int(seed) & SEED_MASK
        self.dist = DISTRIBUTIONS[distribution]
        self.num_queries = num_queries
        self.threads = check_num_threads(num_threads)
        self.step_count = 0
        self._subspace = None if subspace is None else Subspace(subspace, offset)
        self._subset: Subset | None = None  # MeZO's random-subset perturbations
        self.comm_bytes = 0  # bytes this process sent in the last step
        self.comm_bytes_total = 0  # ... since construction (the settings check, rank 0's
        # parameter broadcast)
        self._rounds = None
        if engine["process_group"] is not None:
            channel = channel_for(engine["process_group"], engine["timeout"])
            self._rounds = Rounds(channel, parallel)
            # Processes that differ in any of these would draw or apply different z.
            sent = self._rounds.check_same(
                {
                    "optimiser": zlib.crc32(type(self).__name__.encode()),
                    "seed (low 32 bits)": self.seed & 0xFFFFFFFF,
                    "seed (high 32 bits)": self.seed >> 32,
                    "distribution": self.dist,
                    "num_queries": self.num_queries,
                    "parallel": parallel == "directions",
                    "parameter count": offset,
                }
            )
            # As DDP: every process starts from rank 0's parameters (the float32 masters of
            # float16 / bfloat16 ones), so that the same updates keep them bit-identical.
            sent += self._rounds.channel.broadcast([v for v, _, _ in self._views])
            self.comm_bytes_total = sent
            self._publish_all()

    @property
    def num_examples(self) -> float:
        """This process's weight in the data-parallel mean of the losses (default 1; set it once
        to the shard's example count, or let the closure return (loss, count))."""
        return 1.0 if self._rounds is None else self._rounds.examples

    @num_examples.setter
    def num_examples(self, count: float) -> None:
        if self._rounds is None:
            raise ValueError("num_examples weighs the ranks of a process_group; there is none")
        self._rounds.set_examples(count)

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
                publish=None,
            ):
                # A piece starting at element s of the tensor draws z_{offset + s} onwards: the
                # values the whole-tensor call would use there.
                for start, stop in pieces:
                    if isinstance(theta, DeviceFlat):
                        theta[start:stop].move(
                            self.seed, self.step_count & 0xFFFFFFFF, direction, self.dist,
                            offset + start, c, lr_i, g_i, wd_i, bits, thr, publish,
                        )  # fmt: skip
                        continue
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
        if isinstance(low, DeviceLowPrecision):
            # One pass on the device: the update moves the master and publishes it, a
            # perturbation publishes round(master + applied z) and leaves the master alone.
            applied = 0.0 if updates else low.applied + c
            if updates and low.applied + c != 0.0:
                raise AssertionError("an update must end the perturbation it restores")
            kernel(view, applied, publish=low)
            low.applied = applied
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

    def _evaluate(self, closure: Callable[[], Any]) -> float:
        """The closure's loss here. Across processes, one evaluation of the current round
        (0.0 where another rank owns it or the closure failed): pass the round's values to
        ``_agree`` before using them."""
        if self._rounds is None:
            return self._local_loss(closure())
        return self._rounds.evaluate(closure)

    def _local_loss(self, value: Any) -> float:
        """A single process's loss; a (loss, example count) pair gives its loss."""
        return loss_value(value[0] if isinstance(value, tuple) and len(value) == 2 else value)

    def _agree(self, values: list[float], finite: bool = True) -> list[float]:
        """The round's values agreed across processes (as they are in a single process).
        Raises, on every process alike, when one failed (with ``finite``, also when a value is
        not finite); the caller restores theta first."""
        return values if self._rounds is None else self._rounds.agree(values, finite)

    def _two_point(
        self, closure: Callable[[], Any], direction: int, move: Callable | None = None
    ) -> tuple[float, float]:
        """This process's f(theta + eps z) and f(theta - eps z) (see ``_evaluate``). theta is
        left at theta - eps z for the caller to restore (MeZO fuses that with its update), and
        restored here when, in a single process, the closure raises or returns a non-finite
        value. ``move`` (default ``_move``) applies a multiple of the direction."""
        move = move or self._move
        eps = [g["eps"] for g in self.param_groups]
        applied = 0.0  # multiple of eps currently added
        try:
            move(direction, eps)
            applied = 1.0
            f_plus = self._evaluate(closure)
            move(direction, [-2.0 * e for e in eps])
            applied = -1.0
            f_minus = self._evaluate(closure)
        except BaseException:
            if applied:
                move(direction, [-applied * e for e in eps])
            raise
        if self._rounds is None and not (math.isfinite(f_plus) and math.isfinite(f_minus)):
            move(direction, eps)
            raise ValueError(
                f"closure returned a non-finite loss ({f_plus}, {f_minus}); the parameters were "
                "restored and not updated"
            )
        return f_plus, f_minus

    def _two_points(
        self,
        closure: Callable[[], Any],
        directions: list[int],
        move: Callable | None = None,
        restore_last: bool = True,
    ) -> tuple[list[float], list[float]]:
        """One round of two-point evaluations: (f+ - f-) / 2 and (f+ + f-) / 2 per direction,
        agreed across processes. theta is restored after each direction, except after the last
        one when ``restore_last`` is False (left at theta - eps z for a fused restore)."""
        move = move or self._move
        eps = [g["eps"] for g in self.param_groups]
        values: list[float] = []
        for j, direction in enumerate(directions):
            values += self._two_point(closure, direction, move)
            if restore_last or j < len(directions) - 1:
                move(direction, eps)
        try:
            values = self._agree(values)
        except BaseException:
            if not restore_last:
                move(directions[-1], eps)
            raise
        pairs = list(zip(values[0::2], values[1::2]))
        return [0.5 * (p - m) for p, m in pairs], [0.5 * (p + m) for p, m in pairs]

    def step(self, closure: Callable[[], Any]) -> float:
        """One optimisation step; ``closure()`` evaluates the loss at the current parameters
        (with a ``process_group``: this process's shard's loss, or a (loss, example count)
        pair). Returns the mean of the evaluated losses (an estimate of the loss before the
        step), agreed across processes."""
        if not callable(closure):
            raise TypeError("step needs a closure that returns the loss")
        if self._rounds is not None:
            self._rounds.bytes = 0
        try:
            loss = self._step(closure)
        finally:
            if self._rounds is not None:
                self.comm_bytes = self._rounds.bytes
                self.comm_bytes_total += self.comm_bytes
        self._after_step()
        return loss

    def _base_loss(self, closure: Callable[[], Any]) -> float:
        """f(theta) at the unperturbed parameters (see ``_evaluate``); in a single process a
        non-finite value raises here (nothing moved)."""
        f0 = self._evaluate(closure)
        if self._rounds is None and not math.isfinite(f0):
            raise ValueError(f"closure returned a non-finite loss ({f0}); nothing was changed")
        return f0

    def _step(self, closure: Callable[[], Any]) -> float:
        self._begin_step()
        self._prepare_mask()
        # Fused: the last query's restore (+eps) and the update are one pass.
        fused = self._fused_restore()
        deltas, means = self._two_points(closure, list(range(self.num_queries)), None, not fused)
        self._update(deltas, restore_last=fused)
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
                self._bits[i] = (
                    new_mask_bits(view)
                    if isinstance(view, DeviceFlat)
                    else np.zeros((view.size + 31) // 32, dtype=np.uint32)
                )
            self._thresholds[i] = self._mask_threshold(i, view)
        self._building = True

    def _mask_threshold(self, i: int, view: np.ndarray) -> float:
        """The (1 - sparsity) quantile of |theta| over MASK_SAMPLE entries (every entry of a
        smaller tensor): the smallest sampled |theta_j| with at least that fraction of the
        sample at or below it."""
        if view.size <= MASK_SAMPLE:
            sample = np.abs(view.to_numpy() if isinstance(view, DeviceFlat) else view)
        else:
            gen = np.random.Generator(
                np.random.Philox(key=self.seed, counter=[0, 0, self.step_count, i])
            )
            at = gen.integers(0, view.size, MASK_SAMPLE)
            sample = np.abs(view.take(at) if isinstance(view, DeviceFlat) else view[at])
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
        if not isinstance(bits, np.ndarray):  # on the device
            bits = bits.cpu().numpy().view(np.uint32)
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


class Buffered(ZerothOrder):
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


class Momentum(Buffered):
    """Buffered optimisers with a float64 momentum buffer per parameter (ZO-SGD, SPSA-GC),
    allocated at its first use."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.buffers: list[np.ndarray | None] = [None] * len(self._views)

    def _accumulate(self, i: int, decay: float, grad: np.ndarray) -> np.ndarray:
        """buffers[i] <- decay * buffers[i] + grad (0 before the first), returned."""
        if self.buffers[i] is None:
            self.buffers[i] = np.zeros(grad.shape, dtype=np.float64)
        self.buffers[i] *= decay
        self.buffers[i] += grad
        return self.buffers[i]

    def _extra_state(self) -> dict[str, Any]:
        return {"buffers": [None if b is None else b.copy() for b in self.buffers]}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.buffers = [
            None if b is None else np.array(b, dtype=np.float64) for b in state["buffers"]
        ]
