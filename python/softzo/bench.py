"""Benchmarks of softmax, log_softmax and logsumexp against PyTorch, NumPy, SciPy and the roofline.

``python -m softzo.bench [--quick] [--threads 1 2] [--out DIR] [--reps N]``

Everything runs in one process. For each size and thread count every buffer is allocated and
first-touched once, each candidate is warmed up and given a batch length (calls per timed sample,
so a sample lasts about 2 ms), then the candidates are alternated in each repetition, so clock
drift or a noisy neighbour hits all of them alike. A candidate's time per call is the MINIMUM over
repetitions of its sample's mean: the least-disturbed run of the same work.

The roofline is what plain streaming loops reach on the same buffers and threads
(``_testing.stream_read``: one read pass; ``_testing.stream_scale``: one read and one write pass). An
algorithm's roofline time is its pass count times those (``PASSES``); % of roofline is that time
over the measured one.

A second table times allocating calls (no out=) on single rows of 16, 1K and 32K floats with
NumPy, torch and JAX input, against torch's own op on the same tensor: the fixed cost each
framework's input and output add per call.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from . import _core, _testing, info, log_softmax, logsumexp, softmax

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
QUICK_SHAPES = ((1 << 15,), (1 << 22,), (64, 32000))
# Rows where the per-call cost of each input framework shows: small, medium, large.
CALL_SIZES = (16, 1 << 10, 1 << 15)
QUICK_CALL_SIZES = (16, 1 << 15)
ALLOC_SHAPE = (1 << 26,)  # where allocating calls (no out=) get their own row
SAMPLE_S = 2e-3  # target length of one timed batch of calls
BUDGET_S = 0.2  # target timing per candidate, size and thread count (full run)
QUICK_BUDGET_S = 0.02
MIN_REPS, MAX_REPS = 3, 100
ALLOWANCE = 1.05  # "auto" is flagged when slower than the best algorithm by more than this

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
COMPETITORS = (("torch", "torch"), ("numpy", "NumPy"), ("scipy", "SciPy"))

Shape = tuple[int, ...]
Key = tuple[str, str]  # (op, implementation)
Times = dict[Key, float]  # seconds per call
Results = dict[tuple[Shape, int], Times]  # per (shape, threads)


def _optional(name: str) -> Any:
    """Torch and SciPy are competitors, not dependencies: a missing one only drops its columns."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _touched(shape: Shape) -> np.ndarray:
    """np.zeros would hand back untouched pages, and the first timed call would fault them in."""
    a = np.empty(shape, dtype=np.float32)
    a.fill(1.0)
    return a


def _np_softmax(x: np.ndarray, out: np.ndarray, m: np.ndarray, s: np.ndarray) -> None:
    """The obvious NumPy softmax (5 passes), in preallocated buffers."""
    np.max(x, axis=-1, keepdims=True, out=m)
    np.subtract(x, m, out=out)
    np.exp(out, out=out)
    np.sum(out, axis=-1, keepdims=True, out=s)
    np.divide(out, s, out=out)


def _np_log_softmax(
    x: np.ndarray, out: np.ndarray, tmp: np.ndarray, m: np.ndarray, s: np.ndarray
) -> None:
    """x - m - log(sum(exp(x - m))) in preallocated buffers."""
    np.max(x, axis=-1, keepdims=True, out=m)
    np.subtract(x, m, out=out)
    np.exp(out, out=tmp)
    np.sum(tmp, axis=-1, keepdims=True, out=s)
    np.log(s, out=s)
    np.subtract(out, s, out=out)


def _candidates(
    shape: Shape, ops: Sequence[str], threads: int, torch: Any, special: Any
) -> dict[Key, Callable[[], object]]:
    """Every timed call for one size: outputs preallocated and first-touched, inputs shared."""
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32) * np.float32(4)
    out, tmp = _touched(shape), _touched(shape)
    m, s, lse = _touched(shape[:-1] + (1,)), _touched(shape[:-1] + (1,)), _touched(shape[:-1])
    c: dict[Key, Callable[[], object]] = {}
    for op, fn in (("softmax", softmax), ("log_softmax", log_softmax)):
        if op in ops:
            for a in ALGOS + ("auto",):
                c[op, a] = partial(fn, x, out=out, algorithm=a, num_threads=threads)
    if "logsumexp" in ops:
        for a in ALGOS + ("auto",):
            c["logsumexp", a] = partial(logsumexp, x, algorithm=a, num_threads=threads)
    if torch is not None:
        xt, ot, lt = torch.from_numpy(x), torch.from_numpy(out), torch.from_numpy(lse)
        torch_fns = {
            "softmax": partial(torch.softmax, xt, -1, out=ot),
            "log_softmax": partial(torch.log_softmax, xt, -1, out=ot),
            "logsumexp": partial(torch.logsumexp, xt, -1, out=lt),
        }
        c.update({(op, "torch"): torch_fns[op] for op in ops})
    if "softmax" in ops:
        c["softmax", "numpy"] = partial(_np_softmax, x, out, m, s)
    if "log_softmax" in ops:
        c["log_softmax", "numpy"] = partial(_np_log_softmax, x, out, tmp, m, s)
    if special is not None:
        c.update({(op, "scipy"): partial(getattr(special, op), x, axis=-1) for op in ops})
    c["roofline", "read"] = partial(_testing.stream_read, x, threads)
    c["roofline", "scale"] = partial(_testing.stream_scale, x, out, threads)
    if shape == ALLOC_SHAPE and "softmax" in ops:
        c["softmax_alloc", "softzo"] = partial(softmax, x, num_threads=threads)
        if torch is not None:
            c["softmax_alloc", "torch"] = partial(torch.softmax, xt, -1)
    return c


def _batch(fn: Callable[[], object], number: int) -> float:
    """Mean seconds per call over `number` back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def _calls_per_sample(fn: Callable[[], object]) -> tuple[int, float]:
    """Warms fn up and sizes its batch to SAMPLE_S, so timer resolution stays far below 1%."""
    fn()
    t = _batch(fn, 1)
    if t < SAMPLE_S:
        t = _batch(fn, math.ceil(SAMPLE_S / t))
    return max(1, round(SAMPLE_S / t)), t


def _measure(cands: dict[Key, Callable[[], object]], reps: int | None, budget: float) -> Times:
    """Interleaved timing: each repetition times every candidate once, in a rotating order."""
    number, estimate = {}, {}
    for k, fn in cands.items():
        number[k], estimate[k] = _calls_per_sample(fn)
    if reps is None:
        per_rep = sum(number[k] * estimate[k] for k in cands)
        reps = min(MAX_REPS, max(MIN_REPS, int(budget * len(cands) / per_rep)))
    keys = list(cands)
    best = dict.fromkeys(keys, math.inf)
    for r in range(reps):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            best[k] = min(best[k], _batch(cands[k], number[k]))
    return best


def run(
    shapes: Sequence[Shape],
    threads: Sequence[int],
    ops: Sequence[str] = OPS,
    reps: int | None = None,
    budget: float = BUDGET_S,
    use_scipy: bool = True,
    progress: bool = True,
) -> Results:
    """Times every candidate per (shape, thread count); torch threads are matched to softzo's."""
    torch = _optional("torch")
    special = _optional("scipy.special") if use_scipy else None
    torch_threads = torch.get_num_threads() if torch is not None else 0
    results: Results = {}
    try:
        for shape in shapes:
            for t in threads:
                if progress:
                    print(f"  {_label(shape)}, {t} thread(s)", file=sys.stderr, flush=True)
                if torch is not None:
                    torch.set_num_threads(t)
                cands = _candidates(shape, ops, t, torch, special)
                results[shape, t] = _measure(cands, reps, budget)
                del cands  # frees this size's buffers before the next are allocated
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)
    return results


def _call_candidates(n: int, torch: Any, jax: Any) -> dict[Key, Callable[[], object]]:
    """Allocating calls on one row of n floats: softzo on NumPy, torch and JAX input (each
    returning its own framework's array), and torch's op on the same tensor."""
    x = np.random.default_rng(0).standard_normal(n, dtype=np.float32) * np.float32(4)
    c: dict[Key, Callable[[], object]] = {}
    for op, fn in (("softmax", softmax), ("log_softmax", log_softmax), ("logsumexp", logsumexp)):
        c[op, "numpy"] = partial(fn, x, num_threads=1)
        if torch is not None:
            xt = torch.from_numpy(x.copy())
            c[op, "torch"] = partial(fn, xt, num_threads=1)
            c[op, "torch op"] = partial(getattr(torch, op), xt, -1)
        if jax is not None:
            c[op, "jax"] = partial(fn, jax.numpy.asarray(x), num_threads=1)
    return c


def run_calls(
    sizes: Sequence[int],
    reps: int | None = None,
    budget: float = BUDGET_S,
    use_jax: bool = True,
    progress: bool = True,
) -> dict[int, Times]:
    """Per-call times by input framework (1 thread for softzo and torch), per row length."""
    torch = _optional("torch")
    jax = _optional("jax") if use_jax else None
    torch_threads = torch.get_num_threads() if torch is not None else 0
    results = {}
    try:
        if torch is not None:
            torch.set_num_threads(1)
        for n in sizes:
            if progress:
                print(f"  per call, {_label((n,))} row", file=sys.stderr, flush=True)
            results[n] = _measure(_call_candidates(n, torch, jax), reps, budget)
    finally:
        if torch is not None:
            torch.set_num_threads(torch_threads)
    return results


# ---------------------------------------------------------------------------- reporting


def _label(shape: Shape) -> str:
    if len(shape) > 1:
        return "x".join(map(str, shape))
    n = shape[0]
    for unit, div in (("M", 1 << 20), ("K", 1 << 10)):
        if n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def _fmt_time(t: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def _ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None else f"{num / den:.2f}x"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _roofline_time(t: Times, op: str, algo: str) -> float:
    reads, rws = PASSES[op][algo]
    return reads * t["roofline", "read"] + rws * t["roofline", "scale"]


def _competitors(res: Results, op: str) -> list:
    """The (key, title) of each competitor measured for op: absent libraries drop out."""
    return [(k, name) for k, name in COMPETITORS if any((op, k) in t for t in res.values())]


def _summary(res: Results, op: str) -> str:
    """One row per size and thread count: auto against the best algorithm, rivals and roofline."""
    comps = _competitors(res, op)
    header = ["size", "thr", "auto picks", "auto time", "Gelem/s", "best algorithm", "auto <=5%"]
    multi = any(thr != 1 for _, thr in res)
    header += [f"x {name}" for _, name in comps] + ["% roofline"] + ["vs 1 thr"] * multi
    rows = []
    for (shape, thr), t in res.items():
        if (op, "auto") not in t:
            continue
        pick = _core.auto_algorithm(shape[-1], 4, op)
        auto = t[op, "auto"]
        best = min(ALGOS, key=lambda a: t[op, a])
        # The question is whether auto picks well: compare the pick's own time with the best.
        # (auto and its pick run the same kernels; their two timings differ only by noise.)
        slower = t[op, pick] / t[op, best] - 1
        ok = "yes" if t[op, pick] <= ALLOWANCE * t[op, best] else f"NO (+{slower:.0%})"
        one = res.get((shape, 1), {}).get((op, "auto")) if thr != 1 else None
        rows.append(
            [_label(shape), str(thr), pick, _fmt_time(auto), f"{math.prod(shape) / auto / 1e9:.2f}"]
            + [f"{best} ({_fmt_time(t[op, best])})", ok]
            + [_ratio(t.get((op, k)), auto) for k, _ in comps]
            + [f"{_roofline_time(t, op, pick) / auto:.0%}"]
            + [_ratio(one, auto) if one else "-"] * multi
        )
    return _table(header, rows)


def _detail(res: Results, op: str) -> str:
    """Every candidate's time per call; softzo's with its % of its own roofline."""
    comps = _competitors(res, op)
    header = ["size", "thr", *ALGOS, "auto"] + [name for _, name in comps]
    rows = []
    for (shape, thr), t in res.items():
        if (op, "auto") not in t:
            continue
        pick = _core.auto_algorithm(shape[-1], 4, op)
        cells = [
            f"{_fmt_time(t[op, a])} ({_roofline_time(t, op, pick if a == 'auto' else a) / t[op, a]:.0%})"
            for a in ALGOS + ("auto",)
        ]
        rows.append([_label(shape), str(thr), *cells] + [_fmt_time(t[op, k]) for k, _ in comps])
    return _table(header, rows)


def _roofline(res: Results) -> str:
    """The streaming loops' times and bandwidths (read: 4 B/element, read+write: 8 B/element)."""
    header = ["size", "thr", "read pass", "read GB/s", "read+write pass", "read+write GB/s"]
    rows = []
    for (shape, thr), t in res.items():
        n = math.prod(shape)
        r, w = t["roofline", "read"], t["roofline", "scale"]
        rows.append(
            [_label(shape), str(thr), _fmt_time(r), f"{4 * n / r / 1e9:.1f}"]
            + [_fmt_time(w), f"{8 * n / w / 1e9:.1f}"]
        )
    return _table(header, rows)


def _alloc(res: Results) -> str:
    """softmax without out=: the cost of a fresh, untouched output on each call."""
    header = ["size", "thr", "softzo alloc", "torch alloc", "softzo out=", "torch out="]
    rows = []
    for (shape, thr), t in res.items():
        if ("softmax_alloc", "softzo") in t:
            cells = [t.get(k) for k in (("softmax_alloc", "softzo"), ("softmax_alloc", "torch"))]
            cells += [t.get(("softmax", "auto")), t.get(("softmax", "torch"))]
            rows.append([_label(shape), str(thr)] + [_fmt_time(c) if c else "-" for c in cells])
    return _table(header, rows) if rows else ""


def _calls_table(res: dict[int, Times]) -> str:
    """softzo's time per call with each framework's input; torch input minus NumPy input; torch's
    op over softzo's, for torch and for NumPy input (the same ratio means torch input costs
    nothing extra)."""
    impls = [k for k in ("numpy", "torch", "jax") if any(("softmax", k) in t for t in res.values())]
    titles = {"numpy": "NumPy in", "torch": "torch in", "jax": "JAX in"}
    header = ["size", "op"] + [f"softzo, {titles[k]}" for k in impls]
    has_torch = "torch" in impls
    header += ["torch in - NumPy in", "torch's op", "x torch's op (torch in)"] * has_torch
    header += ["x torch's op (NumPy in)"] * has_torch
    rows = []
    for n, t in res.items():
        for op in OPS:
            cells = [_label((n,)), op] + [_fmt_time(t[op, k]) for k in impls]
            if has_torch:
                diff = t[op, "torch"] - t[op, "numpy"]
                cells += [f"{diff * 1e6:+.2f} us", _fmt_time(t[op, "torch op"])]
                cells += [_ratio(t[op, "torch op"], t[op, "torch"])]
                cells += [_ratio(t[op, "torch op"], t[op, "numpy"])]
            rows.append(cells)
    return _table(header, rows)


def report(res: Results, ops: Sequence[str]) -> str:
    """The Markdown tables: a summary per op, then per-candidate times, roofline, allocation."""
    parts = []
    for op in ops:
        parts += [f"### {op}", _summary(res, op)]
    parts += [
        "### Time per call (softzo: % of that algorithm's roofline; auto: of its pick's)",
    ]
    for op in ops:
        parts += [f"#### {op}", _detail(res, op)]
    parts += ["### Roofline: streaming loops on the same buffers and threads", _roofline(res)]
    alloc = _alloc(res)
    if alloc:
        parts += ["### softmax allocating its output (no out=)", alloc]
    return "\n\n".join(parts) + "\n"


def _machine() -> str:
    """CPU model and cores from /proc/cpuinfo, and the softzo runtime, for the report heading."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name", platform.processor() or platform.machine())
    versions = {"numpy": np.__version__}
    for name in ("torch", "scipy"):
        mod = _optional(name)
        versions[name] = getattr(mod, "__version__", "?") if mod else "not installed"
    return (
        f"- CPU: {model}; {os.cpu_count()} logical CPUs, {fields.get('cpu cores', '?')} cores, "
        f"cache {fields.get('cache size', '?')}\n"
        f"- softzo: {info()}\n"
        f"- Python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )


def _load() -> float:
    """The 1-minute load average, which the report quotes: a busy machine skews every timing."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def _provenance(module: str, argv: Sequence[str] | None, t0: float, load0: float) -> str:
    """A report's heading lines: the machine, the date, the exact command with its wall time
    since ``t0``, and the load average before (``load0``) and now."""
    argv_used = sys.argv[1:] if argv is None else list(argv)
    command = " ".join([f"python -m {module}", *map(shlex.quote, argv_used)])
    return (
        f"{_machine()}\n"
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}\n"
        f"- command: `{command}` ({time.perf_counter() - t0:.0f} s)\n"
        f"- 1-minute load average before / after: {load0:.2f} / {_load():.2f}"
    )


def _plot(res: Results, ops: Sequence[str], threads: Sequence[int], path: Path) -> None:
    """G elements/s against row length: single rows above, batched shapes below."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written", file=sys.stderr)
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
                        t = res.get((s, thr), {})
                        sec = (
                            _roofline_time(t, op, "two_pass")
                            if name == "roofline" and t
                            else t.get((op, name))
                        )
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
            ax.set_xticks([s[-1] for s in group], [_label(s) for s in group])
            ax.minorticks_off()
            ax.set_title(f"{op}: {'single rows' if row == 0 else 'batched'}")
            ax.set_xlabel("row length")
            ax.set_ylabel("G elements/s")
            ax.set_yscale("log")
            ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(
        "softzo float32 ("
        + ", ".join(f"{styles[i % len(styles)]}: {thr} thread(s)" for i, thr in enumerate(threads))
        + ")"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def quick() -> str:
    """A few-second check for ``python -m softzo``: 1 thread, softmax and log_softmax, no SciPy;
    the per-call cost of NumPy and torch input on short and long rows."""
    ops = ("softmax", "log_softmax")
    res = run(QUICK_SHAPES, [1], ops, budget=QUICK_BUDGET_S, use_scipy=False, progress=False)
    parts = [f"### {op}\n\n{_summary(res, op)}" for op in ops]
    calls = run_calls(QUICK_CALL_SIZES, budget=QUICK_BUDGET_S, use_jax=False, progress=False)
    parts.append(f"### Per call, allocating (no out=)\n\n{_calls_table(calls)}")
    return "\n\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m softzo.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="3 sizes, 1 thread, no files")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: by size)")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: the GPU benchmark of softzo.bench_cuda (writes cuda.md)",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda":
        from . import bench_cuda

        bench_cuda.main(args.out, args.reps or 20)
        return
    if args.quick:
        print(quick())
        return
    t0, load0 = time.perf_counter(), _load()
    if load0 > 0.5:
        print(
            f"warning: load average {load0:.1f}: other processes will skew the times",
            file=sys.stderr,
        )
    res = run(FULL_SHAPES, args.threads, OPS, args.reps)
    calls = run_calls(CALL_SIZES, args.reps)
    tables = report(res, OPS)
    tables += (
        "\n### Per call by input framework: allocating (no out=), 1 thread\n\n"
        + _calls_table(calls)
        + "\n"
    )
    print(tables)
    args.out.mkdir(parents=True, exist_ok=True)
    heading = (
        "# softzo softmax benchmark\n\n"
        f"{_provenance('softzo.bench', argv, t0, load0)} (other processes "
        "competing for the cores make every number here slower and noisier)\n\n"
        "float32. Times per call are the minimum over interleaved repetitions, outputs preallocated "
        "(out=) and first-touched. NumPy and SciPy are single-threaded: their 2-thread rows run the "
        "same code. torch threads are set to the softzo thread count. % roofline = the pass count "
        "of the algorithm (auto: its pick) times the streaming loops' times, over the measured "
        "time. 'auto <=5%' says whether the algorithm auto picks measured within 5% of the best "
        "algorithm at that size (auto and its pick run the same kernels, so the pick's own time "
        "is compared). 'vs 1 thr' is the 1-thread time over this one.\n\n"
    )
    (args.out / "softmax.md").write_text(heading + tables, encoding="utf-8")
    _plot(res, OPS, args.threads, args.out / "softmax.png")
    print(f"wrote {args.out / 'softmax.md'} and softmax.png", file=sys.stderr)


if __name__ == "__main__":
    main()
