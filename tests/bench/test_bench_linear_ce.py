"""python -m bench.linear_ce --quick: every mode runs in its fresh subprocess, and the table's
ratios agree with its own times and memories."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_bench_linear_ce_quick(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("scipy_openblas32")
    cmd = [sys.executable, "-m", "bench.linear_ce", "--quick", "--out", str(tmp_path)]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True)
    text = (tmp_path / "linear_ce.md").read_text()
    assert "- CPU: " in text and "`python -m bench.linear_ce --quick --out " in text
    rows = {}
    for m in re.finditer(r"\| 512 x 256 x 8192 \| (.+?) \| ([\d.]+) s \| (\d+) MiB \|", text):
        rows[m[1]] = (float(m[2]), float(m[3]))
    assert len(rows) == 4
    ratio = re.search(r"softzo / PyTorch \| ([\d.]+)x time .* \| ([\d.]+)x memory", text)
    ours, theirs = (
        rows["softzo `linear_cross_entropy` (fwd + bwd)"],
        rows["PyTorch `F.linear` + `F.cross_entropy` (fwd + bwd)"],
    )
    assert float(ratio[1]) == pytest.approx(ours[0] / theirs[0], rel=0.02)
    # softzo's peak holds its outputs (d/dh, d/dW: 8.5 MiB) but never the 16 MiB of logits.
    assert ours[1] < 8.5 + 16
    # Half kernels: softzo and softzo out=, PyTorch and PyTorch out= (softmax only), the ratios.
    ms = r" \| ([\d.]+) ms"
    m = re.search(
        r"softmax, bfloat16, 64 x 32000" + 4 * ms + r" \| ([\d.]+)x \| ([\d.]+)x \|", text
    )
    assert m and float(m[5]) == pytest.approx(float(m[3]) / float(m[1]), rel=0.02)
    assert float(m[6]) == pytest.approx(float(m[4]) / float(m[2]), rel=0.02)
    case = r"cross-entropy, loss \+ gradient, bfloat16, 64 x 32000"
    m = re.search(case + 3 * ms + r" \|  \| ([\d.]+)x \| \|", text)
    assert m and float(m[4]) == pytest.approx(float(m[3]) / float(m[1]), rel=0.02)
