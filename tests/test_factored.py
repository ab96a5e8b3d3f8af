"""softzo.spherical: the exact factored output layer against plain dense SGD in float64 PyTorch
autograd (the losses written from their definitions on the full output vector)."""

from __future__ import annotations

import numpy as np
import pytest
from softzo import spherical

LOSSES = spherical.LOSSES


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


# Learning rates that move W visibly without making plain SGD unstable for these shapes.
LR = {"z_loss": 0.5, "log_spherical": 0.05, "log_taylor": 0.2, "mse": 0.02}
# log-spherical's -log(o_c^2 + eps) has condition number ~ 1/eps near o_c = 0: with eps = 1e-6
# two float64 evaluations of the same dense step already differ by ~1e-8, so the 1e-9
# comparison uses eps = 1e-2 (the layer's arithmetic is the same for any eps).
EPS = {"log_spherical": 1e-2}


def torch_loss(torch, o, targets, loss, a=1.0, b=0.0, eps=1e-6):
    """Mean over rows of each loss's definition; targets (m, K) with -1 for unused slots."""
    t = torch.as_tensor(np.asarray(targets))
    mask = (t >= 0).to(o.dtype)
    idx = t.clamp(min=0)
    oc = o.gather(1, idx)
    if loss == "mse":
        y = torch.zeros_like(o).scatter_add_(1, idx, mask)  # the multi-hot target
        per_row = ((o - y) ** 2).sum(1)
    elif loss == "z_loss":
        mu, sigma = o.mean(1, keepdim=True), o.std(1, unbiased=False, keepdim=True)
        z = (oc - mu) / sigma
        per_row = (torch.nn.functional.softplus(a * (b - z)) / a * mask).sum(1)
    elif loss == "log_spherical":
        log_p = torch.log(oc**2 + eps) - torch.log((o**2 + eps).sum(1, keepdim=True))
        per_row = -(log_p * mask).sum(1)
    else:
        f = 1.0 + o + 0.5 * o**2
        log_p = torch.log(1.0 + oc + 0.5 * oc**2) - torch.log(f.sum(1, keepdim=True))
        per_row = -(log_p * mask).sum(1)
    return per_row.mean()


def dense_reference_step(torch, W, h, targets, loss, lr, wd, **kw):
    """(loss, dL/dh, new W) of one SGD step on W (float64), by autograd."""
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    ht = torch.tensor(h, dtype=torch.float64, requires_grad=True)
    value = torch_loss(torch, ht @ Wt.T, targets, loss, **kw)
    value.backward()
    with torch.no_grad():
        W_new = Wt - lr * (Wt.grad + wd * Wt)
    return value.item(), ht.grad.numpy(), W_new.numpy()


def batch(rng, m, d, D, k, dtype):
    h = rng.standard_normal((m, d)).astype(dtype)
    t = np.stack([rng.choice(D, size=k, replace=False) for _ in range(m)])
    if k > 1:
        unused = rng.random((m, k)) < 0.25
        unused[:, 0] = False
        t[unused] = -1
    return h, t


def rel(x, ref):
    return float(np.max(np.abs(np.asarray(x, np.float64) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "m, d, k",
    [(8, 16, 1), (24, 12, 3)],  # Woodbury through an m x m system (m < d), and M itself
)
def test_200_steps_equal_dense_sgd(torch, loss, dtype, m, d, k):
    D, lr, wd, steps = 300, LR[loss], 0.005, 200
    rng = np.random.default_rng(m + k)
    # Frequent stabilisation with a narrow band, so that V is rewritten several times.
    eps = EPS.get(loss, 1e-6)
    layer = spherical.FactoredOutputLayer(
        D, d, loss=loss, lr=lr, weight_decay=wd, dtype=dtype, seed=3, stabilize_every=25,
        sigma_min=0.97, sigma_max=1.03, eps=eps,
    )  # fmt: skip
    W = layer.weight().astype(np.float64)
    tol = 1e-9 if dtype == np.float64 else 1e-3
    for _ in range(steps):
        h, t = batch(rng, m, d, D, k, dtype)
        value, grad = layer.step(h, t)
        ref_value, ref_grad, W = dense_reference_step(
            torch, W, h.astype(np.float64), t, loss, lr, wd, eps=eps
        )
        assert abs(value - ref_value) <= tol * abs(ref_value)
        assert rel(grad, ref_grad) <= tol
    assert rel(layer.weight(), W) <= tol
    assert layer.steps == steps
    sv = np.linalg.svd(layer.state_dict()["U"], compute_uv=False)
    assert sv.min() > 0.9 and sv.max() < 1.1  # the stabilisation kept U well conditioned


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_step_equals_autograd(torch, dtype):
    rng = np.random.default_rng(0)
    D, d, m = 257, 9, 5
    for loss in LOSSES:
        W = rng.uniform(-0.3, 0.3, (D, d)).astype(dtype)
        h, t = batch(rng, m, d, D, 2, dtype)
        ref_value, ref_grad, ref_W = dense_reference_step(
            torch, W.astype(np.float64), h.astype(np.float64), t, loss, 0.1, 0.01
        )
        value, grad = spherical.dense_step(W, h, t, loss=loss, lr=0.1, weight_decay=0.01)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        assert abs(value - ref_value) <= tol * abs(ref_value)
        assert rel(grad, ref_grad) <= tol and rel(W, ref_W) <= tol


def test_forward_stats_and_a_custom_loss(torch):
    """forward_stats gives A, s, q of o = W h; backward_update trains any L(A, s, q)."""
    rng = np.random.default_rng(1)
    D, d, m = 120, 10, 6
    layer = spherical.FactoredOutputLayer(D, d, lr=0.3, dtype=np.float64, seed=0)
    W = layer.weight()
    h, t = batch(rng, m, d, D, 2, np.float64)
    A, s, q = layer.forward_stats(h, t)
    o = h @ W.T
    want_A = np.where(t >= 0, np.take_along_axis(o, np.maximum(t, 0), axis=1), 0.0)
    np.testing.assert_allclose(A, want_A, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(s, o.sum(1), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(q, (o**2).sum(1), rtol=1e-12)
    # L = mean_j [sum_k A_jk^2 + 0.3 s_j + 0.05 q_j^2]
    mask = (t >= 0).astype(np.float64)
    grad = layer.backward_update(2 * A * mask / m, np.full(m, 0.3 / m), 0.1 * q / m)
    Wt = torch.tensor(W, requires_grad=True)
    ht = torch.tensor(h, requires_grad=True)
    ot = ht @ Wt.T
    At = torch.stack(
        [torch.stack([ot[j, c] if c >= 0 else ot[j, 0] * 0 for c in t[j]]) for j in range(m)]
    )
    value = ((At**2).sum(1) + 0.3 * ot.sum(1) + 0.05 * (ot**2).sum(1) ** 2).mean()
    value.backward()
    np.testing.assert_allclose(grad, ht.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.weight(), W - 0.3 * Wt.grad.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="forward_stats"):
        layer.backward_update(A, s, q)  # the batch was consumed


@pytest.mark.parametrize("loss", LOSSES)
def test_topk_ranks_by_the_loss_score(loss):
    rng = np.random.default_rng(2)
    D, d, m, k = 3000, 12, 7, 10  # several blocks of V
    layer = spherical.FactoredOutputLayer(D, d, loss=loss, lr=0.05, dtype=np.float64, seed=4)
    for _ in range(5):
        layer.step(*batch(rng, 16, d, D, 1, np.float64))
    h = rng.standard_normal((m, d))
    values, indices = layer.topk(h, k)
    o = h @ layer.weight().T
    score = {"log_spherical": o**2, "log_taylor": 1 + o + 0.5 * o**2}.get(loss, o)
    want = np.argsort(-score, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(indices, want)
    np.testing.assert_allclose(values, np.take_along_axis(o, want, axis=1), rtol=1e-12)


def test_stabilize_keeps_w_and_bounds_u():
    rng = np.random.default_rng(5)
    D, d = 200, 8
    layer = spherical.FactoredOutputLayer(
        D, d, loss="mse", lr=0.05, weight_decay=1.0, dtype=np.float64, stabilize_every=0
    )
    for _ in range(30):
        layer.step(*batch(rng, 4, d, D, 1, np.float64))
    before = layer.state_dict()
    assert np.linalg.svd(before["U"], compute_uv=False).min() < 0.5  # drifted out of range
    W = layer.weight()
    layer.stabilize()
    after = layer.state_dict()
    sv = np.linalg.svd(after["U"], compute_uv=False)
    assert sv.min() >= 0.5 - 1e-12 and sv.max() <= 2.0 + 1e-12
    assert rel(layer.weight(), W) < 1e-11  # rounding times the condition of the old U
    np.testing.assert_allclose(after["U_inv"] @ after["U"], np.eye(d), atol=1e-12)
    np.testing.assert_array_equal(after["Q"], before["Q"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_state_dict_resumes_bit_exactly(dtype):
    rng = np.random.default_rng(6)
    D, d = 150, 8
    batches = [batch(rng, 5, d, D, 2, dtype) for _ in range(20)]
    a = spherical.FactoredOutputLayer(D, d, lr=0.2, dtype=dtype, seed=1, stabilize_every=7)
    for h, t in batches[:10]:
        a.step(h, t)
    saved = a.state_dict()
    for h, t in batches[10:]:
        a.step(h, t)
    b = spherical.FactoredOutputLayer(D, d, lr=0.9, dtype=dtype, seed=2)
    b.load_state_dict(saved)
    assert b.lr == 0.2 and b.steps == 10
    for h, t in batches[10:]:
        b.step(h, t)
    np.testing.assert_array_equal(a.weight(), b.weight())
    with pytest.raises(ValueError, match="V"):
        spherical.FactoredOutputLayer(D + 1, d, lr=0.1, dtype=dtype).load_state_dict(saved)


def test_bad_input_raises_and_leaves_the_state_unchanged():
    rng = np.random.default_rng(7)
    D, d = 40, 6
    layer = spherical.FactoredOutputLayer(D, d, loss="mse", lr=0.1, dtype=np.float64, seed=0)
    layer.step(*batch(rng, 4, d, D, 1, np.float64))
    before = layer.state_dict()
    h = rng.standard_normal((3, d))
    bad = [
        (ValueError, "targets", lambda: layer.step(h, [0, 1, D])),
        (ValueError, "targets", lambda: layer.step(h, [0, -2, 1])),
        (ValueError, "repeated", lambda: layer.step(h, [[0, 0], [1, 2], [3, 4]])),
        (TypeError, "targets", lambda: layer.step(h, [0.0, 1.0, 2.0])),
        (ValueError, "targets", lambda: layer.step(h, [0, 1])),
        (ValueError, "h", lambda: layer.step(h[:, :-1], [0, 1, 2])),
        (ValueError, "h", lambda: layer.step(np.where(np.eye(3, d) > 0, np.nan, h), [0, 1, 2])),
        (TypeError, "h", lambda: layer.step(h.astype(np.float32), [0, 1, 2])),
        (TypeError, "h", lambda: layer.step(h.astype(np.int64), [0, 1, 2])),
        (ValueError, "k", lambda: layer.topk(h, D + 1)),
        (ValueError, "lr", lambda: setattr(layer, "lr", -1.0)),
        (ValueError, "weight_decay", lambda: setattr(layer, "weight_decay", 1e3)),
    ]
    for exc, name, call in bad:
        with pytest.raises(exc, match=name):
            call()
    # A learning rate at which the update I - (2 lr / m) h h^T (MSE, m = 1) is singular.
    h1 = rng.standard_normal((1, d))
    layer.lr = 1.0 / (2.0 * float(h1[0] @ h1[0]))
    with pytest.raises(ValueError, match="lr"):
        layer.step(h1, [3])
    after = layer.state_dict()
    for key in ("V", "U", "U_inv", "Q", "w_bar", "omega"):
        np.testing.assert_array_equal(after[key], before[key])
    assert after["steps"] == before["steps"]


def test_blas_threads_setting_keeps_steps_equal_to_dense():
    rng = np.random.default_rng(8)
    D, d = 300, 64
    h, t = batch(rng, 96, d, D, 1, np.float64)
    before = spherical.blas_threads()
    try:
        results = []
        for n in (1, 2):
            spherical.set_blas_threads(n)
            assert spherical.blas_threads() == n
            layer = spherical.FactoredOutputLayer(D, d, lr=0.1, dtype=np.float64, seed=0)
            w = layer.weight()
            loss, grad_h = layer.step(h, t)
            dense_loss, dense_grad = spherical.dense_step(w, h, t, lr=0.1)
            assert abs(loss - dense_loss) <= 1e-12 * abs(dense_loss)
            assert rel(grad_h, dense_grad) < 1e-12 and rel(layer.weight(), w) < 1e-12
            results.append(layer.weight())
        assert rel(results[0], results[1]) < 1e-13
    finally:
        spherical.set_blas_threads(before)
    with pytest.raises(ValueError, match="num_threads"):
        spherical.set_blas_threads(0)
    with pytest.raises(TypeError, match="num_threads"):
        spherical.set_blas_threads(1.5)


def test_constructor_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        spherical.FactoredOutputLayer(0, 4, lr=0.1)
    with pytest.raises(ValueError, match="loss"):
        spherical.FactoredOutputLayer(10, 4, lr=0.1, loss="softmax")
    with pytest.raises(TypeError, match="dtype"):
        spherical.FactoredOutputLayer(10, 4, lr=0.1, dtype=np.float16)
    with pytest.raises(ValueError, match="init"):
        spherical.FactoredOutputLayer(10, 4, lr=0.1, init=np.zeros((10, 5)))
    init = np.arange(40.0).reshape(10, 4)
    layer = spherical.FactoredOutputLayer(10, 4, lr=0.1, dtype=np.float64, init=init)
    np.testing.assert_array_equal(layer.weight(), init)
    a = spherical.FactoredOutputLayer(10, 4, lr=0.1, seed=3).weight()
    np.testing.assert_array_equal(a, spherical.FactoredOutputLayer(10, 4, lr=0.1, seed=3).weight())
    assert a.dtype == np.float32 and np.abs(a).max() <= 0.5


def test_torch_module_trains_like_a_dense_last_layer(torch):
    """A linear body + the factored layer, against the same model with a dense W, both SGD."""
    from softzo.torch import FactoredOutputHead

    rng = np.random.default_rng(8)
    D, d_in, d, m, lr = 200, 7, 10, 6, 0.3
    torch.manual_seed(0)
    body = torch.nn.Linear(d_in, d).double()
    body_ref = torch.nn.Linear(d_in, d).double()
    body_ref.load_state_dict(body.state_dict())
    head = FactoredOutputHead(D, d, lr=lr, dtype=torch.float64, seed=1)
    W = torch.tensor(head.weight().numpy(), requires_grad=True)
    opt = torch.optim.SGD(body.parameters(), lr=lr)
    opt_ref = torch.optim.SGD([*body_ref.parameters(), W], lr=lr)
    for _ in range(10):
        x = torch.tensor(rng.standard_normal((m, d_in)))
        t = torch.tensor(rng.integers(0, D, m))
        opt.zero_grad()
        value = head(body(x), t)
        value.backward()
        opt.step()
        opt_ref.zero_grad()
        ref = torch_loss(torch, body_ref(x) @ W.T, t[:, None], "z_loss")
        ref.backward()
        opt_ref.step()
        assert abs(value.item() - ref.item()) < 1e-10
    np.testing.assert_allclose(head.weight().numpy(), W.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        body.weight.detach(), body_ref.weight.detach(), rtol=1e-9, atol=1e-12
    )
    # Its state travels in the module's state_dict.
    other = FactoredOutputHead(D, d, lr=lr, dtype=torch.float64, seed=2)
    other.load_state_dict(head.state_dict())
    np.testing.assert_array_equal(other.weight().numpy(), head.weight().numpy())
    values, indices = head.topk(body(x).detach(), 3)
    assert indices.shape == (m, 3) and values.dtype == torch.float64
    # Without a backward (evaluation), nothing changes.
    with torch.no_grad():
        head(body(x), t)
    np.testing.assert_array_equal(other.weight().numpy(), head.weight().numpy())


def test_torch_head_old_name_still_works_and_warns(torch):
    """softzo.torch.FactoredOutputLayer, the old name of FactoredOutputHead (two classes shared
    the name with softzo.spherical.FactoredOutputLayer), is a deprecated alias."""
    from softzo.torch import FactoredOutputHead, FactoredOutputLayer

    with pytest.warns(DeprecationWarning, match="FactoredOutputHead"):
        old = FactoredOutputLayer(20, 4, lr=0.1, dtype=torch.float64, seed=1)
    new = FactoredOutputHead(20, 4, lr=0.1, dtype=torch.float64, seed=1)
    assert isinstance(old, FactoredOutputHead)
    np.testing.assert_array_equal(old.weight().numpy(), new.weight().numpy())
