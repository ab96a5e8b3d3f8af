"""softzo.optim.minimize and SPSA's a="auto": the gain calibrated from averaged probes, the
evaluation budget of every method, non-finite values, bounds, progress and callback, against
float64 NumPy references."""

import io
import math
import sys

import numpy as np
import pytest
from softzo import _core, optim
from zo_testing import quadratic

RADEMACHER, GAUSSIAN = 0, 1
PROBE = 1 << 31  # the Philox direction numbers of SPSA's calibration probes


def fill(n, seed, step, direction, dist=RADEMACHER):
    z = np.empty(n)
    _core._zo_fill(seed, step, direction, dist, 0, z, 1)
    return z


# ---- SPSA: a="auto" from averaged probes; iterations from the budget ------------------------


def spsa_reference(f, x0, maxfev, seed, c=0.1, probes=10, target=0.1, alpha=0.602, gamma=0.101):
    """minimize(method="spsa") with its defaults, in float64: the probes' mean |ĝ_i| sets a,
    then (maxfev - 2 probes) // 2 steps with A = 0.1 of them."""
    steps = (maxfev - 2 * probes) // 2
    A = 0.1 * steps
    x = x0.copy()
    g0 = np.mean(
        [
            abs(f(x + c * z) - f(x - c * z)) / (2 * c)
            for z in (fill(x.size, seed, 0, PROBE + p) for p in range(probes))
        ]
    )
    a = target * (1 + A) ** alpha / g0
    for k in range(steps):
        ck, ak = c / (k + 1) ** gamma, a / (k + 1 + A) ** alpha
        z = fill(x.size, seed, k, 0)
        x = x - ak * (f(x + ck * z) - f(x - ck * z)) / (2 * ck) * z
    return x, steps


def test_minimize_spsa_auto_equals_numpy_reference(rng):
    d = 40
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    x0 = rng.standard_normal(d)
    maxfev = 121  # 20 probes, 50 steps, one evaluation left over
    expected, steps = spsa_reference(f, x0, maxfev, seed=7)
    calls = []
    res = optim.minimize(lambda x: calls.append(1) or f(x), x0, maxfev=maxfev, seed=7)
    assert res.nit == steps == 50 and res.nfev == len(calls) == 120
    # f is evaluated at points moved in place (roundings of 1e-16 over 2 c_k), and the
    # reference repeats the difference quotients itself.
    np.testing.assert_allclose(res.last_x, expected, rtol=1e-9, atol=1e-10)


def test_spsa_calibration_averages_probes(rng):
    # A sphere in d = 320 seen from far away, as COCO's f1: |ĝ_i| = |g^T z| / 1 per coordinate
    # has mean sqrt(2 / pi) ||g|| over Rademacher z (the central limit), which sets Spall's a.
    d = 320
    center = rng.uniform(-4, 4, d)
    f = quadratic(np.ones(d), center)
    g = -2 * center  # the gradient at 0
    ratios = {}
    for probes in (1, 10):
        ratios[probes] = []
        for seed in range(40):
            x = np.zeros(d)
            calls = []
            opt = optim.SPSA([x], calibration_probes=probes, maxiter=1000, seed=seed)
            opt.step(lambda x=x, calls=calls: calls.append(1) or f(x))
            assert len(calls) == 2 * probes + 2 == opt.calibration_evaluations() + 2 * (1 + probes)
            expected = 0.1 * (1 + opt.A) ** 0.602 / (math.sqrt(2 / math.pi) * np.linalg.norm(g))
            ratios[probes].append(opt.a / expected)
    # One probe: a lands 38x too high for one of these seeds (|g^T z| happened to be small); the
    # mean over 10 (relative standard deviation 0.24) stays within a factor 2.5 for all 40.
    assert max(ratios[1]) > 10
    assert 0.4 < min(ratios[10]) and max(ratios[10]) < 2.5
    assert opt.calibration_evaluations() == 0  # calibrated once, on the first step


def test_spsa_calibration_is_deterministic_given_the_seed(rng):
    f = quadratic(rng.uniform(0.5, 2, 50), rng.standard_normal(50))
    a = {}
    for seed in (3, 3, 4):
        x = np.zeros(50)
        opt = optim.SPSA([x], seed=seed)
        opt.step(lambda x=x: f(x))
        a.setdefault(seed, []).append(opt.a)
    assert a[3][0] == a[3][1] and a[4][0] != a[3][0]
    # A flat function gives |ĝ| = 0: a falls back to |ĝ_i| = 1 instead of dividing by 0.
    x = np.zeros(5)
    opt = optim.SPSA([x], maxiter=10)
    opt.step(lambda: 1.0)
    assert opt.a == pytest.approx(0.1 * 2**0.602)
    with pytest.raises(ValueError, match="calibration_probes"):
        optim.SPSA([x], calibration_probes=0)


# ---- the budget: never exceeded, spent by whole steps --------------------------------------

D = 6
# (options, evaluations per step, one-off calibration) from each method's definition.
BUDGETS = {
    "spsa": ({}, 2, 20),
    "spsa_gc": ({}, 10, 0),  # 5 directions
    "mezo": ({"lr": 0.01}, 2, 0),
    "hizoo": ({"lr": 0.01}, 3, 0),  # f0, f+, f-
    "zo_sgd": ({"lr": 0.01, "conservative": True}, 5, 0),  # + f0, f(x - s), f(x + s)
    "zo_adam": ({"lr": 0.01, "num_queries": 3}, 6, 0),
    "rge": ({"lr": 0.01}, 11, 0),  # f0 + 10 directions
    "cge": ({"lr": 0.01}, 2 * D, 0),
}


@pytest.mark.parametrize("method", list(BUDGETS))
@pytest.mark.parametrize("maxfev", [23, 100, 257])
def test_minimize_never_exceeds_the_budget(method, maxfev, rng):
    f = quadratic(rng.uniform(0.5, 2, D), rng.standard_normal(D))
    options, per_step, calibration = BUDGETS[method]
    calls = []
    res = optim.minimize(
        lambda x: calls.append(1) or f(x),
        np.zeros(D),
        method=method,
        maxfev=maxfev,
        seed=1,
        options=options,
    )
    steps = max(0, (maxfev - calibration) // per_step)
    assert res.nit == steps
    assert res.nfev == len(calls) == (calibration + steps * per_step if steps else 0)
    assert res.nfev <= maxfev and res.success


# ---- non-finite values: stop with the best finite point, theta intact ------------------------

METHODS = {
    "spsa": {"a": 0.05, "c": 0.01},
    "spsa_gc": {"a": 0.01, "c": 0.01},
    "mezo": {"lr": 0.01},
    "hizoo": {"lr": 0.01},
    "zo_sgd": {"lr": 0.01, "conservative": True},
    "zo_adam": {"lr": 0.01},
    "rge": {"lr": 0.01, "num_queries": 3},
    "cge": {"lr": 0.01},
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("at", [1, 40])
def test_minimize_stops_on_a_non_finite_value(method, bad, at, rng):
    f = quadratic(rng.uniform(0.5, 2, D), rng.standard_normal(D))
    x0 = rng.standard_normal(D)
    seen = []  # (value, point) of every evaluation

    def fun(x):
        value = bad if len(seen) + 1 == at else f(x)
        seen.append((value, x.copy()))
        return value

    iterates = [x0]
    res = optim.minimize(
        fun,
        x0,
        method=method,
        maxfev=1000,
        seed=2,
        callback=lambda x: iterates.append(x),
        options=METHODS[method],
    )
    assert not res.success and res.nfev == at == len(seen)
    assert (
        "non-finite" in res.message
        and str(bad) in res.message
        and f"evaluation {at}" in res.message
    )
    finite = [(v, x) for v, x in seen if math.isfinite(v)]
    if finite:
        value, point = min(finite, key=lambda vx: vx[0])
        assert res.fun == value
        np.testing.assert_array_equal(res.x, point)
    else:
        assert res.fun == math.inf
        np.testing.assert_array_equal(res.x, x0)
    # The interrupted step was not applied, and theta came back from its perturbations (within
    # the rounding of in-place moves by 1e-3 z on values of order 1).
    np.testing.assert_allclose(res.last_x, iterates[-1], rtol=0, atol=1e-14)
    assert len(iterates) == res.nit + 1


def test_small_budgets_still_step_or_report_x0(rng):
    f = quadratic(rng.uniform(0.5, 2, D), rng.standard_normal(D))
    x0 = rng.standard_normal(D)
    res = optim.minimize(f, x0, method="spsa", maxfev=6, seed=1)
    assert res.nit == 1 and res.nfev == 6  # 2 probes instead of 10, then one step
    for maxfev in (1, 3):  # no room for a probe and a step: f(x0), once
        res = optim.minimize(f, x0, method="spsa", maxfev=maxfev, seed=1)
        assert res.nit == 0 and res.nfev == 1 and res.success
        assert res.fun == f(x0)
        np.testing.assert_array_equal(res.x, x0)
    res = optim.minimize(f, x0, method="spsa", maxfev=6, options={"calibration_probes": 10})
    assert res.nit == 0 and res.nfev == 1  # the probes were asked for: no step fits


def test_step_still_raises_on_a_non_finite_loss():
    theta = np.ones(4)
    with pytest.raises(ValueError, match="non-finite"):
        optim.SPSA([theta], a=0.1).step(lambda: math.nan)
    np.testing.assert_allclose(theta, 1.0, rtol=0, atol=1e-15)


# ---- bounds: every evaluation inside the box; exact x ± c_k z for bounded directions --------


@pytest.mark.parametrize("method", list(METHODS))
def test_minimize_never_evaluates_outside_the_bounds(method, rng):
    d = 8
    lo, hi = np.full(d, -1.0), np.linspace(0.2, 1.0, d)
    center = np.full(d, 3.0)  # the constrained optimum is the corner hi
    f = quadratic(np.ones(d), center)
    points = []
    x0 = hi.copy()  # starts on a wall
    res = optim.minimize(
        lambda x: points.append(x.copy()) or f(x),
        x0,
        method=method,
        maxfev=600,
        bounds=list(zip(lo, hi)),
        seed=3,
        options=METHODS[method],
    )
    points = np.array(points)
    assert len(points) == res.nfev > 0
    assert np.all(points >= lo) and np.all(points <= hi)
    assert np.all(res.x >= lo) and np.all(res.x <= hi)


def test_spsa_with_bounds_evaluates_exactly_at_x_plus_minus_ck_z(rng):
    d, c, seed = 10, 0.05, 4
    lo, hi = -np.ones(d), np.ones(d)
    f = quadratic(np.ones(d), np.full(d, 2.0))  # optimum outside: the iterate meets the wall
    points = []
    res = optim.minimize(
        lambda x: points.append(x.copy()) or f(x),
        np.zeros(d),
        method="spsa",
        maxfev=420,
        bounds=(lo, hi),
        seed=seed,
        options={"c": c},
    )
    plus, minus = np.array(points[20::2]), np.array(points[21::2])  # after the 20 probes
    assert len(plus) == res.nit == 200
    for k in range(res.nit):
        ck = c / (k + 1) ** 0.101
        # The pair is the unconstrained one: a perturbation of exactly c_k z around a centre
        # kept c_k inside the walls, though the iterate sits at the wall.
        np.testing.assert_allclose(
            (plus[k] - minus[k]) / 2, ck * fill(d, seed, k, 0), rtol=1e-12, atol=1e-15
        )
        middle = (plus[k] + minus[k]) / 2
        assert np.all(middle >= lo + ck * (1 - 1e-12)) and np.all(middle <= hi - ck * (1 - 1e-12))
    # The iterate ends near the walls, at least c_k inside them, and the best value is near the
    # constrained minimum f(hi) = 10 (40 at the start).
    assert np.all(res.last_x <= hi - c / res.nit**0.101 * (1 - 1e-12))
    assert np.all(res.last_x > hi - 0.1)
    assert 10 <= res.fun < 10.5
    assert np.all(points >= lo) and np.all(points <= hi)


def test_bounds_reject_bad_input():
    f = lambda x: float(np.sum(x**2))
    for bad in ([(1.0, 0.0)] * 3, (np.zeros(3), np.zeros(2)), [(0.0, math.nan)] * 3, (1, 2, 3)):
        with pytest.raises(ValueError, match="bounds"):
            optim.minimize(f, np.zeros(3), bounds=bad)
    scipy_optimize = pytest.importorskip("scipy.optimize")
    res = optim.minimize(
        f, np.ones(3), maxfev=100, bounds=scipy_optimize.Bounds(0.5, 2.0), options={"a": 0.1}
    )
    assert np.all(res.x >= 0.5)


# ---- every method, progress and callback --------------------------------------------------


def test_minimize_spsa_on_a_quadratic(rng):
    w, c = rng.uniform(0.5, 2, 20), rng.standard_normal(20)
    f = quadratic(w, c)
    res = optim.minimize(
        f, np.zeros(20), method="spsa", maxfev=4000, seed=1, options={"a": 0.1, "c": 0.01}
    )
    assert res.fun < f(np.zeros(20)) / 100 and res.nfev <= 4000
    res = optim.minimize(
        f,
        np.zeros(20),
        method="mezo",
        maxfev=4000,
        bounds=[(-0.5, 0.5)] * 20,
        options={"lr": 0.02, "eps": 1e-3},
    )
    assert np.all(np.abs(res.x) <= 0.5)


@pytest.mark.parametrize("method", ["spsa_gc", "rge", "cge", "zo_sgd", "zo_adam"])
def test_minimize_every_method_decreases_a_quadratic(method, rng):
    w, c = rng.uniform(0.5, 2, 10), rng.standard_normal(10)
    f = quadratic(w, c)
    options = {
        "spsa_gc": {"a": 0.05, "c": 0.01},
        "rge": {"lr": 0.02, "mu": 1e-4, "num_queries": 5},
        "cge": {"lr": 0.2, "mu": 1e-4},
        "zo_sgd": {"lr": 0.01, "eps": 1e-4},
        "zo_adam": {"lr": 0.05, "eps": 1e-4},
    }[method]
    res = optim.minimize(f, np.zeros(10), method=method, maxfev=6000, seed=2, options=options)
    assert res.fun < f(np.zeros(10)) / 100, res.fun


def test_minimize_progress_bar_and_callback(rng):
    pytest.importorskip("tqdm")
    f = quadratic(rng.uniform(0.5, 2, 10), rng.standard_normal(10))
    buf = io.StringIO()
    res = optim.minimize(
        f,
        np.zeros(10),
        method="spsa",
        maxfev=200,
        seed=1,
        progress={"file": buf, "mininterval": 0},
        options={"a": 0.1},
    )
    out = buf.getvalue()
    assert "200/200" in out and "best=" in out and "spsa" in out
    seen = []
    res = optim.minimize(
        f,
        np.zeros(10),
        method="mezo",
        maxfev=200,
        callback=lambda x: seen.append(x) or len(seen) == 3,
        options={"lr": 0.01},
    )
    assert res.nit == 3 and res.nfev == 6 and res.message == "stopped by callback"
    assert not np.array_equal(seen[0], seen[2])
    with pytest.raises(TypeError, match="progress"):
        optim.minimize(f, np.zeros(10), progress="yes")
    with pytest.raises(TypeError, match="callback"):
        optim.minimize(f, np.zeros(10), callback=1)


def test_progress_needs_tqdm_only_when_asked(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    f = lambda x: float(np.sum(x**2))
    assert optim.minimize(f, np.ones(3), maxfev=20).nfev <= 20
    with pytest.raises(ImportError, match="pip install tqdm"):
        optim.minimize(f, np.ones(3), maxfev=20, progress=True)
