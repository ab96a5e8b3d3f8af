"""python -m bench.softmax at tiny sizes: every candidate and input is timed, and the tables are
well formed and agree with the times (no timing is asserted)."""

import re

import pytest

from bench import _common
from bench import softmax as sb

SHAPES = ((1024,), (3, 1000))


def rows_of(section: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the first Markdown table in ``section``."""
    lines = [ln for ln in section.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert set(lines[1].replace("|", "")) == {"-"}
    assert all(len(r) == len(cells[0]) for r in cells), "ragged table"
    return cells[0], cells[2:]


def section(report: str, title: str) -> str:
    return report.split(f"{title}\n\n", 1)[1].split("\n\n###", 1)[0]


@pytest.fixture(scope="module")
def results():
    return sb.run(SHAPES, [1], reps=1, budget=0.0, progress=False)


def test_every_candidate_on_every_input_is_timed(results):
    torch = _common.optional("torch")
    for shape in SHAPES:
        t = results[shape, 1]
        for d in _common.DISTRIBUTIONS:
            for op in sb.OPS:
                for a in (*sb.ALGOS, "auto"):
                    assert 0 < t[op, a, d] < 1
                if torch is not None:
                    assert (op, "torch", d) in t and (op, "torch out=", d) in t
            assert ("softmax", "numpy", d) in t and ("log_softmax", "numpy out=", d) in t


def test_summary_rows_compare_with_each_peers_faster_call(results):
    report = sb.report(results, sb.OPS)
    for op in sb.OPS:
        header, rows = rows_of(section(report, f"### {op}"))
        assert len(rows) == len(SHAPES) * len(_common.DISTRIBUTIONS)
        col = {name: i for i, name in enumerate(header)}
        for row in rows:
            shape = next(s for s in SHAPES if _common.label(s) == row[0])
            dist = next(d for d, title in _common.DISTRIBUTIONS.items() if title == row[2])
            t = results[shape, 1]
            assert row[col["auto picks"]] in sb.ALGOS
            if dist == _common.BASELINE:
                assert row[col["vs N(0,1)"]] == "1.00x"
            if "x torch" in col:
                m = re.fullmatch(r"([\d.]+)x \((torch|torch out=)\)", row[col["x torch"]])
                fastest = min(t[op, "torch", dist], t[op, "torch out=", dist])
                assert t[op, m[2], dist] == fastest
                assert float(m[1]) == pytest.approx(fastest / t[op, "auto", dist], abs=0.006)
            assert re.fullmatch(r"yes|NO \(\+\d+%\)", row[col["auto <=5%"]])
            assert re.fullmatch(r"\d+%", row[col["% roofline"]])


def test_value_independence_table(results):
    report = sb.report(results, sb.OPS)
    for op in sb.OPS:
        title = f"#### {op}"
        part = report.split("### Time on each distribution over the time on N(0,1)")[1]
        header, rows = rows_of(section(part, title))
        others = [t for d, t in _common.DISTRIBUTIONS.items() if d != _common.BASELINE]
        assert header[4 : 4 + len(others)] == others
        assert len(rows) == len(SHAPES) * (len(sb.ALGOS) + 1)
        for row in rows:
            ratios = [float(v.rstrip("x")) for v in row[4 : 4 + len(others)]]
            assert float(row[-2].rstrip("x")) == pytest.approx(max(ratios), abs=0.006)
            # The table rounds ratios to 2 decimals: at the bound itself either verdict is right.
            if abs(max(ratios) - sb.VALUE_BOUND) > 0.005:
                assert row[-1] == ("yes" if max(ratios) <= sb.VALUE_BOUND else "NO")


def test_per_call_table_has_every_framework():
    calls = sb.run_calls([16], reps=1, budget=0.0, use_jax=False, progress=False)
    header, rows = rows_of(sb._calls_table(calls))
    assert [r[1] for r in rows] == list(sb.OPS)
    if _common.optional("torch") is not None:
        assert "softzo, torch in" in header and "x torch's op (NumPy in)" in header


def test_quick_run_writes_the_results_file(tmp_path, monkeypatch):
    monkeypatch.setattr(sb, "QUICK_SHAPES", ((512,),))
    monkeypatch.setattr(sb, "QUICK_CALL_SIZES", (16,))
    monkeypatch.setattr(sb, "QUICK_BUDGET_S", 0.0)
    sb.main(["--quick", "--dists", "normal", "padded", "--out", str(tmp_path)])
    text = (tmp_path / "softmax.md").read_text(encoding="utf-8")
    model, _ = _common.cpu()
    assert text.startswith(f"# softzo softmax benchmark\n\n- CPU: {model};")
    assert "- CPU flags (SIMD): " in text
    assert "`python -m bench.softmax --quick --dists normal padded --out " in text
    _, rows = rows_of(section(text, "### softmax"))
    assert [r[2] for r in rows] == ["N(0,1)", "-1e4 tail"]
