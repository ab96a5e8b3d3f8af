"""python -m softzo's quick benchmark (softzo._quick_bench): its tables are well formed, torch is
compared in its faster call mode, and the runtime package holds no other benchmark."""

import importlib.util
import re

import softzo
from softzo import _quick_bench as qb


def rows(table: str) -> list[list[str]]:
    lines = [ln for ln in table.splitlines() if ln.startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    assert all(len(r) == len(cells[0]) for r in cells), "ragged table"
    return cells


def test_quick_tables(monkeypatch):
    monkeypatch.setattr(qb, "SHAPES", ((1024,), (2, 1000)))
    monkeypatch.setattr(qb, "CALL_SIZES", (16,))
    monkeypatch.setattr(qb, "REPS", 1)
    sizes, calls = qb.quick().split("### Per call")
    table = rows(sizes)
    assert table[0][:5] == ["size", "op", "auto picks", "softzo (out=)", "x NumPy (faster call)"]
    assert [r[:2] for r in table[2:]] == [
        [s, op] for s in ("1K", "2x1000") for op in ("softmax", "log_softmax")
    ]
    for r in table[2:]:
        assert r[2] in softzo.ALGORITHMS and re.fullmatch(r"\d+%", r[5])
        assert all(re.fullmatch(r"[\d.]+x", c) for c in [r[4], *r[6:]])
    table = rows(calls)
    assert [r[1] for r in table[2:]] == ["softmax", "log_softmax", "logsumexp"]
    if importlib.util.find_spec("torch") is not None:
        assert table[0][-1] == "x torch's op (torch in)"


def test_the_runtime_package_holds_no_other_benchmark():
    names = {m for m in dir(softzo) if "bench" in m}
    assert names <= {"_quick_bench"}
    for old in (
        "bench",
        "bench_losses",
        "bench_zo",
        "bench_coco",
        "bench_nextword",
        "bench_factored",
        "bench_distributed",
        "bench_cuda",
    ):
        assert importlib.util.find_spec(f"softzo.{old}") is None
