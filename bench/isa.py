"""Every ISA this CPU runs natively, kernel by kernel: AVX-512 against AVX2 (and scalar where it is
cheap), across sizes and input distributions.

``python -m bench.isa [--quick] [--dists normal wide30 ...] [--reps N] [--out DIR]``

float32, 1 thread. Kernels: softmax, log_softmax and logsumexp by each of the four algorithms
(preallocated ``out=``), cross-entropy forward + gradient (``grad_out=`` preallocated), and the
zeroth-order engine's passes over theta (perturb theta += c z with Rademacher and with Gaussian z,
and the fused restore-and-update pass of a MeZO step with either). The softmax family and
cross-entropy run on every input distribution of ``_common.DISTRIBUTIONS``; the zeroth-order
passes do not depend on theta's values and run on N(0,1) theta only.

Each ISA is selected with ``softzo.set_isa`` before each timed sample (untimed), so every ISA,
kernel and distribution of one size is timed interleaved in one run (``_common.measure``): the
ratios between ISAs and between distributions are measured in one process, side by side. ISAs
emulated through SIMDe are left out (correct, but not a speed); scalar runs up to SCALAR_MAX
elements. Writes ``isa.md`` into ``bench/results`` of the checkout (``--out DIR``), the CPU model
and its SIMD flags at its top; ``--quick`` writes only with ``--out``.

Tables: the AVX-512 over AVX2 speed-up of each kernel on each size and input; each kernel x ISA's
time on every distribution over its time on N(0,1) (issue 18's bound: 1.15x); and whether the
algorithm ``auto`` picks measures within 5% of the best one on every ISA and input.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import softzo
import softzo.losses as L
from softzo import _core

from ._common import (
    ALLOWANCE,
    BASELINE,
    DISTRIBUTIONS,
    RESULTS,
    Candidate,
    draw,
    fmt_time,
    label,
    load,
    measure,
    provenance,
    table,
    targets,
    touched,
    warn_if_loaded,
    write,
)

ALGOS = ("two_pass", "three_pass_reload", "three_pass_recompute", "online")
OPS = ("softmax", "log_softmax", "logsumexp")
SOFTMAX_SHAPES = ((1 << 10,), (1 << 15,), (1 << 18,), (1 << 22,), (64, 32000))
CE_SHAPES = ((64, 32000), (8, 128256))
ZO_SIZES = (1 << 20, 1 << 24)  # theta in the last-level cache (4 MiB), and far out of it
QUICK_SOFTMAX_SHAPES = ((1 << 15,), (64, 32000))
QUICK_CE_SHAPES = ((64, 32000),)
QUICK_ZO_SIZES = (1 << 20,)
SCALAR_MAX = 1 << 15  # elements up to which the scalar kernels are timed too
BUDGET_S = 0.1  # target timing per candidate (full run)
QUICK_BUDGET_S = 0.005
VALUE_BOUND = 1.15  # issue 18: no distribution slower than 1.15x N(0,1)
ZO_KERNELS = {  # name -> (distribution code of the engine, fused restore-update?)
    "zo perturb, rademacher": (0, False),
    "zo perturb, gaussian": (1, False),
    "zo restore+update, rademacher": (0, True),
    "zo restore+update, gaussian": (1, True),
}

Key = tuple[str, str, tuple[int, ...], str]  # (kernel, isa, shape, distribution)


def native_isas() -> list[str]:
    """The ISAs that run natively here, lowest first (scalar, avx2, avx512)."""
    info = softzo.info()
    return [i for i in info["isas_available"] if i not in info["isas_emulated"]]


def _isas_for(elements: int, isas: Sequence[str]) -> list[str]:
    return [i for i in isas if i != "scalar" or elements <= SCALAR_MAX]


def _softmax_candidates(shape, dists, isas) -> dict[Key, Candidate]:
    rng = np.random.default_rng(0)
    out = touched(shape)
    c: dict[Key, Candidate] = {}
    for d in dists:
        x = draw(d, shape, rng)
        for isa in _isas_for(math.prod(shape), isas):
            setup = partial(softzo.set_isa, isa)
            for a in ALGOS:
                for op, fn in (("softmax", softzo.softmax), ("log_softmax", softzo.log_softmax)):
                    call = partial(fn, x, out=out, algorithm=a, num_threads=1)
                    c[f"{op}/{a}", isa, shape, d] = Candidate(call, setup=setup)
                call = partial(softzo.logsumexp, x, algorithm=a, num_threads=1)
                c[f"logsumexp/{a}", isa, shape, d] = Candidate(call, setup=setup)
    return c


def _ce_candidates(shape, dists, isas) -> dict[Key, Candidate]:
    rng = np.random.default_rng(0)
    grad = touched(shape)
    c: dict[Key, Candidate] = {}
    for d in dists:
        x = draw(d, shape, rng)
        t = targets(x, rng)
        for isa in _isas_for(math.prod(shape), isas):
            call = partial(L.cross_entropy, x, t, grad_out=grad, num_threads=1)
            c["cross_entropy", isa, shape, d] = Candidate(call, setup=partial(softzo.set_isa, isa))
    return c


def _zo_pass(theta: np.ndarray, dist: int, update: bool) -> None:
    # theta += 1e-3 z, or the fused pass: theta -= 1e-3 z (restore), then -= lr g z (update).
    # Repeated, theta drifts by 1e-3 per call at most: its values do not matter to the kernels.
    c, lr, g = (-1e-3, 1e-9, 1.0) if update else (1e-3, 0.0, 0.0)
    _core._zo_restore_update(1, 0, 0, dist, 0, theta, c, lr, g, 0.0, None, -1.0, 1)


def _zo_candidates(n: int, isas) -> dict[Key, Candidate]:
    theta = draw(BASELINE, (n,), np.random.default_rng(0))
    c: dict[Key, Candidate] = {}
    for isa in _isas_for(n, isas):
        for name, (dist, update) in ZO_KERNELS.items():
            call = partial(_zo_pass, theta, dist, update)
            c[name, isa, (n,), BASELINE] = Candidate(call, setup=partial(softzo.set_isa, isa))
    return c


def run(
    softmax_shapes=SOFTMAX_SHAPES,
    ce_shapes=CE_SHAPES,
    zo_sizes=ZO_SIZES,
    dists: Sequence[str] = tuple(DISTRIBUTIONS),
    isas: Sequence[str] | None = None,
    reps: int | None = None,
    budget: float = BUDGET_S,
    progress: bool = True,
) -> dict[Key, float]:
    """Seconds per call of every (kernel, ISA, size, input), each size's group interleaved."""
    isas = list(isas or native_isas())
    before = softzo.info()["isa"]
    groups = [partial(_softmax_candidates, s, dists, isas) for s in softmax_shapes]
    groups += [partial(_ce_candidates, s, dists, isas) for s in ce_shapes]
    groups += [partial(_zo_candidates, n, isas) for n in zo_sizes]
    names = [f"softmax family {label(s)}" for s in softmax_shapes]
    names += [f"cross_entropy {label(s)}" for s in ce_shapes]
    names += [f"zo {label((n,))}" for n in zo_sizes]
    times: dict[Key, float] = {}
    try:
        for name, make in zip(names, groups):
            if progress:
                print(f"  {name}", file=sys.stderr, flush=True)
            cands = make()
            times |= measure(cands, reps, budget)
            del cands  # frees this size's buffers before the next are allocated
    finally:
        softzo.set_isa(before)
    return times


# ---- reporting --------------------------------------------------------------------------------


def _order(times: dict[Key, float]) -> tuple[list[str], list[str], list[tuple], list[str]]:
    """Kernels, ISAs, sizes and distributions present, in the order they were measured."""
    seen: list[dict] = [{}, {}, {}, {}]
    for key in times:
        for part, s in zip(key, seen):
            s.setdefault(part)
    isas = [i for i in ("scalar", "avx2", "avx512") if i in seen[1]] + [
        i for i in seen[1] if i not in ("scalar", "avx2", "avx512")
    ]
    dists = [d for d in DISTRIBUTIONS if d in seen[3]]
    return list(seen[0]), isas, list(seen[2]), dists


def _speedup_table(times: dict[Key, float]) -> str:
    """Per kernel, size and input: each ISA's time and the AVX-512 over AVX2 speed-up."""
    kernels, isas, sizes, dists = _order(times)
    header = ["kernel", "size", "input", *isas]
    pair = "avx2" in isas and "avx512" in isas
    header += ["AVX-512 speed-up over AVX2"] * pair
    rows = []
    for k in kernels:
        for s in sizes:
            for d in dists:
                if not any((k, i, s, d) in times for i in isas):
                    continue
                cells = [fmt_time(times.get((k, i, s, d))) for i in isas]
                if pair:
                    a2, a5 = times.get((k, "avx2", s, d)), times.get((k, "avx512", s, d))
                    cells.append(f"{a2 / a5:.2f}x" if a2 and a5 else "-")
                rows.append([k, label(s), DISTRIBUTIONS[d], *cells])
    return table(header, rows)


def _speedup_summary(times: dict[Key, float]) -> str:
    """Per kernel: the AVX-512 over AVX2 speed-up's range over sizes and inputs, and the cases
    where AVX-512 measured slower than AVX2 by more than 5%."""
    kernels, isas, sizes, dists = _order(times)
    if not ("avx2" in isas and "avx512" in isas):
        return "(AVX-512 and AVX2 do not both run natively here: no comparison.)"
    header = ["kernel", "cases", "min", "median", "max", "AVX-512 slower by > 5%"]
    rows = []
    for k in kernels:
        cases = []
        for s in sizes:
            for d in dists:
                a2, a5 = times.get((k, "avx2", s, d)), times.get((k, "avx512", s, d))
                if a2 and a5:
                    cases.append((a2 / a5, s, d))
        if not cases:
            continue
        r = sorted(c[0] for c in cases)
        slow = [
            f"{label(s)} {DISTRIBUTIONS[d]} ({v:.2f}x)" for v, s, d in cases if v < 1 / ALLOWANCE
        ]
        rows.append(
            [k, str(len(r)), f"{r[0]:.2f}x", f"{r[len(r) // 2]:.2f}x", f"{r[-1]:.2f}x"]
            + ["; ".join(slow) or "none"]
        )
    return table(header, rows)


def _value_table(times: dict[Key, float]) -> str:
    """Per kernel, ISA and size: the N(0,1) time and every input's time over it."""
    kernels, isas, sizes, dists = _order(times)
    others = [d for d in dists if d != BASELINE]
    header = ["kernel", "ISA", "size", "N(0,1)", *(DISTRIBUTIONS[d] for d in others)]
    header += ["worst", f"<= {VALUE_BOUND}x"]
    rows = []
    for k in kernels:
        for i in isas:
            for s in sizes:
                base = times.get((k, i, s, BASELINE))
                rel = [times[k, i, s, d] / base for d in others if base and (k, i, s, d) in times]
                if base is None or not rel:
                    continue
                worst = max(rel)
                rows.append(
                    [k, i, label(s), fmt_time(base)]
                    + [f"{r:.2f}x" for r in rel]
                    + [f"{worst:.2f}x", "yes" if worst <= VALUE_BOUND else "NO"]
                )
    return table(header, rows)


def _auto_table(times: dict[Key, float]) -> str:
    """Per op, ISA and size: the algorithm auto picks, and the inputs on which it measured more
    than 5% slower than the best algorithm."""
    _, isas, sizes, dists = _order(times)
    header = [
        "op",
        "ISA",
        "size",
        "auto picks",
        "inputs where the pick is > 5% slower than the best",
    ]
    rows = []
    for op in OPS:
        for i in isas:
            for s in sizes:
                if (f"{op}/{ALGOS[0]}", i, s, BASELINE) not in times:
                    continue
                pick = _core.auto_algorithm(s[-1], 4, op)
                bad = []
                for d in dists:
                    t = {a: times.get((f"{op}/{a}", i, s, d)) for a in ALGOS}
                    if None in t.values():
                        continue
                    best = min(ALGOS, key=lambda a: t[a])
                    if t[pick] > ALLOWANCE * t[best]:
                        bad.append(f"{DISTRIBUTIONS[d]}: {best} {t[pick] / t[best] - 1:+.0%}")
                rows.append([op, i, label(s), pick, "; ".join(bad) or "none"])
    return table(header, rows)


def report(times: dict[Key, float]) -> str:
    return (
        "\n\n".join(
            [
                "### AVX-512 over AVX2, per kernel (over every size and input)",
                _speedup_summary(times),
                "### Does auto pick within 5% of the best algorithm, on every ISA and input?",
                _auto_table(times),
                "### Time on each input over the time on N(0,1), per kernel x ISA x size",
                _value_table(times),
                "### Time per call, per kernel, size, input and ISA",
                _speedup_table(times),
            ]
        )
        + "\n"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.isa", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="32K and 64x32000 rows, 1M theta; files only with --out",
    )
    parser.add_argument(
        "--dists", nargs="+", choices=list(DISTRIBUTIONS), default=list(DISTRIBUTIONS)
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: by time)")
    args = parser.parse_args(argv)
    out = args.out if args.out or args.quick else RESULTS
    dists = [BASELINE] + [d for d in args.dists if d != BASELINE]
    t0, load0 = time.perf_counter(), load()
    warn_if_loaded(load0)
    if args.quick:
        times = run(
            QUICK_SOFTMAX_SHAPES,
            QUICK_CE_SHAPES,
            QUICK_ZO_SIZES,
            dists,
            None,
            args.reps,
            QUICK_BUDGET_S,
        )
    else:
        times = run(dists=dists, reps=args.reps)
    tables = report(times)
    print(tables)
    if out is None:
        return
    isas = ", ".join(native_isas())
    emulated = softzo.info()["isas_emulated"]
    heading = (
        "# softzo kernels by ISA\n\n"
        f"{provenance('bench.isa', argv, t0, load0)} (other processes competing for the cores "
        "make every number here slower and noisier)\n\n"
        f"float32, 1 thread. ISAs run natively here and timed: {isas}"
        + (f" (emulated, not timed: {', '.join(emulated)})" if emulated else "")
        + f"; scalar only up to {SCALAR_MAX} elements. Each ISA is selected with softzo.set_isa "
        "before each timed sample, untimed, so every ISA, kernel and input of one size is timed "
        "interleaved in one run; times are the minimum over repetitions. Inputs: "
        + ", ".join(DISTRIBUTIONS[d] for d in dists)
        + " (10% -inf: that fraction of entries masked; -1e4 tail: the second half of each row "
        "is -1e4). softmax family: out= preallocated; cross_entropy: forward + gradient into a "
        "preallocated grad_out=, targets never masked; zo: one pass over theta (perturb: "
        "theta += c z; restore+update: the fused last pass of a MeZO step), on N(0,1) theta "
        "only (the engine does not depend on theta's values).\n\n"
    )
    write(out, "isa.md", heading + tables)


if __name__ == "__main__":
    main()
