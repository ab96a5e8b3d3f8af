"""softzo's fused linear cross-entropy and its bfloat16 kernels against PyTorch.

``python -m bench.linear_ce [--quick] [--out DIR] [--reps N] [--part all|linear|bf16]``, from
the repository root.

1. Linear + cross-entropy, float32, 2 threads each (``num_threads=2``,
   ``torch.set_num_threads(2)``), N = 4096 (and 8192 where PyTorch's peak fits in this
   machine's memory), d = 2048, V = 128256, the same data for both:
   ``softzo.losses.linear_cross_entropy(h, W, t, return_grad=True)`` (loss, d/dh, d/dW) against
   PyTorch's ``F.cross_entropy(F.linear(h, W), t)`` and ``backward()`` on h and W that require
   grad. Every mode runs in a fresh subprocess, the modes alternating over the repetitions:
   after the inputs exist and the mode has run once on a tiny problem (libraries and threads
   loaded), the peak resident set is reset (``/proc/self/clear_refs``), the mode runs once, and
   its wall time and the resident-set high-water mark (VmHWM) minus the resident set before the
   call (its peak extra memory, outputs included: both return d/dh and d/dW) are reported, and
   that minus the returned gradients' N x d + V x d floats. A
   mode's time is the minimum over the repetitions, its memory the maximum.
   The GEMM floors, in the same way: softzo's four GEMMs (its logits are computed twice) as
   four OpenBLAS sgemm calls of scipy-openblas32 (the library softzo links) on 2 threads, and
   PyTorch's three (logits, d/dh, d/dW) as ``torch.matmul``.
2. bfloat16 softmax and cross-entropy (loss and gradient) on torch bfloat16 tensors at
   (64, 32000) and (8, 128256), and float16 softmax, 1 thread each, against ``torch.softmax``
   and ``F.cross_entropy`` + ``backward()`` in the same type, each side also into
   preallocated outputs where it can (``_half_cases``): in one process, interleaved by
   ``_common.measure`` (each time the minimum over repetitions of a batch's mean).

Writes a Markdown table (the CPU, the date and the command above it) to ``--out``
(a directory; default ``bench/results/``) as ``linear_ce.md`` (``linear_ce_<part>.md`` for one part).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from ._common import (
    RESULTS,
    Candidate,
    load,
    measure,
    provenance,
    reset_peak_memory,
    status_kib,
    warn_if_loaded,
    write,
)

THREADS = 2
# The bfloat16 kernels take a millisecond: on 1 thread each, since a 2-thread pool on a shared
# 2-core machine times the other jobs' scheduling more than the kernels.
BF16_THREADS = 1
FULL = {"sizes": [(4096, 2048, 128256), (8192, 2048, 128256)], "reps": 1}
QUICK = {"sizes": [(512, 256, 8192)], "reps": 1}
BF16_SHAPES = [(64, 32000), (8, 128256)]
MODES = {
    "softzo": "softzo `linear_cross_entropy` (fwd + bwd)",
    "torch": "PyTorch `F.linear` + `F.cross_entropy` (fwd + bwd)",
    "softzo_gemm": "GEMM floor: 4 OpenBLAS sgemm (softzo's library)",
    "torch_gemm": "GEMM floor: 3 `torch.matmul`",
}
TINY = (8, 16, 64)
PARTS = ("all", "linear", "bf16")


def _openblas():
    import scipy_openblas32

    path = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(True))
    lib = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    lib.scipy_openblas_set_num_threads.argtypes = [ctypes.c_int]
    lib.scipy_cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [ctypes.c_float, ctypes.c_void_p,
                                                           ctypes.c_int, ctypes.c_void_p,
                                                           ctypes.c_int, ctypes.c_float,
                                                           ctypes.c_void_p, ctypes.c_int]  # fmt: skip
    return lib


def _sgemm(lib, ta: bool, tb: bool, a, b, c) -> None:
    """c = op(a) op(b), row-major float32 NumPy arrays."""
    m, k = (a.shape[1], a.shape[0]) if ta else a.shape
    n = b.shape[0] if tb else b.shape[1]
    lib.scipy_cblas_sgemm(101, 112 if ta else 111, 112 if tb else 111, m, n, k, 1.0,
                          a.ctypes.data, a.shape[1], b.ctypes.data, b.shape[1], 0.0,
                          c.ctypes.data, n)  # fmt: skip


def _mode_runner(mode: str, n: int, d: int, v: int):
    """A function running the mode once on (n, d, v) data, made once its inputs exist."""
    import numpy as np
    import torch

    torch.set_num_threads(THREADS)
    rng = np.random.default_rng(0)
    h = rng.standard_normal((n, d), dtype=np.float32)
    w = rng.standard_normal((v, d), dtype=np.float32) / np.float32(np.sqrt(d))
    t = rng.integers(0, v, n)
    th, tw, tt = torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(t)
    if mode == "softzo":
        from softzo import losses

        return lambda: losses.linear_cross_entropy(th, tw, tt, return_grad=True, num_threads=2)
    if mode == "torch":
        F = torch.nn.functional

        def run():
            hh, ww = th.detach().requires_grad_(True), tw.detach().requires_grad_(True)
            F.cross_entropy(F.linear(hh, ww), tt).backward()
            return hh.grad, ww.grad

        return run
    if mode == "torch_gemm":

        def run():
            z = th @ tw.T
            return z @ tw, z.T @ th, th @ tw.T

        return run
    lib = _openblas()
    lib.scipy_openblas_set_num_threads(THREADS)

    def run():
        z = np.empty((n, v), np.float32)
        gh, gw = np.empty((n, d), np.float32), np.empty((v, d), np.float32)
        _sgemm(lib, False, True, h, w, z)  # logits (first sweep)
        _sgemm(lib, False, True, h, w, z)  # logits again (second sweep)
        _sgemm(lib, False, False, z, w, gh)  # d/dh = dz W
        _sgemm(lib, True, False, z, h, gw)  # d/dW = dz^T h
        return gh, gw

    return run


def measure_mode(mode: str, n: int, d: int, v: int) -> dict:
    """Runs in a fresh subprocess: (seconds, peak extra MiB) of one run of the mode."""
    _mode_runner(mode, *TINY)()  # libraries, threads and allocator warm
    run = _mode_runner(mode, n, d, v)
    if not reset_peak_memory():
        raise RuntimeError("cannot reset VmHWM (/proc/self/clear_refs): no peak memory figure")
    before = status_kib("VmRSS")
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    peak = status_kib("VmHWM")
    del result
    return {"seconds": seconds, "peak_mib": (peak - before) / 1024}


def fits_in_memory(n: int, d: int, v: int) -> bool:
    """PyTorch's peak at N x V (the logits, the log-probabilities and their gradient: 3 x N x V
    float32, as measured at the quick size) plus the weights and their gradient, against 85% of
    what the machine has available."""
    need = (3 * n * v + 2 * v * d) * 4
    with open("/proc/meminfo") as f:
        avail = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable")) * 1024
    return need < 0.85 * avail


def run_linear(sizes, reps) -> list[str]:
    lines = [
        "| N x d x V | mode | time | peak extra memory |",
        "|---|---|---|---|",
    ]
    for n, d, v in sizes:
        if not fits_in_memory(n, d, v):
            lines.append(f"| {n} x {d} x {v} | skipped: PyTorch's logits need more memory "
                         "than this machine has | | |")  # fmt: skip
            continue
        results = {m: [] for m in MODES}
        for _ in range(reps):
            for mode in MODES:
                args = [sys.executable, "-m", "bench.linear_ce", "--measure", mode]
                args += [str(n), str(d), str(v)]
                out = subprocess.run(args, capture_output=True, text=True, check=True)
                results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        best = {m: min(r["seconds"] for r in rs) for m, rs in results.items()}
        peak = {m: max(r["peak_mib"] for r in rs) for m, rs in results.items()}
        for mode, title in MODES.items():
            lines.append(f"| {n} x {d} x {v} | {title} | {best[mode]:.3g} s | "
                         f"{peak[mode]:.0f} MiB |")  # fmt: skip
        lines.append(
            f"| {n} x {d} x {v} | softzo / PyTorch | {best['softzo'] / best['torch']:.2f}x time "
            f"(GEMM floors: {best['softzo_gemm'] / best['torch_gemm']:.2f}x) | "
            f"{peak['softzo'] / peak['torch']:.3f}x memory |"
        )
        # Both return d/dh and d/dW (N x d + V x d floats): beyond those, what each needed.
        grads = (n * d + v * d) * 4 / 2**20
        ours, theirs = peak["softzo"] - grads, peak["torch"] - grads
        lines.append(
            f"| {n} x {d} x {v} | beyond the returned gradients ({grads:.0f} MiB) | "
            f"softzo {ours:.0f} MiB, PyTorch {theirs:.0f} MiB | {ours / theirs:.4f}x memory |"
        )
    return lines


def _half_cases(x, t) -> dict:
    """Each half-precision case on logits x and targets t: its candidates, softzo's and
    PyTorch's, each with new output arrays and (where the library has one) into preallocated
    ones: softzo's ``out=`` / ``grad_out=``, PyTorch's ``aten._softmax.out`` (the out variant
    behind ``torch.softmax``; ``F.cross_entropy`` has none)."""
    import torch
    from softzo import losses, softmax

    F = torch.nn.functional
    y, g = torch.empty_like(x), torch.empty_like(x)

    def torch_ce():
        xx = x.detach().requires_grad_(True)
        F.cross_entropy(xx, t).backward()

    return {
        "softmax": {
            "softzo": lambda: softmax(x, num_threads=BF16_THREADS),
            "softzo out=": lambda: softmax(x, out=y, num_threads=BF16_THREADS),
            "PyTorch": lambda: torch.softmax(x, -1),
            "PyTorch out=": lambda: torch.ops.aten._softmax.out(x, -1, False, out=y),
        },
        "cross-entropy, loss + gradient": {
            "softzo": lambda: losses.cross_entropy(
                x, t, return_grad=True, num_threads=BF16_THREADS
            ),
            "softzo out=": lambda: losses.cross_entropy(x, t, grad_out=g, num_threads=BF16_THREADS),
            "PyTorch": torch_ce,
        },
    }


def run_bf16(quick: bool) -> list[str]:
    import torch

    torch.set_num_threads(BF16_THREADS)
    lines = [
        "| case | softzo | softzo `out=` | PyTorch | PyTorch `out=` | speed-up | speed-up, `out=` |",
        "|---|---|---|---|---|---|---|",
    ]
    reps = 3 if quick else 15
    dtypes = [torch.bfloat16] if quick else [torch.bfloat16, torch.float16]
    for dtype in dtypes:
        for n, v in BF16_SHAPES[:1] if quick else BF16_SHAPES:
            x = (torch.randn(n, v) * 3).to(dtype)
            t = torch.randint(0, v, (n,))
            for name, cands in _half_cases(x, t).items():
                if dtype != torch.bfloat16 and name != "softmax":
                    continue  # float16: the softmax alone
                best = measure({k: Candidate(f) for k, f in cands.items()}, reps, 0.0)
                cell = {k: f"{best[k] * 1e3:.3f} ms" if k in best else "" for k in
                        ("softzo", "softzo out=", "PyTorch", "PyTorch out=")}  # fmt: skip
                out = best["PyTorch out="] / best["softzo out="] if "PyTorch out=" in best else 0
                lines.append(
                    f"| {name}, {str(dtype).split('.')[1]}, {n} x {v} | {cell['softzo']} | "
                    f"{cell['softzo out=']} | {cell['PyTorch']} | {cell['PyTorch out=']} | "
                    f"{best['PyTorch'] / best['softzo']:.2f}x | "
                    + (f"{out:.2f}x |" if out else "|")
                )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.linear_ce", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"default: {RESULTS}")
    parser.add_argument("--reps", type=int, default=None, help="subprocess runs per mode")
    parser.add_argument(
        "--part", choices=PARTS, default="all", help="one part alone: linear_ce_<part>.md"
    )
    parser.add_argument("--measure", nargs=4, metavar=("MODE", "N", "D", "V"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args(argv)
    if args.measure:
        mode, n, d, v = args.measure
        print(json.dumps(measure_mode(mode, int(n), int(d), int(v))))
        return
    t0, load0 = time.perf_counter(), load()
    warn_if_loaded(load0)
    config = QUICK if args.quick else FULL
    reps = args.reps or config["reps"]
    body = []
    if args.part in ("all", "linear"):
        body += ["## Linear + cross-entropy, float32, forward + backward", ""]
        body += run_linear(config["sizes"], reps) + [""]
    if args.part in ("all", "bf16"):
        body += ["## Half-precision kernels (torch bfloat16 / float16 tensors in and out)", ""]
        body += run_bf16(args.quick)
    heading = (
        "# softzo's fused linear cross-entropy and bfloat16 kernels vs PyTorch\n\n"
        f"{provenance('bench.linear_ce', argv, t0, load0)}\n"
        f"- {THREADS} threads for each side ({BF16_THREADS} for the bfloat16 kernels); "
        "the method: `bench/linear_ce.py`'s docstring\n\n"
    )
    text = heading + "\n".join(body) + "\n"
    write(args.out, "linear_ce.md" if args.part == "all" else f"linear_ce_{args.part}.md", text)
    print(text)


if __name__ == "__main__":
    main()
