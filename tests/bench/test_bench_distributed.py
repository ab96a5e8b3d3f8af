"""bench.distributed on a small model: the table's rows and its byte accounting."""

import pytest

pytest.importorskip("torch")


def test_small_run_reports_every_case_and_the_payloads():
    from bench import distributed

    table = distributed.run(params=5000, steps=1, reps=1)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "ms |" in line]
    assert [r.split(" | ")[0][2:] for r in rows] == [
        "single process (rank 0 alone, full batch)",
        "data parallel, 2 ranks (half batch each)",
        "directions parallel, 2 ranks (full batch)",
        "DDP SGD step, 2 ranks (half batch each)",
    ]
    n = int(table.split(" float32 parameters")[0].replace(",", ""))
    assert n == 1000 * 2 + 2 * 1000 + 1000 + 2  # 1000 -> 2 -> 1000: hidden width rounded
    payloads = [r.split(" | ")[3] for r in rows]
    # 2 ranks: softzo's ring all-gather row of 4 float64; DDP's all-reduce 2 (W-1)/W 4 n.
    assert payloads == ["-", "32", "32", f"{4 * n:,}"]
