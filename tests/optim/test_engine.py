"""The perturbation engine under every optimiser: Philox known answers, z identical across
ISAs, threads and offsets, restore bounds, the kernels' in-place contract, resume, closure
errors, bad input, and every optimiser on an ill-conditioned quadratic."""

import functools

import numpy as np
import pytest
import softzo
from softzo import _core, _testing, optim
from zo_testing import DISTS, fill, quadratic

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
    assert _testing.philox4x32_10(ctr, key) == expected


def test_rademacher_bits_follow_the_counter_layout():
    # Element g uses bit g & 31 of word (g & 127) >> 5 of block g >> 7 (seed=7: key (7, 0)).
    z = fill("rademacher", 256, np.float32)
    for block in range(2):
        words = _testing.philox4x32_10([block, 0, 1, 3], [7, 0])
        bits = [(words[(g & 127) >> 5] >> (g & 31)) & 1 for g in range(128)]
        np.testing.assert_array_equal(z[128 * block : 128 * (block + 1)], np.where(bits, 1, -1))


@pytest.mark.parametrize("dist", list(DISTS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_z_identical_for_every_isa_thread_count_and_offset(dist, dtype):
    n = 3 * 65536 + 77  # several chunks, ragged end
    ref = None
    for isa in softzo.info()["isas_available"]:
        with softzo.using_isa(isa):
            for threads in (1, 2):
                z = fill(dist, n, dtype, threads=threads)
                ref = z if ref is None else ref
                np.testing.assert_array_equal(z, ref, err_msg=f"{isa} threads={threads}")
            # A piece at an offset sees the same z as the whole.
            np.testing.assert_array_equal(fill(dist, 1000, dtype, offset=12345), ref[12345:13345])


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
