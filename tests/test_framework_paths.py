"""The C++ paths for torch tensors and JAX arrays (softzo._core's *_any entries): torch through
DLPack's C exchange API and, as on torch < 2.10, through torch.utils.dlpack; JAX through its
buffer protocol. Results against torch's own functions and the NumPy path, result layouts and
lifetimes, and every input these paths refuse, which must reach the general path's errors."""

import numpy as np
import pytest
import softzo
from softzo import _core, losses

torch = pytest.importorskip("torch")
F = torch.nn.functional

OPS = [
    (softzo.softmax, torch.softmax),
    (softzo.log_softmax, torch.log_softmax),
    (softzo.logsumexp, torch.logsumexp),
]


@pytest.fixture(params=["exchange_api", "to_dlpack"])
def torch_path(request):
    """Runs the test through DLPack's C exchange API, then through torch.utils.dlpack."""
    use_api = request.param == "exchange_api"
    if _core._use_torch_exchange_api(use_api) != use_api:
        _core._use_torch_exchange_api(True)
        pytest.skip("this torch has no __dlpack_c_exchange_api__")
    yield request.param
    _core._use_torch_exchange_api(True)


def _views(dtype):
    g = torch.Generator().manual_seed(0)
    base = 4 * torch.randn(6, 9, 40, generator=g, dtype=torch.float64).to(dtype)
    return [
        base,
        base[1:5, ::2, 3:37],  # strided everywhere
        base.transpose(0, 2),  # not contiguous along any axis
        base[:, 4],  # a row of the middle axis
        base[2, 3],  # 1-D
        base.expand(3, 6, 9, 40)[1],  # a broadcast (zero-stride) input is fine to read
        base[:2, :2, :24].reshape(2, 2, 1, 2, 3, 1, 2, 2, 1).transpose(0, 4),  # over 8 dims
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_results_match_numpy_and_torch(torch_path, dtype):
    # The same kernels as for the same data in NumPy (bitwise), and torch's answer (float64:
    # float32 would measure torch's own rounding).
    for x in _views(dtype):
        before = x.clone()
        for axis in range(-x.dim(), x.dim()):
            for ours, theirs in OPS:
                y = ours(x, axis)
                assert type(y) is torch.Tensor and y.dtype == dtype and not y.requires_grad
                assert y.is_contiguous()
                np.testing.assert_array_equal(y.numpy(), ours(x.numpy(), axis))
                expected = theirs(x.double(), axis).to(dtype)
                assert y.shape == expected.shape
                if dtype == torch.float64:
                    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-14)
        assert torch.equal(x, before)


def test_torch_requires_grad_input_and_every_out(torch_path):
    x = torch.randn(5, 70, requires_grad=True)
    expected = torch.softmax(x.detach(), -1)
    torch.testing.assert_close(softzo.softmax(x), expected)
    for out in (
        torch.empty(5, 70),
        torch.empty(70, 5).T,  # strided out
        np.empty((5, 70), np.float32),  # NumPy out, torch x
    ):
        assert softzo.softmax(x, out=out) is out
        torch.testing.assert_close(torch.as_tensor(out), expected)
    y = x.detach().clone()
    assert softzo.softmax(y, out=y) is y  # in place
    torch.testing.assert_close(y, expected)
    out = torch.empty(5, 70)  # a NumPy x with a torch out
    assert softzo.log_softmax(x.detach().numpy(), out=out) is out
    torch.testing.assert_close(out, torch.log_softmax(x.detach(), -1))


def test_torch_negated_views_are_read_with_their_sign(torch_path):
    # imag of a conjugate view carries torch's negation bit, which DLPack cannot express.
    z = torch.randn(4, 30, dtype=torch.complex128).conj().imag
    assert z.is_neg()
    for ours, theirs in OPS:
        torch.testing.assert_close(ours(z), theirs(z.resolve_neg(), -1), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="out is a negated view"):
        softzo.softmax(z.resolve_neg(), out=torch.zeros(4, 30, dtype=torch.complex128).conj().imag)


def test_torch_refusals_raise_the_general_errors(torch_path):
    x = torch.randn(3, 8)
    for dt in (torch.int32, torch.uint8):
        with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
            softzo.softmax(x.to(dt))
        with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
            softzo.logsumexp(x.to(dt))
    with pytest.raises(ValueError, match="x must have at least one dimension"):
        softzo.softmax(torch.tensor(1.0))
    for axis in (2, -3, 2**40):
        with pytest.raises(ValueError, match="axis"):
            softzo.softmax(x, axis)
        with pytest.raises(ValueError, match="axis"):
            softzo.logsumexp(x, axis)
    with pytest.raises(ValueError, match="x is on device 'meta'"):
        softzo.softmax(torch.empty(3, 8, device="meta"))
    with pytest.raises(ValueError, match="out must have shape"):
        softzo.softmax(x, out=torch.empty(8, 3))
    with pytest.raises(TypeError, match="out must have x's dtype"):
        softzo.softmax(x, out=torch.empty(3, 8, dtype=torch.float64))
    with pytest.raises(ValueError, match="out must not require grad"):
        softzo.softmax(x, out=torch.empty(3, 8, requires_grad=True))
    buf = torch.randn(40)
    with pytest.raises(ValueError, match="out overlaps x"):
        softzo.softmax(buf[:24].view(3, 8), out=buf[8:32].view(3, 8))
    with pytest.raises(ValueError, match="out has overlapping elements"):
        softzo.softmax(x, out=torch.empty(8).expand(3, 8))
    with pytest.raises(ValueError, match="num_threads"):
        softzo.softmax(x, num_threads=0)


def test_torch_subclasses_take_the_general_path(torch_path):
    p = torch.nn.Parameter(torch.randn(4, 20))
    torch.testing.assert_close(softzo.softmax(p), torch.softmax(p.detach(), -1))
    loss = losses.cross_entropy(p, torch.tensor([1, 2, 3, 4]))
    torch.testing.assert_close(loss, F.cross_entropy(p.detach(), torch.tensor([1, 2, 3, 4])))


def _status_kb(field):
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    pytest.skip("no /proc/self/status")


def test_torch_results_free_their_memory(torch_path):
    # Results own memory handed to torch through DLPack: torch must free it with the tensor.
    x = torch.randn(1 << 21)  # 8 MiB results
    for _ in range(3):
        softzo.softmax(x).add_(1)  # touched, so that a leak would show in the RSS
    before = _status_kb("VmRSS")
    for _ in range(100):  # 800 MiB if nothing were freed
        y = softzo.softmax(x)
        y.add_(1)
        g = losses.cross_entropy(x.view(8, -1), torch.arange(8), return_grad=True)[1]
        g.add_(1)
    del y, g
    assert _status_kb("VmRSS") - before < 100 * 1024


def test_torch_results_reuse_freed_large_blocks(torch_path):
    # A freed result of 1-32 MiB waits for the next result of its size (no fresh pages, no
    # faults); a live result's block is never handed out again.
    x = torch.randn(64, 8192)  # 2 MiB results
    first = softzo.softmax(x)
    address = first.data_ptr()
    del first
    again = softzo.softmax(x)
    assert again.data_ptr() == address
    other = softzo.softmax(x)
    assert other.data_ptr() != again.data_ptr()
    assert torch.equal(other, again)
    np.testing.assert_array_equal(again.numpy(), softzo.softmax(x.numpy()))


def test_torch_losses_match_numpy(torch_path):
    g = torch.Generator().manual_seed(1)
    x = 3 * torch.randn(7, 50, generator=g, dtype=torch.float64)
    t = torch.randint(0, 50, (7,), generator=g)
    t[2] = -100
    w = torch.rand(50, generator=g, dtype=torch.float64) + 0.5
    soft = torch.softmax(torch.randn(7, 50, generator=g, dtype=torch.float64), -1)
    u = t.clamp(min=0)  # no ignored row
    calls = [
        lambda a, t, u, w, s: losses.cross_entropy(
            a, t, weight=w, return_grad=True, return_lse=True
        ),
        lambda a, t, u, w, s: losses.cross_entropy(a, s, reduction="none", return_grad=True),
        lambda a, t, u, w, s: losses.z_loss(a, u, return_grad=True),
        lambda a, t, u, w, s: losses.spherical_loss(a, u, reduction="none"),
        lambda a, t, u, w, s: losses.stablemax_cross_entropy(a, u, return_grad=True),
        lambda a, t, u, w, s: losses.comp_sum_loss(a, u, 0.5, return_grad=True),
        lambda a, t, u, w, s: losses.kl_div(a, 2 * s, reduction="none", return_grad=True),
    ]
    for call in calls:
        ours = call(x, t, u, w, soft)
        ref = call(x.numpy(), t.numpy(), u.numpy(), w.numpy(), soft.numpy())
        ours, ref = (r if isinstance(r, tuple) else (r,) for r in (ours, ref))
        for a, b in zip(ours, ref):
            assert isinstance(a, torch.Tensor) and a.dtype == torch.float64
            np.testing.assert_array_equal(a.numpy(), b)
    # torch logits with NumPy targets and weights, and the other way round
    mixed = losses.cross_entropy(x, t.numpy(), weight=w.numpy(), return_grad=True)
    assert all(isinstance(a, torch.Tensor) for a in mixed)
    mixed_np = losses.cross_entropy(x.numpy(), t, weight=w, return_grad=True)
    assert all(isinstance(a, (np.ndarray, np.floating)) for a in mixed_np)
    for a, b in zip(mixed, mixed_np):
        np.testing.assert_array_equal(a.numpy(), b)


def test_torch_empty_batches(torch_path):
    # torch's empty tensors may have no data pointer: the general path takes them.
    x, t = torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)
    loss, grad = losses.cross_entropy(x, t, return_grad=True)
    assert torch.isnan(loss) and grad.shape == (0, 5)  # the mean of no rows, as in torch
    assert losses.cross_entropy(x, t, reduction="sum") == 0
    assert losses.cross_entropy(x, t, reduction="none").shape == (0,)
    assert losses.cross_entropy(x, torch.zeros(0, 5), return_grad=True)[1].shape == (0, 5)
    for fn in (losses.z_loss, losses.stablemax_cross_entropy, losses.spherical_loss):
        assert fn(x, t, reduction="none", return_grad=True)[1].shape == (0, 5)
    assert losses.kl_div(x, x, reduction="none").shape == (0,)
    assert losses.spherical_softmax(x).shape == (0, 5)
    assert softzo.softmax(x).shape == (0, 5) and softzo.logsumexp(x).shape == (0,)
    torch.testing.assert_close(softzo.logsumexp(torch.zeros(3, 0)), torch.full((3,), -torch.inf))


def test_torch_loss_refusals_raise_the_general_errors(torch_path):
    x = torch.randn(4, 6)
    t = torch.tensor([0, 1, 2, 3])
    with pytest.raises(TypeError, match="logits must be float32, float64, float16 or bfloat16"):
        losses.cross_entropy(x.to(torch.int32), t)
    with pytest.raises(ValueError, match="target"):
        losses.cross_entropy(x, torch.tensor([0, 1, 2, 6]))
    with pytest.raises(ValueError, match="target must have shape"):
        losses.cross_entropy(x, t[:3])
    with pytest.raises(TypeError, match="weight must have the logits' dtype"):
        losses.cross_entropy(x, t, weight=torch.ones(6, dtype=torch.float64))
    with pytest.raises(ValueError, match="grad_out must not require grad"):
        losses.cross_entropy(x, t, grad_out=torch.empty(4, 6, requires_grad=True))
    with pytest.raises(TypeError, match="grad_out"):
        losses.cross_entropy(x, t, grad_out=np.empty((4, 6)))
    buf = torch.randn(30)
    with pytest.raises(ValueError, match="grad_out overlaps logits"):
        losses.cross_entropy(buf[:24].view(4, 6), t, grad_out=buf[1:25].view(4, 6))
    with pytest.raises(TypeError, match="ignore_index"):
        losses.cross_entropy(x, t, ignore_index=1.5)
    with pytest.raises(ValueError, match="teacher_logits must have shape"):
        losses.kl_div(x, x[:, :5])
    # int32 targets and a class axis that is not unit-stride: copied, then the same answers
    expected = losses.cross_entropy(x, t, return_grad=True)
    for a, b in zip(expected, losses.cross_entropy(x.T.contiguous().T, t.int(), return_grad=True)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_jax_in_jax_out():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    x = np.random.default_rng(0).standard_normal((5, 3, 40)).astype(np.float32) * 4
    j = jnp.asarray(x)
    for func in (softzo.softmax, softzo.log_softmax, softzo.logsumexp):
        for axis in (0, 1, -1):
            y = func(j, axis)
            assert isinstance(y, jax.Array) and y.dtype == jnp.float32
            np.testing.assert_array_equal(np.asarray(y), func(x, axis))
    out = np.empty_like(x)
    assert softzo.softmax(j, out=out) is out
    np.testing.assert_array_equal(out, softzo.softmax(x))
    with pytest.raises(TypeError, match="JAX arrays are immutable"):
        softzo.softmax(j, out=j)
    with pytest.raises(TypeError, match="grad_out"):
        losses.cross_entropy(j[:, 0], jnp.arange(5), grad_out=j[:, 0])
