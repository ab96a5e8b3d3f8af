"""Zeroth-order optimisers on softzo's perturbation engine: SPSA, SPSA-GC, MeZO (and Sparse
MeZO), HiZOO, ZO-SGD (momentum, sign, conservative), ZO-Adam, RGE and CGE, in the torch.optim
style (parameters updated in place) and the scipy style (:func:`minimize`).

Random directions z are never stored: each step regenerates z from (seed, step, direction) with
Philox4x32-10, the element index over the concatenated parameters being the counter, so z is the
same for any thread count or ISA and a run resumes bit-exactly from ``state_dict()``. A MeZO step
perturbs theta by +eps z, evaluates, moves to -eps z, evaluates, then restores and updates in one
pass; besides the optimiser's own state (momentum, Adam moments, HiZOO's Hessian, Sparse MeZO's
1-bit mask, the opt-in ``subspace=`` history of ZOODiP's subspace gradient) it allocates nothing
of the parameters' size.

Restoring float32 / float64 parameters is in-place float arithmetic: theta + eps z - 2 eps z +
eps z returns to theta within the rounding of those additions (about 3 ulp(|theta| + eps |z|) per
element), not bit-exactly.

float16 / bfloat16 parameters (torch tensors, NumPy float16) restore exactly. Each keeps a
float32 master copy, the optimiser's source of truth: a perturbation writes round(master + a z)
into the low-precision tensor without touching the master, the restore writes round(master)
back (bit-exact), and the update moves the master and writes it rounded. The master costs 4
bytes per low-precision parameter, which exact restore with a real update needs (the update
lr g z is far below half an ulp of float16 and would be lost by rounding), plus one float32
scratch buffer of the largest such tensor. Perturbing in place in float16 instead drifts: 1000
steps moved 98% of weights by an rms of 3e-4 with no update at all (ALGORITHMS.md, section 5).
The master is read from the tensor once, at construction (and by ``load_state_dict``): writes to
the tensor made outside the optimiser afterwards are overwritten by its next step.

Every optimiser takes the keywords ``seed`` (of the directions; 0), ``num_threads``,
``process_group`` (a torch.distributed group; default None, one process), ``parallel``:
``"data"`` (each process's closure returns its shard's loss, or a
(loss, example count) pair; the losses' weighted mean is agreed) or ``"directions"`` (each
process evaluates its share of a step's evaluations of the full loss), and ``timeout``
(seconds to wait for the others; 300). Processes exchange only a few float64 per step, and the
parameters stay bit-identical on all of them; ``comm_bytes`` counts what this one sent in the
last step. See ``_comm`` and :mod:`softzo.distributed`.

Layout (one optimiser family a module, as in ``torch.optim``): ``mezo`` (MeZO, Sparse MeZO),
``spsa`` (SPSA, SPSA-GC), ``hizoo``, ``zo_sgd``, ``zo_adam``, ``rge``, ``cge``, ``ask_tell``
and ``minimize``, over the private engine (``_engine``), subsets (``_subset``), subspaces
(``_subspace``), low-precision masters (``_low_precision``) and exchanges (``_comm``).
"""

from __future__ import annotations

# The constants the single module defined stay importable from here (MeZO's docstring names
# MASK_SAMPLE); outside __all__, as before.
from ._engine import DISTRIBUTIONS as DISTRIBUTIONS
from ._engine import MASK_SAMPLE as MASK_SAMPLE
from ._engine import PROBE_DIRECTION as PROBE_DIRECTION
from ._minimize import minimize
from .ask_tell import AskTell
from .cge import CGE
from .hizoo import HiZOO
from .mezo import MeZO
from .rge import RGE
from .spsa import SPSA, SPSA_GC
from .zo_adam import ZOAdam
from .zo_sgd import ZOSGD

__all__ = [
    "CGE",
    "RGE",
    "SPSA",
    "SPSA_GC",
    "ZOSGD",
    "AskTell",
    "HiZOO",
    "MeZO",
    "ZOAdam",
    "minimize",
]
