"""The Python contract: axes, strides, out= and in place, frameworks, threads, and bad input."""

import multiprocessing
import threading

import numpy as np
import pytest
import softzo
from conftest import ALGORITHMS
from reference import check_log_softmax, check_logsumexp, check_softmax

FUNCS = [softzo.softmax, softzo.log_softmax]


def test_info_reports_runtime():
    info = softzo.info()
    assert info["isa"] in info["isas_available"]
    assert info["isas_available"][0] == "scalar"
    assert set(info["isas_emulated"]) <= set(info["isas_available"])
    assert info["num_threads"] >= 1


def test_set_isa_rejects_unknown():
    with pytest.raises(ValueError, match="isa"):
        softzo.set_isa("avx1024")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_axis_and_ndim(isa, algorithm, rng):
    x = rng.standard_normal((3, 5, 7, 9)).astype(np.float32) * 5
    for axis in range(-4, 4):
        check_softmax(softzo.softmax(x, axis, algorithm=algorithm), x, axis)
        check_log_softmax(softzo.log_softmax(x, axis, algorithm=algorithm), x, axis)
        check_logsumexp(softzo.logsumexp(x, axis, algorithm=algorithm), x, axis)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_non_contiguous_inputs_and_outputs(isa, algorithm, rng):
    base = rng.standard_normal((40, 300)).astype(np.float64) * 4
    for x in (base[::3, ::2], base.T, base[:, ::-1], base[::-2, 5:250]):
        before = x.copy()
        for axis in (0, 1):
            check_softmax(softzo.softmax(x, axis, algorithm=algorithm), x, axis)
            check_log_softmax(softzo.log_softmax(x, axis, algorithm=algorithm), x, axis)
            check_logsumexp(softzo.logsumexp(x, axis, algorithm=algorithm), x, axis)
            out = np.empty((x.shape[1] * 2, x.shape[0]), x.dtype).T[:, ::2]
            assert not out.flags.c_contiguous
            assert softzo.softmax(x, axis, out=out, algorithm=algorithm) is out
            check_softmax(out, x, axis)
        np.testing.assert_array_equal(x, before)  # inputs are never modified


def test_outer_dimensions_merged_or_not(rng):
    # The row map merges outer dimensions that nest in both x and out and drops size-1 ones:
    # views where some merge and some do not, size-1 and broadcast (stride 0) dimensions.
    base = rng.standard_normal((4, 1, 6, 5, 33)).astype(np.float32) * 4
    views = (
        base,
        base[:, :, ::2],
        base[::-1, :, 1:5, ::2],
        base.transpose(2, 1, 0, 3, 4),
        np.broadcast_to(base[:1, :, :1], (3, 1, 6, 5, 33)),
    )
    for x in views:
        for axis in range(x.ndim):
            check_softmax(softzo.softmax(x, axis), x, axis)
            check_logsumexp(softzo.logsumexp(x, axis), x, axis)
            out = np.empty(x.shape[::-1], x.dtype).T  # Fortran order: nothing merges
            assert softzo.log_softmax(x, axis, out=out) is out
            check_log_softmax(out, x, axis)


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_in_place(isa, func, algorithm, rng):
    x = rng.standard_normal((7, 1000)).astype(np.float32) * 3
    x[2, 10] = -np.inf
    expected = func(x.copy(), algorithm=algorithm)
    assert func(x, out=x, algorithm=algorithm) is x
    np.testing.assert_array_equal(x, expected)


def test_in_place_strided_view(rng):
    x = rng.standard_normal((20, 64)).astype(np.float32)
    view = x[::2, ::3]
    expected = softzo.softmax(view.copy())
    softzo.softmax(view, out=view)
    np.testing.assert_array_equal(view, expected)


def test_zero_size_conventions():
    # Empty batches give empty results; softmax over an empty axis is empty (PyTorch, NumPy);
    # logsumexp over an empty axis is -inf (PyTorch's and SciPy's value).
    for shape in [(0, 5), (5, 0), (0,), (2, 0, 3)]:
        x = np.zeros(shape, np.float32)
        assert softzo.softmax(x).shape == shape
        assert softzo.log_softmax(x, 0).shape == shape
    np.testing.assert_array_equal(softzo.logsumexp(np.zeros((3, 0), np.float32)), [-np.inf] * 3)
    assert softzo.logsumexp(np.zeros((0, 4), np.float32)).shape == (0,)


def test_logsumexp_1d_gives_scalar():
    out = softzo.logsumexp(np.array([0.0, 0.0], np.float32))
    assert np.ndim(out) == 0 and abs(float(out) - np.log(2)) < 1e-7


def test_lists_are_accepted():
    check_softmax(softzo.softmax([[1.0, 2.0, 3.0]]), np.array([[1.0, 2.0, 3.0]]))


class TestBadInput:
    @pytest.mark.parametrize("dtype", [np.int32, np.int64, np.complex64, bool])
    def test_dtype(self, dtype):
        with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
            softzo.softmax(np.ones((2, 3), dtype))
        with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
            softzo.logsumexp(np.ones((2, 3), dtype))

    def test_zero_dim(self):
        with pytest.raises(ValueError, match="x must have at least one dimension"):
            softzo.softmax(np.float32(1.0))

    @pytest.mark.parametrize("axis", [2, -3, 10])
    def test_axis_out_of_range(self, axis):
        with pytest.raises(ValueError, match="axis"):
            softzo.softmax(np.ones((2, 3), np.float32), axis)
        with pytest.raises(ValueError, match="axis"):
            softzo.logsumexp(np.ones((2, 3), np.float32), axis)

    def test_axis_type(self):
        with pytest.raises(TypeError, match="axis"):
            softzo.softmax(np.ones((2, 3), np.float32), 1.0)

    def test_out_shape_and_dtype(self):
        x = np.ones((2, 3), np.float32)
        with pytest.raises(ValueError, match="out must have shape"):
            softzo.softmax(x, out=np.empty((3, 2), np.float32))
        with pytest.raises(TypeError, match="out must have x's dtype"):
            softzo.softmax(x, out=np.empty((2, 3), np.float64))
        with pytest.raises(TypeError, match="out must be"):
            softzo.softmax(x, out=[[0.0] * 3] * 2)
        ro = np.empty((2, 3), np.float32)
        ro.flags.writeable = False
        with pytest.raises(ValueError, match="out is read-only"):
            softzo.softmax(x, out=ro)

    def test_out_overlapping_x(self):
        buf = np.arange(12, dtype=np.float32)
        x = buf[:8].reshape(2, 4)
        before = x.copy()
        with pytest.raises(ValueError, match="out overlaps x"):
            softzo.softmax(x, out=buf[4:12].reshape(2, 4))
        np.testing.assert_array_equal(x, before)  # nothing written
        broadcast = np.lib.stride_tricks.as_strided(np.empty(4, np.float32), (2, 4), (0, 4))
        with pytest.raises(ValueError, match="out has overlapping elements"):
            softzo.softmax(x, out=broadcast)

    @pytest.mark.parametrize(
        "kw",
        [{"algorithm": "fast"}, {"all_masked": "ignore"}, {"num_threads": 0}, {"num_threads": -2}],
    )
    def test_options(self, kw):
        with pytest.raises(ValueError, match=next(iter(kw))):
            softzo.softmax(np.ones((2, 3), np.float32), **kw)

    def test_num_threads_type(self):
        with pytest.raises(TypeError, match="num_threads"):
            softzo.softmax(np.ones((2, 3), np.float32), num_threads=1.5)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_bitwise_identical_for_any_thread_count(isa, algorithm, rng):
    for shape in [(1, (1 << 18) + 70001), (64, 3000), (3, 1 << 19)]:
        x = rng.standard_normal(shape).astype(np.float32) * 7
        for func in (softzo.softmax, softzo.log_softmax, softzo.logsumexp):
            one = func(x, algorithm=algorithm, num_threads=1)
            for threads in (2, 3, 5):
                np.testing.assert_array_equal(
                    func(x, algorithm=algorithm, num_threads=threads), one
                )


def test_concurrent_python_threads(rng):
    xs = [rng.standard_normal((16, 20000)).astype(np.float32) for _ in range(6)]
    expected = [softzo.softmax(x, num_threads=1) for x in xs]
    errors = []

    def work(i):
        try:
            for _ in range(5):
                np.testing.assert_array_equal(softzo.softmax(xs[i], num_threads=2), expected[i])
        except AssertionError as e:  # reported below: a failure in a thread must fail the test
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def _child_softmax(q):
    x = np.linspace(-5, 5, 1 << 19, dtype=np.float32)
    q.put(float(softzo.softmax(x, num_threads=2).sum()))


def test_pool_survives_fork():
    softzo.softmax(np.ones((64, 4096), np.float32), num_threads=2)  # start the pool
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_softmax, args=(q,))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert abs(q.get(timeout=5) - 1.0) < 1e-5


class TestFrameworks:
    def test_torch_in_torch_out(self, rng):
        torch = pytest.importorskip("torch")
        x = torch.randn(4, 33, 5, dtype=torch.float64)
        for func, tfunc in [
            (softzo.softmax, torch.softmax),
            (softzo.log_softmax, torch.log_softmax),
        ]:
            y = func(x, 1)
            assert isinstance(y, torch.Tensor) and y.dtype == torch.float64
            torch.testing.assert_close(y, tfunc(x, 1), rtol=1e-12, atol=1e-300)
        lse = softzo.logsumexp(x, 1)
        assert isinstance(lse, torch.Tensor)
        torch.testing.assert_close(lse, torch.logsumexp(x, 1))

    def test_torch_requires_grad_non_contiguous_and_out(self):
        torch = pytest.importorskip("torch")
        x = torch.randn(50, 64, requires_grad=True)
        xt = x.t()  # non-contiguous, requires grad: read through a detached view
        y = softzo.softmax(xt, 0)
        torch.testing.assert_close(y, torch.softmax(xt.detach(), 0))
        out = torch.empty(64, 50)
        assert softzo.softmax(xt, 0, out=out) is out
        torch.testing.assert_close(out, torch.softmax(xt.detach(), 0))
        with pytest.raises(ValueError, match="out must not require grad"):
            softzo.softmax(xt, out=torch.empty(64, 50, requires_grad=True))

    def test_torch_zero_copy_in_place(self):
        torch = pytest.importorskip("torch")
        x = torch.randn(8, 100)
        expected = torch.softmax(x, -1)
        ptr = x.data_ptr()
        assert softzo.softmax(x, out=x) is x
        assert x.data_ptr() == ptr
        torch.testing.assert_close(x, expected)

    def test_torch_dtype_errors(self):
        torch = pytest.importorskip("torch")
        for dt in (torch.int64, torch.int8, torch.complex64):
            with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
                softzo.softmax(torch.ones(2, 3, dtype=dt))

    def test_jax_in_jax_out(self):
        jax = pytest.importorskip("jax")
        import jax.numpy as jnp

        x = jnp.asarray(np.random.default_rng(0).standard_normal((6, 40)).astype(np.float32))
        y = softzo.softmax(x)
        assert isinstance(y, jax.Array)
        check_softmax(np.asarray(y), np.asarray(x))
        with pytest.raises(TypeError, match="JAX arrays are immutable"):
            softzo.softmax(x, out=x)
