"""python -m bench.isa at tiny sizes: every kernel on every native ISA and input is timed, and
the tables are well formed and agree with the times (no timing is asserted)."""

import pytest
import softzo

from bench import _common
from bench import isa as ib

SOFTMAX, CE, ZO = (1024,), (2, 1000), 4096


@pytest.fixture(scope="module")
def times():
    return ib.run([SOFTMAX], [CE], [ZO], reps=1, budget=0.0, progress=False)


def rows_of(section: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert all(len(r) == len(cells[0]) for r in cells), "ragged table"
    return cells[0], cells[2:]


def part(report: str, title: str) -> str:
    return report.split(title, 1)[1].split("\n###", 1)[0]


def test_every_kernel_isa_and_input_is_timed_and_the_isa_restored(times):
    isas = ib.native_isas()
    info = softzo.info()
    assert isas == [i for i in info["isas_available"] if i not in info["isas_emulated"]]
    for isa in isas:  # 1K rows and 4K theta are below SCALAR_MAX: scalar runs too
        for d in _common.DISTRIBUTIONS:
            for op in ib.OPS:
                for a in ib.ALGOS:
                    assert 0 < times[f"{op}/{a}", isa, SOFTMAX, d] < 1
            assert ("cross_entropy", isa, CE, d) in times
        for k in ib.ZO_KERNELS:
            assert (k, isa, (ZO,), _common.BASELINE) in times
    assert softzo.info()["isa"] == info["isa"]


def test_speedup_tables(times):
    report = ib.report(times)
    isas = ib.native_isas()
    header, rows = rows_of(part(report, "### Time per call, per kernel, size, input and ISA"))
    assert header[3 : 3 + len(isas)] == isas
    kernels = len(ib.OPS) * len(ib.ALGOS) + 1
    assert len(rows) == kernels * len(_common.DISTRIBUTIONS) + len(ib.ZO_KERNELS)
    if "avx2" in isas and "avx512" in isas:
        for row in rows:
            k = row[0]
            shape = next(s for s in (SOFTMAX, CE, (ZO,)) if _common.label(s) == row[1])
            d = next(d for d, t in _common.DISTRIBUTIONS.items() if t == row[2])
            expected = times[k, "avx2", shape, d] / times[k, "avx512", shape, d]
            assert float(row[-1].rstrip("x")) == pytest.approx(expected, abs=0.006)
        _, summary = rows_of(part(report, "### AVX-512 over AVX2, per kernel"))
        assert len(summary) == kernels + len(ib.ZO_KERNELS)
        for row in summary:
            lo, med, hi = (float(v.rstrip("x")) for v in row[2:5])
            assert lo <= med <= hi


def test_value_and_auto_tables(times):
    report = ib.report(times)
    isas = ib.native_isas()
    _, rows = rows_of(part(report, "### Time on each input over the time on N(0,1)"))
    assert len(rows) == (len(ib.OPS) * len(ib.ALGOS) + 1) * len(isas)
    for row in rows:
        ratios = [float(v.rstrip("x")) for v in row[4:-2]]
        assert len(ratios) == len(_common.DISTRIBUTIONS) - 1
        # The table rounds ratios to 2 decimals: at the bound itself either verdict is right.
        if abs(max(ratios) - ib.VALUE_BOUND) > 0.005:
            assert row[-1] == ("yes" if max(ratios) <= ib.VALUE_BOUND else "NO")
    _, rows = rows_of(part(report, "### Does auto pick within 5%"))
    assert len(rows) == len(ib.OPS) * len(isas)
    for row in rows:
        assert row[3] in ib.ALGOS


def test_quick_run_writes_the_results_file(tmp_path, monkeypatch):
    monkeypatch.setattr(ib, "QUICK_SOFTMAX_SHAPES", (SOFTMAX,))
    monkeypatch.setattr(ib, "QUICK_CE_SHAPES", ())
    monkeypatch.setattr(ib, "QUICK_ZO_SIZES", ())
    monkeypatch.setattr(ib, "QUICK_BUDGET_S", 0.0)
    ib.main(["--quick", "--dists", "normal", "wide30", "--out", str(tmp_path)])
    text = (tmp_path / "isa.md").read_text(encoding="utf-8")
    model, simd = _common.cpu()
    assert text.startswith(f"# softzo kernels by ISA\n\n- CPU: {model};")
    assert f"- CPU flags (SIMD): {' '.join(simd)}" in text
    assert "`python -m bench.isa --quick --dists normal wide30 --out " in text
