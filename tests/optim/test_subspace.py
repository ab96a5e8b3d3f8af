"""ZOODiP's subspace gradient (``subspace=`` of the two-point optimisers): steps against a
float64 NumPy reference whose principal directions come from an eigendecomposition of the
history's scatter matrix, the projection's algebra, bit-exact resume and its effect."""

import numpy as np
import pytest
from softzo import _core, optim
from zo_testing import quadratic

DIST = {"rademacher": 0, "gaussian": 1}


def fill(n, seed, step, direction, dist):
    z = np.empty(n)
    _core._zo_fill(seed, step, direction, DIST[dist], 0, z, 1)
    return z


def reference_projector(history, variance):
    """I - V V^T, V the centred history's principal directions past the leading ones that
    explain ``variance`` of its variance: here from np.linalg.eigh of the d x d scatter matrix
    (softzo takes the SVD of the centred history itself)."""
    X = np.array(history)
    centred = X - X.mean(axis=0)
    w, V = np.linalg.eigh(centred.T @ centred)
    w, V = w[::-1], V[:, ::-1]  # descending
    # A zero eigenvalue comes out as rounding noise of order 1e-16 w[0], of either sign.
    rank = int(np.sum(w > 1e-12 * w[0]))
    leading = int(np.argmax(np.cumsum(w) / w.sum() >= variance)) + 1
    minor = V[:, leading:rank]
    return np.eye(X.shape[1]) - minor @ minor.T


# Each case: the optimiser's arguments, its distribution, c_k, and the update from the
# projected estimate g (state: a dict the update keeps its buffers in).
def _adam(x, g, k, s):
    s["m"] = 0.9 * s.get("m", 0) + 0.1 * g
    s["v"] = 0.999 * s.get("v", 0) + 0.001 * g * g
    mhat, vhat = s["m"] / (1 - 0.9 ** (k + 1)), s["v"] / (1 - 0.999 ** (k + 1))
    return x - 0.02 * mhat / (np.sqrt(vhat) + 1e-8)


def _momentum(x, g, k, s, beta=0.5):
    s["m"] = beta * s.get("m", 0) + g
    return x - 0.02 * s["m"]


def _spsa_gc(x, g, k, s):
    s["m"] = 0.9 * s.get("m", 0) + g
    return x - 0.01 / (k + 1) ** 0.4 * (g + 0.9 * s["m"])


CASES = {
    "mezo": (
        optim.MeZO,
        {"lr": 0.02, "eps": 1e-3, "weight_decay": 0.05},
        "gaussian",
        lambda k: 1e-3,
        lambda x, g, k, s: x * (1 - 0.02 * 0.05) - 0.02 * g,
    ),
    "spsa": (
        optim.SPSA,
        {"a": 0.05, "c": 0.01, "A": 5.0},
        "rademacher",
        lambda k: 0.01 / (k + 1) ** 0.101,
        lambda x, g, k, s: x - 0.05 / (k + 1 + 5.0) ** 0.602 * g,
    ),
    "zo_sgd": (
        optim.ZOSGD,
        {"lr": 0.02, "eps": 1e-3, "momentum": 0.5},
        "gaussian",
        lambda k: 1e-3,
        _momentum,
    ),
    "zo_adam": (optim.ZOAdam, {"lr": 0.02, "eps": 1e-3}, "gaussian", lambda k: 1e-3, _adam),
    "spsa_gc": (
        optim.SPSA_GC,
        {"a": 0.01, "c": 0.01},
        "rademacher",
        lambda k: 0.01 / (k + 1) ** 0.1,
        _spsa_gc,
    ),
}
SUBSPACE = {"history": 8, "every": 4, "variance": 0.9}


def reference_run(case, f, x0, steps, seed, queries, project=True):
    _, _, dist, ck, update = CASES[case]
    x, state, history, P = x0.copy(), {}, [], None
    for k in range(steps):
        eps = ck(k)
        g = np.zeros_like(x)
        for q in range(queries):
            z = fill(x.size, seed, k, q, dist)
            g += (f(x + eps * z) - f(x - eps * z)) / (2 * eps) * z / queries
        if P is not None:
            g = P @ g
        x = update(x, g, k, state)
        history.append(x.copy())
        if project and (k + 1) % SUBSPACE["every"] == 0:
            P = reference_projector(history[-SUBSPACE["history"] :], SUBSPACE["variance"])
    return x


@pytest.mark.parametrize("case", list(CASES))
def test_subspace_steps_equal_numpy_reference(case, rng):
    d, steps, seed, queries = 40, 22, 6, 2
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    x0 = rng.standard_normal(d)
    cls, kwargs, _, _, _ = CASES[case]
    theta = x0.copy()
    opt = cls([theta], seed=seed, num_queries=queries, subspace=SUBSPACE, **kwargs)
    for _ in range(steps):
        opt.step(lambda: f(theta))
    assert opt._subspace.minor is not None and len(opt._subspace.minor) >= 1
    expected = reference_run(case, f, x0, steps, seed, queries)
    # f is evaluated at points moved in place (roundings of 1e-16 over 2 eps) and the
    # reference's directions come from another decomposition: both well below 1e-8.
    np.testing.assert_allclose(theta, expected, rtol=1e-8, atol=1e-10)
    # The projection mattered: without it the run ends elsewhere.
    plain = reference_run(case, f, x0, steps, seed, queries, project=False)
    assert np.max(np.abs(plain - expected)) > 1e-4


def test_projection_is_orthogonal_idempotent_and_within_the_history(rng):
    d = 60
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    theta = rng.standard_normal(d)
    opt = optim.ZOSGD([theta], lr=0.02, eps=1e-3, seed=2, subspace={"history": 12, "every": 3})
    for _ in range(12):
        opt.step(lambda: f(theta))
    V, X = opt._subspace.minor, opt._subspace.buffer.copy()  # from the iterates of steps 1..12
    before = theta.copy()
    opt.step(lambda: f(theta))
    assert V.shape[0] >= 2
    np.testing.assert_allclose(V @ V.T, np.eye(len(V)), atol=1e-12)  # orthonormal
    P = np.eye(d) - V.T @ V
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    np.testing.assert_allclose(P, P.T, atol=1e-15)
    g = rng.standard_normal(d)
    once = opt._subspace.project(g)
    np.testing.assert_allclose(opt._subspace.project(once), once, atol=1e-12)
    np.testing.assert_allclose(once, P @ g, atol=1e-12)
    # The step moved orthogonally to the minor directions (plain SGD: the move is -lr P ĝ).
    move = theta - before
    assert np.max(np.abs(V @ move)) < 1e-12 * np.linalg.norm(move) + 1e-15
    # Minor directions are directions of the history, not of its null space.
    Q, _ = np.linalg.qr((X - X.mean(axis=0)).T)
    np.testing.assert_allclose(V @ Q @ Q.T, V, atol=1e-10)


@pytest.mark.parametrize("case", list(CASES))
def test_state_dict_resumes_bit_exactly_with_subspace(case, rng):
    d = 50
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    cls, kwargs, _, _, _ = CASES[case]
    subspace = {"history": 5, "every": 3}
    theta = rng.standard_normal(d)
    opt = cls([theta], seed=3, subspace=subspace, **kwargs)
    for _ in range(7):  # saved between two recomputations, the buffer wrapped around
        opt.step(lambda: f(theta))
    saved, x_saved = opt.state_dict(), theta.copy()
    for _ in range(8):
        opt.step(lambda: f(theta))
    theta2 = x_saved.copy()
    opt2 = cls([theta2], seed=999, subspace={"history": 9}, **kwargs)
    opt2.load_state_dict(saved)
    for _ in range(8):
        opt2.step(lambda: f(theta2))
    np.testing.assert_array_equal(theta2, theta)
    np.testing.assert_array_equal(opt2._subspace.minor, opt._subspace.minor)


def test_ask_tell_with_subspace_follows_step(rng):
    d = 30
    f = quadratic(rng.uniform(0.5, 2, d), rng.standard_normal(d))
    x0 = rng.standard_normal(d)
    options = {"lr": 0.02, "eps": 1e-3, "seed": 4, "subspace": {"history": 6, "every": 2}}
    at = optim.AskTell(x0, method="zo_sgd", **options)
    theta = x0.copy()
    opt = optim.ZOSGD([theta], **options)
    for _ in range(10):
        at.tell([f(p) for p in at.ask()])
        opt.step(lambda: f(theta))
    assert at.opt._subspace.minor is not None
    np.testing.assert_allclose(at.x, theta, rtol=1e-9, atol=1e-10)


def test_subspace_lets_a_noisy_step_size_converge():
    # The optimum lies along a 10-dimensional direction of a 100-dimensional sphere. With this
    # step size, MeZO's noise in the 90 idle coordinates keeps the loss above its start; the
    # projection drops the estimate's components in the directions where the recent iterates
    # only jittered, and the loss falls 100x. (Across seeds 1-4 the plain run ends at 2.6 to 4.7
    # times its start, the projected one below 1e-4.)
    d = 100

    def run(subspace):
        x = np.zeros(d)
        x[:10] = 1.0
        f0 = float(x @ x)
        opt = optim.MeZO([x], lr=0.01, eps=1e-4, seed=1, subspace=subspace)
        for _ in range(2000):
            opt.step(lambda: float(x @ x))
        return float(x @ x) / f0

    assert run(None) > 1.0
    assert run({"history": 40, "every": 10}) < 1e-2


def test_subspace_rejects_bad_input():
    x = np.zeros(4)
    with pytest.raises(TypeError, match="subspace"):
        optim.MeZO([x], subspace=32)
    with pytest.raises(ValueError, match="unknown keys"):
        optim.MeZO([x], subspace={"size": 8})
    with pytest.raises(ValueError, match=r"subspace\['history'\]"):
        optim.MeZO([x], subspace={"history": 1})
    with pytest.raises(ValueError, match=r"subspace\['every'\]"):
        optim.ZOSGD([x], subspace={"every": 0})
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"subspace\['variance'\]"):
            optim.ZOAdam([x], subspace={"variance": bad})
    with pytest.raises(TypeError, match="subspace"):
        optim.HiZOO([x], subspace={"history": 8})
    with pytest.raises(ValueError, match="subspace"):
        optim.MeZO([x]).load_state_dict(optim.MeZO([x], subspace={"history": 4}).state_dict())
