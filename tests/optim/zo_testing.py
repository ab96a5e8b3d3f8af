"""Helpers shared by the optimiser tests: z straight from the Philox kernel, and a quadratic."""

import numpy as np
from softzo import _core

DISTS = {"rademacher": 0, "gaussian": 1, "segmented": 2}


def fill(dist, n, dtype, offset=0, seed=7, step=3, direction=1, threads=1):
    z = np.empty(n, dtype=dtype)
    _core._zo_fill(seed, step, direction, DISTS[dist], offset, z, threads)
    return z


def quadratic(weights, center):
    return lambda x: float(np.sum(weights * (x - center) ** 2))
