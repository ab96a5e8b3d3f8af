"""softzo: hand-vectorised softmax, loss and zeroth-order optimiser kernels at memory speed.

The softmax family (:func:`softmax`, :func:`log_softmax`, :func:`logsumexp`) takes NumPy arrays,
PyTorch CPU tensors and JAX CPU arrays without copying and returns the input's framework.
Kernels are chosen at import from the CPU (scalar, AVX2+FMA, AVX-512); ``SOFTZO_ISA`` can lower
the choice and ``SOFTZO_NUM_THREADS`` sets the default thread count.
"""

from __future__ import annotations

from . import _core
from ._softmax import ALGORITHMS, log_softmax, logsumexp, softmax

__all__ = [
    "ALGORITHMS",
    "info",
    "log_softmax",
    "logsumexp",
    "set_isa",
    "set_num_threads",
    "softmax",
]
__version__ = "0.1.0"


def info() -> dict:
    """The runtime: ``isa`` in use, ``isas_available``, ``isas_emulated`` and ``num_threads``."""
    available = list(_core.available_isas())
    return {
        "version": __version__,
        "isa": _core.current_isa(),
        "isas_available": available,
        "isas_emulated": [name for name in available if _core.isa_is_emulated(name)],
        "num_threads": _core.num_threads(),
    }


def set_isa(name: str) -> None:
    """Use the kernels of ISA ``name`` (one of ``info()["isas_available"]``) for later calls.

    Meant for tests and benchmarks; an emulated ISA is correct but slow. Safe to call while
    other threads compute: calls that start afterwards use the new kernels, and a call already
    running computes each row with the kernels of one ISA (its result may mix ISAs row by row,
    each within the documented accuracy).
    """
    if not isinstance(name, str) or not _core.use_isa(name):
        raise ValueError(f"name must be one of the isas {_core.available_isas()}; got {name!r}")


def set_num_threads(n: int) -> None:
    """Default thread count for calls that do not pass ``num_threads``."""
    from ._arrays import check_num_threads

    if n is None:
        raise TypeError("n must be an int")
    _core.set_num_threads(check_num_threads(n))
