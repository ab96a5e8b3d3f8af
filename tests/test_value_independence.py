"""Speed that does not depend on the values, proven without timing: no kernel forms or consumes a
subnormal number (the cause of the 8-10x slowdown on wide-spread rows: each such operation takes
a ~100-cycle microcode assist), checked with the CPU's own sticky flags (MXCSR DE: a denormal
operand was used; UE: a result underflowed), on every ISA x algorithm x dtype, for the input
distributions the benchmarks sweep. Results are also bitwise the same with FTZ/DAZ on and off,
and the caller's floating-point state is left as it was. And float64 results are not flushed at
float32's underflow point: the band 87..708 below the row max keeps its float64 value."""

import numpy as np
import pytest
import softzo
from conftest import ALGORITHMS
from softzo import _testing, losses

DENORMAL_OPERAND, UNDERFLOW = 0x02, 0x10
DTYPES = [np.float32, np.float64]


def distributions(rng, dtype, rows=8, n=5000):
    """The benchmarks' input distributions: N(0,1), wide N(0,30^2) and N(0,100^2), 10% -inf
    masks, a -1e4 padded tail, temperature 0.1, and (float64) the band 87..708 below the max."""
    base = rng.standard_normal((rows, n))
    masked = base.copy()
    masked[rng.random((rows, n)) < 0.1] = -np.inf
    padded = base.copy()
    padded[:, n // 2 :] = -1e4
    out = {
        "N(0,1)": base,
        "N(0,30^2)": base * 30,
        "N(0,100^2)": base * 100,
        "masked": masked,
        "padded": padded,
        "temperature 0.1": base / 0.1,
    }
    if dtype == np.float64:
        out["float64 band"] = -rng.uniform(87, 708, (rows, n)) + np.where(
            np.arange(n) == 7, 708.0, 0.0
        )
    return {k: v.astype(dtype) for k, v in out.items()}


def calls(x, algorithm):
    """Every op on x with one thread (MXCSR is per thread), each returning its outputs."""
    t = np.argmax(x, -1)
    teacher = np.ascontiguousarray(x[::-1])
    kw = {"num_threads": 1}
    return {
        "softmax": lambda: softzo.softmax(x, algorithm=algorithm, **kw),
        "log_softmax": lambda: softzo.log_softmax(x, algorithm=algorithm, **kw),
        "logsumexp": lambda: softzo.logsumexp(x, algorithm=algorithm, **kw),
        "cross_entropy": lambda: losses.cross_entropy(x, t, return_grad=True, **kw),
        "smoothed": lambda: losses.cross_entropy(
            x, t, label_smoothing=0.1, reduction="none", return_grad=True, **kw
        ),
        "kl_div": lambda: losses.kl_div(x, teacher, temperature=2.0, return_grad=True, **kw),
    }


def flatten(result):
    parts = result if isinstance(result, tuple) else (result,)
    return [np.asarray(p) for p in parts]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "auto"])
def test_no_subnormal_is_formed_or_used(isa, algorithm, dtype, rng):
    tiny = np.finfo(dtype).tiny
    # SIMDe computes the masked-out lanes of an AVX-512 masked operation and zeros them
    # afterwards (hardware never computes them), so the flags say nothing about the emulated
    # ISA; its outputs are still checked here, and native AVX-512 checks the flags.
    emulated = isa in softzo.info()["isas_emulated"]
    for name, x in distributions(rng, dtype).items():
        for op, call in calls(x, algorithm).items():
            _testing.clear_fp_flags()
            result = call()
            flags = 0 if emulated else _testing.fp_flags()
            assert not flags & DENORMAL_OPERAND, f"{name} {op}: a subnormal operand was used"
            assert not flags & UNDERFLOW, f"{name} {op}: a result underflowed"
            for out in flatten(result):
                sub = (out != 0) & (np.abs(out) < tiny)
                assert not sub.any(), f"{name} {op}: subnormal output {out[sub][:3]}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", [a for a in ALGORITHMS if a != "auto"])
def test_results_do_not_depend_on_ftz_daz(isa, algorithm, dtype, rng):
    for name, x in distributions(rng, dtype, rows=3, n=3000).items():
        for op, call in calls(x, algorithm).items():
            plain = flatten(call())
            _testing.set_flush_denormals(True)
            try:
                flushed = flatten(call())
            finally:
                _testing.set_flush_denormals(False)
            for a, b in zip(plain, flushed):
                np.testing.assert_array_equal(a, b, err_msg=f"{name} {op}")


def test_callers_floating_point_state_is_kept(rng):
    """softzo never touches MXCSR: a caller's FTZ stays on (or off) across every call."""
    x = (rng.standard_normal((4, 5000)) * 100).astype(np.float32)
    for on in (True, False):
        _testing.set_flush_denormals(on)
        try:
            softzo.softmax(x, num_threads=1)
            losses.cross_entropy(x, np.zeros(4, np.int64), return_grad=True, num_threads=1)
            probe = np.array([np.finfo(np.float32).tiny], np.float32) / np.float32(4)
        finally:
            _testing.set_flush_denormals(False)
        assert (probe[0] == 0) == on, "a softzo call changed the caller's flush-to-zero mode"


# float64 entries between float32's underflow point (87 below the max) and float64's (708).
# Expected values: the long-double reference, SciPy's fixture and PyTorch's answers quoted in
# the issue that found the flush (softmax([0, -100])[1] = 3.72e-44, softmax([1, 325, 749, 750])[1]
# = 1.9444526359919372e-185, cross-entropy gradient of [[0, -100, -300, 5]] at target 3:
# 2.49e-46 and 3.45e-133).
def test_float64_band_keeps_float64_values(isa):
    for algorithm in ALGORITHMS:
        y = softzo.softmax(np.array([0.0, -100.0]), algorithm=algorithm)
        np.testing.assert_allclose(y[1], np.exp(-100.0) / (1 + np.exp(-100.0)), rtol=1e-15)
        y = softzo.softmax(np.array([1.0, 325.0, 749.0, 750.0]), algorithm=algorithm)
        np.testing.assert_allclose(y[1], 1.9444526359919372e-185, rtol=1e-14)
        ly = softzo.log_softmax(np.array([0.0, -100.0]), algorithm=algorithm)
        np.testing.assert_allclose(ly[1], -100.0 - np.log1p(np.exp(-100.0)), rtol=1e-15)
    _, grad = losses.cross_entropy(
        np.array([[0.0, -100.0, -300.0, 5.0]]), np.array([3]), return_grad=True
    )
    x = np.array([0.0, -100.0, -300.0, 5.0], np.longdouble)
    p = np.exp(x - 5) / np.exp(x - 5).sum()
    np.testing.assert_allclose(grad[0, 1:3], p[1:3].astype(np.float64), rtol=1e-14)
    assert grad[0, 1] > 2e-46 and grad[0, 2] > 3e-133


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_float64_band_every_distance(isa, algorithm, rng):
    """Rows whose entries lie 80..760 below the max: float64 softmax within 4 ulp of long double
    for outputs above 2^-1020 (4x the smallest normal, the stated flush floor), and 0 or within
    that floor below it; never flushed at float32's underflow point."""
    gaps = np.linspace(80, 760, 997)
    x = np.concatenate([[0.0], -gaps, rng.uniform(-760, 0, 26)])[None, :]
    y = softzo.softmax(x, algorithm=algorithm)[0].astype(np.longdouble)
    xl = x[0].astype(np.longdouble)
    ref = np.exp(xl - xl.max()) / np.exp(xl - xl.max()).sum()
    floor = np.longdouble(2.0**-1020)
    big = ref >= floor
    ulp = np.spacing(ref[big].astype(np.float64)).astype(np.longdouble)
    assert (np.abs(y[big] - ref[big]) / ulp).max() <= 4
    assert (np.abs(y[~big] - ref[~big]) <= floor).all()
    assert (y[1 : 1 + len(gaps)][gaps < 705] > 0).all()  # nothing flushed at float32's 87
