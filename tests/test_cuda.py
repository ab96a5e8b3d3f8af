"""The CUDA backend against the CPU: the softmax family on the adversarial inputs of
test_softmax.py, fused cross-entropy with every option, Philox z bit for bit, and a MeZO
trajectory on a CUDA model. The GPU tests skip, saying why, where no CUDA device is visible or
softzo was built without CUDA; the host-side plan and the CPU-only build's errors run anywhere."""

import numpy as np
import pytest
import softzo
import softzo.losses as L
from reference import check_log_softmax, check_logsumexp, check_softmax
from softzo import _core, _cuda

torch = pytest.importorskip("torch")

HAS_GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(
    not (HAS_GPU and _cuda.built()),
    reason="no CUDA device visible" if not HAS_GPU else "softzo was built without CUDA",
)
DEV = "cuda"


# ---- anywhere: the host-side launch plan and the CPU-only build's errors ---------------------


@pytest.mark.parametrize("n", [0, 1, 1000, 1 << 18, (1 << 18) + 1, 64 << 20, 12345678])
def test_softmax_plan_covers_rows(n):
    split, threads, chunk, chunks, blocks = _core._cuda_softmax_plan(3, n)
    assert threads % 32 == 0 and 32 <= threads <= 1024
    assert split == (n > 1 << 18)
    assert chunks * chunk >= n and (chunks - 1) * chunk < max(n, 1)
    assert blocks == 3 * chunks


def test_cpu_only_build_names_the_argument_and_the_build():
    if _cuda.built():
        pytest.skip("this build has the CUDA backend")

    class Fake(torch.Tensor):  # a CPU tensor that says it lives on a CUDA device
        @property
        def device(self):
            return torch.device("cuda", 0)

    x = torch.zeros(3, 4).as_subclass(Fake)
    with pytest.raises(ValueError, match=r"(?i)x is .*cuda.*SOFTZO_ENABLE_CUDA=ON"):
        softzo.softmax(x)
    with pytest.raises(ValueError, match=r"(?i)logits is .*cuda.*SOFTZO_ENABLE_CUDA=ON"):
        L.cross_entropy(x, torch.zeros(3, dtype=torch.int64))


def test_info_reports_cuda():
    info = softzo.info()
    assert "cuda" in info
    if not _cuda.built():
        assert info["cuda"] is None
    elif HAS_GPU:
        d = info["cuda"]["devices"][0]
        assert d["compute_capability"] == torch.cuda.get_device_capability(0)
        assert d["name"] == torch.cuda.get_device_name(0)


# ---- the softmax family ----------------------------------------------------------------------


def adversarial_rows():
    f = np.finfo(np.float32)
    rows = [
        [0.0, 1.0, 2.0, 3.0],
        [-np.inf, 1.0, 2.0, -np.inf],
        [-np.inf] * 4,
        [np.inf, 1.0, 2.0, 3.0],
        [np.nan, 1.0, 2.0, 3.0],
        [np.nan, np.inf, -np.inf, 0.0],
        [f.max, -f.max, 0.0, 1.0],
        [f.max, f.max, 0.0, -np.inf],
        [1e30, -1e30, 0.0, 5.0],
        [-1e30, -1e30, -1e30, -1e30],
        [-1e30, -2e30, -np.inf, -1e30],
        [100.0, -100.0, 50.0, 0.0],
        [70000.0, 69990.0, 0.0, -70000.0],
        [3.0, 3.0, 3.0, 3.0],
        [-104.0, 0.0, -87.0, -150.0],
    ]
    return np.array(rows, dtype=np.float32)


def on_gpu(a, dtype=torch.float32):
    return torch.as_tensor(np.asarray(a)).to(device=DEV, dtype=dtype)


@needs_gpu
@pytest.mark.parametrize("masked", ["nan", "zero"])
def test_adversarial_rows_match_pytorch_semantics(masked):
    x = adversarial_rows()
    xg = on_gpu(x)
    y = softzo.softmax(xg, all_masked=masked)
    assert y.device == xg.device and y.dtype == xg.dtype
    check_softmax(y.cpu().numpy(), x, all_masked=masked)
    check_log_softmax(softzo.log_softmax(xg).cpu().numpy(), x)
    check_logsumexp(softzo.logsumexp(xg).cpu().numpy(), x)


@needs_gpu
@pytest.mark.parametrize("n", [1, 2, 3, 7, 31, 32, 33, 127, 1000, 1025, 4097, 32000, 100003])
def test_awkward_lengths_and_offsets(n, rng):
    x = (rng.standard_normal((3, n + 1)) * 8).astype(np.float32)
    xg = on_gpu(x)[:, 1:]  # misaligned rows (4-byte offset): the scalar and vector paths
    xs = x[:, 1:]
    check_softmax(softzo.softmax(xg).cpu().numpy(), xs)
    check_log_softmax(softzo.log_softmax(xg).cpu().numpy(), xs)
    check_logsumexp(softzo.logsumexp(xg).cpu().numpy(), xs)


@needs_gpu
def test_wide_ranges(rng):
    for scale, offset in [(1, 0), (20, 0), (30, -1e4), (3, 5e4), (0.01, 80), (40, -60)]:
        x = (rng.standard_normal((4, 777)) * scale + offset).astype(np.float32)
        xg = on_gpu(x)
        check_softmax(softzo.softmax(xg).cpu().numpy(), x)
        check_log_softmax(softzo.log_softmax(xg).cpu().numpy(), x)
        check_logsumexp(softzo.logsumexp(xg).cpu().numpy(), x)


@needs_gpu
@pytest.mark.parametrize("n", [(1 << 18) + 1, 3_000_001])
def test_split_rows_agree_and_are_deterministic(n, rng):
    """Rows split across blocks: the long-double reference, special values in one chunk, and
    the same bits on every run."""
    x = (rng.standard_normal((2, n)) * 10).astype(np.float32)
    x[1, n // 2] = 60.0  # the max in a middle chunk
    x[1, n - 1] = -np.inf
    xg = on_gpu(x)
    y = softzo.softmax(xg)
    check_softmax(y.cpu().numpy(), x)
    check_log_softmax(softzo.log_softmax(xg).cpu().numpy(), x)
    check_logsumexp(softzo.logsumexp(xg).cpu().numpy(), x)
    assert torch.equal(y, softzo.softmax(xg))
    bad = x.copy()
    bad[0, 123456] = np.nan
    bad[1, n - 2] = np.inf
    yb = softzo.softmax(on_gpu(bad)).cpu().numpy()
    assert np.isnan(yb).all()


@needs_gpu
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_any_axis_and_out(axis, rng):
    x = (rng.standard_normal((5, 6, 7)) * 4).astype(np.float32)
    xg = on_gpu(x)
    check_softmax(softzo.softmax(xg, axis).cpu().numpy(), x, axis)
    out = torch.empty_like(xg)
    assert softzo.log_softmax(xg, axis, out=out) is out
    check_log_softmax(out.cpu().numpy(), x, axis)
    check_logsumexp(softzo.logsumexp(xg, axis).cpu().numpy(), x, axis)
    inplace = xg.clone()
    softzo.softmax(inplace, -1, out=inplace)
    check_softmax(inplace.cpu().numpy(), x, -1)


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_types_round_the_float32_answer(dtype, rng):
    """float16 / bfloat16 in and out, float32 inside: within one ulp of the type of the float64
    answer for the rounded input."""
    x = (rng.standard_normal((7, 3001)) * 6).astype(np.float32)
    xg = on_gpu(x, dtype)
    xr = xg.float().cpu().numpy().astype(np.float64)
    ulp = {torch.float16: 2.0**-10, torch.bfloat16: 2.0**-7}[dtype]
    y = softzo.softmax(xg)
    assert y.dtype == dtype
    ref = np.exp(xr - xr.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    got = y.float().cpu().numpy()
    assert (np.abs(got - ref) <= ulp * np.maximum(ref, 2.0**-14)).all()
    lref = (
        xr
        - xr.max(1, keepdims=True)
        - np.log(np.exp(xr - xr.max(1, keepdims=True)).sum(1))[:, None]
    )
    lgot = softzo.log_softmax(xg).float().cpu().numpy()
    assert (np.abs(lgot - lref) <= ulp * np.maximum(np.abs(lref), 1.0)).all()


@needs_gpu
def test_stream_is_the_callers(rng):
    """Work goes to torch's current stream: on a side stream, the result is ready once that
    stream is synchronised, and the default stream saw none of it."""
    x = on_gpu(rng.standard_normal((256, 4096)).astype(np.float32))
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y = softzo.softmax(x)
        lse = softzo.logsumexp(x)
    s.synchronize()
    torch.testing.assert_close(y, torch.softmax(x, -1), rtol=2e-6, atol=1e-9)
    torch.testing.assert_close(lse, torch.logsumexp(x, -1), rtol=2e-6, atol=1e-6)


@needs_gpu
def test_cupy_arrays(rng):
    cupy = pytest.importorskip("cupy")
    x = (rng.standard_normal((9, 1000)) * 5).astype(np.float32)
    xc = cupy.asarray(x)
    y = softzo.softmax(xc)
    assert isinstance(y, cupy.ndarray)
    check_softmax(cupy.asnumpy(y), x)
    check_logsumexp(cupy.asnumpy(softzo.logsumexp(xc)), x)


# ---- cross-entropy ---------------------------------------------------------------------------

CE_CASES = [
    {},
    {"reduction": "sum"},
    {"reduction": "none"},
    {"label_smoothing": 0.1},
    {"weight": True},
    {"weight": True, "label_smoothing": 0.2, "reduction": "mean"},
    {"ignore_index": 3},
    {"lse_square_scale": 1e-4},
    {"soft": True},
    {"soft": True, "weight": True, "label_smoothing": 0.05},
]


@needs_gpu
@pytest.mark.parametrize("case", CE_CASES, ids=[str(c) for c in CE_CASES])
@pytest.mark.parametrize("v", [7, 1000, 32000])
def test_cross_entropy_matches_cpu(case, v, rng):
    n = 13
    x = (rng.standard_normal((n, v)) * 3).astype(np.float32)
    x[0, 1] = -np.inf  # a masked class
    t = rng.integers(0, v, n)
    t[2] = 3
    t[5] = 3
    kw = {k: val for k, val in case.items() if k not in ("weight", "soft")}
    if case.get("weight"):
        w = rng.uniform(0.5, 2.0, v).astype(np.float32)
        kw["weight"] = w
    target = t
    if case.get("soft"):
        p = rng.uniform(0, 1, (n, v)).astype(np.float32)
        target = (p / p.sum(1, keepdims=True)).astype(np.float32)
    cpu = L.cross_entropy(x, target, return_grad=True, return_lse=True, **kw)
    gkw = {k: (on_gpu(val) if isinstance(val, np.ndarray) else val) for k, val in kw.items()}
    gt = torch.as_tensor(target).to(DEV)
    gpu = L.cross_entropy(on_gpu(x), gt, return_grad=True, return_lse=True, **gkw)
    for a, b, name in zip(cpu, gpu, ("loss", "grad", "lse")):
        assert b.device.type == "cuda"
        np.testing.assert_allclose(b.cpu().numpy(), a, rtol=2e-5, atol=1e-7, err_msg=name)


@needs_gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_in_place_and_torch_module(dtype, rng):
    n, v = 64, 5000
    x = on_gpu((rng.standard_normal((n, v)) * 2).astype(np.float32), dtype)
    t = torch.as_tensor(rng.integers(0, v, n)).to(DEV)
    ref = x.float().detach().requires_grad_()
    loss_ref = torch.nn.functional.cross_entropy(ref, t)
    loss_ref.backward()
    buf = x.clone()
    loss, grad = L.cross_entropy(buf, t, grad_out=buf)
    assert grad is buf
    tol = {"rtol": 1e-5, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-4}
    torch.testing.assert_close(loss.float(), loss_ref.detach(), **tol)
    torch.testing.assert_close(buf.float(), ref.grad, **tol)
    import softzo.torch as st

    xm = x.clone().requires_grad_()
    out = st.CrossEntropyLoss()(xm, t)
    out.backward()
    torch.testing.assert_close(out.float(), loss_ref.detach(), **tol)
    torch.testing.assert_close(xm.grad.float(), ref.grad, **tol)


@needs_gpu
def test_cross_entropy_bad_target_raises_before_writing():
    x = on_gpu(np.zeros((4, 10), np.float32))
    before = x.clone()
    with pytest.raises(ValueError, match=r"target\[2\] = 10 is out of range"):
        L.cross_entropy(x, torch.tensor([0, 1, 10, 3], device=DEV), grad_out=x)
    assert torch.equal(x, before)


# ---- the zeroth-order engine -----------------------------------------------------------------


def cpu_z(dist, n, offset, seed=123, step=7, direction=2, dtype=np.float32):
    out = np.empty(n, dtype)
    _core._zo_fill(seed, step, direction, dist, offset, out, 1)
    return out


def gpu_z(dist, n, offset, seed=123, step=7, direction=2, dtype=torch.float32):
    out = torch.empty(n, dtype=dtype, device=DEV)
    stream = torch.cuda.current_stream().cuda_stream
    code = 0 if dtype == torch.float32 else 3
    _core._cuda_zo_fill(seed, step, direction, dist, offset, code, out.data_ptr(), n, 0, stream)
    return out.cpu().numpy()


# Gaussian z follows the same operations as the CPU's (zo_scalar.cc), so it is expected to be
# bit-identical; the bound the tests hold it to is 2 ulp of max(|z|, 1) (float32: 2^-22), the
# Box-Muller transform's own rounding, in case a device rounds an intermediate differently.
GAUSS_BOUND = {np.float32: 2.0**-22, np.float64: 2.0**-51}


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0, 1, 3, 130, 2**33 + 5])
def test_philox_z_is_the_cpus(dtype, offset):
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    n = 100_003
    for dist in (0, 2):  # Rademacher, segmented: bit for bit
        np.testing.assert_array_equal(
            gpu_z(dist, n, offset, dtype=tdt), cpu_z(dist, n, offset, dtype=dtype)
        )
    g, c = gpu_z(1, n, offset, dtype=tdt), cpu_z(1, n, offset, dtype=dtype)
    err = np.abs(g.astype(np.float64) - c) / np.maximum(np.abs(c), 1.0)
    print(f"gaussian {dtype.__name__}: max |z_gpu - z_cpu| / max(|z|, 1) = {err.max():.3g}, "
          f"{np.count_nonzero(g != c)} of {n} differ")  # fmt: skip
    assert err.max() <= GAUSS_BOUND[dtype]


def mezo_run(params, steps, loss_fn, **kw):
    opt = softzo.optim.MeZO(params, lr=1e-2, eps=1e-3, seed=5, **kw)
    losses = []
    with torch.no_grad():
        for _ in range(steps):
            losses.append(opt.step(loss_fn))
    return opt, losses


@needs_gpu
@pytest.mark.parametrize("dist", ["rademacher", "segmented", "gaussian"])
def test_mezo_on_a_cuda_model_follows_the_cpu(dist):
    """A small MLP on both devices: the same z, the same updates; the losses differ only by
    the two devices' matmul rounding, so the parameters stay within 1e-4 after 30 steps."""
    import softzo.optim  # noqa: F401

    torch.manual_seed(0)
    models = {}
    for dev in ("cpu", DEV):
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
        models[dev] = m.to(dev)
    xb = torch.randn(64, 16)
    yb = torch.randn(64, 1)
    results = {}
    for dev, m in models.items():
        xd, yd = xb.to(dev), yb.to(dev)
        _, losses = mezo_run(
            list(m.parameters()),
            30,
            lambda m=m, xd=xd, yd=yd: float(((m(xd) - yd) ** 2).mean()),
            distribution=dist,
        )
        results[dev] = (losses, [p.detach().cpu() for p in m.parameters()])
    np.testing.assert_allclose(results[DEV][0], results["cpu"][0], rtol=1e-4, atol=1e-6)
    for a, b in zip(results[DEV][1], results["cpu"][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_gpu
def test_mezo_moves_are_bitwise_the_cpus_on_fixed_losses():
    """With the losses fixed (a closure that ignores the model), every move is the kernels'
    alone: Rademacher, Sparse MeZO, subsets and bfloat16 masters give the CPU's bits."""
    import softzo.optim

    rng = np.random.default_rng(1)
    base = [rng.standard_normal(s).astype(np.float32) for s in (1000, 77, 65536 + 3)]
    seq = iter(np.linspace(1.0, 2.0, 400))
    for kw in (
        {"distribution": "rademacher"},
        {"distribution": "segmented", "weight_decay": 0.01},
        {"distribution": "rademacher", "sparsity": 0.5},
        {"distribution": "rademacher", "subset": {"fraction": 0.5, "block": 500}},
    ):
        out = {}
        for dev in ("cpu", DEV):
            ps = [torch.tensor(b, device=dev) for b in base]
            vals = iter(np.linspace(1.0, 2.0, 40))
            opt = softzo.optim.MeZO(ps, lr=1e-2, eps=1e-3, seed=3, **kw)
            for _ in range(10):
                opt.step(lambda vals=vals: float(next(vals)))
            out[dev] = [p.cpu().numpy() for p in ps]
        for a, b in zip(out[DEV], out["cpu"]):
            np.testing.assert_array_equal(a, b, err_msg=str(kw))
    # bfloat16 parameters with float32 masters, and lr = 0: bitwise unchanged.
    p = torch.tensor(base[0], device=DEV).to(torch.bfloat16)
    before = p.clone()
    opt = softzo.optim.MeZO([p], lr=0.0, eps=1e-2, seed=1, distribution="rademacher")
    for _ in range(5):
        opt.step(lambda: float(next(seq)))
    assert torch.equal(p, before)
    pc = torch.tensor(base[0]).to(torch.bfloat16)
    pg = pc.to(DEV)
    for q in (pc, pg):
        vals = iter(np.linspace(1.0, 2.0, 40))
        o = softzo.optim.MeZO([q], lr=1e-1, eps=1e-2, seed=1, distribution="rademacher")
        for _ in range(10):
            o.step(lambda vals=vals: float(next(vals)))
    assert torch.equal(pg.cpu(), pc)


@needs_gpu
def test_unsupported_optimisers_say_so():
    import softzo.optim

    p = torch.zeros(10, device=DEV)
    with pytest.raises(ValueError, match="does not run on CUDA parameters yet"):
        softzo.optim.ZOAdam([p])
