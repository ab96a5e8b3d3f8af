"""The optimisers by the method names of ``minimize`` and ``AskTell``."""

from __future__ import annotations

from .cge import CGE
from .hizoo import HiZOO
from .mezo import MeZO
from .rge import RGE
from .spsa import SPSA, SPSA_GC
from .zo_adam import ZOAdam
from .zo_sgd import ZOSGD

METHODS = {
    "mezo": MeZO,
    "hizoo": HiZOO,
    "spsa": SPSA,
    "spsa_gc": SPSA_GC,
    "zo_sgd": ZOSGD,
    "zo_adam": ZOAdam,
    "rge": RGE,
    "cge": CGE,
}
