"""The few-second benchmark that ``python -m softzo`` prints: softmax and log_softmax against
NumPy, PyTorch (when installed) and the streaming roofline, and the fixed cost of a call by input
framework. The full benchmarks live in the repository's ``bench/`` (``python -m bench.softmax``).

float32, N(0,1) rows, 1 thread. In one process, interleaved: each repetition times every call
once, in a rotating order, and a call's time is the minimum over repetitions of a sample's mean
(a sample lasting about 2 ms). torch and NumPy are timed in both call modes, allocating and
``out=``, and compared in the faster one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from . import _core, _testing, log_softmax, logsumexp, softmax

SHAPES = ((1 << 15,), (1 << 22,), (64, 32000))
CALL_SIZES = (16, 1 << 15)
OPS = ("softmax", "log_softmax")
SAMPLE_S, REPS = 2e-3, 8
# Streaming passes per algorithm (read passes, read+write passes): its roofline time.
PASSES = {
    ("softmax", "two_pass"): (1, 1),
    ("softmax", "three_pass_reload"): (1, 2),
    ("log_softmax", "two_pass"): (1, 1),
    ("log_softmax", "three_pass_reload"): (2, 1),
}


def _time_interleaved(calls: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Seconds per call: min over REPS rotating repetitions of a ~SAMPLE_S batch's mean."""
    number = {}
    for k, fn in calls.items():
        fn()
        t0 = time.perf_counter()
        fn()
        number[k] = max(1, round(SAMPLE_S / max(time.perf_counter() - t0, 1e-9)))
    keys, best = list(calls), dict.fromkeys(calls, math.inf)
    for r in range(REPS):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            t0 = time.perf_counter()
            for _ in range(number[k]):
                calls[k]()
            best[k] = min(best[k], (time.perf_counter() - t0) / number[k])
    return best


def _np_softmax(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """NumPy written the obvious way; with ``out``, in that preallocated buffer."""
    y = np.subtract(x, x.max(-1, keepdims=True), out=out)
    np.exp(y, out=y)
    return np.divide(y, y.sum(-1, keepdims=True), out=y)


def _np_log_softmax(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    y = np.subtract(x, x.max(-1, keepdims=True), out=out)
    return np.subtract(y, np.log(np.exp(y).sum(-1, keepdims=True)), out=y)


def _label(shape: tuple[int, ...]) -> str:
    if len(shape) > 1:
        return "x".join(map(str, shape))
    n = shape[0]
    return f"{n >> 20}M" if n % (1 << 20) == 0 else f"{n >> 10}K" if n % 1024 == 0 else str(n)


def _us(t: float) -> str:
    return f"{t * 1e6:.3g} us" if t < 1e-3 else f"{t * 1e3:.3g} ms"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _sizes_table(torch: object) -> str:
    header = ["size", "op", "auto picks", "softzo (out=)", "x NumPy (faster call)", "% roofline"]
    header += ["x torch (faster call)"] * (torch is not None)
    rows = []
    for shape in SHAPES:
        x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
        out, out_np, out_t = np.ones_like(x), np.ones_like(x), np.ones_like(x)
        calls: dict[str, Callable[[], object]] = {
            "read": partial(_testing.stream_read, x, 1),
            "scale": partial(_testing.stream_scale, x, out, 1),
        }
        for op, fn, np_fn in (
            ("softmax", softmax, _np_softmax),
            ("log_softmax", log_softmax, _np_log_softmax),
        ):
            calls[op] = partial(fn, x, out=out, num_threads=1)
            calls[op + " numpy"] = partial(np_fn, x)
            calls[op + " numpy out"] = partial(np_fn, x, out_np)
            if torch is not None:
                xt, ot = torch.from_numpy(x), torch.from_numpy(out_t)
                calls[op + " torch"] = partial(getattr(torch, op), xt, -1)
                calls[op + " torch out"] = partial(getattr(torch, op), xt, -1, out=ot)
        t = _time_interleaved(calls)
        for op in OPS:
            pick = _core.auto_algorithm(shape[-1], 4, op)
            reads, rws = PASSES.get((op, pick), (1, 1))
            roof = reads * t["read"] + rws * t["scale"]
            numpy = min(t[op + " numpy"], t[op + " numpy out"])
            row = [_label(shape), op, pick, _us(t[op]), f"{numpy / t[op]:.2f}x"]
            row.append(f"{roof / t[op]:.0%}")
            if torch is not None:
                fastest = min(t[op + " torch"], t[op + " torch out"])
                row.append(f"{fastest / t[op]:.2f}x")
            rows.append(row)
    return _table(header, rows)


def _calls_table(torch: object) -> str:
    header = ["size", "op", "softzo, NumPy in"]
    header += ["softzo, torch in", "torch's op", "x torch's op (torch in)"] * (torch is not None)
    rows = []
    for n in CALL_SIZES:
        x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
        calls: dict[str, Callable[[], object]] = {}
        for op, fn in (
            ("softmax", softmax),
            ("log_softmax", log_softmax),
            ("logsumexp", logsumexp),
        ):
            calls[op] = partial(fn, x, num_threads=1)
            if torch is not None:
                xt = torch.from_numpy(x.copy())
                calls[op + " torch in"] = partial(fn, xt, num_threads=1)
                calls[op + " torch"] = partial(getattr(torch, op), xt, -1)
        t = _time_interleaved(calls)
        for op in ("softmax", "log_softmax", "logsumexp"):
            row = [_label((n,)), op, _us(t[op])]
            if torch is not None:
                ours, theirs = t[op + " torch in"], t[op + " torch"]
                row += [_us(ours), _us(theirs), f"{theirs / ours:.2f}x"]
            rows.append(row)
    return _table(header, rows)


def quick() -> str:
    """The quick benchmark's Markdown tables (a few seconds; torch columns when installed)."""
    try:
        import torch
    except ImportError:
        torch = None
    threads = torch.get_num_threads() if torch is not None else 0
    try:
        if torch is not None:
            torch.set_num_threads(1)
        sizes, calls = _sizes_table(torch), _calls_table(torch)
    finally:
        if torch is not None:
            torch.set_num_threads(threads)
    return (
        f"{sizes}\n\n### Per call, allocating (no out=), by input framework\n\n{calls}\n\n"
        "Full benchmarks, from a checkout of the repository: python -m bench.softmax (and "
        "bench.losses, bench.isa, ...).\n"
    )
