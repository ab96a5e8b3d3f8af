"""Zeroth-order engine and optimisers: Philox known answers, z identical across ISAs and
threads, restore bounds, one-step updates against float64 NumPy, convergence, resume."""

import functools
import io
import sys

import numpy as np
import pytest
import softzo
from softzo import _core, optim
from softzo.optim._methods import METHODS

DISTS = {"rademacher": 0, "gaussian": 1, "segmented": 2}


# Random123's philox4x32_10 known-answer vectors (counter, key, output).
KAT = [
    ([0, 0, 0, 0], [0, 0], [0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8]),
    ([0xFFFFFFFF] * 4, [0xFFFFFFFF] * 2, [0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD]),
    (
        [0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344],
        [0xA4093822, 0x299F31D0],
        [0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1],
    ),
]


@pytest.mark.parametrize("ctr,key,expected", KAT)
def test_philox_known_answers(ctr, key, expected):
    assert _core._philox4x32_10(ctr, key) == expected


def fill(dist, n, dtype, offset=0, seed=7, step=3, direction=1, threads=1):
    z = np.empty(n, dtype=dtype)
    _core._zo_fill(seed, step, direction, DISTS[dist], offset, z, threads)
    return z


def test_rademacher_bits_follow_the_counter_layout():
    # Element g uses bit g & 31 of word (g & 127) >> 5 of block g >> 7 (seed=7: key (7, 0)).
    z = fill("rademacher", 256, np.float32)
    for block in range(2):
        words = _core._philox4x32_10([block, 0, 1, 3], [7, 0])
        bits = [(words[(g & 127) >> 5] >> (g & 31)) & 1 for g in range(128)]
        np.testing.assert_array_equal(z[128 * block : 128 * (block + 1)], np.where(bits, 1, -1))


@pytest.mark.parametrize("dist", list(DISTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_z_identical_for_every_isa_thread_count_and_offset(dist, dtype):
    n = 3 * 65536 + 77  # several chunks, ragged end
    before = softzo.info()["isa"]
    try:
        ref = None
        for isa in softzo.info()["isas_available"]:
            softzo.set_isa(isa)
            for threads in (1, 2):
                z = fill(dist, n, dtype, threads=threads)
                ref = z if ref is None else ref
                np.testing.assert_array_equal(z, ref, err_msg=f"{isa} threads={threads}")
            # A piece at an offset sees the same z as the whole.
            np.testing.assert_array_equal(fill(dist, 1000, dtype, offset=12345), ref[12345:13345])
    finally:
        softzo.set_isa(before)


def test_distributions_have_their_moments():
    g = fill("gaussian", 1_000_000, np.float64)
    assert abs(g.mean()) < 5e-3 and abs(g.var() - 1) < 5e-3
    assert abs(np.mean(g**4) - 3) < 0.05  # kurtosis of a normal
    r = fill("rademacher", 100_000, np.float32)
    assert set(np.unique(r)) == {-1.0, 1.0} and abs(r.mean()) < 0.02
    s = fill("segmented", 100_000, np.float32)
    assert np.all((np.abs(s) >= 0.5) & (np.abs(s) <= 1.0)) and abs(np.mean(s > 0) - 0.5) < 0.01


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_perturb_then_unperturb_restores_within_two_roundings(isa, dtype, rng):
    theta = rng.standard_normal(100_003).astype(dtype)
    orig = theta.copy()
    eps = 1e-3
    for c in (eps, -2 * eps, eps):  # MeZO's +eps, -2 eps, restore
        _core._zo_restore_update(1, 0, 0, 1, 0, theta, c, 0.0, 0.0, 0.0, None, -1.0, 1)
    z = fill("gaussian", theta.size, dtype, seed=1, step=0, direction=0)
    # Each addition rounds by at most half an ulp of its result: three additions.
    ulp = np.spacing((np.abs(orig) + 2 * eps * np.abs(z)).astype(dtype))
    assert np.all(np.abs(theta - orig) <= 1.5 * ulp)


def quadratic(weights, center):
    return lambda x: float(np.sum(weights * (x - center) ** 2))


@pytest.mark.parametrize("dist", ["gaussian", "rademacher"])
def test_mezo_step_equals_numpy_reference(dist, rng):
    d = 1000
    w, c = rng.uniform(0.5, 2, d), rng.standard_normal(d)
    f = quadratic(w, c)
    theta = rng.standard_normal(d)
    x0 = theta.copy()
    lr, eps, wd = 1e-3, 1e-3, 0.01
    opt = optim.MeZO([theta], lr=lr, eps=eps, weight_decay=wd, distribution=dist, seed=5)
    loss = opt.step(lambda theta=theta: f(theta))
    z = fill(dist, d, np.float64, seed=5, step=0, direction=0)
    fp, fm = f(x0 + eps * z), f(x0 - eps * z)
    expected = x0 * (1 - lr * wd) - lr * (fp - fm) / (2 * eps) * z
    # The optimiser evaluates f at theta moved in place (+eps z, then -2 eps z), which differs
    # from x0 - eps z by roundings of ~1e-16; the difference quotient divides that by 2 eps.
    np.testing.assert_allclose(theta, expected, rtol=1e-12, atol=1e-11)
    assert loss == pytest.approx((fp + fm) / 2, rel=1e-12)


def test_zo_sgd_and_adam_steps_equal_numpy_reference(rng):
    d = 500
    w, c = rng.uniform(0.5, 2, d), rng.standard_normal(d)
    f = quadratic(w, c)
    for cls, kw in [
        (optim.ZOSGD, {"momentum": 0.9}),
        (optim.ZOSGD, {"sign": True}),
        (optim.ZOAdam, {}),
    ]:
        theta = rng.standard_normal(d)
        x = theta.copy()
        opt = cls([theta], lr=1e-2, eps=1e-3, num_queries=2, seed=9, **kw)
        m = np.zeros(d)
        v = np.zeros(d)
        for k in range(3):
            g = np.zeros(d)
            for q in range(2):
                z = fill("gaussian", d, np.float64, seed=9, step=k, direction=q)
                g += (f(x + 1e-3 * z) - f(x - 1e-3 * z)) / (2e-3) * z / 2
            if cls is optim.ZOAdam:
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g * g
                x = x - 1e-2 * (m / (1 - 0.9 ** (k + 1))) / (
                    np.sqrt(v / (1 - 0.999 ** (k + 1))) + 1e-8
                )
            elif kw.get("sign"):  # ZO-SGD-Sign: sign of each projected gradient, times z
                zs = [fill("gaussian", d, np.float64, seed=9, step=k, direction=q) for q in (0, 1)]
                x = x - 1e-2 * sum(np.sign(f(x + 1e-3 * z) - f(x - 1e-3 * z)) * z / 2 for z in zs)
            else:
                m = 0.9 * m + g
                x = x - 1e-2 * m
            opt.step(lambda theta=theta: f(theta))
            # As in the MeZO test: f is evaluated at in-place moved points (roundings of 1e-16
            # divided by 2 eps), and the reference repeats the difference quotient itself.
            np.testing.assert_allclose(theta, x, rtol=1e-9, atol=1e-10, err_msg=cls.__name__)


# An ill-conditioned quadratic (eigenvalues i^-3, condition number 1e12) in 10,000 dimensions:
# zeroth-order rates depend on the trace (the effective rank), as the MeZO paper argues.
D = 10_000
EIGS = 1.0 / np.arange(1, D + 1) ** 3


@pytest.mark.parametrize(
    "make,budget",
    [
        (lambda p: optim.MeZO(p, lr=0.25, eps=1e-4, seed=1), 60_000),
        (lambda p: optim.SPSA(p, a=5.0, c=1e-3, A=100, alpha=0.602, seed=1), 60_000),
        (lambda p: optim.ZOSGD(p, lr=0.1, eps=1e-4, momentum=0.5, seed=1), 60_000),
        (lambda p: optim.ZOAdam(p, lr=0.01, eps=1e-4, seed=1), 60_000),
        (lambda p: optim.MeZO(p, lr=0.3, eps=1e-4, sparsity=0.2, seed=1), 60_000),
        (lambda p: optim.HiZOO(p, lr=0.2, eps=1e-4, hessian_smooth=1e-3, seed=1), 60_000),
        (lambda p: optim.ZOSGD(p, lr=0.25, eps=1e-4, conservative=True, seed=1), 60_000),
        (lambda p: optim.MeZO(p, lr=0.25, eps=1e-4, seed=1, subspace={"history": 32}), 60_000),
    ],
    ids=[
        "mezo",
        "spsa",
        "zo_sgd_momentum",
        "zo_adam",
        "sparse_mezo",
        "hizoo",
        "zo_sgd_cons",
        "mezo_subspace",
    ],
)
def test_ill_conditioned_quadratic_drops_100x(make, budget):
    x = np.ones(D)
    f = lambda: float(np.dot(EIGS, x * x))
    f0 = f()
    opt = make([x])
    evals = 0
    while evals < budget and f() > f0 / 100:
        opt.step(f)
        evals += opt.evaluations_per_step()
    assert f() <= f0 / 100, f"{f():.3g} after {evals} evaluations (start {f0:.3g})"


def test_mezo_trains_logistic_regression_on_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    from softzo import losses

    X, y = datasets.load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    Xtr, ytr = X[train], y[train]
    W = np.zeros((64, 10))
    b = np.zeros(10)

    def loss():  # no gradient is ever computed
        return losses.cross_entropy(Xtr @ W + b, ytr)

    opt = optim.MeZO([W, b], lr=2e-3, eps=1e-3, seed=0)
    for _ in range(4000):
        opt.step(loss)
    accuracy = np.mean(np.argmax(X[test] @ W + b, 1) == y[test])
    assert accuracy >= 0.90


def test_state_dict_resumes_bit_exactly(rng):
    d = 300
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    sparse = functools.partial(optim.MeZO, sparsity=0.5)
    for cls in (optim.MeZO, optim.SPSA, optim.ZOAdam, optim.HiZOO, sparse):
        theta = rng.standard_normal(d)
        opt = cls([theta], seed=3)
        for _ in range(5):
            opt.step(lambda theta=theta: f(theta))
        saved, x_saved = opt.state_dict(), theta.copy()
        for _ in range(5):
            opt.step(lambda theta=theta: f(theta))
        theta2 = x_saved.copy()
        opt2 = cls([theta2], seed=999)
        opt2.load_state_dict(saved)
        for _ in range(5):
            opt2.step(lambda theta2=theta2: f(theta2))
        np.testing.assert_array_equal(theta2, theta, err_msg=str(cls))


def test_closure_errors_restore_the_parameters(rng):
    theta = rng.standard_normal(1000).astype(np.float32)
    orig = theta.copy()
    opt = optim.MeZO([theta], lr=1e-2, eps=1e-2, seed=2)
    calls = []

    def failing():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return 1.0

    with pytest.raises(RuntimeError, match="boom"):
        opt.step(failing)
    np.testing.assert_allclose(theta, orig, rtol=0, atol=4 * np.spacing(np.float32(3.0)))
    with pytest.raises(ValueError, match="non-finite"):
        opt.step(lambda: float("nan"))
    np.testing.assert_allclose(theta, orig, rtol=0, atol=8 * np.spacing(np.float32(3.0)))


def test_torch_parameters_are_updated_in_place():
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(8, 1)
    ptrs = [p.data_ptr() for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    x, y = torch.randn(32, 8), torch.randn(32, 1)
    opt = optim.MeZO(list(model.parameters()), lr=1e-2, eps=1e-3)
    with torch.no_grad():
        opt.step(lambda: torch.mean((model(x) - y) ** 2))
    assert [p.data_ptr() for p in model.parameters()] == ptrs
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


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


def test_bad_input_raises_naming_the_argument(rng):
    with pytest.raises(TypeError, match=r"params\[0\]"):
        optim.MeZO([np.zeros(3, dtype=np.int64)])
    with pytest.raises(ValueError, match=r"params\[0\]"):
        optim.MeZO([np.zeros((3, 4))[:, ::2]])
    with pytest.raises(ValueError, match="distribution"):
        optim.MeZO([np.zeros(3)], distribution="cauchy")
    with pytest.raises(ValueError, match="eps"):
        optim.MeZO([np.zeros(3)], eps=0)
    with pytest.raises(ValueError, match="state_dict"):
        optim.MeZO([np.zeros(3)]).load_state_dict(optim.MeZO([np.zeros(4)]).state_dict())
    with pytest.raises(ValueError, match="state_dict"):
        optim.MeZO([np.zeros(3)]).load_state_dict(optim.SPSA([np.zeros(3)]).state_dict())
    with pytest.raises(ValueError, match="method"):
        optim.minimize(lambda x: 0.0, np.zeros(2), method="nelder")


def test_spsa_gc_step_equals_numpy_reference(rng):
    d = 200
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    theta = rng.standard_normal(d)
    x = theta.copy()
    opt = optim.SPSA_GC([theta], a=0.01, c=0.01, num_queries=3, seed=6)
    m = np.zeros(d)
    for k in range(3):
        ck = 0.01 / (k + 1) ** 0.1
        g = np.zeros(d)
        for q in range(3):
            z = fill("rademacher", d, np.float64, seed=6, step=k, direction=q)
            g += (f(x + ck * z) - f(x - ck * z)) / (2 * ck) * z / 3
        m = 0.9 * m + g
        x = x - 0.01 / (k + 1) ** 0.4 * (g + 0.9 * m)
        opt.step(lambda: f(theta))
        np.testing.assert_allclose(theta, x, rtol=1e-9, atol=1e-10)


def test_rge_and_cge_steps_equal_numpy_reference(rng):
    d = 50
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    theta = rng.standard_normal(d)
    x = theta.copy()
    optim.RGE([theta], lr=1e-2, mu=1e-4, num_queries=4, seed=8).step(lambda: f(theta))
    g = np.zeros(d)
    for q in range(4):
        z = fill("gaussian", d, np.float64, seed=8, step=0, direction=q)
        u = z / np.linalg.norm(z)
        g += d / 4 * (f(x + 1e-4 * u) - f(x)) / 1e-4 * u
    np.testing.assert_allclose(theta, x - 1e-2 * g, rtol=1e-8, atol=1e-9)

    theta = rng.standard_normal(d)
    x = theta.copy()
    optim.CGE([theta], lr=1e-2, mu=1e-4).step(lambda: f(theta))
    eye = np.eye(d)
    g = np.array([(f(x + 1e-4 * e) - f(x - 1e-4 * e)) / 2e-4 for e in eye])
    np.testing.assert_allclose(theta, x - 1e-2 * g, rtol=1e-10, atol=1e-12)


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


@pytest.mark.parametrize("method", ["mezo", "spsa", "spsa_gc", "zo_sgd", "zo_adam"])
def test_ask_tell_follows_the_same_path_as_step(method, rng):
    d = 64
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    x0 = rng.standard_normal(d)
    options = {"seed": 3, "num_queries": 2}
    if method in ("mezo", "zo_sgd", "zo_adam"):
        options.update(lr=1e-2, eps=1e-3)
    at = optim.AskTell(x0, method=method, **options)
    theta = x0.copy()
    opt = METHODS[method]([theta], **options)
    for _ in range(4):
        # SPSA's a="auto" evaluates its calibration probes first, on the first step only.
        rows = 4 + at.opt.calibration_evaluations()
        points = at.ask()
        assert points.shape == (rows, d)
        at.tell([f(p) for p in points])
        opt.step(lambda: f(theta))
    # step() evaluates at points moved in place (roundings of 1e-16 over 2 eps).
    np.testing.assert_allclose(at.x, theta, rtol=1e-8, atol=1e-9)
    with pytest.raises(ValueError, match="values"):
        at.ask()
        at.tell([1.0])


def test_in_place_buffers_are_never_silently_converted():
    # A float64 buffer with NumPy scalar coefficients must be updated in place: nanobind's
    # implicit conversion would otherwise hand the float32 overload a copy.
    theta = np.zeros(16)
    _core._zo_restore_update(1, 0, 0, 1, 0, theta, np.float64(1.0), 0.0, 0.0, 0.0, None, -1.0, 1)
    np.testing.assert_array_equal(
        theta, fill("gaussian", 16, np.float64, seed=1, step=0, direction=0)
    )
    with pytest.raises(TypeError):
        _core._zo_restore_update(
            1, 0, 0, 1, 0, np.zeros(4, np.float16), 1.0, 0.0, 0.0, 0.0, None, -1.0, 1
        )


# ---- Sparse MeZO: a 1-bit mask decided from the unperturbed theta ------------------------------


def packed_mask(keep):
    """NumPy's own packing of a boolean mask into little-endian uint32 words."""
    words = (keep.size + 31) // 32
    padded = np.zeros(32 * words, dtype=bool)
    padded[: keep.size] = keep
    return np.packbits(padded, bitorder="little").view(np.uint32)


@pytest.mark.parametrize("dist", ["gaussian", "rademacher"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mask_kernels_touch_exactly_the_masked_entries(isa, dist, dtype, rng):
    n = 2 * 65536 + 8192 + 45  # chunks, mask blocks and a ragged last word
    theta = rng.standard_normal(n).astype(dtype)
    theta[::1001] = np.nan  # NaN never takes part
    orig = theta.copy()
    thr = 0.7
    keep = np.abs(orig) <= thr  # False for NaN
    bits = np.full((n + 31) // 32, 0xFFFFFFFF, dtype=np.uint32)  # stale bits are overwritten
    call = functools.partial(_core._zo_restore_update, 5, 2, 1, DISTS[dist], 77)
    call(theta, 1e-2, 0.0, 0.0, 0.0, bits, thr, 2)  # build the mask, then +eps z
    np.testing.assert_array_equal(bits, packed_mask(keep))
    dense = orig.copy()
    call(dense, 1e-2, 0.0, 0.0, 0.0, None, -1.0, 1)  # the unmasked kernel on every entry
    np.testing.assert_array_equal(theta[keep], dense[keep])
    np.testing.assert_array_equal(theta[~keep].view(np.uint8), orig[~keep].view(np.uint8))
    # The fused restore and update, with the stored bits (no rebuild).
    call(theta, -1e-2, 1e-3, 2.0, 0.1, bits, -1.0, 2)
    call(dense, -1e-2, 1e-3, 2.0, 0.1, None, -1.0, 1)
    np.testing.assert_array_equal(theta[keep], dense[keep])
    np.testing.assert_array_equal(theta[~keep].view(np.uint8), orig[~keep].view(np.uint8))
    with pytest.raises(ValueError, match="mask"):
        call(theta, -1e-2, 0.0, 0.0, 0.0, bits[:-1], -1.0, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_mezo_step_equals_numpy_reference(isa, dtype, rng):
    d = 3 * optim.MASK_SAMPLE + 7  # the threshold comes from a sample
    w, c = rng.uniform(0.5, 2, d), rng.standard_normal(d)
    f = quadratic(w, c)
    theta = rng.standard_normal(d).astype(dtype)
    x0 = theta.copy()
    lr, eps, wd, s = 1e-3, 1e-3, 0.01, 0.75
    opt = optim.MeZO([theta], lr=lr, eps=eps, weight_decay=wd, sparsity=s, seed=5)
    opt.step(lambda: f(theta.astype(np.float64)))
    keep = opt.mask(0)
    # The mask is |theta| <= the sampled quantile, and holds about 1 - s of the entries
    # (the estimator's standard deviation is 0.0034 here).
    np.testing.assert_array_equal(keep, np.abs(x0) <= opt._thresholds[0])
    assert abs(keep.mean() - (1 - s)) < 0.02
    # Entries outside the mask are bitwise unchanged by the whole step.
    np.testing.assert_array_equal(theta[~keep].view(np.uint8), x0[~keep].view(np.uint8))
    # The others took the MeZO step with z restricted to the mask, in float64.
    z = fill("gaussian", d, dtype, seed=5, step=0, direction=0).astype(np.float64) * keep
    x = x0.astype(np.float64)
    # The closure saw the points in theta's dtype.
    points = [(x + sgn * np.float64(dtype(eps)) * z).astype(dtype) for sgn in (1, -1)]
    pg = (f(points[0].astype(np.float64)) - f(points[1].astype(np.float64))) / (2 * eps)
    expected = x * (1 - lr * wd) - lr * pg * z
    tol = 1e-11 if dtype == np.float64 else 2e-6
    np.testing.assert_allclose(theta[keep], expected[keep], rtol=tol, atol=tol)


def test_sparse_mezo_restores_within_the_rounding_bound(rng):
    theta = rng.standard_normal(50_000).astype(np.float32)
    orig = theta.copy()
    opt = optim.MeZO([theta], lr=0.0, eps=1e-3, sparsity=0.5, seed=2)
    opt.step(lambda: 0.0)
    keep = opt.mask(0)
    z = fill("gaussian", theta.size, np.float32, seed=2, step=0, direction=0)
    ulp = np.spacing((np.abs(orig) + 2e-3 * np.abs(z)).astype(np.float32))
    assert np.all(np.abs(theta - orig)[keep] <= 1.5 * ulp[keep])
    np.testing.assert_array_equal(theta[~keep], orig[~keep])


# ---- HiZOO --------------------------------------------------------------------------------------


def test_hizoo_steps_equal_numpy_reference(isa, rng):
    d = 1000
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    theta = rng.standard_normal(d)
    x, sigma = theta.copy(), np.full(d, 2.0)
    lr, eps, alpha, wd = 1e-2, 1e-3, 0.1, 0.01
    opt = optim.HiZOO(
        [theta], lr=lr, eps=eps, hessian_smooth=alpha, sigma0=2.0, weight_decay=wd, seed=4
    )
    tol = 0.0
    for k in range(3):
        z = fill("gaussian", d, np.float64, seed=4, step=k, direction=0)
        u = z / np.sqrt(sigma)
        f0, fp, fm = f(x), f(x + eps * u), f(x - eps * u)
        curvature = fp + fm - 2 * f0
        sigma = (1 - alpha) * sigma + alpha * abs(curvature) / (2 * eps**2) * sigma * z**2
        x = x * (1 - lr * wd) - lr * (fp - fm) / (2 * eps) * z / np.sqrt(sigma)
        assert opt.step(lambda: f(theta)) == pytest.approx(f0, rel=1e-14)
        # f is evaluated at points moved in place, which moves each f by a few ulp of f; the
        # curvature f+ + f- - 2 f0 cancels them, so Sigma's relative error grows by about
        # 16 ulp(f) / |curvature| per step (and theta's step by half that through sqrt).
        tol += 16 * np.spacing(max(f0, fp, fm)) / abs(curvature)
        np.testing.assert_allclose(opt.sigma[0], sigma, rtol=tol)
        np.testing.assert_allclose(theta, x, rtol=tol, atol=1e-10)
    assert tol < 1e-6  # the check above still means something


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dist", ["gaussian", "rademacher"])
def test_hizoo_kernels_are_bitwise_identical_across_isas(dtype, dist, rng):
    d = 65536 + 1003
    start = rng.standard_normal(d).astype(dtype)
    f = quadratic(rng.uniform(0.5, 2, d), np.zeros(d))
    before = softzo.info()["isa"]
    results = {}
    try:
        for isa in softzo.info()["isas_available"]:
            softzo.set_isa(isa)
            theta = start.copy()
            opt = optim.HiZOO(
                [theta],
                lr=1e-3,
                eps=1e-3,
                hessian_smooth=0.01,
                distribution=dist,
                seed=8,
                num_threads=2,
            )
            for _ in range(2):
                opt.step(lambda theta=theta: f(theta))
            results[isa] = (theta, opt.sigma[0])
    finally:
        softzo.set_isa(before)
    ref = results["scalar"]
    for isa, (theta, sigma) in results.items():
        np.testing.assert_array_equal(theta, ref[0], err_msg=isa)
        np.testing.assert_array_equal(sigma, ref[1], err_msg=isa)


# ---- ZO-SGD-Cons ------------------------------------------------------------------------------


def test_zo_sgd_conservative_keeps_the_best_candidate(rng):
    d = 300
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    theta = rng.standard_normal(d)
    x = theta.copy()
    eps = 1e-3
    opt = optim.ZOSGD([theta], lr=0.005, eps=eps, conservative=True, num_queries=2, seed=3)
    assert opt.evaluations_per_step() == 7
    chosen = set()
    for k in range(8):
        # Small steps descend; from step 4 on they overshoot and theta must stay.
        lr = opt.param_groups[0]["lr"] = 0.005 if k < 4 else 0.05
        g = np.zeros(d)
        for q in range(2):
            z = fill("gaussian", d, np.float64, seed=3, step=k, direction=q)
            g += (f(x + eps * z) - f(x - eps * z)) / (2 * eps) * z / 2
        cands = [x, x - lr * g, x + lr * g]
        best = int(np.argmin([f(c) for c in cands]))
        chosen.add(best)
        x = cands[best]
        opt.step(lambda: f(theta))
        np.testing.assert_allclose(theta, x, rtol=1e-9, atol=1e-10)
    assert chosen == {0, 1}  # both outcomes were exercised


# ---- progress reporting ----------------------------------------------------------------------


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


# ---- float16 / bfloat16 parameters: float32 master, exact restore ----------------------------


def test_float16_parameters_restore_exactly_with_lr_zero(rng):
    torch = pytest.importorskip("torch")
    params = [
        torch.randn(300, dtype=torch.float16),
        torch.randn(7, 11, dtype=torch.bfloat16),
        rng.standard_normal(501).astype(np.float16),
    ]
    before = [p.clone() if hasattr(p, "clone") else p.copy() for p in params]

    def loss():
        return sum(
            float(np.asarray(p.float() if hasattr(p, "float") else p, np.float64).sum())
            for p in params
        )

    for cls, kw in [(optim.MeZO, {"sparsity": 0.5}), (optim.HiZOO, {}), (optim.RGE, {})]:
        opt = cls(params, lr=0.0, seed=1, **kw)
        for _ in range(100):
            opt.step(loss)
        for p, b in zip(params, before):
            if hasattr(p, "clone"):
                assert torch.equal(p.view(torch.int16), b.view(torch.int16)), cls.__name__
            else:
                np.testing.assert_array_equal(p.view(np.uint16), b.view(np.uint16))


def test_float16_step_equals_reference(rng):
    d = 2000
    w, c = rng.uniform(0.5, 2, d), rng.standard_normal(d)
    f = quadratic(w, c)
    theta = rng.standard_normal(d).astype(np.float16)
    master = theta.astype(np.float32)
    lr, eps = 1e-2, 1e-2
    opt = optim.MeZO([theta], lr=lr, eps=eps, seed=6)
    opt.step(lambda: f(theta.astype(np.float64)))
    # The closure saw round16(master ± eps z); the master takes the step in float32 and the
    # parameter is the master rounded.
    z = fill("gaussian", d, np.float32, seed=6, step=0, direction=0)
    m64, z64 = master.astype(np.float64), z.astype(np.float64)
    points = [
        (m64 + s * np.float64(np.float32(eps)) * z64).astype(np.float32).astype(np.float16)
        for s in (1, -1)
    ]
    pg = (f(points[0].astype(np.float64)) - f(points[1].astype(np.float64))) / (2 * eps)
    expected = m64 - lr * pg * z64
    np.testing.assert_allclose(opt._views[0][0], expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(theta, opt._views[0][0].astype(np.float16))
    assert np.mean(theta != master.astype(np.float16)) > 0.5  # the step did move it
    with pytest.raises(TypeError, match="CGE"):
        optim.CGE([theta])


def test_new_options_reject_bad_input():
    with pytest.raises(ValueError, match="sparsity"):
        optim.MeZO([np.zeros(3)], sparsity=1.0)
    with pytest.raises(TypeError, match="sparsity"):
        optim.MeZO([np.zeros(3)], sparsity="half")
    with pytest.raises(ValueError, match="sparsity and subspace"):
        optim.MeZO([np.zeros(3)], sparsity=0.5, subspace={"history": 4})
    with pytest.raises(ValueError, match="hessian_smooth"):
        optim.HiZOO([np.zeros(3)], hessian_smooth=1.0)
    with pytest.raises(ValueError, match="sigma0"):
        optim.HiZOO([np.zeros(3)], sigma0=0.0)
    with pytest.raises(TypeError, match=r"params\[0\]"):
        optim.MeZO([np.zeros(3, dtype=np.int32)])
