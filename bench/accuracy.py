"""Log-domain accuracy report: the maximum error in ulp of softzo's log_softmax and logsumexp,
per dtype x algorithm x ISA x case, next to PyTorch's on the same inputs, against long-double
references. The references and the cases are the ones ``tests/test_log_accuracy.py`` asserts.

``python -m bench.accuracy [--seeds N] [--out DIR]``

Cases: 64 rows of 1,000 N(0,1) logits; the same with one logit per row raised by 10, 30 and 80
(a confident model: its log-probability and lse - max are tiny, so the error is relative to a
number near 0); 4,000 two-element rows at scales 1e-3..60; 2,000 rows of 8 whose maximum occurs
twice; and SciPy's logsumexp cases. Every ISA this build runs (natively or SIMDe-emulated) is
measured; the maximum is over ``--seeds`` draws of every case (6 by default).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import softzo

from . import _common

WIDE = np.longdouble
ALGORITHMS = ("two_pass", "three_pass_reload", "three_pass_recompute", "online")


def ref_parts(x):
    """max, lse - max = log1p(rest) and rest per row, in long double: the largest element's term
    is exactly 1 and the others' terms exp(x - max) are summed apart from it."""
    xl = np.asarray(x).astype(WIDE)
    m = xl.max(-1)
    with np.errstate(under="ignore"):
        e = np.exp(xl - m[:, None])
    e[np.arange(len(xl)), xl.argmax(-1)] = 0
    rest = e.sum(-1)
    return m, np.log1p(rest), rest


def ulp_error(y, ref, dtype):
    """|y - ref| in ulps of ref rounded to dtype; below 4x the smallest normal, an absolute
    floor of that size counts as 0 (the kernels' stated flush)."""
    ref = np.asarray(ref, WIDE)
    err = np.abs(np.asarray(y).astype(WIDE) - ref)
    floor = WIDE(np.finfo(dtype).tiny) * 4
    with np.errstate(over="ignore"):
        spacing = np.spacing(np.abs(ref).astype(dtype)).astype(WIDE)
    ulps = err / spacing
    return np.where(np.abs(ref) < floor, np.where(err <= floor, 0, np.inf), ulps)


def confident_rows(rng, dtype, boost, rows=64, n=1000):
    """N(0,1) rows whose target logit is raised by boost: the model late in training."""
    x = rng.standard_normal((rows, n))
    t = rng.integers(0, n, rows)
    x[np.arange(rows), t] += boost
    return x.astype(dtype), t


def two_element_rows(rng, dtype, rows=4000):
    scale = rng.choice([1e-3, 0.1, 1.0, 5.0, 20.0, 60.0], (rows, 1))
    return (rng.standard_normal((rows, 2)) * scale).astype(dtype)


# scipy/special/tests/test_logsumexp.py's cases (SciPy 1.15, BSD-3), rewritten as rows: large
# inputs, mixed magnitudes, gh-18295 (log1p(e^-40)) and 1e-40-scale inputs. Special values
# (inf, NaN) are in tests/test_log_accuracy.py::test_scipy_special_values.
SCIPY_ROWS = [
    [1000.0, 1000.0],
    [10000.0, -10000.0],
    [-10000.0, -10000.0],
    [0.0, -40.0],
    [1e-40, 1e-41, 1e-42],
    [-1e-40, 2e-40],
    [1.0, 2.0, 3.0],
    [0.0, 1e-10],
    [1e10, 1e10 + 1],
    [-1.0, -1.0 - 1e-8],
    [709.0, 709.0],
    [-709.0, -710.0, -711.0],
]


def tied_rows(rng, dtype, rows=2000):
    """Rows of 8 whose maximum occurs twice, at scales from 0.1 to 20."""
    x = rng.standard_normal((rows, 8)) * rng.choice([0.1, 1.0, 5.0, 20.0], (rows, 1))
    x[:, 1] = x.max(-1)
    return x.astype(dtype)


def cases(rng, dtype):
    """(name, rows) of every case: random, confident, two-element, tied-max rows, SciPy's."""
    yield "N(0,1)", rng.standard_normal((64, 1000)).astype(dtype)
    for boost in (10, 30, 80):
        yield f"target+{boost}", confident_rows(rng, dtype, boost)[0]
    yield "two elements", two_element_rows(rng, dtype)
    yield "tied max", tied_rows(rng, dtype)
    for row in SCIPY_ROWS:
        x = np.array([row])
        if np.all(np.abs(x) <= np.finfo(dtype).max):
            yield f"scipy {row}", x.astype(dtype)


def lse_error(lse, m, lse_m, dtype):
    """logsumexp's error in ulps of max(|lse|, lse - max)."""
    ref = m + lse_m
    scale = np.maximum(np.abs(ref), lse_m)
    err = np.abs(np.asarray(lse).astype(WIDE) - ref)
    return ulp_error(scale + err, scale, dtype)


NEAR_ZERO = 1e-2  # "near zero": log-probabilities within this of 0 (a confident target's)


def output_errors(ls, lse, x, m, lse_m, dtype):
    """Max ulp errors of log_softmax output ls (over all outputs, and over those near zero:
    |reference| < NEAR_ZERO, NaN where a case has none) and of logsumexp output lse."""
    ref = (x.astype(WIDE) - m[:, None]) - lse_m[:, None]
    err = ulp_error(ls, ref, dtype)
    near = np.abs(ref) < NEAR_ZERO
    near_max = err[near].max() if near.any() else np.nan
    return err.max(), near_max, lse_error(lse, m, lse_m, dtype).max()


def softzo_errors(x, m, lse_m, dtype, algorithm):
    ls, lse = softzo.log_softmax(x, algorithm=algorithm), softzo.logsumexp(x, algorithm=algorithm)
    return output_errors(ls, lse, x, m, lse_m, dtype)


def torch_errors(torch, x, m, lse_m, dtype):
    """PyTorch's errors on the same input (NaN without torch)."""
    if torch is None:
        return (np.nan,) * 3
    xt = torch.from_numpy(x)
    ls, lse = torch.log_softmax(xt, -1).numpy(), torch.logsumexp(xt, -1).numpy()
    return output_errors(ls, lse, x, m, lse_m, dtype)


def interleave(ours, theirs):
    """[log_softmax, torch's, near zero, torch's, logsumexp, torch's]."""
    return [v for pair in zip(ours, theirs) for v in pair]


def errors(x, dtype, algorithm, torch):
    """softzo's and torch's errors on x, interleaved."""
    m, lse_m, _ = ref_parts(x)
    theirs = torch_errors(torch, x, m, lse_m, dtype)
    return interleave(softzo_errors(x, m, lse_m, dtype, algorithm), theirs)


def measure(seeds: int) -> dict[tuple, list[float]]:
    """{(dtype, case, algorithm, isa): [log_softmax, torch's, near zero, torch's, logsumexp,
    torch's]}, each the maximum over the seeds."""
    torch = _common.optional("torch")
    worst: dict[tuple, list[float]] = {}
    isas = softzo.info()["isas_available"] + softzo.info()["isas_emulated"]
    initial = softzo.info()["isa"]
    try:
        for dtype in (np.float32, np.float64):
            for seed in range(seeds):
                for name, x in cases(np.random.default_rng(seed), dtype):
                    case = "SciPy's cases" if name.startswith("scipy") else name
                    m, lse_m, _ = ref_parts(x)
                    theirs = torch_errors(torch, x, m, lse_m, dtype)  # once: no ISA in it
                    for algorithm in ALGORITHMS:
                        for isa in isas:
                            softzo.set_isa(isa)
                            key = (np.dtype(dtype).name, case, algorithm, isa)
                            ours = softzo_errors(x, m, lse_m, dtype, algorithm)
                            new = interleave(ours, theirs)
                            old = worst.get(key, [np.nan] * 6)
                            worst[key] = [float(np.fmax(a, b)) for a, b in zip(old, new)]
    finally:
        softzo.set_isa(initial)
    return worst


def ulps(v: float) -> str:
    return "n/a" if np.isnan(v) else (f"{v:.2f}" if v < 100 else f"{v:.1e}")


def report(worst: dict[tuple, list[float]]) -> str:
    rows, behind = [], 0
    for (dtype, case, algorithm, isa), v in sorted(worst.items()):
        worse = any(v[i] > v[i + 1] for i in (0, 2, 4))  # False against NaN (no torch, none)
        behind += worse
        rows.append([dtype, case, algorithm, isa, *map(ulps, v), "**yes**" if worse else "no"])
    header = ["dtype", "case", "algorithm", "ISA", "log_softmax", "torch",
              f"log_softmax near 0 (abs < {NEAR_ZERO:g})", "torch", "logsumexp", "torch",
              "worse than torch"]  # fmt: skip
    top = np.nanmax([[v[0], v[2], v[4]] for v in worst.values()])
    summary = (
        f"softzo's maximum error is above PyTorch's in {behind} of {len(rows)} rows; every "
        f"softzo maximum is at most {ulps(top)} ulp."
    )
    return f"{summary}\n\n{_common.table(header, rows)}\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.accuracy", description=__doc__)
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=_common.RESULTS)
    args = parser.parse_args(argv)
    load0, t0 = _common.load(), time.perf_counter()
    body = report(measure(args.seeds))
    text = (
        "# Log-domain accuracy: maximum error in ulp, softzo and PyTorch\n\n"
        f"{_common.provenance('bench.accuracy', argv, t0, load0)}\n\n"
        "Error in ulps of the correctly rounded answer (long double reference); logsumexp's in "
        "ulps of max(|lse|, lse - max). Outputs below 4x the smallest normal have that as an "
        f"absolute floor. Maximum over {args.seeds} seeds of each case.\n\n{body}"
    )
    _common.write(args.out, "log_accuracy.md", text)


if __name__ == "__main__":
    main()
