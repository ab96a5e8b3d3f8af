"""The COCO yardstick's setup and measures (bench.coco): the suite, dimensions, functions and
budgets, the optimisers' options, COCO's 51 targets, and the per-dimension summary of runs.
The problems, the optimisers' runs, the report and the command line are in coco.py, whose
docstring describes the protocol."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

SUITE = "bbob-largescale"
DIMS = (80, 160, 320, 640)
# Two functions per COCO group (separable; moderate; ill-conditioned; multimodal; weakly
# structured multimodal), for runtime; --functions 1-24 runs the whole suite.
FUNCTION_SUBSET = (1, 2, 6, 8, 10, 12, 15, 17, 20, 22)
QUICK = {"dims": (80,), "functions": (1, 2, 8, 10, 15, 20), "budget_mult": 20}
BUDGET_MULT = 50
# The 51 targets of COCO's bbob ECDFs: f_opt + 10^k, k = 2, 1.8, ..., -8.
TARGETS = tuple(10.0 ** (k / 5) for k in range(10, -41, -1))
SPSA_OPTIONS: dict[str, Any] = {}  # softzo.optim.SPSA's documented defaults, for every problem
CMA_SIGMA0 = 2.0  # a fifth of the domain's width
SOLVERS = {"softzo": "softzo SPSA", "nevergrad": "nevergrad SPSA", "cma": "pycma CMA-ES"}
FUNCTIONS = {
    1: "sphere",
    2: "ellipsoid",
    3: "Rastrigin",
    4: "Bueche-Rastrigin",
    5: "linear slope",
    6: "attractive sector",
    7: "step ellipsoid",
    8: "Rosenbrock",
    9: "Rosenbrock, rotated",
    10: "ellipsoid, rotated",
    11: "discus",
    12: "bent cigar",
    13: "sharp ridge",
    14: "different powers",
    15: "Rastrigin, rotated",
    16: "Weierstrass",
    17: "Schaffer F7",
    18: "Schaffer F7, ill-cond.",
    19: "Griewank-Rosenbrock",
    20: "Schwefel",
    21: "Gallagher 101 peaks",
    22: "Gallagher 21 peaks",
    23: "Katsuura",
    24: "Lunacek bi-Rastrigin",
}


# ---- measures (pure Python: tested without cocoex) ------------------------------------------


def count_targets(delta_f: float, targets: Sequence[float] = TARGETS) -> int:
    """How many targets a run whose best f - f_opt is ``delta_f`` reached (delta_f <= t)."""
    if math.isnan(delta_f):  # no evaluation
        return 0
    return sum(1 for t in targets if delta_f <= t)


def summarise(
    records: Iterable[dict[str, Any]],
    solvers: Sequence[str] = tuple(SOLVERS),
    pair: tuple[str, str] = ("softzo", "nevergrad"),
    num_targets: int = len(TARGETS),
) -> dict[Any, dict[str, Any]]:
    """Per dimension (and "all"): the fraction of (function, instance, target) triples each
    solver reached, the runs counted, and ``pair[0]`` against ``pair[1]`` per function as
    (wins, ties, losses), by targets reached summed over instances ("wtl_targets") and by the
    median Delta f over instances ("wtl_delta").

    A record is a dict with keys function, dim, instance, solver, delta and targets."""
    runs: dict[tuple[Any, str], list[dict[str, Any]]] = {}
    for r in records:
        runs.setdefault((r["dim"], r["solver"]), []).append(r)
    dims = sorted({d for d, _ in runs})
    out: dict[Any, dict[str, Any]] = {}
    for dim in [*dims, "all"]:
        chosen = dims if dim == "all" else [dim]
        row: dict[str, Any] = {"fraction": {}, "runs": {}}
        for s in solvers:
            rs = [r for d in chosen for r in runs.get((d, s), [])]
            row["runs"][s] = len(rs)
            total = len(rs) * num_targets
            row["fraction"][s] = sum(r["targets"] for r in rs) / total if total else float("nan")
        wtl_t, wtl_d = [0, 0, 0], [0, 0, 0]
        for d in chosen:
            a = _by_function(runs.get((d, pair[0]), []))
            b = _by_function(runs.get((d, pair[1]), []))
            for f in sorted(set(a) & set(b)):
                ta, tb = sum(r["targets"] for r in a[f]), sum(r["targets"] for r in b[f])
                wtl_t[_verdict(ta, tb)] += 1
                da = float(np.median([r["delta"] for r in a[f]]))
                db = float(np.median([r["delta"] for r in b[f]]))
                wtl_d[_verdict(-da, -db)] += 1  # the smaller Delta f wins
        row["wtl_targets"], row["wtl_delta"] = tuple(wtl_t), tuple(wtl_d)
        out[dim] = row
    return out


def _by_function(rs: list[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rs:
        out.setdefault(r["function"], []).append(r)
    return out


def _verdict(ours: float, theirs: float) -> int:
    """Index in (wins, ties, losses): 0 when ours is higher, 1 when equal, 2 when lower."""
    return 0 if ours > theirs else (1 if ours == theirs else 2)
