"""A Google Benchmark binary of ``bench/*_bench.cc`` run and written up as a Markdown table.

``python -m bench.microbench BINARY [--min-time S] [--filter REGEX] [--out DIR]``

Runs ``BINARY --benchmark_format=json --benchmark_repetitions=3
--benchmark_report_aggregates_only=true --benchmark_min_time=S`` (plus ``--benchmark_filter``)
and writes ``<name>_microbench.md`` (``softzo_bench_zo`` -> ``zo_microbench.md``) with the
machine, the date, the command and the load average at its top: per benchmark the median time
of the 3 repetitions, the items and bytes per second that the binary counts, and the
repetitions' coefficient of variation (a large one flags a noisy machine). The binaries come
from ``cmake -S . -B build -DSOFTZO_BUILD_BENCH=ON -DCMAKE_BUILD_TYPE=Release && cmake --build
build -j``; ``bench/*_bench.cc`` say what each benchmark times and what its counters count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _common

# What the names of each binary's benchmarks mean (the sources describe the passes themselves).
NAMING = {
    "softzo_bench_zo": (
        "Names are pass/dtype/distribution/isa/n[/threads:2] (the passes are described at the "
        "top of `bench/zo_bench.cc`). Items/s counts elements moved: a `perturb`, "
        "`perturb_diag` or `perturb_mask_build` benchmark runs +c z and then -c z (2 n items), "
        "`mezo_step_subset10` its three passes over a tenth of the 65536-element blocks, drawn "
        "anew every step. Bytes/s is the nominal traffic: theta read and written, sigma read (and "
        "written by `hizoo_update`), 1 bit per element of mask; no write-allocate reads. "
        "`stream_scale` is the read+write roofline over the same buffer, in the same run."
    ),
    "softzo_bench_factored": (
        "Names are step/dtype/[isa/]D:classes/d:dim/m:batch[/threads:2]: the Z-loss, one target "
        "per example, the periodic stabilisation off (bench/results/factored.md reports it "
        "amortised). `factored_step` is BLAS on d x d and m x d blocks plus scalar loops (no ISA "
        "kernels); `dense_step` (o = W h, the loss terms, dL/dh and the update of W, through "
        "BLAS) uses the loss kernels for its row sums and gradient map, hence one row per ISA. "
        "Items/s counts examples; bytes/s is nominal traffic (factored: the target rows of V read "
        "and written and the d x d double state read and written; dense: W read twice and "
        "written once). The `threads:2` rows run two OpenBLAS and two softzo threads."
    ),
}


def per_second(value: float | None) -> str:
    """A rate with an SI prefix: 2.5e9 -> "2.5 G", 64000 -> "64 k"."""
    if value is None:
        return ""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, "")):
        if value >= scale or scale == 1.0:
            return f"{value / scale:.3g} {prefix}".rstrip()
    return ""


def rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per benchmark from Google Benchmark's JSON (aggregates only): median real time,
    items/s and bytes/s of the median, and the cv of the real time."""
    by_name: dict[str, dict[str, dict[str, Any]]] = {}
    for b in report["benchmarks"]:
        by_name.setdefault(b["run_name"], {})[b.get("aggregate_name", "")] = b
    out = []
    for name, agg in by_name.items():
        med, cv = agg.get("median"), agg.get("cv")
        if med is None:
            continue
        seconds = (
            med["real_time"] * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[med["time_unit"]]
        )
        out.append(
            [
                f"`{name.removesuffix('/real_time')}`",
                _common.fmt_time(seconds),
                per_second(med.get("items_per_second")),
                per_second(med.get("bytes_per_second")),
                f"{100 * cv['real_time']:.1f}%" if cv else "",
            ]
        )
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.microbench", description=__doc__)
    parser.add_argument("binary", type=Path, help="e.g. build/bench/softzo_bench_zo")
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds per repetition")
    parser.add_argument("--filter", default=None, help="a --benchmark_filter regex")
    parser.add_argument("--out", type=Path, default=_common.RESULTS)
    args = parser.parse_args(argv)
    name = args.binary.name
    if not args.binary.is_file():
        parser.error(f"binary {args.binary} not found (build it with -DSOFTZO_BUILD_BENCH=ON)")
    load0, t0 = _common.load(), time.perf_counter()
    cmd = [
        str(args.binary),
        "--benchmark_format=json",
        "--benchmark_repetitions=3",
        "--benchmark_report_aggregates_only=true",
        f"--benchmark_min_time={args.min_time}",
    ]
    if args.filter:
        cmd.append(f"--benchmark_filter={args.filter}")
    report = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    context = report.get("context", {})
    header = ["benchmark", "median time", "items/s", "bytes/s", "cv (3 runs)"]
    text = (
        f"# {name}: Google Benchmark, median of 3 repetitions\n\n"
        f"{_common.provenance('bench.microbench', argv, t0, load0)}\n"
        f"- the binary's context: default ISA {context.get('softzo_default_isa', '?')}, "
        f"{context.get('num_cpus', '?')} CPUs at {context.get('mhz_per_cpu', '?')} MHz (the "
        f"Google Benchmark library reports a {context.get('library_build_type', '?')} build: "
        f"that flag describes the library, not softzo's code)\n\n"
        f"{NAMING.get(name, '')}\n\n{_common.table(header, rows(report))}\n"
    )
    _common.write(args.out, name.removeprefix("softzo_bench_") + "_microbench.md", text)


if __name__ == "__main__":
    main()
