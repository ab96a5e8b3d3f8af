"""ZOODiP's subspace gradient (the ``subspace=`` option)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._checks import check_count, check_fraction, check_options


class Subspace:
    """ZOODiP's subspace gradient (Seo et al., CVPR 2025, arXiv 2503.14868): a ring buffer of the
    last ``history`` parameter vectors (recorded after every step); every ``every`` steps, the
    principal directions of the centred buffer (NumPy's SVD) are split into the leading ones,
    which explain a fraction ``variance`` of its variance, and the minor rest. The estimate
    then loses its components along the minor directions, ĝ <- (I - V V^T) ĝ with V the minor
    directions (orthonormal): directions along which recent iterates barely moved (a
    coordinate that has converged and only jitters) carry mostly the estimate's noise.
    Directions the history never explored, and the leading ones, are kept: projecting onto the
    leading directions alone would confine every later step, and so every later history, to
    them, and the subspace could only shrink.

    Memory: the buffer and the minor directions, at most 2 * history float64 vectors of the
    parameters' size (plus two for the estimate while it is projected), which the caller opts
    into."""

    KEYS = ("history", "every", "variance")

    def __init__(self, options: dict[str, Any], size: int) -> None:
        check_options("subspace", options, self.KEYS, "{'history': 32}")
        self.history = check_count("subspace['history']", options.get("history", 32))
        if self.history < 2:
            raise ValueError("subspace['history'] must be >= 2 (principal directions need two)")
        self.every = check_count("subspace['every']", options.get("every", self.history))
        self.variance = check_fraction("subspace['variance']", options.get("variance", 0.99), True)
        self.buffer = np.zeros((self.history, size), dtype=np.float64)
        self.count = 0  # parameter vectors recorded so far
        self.minor: np.ndarray | None = None  # (r, size), orthonormal rows

    def record(self, views: list[tuple[np.ndarray, int, int]], step: int) -> None:
        """Appends theta (after step ``step``); recomputes the directions every ``every`` steps."""
        row = self.buffer[self.count % self.history]
        for view, offset, _ in views:
            row[offset : offset + view.size] = view
        self.count += 1
        if step % self.every == 0:
            self.minor = self.minor_directions()

    def minor_directions(self) -> np.ndarray | None:
        """The centred history's principal directions past the leading ones that explain
        ``variance`` of its variance, within its numerical rank (None when there are none)."""
        rows = self.buffer[: min(self.count, self.history)]
        centred = rows - rows.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        energy = s * s
        if energy.sum() == 0.0:
            return None
        # np.linalg.matrix_rank's tolerance: directions below it are arbitrary, not minor.
        rank = int(np.sum(s > s[0] * max(centred.shape) * np.finfo(np.float64).eps))
        leading = int(np.searchsorted(np.cumsum(energy) / energy.sum(), self.variance)) + 1
        return vt[leading:rank].copy() if leading < rank else None

    def project(self, g: np.ndarray) -> np.ndarray:
        if self.minor is None:
            return g
        return g - self.minor.T @ (self.minor @ g)

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "every": self.every,
            "variance": self.variance,
            "buffer": self.buffer.copy(),
            "count": self.count,
            "minor": None if self.minor is None else self.minor.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        buffer = np.array(state["buffer"], dtype=np.float64)
        if buffer.shape[1] != self.buffer.shape[1]:
            raise ValueError("state_dict's subspace history does not match these parameters")
        self.history, self.every = int(state["history"]), int(state["every"])
        self.variance = float(state["variance"])
        self.buffer, self.count = buffer, int(state["count"])
        self.minor = None if state["minor"] is None else np.array(state["minor"], np.float64)
