"""Benchmarks of the zeroth-order engine: ``python -m bench.zo [--quick] [--n N] [--reps R]
[--out DIR]``.

float32, 1 thread, parameters of ``--n`` elements (default 1e8, 400 MB). In one process,
interleaved, minimum over repetitions:

- perturb theta += c z (Rademacher, Gaussian) against the streaming read+write roofline of the
  same buffer (``stream_scale``: one read and one write pass), and with the segmented
  distribution, whose transform of a Philox word is a few integer operations: the rate of
  Philox4x32-10 itself at one 32-bit word per element, the ceiling of any draw (Box-Muller's
  included) that spends a word per element;
- one MeZO step's own work (the three in-place passes: +eps z, -2 eps z, restore and update),
  its closure doing nothing, in streaming passes, with Gaussian (MeZO's) and Rademacher z;
- a Sparse MeZO step (sparsity 0.8: the mask built from |theta| in the first pass, 1 bit per
  parameter) and a HiZOO step (theta and the diagonal Hessian Sigma streamed together; its
  third evaluation, f(theta), is the closure's and excluded like the others);
- a MeZO step with ``subset={"fraction": 0.1}`` (blocks of 65536 elements, a tenth of them
  perturbed and updated; its rate counts all n parameters);
- the MeZO reference loop written with PyTorch: per tensor, ``torch.normal`` for z and
  ``add_`` for each of the three moves, regenerating z from a reseeded generator each time, as
  in Malladi et al.'s code (when torch is installed); then both again with 2 threads (torch's
  set to 2 as well);
- peak extra memory of a MeZO step (VmHWM growth; the direction is never stored).

Prints a Markdown table and writes ``zo.md`` into ``bench/results`` (``--out DIR``);
``--quick`` (4M parameters, 2 repetitions) writes only with ``--out``. ``python -m bench.isa``
compares the perturbation kernels across ISAs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np
from softzo import _core, optim

from ._common import (
    RESULTS,
    load,
    provenance,
    reset_peak_memory,
    status_kib,
    stream_scale,
    warn_if_loaded,
    write,
)

QUICK_N = 1 << 22


def _best(fn: Callable[[], object], reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(n: int, reps: int) -> str:
    theta = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    out = np.empty_like(theta)
    rows = []

    def perturb(dist: int) -> Callable[[], None]:
        return lambda: _core._zo_restore_update(
            1, 0, 0, dist, 0, theta, 1e-3, 0.0, 0.0, 0.0, None, -1.0, 1
        )

    mezo = optim.MeZO([theta], lr=1e-9, eps=1e-3, num_threads=1)
    mezo_r = optim.MeZO([theta], lr=1e-9, eps=1e-3, distribution="rademacher", num_threads=1)
    sparse = optim.MeZO([theta], lr=1e-9, eps=1e-3, sparsity=0.8, num_threads=1)
    subset = optim.MeZO([theta], lr=1e-9, eps=1e-3, subset={"fraction": 0.1}, num_threads=1)
    hizoo = optim.HiZOO([theta], lr=1e-9, eps=1e-3, num_threads=1)
    mezo2 = optim.MeZO([theta], lr=1e-9, eps=1e-3, num_threads=2)
    cands = {
        "stream read+write (roofline)": stream_scale(theta, out, 1),
        "perturb, rademacher": perturb(0),
        "perturb, gaussian": perturb(1),
        "perturb, segmented (the Philox word rate)": perturb(2),
        "MeZO step (closure excluded)": lambda: mezo.step(lambda: 0.0),
        "MeZO step, rademacher (closure excluded)": lambda: mezo_r.step(lambda: 0.0),
        "Sparse MeZO step, sparsity 0.8 (closure excluded)": lambda: sparse.step(lambda: 0.0),
        "MeZO step, subset fraction 0.1 (closure excluded)": lambda: subset.step(lambda: 0.0),
        "HiZOO step (closure excluded)": lambda: hizoo.step(lambda: 0.0),
    }
    torch = None
    try:
        import torch
    except ImportError:
        pass
    if torch is not None:
        torch.set_num_threads(1)
        tt = torch.from_numpy(theta)
        params = list(tt.split(n // 4))  # a few tensors, as a model has
        gen = torch.Generator()

        def torch_mezo() -> None:
            # Malladi et al.'s loop: reseed, z = torch.normal per tensor, move; three times.
            for scale in (1.0, -2.0, 1.0):
                gen.manual_seed(1)
                for p in params:
                    z = torch.normal(0.0, 1.0, size=p.shape, generator=gen)
                    p.add_(z, alpha=scale * 1e-3)
            gen.manual_seed(1)
            for p in params:
                z = torch.normal(0.0, 1.0, size=p.shape, generator=gen)
                p.add_(z, alpha=-1e-9)

        def torch_mezo_2_threads() -> None:
            torch.set_num_threads(2)
            torch_mezo()
            torch.set_num_threads(1)

        cands["MeZO reference loop, torch.normal"] = torch_mezo
        cands["MeZO step, 2 threads (closure excluded)"] = lambda: mezo2.step(lambda: 0.0)
        cands["MeZO reference loop, torch.normal, 2 threads"] = torch_mezo_2_threads
    times = {k: float("inf") for k in cands}
    for fn in cands.values():
        fn()  # warm-up: first touch, thread start
    for _ in range(reps):
        for k, fn in cands.items():
            times[k] = min(times[k], _best(fn, 1))
    roof = times["stream read+write (roofline)"]
    for k, t in times.items():
        rows.append((k, t, n / t / 1e9, roof / t, t / roof))
    hwm = "n/a"
    if reset_peak_memory():
        base = status_kib("VmHWM")
        mezo.step(lambda: 0.0)
        hwm = f"{(status_kib('VmHWM') - base) / 1024:.2f} MiB"
    lines = [
        (
            f"float32, 1 thread unless stated, {n:.3g} parameters ({n * 4 / 2**20:.0f} MiB), "
            f"min of {reps} interleaved repetitions"
        ),
        "",
        "| case | time | G params/s | % of roofline | streaming passes |",
        "|---|---|---|---|---|",
    ]
    for k, t, gps, frac, passes in rows:
        lines.append(f"| {k} | {t * 1e3:.4g} ms | {gps:.2f} | {100 * frac:.0f}% | {passes:.2f} |")
    if torch is not None:
        ratio = times["MeZO reference loop, torch.normal"] / times["MeZO step (closure excluded)"]
        lines.append("")
        lines.append(f"MeZO step vs the torch.normal reference loop: {ratio:.1f}x faster")
        ratio_r = (
            times["MeZO reference loop, torch.normal"]
            / times["MeZO step, rademacher (closure excluded)"]
        )
        lines.append(f"The same with Rademacher z: {ratio_r:.1f}x faster")
        ratio2 = (
            times["MeZO reference loop, torch.normal, 2 threads"]
            / times["MeZO step, 2 threads (closure excluded)"]
        )
        lines.append(f"The same with 2 threads each: {ratio2:.1f}x faster")
    lines.append(f"Peak extra memory of a MeZO step (VmHWM growth): {hwm}")
    mask_mib = sum(b.nbytes for b in sparse._bits if b is not None) / 2**20
    lines.append(
        f"Sparse MeZO's mask: {mask_mib:.1f} MiB (1 bit per parameter); "
        f"HiZOO's Sigma: {sum(x.nbytes for x in hizoo.sigma) / 2**20:.0f} MiB"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.zo", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4M parameters, 2 repetitions, no files")
    ap.add_argument("--n", type=int, default=None, help="parameters (default 1e8)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5)")
    ap.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    args = ap.parse_args(argv)
    out = args.out if args.out or args.quick else RESULTS
    n = args.n or (QUICK_N if args.quick else 100_000_000)
    reps = args.reps or (2 if args.quick else 5)
    t0, load0 = time.perf_counter(), load()
    warn_if_loaded(load0)
    table = run(n, reps)
    print(table)
    if out is not None:
        heading = (
            "# softzo zeroth-order engine benchmark\n\n"
            f"{provenance('bench.zo', argv, t0, load0)} (other processes competing for the "
            "cores make every number here slower and noisier)\n\n"
        )
        write(out, "zo.md", heading + table + "\n")


if __name__ == "__main__":
    main()
