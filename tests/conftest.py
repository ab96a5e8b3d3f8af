"""Shared fixtures: every test that takes `isa` runs once per ISA this build can run here."""

import numpy as np
import pytest
import softzo
from hypothesis import HealthCheck, settings

# The API fuzz (tests/fuzz): "fuzz-ci" is the fixed-seed slice every test run takes, "long" the
# longer random run of `python -m pytest tests/fuzz --hypothesis-profile=long`.
_FUZZ_SETTINGS = {"deadline": None, "suppress_health_check": list(HealthCheck), "print_blob": True}
settings.register_profile(
    "fuzz-ci", derandomize=True, database=None, max_examples=150, **_FUZZ_SETTINGS
)
settings.register_profile("long", max_examples=5000, **_FUZZ_SETTINGS)

ISAS = softzo.info()["isas_available"]
ALGORITHMS = ["two_pass", "three_pass_reload", "three_pass_recompute", "online", "auto"]


@pytest.fixture(params=ISAS)
def isa(request):
    """Runs the test's calls on one ISA's kernels (an emulated one too): a setting of this
    thread only, which the library's pool carries to its own threads; nothing global changes."""
    with softzo.using_isa(request.param):
        yield request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def torch_or_skip():
    return pytest.importorskip("torch")
