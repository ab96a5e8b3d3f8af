"""softzo.losses.linear_cross_entropy and softzo.torch.LinearCrossEntropyLoss: the fused linear
layer + cross-entropy against a float64 NumPy reference (logits h W^T + b, the soft cap, then
cross-entropy) and against PyTorch's F.linear + F.cross_entropy with autograd, for every dtype,
option and ISA; V not a multiple of the class block, several row chunks, N = 1, ignored and
all-ignored rows, the exact path for far-range logits, gradient filtering, and no N x V buffer.

Tolerances: the logits come from float32 GEMMs, whose rounding (PyTorch's too) dominates; the
fused results must be within 3x PyTorch's own float32 error against float64, plus
4 float32 ulps of the result's scale.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import softzo
from reference_losses import ref_cross_entropy
from softzo import losses as L

pytest.importorskip("scipy_openblas32")

U32 = 2.0**-24


def ref_linear_ce(h, w, t, bias=None, softcap=None, label_smoothing=0.0, reduction="mean",
                  ignore_index=-100, scales=False):  # fmt: skip
    """(loss, grad_h, grad_w, grad_b) in float64 (the cross-entropy part in long double); with
    scales=True also the rounding scale of each: sqrt(K) u |A| |B| for a float32 GEMM of inner
    dimension K (the usual probabilistic bound; a row's loss moves by up to twice its largest
    logit error, and the logits are a GEMM over d)."""
    h, w = np.asarray(h, np.float64), np.asarray(w, np.float64)
    z = h @ w.T + (0.0 if bias is None else np.asarray(bias, np.float64))
    if softcap:
        zc = softcap * np.tanh(z / softcap)
    else:
        zc = z
    loss, dz, _ = ref_cross_entropy(
        zc, t, None, ignore_index=ignore_index, label_smoothing=label_smoothing,
        reduction=reduction,
    )  # fmt: skip
    dz = np.asarray(dz, np.float64)
    if softcap:
        dz = dz * (1 - (zc / softcap) ** 2)
    result = (np.asarray(loss, np.float64), dz @ w, dz.T @ h, dz.sum(0))
    if not scales:
        return result
    n, d = h.shape
    kept = np.asarray(t) != ignore_index
    row = 2 * np.sqrt(d) * U32 * (np.abs(h) @ np.abs(w).T).max(1) + U32 * np.abs(zc).max(1)
    row = np.where(kept, row, 0)
    loss_scale = {"none": row, "sum": row.sum(), "mean": row.sum() / max(kept.sum(), 1)}
    a = np.abs(dz)
    # dz's own error (from the logits' and the softmax's) adds to each GEMM's terms.
    a = a + (np.abs(dz) + a.max()) * (row.max() + 4 * U32)
    k = w.shape[0]
    return result, (
        loss_scale[reduction],
        np.sqrt(k) * U32 * (a @ np.abs(w)),
        np.sqrt(n) * U32 * (a.T @ np.abs(h)),
        np.sqrt(n) * U32 * a.sum(0),
    )


def torch_linear_ce(h, w, t, bias=None, softcap=None, label_smoothing=0.0, reduction="mean",
                    dtype=None):  # fmt: skip
    """PyTorch's own F.linear + F.cross_entropy with autograd, in dtype (default: h's)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional

    def leaf(a):
        return None if a is None else torch.as_tensor(a).to(dtype).requires_grad_(True)

    th, tw, tb = leaf(h), leaf(w), leaf(bias)
    z = F.linear(th, tw, tb)
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    loss = F.cross_entropy(z, torch.as_tensor(t), label_smoothing=label_smoothing,
                           reduction=reduction)  # fmt: skip
    loss.sum().backward()
    out = [loss, th.grad, tw.grad] + ([tb.grad] if tb is not None else [])
    return [o.detach().double().numpy() for o in out]


def _err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max(initial=0))


def check_against_references(ours, ref, theirs, what):
    """Each result within 3x PyTorch's own float32 error against float64, plus 8x its rounding
    scale (ref_linear_ce(scales=True)), elementwise."""
    values, scales = ref
    for name, o, r, t, sc in zip(("loss", "grad_h", "grad_w", "grad_b"), ours, values, theirs,
                                 scales):  # fmt: skip
        err = np.abs(np.asarray(o, np.float64) - r)
        bound = 3 * _err(t, r) + 8 * sc
        worst = np.unravel_index(np.argmax(err - bound), np.shape(err)) if np.ndim(err) else ()
        assert (err <= bound).all(), (
            f"{what} {name}: {err[worst]:.3g} > {np.asarray(bound)[worst]:.3g}"
        )


def problem(rng, n, d, v, scale=1.0, bias=False, ignore=()):
    h = (rng.standard_normal((n, d)) * scale).astype(np.float32)
    w = (rng.standard_normal((v, d)) / np.sqrt(d)).astype(np.float32)
    b = (rng.standard_normal(v) * 0.5).astype(np.float32) if bias else None
    t = rng.integers(0, v, n)
    t[list(ignore)] = -100
    return h, w, b, t


OPTIONS = {
    "plain": {},
    "bias": {"bias": True},
    "smoothing": {"label_smoothing": 0.1},
    "softcap": {"softcap": 4.0},
    "sum": {"reduction": "sum"},
    "none": {"reduction": "none"},
    "everything": {"bias": True, "label_smoothing": 0.2, "softcap": 8.0, "reduction": "sum"},
}


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("shape", [(1, 32, 7), (37, 64, 2500), (5, 16, 1024)])
def test_matches_float64_and_torch(isa, option, shape, rng):
    n, d, v = shape
    opts = dict(OPTIONS[option])
    h, w, b, t = problem(rng, n, d, v, scale=2.0, bias=opts.pop("bias", False),
                         ignore=[0] if n > 2 else [])  # fmt: skip
    result = L.linear_cross_entropy(h, w, t, bias=b, return_grad=True, **opts)
    assert all(r.dtype == np.float32 for r in map(np.asarray, result))
    assert len(result) == (4 if b is not None else 3)
    ref = ref_linear_ce(h, w, t, bias=b, scales=True, **opts)
    theirs = torch_linear_ce(h, w, t, bias=b, **opts)
    check_against_references(result, ref, theirs, f"{option} {shape}")
    loss_only = L.linear_cross_entropy(h, w, t, bias=b, **opts)
    np.testing.assert_array_equal(loss_only, result[0])


def test_row_chunks_and_class_blocks(rng):
    """N = 4100 rows take two chunks of the 4096-row buffer; V = 2049 three class blocks."""
    h, w, b, t = problem(rng, 4100, 8, 2049, scale=3.0, bias=True, ignore=[5, 4099])
    result = L.linear_cross_entropy(h, w, t, bias=b, return_grad=True, label_smoothing=0.05)
    ref = ref_linear_ce(h, w, t, bias=b, label_smoothing=0.05, scales=True)
    theirs = torch_linear_ce(h, w, t, bias=b, label_smoothing=0.05)
    check_against_references(result, ref, theirs, "chunks")


def test_results_do_not_depend_on_threads(rng):
    h, w, b, t = problem(rng, 300, 32, 3000, scale=2.0, bias=True)
    one = L.linear_cross_entropy(h, w, t, bias=b, return_grad=True, num_threads=1, softcap=5.0)
    two = L.linear_cross_entropy(h, w, t, bias=b, return_grad=True, num_threads=2, softcap=5.0)
    for a, c in zip(one, two):
        np.testing.assert_array_equal(a, c)


def test_ignored_rows_and_reductions(rng):
    h, w, _, t = problem(rng, 20, 16, 300, ignore=[1, 2, 19])
    rows = L.linear_cross_entropy(h, w, t, reduction="none")
    assert rows.shape == (20,) and (rows[[1, 2, 19]] == 0).all() and (rows > 0).sum() == 17
    total = L.linear_cross_entropy(h, w, t, reduction="sum")
    mean = L.linear_cross_entropy(h, w, t)
    np.testing.assert_allclose(total, rows.astype(np.float64).sum(), rtol=1e-6)
    np.testing.assert_allclose(mean, rows.astype(np.float64).sum() / 17, rtol=1e-6)
    _, gh, _ = L.linear_cross_entropy(h, w, t, return_grad=True)
    assert (gh[[1, 2, 19]] == 0).all()


def test_all_ignored_batch_is_nan_with_zero_gradients(rng):
    """As PyTorch: the mean over no rows is 0/0, and every gradient is 0."""
    h, w, b, t = problem(rng, 6, 8, 50, bias=True, ignore=range(6))
    loss, gh, gw, gb = L.linear_cross_entropy(h, w, t, bias=b, return_grad=True)
    theirs = torch_linear_ce(h, w, t, bias=b)
    assert np.isnan(loss) and np.isnan(theirs[0])
    for g, tg in zip((gh, gw, gb), theirs[1:]):
        assert not g.any() and not tg.any()
    assert L.linear_cross_entropy(h, w, t, reduction="sum") == 0


def test_far_range_nan_and_inf_logits(isa, rng):
    h, w, _, t = problem(rng, 4, 16, 1500)
    h[1] *= 3e4  # logits around 1e5: beyond the scaled kernels' range, the exact path
    h[2] *= -1e6  # every logit of the row far below -65536
    values, scales = ref_linear_ce(h, w, t, reduction="none", scales=True)
    rows, gh, gw = L.linear_cross_entropy(h, w, t, reduction="none", return_grad=True)
    theirs = torch_linear_ce(h, w, t, reduction="none")
    check_against_references((rows, gh, gw), (values[:3], scales[:3]), theirs[:3], "far")
    w_nan = w.copy()
    w_nan[700, 3] = np.nan  # NaN logits in every row: NaN losses and gradient rows, as PyTorch
    rows, gh, _ = L.linear_cross_entropy(h, w_nan, t, reduction="none", return_grad=True)
    assert np.isnan(rows).all() and np.isnan(gh).all()
    w_inf = w.copy()
    w_inf[3] = 1e38  # +inf logits: NaN (PyTorch's rule)
    assert np.isnan(L.linear_cross_entropy(h * 1e3, w_inf, t, reduction="none")).any()


def test_gradient_filtering(rng):
    """Off by default (exact); with a threshold, tiles of 128 rows x 1024 classes whose every
    |dL/dz| is below it and that hold no target are left out of the gradient: the NumPy
    reference with those tiles' dz set to 0 gives the same gradients."""
    n, d, v = 300, 16, 3000
    h, w, _, t = problem(rng, n, d, v, scale=4.0)
    t[:128] = rng.integers(0, 1024, 128)  # rows 0-127 target the first block only
    exact = L.linear_cross_entropy(h, w, t, return_grad=True)
    np.testing.assert_array_equal(
        L.linear_cross_entropy(h, w, t, return_grad=True, grad_filter=0.0)[1], exact[1]
    )
    thr = 1e-3
    z = h.astype(np.float64) @ w.T.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = p.copy()
    dz[np.arange(n), t] -= 1
    for r0 in range(0, n, 128):
        for j0 in range(0, v, 1024):
            tile = dz[r0 : r0 + 128, j0 : j0 + 1024]
            rows_t = t[r0 : r0 + 128]
            holds = ((rows_t >= j0) & (rows_t < j0 + 1024)).any()
            if not holds and (np.abs(tile) < thr).all():
                tile[...] = 0
    dz /= n
    loss, gh, gw = L.linear_cross_entropy(h, w, t, return_grad=True, grad_filter=thr * 1.0)
    assert loss == exact[0]
    np.testing.assert_allclose(gh, dz @ w, atol=1e-6)
    np.testing.assert_allclose(gw, dz.T @ h, atol=1e-6)


@pytest.mark.parametrize("name", ["float16", "bfloat16"])
@pytest.mark.parametrize("option", ["plain", "everything"])
def test_half_precision(isa, name, option, rng):
    torch = pytest.importorskip("torch")
    opts = dict(OPTIONS[option])
    h, w, b, t = problem(rng, 33, 48, 1500, scale=2.0, bias=opts.pop("bias", False), ignore=[4])
    tdtype = getattr(torch, name)
    th, tw = torch.from_numpy(h).to(tdtype), torch.from_numpy(w).to(tdtype)
    tb = None if b is None else torch.from_numpy(b).to(tdtype)
    result = L.linear_cross_entropy(th, tw, torch.from_numpy(t), bias=tb, return_grad=True,
                                    **opts)  # fmt: skip
    assert all(r.dtype == tdtype for r in result)
    # The reference from the half inputs themselves (widening is exact).
    h64, w64 = th.double().numpy(), tw.double().numpy()
    b64 = None if tb is None else tb.double().numpy()
    ref = ref_linear_ce(h64, w64, t, bias=b64, **opts)
    # The float32 computation on the widened inputs, rounded once to the half type.
    r32 = L.linear_cross_entropy(h64.astype(np.float32), w64.astype(np.float32), t,
                                 bias=None if b64 is None else b64.astype(np.float32),
                                 return_grad=True, **opts)  # fmt: skip
    for ours, f32 in zip(result[1:], r32[1:]):
        assert torch.equal(ours, torch.from_numpy(f32).to(tdtype))
    # Against float64: one rounding to the half type (its unit roundoff u, relative to each
    # result's scale) on top of float32's error; PyTorch's half CE (logits rounded to the half
    # type first) is far worse.
    u = 2.0**-11 if name == "float16" else 2.0**-8
    theirs = torch_linear_ce(h64, w64, t, bias=b64, dtype=tdtype, **opts)
    for what, o, r, tr in zip(("loss", "grad_h", "grad_w", "grad_b"), result, ref, theirs):
        o = o.double().numpy()
        err = _err(o, r)
        scale = float(np.abs(r).max())
        assert err <= u * scale + 64 * U32 * scale, f"{name} {what}: {err:.3g} (scale {scale:.3g})"
        assert err <= _err(tr, r) + u * scale * 2**-8, f"{what}: worse than PyTorch's {name}"


def test_numpy_bfloat16_and_jax_inputs_keep_their_framework(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    h, w, _, t = problem(rng, 5, 8, 40)
    hb, wb = h.astype(ml_dtypes.bfloat16), w.astype(ml_dtypes.bfloat16)
    loss, gh, gw = L.linear_cross_entropy(hb, wb, t, return_grad=True)
    assert type(loss) is ml_dtypes.bfloat16 and gh.dtype == hb.dtype and gw.shape == w.shape
    jnp = pytest.importorskip("jax.numpy")
    jl, jgh, _ = L.linear_cross_entropy(jnp.asarray(hb), jnp.asarray(wb), jnp.asarray(t),
                                        return_grad=True)  # fmt: skip
    assert type(jgh).__module__.startswith("jax") and str(jgh.dtype) == "bfloat16"
    assert float(jl) == float(loss)
    np.testing.assert_array_equal(np.asarray(jgh).view(np.uint16), gh.view(np.uint16))


def test_torch_module_and_autograd(rng):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("softzo.torch")
    F = torch.nn.functional
    h, w, b, t = problem(rng, 24, 32, 1100, scale=2.0, bias=True, ignore=[3])
    for reduction in ("mean", "sum", "none"):
        m = st.LinearCrossEntropyLoss(reduction=reduction, softcap=6.0, label_smoothing=0.1)
        leaves = [torch.from_numpy(a.copy()).requires_grad_(True) for a in (h, w, b)]
        h3 = leaves[0].reshape(2, 12, 32)  # leading dimensions, as a model's (B, T, d)
        loss = m(h3, leaves[1], torch.from_numpy(t).reshape(2, 12), leaves[2])
        assert loss.shape == ((2, 12) if reduction == "none" else ())
        weights = torch.rand(loss.shape, dtype=torch.float64).float() + 0.5
        (loss * weights).sum().backward()
        ours = [x.grad for x in leaves]
        ref = [torch.from_numpy(a.copy()).double().requires_grad_(True) for a in (h, w, b)]
        z = 6.0 * torch.tanh(F.linear(ref[0], ref[1], ref[2]) / 6.0)
        rl = F.cross_entropy(z, torch.from_numpy(t), label_smoothing=0.1, reduction=reduction)
        (rl * weights.double().reshape(rl.shape)).sum().backward()
        np.testing.assert_allclose(loss.detach().double().reshape(rl.shape), rl.detach(),
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
        for o, r in zip(ours, ref):
            np.testing.assert_allclose(o.double(), r.grad, rtol=1e-4, atol=1e-6)
    with torch.no_grad():  # no gradient wanted: the loss alone
        assert m(torch.from_numpy(h), torch.from_numpy(w), torch.from_numpy(t)).shape == (24,)


def test_errors_name_the_argument(rng):
    h, w, b, t = problem(rng, 4, 8, 20, bias=True)
    with pytest.raises(ValueError, match=r"weight must have shape \(V, 8\)"):
        L.linear_cross_entropy(h, w[:, :5], t)
    with pytest.raises(ValueError, match=r"bias must have shape \(20,\)"):
        L.linear_cross_entropy(h, w, t, bias=b[:7])
    with pytest.raises(TypeError, match="weight must have h's dtype float32, got float64"):
        L.linear_cross_entropy(h, w.astype(np.float64), t)
    with pytest.raises(TypeError, match="h must be float32, float16 or bfloat16, got float64"):
        L.linear_cross_entropy(h.astype(np.float64), w.astype(np.float64), t)
    with pytest.raises(TypeError, match="bias must have h's dtype"):
        L.linear_cross_entropy(h, w, t, bias=b.astype(np.float16))
    with pytest.raises(ValueError, match=r"target\[2\] = 20 is out of range for 20 classes"):
        L.linear_cross_entropy(h, w, np.array([0, 1, 20, 3]))
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        L.linear_cross_entropy(h, w, t[:3])
    bad = h.copy()
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="h: row 2 is not finite"):
        L.linear_cross_entropy(bad, w, t)
    with pytest.raises(ValueError, match="softcap must be > 0"):
        L.linear_cross_entropy(h, w, t, softcap=0.0)
    with pytest.raises(ValueError, match="label_smoothing"):
        L.linear_cross_entropy(h, w, t, label_smoothing=1.5)
    with pytest.raises(ValueError, match="grad_filter"):
        L.linear_cross_entropy(h, w, t, grad_filter=-1.0)
    with pytest.raises(ValueError, match=r"h must be 2-D"):
        L.linear_cross_entropy(h[0], w, t)


def test_no_n_by_v_buffer():
    """Peak resident memory of a fresh process: N x V float32 logits would be 512 MiB; the fused
    loss with its gradients stays within the inputs, outputs and ~64 MiB."""
    code = """
import numpy as np, resource, softzo.losses as L
rng = np.random.default_rng(0)
n, d, v = 4096, 32, 32768
h = rng.standard_normal((n, d), dtype=np.float32)
w = rng.standard_normal((v, d), dtype=np.float32)
t = rng.integers(0, v, n)
L.linear_cross_entropy(h[:8], w[:8], t[:8] % 8, return_grad=True)  # load BLAS, warm up
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
L.linear_cross_entropy(h, w, t, return_grad=True)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)
"""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    extra_mib = float(out.stdout.strip())
    outputs_mib = (4096 * 32 + 32768 * 32) * 4 / 2**20  # grad_h and grad_w
    assert extra_mib < outputs_mib + 64, f"{extra_mib:.0f} MiB extra"


def test_info_is_untouched_by_blas_threads():
    """The call sets OpenBLAS's thread count for its own length only."""
    from softzo.spherical import blas_threads

    before = blas_threads()
    h = np.ones((3, 4), np.float32)
    L.linear_cross_entropy(h, h, np.zeros(3, np.int64), num_threads=1)
    assert blas_threads() == before
    assert softzo.info()["num_threads"] >= 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softcap_kernel_every_isa(dtype, rng):
    """c tanh(x / c) on every ISA within 4 ulp(c) of the long double answer (the
    vector files' 1 - 2 / (1 + exp(2x / c)) is absolute-accurate), +-inf to +-c, NaN kept."""
    from softzo import _testing

    c = dtype(30.0)
    x = np.concatenate([
        rng.standard_normal(5000) * 40, rng.standard_normal(1000) * 1e-3,
        np.array([0.0, -0.0, 1e-30, 500.0, -500.0, 1e5, np.inf, -np.inf, np.nan]),
    ]).astype(dtype)  # fmt: skip
    exact = (np.longdouble(c) * np.tanh(x.astype(np.longdouble) / np.longdouble(c))).astype(
        np.float64
    )
    for isa in softzo.info()["isas_available"]:
        for n in (x.size, 13, 1):
            y = np.full(n, 7, dtype)
            _testing.vsoftcap(x[:n], y, c, isa)
            ok = np.isfinite(x[:n])
            err = np.abs(y[ok].astype(np.float64) - exact[:n][ok])
            assert err.max() <= 4 * np.spacing(c), (isa, float(err.max() / np.spacing(c)))
            np.testing.assert_array_equal(y[np.isinf(x[:n])], np.sign(x[:n][np.isinf(x[:n])]) * c)
            assert np.isnan(y[np.isnan(x[:n])]).all()
