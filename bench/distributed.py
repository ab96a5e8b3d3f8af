"""Zeroth-order training on 2 gloo ranks: ``python -m bench.distributed [--quick] [--params N]``.

A torch MLP of about ``--params`` parameters (default 1e7: 1000 -> 5000 -> 1000, float32) and
a batch of 64 examples (32 per rank). In one run, on 2 spawned processes of 1 thread each,
interleaved over ``--reps`` rounds:

- the single-process MeZO step (rank 0 alone, full batch, rank 1 idle at a barrier);
- the data-parallel MeZO step (``process_group=``, half the batch per rank);
- the directions-parallel MeZO step (full batch; rank 0 evaluates f(theta + eps z), rank 1
  f(theta - eps z), both make every move);
- DDP's SGD step (forward, backward, and the all-reduce of the float32 gradient).

Rounds start and end at a barrier, whose loopback bytes (a round of no-op steps) are
subtracted from each case's.

Bytes per step: softzo's ``comm_bytes`` (the payload a rank sends in a ring all-gather) and
DDP's ring all-reduce payload 2 (W - 1) / W * 4 * parameters, both also measured as the bytes
that crossed the loopback interface during the steps (/proc/net/dev, both ranks' traffic
with TCP and gloo headers, and any other loopback traffic on the machine), per rank and step.
Writes ``distributed.md`` into ``bench/results`` of the checkout (``--out DIR``); ``--quick``
(1e5 parameters, 1 round of 2 steps) writes only with ``--out``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._common import RESULTS, load, provenance, warn_if_loaded, write

BATCH, WORLD = 64, 2


def _loopback_bytes() -> int:
    """Bytes received on the loopback interface so far (on lo, sent == received)."""
    try:
        with open("/proc/net/dev", encoding="utf-8") as f:
            for line in f:
                name, _, fields = line.partition(":")
                if name.strip() == "lo":
                    return int(fields.split()[0])
    except OSError:
        pass
    return -1


def _model(params: int):
    import torch

    width_in = 1000
    hidden = max(1, round((params - width_in) / (2 * width_in + 1)))
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(width_in, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, width_in)
    )


def _rank(rank: int, port: int, params: int, steps: int, reps: int, out: str) -> None:
    import torch
    import torch.distributed as dist
    from softzo import optim
    from softzo.distributed.local import init_gloo

    torch.set_num_threads(1)
    init_gloo(rank, WORLD, port, timeout=600.0)
    model = _model(params)
    n = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(1)
    X, Y = torch.randn(BATCH, 1000, generator=g), torch.randn(BATCH, 1000, generator=g)
    half = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)

    def loss_on(rows):
        return lambda: torch.nn.functional.mse_loss(model(X[rows]), Y[rows])

    opts = {"lr": 1e-6, "eps": 1e-3, "num_threads": 1}
    single = optim.MeZO(list(model.parameters()), **opts) if rank == 0 else None
    data = optim.MeZO(list(model.parameters()), process_group=dist.group.WORLD, **opts)
    directions = optim.MeZO(
        list(model.parameters()), process_group=dist.group.WORLD, parallel="directions", **opts
    )
    ddp = torch.nn.parallel.DistributedDataParallel(_model(params))
    sgd = torch.optim.SGD(ddp.parameters(), lr=1e-6)

    def ddp_step():
        sgd.zero_grad()
        torch.nn.functional.mse_loss(ddp(X[half]), Y[half]).backward()
        sgd.step()

    cases = {
        "barrier only": lambda: None,  # the rounds' own loopback bytes, subtracted below
        "single process (rank 0 alone, full batch)": lambda: single.step(loss_on(slice(None))),
        "data parallel, 2 ranks (half batch each)": lambda: data.step(loss_on(half)),
        "directions parallel, 2 ranks (full batch)": lambda: directions.step(loss_on(slice(None))),
        "DDP SGD step, 2 ranks (half batch each)": ddp_step,
    }
    times = {k: [] for k in cases}
    wire = {k: [] for k in cases}
    with torch.no_grad():
        for k in ("data parallel, 2 ranks (half batch each)",):  # warm-up of both groups
            cases[k]()
    ddp_step()
    for _ in range(reps):
        for name, fn in cases.items():
            dist.barrier()
            lo0, t0 = _loopback_bytes(), time.perf_counter()
            if rank == 0 or not name.startswith(("single", "barrier")):
                grad = torch.enable_grad() if name.startswith("DDP") else torch.no_grad()
                with grad:
                    for _ in range(steps):
                        fn()
            elapsed = time.perf_counter() - t0
            dist.barrier()
            wire[name].append((_loopback_bytes() - lo0) / steps / WORLD)
            times[name].append(elapsed / steps)
    if rank == 0:
        np.savez(
            out,
            names=np.array(list(cases)),
            times=np.array([times[k] for k in cases]),
            wire=np.array([wire[k] for k in cases]),
            n=n,
            softzo_bytes=np.array([data.comm_bytes, directions.comm_bytes]),
        )
    # DDP's reducer holds work on the group: released (ddp_step's cells rebound), and every rank
    # done with the group, before it is destroyed (else gloo's threads could end the process
    # with std::terminate).
    ddp = sgd = None
    dist.barrier()
    dist.destroy_process_group()


def run(params: int, steps: int, reps: int) -> str:
    import multiprocessing

    from softzo.distributed.local import free_port

    port = free_port()
    out = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"softzo_bench_distributed_{port}.npz")
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_rank, args=(r, port, params, steps, reps, out)) for r in range(WORLD)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"a rank failed: exit codes {[p.exitcode for p in procs]}")
    r = np.load(out)
    os.remove(out)
    names, times, n = list(r["names"])[1:], r["times"][1:], int(r["n"])
    wire = r["wire"][1:] - np.median(r["wire"][0])  # less the barriers' bytes
    single = float(np.median(times[0]))
    ddp_payload = 2 * (WORLD - 1) / WORLD * 4 * n
    payload = [None, *map(int, r["softzo_bytes"]), ddp_payload]
    lines = [
        (
            f"{n:,} float32 parameters, batch {BATCH}, {WORLD} ranks of 1 thread (gloo, 127.0.0.1); "
            f"median over {reps} interleaved rounds of {steps} steps\n"
        ),
        (
            "| step | time per step | vs single process | payload bytes per rank and step "
            "| loopback bytes per rank and step (measured) |"
        ),
        "|---|---|---|---|---|",
    ]
    for name, t, w, p in zip(names, times, wire, payload):
        med = float(np.median(t))
        lines.append(
            f"| {name} | {med * 1e3:.1f} ms | {single / med:.2f}x | "
            f"{'-' if p is None else f'{p:,.0f}'} | {float(np.median(w)):,.0f} |"
        )
    ratio = ddp_payload / payload[1]
    lines += [
        "",
        (
            f"DDP's gradient all-reduce sends {ratio:,.0f}x the bytes of softzo's data-parallel "
            f"step ({ddp_payload:,.0f} vs {payload[1]} per rank and step); measured on the "
            f"loopback, {float(np.median(wire[3])) / float(np.median(wire[1])):,.0f}x."
        ),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.distributed", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--quick", action="store_true", help="1e5 parameters, 1 round of 2 steps")
    ap.add_argument("--params", type=int, default=None, help="default 1e7")
    ap.add_argument("--steps", type=int, default=None, help="steps per round and case (5)")
    ap.add_argument("--reps", type=int, default=None, help="interleaved rounds (5)")
    ap.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    args = ap.parse_args(argv)
    out = args.out if args.out or args.quick else RESULTS
    params = args.params or (100_000 if args.quick else 10_000_000)
    steps = args.steps or (2 if args.quick else 5)
    reps = args.reps or (1 if args.quick else 5)
    t0, load0 = time.perf_counter(), load()
    warn_if_loaded(load0)
    table = run(params, steps, reps)
    print(table)
    if out is not None:
        heading = (
            "# softzo zeroth-order training across processes\n\n"
            f"{provenance('bench.distributed', argv, t0, load0)} (other processes "
            "competing for the 2 cores make every time here slower and noisier; both ranks share "
            "them, so the 2-rank rows cannot show the speed-up of separate machines)\n\n"
        )
        write(out, "distributed.md", heading + table)


if __name__ == "__main__":
    main()
