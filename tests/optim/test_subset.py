"""MeZO / SPSA with ``subset=``: z is zero outside k blocks of the flat index space drawn per
step from (seed, step). One step against float64 NumPy with z from the whole-vector fill, the
choice's determinism and uniformity, the work done per step, resume, and bad input."""

import numpy as np
import pytest
from softzo import _core, optim

GAUSSIAN = 1


def full_z(n, seed, step, direction, dtype=np.float64):
    """z of the whole concatenated parameter vector, as a non-subset step would draw it."""
    z = np.empty(n, dtype=dtype)
    _core._zo_fill(seed, step, direction, GAUSSIAN, 0, z, 1)
    return z


def check_blocks(ranges, n, block, fraction):
    """The ranges are k = max(1, round(fraction * num_blocks)) distinct blocks of
    [b * block, min((b + 1) * block, n)), in increasing order."""
    num_blocks = -(-n // block)
    assert ranges.shape == (max(1, round(fraction * num_blocks)), 2)
    b = ranges[:, 0] // block
    np.testing.assert_array_equal(ranges[:, 0], b * block)
    np.testing.assert_array_equal(ranges[:, 1], np.minimum((b + 1) * block, n))
    assert np.all(np.diff(b) > 0) and b[0] >= 0 and b[-1] < num_blocks


def inside(ranges, n):
    keep = np.zeros(n, dtype=bool)
    for start, stop in ranges:
        keep[start:stop] = True
    return keep


@pytest.mark.parametrize("dtype,num_queries", [(np.float64, 1), (np.float32, 1), (np.float64, 2)])
def test_subset_step_equals_numpy_reference(dtype, num_queries, rng):
    sizes, block, fraction = [1000, 7, 2500], 333, 0.3  # blocks span tensor boundaries
    n = sum(sizes)
    w, c = rng.uniform(0.5, 2, n), rng.standard_normal(n)
    params = [rng.standard_normal(s).astype(dtype) for s in sizes]
    x0 = np.concatenate(params)

    def f(x):
        return float(np.sum(w * (x.astype(np.float64) - c) ** 2))

    lr, eps, wd, seed = 1e-3, 1e-3, 0.01, 5
    opt = optim.MeZO(
        params,
        lr=lr,
        eps=eps,
        weight_decay=wd,
        num_queries=num_queries,
        seed=seed,
        subset={"fraction": fraction, "block": block},
    )
    opt.step(lambda: f(np.concatenate(params)))
    ranges = opt.subset_ranges()
    check_blocks(ranges, n, block, fraction)
    keep = inside(ranges, n)
    theta = np.concatenate(params)
    # Outside the blocks, theta is bitwise unchanged (weight decay included).
    np.testing.assert_array_equal(theta[~keep].view(np.uint8), x0[~keep].view(np.uint8))
    # Inside, the MeZO step with z the whole vector's z, zeroed outside the blocks.
    x = x0.astype(np.float64)
    e = np.float64(dtype(eps))
    grad = np.zeros(n)
    for q in range(num_queries):
        z = full_z(n, seed, 0, q, dtype).astype(np.float64) * keep
        # The closure saw the points in theta's dtype.
        fp, fm = (f((x + s * e * z).astype(dtype)) for s in (1, -1))
        grad += (fp - fm) / (2 * eps) / num_queries * z
    expected = x * (1 - lr * wd) - lr * grad
    # The optimiser reaches x - eps z by moving x + eps z in place, which can differ from the
    # rounded x - eps z by an ulp per element; the difference quotient turns that into an
    # error of at most sum_i |df/dx_i| ulp_i / (2 eps) per query in the projected gradient.
    pg_error = np.sum(np.abs(2 * w * (x - c)) * np.spacing(np.abs(x0) + 2 * eps)) / (2 * eps)
    tol = (1e-11 if dtype == np.float64 else 2e-6) + lr * pg_error * np.max(np.abs(z))
    np.testing.assert_allclose(theta[keep], expected[keep], rtol=tol, atol=tol)
    assert np.mean(theta[keep] != x0[keep]) > 0.99  # the step did move the chosen blocks


def test_fraction_one_is_plain_mezo_bitwise(rng):
    x0 = rng.standard_normal(5000)
    runs = []
    for subset in (None, {"fraction": 1.0, "block": 128}):
        x = x0.copy()
        opt = optim.MeZO([x[:1234], x[1234:]], lr=1e-2, seed=2, subset=subset)
        for _ in range(3):
            opt.step(lambda x=x: float(np.sum(x * x)))
        runs.append(x)
    np.testing.assert_array_equal(runs[0], runs[1])


def test_choice_is_deterministic_and_uniform():
    n, block, fraction, steps = 40 * 250, 250, 0.25, 4000
    make = lambda seed: optim.MeZO(
        [np.zeros(n)], seed=seed, subset={"fraction": fraction, "block": block}
    )
    opt, again, other = make(1), make(1), make(2)
    counts = np.zeros(40, dtype=np.int64)
    for step in range(steps):
        r = opt.subset_ranges(step)
        np.testing.assert_array_equal(r, again.subset_ranges(step))
        counts[r[:, 0] // block] += 1
    for step in range(5):
        check_blocks(opt.subset_ranges(step), n, block, fraction)
        assert not np.array_equal(opt.subset_ranges(step), opt.subset_ranges(step + 1))
        assert not np.array_equal(opt.subset_ranges(step), other.subset_ranges(step))
    assert counts.sum() == steps * 10
    # Each block is in a step's choice with probability k / num_blocks = 0.25, independently
    # across steps: 6 standard deviations of the binomial count.
    sd = np.sqrt(steps * fraction * (1 - fraction))
    assert np.all(np.abs(counts - steps * fraction) < 6 * sd), counts


def test_block_tensor_chooses_whole_parameters(rng):
    params = [rng.standard_normal(s) for s in (50, 300, 7, 1000, 20)]
    before = [p.copy() for p in params]
    opt = optim.MeZO(params, lr=1e-2, seed=4, subset={"fraction": 0.4, "block": "tensor"})
    opt.step(lambda: sum(float(np.sum(p * p)) for p in params))
    offsets = np.cumsum([0, 50, 300, 7, 1000, 20])
    ranges = opt.subset_ranges()
    assert len(ranges) == 2  # round(0.4 * 5)
    chosen = [int(np.searchsorted(offsets, s)) for s, _ in ranges]
    np.testing.assert_array_equal(ranges[:, 1], offsets[np.array(chosen) + 1])
    for i, (p, b) in enumerate(zip(params, before)):
        if i in chosen:
            assert np.all(p != b)
        else:
            np.testing.assert_array_equal(p, b)


def test_a_step_with_fraction_0_1_touches_a_tenth(rng, monkeypatch):
    sizes, block = [40_000, 25_000, 35_000], 1000
    n = sum(sizes)
    params = [rng.standard_normal(s).astype(np.float32) for s in sizes]
    x0 = np.concatenate(params)
    opt = optim.MeZO(params, lr=1e-2, seed=8, subset={"fraction": 0.1, "block": block})
    # Count the elements every kernel call is handed: the work of the step.
    processed = []
    kernel = _core._zo_restore_update
    monkeypatch.setattr(
        _core, "_zo_restore_update", lambda *a: (processed.append(a[5].size), kernel(*a))
    )
    opt.step(lambda: sum(float(np.sum(p * p)) for p in params))
    changed = np.concatenate(params) != x0
    assert 0.099 * n <= changed.sum() <= 0.1 * n
    assert not np.any(changed[~inside(opt.subset_ranges(), n)])
    assert sum(processed) == 3 * n // 10  # +eps z, -2 eps z, restore and update


def test_float16_subset_restores_exactly_and_steps_only_the_blocks(rng):
    theta = rng.standard_normal(3000).astype(np.float16)
    before = theta.copy()
    f = lambda: float(np.sum(theta.astype(np.float64) ** 2))
    opt = optim.MeZO([theta], lr=0.0, seed=1, subset={"fraction": 0.5, "block": 100})
    for _ in range(50):
        opt.step(f)
    np.testing.assert_array_equal(theta.view(np.uint16), before.view(np.uint16))
    opt = optim.MeZO([theta], lr=0.05, eps=1e-2, seed=1, subset={"fraction": 0.5, "block": 100})
    opt.step(f)
    keep = inside(opt.subset_ranges(), theta.size)
    np.testing.assert_array_equal(theta[~keep].view(np.uint16), before[~keep].view(np.uint16))
    assert np.mean(theta[keep] != before[keep]) > 0.5
    np.testing.assert_array_equal(theta, opt._views[0][0].astype(np.float16))


def test_state_dict_resumes_bit_exactly(rng):
    n = 3000
    w = rng.uniform(0.5, 2, n)
    subset = {"fraction": 0.2, "block": 64}
    for cls, kw in [(optim.MeZO, {"lr": 1e-3}), (optim.SPSA, {}), (optim.MeZO, {"num_queries": 3})]:
        x = rng.standard_normal(n).astype(np.float32)
        f = lambda x=x: float(np.sum(w * x * x))
        opt = cls([x[:1000], x[1000:]], seed=3, subset=subset, **kw)
        for _ in range(5):
            opt.step(f)
        saved, x_saved = opt.state_dict(), x.copy()
        for _ in range(5):
            opt.step(f)
        x2 = x_saved.copy()
        f2 = lambda x2=x2: float(np.sum(w * x2 * x2))
        opt2 = cls([x2[:1000], x2[1000:]], seed=999, subset=subset, **kw)
        opt2.load_state_dict(saved)
        for _ in range(5):
            opt2.step(f2)
        np.testing.assert_array_equal(x2, x, err_msg=cls.__name__)
        for other in (None, {"fraction": 0.2, "block": 65}):
            with pytest.raises(ValueError, match="subset"):
                cls([x2[:1000], x2[1000:]], subset=other, **kw).load_state_dict(saved)


def test_ask_tell_perturbs_only_the_steps_blocks(rng):
    d = 500
    f = lambda p: float(np.sum(p * p))
    x0 = rng.standard_normal(d)
    subset = {"fraction": 0.3, "block": 50}
    at = optim.AskTell(x0, method="mezo", lr=1e-2, seed=3, subset=subset)
    theta = x0.copy()
    opt = optim.MeZO([theta], lr=1e-2, seed=3, subset=subset)
    for step in range(3):
        points = at.ask()
        keep = inside(at.opt.subset_ranges(step), d)
        np.testing.assert_array_equal(
            points[:, ~keep], np.broadcast_to(at.x[~keep], (2, d - keep.sum()))
        )
        at.tell([f(p) for p in points])
        opt.step(lambda: f(theta))
    np.testing.assert_allclose(at.x, theta, rtol=1e-8, atol=1e-9)


# The ill-conditioned quadratic of test_engine.py (eigenvalues i^-3 in 10,000 dimensions).
D = 10_000
EIGS = 1.0 / np.arange(1, D + 1) ** 3


def evaluations_to_drop_100x(opt, x, budget):
    f = lambda: float(np.dot(EIGS, x * x))
    f0, evals = f(), 0
    while evals < budget and f() > f0 / 100:
        opt.step(f)
        evals += opt.evaluations_per_step()
    assert f() <= f0 / 100, f"{f():.3g} after {evals} evaluations (start {f0:.3g})"
    return evals


def test_quarter_subset_drops_the_quadratic_100x_within_4x_mezos_budget():
    # Over 4 seeds (single runs vary 3x: the top eigenvalues sit in one block, which a step
    # chooses a quarter of the time), subset MeZO needs at most 4x plain MeZO's evaluations.
    plain = subset = 0
    for seed in range(1, 5):
        x = np.ones(D)
        plain += evaluations_to_drop_100x(optim.MeZO([x], lr=0.25, eps=1e-4, seed=seed), x, 60_000)
        x = np.ones(D)
        opt = optim.MeZO([x], lr=0.25, eps=1e-4, seed=seed, subset={"fraction": 0.25, "block": 10})
        subset += evaluations_to_drop_100x(opt, x, 4 * 60_000)
    assert subset <= 4 * plain, (subset, plain)


def test_bad_subset_input_raises_naming_the_argument():
    p = [np.zeros(10)]
    with pytest.raises(TypeError, match="subset"):
        optim.MeZO(p, subset=0.5)
    with pytest.raises(ValueError, match="fraction"):
        optim.MeZO(p, subset={"block": 4})
    with pytest.raises(ValueError, match="unknown keys"):
        optim.MeZO(p, subset={"fraction": 0.5, "size": 4})
    for fraction in (0, 0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"subset\['fraction'\]"):
            optim.MeZO(p, subset={"fraction": fraction})
    for fraction in ("half", True, None):
        with pytest.raises(TypeError, match=r"subset\['fraction'\]"):
            optim.MeZO(p, subset={"fraction": fraction})
    for block in (0, -3, "rows"):
        with pytest.raises(ValueError, match=r"subset\['block'\]"):
            optim.MeZO(p, subset={"fraction": 0.5, "block": block})
    for block in (2.0, True, None):
        with pytest.raises(TypeError, match=r"subset\['block'\]"):
            optim.MeZO(p, subset={"fraction": 0.5, "block": block})
    with pytest.raises(ValueError, match="sparsity"):
        optim.MeZO(p, sparsity=0.5, subset={"fraction": 0.5})
    with pytest.raises(ValueError, match="subspace"):
        optim.MeZO(p, subspace={"history": 4}, subset={"fraction": 0.5})
    opt = optim.MeZO(p, subset={"fraction": 0.5, "block": 2})
    with pytest.raises(ValueError, match="no step"):
        opt.subset_ranges()
    with pytest.raises(ValueError, match="step"):
        opt.subset_ranges(-1)
    assert optim.MeZO(p).subset_ranges(0) is None
