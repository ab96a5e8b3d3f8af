"""The fused float16 / bfloat16 softmax (kernels/half_softmax/, ops/half_softmax_rows.h), on
every ISA: its exp at every non-positive half value, every kind of row through the row pipeline
(special values, flushes, masks, tails), in place, strided and threaded, against the float64
softmax (within 1/2 + 2^-9 ulp, see half_testing.FUSED_BOUND) and PyTorch's half softmax."""

import os
import subprocess
import sys

import numpy as np
import pytest
import softzo
from half_testing import (
    FUSED_BOUND,
    HALF,
    assert_same_bits,
    check_fused_softmax,
    check_not_worse_than_torch,
    from_torch,
    half_dtype,
    max_ulps,
    to_torch,
)
from reference import ref_softmax


def _finite_values(name):
    """Every finite value of the half type, ascending."""
    with np.errstate(invalid="ignore"):  # the NaN patterns
        v = np.arange(65536, dtype=np.uint16).view(half_dtype(name)).astype(np.float64)
    return np.unique(v[np.isfinite(v)])


@pytest.mark.parametrize("name", HALF)
def test_exp_at_every_non_positive_half_value(isa, name):
    """Rows [0, v_1, ..., v_63] over every finite v <= 0: softmax = exp(v) / (1 + sum exp),
    so every half value is an argument of the exp once (in vector lanes and, by the shifted
    second set of rows, in scalar tails)."""
    v = _finite_values(name)
    v = v[v <= 0][::-1]  # -0 and 0 first, then away from 0
    for width in (63, 40):  # 64 elements per row: whole units; 41: a scalar tail
        pad = -v.size % width
        body = np.concatenate([v, np.full(pad, -np.inf)]).reshape(-1, width)
        x = np.concatenate([np.zeros((body.shape[0], 1)), body], axis=1).astype(half_dtype(name))
        y = softzo.softmax(x)
        ref = ref_softmax(x.astype(np.float64))
        ours = max_ulps(y, ref, name)
        assert ours <= FUSED_BOUND, f"{name}, rows of {width + 1}: {ours:.6f} ulp"
        theirs = max_ulps(from_torch(to_torch(x).softmax(-1)), ref, name)
        check_not_worse_than_torch(ours, theirs, f"{name} every value")


@pytest.mark.parametrize("name", HALF)
def test_random_rows_of_every_length(isa, name, rng):
    for n in list(range(1, 70)) + [127, 128, 129, 1000, 4097]:
        x = (rng.standard_normal((3, n)) * 5 + rng.uniform(-50, 50)).astype(half_dtype(name))
        y = softzo.softmax(x)
        check_fused_softmax(x, y, ref_softmax(x.astype(np.float64)), name)
        out = np.full_like(x, np.nan)  # every output element written
        assert softzo.softmax(x, out=out) is out
        assert_same_bits(out, y)


def _rows_of_every_kind(name, n, rng):
    """A batch whose rows take every path of the pipeline, with the row kinds in a mixed order."""
    big = 60000.0 if name == "float16" else 3e38
    rows = {
        "normal": rng.standard_normal(n) * 3,
        "nan": np.where(np.arange(n) == n // 2, np.nan, 1.0),
        "plus inf": np.where(np.arange(n) == 3, np.inf, 0.0),
        "all -inf": np.full(n, -np.inf),
        "causal mask": np.where(np.arange(n) < n // 3, rng.standard_normal(n), -np.inf),
        "spread 100 (exp flush)": np.linspace(-100.0, 0.0, n),
        "spread 80 (scale flush)": np.linspace(-80.0, 0.0, n),
        "huge": np.where(np.arange(n) % 2 == 0, big, -big),
        "constant": np.full(n, 7.0),
        "large offset": rng.standard_normal(n) + (8000.0 if name == "float16" else 1e30),
        # bfloat16 rows fold the max into the exp while |max| <= 168: both sides of that, and
        # a folded row whose elements reach |x| = 255, where the fold is least accurate.
        "under the fold limit": 168 - rng.uniform(0, 80, n),
        "over the fold limit": 169 + rng.uniform(0, 80, n),
        "folded, |x| up to 255": np.linspace(-255.0, -168.0, n),
    }
    names = list(rows)
    kinds = (0, 1, 0, 2, 3, 0, 4, 5, 0, 6, 7, 8, 9, 0, 10, 11, 12)
    order = [names[i] for i in kinds]
    x = np.stack([rows[k] for k in order]).astype(half_dtype(name))
    return x, order


@pytest.mark.parametrize("name", HALF)
@pytest.mark.parametrize("n", [37, 300, 2048])
def test_rows_of_every_kind_through_the_pipeline(isa, name, n, rng):
    x, order = _rows_of_every_kind(name, n, rng)
    y = softzo.softmax(x)
    ref = ref_softmax(x.astype(np.float64))
    for r, kind in enumerate(order):
        # Each row as a batch of its own (no pipeline) gives the same bits.
        assert_same_bits(y[r], softzo.softmax(x[r : r + 1])[0])
        if kind in ("nan", "plus inf", "all -inf"):  # the exact path: PyTorch's semantics
            assert_same_bits(y[r], softzo.softmax(x[r : r + 1], algorithm="two_pass")[0])
            assert np.isnan(y[r].astype(np.float32)).all()
        else:
            assert max_ulps(y[r], ref[r], name) <= FUSED_BOUND, kind
            assert (y[r].astype(np.float64) >= 0).all() and (y[r].astype(np.float64) <= 1).all()
    # Threads, in place and strided rows give the same bits.
    assert_same_bits(softzo.softmax(x, num_threads=2), y)
    inplace = x.copy()
    assert softzo.softmax(inplace, out=inplace) is inplace
    assert_same_bits(inplace, y)
    wide = np.zeros((x.shape[0], 2 * n), x.dtype)
    wide[:, ::2] = x
    assert_same_bits(softzo.softmax(wide[:, ::2]), y)
    assert_same_bits(softzo.softmax(np.ascontiguousarray(x.T), axis=0), y.T)


@pytest.mark.parametrize("name", HALF)
def test_all_masked_rows(isa, name):
    x = np.full((3, 50), -np.inf).astype(half_dtype(name))
    x[1, 7] = 1.0
    y = softzo.softmax(x, all_masked="zero").astype(np.float64)
    assert (y[[0, 2]] == 0).all() and y[1, 7] == 1.0 and y[1].sum() == 1.0


def test_emulated_avx512_in_a_subprocess():
    """The SIMDe build of the fused kernels (its integer bfloat16 rounding and F16C float16
    halves): on natively-AVX-512 machines only through SOFTZO_EMULATE_AVX512=1."""
    if softzo.info()["isas_emulated"]:
        pytest.skip("the avx512 ISA is already the emulated build here (the tests above ran it)")
    if "avx512" not in softzo.info()["isas_available"]:
        pytest.skip("no AVX-512 kernels in this build")
    code = f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
import numpy as np, softzo
from half_testing import FUSED_BOUND, max_ulps
from reference import ref_softmax
import test_half_softmax as t
assert softzo.info()["isas_emulated"] == ["avx512"], softzo.info()
rng = np.random.default_rng(5)
with softzo.using_isa("avx512"):
    for name in ("float16", "bfloat16"):
        for n in (37, 300, 2048):
            x, order = t._rows_of_every_kind(name, n, rng)
            y = softzo.softmax(x)
            with softzo.using_isa("scalar"):
                s = softzo.softmax(x)
            ref = ref_softmax(x.astype(np.float64))
            for r, kind in enumerate(order):
                if kind in ("nan", "plus inf", "all -inf"):
                    assert np.isnan(y[r].astype(np.float32)).all(), kind
                else:
                    assert max_ulps(y[r], ref[r], name) <= FUSED_BOUND, (name, n, kind)
                    assert max_ulps(y[r], s[r].astype(np.float64), name) <= 1.0
print("ok")
"""
    env = dict(os.environ, SOFTZO_EMULATE_AVX512="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
