"""softzo.torch: every module's loss and autograd gradient against the same expression written
in PyTorch, gradients through a layer, reduction="none" with a non-uniform grad_output, the
in-place backward, errors, and a logistic regression on scikit-learn's digits trained with
softzo's cross-entropy and with PyTorch's from the same initialisation."""

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional
st = pytest.importorskip("softzo.torch")

DTYPES = [torch.float32, torch.float64]
REDUCTIONS = ["mean", "sum", "none"]
TOL = {torch.float32: {"rtol": 2e-5, "atol": 2e-6}, torch.float64: {"rtol": 1e-10, "atol": 1e-12}}
N, V = 13, 37


def _logits(dtype, n=N, v=V, scale=3.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, v, generator=g, dtype=torch.float64)).to(dtype)


def _target(n=N, v=V, seed=1):
    return torch.randint(0, v, (n,), generator=torch.Generator().manual_seed(seed))


def _grad_output(loss, seed=2):
    """A non-uniform upstream gradient for per-row losses, 1.7 for scalars."""
    if loss.ndim == 0:
        return torch.tensor(1.7, dtype=loss.dtype)
    g = torch.Generator().manual_seed(seed)
    return torch.rand(loss.shape, generator=g, dtype=torch.float64).to(loss.dtype) + 0.1


def _loss_and_grad(fn, x, *args, scaled=True):
    """fn(x, *args) and d(fn * grad_output)/dx on a fresh leaf copy of x."""
    x = x.detach().clone().requires_grad_(True)
    loss = fn(x, *args)
    if scaled:
        loss.backward(_grad_output(loss))
    else:
        loss.sum().backward()
    return loss.detach(), x.grad


def assert_same(ours_fn, ref_fn, x, *args, dtype=torch.float64, scaled=True):
    loss, grad = _loss_and_grad(ours_fn, x, *args, scaled=scaled)
    ref_loss, ref_grad = _loss_and_grad(ref_fn, x, *args, scaled=scaled)
    assert loss.dtype == ref_loss.dtype and loss.shape == ref_loss.shape
    torch.testing.assert_close(loss, ref_loss, **TOL[dtype])
    torch.testing.assert_close(grad, ref_grad, **TOL[dtype])


# ---- cross-entropy ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_index", [-100, 5])
def test_cross_entropy_module_matches_torch(
    dtype, reduction, weighted, label_smoothing, ignore_index
):
    x = _logits(dtype)
    target = _target()
    target[::4] = ignore_index  # some rows ignored; with ignore_index=5 also class 5's rows
    weight = torch.rand(V, generator=torch.Generator().manual_seed(3)).to(dtype) + 0.5
    kw = {
        "weight": weight if weighted else None,
        "ignore_index": ignore_index,
        "reduction": reduction,
        "label_smoothing": label_smoothing,
    }
    assert_same(st.CrossEntropyLoss(**kw), torch.nn.CrossEntropyLoss(**kw), x, target, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_soft_targets_match_torch(dtype, reduction):
    x = _logits(dtype)
    target = torch.softmax(_logits(dtype, seed=4), -1)
    weight = torch.rand(V, generator=torch.Generator().manual_seed(3)).to(dtype) + 0.5
    kw = {"weight": weight, "reduction": reduction, "label_smoothing": 0.2}
    assert_same(st.CrossEntropyLoss(**kw), torch.nn.CrossEntropyLoss(**kw), x, target, dtype=dtype)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_lse_square_scale(reduction):
    target = _target()
    target[::3] = -100
    counted = target != -100

    def ref(x, t):
        ce = F.cross_entropy(x, t, reduction=reduction)
        aux = 1e-2 * torch.logsumexp(x, -1) ** 2 * counted
        if reduction == "none":
            return ce + aux
        return ce + (aux.sum() / counted.sum() if reduction == "mean" else aux.sum())

    ours = st.CrossEntropyLoss(reduction=reduction, lse_square_scale=1e-2)
    assert_same(ours, ref, _logits(torch.float64), target)


def test_cross_entropy_functional_and_threads():
    x, t = _logits(torch.float64), _target()
    assert_same(
        lambda x, t: st.cross_entropy(x, t, label_smoothing=0.3, num_threads=2),
        lambda x, t: F.cross_entropy(x, t, label_smoothing=0.3),
        x,
        t,
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("target_kind", ["index", "ignored", "soft"])
@pytest.mark.parametrize("scaled", [True, False])
def test_cross_entropy_unbatched_matches_torch(dtype, reduction, inplace, target_kind, scaled):
    # (V,) logits and a 0-d target: a 0-d loss, for "none" too, and a (V,) gradient. An ignored
    # target with "mean" gives 0 / 0: a NaN loss and a zero gradient in both.
    x = _logits(dtype, n=1)[0]
    target = {
        "index": torch.tensor(5),
        "ignored": torch.tensor(-100),
        "soft": torch.softmax(_logits(dtype, n=1, seed=4)[0], -1),
    }[target_kind]
    weight = torch.rand(V, generator=torch.Generator().manual_seed(3)).to(dtype) + 0.5
    kw = {"weight": weight, "reduction": reduction, "label_smoothing": 0.1}
    ours = st.CrossEntropyLoss(**kw, inplace_backward=inplace)
    loss, grad = _loss_and_grad(ours, x, target, scaled=scaled)
    ref_loss, ref_grad = _loss_and_grad(torch.nn.CrossEntropyLoss(**kw), x, target, scaled=scaled)
    assert loss.shape == ref_loss.shape == () and grad.shape == x.shape
    torch.testing.assert_close(loss, ref_loss, equal_nan=True, **TOL[dtype])
    torch.testing.assert_close(grad, ref_grad, **TOL[dtype])


def test_gradient_flows_through_linear():
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, V, dtype=torch.float64)
    inputs = torch.randn(N, 16, dtype=torch.float64, requires_grad=True)
    target = _target()
    grads = []
    ref_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    for loss_fn in (st.CrossEntropyLoss(label_smoothing=0.1), ref_fn):
        layer.zero_grad(set_to_none=True)
        inputs.grad = None
        (3.0 * loss_fn(layer(inputs), target)).backward()
        grads.append((layer.weight.grad, layer.bias.grad, inputs.grad))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_inplace_backward_gives_the_same_gradient(reduction, dtype):
    torch.manual_seed(0)
    layer = torch.nn.Linear(16, V, dtype=dtype)
    inputs = torch.randn(N, 16, dtype=dtype)
    target = _target()
    grads = []
    for inplace in (False, True):
        layer.zero_grad(set_to_none=True)
        logits = layer(inputs)
        loss = st.CrossEntropyLoss(reduction=reduction, inplace_backward=inplace)(logits, target)
        if inplace:  # the gradient of the (unscaled) sum now lives in the logits' storage
            ref = F.softmax(layer(inputs), -1) - F.one_hot(target, V).to(dtype)
            ref = ref / N if reduction == "mean" else ref
            torch.testing.assert_close(logits.detach(), ref.detach(), **TOL[dtype])
        loss.backward(_grad_output(loss))
        grads.append((loss.detach(), layer.weight.grad, layer.bias.grad))
    for ours, ref in zip(*grads):
        torch.testing.assert_close(ours, ref, **TOL[dtype])


def test_inplace_backward_on_a_leaf_and_unit_grad_output():
    x, t = _logits(torch.float64), _target()
    loss, grad = _loss_and_grad(st.CrossEntropyLoss(inplace_backward=True), x, t, scaled=False)
    ref_loss, ref_grad = _loss_and_grad(torch.nn.CrossEntropyLoss(), x, t, scaled=False)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)


def test_inplace_backward_refuses_logits_another_node_saved():
    x = _logits(torch.float64).requires_grad_(True)
    squashed = torch.tanh(x / 5.0)  # tanh's backward needs its output: these logits
    loss = st.cross_entropy(squashed, _target(), inplace_backward=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_inplace_backward_leaves_logits_alone_without_grad():
    x, t = _logits(torch.float32), _target()
    before = x.clone()
    loss = st.cross_entropy(x, t, inplace_backward=True)  # no requires_grad
    with torch.no_grad():
        loss2 = st.cross_entropy(x.requires_grad_(True), t, inplace_backward=True)
    assert torch.equal(x.detach(), before)
    assert loss.grad_fn is None and loss2.grad_fn is None and not loss2.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(before, t))


@pytest.mark.parametrize("inplace", [False, True])
def test_none_reduction_with_unit_grad_output(inplace):
    x, t = _logits(torch.float64), _target()
    ours = st.CrossEntropyLoss(reduction="none", inplace_backward=inplace)
    assert_same(ours, torch.nn.CrossEntropyLoss(reduction="none"), x, t, scaled=False)


def test_retain_graph_backward_twice():
    x = _logits(torch.float64).requires_grad_(True)
    loss = st.cross_entropy(x, _target())
    (2.0 * loss).backward(retain_graph=True)
    first = x.grad.clone()
    (2.0 * loss).backward()
    torch.testing.assert_close(x.grad, 2 * first, rtol=1e-14, atol=0)


def test_inplace_backward_twice_with_a_scale_is_refused():
    x = _logits(torch.float64).requires_grad_(True)
    loss = 2.0 * st.cross_entropy(x * 1.0, _target(), inplace_backward=True)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="one backward pass per forward pass"):
        loss.backward()


# ---- the other losses ------------------------------------------------------------------------


def _z_loss_ref(a, b, reduction):
    def ref(o, t):
        mu = o.mean(-1, keepdim=True)
        sigma = (o - mu).pow(2).mean(-1, keepdim=True).sqrt()
        zc = ((o - mu) / sigma).gather(1, t[:, None])[:, 0]
        return _reduce(F.softplus(a * (b - zc)) / a, reduction)

    return ref


def _reduce(rows, reduction):
    return {"mean": rows.mean(), "sum": rows.sum(), "none": rows}[reduction]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("a, b", [(1.0, 0.0), (0.5, 1.5)])
def test_z_loss_matches_torch(dtype, reduction, a, b):
    ours = st.ZLoss(a=a, b=b, reduction=reduction)
    assert_same(ours, _z_loss_ref(a, b, reduction), _logits(dtype), _target(), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_stablemax_matches_torch(dtype, reduction):
    def ref(x, t):
        s = torch.where(x >= 0, x + 1, 1 / (1 - torch.clamp(x, max=0)))
        rows = torch.log(s.sum(-1)) - torch.log(s.gather(1, t[:, None])[:, 0])
        return _reduce(rows, reduction)

    ours = st.StableMaxCrossEntropyLoss(reduction=reduction)
    assert_same(ours, ref, _logits(dtype), _target(), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["log_spherical", "log_taylor", "mse"])
def test_spherical_loss_matches_torch(dtype, reduction, kind):
    eps = 1e-3

    def ref(o, t):
        oc = o.gather(1, t[:, None])[:, 0]
        q, s, d = (o * o).sum(-1), o.sum(-1), o.shape[1]
        rows = {
            "log_spherical": -torch.log(oc * oc + eps) + torch.log(q + d * eps),
            "log_taylor": -torch.log(1 + oc + oc * oc / 2) + torch.log(d + s + q / 2),
            "mse": q - 2 * oc + 1,
        }[kind]
        return _reduce(rows, reduction)

    ours = st.SphericalLoss(kind=kind, eps=eps, reduction=reduction)
    assert_same(ours, ref, _logits(dtype, scale=1.0), _target(), dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.7, 2.0])
def test_comp_sum_loss_matches_torch(dtype, reduction, tau):
    def ref(x, t):
        pt = torch.softmax(x, -1).gather(1, t[:, None])[:, 0]
        rows = -torch.log(pt) if tau == 1.0 else ((1 / pt) ** (1 - tau) - 1) / (1 - tau)
        return _reduce(rows, reduction)

    ours = st.CompSumLoss(tau, reduction=reduction)
    assert_same(ours, ref, _logits(dtype, scale=1.0), _target(), dtype=dtype)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides the total loss")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["batchmean", "sum", "mean", "none"])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_kl_div_matches_torch(dtype, reduction, temperature):
    teacher = _logits(dtype, seed=7).requires_grad_(True)  # still gets no gradient

    def ref(s, t):
        kl = F.kl_div(
            F.log_softmax(s / temperature, -1),
            F.log_softmax(t.detach() / temperature, -1),
            log_target=True,
            reduction=reduction,
        )
        return kl.sum(-1) if reduction == "none" else kl  # softzo: per-row KL

    ours = st.KLDivLoss(temperature=temperature, reduction=reduction)
    assert_same(ours, ref, _logits(dtype), teacher, dtype=dtype)
    assert teacher.grad is None


@pytest.mark.parametrize(
    "module, target",
    [
        (st.CrossEntropyLoss(), "int"),
        (st.ZLoss(), "int"),
        (st.StableMaxCrossEntropyLoss(), "int"),
        (st.SphericalLoss(), "int"),
        (st.CompSumLoss(1.7), "int"),
        (st.KLDivLoss(), "logits"),
    ],
)
def test_every_module_flows_through_linear(module, target):
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, V, dtype=torch.float64)
    inputs = torch.randn(N, 8, dtype=torch.float64)
    t = _target() if target == "int" else _logits(torch.float64, seed=9)
    module(layer(inputs), t).backward()
    ours = layer.weight.grad.clone()
    layer.weight.grad = None
    logits = layer(inputs)
    leaf = logits.detach().requires_grad_(True)
    module(leaf, t).backward()
    torch.testing.assert_close(ours, leaf.grad.T @ inputs, rtol=1e-10, atol=1e-12)


# ---- errors and the optional import ----------------------------------------------------------


def test_errors_are_delegated_and_clear():
    t = _target()
    with pytest.raises(ValueError, match="logits is on device 'meta'"):
        st.cross_entropy(torch.empty(N, V, device="meta", requires_grad=True), t)
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match="logits must be float32 or float64"):
            st.cross_entropy(torch.zeros(N, V, dtype=dtype, requires_grad=True), t)
    with pytest.raises(TypeError, match="logits must be float32 or float64"):
        st.cross_entropy(torch.zeros(N, V, dtype=torch.int64), t)
    with pytest.raises(ValueError, match="target"):
        st.cross_entropy(_logits(torch.float32).requires_grad_(True), t[:-1])
    with pytest.raises(ValueError, match="inplace_backward=True needs logits with a unit-stride"):
        x = _logits(torch.float32, n=V, v=N).T.requires_grad_(True)  # (N, V), class stride N
        st.cross_entropy(x, t, inplace_backward=True)
    with pytest.raises(ValueError, match="reduction"):
        st.CrossEntropyLoss(reduction="average")
    with pytest.raises(ValueError, match="reduction"):
        st.KLDivLoss(reduction="none-such")
    with pytest.raises(ValueError, match="tau"):
        st.CompSumLoss(-1.0)(_logits(torch.float32).requires_grad_(True), t)


def test_import_softzo_does_not_import_torch():
    code = "import sys, softzo, softzo.losses; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- a real model ----------------------------------------------------------------------------


def _train_digits(loss_fn, data, epochs=150):
    xtr, ytr, xte, yte = data
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(epochs):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(xtr), ytr).backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model(xte).argmax(1) == yte).double().mean().item()
    return accuracy, model.weight.detach(), model.bias.detach()


def test_logistic_regression_on_digits_matches_torch():
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    x, y = datasets.load_digits(return_X_y=True)
    xtr, xte, ytr, yte = model_selection.train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y
    )
    mean, std = xtr.mean(0), xtr.std(0)
    std[std == 0] = 1.0
    data = (
        torch.tensor((xtr - mean) / std, dtype=torch.float32),
        torch.tensor(ytr),
        torch.tensor((xte - mean) / std, dtype=torch.float32),
        torch.tensor(yte),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this test's matmuls are tiny; threads only add noise
    try:
        ours = _train_digits(st.CrossEntropyLoss(), data)
        ref = _train_digits(torch.nn.CrossEntropyLoss(), data)
    finally:
        torch.set_num_threads(threads)
    assert ours[0] >= 0.93 and ref[0] >= 0.93, (ours[0], ref[0])
    assert abs(ours[0] - ref[0]) <= 0.01
    for a, b in zip(ours[1:], ref[1:]):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-3, atol=1e-4 * b.abs().max())
