"""float16 and bfloat16: the conversion kernels of every ISA against NumPy and ml_dtypes (all
65536 half values, sweeps of float32 bit patterns, the SIMDe-emulated AVX-512 build in a
subprocess), and the softmax family and losses on half inputs, for every ISA and framework:

- bitwise, the float32 computation on the widened input rounded once to the half type (what
  "accumulate in float32" promises; the loss and logsumexp, rounded from double, within 1 ulp);
- against the float64 answer: within 1 ulp of the half type (where a gradient cancels, within
  4 float32 ulps of its terms' scale, see half_ulps), and never worse than PyTorch's own
  half-precision result against the same answer.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import softzo
from half_testing import (
    HALF,
    assert_same_bits,
    check_fused_softmax,
    check_not_worse_than_torch,
    from_torch,
    half_dtype,
    max_ulps,
    rounded,
    to_torch,
)
from reference import ref_log_softmax, ref_logsumexp, ref_softmax
from reference_losses import (
    ref_cross_entropy,
    ref_cross_entropy_scales,
    ref_kl_div,
    ref_spherical_loss,
    ref_z_loss,
)
from softzo import _testing
from softzo import losses as L

# ---- the conversion kernels ------------------------------------------------------------------


def _all_half_bits():
    return np.arange(65536, dtype=np.uint16)


@pytest.mark.parametrize("name", HALF)
def test_every_half_value_widens_exactly_on_every_isa(name):
    bits = _all_half_bits()
    expected = bits.view(half_dtype(name)).astype(np.float32)
    nan = np.isnan(expected)
    for isa in softzo.info()["isas_available"]:
        for n in (65536, 65531, 17, 3, 0):  # vector bodies and every tail
            out = np.full(n, 7.0, np.float32)
            _testing.widen(name, bits[:n], out, isa)
            np.testing.assert_array_equal(out.view(np.uint32)[~nan[:n]],
                                          expected[:n].view(np.uint32)[~nan[:n]])  # fmt: skip
            assert np.isnan(out[nan[:n]]).all()
            # NaNs keep their sign and payload, quiet (F16C's rule; bfloat16 just shifts).
            payload = out[nan[:n]].view(np.uint32)
            assert (payload & 0x400000).all() or name == "bfloat16"
            if name == "bfloat16":
                np.testing.assert_array_equal(payload >> 16, bits[:n][nan[:n]])


def _float_patterns(count=1 << 21, seed=7):
    """float32 bit patterns: a spread over all 2^32, every float16 / bfloat16 rounding boundary
    (ties and their neighbours), subnormals, overflow thresholds, infinities and NaNs."""
    rng = np.random.default_rng(seed)
    spread = rng.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32)
    f16 = _all_half_bits().view(np.float16).astype(np.float32)
    f16 = f16[np.isfinite(f16)].view(np.uint32).astype(np.int64)
    ties16 = f16 + 0x1000  # midway to the next float16 (normal ones: 13 bits below)
    ties_bf = (_all_half_bits().astype(np.int64) << 16) + 0x8000  # midway to the next bfloat16
    near = np.concatenate([t + d for t in (ties16, ties_bf) for d in (-1, 0, 1)])
    near = (near & 0xFFFFFFFF).astype(np.uint32)
    special = np.array(
        [0, 0x80000000, 1, 0x807FFFFF, 0x00800000, 0x477FE000, 0x477FEFFF, 0x477FF000,
         0x477FF001, 0x7F7FFFFF, 0x7F7F8000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001,
         0xFFC12345, 0x33000000, 0x33000001, 0x32FFFFFF, 0x387FE000, 0x38800000],
        dtype=np.uint32,
    )  # fmt: skip
    return np.concatenate([spread, near, special]).view(np.float32)


@pytest.mark.parametrize("name", HALF)
def test_float32_narrows_to_nearest_even_on_every_isa(name):
    x = _float_patterns()
    expected = x.astype(half_dtype(name)).view(np.uint16)
    nan = np.isnan(x)
    if name == "bfloat16":  # float32 subnormals become signed zero (AVX512-BF16's rule)
        sub = (np.abs(x) < np.finfo(np.float32).tiny) & (x != 0)
        expected = np.where(sub, (x.view(np.uint32) >> 16) & 0x8000, expected).astype(np.uint16)
    results = {}
    for isa in softzo.info()["isas_available"]:
        out = np.zeros(x.size, np.uint16)
        _testing.narrow(name, x, out, isa)
        np.testing.assert_array_equal(out[~nan], expected[~nan])
        back = out[nan].view(half_dtype(name)).astype(np.float32)
        assert np.isnan(back).all()
        results[isa] = out
        for n in range(40):  # tails: nothing written past n
            tail = np.full(n + 5, 0xABCD, np.uint16)
            _testing.narrow(name, x[:n], tail[:n], isa)
            np.testing.assert_array_equal(tail[:n], out[:n])
            assert (tail[n:] == 0xABCD).all()
    first = next(iter(results.values()))
    for isa, out in results.items():  # NaN payloads too: every ISA gives the same bits
        np.testing.assert_array_equal(out, first, err_msg=isa)


def test_emulated_avx512_conversions_in_a_subprocess():
    """The SIMDe build (its float16 halves through F16C, the integer bfloat16 path that AVX-512
    CPUs without BF16 take) gives the scalar kernels' bits. Natively-AVX-512 machines reach it
    only through SOFTZO_EMULATE_AVX512=1, hence the subprocess."""
    if softzo.info()["isas_emulated"]:
        pytest.skip("the avx512 ISA is already the emulated build here (the tests above ran it)")
    if "avx512" not in softzo.info()["isas_available"]:
        pytest.skip("no AVX-512 kernels in this build")
    code = """
import numpy as np, softzo
from softzo import _testing
assert softzo.info()["isas_emulated"] == ["avx512"], softzo.info()
rng = np.random.default_rng(3)
x = rng.integers(0, 2**32, 1 << 20, dtype=np.uint64).astype(np.uint32).view(np.float32)
bits = np.arange(65536, dtype=np.uint16)
for name in ("float16", "bfloat16"):
    for n in (x.size, 1000, 13):
        a, b = np.zeros(n, np.uint16), np.zeros(n, np.uint16)
        _testing.narrow(name, x[:n], a, "scalar")
        _testing.narrow(name, x[:n], b, "avx512")
        assert (a == b).all(), name
    a, b = np.zeros(65536, np.float32), np.zeros(65536, np.float32)
    _testing.widen(name, bits, a, "scalar")
    _testing.widen(name, bits, b, "avx512")
    assert (a.view(np.uint32) == b.view(np.uint32)).all(), name
print("ok")
"""
    env = dict(os.environ, SOFTZO_EMULATE_AVX512="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ---- softmax, log_softmax, logsumexp ---------------------------------------------------------

_OPS = {
    "softmax": (softzo.softmax, ref_softmax),
    "log_softmax": (softzo.log_softmax, ref_log_softmax),
    "logsumexp": (softzo.logsumexp, ref_logsumexp),
}


def _torch_op(op, t):
    torch = pytest.importorskip("torch")
    return {"softmax": torch.softmax, "log_softmax": torch.log_softmax}.get(
        op, lambda v, d: torch.logsumexp(v, d)
    )(t, -1)


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("shape", [(1, 1), (5, 123), (64, 1000), (3, 4099)])
@pytest.mark.parametrize("op", list(_OPS))
def test_softmax_family(isa, name, shape, op, rng):
    fn, ref_fn = _OPS[op]
    x = (rng.standard_normal(shape) * 4).astype(half_dtype(name))
    y = fn(x)
    assert np.asarray(y).dtype == half_dtype(name)
    ref = np.asarray(ref_fn(x.astype(np.float64)), np.float64)
    if op == "softmax":  # the fused half kernels (auto): their own exp, see below
        check_fused_softmax(x, y, ref, name)
    else:  # bitwise the float32 computation of the same ISA on the widened input, rounded once
        assert_same_bits(y, rounded(fn(x.astype(np.float32)), name))
    ours = max_ulps(y, ref, name)
    assert ours <= 1.0, f"{op} {name}: {ours:.3g} ulp"
    theirs = max_ulps(from_torch(_torch_op(op, to_torch(x))), ref, name)
    check_not_worse_than_torch(ours, theirs, f"{op} {name} {shape}")


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("algorithm", ["two_pass", "online", "three_pass_recompute"])
def test_softmax_algorithms_and_special_values(isa, name, algorithm, rng):
    x = (rng.standard_normal((6, 300)) * 3).astype(np.float32)
    x[1, 7] = -np.inf
    x[2, :] = -np.inf
    x[3, 9] = np.inf
    x[4, 3] = np.nan
    x[5, :150] = -60000.0  # far below the row's max: flushed terms, exact zeros
    xh = x.astype(half_dtype(name))
    for op in ("softmax", "log_softmax", "logsumexp"):
        fn = _OPS[op][0]
        kwargs = {} if op == "logsumexp" else {"algorithm": algorithm}
        if op == "logsumexp":
            kwargs["algorithm"] = algorithm
        assert_same_bits(fn(xh, **kwargs), rounded(fn(xh.astype(np.float32), **kwargs), name))


@pytest.mark.parametrize("name", HALF)
def test_long_rows_split_across_threads(name, rng):
    x = (rng.standard_normal((2, 300_001)) * 5).astype(half_dtype(name))  # chunked rows
    for op in ("softmax", "log_softmax", "logsumexp"):
        fn, ref_fn = _OPS[op]
        one, two = fn(x, num_threads=1), fn(x, num_threads=2)
        assert_same_bits(two, one)
        assert max_ulps(one, ref_fn(x.astype(np.float64)), name) <= 1.0


@pytest.mark.parametrize("name", HALF)
def test_strided_axes_out_and_in_place(name, rng):
    x = (rng.standard_normal((40, 30)) * 3).astype(half_dtype(name))
    expect = softzo.softmax(np.ascontiguousarray(x.T), axis=-1).T
    assert_same_bits(softzo.softmax(x, axis=0), expect)
    assert_same_bits(softzo.log_softmax(x[:, ::3]), softzo.log_softmax(x[:, ::3].copy()))
    assert_same_bits(softzo.logsumexp(x, axis=0), softzo.logsumexp(np.ascontiguousarray(x.T)))
    out = np.empty_like(x)
    assert softzo.softmax(x, out=out) is out
    assert_same_bits(out, softzo.softmax(x))
    y = x.copy()
    softzo.log_softmax(y, out=y)
    assert_same_bits(y, softzo.log_softmax(x))
    with pytest.raises(TypeError, match="out must have x's dtype"):
        softzo.softmax(x, out=np.empty(x.shape, np.float32))


@pytest.mark.parametrize("name", HALF)
def test_torch_and_jax_arrays(name, rng):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((7, 50)) * 3).astype(half_dtype(name))
    expect = softzo.log_softmax(x)
    t = to_torch(x)
    y = softzo.log_softmax(t)
    assert isinstance(y, torch.Tensor) and y.dtype == getattr(torch, name)
    assert_same_bits(y.view(torch.int16).numpy().view(x.dtype), expect)
    lse = softzo.logsumexp(t)
    assert lse.dtype == getattr(torch, name) and lse.shape == (7,)
    out = torch.empty_like(t)
    assert softzo.softmax(t, out=out) is out
    assert_same_bits(out.view(torch.int16).numpy().view(x.dtype), softzo.softmax(x))
    t2 = t.clone()
    softzo.softmax(t2, out=t2)  # in place, in the tensor's own memory
    assert torch.equal(t2, out)
    p = torch.nn.Parameter(t.float().to(getattr(torch, name)))  # a subclass: the general path
    assert_same_bits(softzo.log_softmax(p).detach().view(torch.int16).numpy().view(x.dtype),
                     expect)  # fmt: skip
    jnp = pytest.importorskip("jax.numpy")
    j = jnp.asarray(x)
    yj = softzo.log_softmax(j)
    assert str(yj.dtype) == name and type(yj).__module__.startswith("jax")
    assert_same_bits(np.asarray(yj), expect)


# ---- losses ----------------------------------------------------------------------------------

N, V = 24, 517
CE_CASES = {
    "plain": {},
    "sum": {"reduction": "sum"},
    "none": {"reduction": "none"},
    "ignored": {"ignore": True},
    "weighted": {"weight": True},
    "smoothing": {"label_smoothing": 0.1},
    "soft": {"soft": True},
}


def _ce_inputs(name, case, rng):
    dt = half_dtype(name)
    x = (rng.standard_normal((N, V)) * 3).astype(dt)
    x[0, 5] = 12  # a confident row: its target's gradient is -rest / (1 + rest)
    t = rng.integers(0, V, N)
    t[0] = 5
    kwargs = {k: v for k, v in case.items() if k in ("reduction", "label_smoothing")}
    if case.get("ignore"):
        t[[2, 7]] = -100
    if case.get("weight"):
        kwargs["weight"] = rng.uniform(0.5, 2.0, V).astype(dt)
    if case.get("soft"):
        soft = rng.uniform(0, 1, (N, V))
        t = (soft / soft.sum(1, keepdims=True)).astype(dt)
    return x, t, kwargs


def _torch_ce(x, t, kwargs):
    torch = pytest.importorskip("torch")
    tx = to_torch(x.copy()).requires_grad_(True)
    tt = to_torch(t) if t.dtype.kind == "V" or t.dtype == np.float16 else None
    if tt is None:
        tt = torch.from_numpy(t) if t.dtype.kind in "iu" else to_torch(t)
    tw = to_torch(kwargs["weight"]) if "weight" in kwargs else None
    loss = torch.nn.functional.cross_entropy(
        tx, tt, weight=tw, label_smoothing=kwargs.get("label_smoothing", 0.0),
        reduction=kwargs.get("reduction", "mean"),
    )  # fmt: skip
    loss.sum().backward()
    return from_torch(loss), from_torch(tx.grad)


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("case", list(CE_CASES))
def test_cross_entropy(isa, name, case, rng):
    x, t, kwargs = _ce_inputs(name, CE_CASES[case], rng)
    loss, grad, lse = L.cross_entropy(x, t, return_grad=True, return_lse=True, **kwargs)
    dt = half_dtype(name)
    assert np.asarray(loss).dtype == dt and grad.dtype == dt and lse.dtype == dt
    # The gradient is the float32 computation on the widened input, rounded once.
    k32 = {k: (v.astype(np.float32) if isinstance(v, np.ndarray) else v) for k, v in kwargs.items()}
    t32 = t.astype(np.float32) if t.dtype.kind not in "iu" else t
    _, grad32 = L.cross_entropy(x.astype(np.float32), t32, return_grad=True, **k32)
    assert_same_bits(grad, rounded(grad32, name))
    w64 = kwargs["weight"].astype(np.float64) if "weight" in kwargs else None
    t64 = t.astype(np.float64) if t.dtype.kind not in "iu" else t
    red = kwargs.get("reduction", "mean")
    eps = kwargs.get("label_smoothing", 0.0)
    ref_loss, ref_grad, ref_lse = ref_cross_entropy(
        x.astype(np.float64), t64, w64, label_smoothing=eps, reduction=red
    )
    _, grad_scale = ref_cross_entropy_scales(
        x.astype(np.float64), t64, w64, label_smoothing=eps, reduction=red
    )
    cancels = case in ("smoothing", "soft")  # p - q can cancel
    errs = {
        "loss": max_ulps(loss, ref_loss, name),
        "grad": max_ulps(grad, ref_grad, name, grad_scale if cancels else 0.0),
        "lse": max_ulps(lse, ref_lse, name),
    }
    assert max(errs.values()) <= 1.0, errs
    t_loss, t_grad = _torch_ce(x, t, kwargs)
    check_not_worse_than_torch(errs["loss"], max_ulps(t_loss, ref_loss, name), f"{case} loss")
    theirs = max_ulps(t_grad, ref_grad, name, grad_scale if cancels else 0.0)
    check_not_worse_than_torch(errs["grad"], theirs, f"{case} grad")


@pytest.mark.parametrize("name", HALF)
def test_cross_entropy_grad_out_in_place_and_frameworks(isa, name, rng):
    torch = pytest.importorskip("torch")
    x, t, _ = _ce_inputs(name, {}, rng)
    loss, grad = L.cross_entropy(x, t, return_grad=True)
    y = x.copy()
    loss2, g2 = L.cross_entropy(y, t, grad_out=y)
    assert g2 is y and loss2 == loss
    assert_same_bits(y, grad)
    tx = to_torch(x.copy())
    tl, tg = L.cross_entropy(tx, torch.from_numpy(t), grad_out=tx)  # in place, torch
    assert tg is tx and tl.dtype == getattr(torch, name)
    assert_same_bits(tx.view(torch.int16).numpy().view(x.dtype), grad)
    # The general path (int32 targets, a transposed array): float32 copies, the same results.
    xt = np.ascontiguousarray(x.T).T  # class axis not unit-stride
    lg, gg = L.cross_entropy(xt, t.astype(np.int32), return_grad=True)
    assert_same_bits(gg, grad)
    assert max_ulps(lg, np.float64(loss.astype(np.float64)), name) <= 1.0
    # softzo.torch's autograd on half logits.
    st = pytest.importorskip("softzo.torch")
    leaf = to_torch(x.copy()).requires_grad_(True)
    st.cross_entropy(leaf, torch.from_numpy(t)).backward()
    assert leaf.grad.dtype == getattr(torch, name)
    assert_same_bits(leaf.grad.view(torch.int16).numpy().view(x.dtype), grad)


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("reduction", ["batchmean", "none"])
def test_kl_div(isa, name, reduction, rng):
    s = (rng.standard_normal((N, V)) * 2).astype(half_dtype(name))
    t = (rng.standard_normal((N, V)) * 2).astype(half_dtype(name))
    loss, grad = L.kl_div(s, t, temperature=2.0, reduction=reduction, return_grad=True)
    _, grad32 = L.kl_div(
        s.astype(np.float32), t.astype(np.float32), temperature=2.0, reduction=reduction,
        return_grad=True,
    )  # fmt: skip
    assert_same_bits(grad, rounded(grad32, name))
    ref_loss, ref_grad = ref_kl_div(s.astype(np.float64), t.astype(np.float64), 2.0, reduction)
    scale = 1.0 / (2.0 * (N if reduction == "batchmean" else 1))  # |q - p| / T <= 1 / T
    assert max_ulps(loss, ref_loss, name) <= 1.0
    assert max_ulps(grad, ref_grad, name, scale) <= 1.0
    torch = pytest.importorskip("torch")
    ts = to_torch(s.copy()).requires_grad_(True)
    F = torch.nn.functional
    tl = F.kl_div(F.log_softmax(ts / 2, -1), F.log_softmax(to_torch(t) / 2, -1), log_target=True,
                  reduction="batchmean" if reduction == "batchmean" else "none")  # fmt: skip
    tl = tl if reduction == "batchmean" else tl.sum(-1)
    tl.sum().backward()
    check_not_worse_than_torch(
        max_ulps(loss, ref_loss, name), max_ulps(from_torch(tl), ref_loss, name), "KL loss"
    )
    check_not_worse_than_torch(
        max_ulps(grad, ref_grad, name, scale),
        max_ulps(from_torch(ts.grad), ref_grad, name, scale),
        "KL grad",
    )


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("kind", ["z_loss", "log_spherical", "log_taylor", "mse"])
def test_z_loss_and_spherical_family(isa, name, kind, rng):
    o = (rng.standard_normal((N, V)) + 0.5).astype(half_dtype(name))
    t = rng.integers(0, V, N)
    o64 = o.astype(np.float64)
    if kind == "z_loss":
        loss, grad = L.z_loss(o, t, a=2.0, b=1.0, return_grad=True)
        _, grad32 = L.z_loss(o.astype(np.float32), t, a=2.0, b=1.0, return_grad=True)
        ref_loss, ref_grad = ref_z_loss(o64, t, a=2.0, b=1.0)
    else:
        loss, grad = L.spherical_loss(o, t, kind=kind, return_grad=True)
        _, grad32 = L.spherical_loss(o.astype(np.float32), t, kind=kind, return_grad=True)
        ref_loss, ref_grad = ref_spherical_loss(o64, t, kind=kind)
    assert np.asarray(loss).dtype == half_dtype(name)
    assert_same_bits(grad, rounded(grad32, name))
    assert max_ulps(loss, ref_loss, name) <= 1.0
    # Gradients are affine in o (Z-loss: in o - mean) and cancel; their scale is the largest.
    scale = float(np.abs(np.asarray(ref_grad, np.float64)).max())
    assert max_ulps(grad, ref_grad, name, scale) <= 1.0


def test_errors_name_the_argument_and_the_dtype(rng):
    x16 = np.ones((3, 5), np.float16)
    with pytest.raises(TypeError, match="weight must have the logits' dtype float16"):
        L.cross_entropy(x16, np.zeros(3, np.int64), weight=np.ones(5, np.float32))
    with pytest.raises(TypeError, match="logits must be float32 or float64 for this loss"):
        L.stablemax_cross_entropy(x16, np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="x must be float32 or float64 for stablemax"):
        L.stablemax(x16)
    with pytest.raises(TypeError, match="x must be float32, float64, float16 or bfloat16"):
        softzo.softmax(np.ones((2, 3), np.int16))
    with pytest.raises(TypeError, match="teacher_logits must have the student's dtype float16"):
        L.kl_div(x16, np.ones((3, 5), np.float32))
