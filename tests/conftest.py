"""Shared fixtures: every test that takes `isa` runs once per ISA this build can run here."""

import numpy as np
import pytest
import softzo

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
