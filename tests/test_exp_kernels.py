"""The exp inside every kernel file: an exhaustive float32 ULP sweep and a float64 sample."""

import numpy as np
from softzo import _testing

# exp's float32 domain with normal results: ln(2^-126) .. ln(FLT_MAX).
F32_LO, F32_HI = np.float32(-87.33654), np.float32(88.72283)


def test_f32_exp_every_float(isa):
    max_ulp, worst, count = _testing.exp_f32_ulp_sweep(isa, F32_LO, F32_HI)
    assert count > 2_000_000_000  # every float32 in the domain
    # XNNPACK's degree-5 minimax polynomial measures 1.98 ulp on this domain.
    assert max_ulp < 2.5, f"{isa}: {max_ulp:.3f} ulp at x = {worst!r}"


def test_f32_exp_edges(isa):
    x = np.array([-np.inf, -1e30, -104.0, -88.0, 0.0, -0.0, 89.0, 1e30, np.inf, np.nan], np.float32)
    y = np.empty_like(x)
    _testing.vexp(x, y, isa)
    assert (y[:4] == 0).all()  # below the normal range: flushed to exactly 0
    assert (y[4:6] == 1).all()
    assert np.isposinf(y[6:9]).all()
    assert np.isnan(y[9])


def test_f64_exp_sampled(isa, rng):
    x = np.concatenate(
        [
            rng.uniform(-708, 709.7, 1_000_000),
            rng.uniform(-1, 1, 100_000),
            np.arange(-708, 709, dtype=np.float64) * np.log(2),
        ]
    )
    y = np.empty_like(x)
    _testing.vexp(x, y, isa)
    ref = np.exp(x.astype(np.longdouble))
    ulp = np.spacing(ref.astype(np.float64)).astype(np.longdouble)
    err = (np.abs(y - ref) / ulp).max()
    assert err < 2.0, f"{isa}: float64 exp error {float(err):.3f} ulp"
