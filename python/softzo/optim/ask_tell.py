"""Ask-and-tell access to the two-point methods, for callers who evaluate points themselves."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import check_choice
from ._checks import start_point
from ._engine import PROBE_DIRECTION
from ._methods import METHODS


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
        cls = METHODS[check_choice(method, "method", self._TWO_POINT)]
        if options.get("process_group") is not None:
            raise ValueError(
                "AskTell takes no process_group: its caller evaluates the points (over Ray: "
                "softzo.distributed.ray)"
            )
        self.x = start_point(x0)
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
