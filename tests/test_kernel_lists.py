"""The kernel lists and the per-ISA selection the other tests use: every ISA available here
fills every entry of every family's list, and choosing an ISA for a test is a setting of the
calling thread (carried to the library's pool), not of the process."""

import threading

import numpy as np
import softzo
from softzo import _testing


def test_every_isa_fills_every_kernel_of_every_list():
    families = _testing.kernels()
    assert set(families) == {"softmax", "losses", "zo", "convert", "half_softmax"}
    assert all(families.values())
    for isa in softzo.info()["isas_available"]:
        assert _testing.missing_kernels(isa) == [], isa


def test_using_isa_is_thread_local_and_reaches_the_pool(rng):
    process_isa = softzo.info()["isa"]
    seen = {}
    x = rng.standard_normal((4, 1 << 19)).astype(np.float32)  # split rows: the pool runs them
    with softzo.using_isa("scalar"):
        assert softzo.info()["isa"] == "scalar"
        other = threading.Thread(target=lambda: seen.update(isa=softzo.info()["isa"]))
        other.start()
        other.join()
        scalar = softzo.softmax(x, num_threads=2)
    assert seen["isa"] == process_isa
    assert softzo.info()["isa"] == process_isa
    # Scalar and vector kernels differ in their last bits: had a pool thread run the vector
    # kernels, some chunk would differ from the scalar ISA's one-thread result.
    with softzo.using_isa("scalar"):
        np.testing.assert_array_equal(scalar, softzo.softmax(x, num_threads=1))
    assert not np.array_equal(scalar, softzo.softmax(x, num_threads=1)) or process_isa == "scalar"
