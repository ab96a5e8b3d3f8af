"""Benchmarks of softzo's fused losses (loss and gradient) against PyTorch autograd, 1 thread.

``python -m softzo.bench_losses [--quick] [--out DIR] [--reps N]``

float32, one thread for softzo and for torch (``torch.set_num_threads(1)``). Each case (a loss
on one shape) times every candidate in one process, interleaved: every buffer is allocated and
first-touched once, every candidate is warmed up and given a batch length (calls per sample, a
sample lasting about 2 ms), then each repetition times every candidate once, in a rotating
order. A candidate's time is the MINIMUM over repetitions of its sample's mean. Each call is
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

The roofline is what the streaming loops of ``softzo._core`` reach on the same buffers in the same
run (``_stream_read``: one read pass; ``_stream_scale``: one read and one write pass), times the
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

from . import _core, _testing
from . import losses as L
from .bench import (
    MAX_REPS,
    MIN_REPS,
    SAMPLE_S,
    _fmt_time,
    _label,
    _load,
    _provenance,
    _table,
    _touched,
)

Shape = tuple[int, int]
CE_SHAPES: tuple[Shape, ...] = ((1, 16), (64, 1000), (64, 32000), (8, 128256))
QUICK_CE_SHAPES: tuple[Shape, ...] = ((1, 16), (64, 32000))
MEMORY_SHAPES = frozenset({(64, 32000), (8, 128256)})  # peak memory measured at these
OTHER_SHAPE: Shape = (64, 32000)
TEMPERATURE = 2.0  # KL distillation
BUDGET_S = 1.0  # target timing per candidate and case (full run)
QUICK_BUDGET_S = 0.05
TINY: Shape = (4, 64)  # warm-up shape of the memory probes

# candidate key -> title; "torch" is the reference each case's ratios are taken against (the
# softzo module's: torch's module, REFERENCE)
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
# (read passes, read+write passes) of the fused scheme per case kind
PASSES = {"cross_entropy": (1, 1), "z_loss": (2, 1), "kl_div": (3, 1)}


class Candidate:
    """A timed call ``fn`` and an untimed ``prepare`` run before each call (or None)."""

    def __init__(self, fn: Callable[[], object], prepare: Callable[[], object] | None = None):
        self.fn, self.prepare = fn, prepare

    def sample(self, number: int) -> float:
        """Mean seconds per call over ``number`` calls, each timed on its own."""
        total = 0.0
        for _ in range(number):
            if self.prepare is not None:
                self.prepare()
            t0 = time.perf_counter()
            self.fn()
            total += time.perf_counter() - t0
        return total / number


def _measure(cands: dict[str, Candidate], reps: int | None, budget: float) -> dict[str, float]:
    """Interleaved timing: warm-up and batch sizing, then rotating repetitions, min per key."""
    number, estimate = {}, {}
    for k, c in cands.items():
        c.sample(1)  # warm-up
        t = c.sample(1)
        if t < SAMPLE_S:
            t = c.sample(math.ceil(SAMPLE_S / t))
        number[k], estimate[k] = max(1, round(SAMPLE_S / t)), t
    if reps is None:
        per_rep = sum(number[k] * estimate[k] for k in cands)
        reps = min(MAX_REPS, max(MIN_REPS, int(budget * len(cands) / per_rep)))
    keys = list(cands)
    best = dict.fromkeys(keys, math.inf)
    for r in range(reps):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            best[k] = min(best[k], cands[k].sample(number[k]))
    return best


# ---- inputs and candidates -------------------------------------------------------------------


def _inputs(shape: Shape, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Touched float32 logits (standard normal times 4) and int64 class indices."""
    rng = np.random.default_rng(seed)
    x = _touched(shape)
    x[...] = rng.standard_normal(shape, dtype=np.float32) * np.float32(4)
    return x, rng.integers(0, shape[1], shape[0])


def _roofline(x: np.ndarray, out: np.ndarray) -> dict[str, Candidate]:
    return {
        "roofline_read": Candidate(partial(_testing.stream_read, x, 1)),
        "roofline_scale": Candidate(partial(_testing.stream_scale, x, out, 1)),
    }


def _ce_mode(mode: str, x: np.ndarray, target: np.ndarray, torch: Any) -> Candidate:
    """One cross-entropy mode on x (never modified: in-place modes work on a fresh copy)."""
    if mode == "grad_out":
        g = _touched(x.shape)
        return Candidate(partial(L.cross_entropy, x, target, grad_out=g, num_threads=1))
    if mode == "inplace":
        xi = _touched(x.shape)
        return Candidate(
            partial(L.cross_entropy, xi, target, grad_out=xi, num_threads=1),
            partial(np.copyto, xi, x),
        )
    if mode == "alloc":
        return Candidate(partial(L.cross_entropy, x, target, return_grad=True, num_threads=1))
    if mode == "alloc_torch":
        xt, tt = torch.from_numpy(x), torch.from_numpy(target)
        return Candidate(partial(L.cross_entropy, xt, tt, return_grad=True, num_threads=1))
    from . import torch as st

    F = torch.nn.functional
    xt = torch.from_numpy(_touched(x.shape)).requires_grad_(True)
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


def _ce_candidates(shape: Shape, torch: Any) -> dict[str, Candidate]:
    x, target = _inputs(shape)
    ref = torch.nn.functional.cross_entropy(torch.from_numpy(x), torch.from_numpy(target))
    ours = L.cross_entropy(x, target, num_threads=1)
    np.testing.assert_allclose(float(ours), float(ref), rtol=1e-5)
    cands = {mode: _ce_mode(mode, x, target, torch) for mode in CE_MODES}
    return cands | _roofline(x, _touched(shape))


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


def _other_candidates(kind: str, shape: Shape, torch: Any) -> dict[str, Candidate]:
    x, target = _inputs(shape)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    if kind == "z_loss":
        ours = partial(L.z_loss, x, target, return_grad=True, num_threads=1)
        tt = torch.from_numpy(target)
        theirs = _autograd_step(partial(_torch_z_loss, torch), xt, tt)
        ref = _torch_z_loss(torch, torch.from_numpy(x), tt)
    else:
        teacher, _ = _inputs(shape, seed=1)
        ours = partial(
            L.kl_div, x, teacher, temperature=TEMPERATURE, return_grad=True, num_threads=1
        )
        tt = torch.from_numpy(teacher)
        theirs = _autograd_step(partial(_torch_kl, torch), xt, tt)
        ref = _torch_kl(torch, torch.from_numpy(x), tt)
    np.testing.assert_allclose(float(ours()[0]), float(ref), rtol=1e-4)
    cands = {"alloc": Candidate(ours), "torch": Candidate(theirs)}
    return cands | _roofline(x, _touched(shape))


# ---- memory ----------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


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
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # resets VmHWM to the current RSS
        base, reset = _status_kb("VmRSS"), True
    except OSError:  # VmHWM cannot be reset: the peak so far is the baseline
        base, reset = _status_kb("VmHWM"), False
    tracemalloc.start()
    cand.fn()
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    extra = max(0, _status_kb("VmHWM") - base) * 1024
    return {"extra": extra, "traced": traced, "reset": reset}


def _memory(shapes: Sequence[Shape]) -> dict[tuple[Shape, str], dict[str, Any]]:
    """Each mode's peak in its own fresh interpreter (allocator state would leak across runs)."""
    res = {}
    for shape in shapes:
        if shape not in MEMORY_SHAPES:
            continue
        for mode in CE_MODES:
            cmd = [sys.executable, "-m", "softzo.bench_losses", "--probe", mode, _label(shape)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
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
    quick: bool = False, reps: int | None = None, progress: bool = True
) -> tuple[dict[tuple[str, Shape], dict[str, float]], dict[tuple[Shape, str], dict[str, Any]]]:
    import torch

    budget = QUICK_BUDGET_S if quick else BUDGET_S
    ce_shapes = QUICK_CE_SHAPES if quick else CE_SHAPES
    cases: list[tuple[str, Shape]] = [("cross_entropy", s) for s in ce_shapes]
    cases += [("z_loss", OTHER_SHAPE), ("kl_div", OTHER_SHAPE)]
    threads, default_threads = torch.get_num_threads(), _core.num_threads()
    torch.set_num_threads(1)
    _core.set_num_threads(1)  # the modules run with the library's default
    times = {}
    try:
        for kind, shape in cases:
            if progress:
                print(f"  {kind} {_label(shape)}", file=sys.stderr, flush=True)
            if kind == "cross_entropy":
                cands = _ce_candidates(shape, torch)
            else:
                cands = _other_candidates(kind, shape, torch)
            times[kind, shape] = _measure(cands, reps, budget)
            del cands  # frees this case's buffers before the next are allocated
    finally:
        torch.set_num_threads(threads)
        _core.set_num_threads(default_threads)
    if progress:
        print("  memory (a subprocess per mode)", file=sys.stderr, flush=True)
    return times, _memory(ce_shapes)


def _roofline_time(kind: str, t: dict[str, float]) -> float:
    reads, rws = PASSES[kind]
    return reads * t["roofline_read"] + rws * t["roofline_scale"]


def _title(kind: str, key: str) -> str:
    if kind == "cross_entropy":
        return CE_MODES[key]
    if key == "torch":
        return "torch autograd of the formula"
    return "softzo return_grad"


def _time_table(times: dict[tuple[str, Shape], dict[str, float]]) -> str:
    header = ["loss", "shape", "candidate", "time", "G elem/s", "x torch", "% roofline"]
    rows = []
    for (kind, shape), t in times.items():
        n = math.prod(shape)
        roof = _roofline_time(kind, t)
        for key, sec in t.items():
            if key.startswith("roofline"):
                continue
            reference = REFERENCE.get(key, "torch")
            ratio = "1" if key in ("torch", "torch_module") else f"{t[reference] / sec:.2f}x"
            if reference != "torch":
                ratio += f" (of {_title(kind, reference).split(' +')[0]})"
            rows.append(
                [kind, _label(shape), _title(kind, key), _fmt_time(sec), f"{n / sec / 1e9:.2f}"]
                + [ratio, f"{roof / sec:.0%}"]
            )
        rows.append(
            [kind, _label(shape), "roofline (streaming loops)", _fmt_time(roof)]
            + [f"{n / roof / 1e9:.2f}", f"{t['torch'] / roof:.2f}x", "100%"]
        )
    return _table(header, rows)


def _memory_table(mem: dict[tuple[Shape, str], dict[str, Any]]) -> str:
    header = ["shape", "mode", "peak extra (VmHWM)", "tracemalloc peak", "N x V buffers"]
    rows = []
    for (shape, mode), m in mem.items():
        nv = 4 * math.prod(shape)
        rows.append(
            [_label(shape), CE_MODES[mode], f"{m['extra'] / 2**20:.2f} MiB"]
            + [f"{m['traced'] / 2**20:.2f} MiB", f"{m['extra'] / nv:.2f}"]
        )
    return _table(header, rows)


def _check_inplace(mem: dict[tuple[Shape, str], dict[str, Any]]) -> list[str]:
    """The in-place modes' promise: no N x V allocation (less than half of one counts as none)."""
    bad = []
    for (shape, mode), m in mem.items():
        if mode in ("inplace", "adapter_inplace") and m["extra"] >= 2 * math.prod(shape):
            bad.append(f"{CE_MODES[mode]} at {_label(shape)}: {m['extra'] / 2**20:.2f} MiB")
    return bad


def report(times, mem) -> str:
    parts = [
        "### Loss and gradient, 1 thread, float32",
        _time_table(times),
        "### Peak extra memory of one cross-entropy call with its gradient",
        _memory_table(mem),
    ]
    if not all(m["reset"] for m in mem.values()):
        parts.append("(VmHWM could not be reset here: peaks are increases over the peak before.)")
    return "\n\n".join(parts) + "\n"


def _plot(times, mem, path: Path) -> None:
    """Bars: speed-up over torch per case and candidate; peak extra memory per mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot written", file=sys.stderr)
        return
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    keys = [k for k in CE_MODES if k != "torch"]
    colors = dict(zip(keys, plt.get_cmap("tab10").colors))
    width = 0.8 / len(keys)
    labels = []
    for i, ((kind, shape), t) in enumerate(times.items()):
        labels.append(f"{kind}\n{_label(shape)}")
        present = [k for k in keys if k in t]
        for j, k in enumerate(present):
            x = i + (j - (len(present) - 1) / 2) * width
            label = CE_MODES[k] if i == 0 else None
            ax.bar(x, t["torch"] / t[k], width, color=colors[k], label=label)
        roof = t["torch"] / _roofline_time(kind, t)
        ax.hlines(roof, i - 0.45, i + 0.45, colors="black", linestyles="dotted")
    ax.axhline(1.0, color="gray", linewidth=0.8)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("speed-up over PyTorch autograd (x)")
    ax.set_title("loss + gradient, 1 thread (dotted: roofline)")
    ax.legend(fontsize=7)
    ax.grid(True, axis="y", alpha=0.3)
    shapes = sorted({s for s, _ in mem})
    mwidth = 0.8 / len(CE_MODES)
    mcolors = colors | {"torch": "gray"}
    for i, shape in enumerate(shapes):
        for j, mode in enumerate(CE_MODES):
            x = i + (j - (len(CE_MODES) - 1) / 2) * mwidth
            bars = bx.bar(x, mem[shape, mode]["extra"] / 2**20, mwidth, color=mcolors[mode])
            bx.bar_label(bars, fmt="%.1f", fontsize=7)
    bx.set_xticks(range(len(shapes)), [f"cross_entropy\n{_label(s)}" for s in shapes], fontsize=8)
    bx.set_ylabel("peak extra memory (MiB)")
    bx.set_title("peak extra memory (gray: torch)")
    bx.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m softzo.bench_losses", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--quick", action="store_true", help="64x32000 only, short timing; files only with --out"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default: by time)")
    parser.add_argument("--probe", nargs=2, metavar=("MODE", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        mode, shape = args.probe
        rows, cols = map(int, shape.split("x"))
        print(json.dumps(_probe(mode, (rows, cols))))
        return
    out = args.out if args.out or args.quick else Path("bench/results")
    t0, load0 = time.perf_counter(), _load()
    if load0 > 0.5:
        print(
            f"warning: load average {load0:.1f}: other processes will skew the times",
            file=sys.stderr,
        )
    pinned = _keep_freed_memory()
    times, mem = run(args.quick, args.reps)
    tables = report(times, mem)
    print(tables)
    bad = _check_inplace(mem)
    if bad:
        print("error: an in-place mode allocated an N x V buffer: " + "; ".join(bad))
    if out is None:
        if bad:
            sys.exit(1)
        return
    heading = (
        "# softzo losses benchmark\n\n"
        f"{_provenance('softzo.bench_losses', argv, t0, load0)}\n\n"
        "float32, 1 thread (torch.set_num_threads(1)). Times are the minimum over interleaved "
        "repetitions; each call is timed alone, so the in-place modes' fresh copy of the logits "
        f"is not counted. {PINNED_NOTE[pinned]} 'x torch' is torch's time over the "
        "candidate's. % roofline: the fused scheme's nominal traffic (cross-entropy: logits read twice, gradient written once; "
        "Z-loss: read three times; KL: student and teacher read twice each, gradient written "
        "once) timed with streaming loops on the same buffers, over the measured time; a row "
        f"fits in L2 and the inputs in L3 on many CPUs, so over 100% is possible. KL uses "
        f"temperature {TEMPERATURE}. Memory: peak RSS (VmHWM) growth over one call in a fresh "
        "process after a warm-up on a tiny input, and tracemalloc's peak (NumPy and Python "
        "allocations; torch's do not show there); 'N x V buffers' = peak extra / (4 N V bytes).\n\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "losses.md").write_text(heading + tables, encoding="utf-8")
    _plot(times, mem, out / "losses.png")
    print(f"wrote {out / 'losses.md'} and losses.png", file=sys.stderr)
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
