"""Benchmarks of the factored output layer: ``python -m bench.factored [--quick] [--out DIR]``.

float32, the machine's threads (OpenBLAS's default), the Z-loss; in one process:

- cost against D: one factored SGD step (minibatch m = 128, d = 256) for D from 10,000 to
  1,000,000 classes. The median step excludes the periodic stabilisation (a pass over V every
  ``stabilize_every`` = 100 steps), whose cost is reported separately and amortised;
- the One Billion Word setting (D = 793,471, d = 512, m = 200): a factored step against the
  dense step that it replaces, softzo's own fused forward + gradient + update through BLAS
  (:func:`softzo.spherical.dense_step`), with the memory each holds and its peak (VmHWM growth
  over the step).

Prints a Markdown table and writes ``factored.md`` into ``bench/results`` (``--out DIR``);
``--quick`` uses smaller sizes and writes only with ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from softzo import spherical

from ._common import RESULTS, load, provenance, reset_peak_memory, status_kib, warn_if_loaded, write

MIB = 1 << 20


def _batch(rng: np.random.Generator, m: int, d: int, D: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((m, d), dtype=np.float32), rng.integers(0, D, m)


def _factored_times(D: int, d: int, m: int, steps: int) -> tuple[float, float, float]:
    """(median step, one stabilisation, peak extra MiB of a step) in seconds/MiB."""
    rng = np.random.default_rng(0)
    layer = spherical.FactoredOutputLayer(D, d, lr=0.1, seed=0, stabilize_every=0)
    batches = [_batch(rng, m, d, D) for _ in range(4)]
    layer.step(*batches[0])  # warm-up
    times = []
    for i in range(steps):
        h, t = batches[i % len(batches)]
        t0 = time.perf_counter()
        layer.step(h, t)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    layer.stabilize()
    stab = time.perf_counter() - t0
    reset_peak_memory()
    base = status_kib("VmHWM")
    layer.step(*batches[0])
    peak = (status_kib("VmHWM") - base) / 1024
    return statistics.median(times), stab, peak


def _dense_time(D: int, d: int, m: int, reps: int) -> tuple[float, float]:
    """(best dense step, peak extra MiB of a step)."""
    rng = np.random.default_rng(0)
    w = rng.uniform(-1 / np.sqrt(d), 1 / np.sqrt(d), size=(D, d)).astype(np.float32)
    h, t = _batch(rng, m, d, D)
    spherical.dense_step(w, h, t, lr=0.1)  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        spherical.dense_step(w, h, t, lr=0.1)
        best = min(best, time.perf_counter() - t0)
    reset_peak_memory()
    base = status_kib("VmHWM")
    spherical.dense_step(w, h, t, lr=0.1)
    peak = (status_kib("VmHWM") - base) / 1024
    del w
    return best, peak


def run(quick: bool) -> str:
    d, m = 256, 128
    sizes = [10_000, 100_000, 1_000_000] if not quick else [10_000, 100_000]
    header = (
        "| D | V (MiB) | factored step (median) | stabilisation (once per 100 steps) "
        "| step + amortised stabilisation | peak extra memory of a step |"
    )
    lines = [
        "float32, Z-loss, OpenBLAS's default threads.",
        "",
        f"### Cost against the number of classes D (m = {m}, d = {d})",
        "",
        header,
        "|---:|---:|---:|---:|---:|---:|",
    ]
    base = None
    for D in sizes:
        step, stab, peak = _factored_times(D, d, m, steps=30 if quick else 100)
        base = base or step
        lines.append(
            f"| {D:,} | {D * d * 4 / MIB:,.0f} | {step * 1e3:.2f} ms ({step / base:.2f}x) "
            f"| {stab * 1e3:.0f} ms | {(step + stab / 100) * 1e3:.2f} ms | {peak:.1f} MiB |"
        )
    D, d, m = (793_471, 512, 200) if not quick else (100_000, 128, 64)
    setting = "Quick check" if quick else "One Billion Word setting"
    step, stab, fpeak = _factored_times(D, d, m, steps=10 if quick else 30)
    dense, dpeak = _dense_time(D, d, m, reps=2 if quick else 3)
    amortised = step + stab / 100
    lines += [
        "",
        f"### {setting} (D = {D:,}, d = {d}, m = {m})",
        "",
        "| step | time | held memory | peak extra memory of a step |",
        "|---|---:|---:|---:|",
        (
            f"| dense: forward + gradient + update through BLAS | {dense * 1e3:,.0f} ms "
            f"| W: {D * d * 4 / MIB:,.0f} MiB | {dpeak:,.0f} MiB (o = W h, m x D) |"
        ),
        (
            f"| factored (exact, same SGD step) | {step * 1e3:.1f} ms "
            f"| V: {D * d * 4 / MIB:,.0f} MiB + {5 * d * d * 8 / MIB:.0f} MiB (d x d, float64) "
            f"| {fpeak:.1f} MiB |"
        ),
        f"| factored, stabilisation amortised over 100 steps | {amortised * 1e3:.1f} ms | | |",
        "",
        (
            f"Speed-up of the factored step: **{dense / step:.0f}x** ({dense / amortised:.0f}x "
            f"with the amortised stabilisation); the theoretical ratio D / 4d is "
            f"{D / (4 * d):.0f}."
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.factored", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="small sizes; files only with --out")
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    args = parser.parse_args(argv)
    out = args.out if args.out or args.quick else RESULTS
    t0, load0 = time.perf_counter(), load()
    warn_if_loaded(load0)
    table = run(args.quick)
    print(table)
    if out is not None:
        heading = (
            "# softzo factored output layer benchmark\n\n"
            f"{provenance('bench.factored', argv, t0, load0)}\n\n"
        )
        write(out, "factored.md", heading + table)


if __name__ == "__main__":
    main()
