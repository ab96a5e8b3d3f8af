"""Benchmarks of softzo's fused losses (loss and gradient) against PyTorch autograd, 1 thread,
on every input distribution.

``python -m bench.losses [--quick] [--dists normal wide30 ...] [--out DIR] [--reps N]``

float32, one thread for softzo and for torch (``torch.set_num_threads(1)``). Each case (a loss
on one shape) times every candidate in one process, interleaved: every buffer is allocated and
first-touched once, every candidate is warmed up and given a batch length (calls per sample, a
sample lasting about 2 ms), then each repetition times every candidate once, in a rotating
order (``_common.measure``). A candidate's time is the MINIMUM over repetitions of its sample's
mean. Every candidate on every distribution of one shape is timed in one interleaved run, so a
distribution's time against N(0,1)'s is a ratio measured in one run. Each call is
timed on its own, so work a candidate needs before a call and that is not part of it (the fresh
copy of the logits that the in-place mode overwrites) stays out of the time. glibc's malloc is
set to keep freed memory (``mallopt``), so allocating candidates (torch's autograd, softzo's
``return_grad``) reuse warm buffers rather than page-fault depending on the order they ran in.

Cross-entropy candidates: softzo with a preallocated ``grad_out``; in place (``grad_out=logits``);
allocating its gradient (``return_grad=True``), with NumPy and with torch input; through the
``softzo.torch`` autograd function (plain and ``inplace_backward``) and module
(``CrossEntropyLoss``); and torch's ``F.cross_entropy`` and ``nn.CrossEntropyLoss`` forward plus
``backward()`` on logits that require grad. Shapes: (1, 16), where the fixed cost of a call is
all there is, (64, 1000), and the LLM-sized (64, 32000) and (8, 128256). Z-loss and KL
distillation compare softzo with the same formula written in PyTorch and differentiated by
autograd.

Distributions (``_common.DISTRIBUTIONS``): N(0,1) logits everywhere; at (64, 32000) and
(8, 128256) also N(0,30²), N(0,100²), 10% -inf, a -1e4 tail over half of each row and
N(0,1)/0.1, with the preallocated and in-place modes and both torch calls. Targets are never a
masked or padded class. KL's teacher masks the student's classes; the Z-loss, which standardises
its outputs, has no meaning on -inf and skips that input. "x torch" is against torch's faster call
on the same input: ``F.cross_entropy`` or ``nn.CrossEntropyLoss``.

The roofline is what the streaming loops of ``softzo._core`` reach on the same buffers in the same
run (``stream_read``: one read pass; ``stream_scale``: one read and one write pass), times the
fused scheme's nominal passes: cross-entropy reads the logits twice and writes the gradient once;
the Z-loss reads them three times (mean, variance, gradient); KL reads student and teacher twice.

Peak extra memory of each cross-entropy mode is measured in a fresh subprocess per mode: after
the inputs are allocated and touched and the mode has run once on a tiny input, the peak RSS
is reset (``/proc/self/clear_refs``), the mode runs once, and VmHWM minus the RSS before the call
is its native peak; tracemalloc's peak covers Python and NumPy allocations (not torch's).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import softzo.losses as L
from softzo import _core

from ._common import (
    BASELINE,
    DISTRIBUTIONS,
    REPO,
    RESULTS,
    Candidate,
    draw,
    fmt_time,
    label,
    load,
    measure,
    provenance,
    pyplot,
    ratio,
    reset_peak_memory,
    status_kib,
    stream_read,
    stream_scale,
    table,
    targets,
    touched,
    warn_if_loaded,
    write,
)

Shape = tuple[int, int]
Key = tuple[str, str, str]  # (loss, mode, distribution); the roofline's is ("roofline", pass, "")
Times = dict[Key, float]
CE_SHAPES: tuple[Shape, ...] = ((1, 16), (64, 1000), (64, 32000), (8, 128256))
QUICK_CE_SHAPES: tuple[Shape, ...] = ((1, 16), (64, 32000))
MEMORY_SHAPES = frozenset({(64, 32000), (8, 128256)})  # peak memory measured at these
SWEEP_SHAPES = MEMORY_SHAPES  # cross-entropy on every distribution at these
OTHER_SHAPE: Shape = (64, 32000)  # the Z-loss and KL, on every distribution
TEMPERATURE = 2.0  # KL distillation
BUDGET_S = 1.0  # target timing per candidate and case (full run)
QUICK_BUDGET_S = 0.05
TINY: Shape = (4, 64)  # warm-up shape of the memory probes

# candidate key -> title; torch's faster call on the same input is what the ratios are taken
# against (the softzo module's also against torch's module, REFERENCE)
CE_MODES = {
    "grad_out": "softzo grad_out= (preallocated)",
    "inplace": "softzo grad_out=logits (in place)",
    "alloc": "softzo return_grad (allocates grad)",
    "alloc_torch": "softzo return_grad, torch tensors in and out",
    "adapter": "softzo.torch.cross_entropy + backward",
    "adapter_inplace": "softzo.torch, inplace_backward=True",
    "module": "softzo.torch.CrossEntropyLoss() + backward",
    "torch_module": "torch nn.CrossEntropyLoss() + backward",
    "torch": "torch F.cross_entropy + backward",
}
REFERENCE = {"module": "torch_module"}
DIST_MODES = ("grad_out", "inplace", "torch_module", "torch")  # on every distribution
TORCH_MODES = ("torch", "torch_module")  # torch's calls: the faster one is the reference
# (read passes, read+write passes) of the fused scheme per case kind
PASSES = {"cross_entropy": (1, 1), "z_loss": (2, 1), "kl_div": (3, 1)}


# ---- inputs and candidates -------------------------------------------------------------------


def _inputs(shape: Shape, dist: str = BASELINE, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Touched float32 logits of the distribution and int64 class indices (real classes)."""
    rng = np.random.default_rng(seed)
    x = draw(dist, shape, rng)
    return x, targets(x, rng)


def _roofline(x: np.ndarray, out: np.ndarray) -> dict[Key, Candidate]:
    return {
        ("roofline", "read", ""): Candidate(stream_read(x, 1)),
        ("roofline", "scale", ""): Candidate(stream_scale(x, out, 1)),
    }


def _ce_mode(mode: str, x: np.ndarray, target: np.ndarray, torch: Any) -> Candidate:
    """One cross-entropy mode on x (never modified: in-place modes work on a fresh copy)."""
    if mode == "grad_out":
        g = touched(x.shape)
        return Candidate(partial(L.cross_entropy, x, target, grad_out=g, num_threads=1))
    if mode == "inplace":
        xi = touched(x.shape)
        return Candidate(
            partial(L.cross_entropy, xi, target, grad_out=xi, num_threads=1),
            partial(np.copyto, xi, x),
        )
    if mode == "alloc":
        return Candidate(partial(L.cross_entropy, x, target, return_grad=True, num_threads=1))
    if mode == "alloc_torch":
        xt, tt = torch.from_numpy(x), torch.from_numpy(target)
        return Candidate(partial(L.cross_entropy, xt, tt, return_grad=True, num_threads=1))
    import softzo.torch as st

    F = torch.nn.functional
    xt = torch.from_numpy(touched(x.shape)).requires_grad_(True)
    with torch.no_grad():
        xt.copy_(torch.from_numpy(x))
    tt = torch.from_numpy(target)
    if mode == "adapter_inplace":

        def prepare() -> None:
            xt.grad = None
            with torch.no_grad():
                xt.copy_(torch.from_numpy(x))

        def step() -> None:
            st.cross_entropy(xt, tt, inplace_backward=True, num_threads=1).backward()

        return Candidate(step, prepare)

    loss_fn = {
        "adapter": partial(st.cross_entropy, num_threads=1),
        "module": st.CrossEntropyLoss(),  # the library default thread count: set to 1 in run()
        "torch_module": torch.nn.CrossEntropyLoss(),
        "torch": F.cross_entropy,
    }[mode]

    def step() -> None:  # a training step frees the previous gradient too (zero_grad)
        xt.grad = None
        loss_fn(xt, tt).backward()

    return Candidate(step)


def _ce_candidates(shape: Shape, dist: str, torch: Any) -> dict[Key, Candidate]:
    """Cross-entropy's modes on one input: every mode on N(0,1), DIST_MODES on the others."""
    x, target = _inputs(shape, dist)
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(target))
    ours = L.cross_entropy(x, target, num_threads=1)
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-5)
    modes = CE_MODES if dist == BASELINE else DIST_MODES
    return {("cross_entropy", m, dist): _ce_mode(m, x, target, torch) for m in modes}


def _torch_z_loss(torch: Any, o: Any, t: Any, a: float = 1.0, b: float = 0.0) -> Any:
    """The Z-loss written in PyTorch: mean, population std, standardise, softplus."""
    mu = o.mean(-1, keepdim=True)
    sigma = (o - mu).pow(2).mean(-1, keepdim=True).sqrt()
    zc = ((o - mu) / sigma).gather(1, t[:, None])[:, 0]
    return (torch.nn.functional.softplus(a * (b - zc)) / a).mean()


def _torch_kl(torch: Any, s: Any, t: Any) -> Any:
    F = torch.nn.functional
    return F.kl_div(
        F.log_softmax(s / TEMPERATURE, -1),
        F.log_softmax(t / TEMPERATURE, -1),
        log_target=True,
        reduction="batchmean",
    )


def _autograd_step(torch_fn: Callable[..., Any], xt: Any, *args: Any) -> Callable[[], None]:
    def step() -> None:
        xt.grad = None
        torch_fn(xt, *args).backward()

    return step


def _other_candidates(kind: str, shape: Shape, dist: str, torch: Any) -> dict[Key, Candidate]:
    """The Z-loss or KL distillation on one input, softzo's and the formula under autograd."""
    x, target = _inputs(shape, dist)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    if kind == "z_loss":
        ours = partial(L.z_loss, x, target, return_grad=True, num_threads=1)
        tt = torch.from_numpy(target)
        theirs = _autograd_step(partial(_torch_z_loss, torch), xt, tt)
        ref = _torch_z_loss(torch, torch.from_numpy(x), tt)
    else:
        rng = np.random.default_rng(1)
        teacher = draw(dist, shape, rng, mask=np.isneginf(x))  # the student's masked classes
        ours = partial(
            L.kl_div, x, teacher, temperature=TEMPERATURE, return_grad=True, num_threads=1
        )
        tt = torch.from_numpy(teacher)
        theirs = _autograd_step(partial(_torch_kl, torch), xt, tt)
        # torch gives NaN where both are -inf (0 * (-inf + inf)); -1e30 there gives the limit, 0.
        finite = [torch.from_numpy(np.where(np.isneginf(a), -1e30, a)) for a in (x, teacher)]
        ref = _torch_kl(torch, *finite)
    np.testing.assert_allclose(float(ours()[0]), float(ref), rtol=1e-4)
    return {(kind, "alloc", dist): Candidate(ours), (kind, "torch", dist): Candidate(theirs)}


# ---- memory ----------------------------------------------------------------------------------


def _probe(mode: str, shape: Shape) -> dict[str, Any]:
    """Runs in a fresh process: peak extra memory of one cross-entropy mode on ``shape``."""
    torch = None
    if mode not in ("grad_out", "inplace", "alloc"):
        import torch

        torch.set_num_threads(1)
    tiny = _ce_mode(mode, *_inputs(TINY), torch)
    tiny.sample(2)  # lazy initialisation (autograd engine, dispatch) stays out of the peak
    cand = _ce_mode(mode, *_inputs(shape), torch)
    if cand.prepare is not None:
        cand.prepare()
    reset = reset_peak_memory()
    # Where VmHWM cannot be reset, the peak so far is the baseline.
    base = status_kib("VmRSS" if reset else "VmHWM")
    tracemalloc.start()
    cand.fn()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    extra = max(0, status_kib("VmHWM") - base) * 1024
    return {"extra": extra, "traced": traced, "reset": reset}


def _memory(
    shapes: Sequence[Shape], modes: Sequence[str] = tuple(CE_MODES)
) -> dict[tuple[Shape, str], dict[str, Any]]:
    """Each mode's peak in its own fresh interpreter (allocator state would leak across runs),
    ``python -m bench.losses --probe`` run from the repository's root."""
    res = {}
    for shape in shapes:
        if shape not in MEMORY_SHAPES:
            continue
        for mode in modes:
            cmd = [sys.executable, "-m", "bench.losses", "--probe", mode, label(shape)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO).stdout
            res[shape, mode] = json.loads(out.strip().splitlines()[-1])
    return res


# ---- running and reporting -------------------------------------------------------------------


def _keep_freed_memory() -> bool:
    """Has glibc keep freed blocks below 32 MiB for reuse (fixed mmap and trim thresholds).

    Otherwise whether a candidate's fresh N x V buffers page-fault depends on which candidates
    ran before it (glibc's adaptive thresholds); pinned, every allocating candidate (torch
    included) reuses warm memory, as a steady training loop's allocator does.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 32 << 20)) and bool(libc.mallopt(-1, 1 << 30))
    except (OSError, AttributeError):
        return False


PINNED_NOTE = {
    True: "glibc malloc was set to keep freed memory (fixed mmap and trim thresholds), so "
    "allocating candidates, torch included, reuse warm buffers instead of page-faulting "
    "depending on which candidate ran before.",
    False: "The allocator's thresholds could not be pinned (not glibc): allocating candidates "
    "may page-fault depending on which candidate ran before.",
}


def run(
    shapes: Sequence[Shape] = CE_SHAPES,
    dists: Sequence[str] = tuple(DISTRIBUTIONS),
    reps: int | None = None,
    budget: float = BUDGET_S,
    memory: bool = True,
    progress: bool = True,
) -> tuple[dict[Shape, Times], dict[tuple[Shape, str], dict[str, Any]]]:
    """Times every candidate per shape, interleaved over that shape's inputs, and (``memory``)
    measures the cross-entropy modes' peak memory in subprocesses."""
    import torch

    threads, default_threads = torch.get_num_threads(), _core.num_threads()
    torch.set_num_threads(1)
    _core.set_num_threads(1)  # the modules run with the library's default
    times: dict[Shape, Times] = {}
    try:
        for shape in shapes:
            if progress:
                print(f"  {label(shape)}", file=sys.stderr, flush=True)
            sweep = dists if shape in SWEEP_SHAPES else [BASELINE]
            cands: dict[Key, Candidate] = {}
            for dist in sweep:
                cands |= _ce_candidates(shape, dist, torch)
                if shape == OTHER_SHAPE:
                    cands |= _other_candidates("kl_div", shape, dist, torch)
                    if dist != "masked":  # a -inf output leaves the Z-loss undefined (NaN)
                        cands |= _other_candidates("z_loss", shape, dist, torch)
            x, _ = _inputs(shape)
            cands |= _roofline(x, touched(shape))
            times[shape] = measure(cands, reps, budget)
            del cands  # frees this shape's buffers before the next are allocated
    finally:
        torch.set_num_threads(threads)
        _core.set_num_threads(default_threads)
    mem = {}
    if memory:
        if progress:
            print("  memory (a subprocess per mode)", file=sys.stderr, flush=True)
        mem = _memory(shapes)
    return times, mem


def _roofline_time(kind: str, t: Times) -> float:
    reads, rws = PASSES[kind]
    return reads * t["roofline", "read", ""] + rws * t["roofline", "scale", ""]


def _title(kind: str, mode: str) -> str:
    if kind == "cross_entropy":
        return CE_MODES[mode]
    return "torch autograd of the formula" if mode == "torch" else "softzo return_grad"


def _torch_best(t: Times, kind: str, dist: str) -> tuple[float, str]:
    """torch's faster call on this input: (seconds, mode)."""
    return min((t[kind, m, dist], m) for m in TORCH_MODES if (kind, m, dist) in t)


def _cases(times: dict[Shape, Times]) -> list[tuple[Shape, str, str]]:
    """(shape, kind, dist) of every case measured, in report order."""
    seen = []
    for shape, t in times.items():
        for kind in PASSES:
            for dist in DISTRIBUTIONS:
                if any(k[0] == kind and k[2] == dist for k in t):
                    seen.append((shape, kind, dist))
    return seen


def _summary_table(times: dict[Shape, Times]) -> str:
    """Cross-entropy per shape and input: softzo's fastest modes against torch's faster call."""
    header = ["shape", "input", "softzo grad_out=", "vs N(0,1)", "in place", "torch (faster call)"]
    header += ["x torch (grad_out= / in place)", "% roofline (grad_out=)"]
    rows = []
    for shape, kind, dist in _cases(times):
        if kind != "cross_entropy":
            continue
        t = times[shape]
        g, ip = t["cross_entropy", "grad_out", dist], t["cross_entropy", "inplace", dist]
        best, mode = _torch_best(t, kind, dist)
        rows.append(
            [label(shape), DISTRIBUTIONS[dist], fmt_time(g)]
            + [ratio(g, t.get(("cross_entropy", "grad_out", BASELINE))), fmt_time(ip)]
            + [f"{fmt_time(best)} ({CE_MODES[mode].split(' +')[0]})"]
            + [f"{ratio(best, g)} / {ratio(best, ip)}", f"{_roofline_time(kind, t) / g:.0%}"]
        )
    return table(header, rows)


def _time_table(times: dict[Shape, Times]) -> str:
    header = ["loss", "shape", "input", "candidate", "time", "G elem/s", "vs N(0,1)"]
    header += ["x torch (faster call)", "% roofline"]
    rows = []
    for shape, kind, dist in _cases(times):
        t = times[shape]
        n = math.prod(shape)
        roof = _roofline_time(kind, t)
        best, _ = _torch_best(t, kind, dist)
        for (k, mode, d), sec in t.items():
            if k != kind or d != dist:
                continue
            x_torch = ratio(best, sec)
            reference = REFERENCE.get(mode)
            if reference is not None and (kind, reference, dist) in t:
                x_torch += f" ({ratio(t[kind, reference, dist], sec)} of {CE_MODES[reference]})"
            rows.append(
                [kind, label(shape), DISTRIBUTIONS[dist], _title(kind, mode), fmt_time(sec)]
                + [f"{n / sec / 1e9:.2f}", ratio(sec, t.get((kind, mode, BASELINE)))]
                + [x_torch, f"{roof / sec:.0%}"]
            )
        if dist == BASELINE:
            rows.append(
                [kind, label(shape), "", "roofline (streaming loops)", fmt_time(roof)]
                + [f"{n / roof / 1e9:.2f}", "", ratio(best, roof), "100%"]
            )
    return table(header, rows)


def _memory_table(mem: dict[tuple[Shape, str], dict[str, Any]]) -> str:
    header = ["shape", "mode", "peak extra (VmHWM)", "tracemalloc peak", "N x V buffers"]
    rows = []
    for (shape, mode), m in mem.items():
        nv = 4 * math.prod(shape)
        rows.append(
            [label(shape), CE_MODES[mode], f"{m['extra'] / 2**20:.2f} MiB"]
            + [f"{m['traced'] / 2**20:.2f} MiB", f"{m['extra'] / nv:.2f}"]
        )
    return table(header, rows)


def _check_inplace(mem: dict[tuple[Shape, str], dict[str, Any]]) -> list[str]:
    """The in-place modes' promise: no N x V allocation (less than half of one counts as none)."""
    bad = []
    for (shape, mode), m in mem.items():
        if mode in ("inplace", "adapter_inplace") and m["extra"] >= 2 * math.prod(shape):
            bad.append(f"{CE_MODES[mode]} at {label(shape)}: {m['extra'] / 2**20:.2f} MiB")
    return bad


def report(times: dict[Shape, Times], mem: dict[tuple[Shape, str], dict[str, Any]]) -> str:
    """The Markdown tables: cross-entropy's summary, every candidate, peak memory."""
    parts = [
        "### Cross-entropy forward + gradient on every input, 1 thread, float32",
        _summary_table(times),
        "### Loss and gradient, every candidate",
        _time_table(times),
    ]
    if mem:
        parts += ["### Peak extra memory of one cross-entropy call with its gradient"]
        parts.append(_memory_table(mem))
        if not all(m["reset"] for m in mem.values()):
            parts.append(
                "(VmHWM could not be reset here: peaks are increases over the peak before.)"
            )
    return "\n\n".join(parts) + "\n"


def _plot(
    times: dict[Shape, Times], mem: dict[tuple[Shape, str], dict[str, Any]], path: Path
) -> None:
    """Bars: speed-up over torch's faster call per case and candidate on N(0,1); peak extra
    memory per mode."""
    plt = pyplot()
    if plt is None:
        return
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    keys = [k for k in CE_MODES if k not in TORCH_MODES]
    colors = dict(zip(keys, plt.get_cmap("tab10").colors))
    width = 0.8 / len(keys)
    labels = []
    for i, (shape, kind, _) in enumerate(c for c in _cases(times) if c[2] == BASELINE):
        t = times[shape]
        labels.append(f"{kind}\n{label(shape)}")
        best, _ = _torch_best(t, kind, BASELINE)
        present = [k for k in keys if (kind, k, BASELINE) in t]
        for j, k in enumerate(present):
            x = i + (j - (len(present) - 1) / 2) * width
            name = CE_MODES[k] if kind == "cross_entropy" else _title(kind, k)
            ax.bar(
                x,
                best / t[kind, k, BASELINE],
                width,
                color=colors[k],
                label=name if i == 0 else None,
            )
        roof = best / _roofline_time(kind, t)
        ax.hlines(roof, i - 0.45, i + 0.45, colors="black", linestyles="dotted")
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("speed-up over PyTorch's faster call (x)")
    ax.set_title("loss + gradient, N(0,1), 1 thread (dotted: roofline)")
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    shapes = sorted({s for s, _ in mem})
    mwidth = 0.8 / len(CE_MODES)
    mcolors = colors | {"torch": "gray", "torch_module": "silver"}
    for i, shape in enumerate(shapes):
        for j, mode in enumerate(CE_MODES):
            x = i + (j - (len(CE_MODES) - 1) / 2) * mwidth
            bars = bx.bar(x, mem[shape, mode]["extra"] / 2**20, mwidth, color=mcolors[mode])
            bx.bar_label(bars, fmt="%.1f", fontsize=7)
    bx.set_xticks(range(len(shapes)), [f"cross_entropy\n{label(s)}" for s in shapes], fontsize=8)
    bx.set_ylabel("peak extra memory (MiB)")
    bx.set_title("peak extra memory (gray: torch)")
    bx.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.losses", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="(1, 16) and (64, 32000), short timing, no memory; files only with --out",
    )
    parser.add_argument(
        "--dists", nargs="+", choices=list(DISTRIBUTIONS), default=list(DISTRIBUTIONS)
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: by time)")
    parser.add_argument("--probe", nargs=2, metavar=("MODE", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        mode, shape = args.probe
        rows, cols = map(int, shape.split("x"))
        print(json.dumps(_probe(mode, (rows, cols))))
        return
    out = args.out if args.out or args.quick else RESULTS
    dists = [BASELINE] + [d for d in args.dists if d != BASELINE]
    t0, load0 = time.perf_counter(), load()
    warn_if_loaded(load0)
    pinned = _keep_freed_memory()
    shapes = QUICK_CE_SHAPES if args.quick else CE_SHAPES
    budget = QUICK_BUDGET_S if args.quick else BUDGET_S
    times, mem = run(shapes, dists, args.reps, budget, memory=not args.quick)
    tables = report(times, mem)
    print(tables)
    bad = _check_inplace(mem)
    if bad:
        print("error: an in-place mode allocated an N x V buffer: " + "; ".join(bad))
    if out is not None:
        heading = (
            "# softzo losses benchmark\n\n"
            f"{provenance('bench.losses', argv, t0, load0)}\n\n"
            "float32, 1 thread (torch.set_num_threads(1)), on the ISA in use above. Inputs: "
            + ", ".join(DISTRIBUTIONS[d] for d in dists)
            + " (targets never a masked or padded class). Times are the minimum over "
            "interleaved repetitions, every input of a shape in one run; each call is timed "
            "alone, so the in-place modes' fresh copy of the logits is not counted (it leaves "
            "them in cache where they fit, as the layer that just produced them would). "
            f"{PINNED_NOTE[pinned]} 'x torch' is the time of torch's faster call on the same "
            "input (F.cross_entropy or nn.CrossEntropyLoss, + backward) over the candidate's. "
            "'vs N(0,1)': the time over the same candidate's on N(0,1) logits. % roofline: the "
            "fused scheme's nominal traffic (cross-entropy: logits read twice, gradient written "
            "once; Z-loss: read three times; KL: student and teacher read twice each, gradient "
            "written once) timed with streaming loops on the same buffers, over the measured "
            "time; a row fits in L2 and the inputs in L3 on many CPUs, so over 100% is possible. "
            f"KL uses temperature {TEMPERATURE}. Memory: peak RSS (VmHWM) growth over one call "
            "in a fresh process after a warm-up on a tiny input, and tracemalloc's peak (NumPy "
            "and Python allocations; torch's do not show there); 'N x V buffers' = peak extra / "
            "(4 N V bytes).\n\n"
        )
        write(out, "losses.md", heading + tables)
        _plot(times, mem, out / "losses.png")
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
