"""``minimize``: the optimisers scipy.optimize style, on a budget of function evaluations.

A private module because ``softzo.optim.minimize`` names the function (as in scipy.optimize)."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .._arrays import check_choice
from ._checks import check_count, start_point
from ._methods import METHODS
from .spsa import SPSA


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

    cls = METHODS[check_choice(method, "method", tuple(METHODS))]
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    if not isinstance(progress, (bool, dict)):
        raise TypeError(f"progress must be a bool or a dict of tqdm options, got {progress!r}")
    maxfev = check_count("maxfev", maxfev)
    x = start_point(x0)
    lo, hi = _bounds(bounds, x.size)
    opts = dict(options or {})
    if opts.get("process_group") is not None:
        raise ValueError("minimize runs in one process; use an optimiser's step(process_group=)")
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
