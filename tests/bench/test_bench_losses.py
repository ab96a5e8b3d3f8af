"""python -m bench.losses at tiny shapes: every mode on every input is timed against torch's
faster call, the tables are well formed, and the memory probe runs as a subprocess from the
checkout (no timing is asserted)."""

import math
import re

import pytest

from bench import _common
from bench import losses as lb

pytest.importorskip("torch")
SWEPT = (4, 1000)
SHAPES = ((1, 16), SWEPT)


def rows_of(section: str) -> tuple[list[str], list[list[str]]]:
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert all(len(r) == len(cells[0]) for r in cells), "ragged table"
    return cells[0], cells[2:]


@pytest.fixture(scope="module")
def times():
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lb, "SWEEP_SHAPES", {SWEPT})
        mp.setattr(lb, "OTHER_SHAPE", SWEPT)
        return lb.run(SHAPES, reps=1, budget=0.0, memory=False, progress=False)[0]


def test_every_mode_and_input_is_timed(times):
    small, swept = times[SHAPES[0]], times[SWEPT]
    assert {m for (_, m, _) in small if _ != "roofline"} >= set(lb.CE_MODES)
    for d in _common.DISTRIBUTIONS:
        modes = lb.CE_MODES if d == _common.BASELINE else lb.DIST_MODES
        for m in modes:
            assert 0 < swept["cross_entropy", m, d] < 1
        assert ("kl_div", "alloc", d) in swept and ("kl_div", "torch", d) in swept
        assert (("z_loss", "alloc", d) in swept) == (d != "masked")


def test_summary_is_against_torchs_faster_call(times):
    report = lb.report(times, {})
    header, rows = rows_of(report.split("### Loss and gradient, every candidate")[0])
    assert len(rows) == 1 + len(_common.DISTRIBUTIONS)
    col = {h: i for i, h in enumerate(header)}
    for row in rows[1:]:
        dist = next(d for d, title in _common.DISTRIBUTIONS.items() if title == row[1])
        t = times[SWEPT]
        best = min(t["cross_entropy", m, dist] for m in lb.TORCH_MODES)
        grad_out, inplace = row[col["x torch (grad_out= / in place)"]].split(" / ")
        g = t["cross_entropy", "grad_out", dist]
        assert float(grad_out.rstrip("x")) == pytest.approx(best / g, abs=0.006)
        assert float(inplace.rstrip("x")) == pytest.approx(
            best / t["cross_entropy", "inplace", dist], abs=0.006
        )
        if dist == _common.BASELINE:
            assert row[col["vs N(0,1)"]] == "1.00x"


def test_time_table_rows(times):
    report = lb.report(times, {})
    _, rows = rows_of(report.split("### Loss and gradient, every candidate")[1])
    measured = sum(1 for t in times.values() for k in t if k[0] != "roofline")
    roofline_rows = sum(1 for r in rows if r[3] == "roofline (streaming loops)")
    assert len(rows) == measured + roofline_rows
    for row in rows:
        assert re.fullmatch(r"\d+%", row[-1])


def test_memory_probe_runs_from_the_checkout(monkeypatch):
    shape = (8, 4096)
    monkeypatch.setattr(lb, "MEMORY_SHAPES", {shape})
    mem = lb._memory([shape], modes=("grad_out", "inplace", "torch"))
    assert set(mem) == {(shape, m) for m in ("grad_out", "inplace", "torch")}
    for m in mem.values():
        assert set(m) == {"extra", "traced", "reset"} and m["extra"] >= 0
    assert not lb._check_inplace(mem)  # in place: no N x V buffer
    header, rows = rows_of(lb._memory_table(mem))
    assert len(rows) == 3 and header[-1] == "N x V buffers"
    nv = 4 * math.prod(shape)
    assert float(rows[0][-1]) == pytest.approx(mem[shape, "grad_out"]["extra"] / nv, abs=0.006)


def test_quick_run_writes_the_results_file(tmp_path, monkeypatch):
    monkeypatch.setattr(lb, "QUICK_CE_SHAPES", ((1, 16),))
    monkeypatch.setattr(lb, "QUICK_BUDGET_S", 0.0)
    lb.main(["--quick", "--out", str(tmp_path)])
    text = (tmp_path / "losses.md").read_text(encoding="utf-8")
    model, _ = _common.cpu()
    assert text.startswith(f"# softzo losses benchmark\n\n- CPU: {model};")
    assert "`python -m bench.losses --quick --out " in text
    if _common.optional("matplotlib") is not None:
        assert (tmp_path / "losses.png").stat().st_size > 1000
