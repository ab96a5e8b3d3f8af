"""Random-subset perturbations (the ``subset=`` option of MeZO and SPSA)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_fraction, check_options


class Subset:
    """Random-subset perturbations: the flat index space (all parameters concatenated, the
    Philox element index) is cut into blocks of ``block`` elements from index 0, so a block may
    span two tensors and the last one may be shorter; ``block="tensor"`` makes every parameter
    one block. Each step draws k = max(1, round(fraction * num_blocks)) distinct blocks,
    uniformly, from a generator keyed by (seed, step) alone: the choice is recomputed, never
    stored, and the same after a resume."""

    KEYS = ("fraction", "block")

    def __init__(self, options: dict[str, Any], views: list[tuple[np.ndarray, int, int]]) -> None:
        check_options("subset", options, self.KEYS, "{'fraction': 0.25}")
        if "fraction" not in options:
            raise ValueError("subset needs 'fraction', the share of blocks perturbed per step")
        self.fraction = check_fraction("subset['fraction']", options["fraction"], True)
        block = options.get("block", 65536)
        if isinstance(block, str):
            if block != "tensor":
                raise ValueError(f"subset['block'] must be an int >= 1 or 'tensor', got {block!r}")
        elif isinstance(block, bool) or not isinstance(block, (int, np.integer)):
            raise TypeError(f"subset['block'] must be an int >= 1 or 'tensor', got {block!r}")
        elif block < 1:
            raise ValueError(f"subset['block'] must be an int >= 1 or 'tensor', got {block!r}")
        self.block = block if block == "tensor" else int(block)
        size = sum(v.size for v, _, _ in views)
        if self.block == "tensor":
            starts = np.array([offset for _, offset, _ in views], dtype=np.int64)
        else:
            starts = np.arange(0, size, self.block, dtype=np.int64)
        self.bounds = np.append(starts, size)  # block b is [bounds[b], bounds[b + 1])
        self.num_blocks = len(starts)
        self.k = max(1, round(self.fraction * self.num_blocks))
        self._runs: tuple[tuple[int, int], np.ndarray, np.ndarray] | None = None

    def blocks(self, seed: int, step: int) -> np.ndarray:
        """The sorted indices of the blocks chosen at ``step``. Counter word 1 is 1: Sparse
        MeZO's threshold sample uses [0, 0, step, i]."""
        gen = np.random.Generator(np.random.Philox(key=seed, counter=[0, 1, step, 0]))
        return np.sort(gen.choice(self.num_blocks, self.k, replace=False))

    def ranges(self, seed: int, step: int) -> np.ndarray:
        """(k, 2) flat [start, stop) ranges of the blocks chosen at ``step``, in order."""
        b = self.blocks(seed, step)
        return np.stack([self.bounds[b], self.bounds[b + 1]], axis=1)

    def pieces(self, seed: int, step: int, offset: int, n: int) -> list[tuple[int, int]]:
        """The parts of the parameter at flat [offset, offset + n) inside the step's blocks,
        as [start, stop) relative to the parameter, adjacent blocks merged (fewer calls)."""
        if self._runs is None or self._runs[0] != (seed, step):
            r = self.ranges(seed, step)
            new = np.ones(len(r), dtype=bool)
            new[1:] = r[1:, 0] != r[:-1, 1]  # a run starts where a block does not continue one
            ends = np.append(new[1:], True)
            self._runs = ((seed, step), r[new, 0], r[ends, 1])
        _, starts, stops = self._runs
        first = int(np.searchsorted(stops, offset, side="right"))
        last = int(np.searchsorted(starts, offset + n, side="left"))
        out = []
        for start, stop in zip(starts[first:last], stops[first:last]):
            lo, hi = max(int(start), offset) - offset, min(int(stop), offset + n) - offset
            if hi > lo:
                out.append((lo, hi))
        return out

    def options(self) -> dict[str, Any]:
        return {"fraction": self.fraction, "block": self.block}
