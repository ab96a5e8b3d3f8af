"""python -m bench.zo at a tiny size: every case runs and the table is self-consistent."""

from __future__ import annotations

import re

import pytest

from bench import zo


def test_bench_zo_table_is_consistent():
    pytest.importorskip("torch")
    n = 1 << 20
    table = zo.run(n, reps=1)
    rows = {}
    for line in table.splitlines():
        m = re.match(r"\| (.+?) \| ([\d.]+) ms \| ([\d.]+) \| (\d+)% \| ([\d.]+) \|$", line)
        if m:
            rows[m[1]] = tuple(float(v) for v in m.groups()[1:])
    cases = (
        "stream read+write (roofline)",
        "perturb, rademacher",
        "perturb, gaussian",
        "perturb, segmented (the Philox word rate)",
        "MeZO step (closure excluded)",
        "MeZO step, rademacher (closure excluded)",
        "Sparse MeZO step, sparsity 0.8 (closure excluded)",
        "MeZO step, subset fraction 0.1 (closure excluded)",
        "HiZOO step (closure excluded)",
        "MeZO reference loop, torch.normal",
        "MeZO step, 2 threads (closure excluded)",
        "MeZO reference loop, torch.normal, 2 threads",
    )
    assert set(rows) == set(cases)
    roof_ms = rows["stream read+write (roofline)"][0]
    for ms, gps, _, passes in rows.values():
        # Times have 4 significant digits, the rates 2 decimals: the columns must agree.
        assert gps == pytest.approx(n / (ms * 1e-3) / 1e9, rel=0.002, abs=0.006)
        assert passes == pytest.approx(ms / roof_ms, rel=0.002, abs=0.006)
    assert re.search(r"reference loop: [\d.]+x faster", table)
    assert re.search(r"2 threads each: [\d.]+x faster", table)
    assert re.search(r"with Rademacher z: [\d.]+x faster", table)
    assert re.search(r"Peak extra memory of a MeZO step \(VmHWM growth\): ", table)
