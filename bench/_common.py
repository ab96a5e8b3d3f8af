"""What every benchmark of ``bench/`` shares: interleaved timing, the input distributions, the
machine and provenance heading of a results file, Markdown tables, matplotlib, peak memory, and
the streaming roofline loops.

No benchmark module imports another's names: what two of them need lives here.
"""

from __future__ import annotations

import datetime
import importlib
import math
import os
import platform
import random
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import softzo
from softzo import _testing

# Results go next to this file whatever the working directory: bench/results of the checkout.
RESULTS = Path(__file__).resolve().parent / "results"
REPO = RESULTS.parent.parent

SAMPLE_S = 2e-3  # target length of one timed sample (a batch of calls)
MIN_REPS, MAX_REPS = 5, 100  # 5: see measure(), on calls disturbed by the one before
ALLOWANCE = 1.05  # "auto" must measure within 5% of the best algorithm


# ---- optional packages ----------------------------------------------------------------------


def optional(name: str) -> Any:
    """torch, SciPy, JAX and matplotlib are competitors or tools, not dependencies: a missing one
    only drops its columns (or the plot)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or None (and a note) when it is not installed."""
    matplotlib = optional("matplotlib")
    if matplotlib is None:
        print("matplotlib is not installed: no plot written", file=sys.stderr)
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---- inputs ---------------------------------------------------------------------------------

# The input distributions of issue 18, by the key the command lines (and the C++ benchmarks'
# names) use: rows as they come in practice, some spread far beyond exp's float32 range.
DISTRIBUTIONS = {
    "normal": "N(0,1)",
    "wide30": "N(0,30²)",
    "wide100": "N(0,100²)",
    "masked": "10% -inf",
    "padded": "-1e4 tail",
    "temp0.1": "N(0,1)/0.1",
}
BASELINE = "normal"  # every distribution's time is also reported against this one's
PAD = -1e4  # the padded tail's value (half of each row)
MASKED_FRACTION = 0.1


def touched(shape: Sequence[int], dtype: Any = np.float32) -> np.ndarray:
    """An array whose pages are faulted in (np.zeros would hand back untouched pages, and the
    first timed call would pay for them)."""
    a = np.empty(tuple(shape), dtype=dtype)
    a.fill(1.0)
    return a


def draw(
    dist: str,
    shape: Sequence[int],
    rng: np.random.Generator,
    dtype: Any = np.float32,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Touched logits of ``shape`` from distribution ``dist`` (a key of DISTRIBUTIONS): N(0,1)
    scaled by 30, 100 or 1/0.1; or N(0,1) with 10% of the entries -inf (``mask``, boolean, chooses
    them instead, so that a teacher can share a student's masked classes) or with the second half
    of every row at -1e4."""
    x = np.empty(tuple(shape), dtype=dtype)
    rng.standard_normal(dtype=x.dtype.type, out=x)  # writes every page: x is touched
    if dist in ("wide30", "wide100"):
        x *= 30 if dist == "wide30" else 100
    elif dist == "temp0.1":
        x /= 0.1
    elif dist == "masked":
        if mask is None:
            mask = rng.random(x.shape, dtype=np.float32) < MASKED_FRACTION
        x[mask] = -np.inf
    elif dist == "padded":
        x[..., shape[-1] // 2 :] = PAD
    elif dist != "normal":
        raise ValueError(f"unknown distribution {dist!r}; known: {', '.join(DISTRIBUTIONS)}")
    return x


def targets(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class index per row of 2-D logits, uniform over the classes that are neither masked
    nor padding (a real target is never a class the model has ruled out)."""
    real = x > PAD / 2
    return np.argmax(rng.random(x.shape) * real, axis=-1)


# ---- timing ---------------------------------------------------------------------------------


class Candidate:
    """A timed call ``fn``, with untimed work around it.

    ``setup`` runs before each sample (a batch of calls), for state the whole batch shares (the
    ISA in use). ``prepare`` runs before each call (a fresh copy of what an in-place call
    overwrites); with it, each call is timed on its own, else the batch is timed as one.
    """

    def __init__(
        self,
        fn: Callable[[], object],
        prepare: Callable[[], object] | None = None,
        setup: Callable[[], object] | None = None,
    ) -> None:
        self.fn, self.prepare, self.setup = fn, prepare, setup

    def sample(self, number: int) -> float:
        """Mean seconds per call over ``number`` calls."""
        if self.setup is not None:
            self.setup()
        if self.prepare is None:
            t0 = time.perf_counter()
            for _ in range(number):
                self.fn()
            return (time.perf_counter() - t0) / number
        total = 0.0
        for _ in range(number):
            self.prepare()
            t0 = time.perf_counter()
            self.fn()
            total += time.perf_counter() - t0
        return total / number


def measure(cands: dict[Any, Candidate], reps: int | None, budget: float) -> dict[Any, float]:
    """Seconds per call of every candidate, timed interleaved in this process.

    Each candidate is warmed up and given a batch length (calls per sample, a sample lasting
    about SAMPLE_S, so the timer's resolution stays far below 1%). Then each repetition times
    every candidate once, in a fresh random order (fixed seed), so clock drift or a noisy
    neighbour hits all of them alike and no candidate always follows the same one: after a
    large allocating call (NumPy's, SciPy's, torch's at 64M elements) the kernel goes on
    releasing its pages for a while, which made the next call up to 2.4x slower, and a plain
    rotation kept the same candidate behind it in every repetition. A candidate's time is the MINIMUM over repetitions of its
    sample's mean: the least-disturbed run of the same work. Without ``reps``, repetitions are
    chosen so that each candidate gets about ``budget`` seconds (between MIN_REPS and MAX_REPS).
    """
    number, estimate = {}, {}
    for k, c in cands.items():
        c.sample(1)  # warm-up: first touch, the pool's threads, caches
        t = c.sample(1)
        if t < SAMPLE_S:
            t = c.sample(math.ceil(SAMPLE_S / t))
        number[k], estimate[k] = max(1, round(SAMPLE_S / t)), t
    if reps is None:
        per_rep = sum(number[k] * estimate[k] for k in cands)
        reps = min(MAX_REPS, max(MIN_REPS, int(budget * len(cands) / max(per_rep, 1e-9))))
    keys = list(cands)
    best = dict.fromkeys(keys, math.inf)
    order = random.Random(0)
    for _ in range(reps):
        order.shuffle(keys)
        for k in keys:
            best[k] = min(best[k], cands[k].sample(number[k]))
    return best


def stream_read(x: np.ndarray, threads: int) -> Callable[[], object]:
    """The roofline's read pass over x: softzo's own streaming loop, on its own thread pool."""
    return lambda: _testing.stream_read(x, threads)


def stream_scale(x: np.ndarray, out: np.ndarray, threads: int) -> Callable[[], object]:
    """The roofline's read-and-write pass, x into out."""
    return lambda: _testing.stream_scale(x, out, threads)


# ---- memory ---------------------------------------------------------------------------------


def status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmHWM: peak resident memory; VmRSS: resident now)."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_memory() -> bool:
    """Resets VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ---- reporting ------------------------------------------------------------------------------


def label(shape: Sequence[int]) -> str:
    """A shape as the tables name it: 32K, 64M, 64x32000."""
    if len(shape) > 1:
        return "x".join(map(str, shape))
    n = shape[0]
    for unit, div in (("M", 1 << 20), ("K", 1 << 10)):
        if n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def fmt_time(t: float | None) -> str:
    if t is None or not math.isfinite(t):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if t >= scale:
            return f"{t / scale:.3g} {unit}"
    return f"{t / 1e-9:.3g} ns"


def ratio(num: float | None, den: float | None) -> str:
    """num / den as "1.23x", or "-" when either is missing."""
    if num is None or den is None or not math.isfinite(num) or not math.isfinite(den):
        return "-"
    return f"{num / den:.2f}x"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def cpu() -> tuple[str, list[str]]:
    """The CPU's model name and its SIMD flags (SSE4.2, AVX, FMA, AVX-512 ...) from
    /proc/cpuinfo: what ``grep -m1 "model name" /proc/cpuinfo`` and its flags line say."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not flags:
                    model = value.strip()
                elif key == "flags":
                    flags = value.split()
                    break
    except OSError:
        pass
    simd = [f for f in flags if f.startswith(("sse4", "avx", "fma", "f16c"))]
    return model, simd


def machine() -> str:
    """The heading lines naming the machine: CPU model and SIMD flags, cores, softzo's runtime
    (the ISA in use: results differ by ISA) and the versions of the libraries compared."""
    model, simd = cpu()
    cores = cache = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "cpu cores" and cores == "?":
                    cores = value.strip()
                elif key.strip() == "cache size" and cache == "?":
                    cache = value.strip()
    except OSError:
        pass
    versions = {"numpy": np.__version__}
    for name in ("torch", "scipy"):
        mod = optional(name)
        versions[name] = getattr(mod, "__version__", "?") if mod else "not installed"
    return (
        f"- CPU: {model}; {os.cpu_count()} logical CPUs, {cores} cores, cache {cache}\n"
        f"- CPU flags (SIMD): {' '.join(simd) or 'none reported'}\n"
        f"- softzo: {softzo.info()}\n"
        f"- Python {platform.python_version()}, "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
    )


def load() -> float:
    """The 1-minute load average, which the reports quote: a busy machine skews every timing."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return math.nan


def warn_if_loaded(load0: float) -> None:
    if load0 > 0.5:
        print(
            f"warning: load average {load0:.1f}: other processes will skew the times",
            file=sys.stderr,
        )


def command(module: str, argv: Sequence[str] | None) -> str:
    """The command line that reran this benchmark: ``python -m bench.NAME ARGS``."""
    argv_used = sys.argv[1:] if argv is None else list(argv)
    return " ".join([f"python -m {module}", *map(shlex.quote, argv_used)])


def provenance(module: str, argv: Sequence[str] | None, t0: float, load0: float) -> str:
    """A results file's heading lines: the machine, the date, the exact command (run from the
    repository's root) with its wall time since ``t0``, and the load average before and now."""
    return (
        f"{machine()}\n"
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}\n"
        f"- command (from the repository's root): `{command(module, argv)}` "
        f"({time.perf_counter() - t0:.0f} s)\n"
        f"- 1-minute load average before / after: {load0:.2f} / {load():.2f}"
    )


def write(out: Path, name: str, text: str) -> Path:
    """Writes a results file into ``out`` (created if needed) and says so on stderr."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(text, encoding="utf-8")
    print(f"wrote {path}", file=sys.stderr)
    return path
