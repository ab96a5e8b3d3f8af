"""softzo._factored, the module that links OpenBLAS (the factored output layer and the fused
linear cross-entropy), imported after loading scipy-openblas32's library from wherever pip put
it. Imported lazily: ``import softzo`` never loads BLAS."""

from __future__ import annotations

import ctypes
import os


def _load_openblas() -> None:
    import scipy_openblas32

    lib = os.path.join(scipy_openblas32.get_lib_dir(), scipy_openblas32.get_library(True))
    ctypes.CDLL(lib, mode=ctypes.RTLD_GLOBAL)


_load_openblas()
from . import _factored

__all__ = ["_factored"]
