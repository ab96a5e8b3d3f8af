"""softmax, log_softmax and logsumexp against PyTorch, NumPy, SciPy and the streaming roofline,
on every input distribution.

``python -m bench.softmax [--quick] [--threads 1 2] [--dists normal wide30 ...] [--reps N]
[--out DIR]``

Everything runs in one process, float32, on the ISA softzo picked (``python -m bench.isa``
compares the ISAs). For each size and thread count, the inputs of every distribution (N(0,1),
N(0,30²), N(0,100²), 10% -inf, a -1e4 tail over half of each row, N(0,1)/0.1) and every output
are allocated and first-touched once; then every candidate on every distribution is timed
interleaved (``_common.measure``), so a distribution's time against N(0,1)'s is a ratio measured
in one run.

Candidates: softzo's four algorithms and ``auto`` with a preallocated ``out=``; torch in both of
its call modes, allocating (``torch.softmax(x, -1)``) and ``out=`` (its slower path); NumPy
written the obvious way, allocating and in preallocated buffers; ``scipy.special``. "x torch"
and "x NumPy" are taken against the faster of the two modes measured on the same input. NumPy
and SciPy use one thread whatever the thread count: with more threads their 1-thread times of
the same run are compared.

The roofline is what plain streaming loops reach on the same buffers and threads (one read
pass; one read and one write pass); an algorithm's roofline time is its pass count times those
(``PASSES``), and % of roofline is that time over the measured one.

A second table times allocating calls (no out=) on single rows of 16, 1K and 32K floats with
NumPy, torch and JAX input, against torch's own op on the same tensor: the fixed cost each
framework's input and output add per call.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from softzo import _core, log_softmax, logsumexp, softmax

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
    optional,
    provenance,
    pyplot,
    ratio,
    stream_read,
    stream_scale,
    table,
    touched,
    warn_if_loaded,
    write,
)

ALGOS = ("two_pass", "three_pass_reload", "three_pass_recompute", "online")
OPS = ("softmax", "log_softmax", "logsumexp")
FULL_SHAPES = (
    (1 << 10,),
    (1 << 15,),
    (1 << 18,),
    (1 << 22,),
    (1 << 26,),
    (64, 32000),
    (8, 128256),
    (4096, 1024),
)
QUICK_SHAPES = ((1 << 15,), (64, 32000))
# Rows where the per-call cost of each input framework shows: small, medium, large.
CALL_SIZES = (16, 1 << 10, 1 << 15)
QUICK_CALL_SIZES = (16, 1 << 15)
ALLOC_SHAPE = (1 << 26,)  # where softzo's allocating call (no out=) gets its own row
BUDGET_S = 0.1  # target timing per candidate, size and thread count (full run)
QUICK_BUDGET_S = 0.01
VALUE_BOUND = 1.15  # issue 18: no distribution slower than 1.15x N(0,1)

# (read passes, read+write passes) per algorithm; a stored-exp pass counts as read+write.
PASSES: dict[str, dict[str, tuple[int, int]]] = {
    "softmax": {
        "two_pass": (1, 1),
        "online": (1, 1),
        "three_pass_reload": (1, 2),
        "three_pass_recompute": (2, 1),
    },
    "log_softmax": {
        "two_pass": (1, 1),
        "online": (1, 1),
        "three_pass_reload": (2, 1),
        "three_pass_recompute": (2, 1),
    },
    "logsumexp": {
        "two_pass": (1, 0),
        "online": (1, 0),
        "three_pass_reload": (2, 0),
        "three_pass_recompute": (2, 0),
    },
}
# Each peer by title, with its call modes (implementation keys); compared in its fastest.
PEERS = {
    "torch": ("torch", "torch out="),
    "NumPy": ("numpy", "numpy out="),
    "SciPy": ("scipy",),
}
SINGLE_THREADED = ("NumPy", "SciPy")  # compared at their 1-thread time of the same run

Shape = tuple[int, ...]
Key = tuple[
    str, str, str
]  # (op, implementation, distribution); the roofline's is ("roofline", pass, "")
Times = dict[Key, float]  # seconds per call
Results = dict[tuple[Shape, int], Times]  # per (shape, threads)


# ---- candidates -------------------------------------------------------------------------------


def _np_softmax(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """softmax written the obvious way in NumPy (max, subtract, exp, sum, divide); with ``out``,
    in that preallocated buffer."""
    y = np.subtract(x, x.max(-1, keepdims=True), out=out)
    np.exp(y, out=y)
    return np.divide(y, y.sum(-1, keepdims=True), out=y)


def _np_log_softmax(
    x: np.ndarray, out: np.ndarray | None = None, tmp: np.ndarray | None = None
) -> np.ndarray:
    """x - m - log(sum(exp(x - m))); with ``out`` and ``tmp``, in those buffers."""
    y = np.subtract(x, x.max(-1, keepdims=True), out=out)
    e = np.exp(y, out=tmp)
    return np.subtract(y, np.log(e.sum(-1, keepdims=True)), out=y)


def _candidates(
    shape: Shape,
    ops: Sequence[str],
    threads: int,
    dists: Sequence[str],
    torch: Any,
    special: Any,
) -> dict[Key, Candidate]:
    """Every timed call for one size and thread count: inputs per distribution, outputs shared,
    all allocated and first-touched here."""
    rng = np.random.default_rng(0)
    xs = {d: draw(d, shape, rng) for d in dists}
    out, tmp = touched(shape), touched(shape)
    lse = touched(shape[:-1])
    c: dict[Key, Candidate] = {}
    for d, x in xs.items():
        for op, fn in (("softmax", softmax), ("log_softmax", log_softmax)):
            if op in ops:
                for a in ALGOS + ("auto",):
                    c[op, a, d] = Candidate(
                        partial(fn, x, out=out, algorithm=a, num_threads=threads)
                    )
        if "logsumexp" in ops:
            for a in ALGOS + ("auto",):
                c["logsumexp", a, d] = Candidate(
                    partial(logsumexp, x, algorithm=a, num_threads=threads)
                )
        if torch is not None:
            xt, ot, lt = torch.from_numpy(x), torch.from_numpy(out), torch.from_numpy(lse)
            for op in ops:
                fn = getattr(torch, op)
                c[op, "torch", d] = Candidate(partial(fn, xt, -1))
                c[op, "torch out=", d] = Candidate(
                    partial(fn, xt, -1, out=lt if op == "logsumexp" else ot)
                )
        if threads == 1:  # NumPy and SciPy run on one thread whatever the count
            if "softmax" in ops:
                c["softmax", "numpy", d] = Candidate(partial(_np_softmax, x))
                c["softmax", "numpy out=", d] = Candidate(partial(_np_softmax, x, out))
            if "log_softmax" in ops:
                c["log_softmax", "numpy", d] = Candidate(partial(_np_log_softmax, x))
                c["log_softmax", "numpy out=", d] = Candidate(partial(_np_log_softmax, x, out, tmp))
            if special is not None:
                for op in ops:
                    c[op, "scipy", d] = Candidate(partial(getattr(special, op), x, axis=-1))
        if shape == ALLOC_SHAPE and "softmax" in ops and d == BASELINE:
            c["softmax", "softzo alloc", d] = Candidate(partial(softmax, x, num_threads=threads))
    x0 = next(iter(xs.values()))
    c["roofline", "read", ""] = Candidate(stream_read(x0, threads))
    c["roofline", "scale", ""] = Candidate(stream_scale(x0, out, threads))
    return c


def run(
    shapes: Sequence[Shape],
    threads: Sequence[int],
    ops: Sequence[str] = OPS,
    dists: Sequence[str] = tuple(DISTRIBUTIONS),
    reps: int | None = None,
    budget: float = BUDGET_S,
    use_scipy: bool = True,
    progress: bool = True,
) -> Results:
    """Times every candidate per (shape, thread count); torch threads are matched to softzo's."""
    torch = optional("torch")
    special = optional("scipy.special") if use_scipy else None
    torch_threads = torch.get_num_threads() if torch is not None else 0
    results: Results = {}
    try:
        for shape in shapes:
            for t in threads:
                if progress:
                    print(f"  {label(shape)}, {t} thread(s)", file=sys.stderr, flush=True)
                if torch is not None:
                    torch.set_num_threads(t)
                cands = _candidates(shape, ops, t, dists, torch, special)
                results[shape, t] = measure(cands, reps, budget)
                del cands  # frees this size's buffers before the next are allocated
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)
    return results


def _call_candidates(n: int, torch: Any, jax: Any) -> dict[tuple[str, str], Candidate]:
    """Allocating calls on one N(0,1) row of n floats: softzo on NumPy, torch and JAX input
    (each returning its own framework's array), and torch's op on the same tensor in both of
    its call modes."""
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
    c: dict[tuple[str, str], Candidate] = {}
    for op, fn in (("softmax", softmax), ("log_softmax", log_softmax), ("logsumexp", logsumexp)):
        c[op, "numpy"] = Candidate(partial(fn, x, num_threads=1))
        if torch is not None:
            xt = torch.from_numpy(x.copy())
            out = torch.empty(()) if op == "logsumexp" else torch.empty_like(xt)
            c[op, "torch"] = Candidate(partial(fn, xt, num_threads=1))
            c[op, "torch op"] = Candidate(partial(getattr(torch, op), xt, -1))
            c[op, "torch op out="] = Candidate(partial(getattr(torch, op), xt, -1, out=out))
        if jax is not None:
            c[op, "jax"] = Candidate(partial(fn, jax.numpy.asarray(x), num_threads=1))
    return c


def run_calls(
    sizes: Sequence[int],
    reps: int | None = None,
    budget: float = BUDGET_S,
    use_jax: bool = True,
    progress: bool = True,
) -> dict[int, dict[tuple[str, str], float]]:
    """Per-call times by input framework (1 thread for softzo and torch), per row length."""
    torch = optional("torch")
    jax = optional("jax") if use_jax else None
    torch_threads = torch.get_num_threads() if torch is not None else 0
    results = {}
    try:
        if torch is not None:
            torch.set_num_threads(1)
        for n in sizes:
            if progress:
                print(f"  per call, {label((n,))} row", file=sys.stderr, flush=True)
            results[n] = measure(_call_candidates(n, torch, jax), reps, budget)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)
    return results


# ---- reporting --------------------------------------------------------------------------------


def _roofline_time(t: Times, op: str, algo: str) -> float:
    reads, rws = PASSES[op][algo]
    return reads * t["roofline", "read", ""] + rws * t["roofline", "scale", ""]


def _peer_time(res: Results, shape: Shape, thr: int, op: str, dist: str, peer: str):
    """(seconds, mode) of a peer's fastest call mode on this input, or (None, "")."""
    t = res[shape, thr]
    if peer in SINGLE_THREADED and thr != 1:
        t = res.get((shape, 1), {})
    found = [(t[op, m, dist], m) for m in PEERS[peer] if (op, m, dist) in t]
    return min(found) if found else (None, "")


def _peers(res: Results, op: str) -> list[str]:
    """The peers measured for op: absent libraries drop out."""
    return [
        p
        for p, modes in PEERS.items()
        if any((op, m, d) in t for t in res.values() for m in modes for d in DISTRIBUTIONS)
    ]


def _dists(res: Results) -> list[str]:
    present = {d for t in res.values() for (_, _, d) in t}
    return [d for d in DISTRIBUTIONS if d in present]


def _summary(res: Results, op: str) -> str:
    """One row per size, thread count and distribution: auto against the best algorithm and
    against its N(0,1) time, the peers' fastest calls, and the roofline."""
    peers = _peers(res, op)
    header = ["size", "thr", "input", "auto picks", "auto time", "vs N(0,1)", "Gelem/s"]
    header += ["best algorithm", "auto <=5%"] + [f"x {p}" for p in peers] + ["% roofline"]
    multi = any(thr != 1 for _, thr in res)
    header += ["vs 1 thr"] * multi
    rows = []
    for (shape, thr), t in res.items():
        pick = _core.auto_algorithm(shape[-1], 4, op)
        for d in _dists(res):
            if (op, "auto", d) not in t:
                continue
            auto = t[op, "auto", d]
            best = min(ALGOS, key=lambda a: t[op, a, d])
            # Whether auto picks well: the pick's own time against the best (auto and its pick
            # run the same kernels; their two timings differ only by noise).
            slower = t[op, pick, d] / t[op, best, d] - 1
            ok = "yes" if t[op, pick, d] <= ALLOWANCE * t[op, best, d] else f"NO (+{slower:.0%})"
            one = res.get((shape, 1), {}).get((op, "auto", d)) if thr != 1 else None
            cells = [label(shape), str(thr), DISTRIBUTIONS[d], pick, fmt_time(auto)]
            cells += [ratio(auto, t.get((op, "auto", BASELINE)))]
            cells += [
                f"{math.prod(shape) / auto / 1e9:.2f}",
                f"{best} ({fmt_time(t[op, best, d])})",
                ok,
            ]
            for p in peers:
                sec, mode = _peer_time(res, shape, thr, op, d, p)
                cells.append(ratio(sec, auto) + (f" ({mode})" if len(PEERS[p]) > 1 and sec else ""))
            cells += [f"{_roofline_time(t, op, pick) / auto:.0%}"]
            cells += [ratio(one, auto) if one else "-"] * multi
            rows.append(cells)
    return table(header, rows)


def _value_independence(res: Results, op: str) -> str:
    """Per size, thread count and algorithm: the time on N(0,1) and every other distribution's
    time over it (issue 18: at most VALUE_BOUND)."""
    dists = [d for d in _dists(res) if d != BASELINE]
    header = ["size", "thr", "algorithm", "N(0,1)"] + [DISTRIBUTIONS[d] for d in dists]
    header += ["worst", f"<= {VALUE_BOUND}x"]
    rows = []
    for (shape, thr), t in res.items():
        for a in ALGOS + ("auto",):
            base = t.get((op, a, BASELINE))
            if base is None:
                continue
            rel = [t[op, a, d] / base for d in dists if (op, a, d) in t]
            worst = max(rel, default=1.0)
            rows.append(
                [label(shape), str(thr), a, fmt_time(base)]
                + [f"{r:.2f}x" for r in rel]
                + [f"{worst:.2f}x", "yes" if worst <= VALUE_BOUND else "NO"]
            )
    return table(header, rows)


def _detail(res: Results, op: str) -> str:
    """Every candidate's time per call; softzo's with its % of its own roofline."""
    modes = [m for p in _peers(res, op) for m in PEERS[p]]
    header = ["size", "thr", "input", *ALGOS, "auto", *modes]
    rows = []
    for (shape, thr), t in res.items():
        pick = _core.auto_algorithm(shape[-1], 4, op)
        for d in _dists(res):
            if (op, "auto", d) not in t:
                continue
            cells = [
                f"{fmt_time(t[op, a, d])} "
                f"({_roofline_time(t, op, pick if a == 'auto' else a) / t[op, a, d]:.0%})"
                for a in ALGOS + ("auto",)
            ]
            rows.append(
                [label(shape), str(thr), DISTRIBUTIONS[d], *cells]
                + [fmt_time(t.get((op, m, d))) for m in modes]
            )
    return table(header, rows)


def _roofline(res: Results) -> str:
    """The streaming loops' times and bandwidths (read: 4 B/element, read+write: 8 B/element)."""
    header = ["size", "thr", "read pass", "read GB/s", "read+write pass", "read+write GB/s"]
    rows = []
    for (shape, thr), t in res.items():
        n = math.prod(shape)
        r, w = t["roofline", "read", ""], t["roofline", "scale", ""]
        rows.append(
            [label(shape), str(thr), fmt_time(r), f"{4 * n / r / 1e9:.1f}"]
            + [fmt_time(w), f"{8 * n / w / 1e9:.1f}"]
        )
    return table(header, rows)


def _alloc(res: Results) -> str:
    """softmax allocating its output against writing into out=, for softzo and torch."""
    header = ["size", "thr", "softzo alloc", "torch alloc", "softzo out=", "torch out="]
    rows = []
    for (shape, thr), t in res.items():
        if ("softmax", "softzo alloc", BASELINE) in t:
            keys = ("softzo alloc", "torch", "auto", "torch out=")
            cells = [fmt_time(t.get(("softmax", k, BASELINE))) for k in keys]
            rows.append([label(shape), str(thr), *cells])
    return table(header, rows) if rows else ""


def _calls_table(res: dict[int, dict[tuple[str, str], float]]) -> str:
    """softzo's time per call with each framework's input; torch input minus NumPy input; torch's
    op (its faster call mode) over softzo's, for torch and for NumPy input (the same ratio means
    torch input costs nothing extra)."""
    impls = [k for k in ("numpy", "torch", "jax") if any(("softmax", k) in t for t in res.values())]
    titles = {"numpy": "NumPy in", "torch": "torch in", "jax": "JAX in"}
    header = ["size", "op"] + [f"softzo, {titles[k]}" for k in impls]
    has_torch = "torch" in impls
    header += ["torch in - NumPy in", "torch's op (alloc / out=)"] * has_torch
    header += ["x torch's op (torch in)", "x torch's op (NumPy in)"] * has_torch
    rows = []
    for n, t in res.items():
        for op in OPS:
            cells = [label((n,)), op] + [fmt_time(t[op, k]) for k in impls]
            if has_torch:
                theirs = min(t[op, "torch op"], t[op, "torch op out="])
                cells += [f"{(t[op, 'torch'] - t[op, 'numpy']) * 1e6:+.2f} us"]
                cells += [f"{fmt_time(t[op, 'torch op'])} / {fmt_time(t[op, 'torch op out='])}"]
                cells += [ratio(theirs, t[op, "torch"]), ratio(theirs, t[op, "numpy"])]
            rows.append(cells)
    return table(header, rows)


def report(res: Results, ops: Sequence[str]) -> str:
    """The Markdown tables: a summary per op, the distributions against N(0,1), every
    candidate's time, the roofline, and softmax allocating."""
    parts = []
    for op in ops:
        parts += [f"### {op}", _summary(res, op)]
    parts.append("### Time on each distribution over the time on N(0,1), per algorithm")
    for op in ops:
        parts += [f"#### {op}", _value_independence(res, op)]
    parts.append("### Time per call (softzo: % of that algorithm's roofline; auto: of its pick's)")
    for op in ops:
        parts += [f"#### {op}", _detail(res, op)]
    parts += ["### Roofline: streaming loops on the same buffers and threads", _roofline(res)]
    alloc = _alloc(res)
    if alloc:
        parts += ["### softmax allocating its output (no out=), N(0,1)", alloc]
    return "\n\n".join(parts) + "\n"


def _plot(res: Results, ops: Sequence[str], threads: Sequence[int], path: Path) -> None:
    """G elements/s against row length on N(0,1): single rows above, batched shapes below."""
    plt = pyplot()
    if plt is None:
        return
    series = [*ALGOS, "torch", "numpy", "scipy", "roofline"]
    colors = dict(zip(series, plt.get_cmap("tab10").colors))
    styles = ["solid", "dashed", "dotted", "dashdot"]
    shapes = sorted({s for s, _ in res}, key=lambda s: s[-1])
    groups = [[s for s in shapes if len(s) == 1], [s for s in shapes if len(s) > 1]]
    fig, axes = plt.subplots(2, len(ops), figsize=(5 * len(ops), 8), squeeze=False)
    for row, group in enumerate(groups):
        for col, op in enumerate(ops):
            ax = axes[row][col]
            for name in series:
                for i, thr in enumerate(threads):
                    xs, ys = [], []
                    for s in group:
                        sec = _series_time(res, s, thr, op, name)
                        if sec:
                            xs.append(s[-1])
                            ys.append(math.prod(s) / sec / 1e9)
                    if xs:
                        ax.plot(
                            xs,
                            ys,
                            linestyle=styles[i % len(styles)],
                            color=colors[name],
                            marker=".",
                            label=name if i == 0 else None,
                        )
            ax.set_xscale("log")
            ax.set_xticks([s[-1] for s in group], [label(s) for s in group])
            ax.minorticks_off()
            ax.set_title(f"{op}: {'single rows' if row == 0 else 'batched'}")
            ax.set_xlabel("row length")
            ax.set_ylabel("G elements/s")
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(
        "softzo float32, N(0,1) ("
        + ", ".join(f"{styles[i % len(styles)]}: {thr} thread(s)" for i, thr in enumerate(threads))
        + "; peers in their faster call mode)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _series_time(res: Results, shape: Shape, thr: int, op: str, name: str) -> float | None:
    t = res.get((shape, thr))
    if not t:
        return None
    if name == "roofline":
        return _roofline_time(t, op, "two_pass")
    if name in ALGOS:
        return t.get((op, name, BASELINE))
    peer = {"torch": "torch", "numpy": "NumPy", "scipy": "SciPy"}[name]
    return _peer_time(res, shape, thr, op, BASELINE, peer)[0]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.softmax", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="2 sizes, 1 thread, short timing; files only with --out",
    )
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="default 1 2")
    parser.add_argument(
        "--dists", nargs="+", choices=list(DISTRIBUTIONS), default=list(DISTRIBUTIONS)
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: by time)")
    args = parser.parse_args(argv)
    out = args.out if args.out or args.quick else RESULTS
    threads = args.threads or ([1] if args.quick else [1, 2])
    dists = [BASELINE] + [d for d in args.dists if d != BASELINE]
    t0, load0 = time.perf_counter(), load()
    warn_if_loaded(load0)
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    budget = QUICK_BUDGET_S if args.quick else BUDGET_S
    res = run(shapes, threads, OPS, dists, args.reps, budget)
    calls = run_calls(QUICK_CALL_SIZES if args.quick else CALL_SIZES, args.reps, budget)
    tables = report(res, OPS)
    tables += (
        "\n### Per call by input framework: allocating (no out=), 1 thread, N(0,1)\n\n"
        + _calls_table(calls)
        + "\n"
    )
    print(tables)
    if out is None:
        return
    heading = (
        "# softzo softmax benchmark\n\n"
        f"{provenance('bench.softmax', argv, t0, load0)} (other processes competing for the "
        "cores make every number here slower and noisier)\n\n"
        "float32, on the ISA in use above (`python -m bench.isa` compares the ISAs). Inputs: "
        + ", ".join(DISTRIBUTIONS[d] for d in dists)
        + " (10% -inf: that fraction of entries masked; -1e4 tail: the second half of each row "
        "is -1e4). Times per call are the minimum over interleaved repetitions, every input "
        "and distribution in one run; softzo writes into a preallocated, first-touched out=. "
        "'x torch', 'x NumPy': the peer's faster call mode (allocating or out=, named) on the "
        "same input over softzo's auto. NumPy and SciPy are single-threaded: with 2 threads "
        "their 1-thread times are compared. torch threads are set to the softzo thread count. "
        "% roofline = the pass count of the algorithm (auto: its pick) times the streaming "
        "loops' times, over the measured time. 'auto <=5%': whether the algorithm auto picks "
        "measured within 5% of the best algorithm on that input (auto and its pick run the same "
        "kernels, so the pick's own time is compared). 'vs N(0,1)': the time over the time on "
        "N(0,1) rows of the same size. 'vs 1 thr': the 1-thread time over this one.\n\n"
    )
    write(out, "softmax.md", heading + tables)
    _plot(res, OPS, threads, out / "softmax.png")


if __name__ == "__main__":
    main()
