"""The COCO yardstick's measures (bench.coco), checked without cocoex on hand-made runs."""

import math

import numpy as np
import pytest

from bench import coco as bc


def test_targets_are_cocos_51():
    t = np.array(bc.TARGETS)
    assert len(t) == 51
    assert t[0] == 100.0 and t[10] == 1.0 and t[-1] == 1e-8
    np.testing.assert_allclose(t[:-1] / t[1:], 10**0.2, rtol=1e-12)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (1e3, 0),
        (100.0 * (1 + 1e-12), 0),
        (100.0, 1),  # reached when f - f_opt <= target
        (1.0, 11),  # 10^2, 10^1.8, ..., 10^0
        (0.5, 12),  # 10^-0.2 = 0.63 reached, 10^-0.4 = 0.40 not
        (1.1e-8, 50),
        (1e-8, 51),
        (0.0, 51),
        (math.nan, 0),  # no evaluation
    ],
)
def test_count_targets(delta, expected):
    assert bc.count_targets(delta) == expected


def _rec(function, dim, instance, solver, delta):
    return {
        "function": function,
        "dim": dim,
        "instance": instance,
        "solver": solver,
        "delta": delta,
        "targets": bc.count_targets(delta),
    }


def test_summarise_fractions_and_wins():
    recs = [
        # d=80, f1: softzo 1.0 (11 targets) and 0.5 (12) against 200 (0) and 100 (1): a win.
        _rec(1, 80, 1, "softzo", 1.0),
        _rec(1, 80, 2, "softzo", 0.5),
        _rec(1, 80, 1, "nevergrad", 200.0),
        _rec(1, 80, 2, "nevergrad", 100.0),
        # d=80, f2: no targets on either side (a tie by targets); median Delta f 300 vs 250: a
        # loss by Delta f.
        _rec(2, 80, 1, "softzo", 300.0),
        _rec(2, 80, 2, "softzo", 300.0),
        _rec(2, 80, 1, "nevergrad", 200.0),
        _rec(2, 80, 2, "nevergrad", 300.0),
        # d=160, f1: both reach everything.
        _rec(1, 160, 1, "softzo", 0.0),
        _rec(1, 160, 1, "nevergrad", 1e-9),
    ]
    s = bc.summarise(recs, solvers=("softzo", "nevergrad"))
    assert list(s) == [80, 160, "all"]
    assert s[80]["runs"] == {"softzo": 4, "nevergrad": 4}
    assert s[80]["fraction"]["softzo"] == pytest.approx(23 / (4 * 51))
    assert s[80]["fraction"]["nevergrad"] == pytest.approx(1 / (4 * 51))
    assert s[80]["wtl_targets"] == (1, 1, 0)
    assert s[80]["wtl_delta"] == (1, 0, 1)  # f1: 0.75 < 150; f2: 300 > 250
    assert s[160]["fraction"] == {"softzo": 1.0, "nevergrad": 1.0}
    assert s[160]["wtl_targets"] == (0, 1, 0)
    assert s[160]["wtl_delta"] == (1, 0, 0)
    assert s["all"]["fraction"]["softzo"] == pytest.approx((23 + 51) / (5 * 51))
    assert s["all"]["wtl_targets"] == (1, 2, 0)


def test_counted_refuses_evaluations_past_the_budget():
    seen = []
    fun = bc.Counted(lambda x: seen.append(x.copy()) or float(x.sum()), 2)
    assert fun([1.0, 2.0]) == 3.0 and fun(np.zeros(2)) == 0.0
    with pytest.raises(bc.BudgetExhausted):
        fun(np.ones(2))
    assert len(seen) == 2 and fun.left == 0


def test_ints():
    assert bc._ints("1,3,5-7") == [1, 3, 5, 6, 7]
    assert bc._ints("80") == [80]
