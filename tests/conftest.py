"""Shared fixtures: every test that takes `isa` runs once per ISA this build can run here."""

import numpy as np
import pytest
import softzo

ISAS = softzo.info()["isas_available"]
ALGORITHMS = ["two_pass", "three_pass_reload", "three_pass_recompute", "online", "auto"]


@pytest.fixture(params=ISAS)
def isa(request):
    """Switches softzo to one ISA (an emulated one too) for the test, then back."""
    before = softzo.info()["isa"]
    softzo.set_isa(request.param)
    yield request.param
    softzo.set_isa(before)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def torch_or_skip():
    return pytest.importorskip("torch")
