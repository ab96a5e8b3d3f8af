"""softmax / log_softmax / logsumexp: every algorithm x ISA x dtype against long-double references
with PyTorch's semantics, on random, adversarial and awkward-length inputs."""

import numpy as np
import pytest
import softzo
from conftest import ALGORITHMS
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reference import (
    MAX_ULP,
    check_log_softmax,
    check_logsumexp,
    check_softmax,
    log_error,
    ref_log_softmax,
    ref_softmax,
    softmax_error,
)

DTYPES = [np.float32, np.float64]
FMAX = {np.float32: np.finfo(np.float32).max, np.float64: np.finfo(np.float64).max}

# 0..200 covers every tail of 8/16/32/64-wide loops; the rest straddle larger multiples.
AWKWARD_LENGTHS = list(range(201)) + [
    n + d for n in (255, 256, 512, 1024, 4096, 65536) for d in (-1, 0, 1)
]


def run_all(x, algorithm, axis=-1):
    return (
        softzo.softmax(x, axis, algorithm=algorithm),
        softzo.log_softmax(x, axis, algorithm=algorithm),
        softzo.logsumexp(x, axis, algorithm=algorithm),
    )


def check_all(x, algorithm, axis=-1):
    y, ly, lse = run_all(x, algorithm, axis)
    check_softmax(y, x, axis)
    check_log_softmax(ly, x, axis)
    check_logsumexp(lse, x, axis)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_awkward_lengths(isa, algorithm, dtype, rng):
    for n in AWKWARD_LENGTHS:
        x = (rng.standard_normal((3, n)) * 8).astype(dtype)
        check_all(x, algorithm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_wide_ranges(isa, algorithm, dtype, rng):
    # Spreads of x - max up to ~100 (outputs down to ~1e-40) and large common offsets.
    for scale, offset in [(1, 0), (20, 0), (30, -1e4), (3, 5e4), (0.01, 80), (40, -60)]:
        x = (rng.standard_normal((4, 777)) * scale + offset).astype(dtype)
        check_all(x, algorithm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_minimum_around_flush_point(isa, algorithm, dtype, rng):
    """The AVX2 reload kernels skip the underflow flush when the row minimum is above the flush
    point (about (round(max log2 e) - 124) ln2): rows whose minimum sits just above, at and just
    below it, for several maxima, so both branches and the boundary are checked."""
    for top in (0.0, 3.3, -40.0, 60.0):
        e = np.rint(top * np.log2(np.e))
        cut = (e - 124.0) * np.log(2.0)
        for d in (-np.inf, -1e4, -30.0, -3.0, -0.5, -1e-3, 0.0, 1e-3, 0.5, 2.0):
            x = rng.uniform(cut + 1.0, top, (2, 300)).astype(dtype)
            x[:, 17] = top
            x[:, 150] = cut + d
            x[1, 299] = cut + d  # in the tail as well
            check_all(x, algorithm)


def adversarial_rows(dtype):
    f = FMAX[dtype]
    inf, nan = np.inf, np.nan
    tiny = np.finfo(dtype).smallest_subnormal
    rows = [
        [-inf, 1.0, 2.0, -inf],
        [-inf, -inf, -inf, -inf],
        [1.0, inf, 2.0, 3.0],
        [inf, inf, -inf, 0.0],
        [1.0, nan, 2.0, 3.0],
        [nan, inf, -inf, 0.0],
        [f, -f, 0.0, 1.0],
        [f, f, -f, -f],
        [-f, -f, -f, -f],
        [-f, -inf, -f, -inf],
        [1e30, -1e30, 0.0, 5.0],
        [0.0, -1e30, -1e30, -1e30],
        [-1e30, -1e30 + 1e24, -1e30, -1e30],
        [1e18, 1e18, 0.0, -1e18],
        [-1e4, -1e4 - 3, -1e4 - 90, -inf],
        [-7e4, -7e4 + 2, -7e4, -7e4],
        [6.6e4, 6.5e4, 0.0, -6.6e4],
        [tiny, -tiny, 0.0, tiny * 3],
        [-87.0, -100.0, -104.0, -110.0],
        [0.0, -103.9, -105.0, -745.0],
    ]
    return np.array(rows, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_adversarial_values(isa, algorithm, dtype):
    base = adversarial_rows(dtype)
    check_all(base, algorithm)
    # The same rows embedded in longer ones, at every offset of a vector tile and its tail.
    rng = np.random.default_rng(7)
    for n in (37, 64, 129):
        for row in base:
            for pos in (0, 5, n - len(row)):
                x = rng.standard_normal(n).astype(dtype)
                x[pos : pos + len(row)] = row
                check_all(x[None, :], algorithm)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_all_masked_zero(isa, algorithm):
    x = np.array([[-np.inf] * 5, [0.0, -np.inf, 1.0, -np.inf, 2.0]], np.float32)
    y = softzo.softmax(x, algorithm=algorithm, all_masked="zero")
    check_softmax(y, x, all_masked="zero")
    assert (y[0] == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_split_rows(isa, algorithm, dtype, rng):
    """Rows over 2^18 elements are split into 2^16 chunks: specials placed in different chunks."""
    n = (1 << 18) + (1 << 16) + 12345
    x = (rng.standard_normal((1, n)) * 10).astype(dtype)
    check_all(x, algorithm)
    for edits in (
        [(3, -np.inf), (n - 1, 40.0)],
        [(70000, np.nan)],
        [(n - 2, np.inf)],
        [(0, 1e30), (n - 1, -1e30)],
    ):
        z = x.copy()
        for i, v in edits:
            z[0, i] = v
        check_all(z, algorithm)
    masked = np.full((1, n), -np.inf, dtype)
    masked[0, n - 5] = -3.0
    check_all(masked, algorithm)
    check_all(np.full((1, n), -np.inf, dtype), algorithm)


def test_huge_row_64m():
    """One 64M-float row, split across threads, by every algorithm (the ISA in use)."""
    n = 1 << 26
    x = np.random.default_rng(3).standard_normal(n, dtype=np.float32) * 4
    ref = ref_softmax(x)
    for algorithm in ALGORITHMS:
        err = softmax_error(softzo.softmax(x, algorithm=algorithm, num_threads=2), ref)
        assert err <= MAX_ULP, f"{algorithm}: {float(err):.2f} ulp"


@settings(max_examples=150, deadline=None)
@given(
    x=hnp.arrays(
        dtype=st.sampled_from([np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=70),
        elements=st.one_of(
            st.floats(-1e4, 1e4, width=32),
            st.sampled_from([-np.inf, np.inf, np.nan, 3.0e38, -3.0e38, 1e30, -1e30, 0.0]),
        ),
    ),
    algorithm=st.sampled_from(ALGORITHMS),
    isa_name=st.sampled_from(softzo.info()["isas_available"]),
    data=st.data(),
)
def test_property_matches_reference(x, algorithm, isa_name, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    with softzo.using_isa(isa_name):
        check_all(x, algorithm, axis)


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(
        np.float32,
        hnp.array_shapes(min_dims=1, max_dims=2, max_side=300),
        elements=st.floats(-50, 50, width=32),
    ),
    shift=st.floats(-1e3, 1e3, width=32),
)
def test_property_shift_invariance(x, shift):
    """softmax(x + c) == softmax(x) to rounding: c is exact when added in float64 first."""
    y0 = softzo.softmax(x.astype(np.float64))
    y1 = softzo.softmax(x.astype(np.float64) + np.float64(shift))
    np.testing.assert_allclose(y1, y0, rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(y0.sum(-1), 1.0, rtol=1e-12)


class TestAgainstTorch:
    """softzo's error against the long-double reference is no worse than PyTorch's own."""

    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    @pytest.mark.parametrize("shape", [(5, 123), (255, 507), (3, 32000), (2, 300001)])
    def test_error_not_worse_than_torch(self, isa, algorithm, shape, rng):
        torch = pytest.importorskip("torch")
        x = (rng.standard_normal(shape) * 6).astype(np.float32)
        xt = torch.from_numpy(x)
        ref = ref_softmax(x)
        ours = softmax_error(softzo.softmax(x, algorithm=algorithm), ref)
        theirs = softmax_error(torch.softmax(xt, -1).numpy(), ref)
        assert ours <= max(theirs + 0.25, 1.0), f"softmax {ours:.2f} vs torch {theirs:.2f} ulp"
        lref = ref_log_softmax(x)
        ours = log_error(softzo.log_softmax(x, algorithm=algorithm), lref)
        theirs = log_error(torch.log_softmax(xt, -1).numpy(), lref)
        assert ours <= max(theirs + 0.25, 1.0), f"log_softmax {ours:.2f} vs torch {theirs:.2f} ulp"

    @pytest.mark.parametrize("algorithm", ALGORITHMS)
    def test_special_values_match_torch(self, isa, algorithm):
        torch = pytest.importorskip("torch")
        x = adversarial_rows(np.float32)
        xt = torch.from_numpy(x)
        np.testing.assert_array_equal(
            np.isnan(softzo.softmax(x, algorithm=algorithm)), torch.softmax(xt, -1).isnan().numpy()
        )
        np.testing.assert_array_equal(
            np.isnan(softzo.log_softmax(x, algorithm=algorithm)),
            torch.log_softmax(xt, -1).isnan().numpy(),
        )
        ours = softzo.logsumexp(x, algorithm=algorithm)
        theirs = torch.logsumexp(xt, -1).numpy()
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
        both = np.isinf(theirs)
        np.testing.assert_array_equal(ours[both], theirs[both])
