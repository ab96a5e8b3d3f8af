"""softzo: hand-vectorised softmax, loss and zeroth-order optimiser kernels at memory speed.

The softmax family (:func:`softmax`, :func:`log_softmax`, :func:`logsumexp`) takes NumPy arrays,
PyTorch CPU tensors and JAX CPU arrays without copying and returns the input's framework.
Kernels are chosen at import from the CPU (scalar, AVX2+FMA, AVX-512); ``SOFTZO_ISA`` can lower
the choice and ``SOFTZO_NUM_THREADS`` sets the default thread count.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
    "using_isa",
]
__version__ = "0.1.0"


def info() -> dict:
    """The runtime: ``isa`` in use, ``isas_available``, ``isas_emulated``, ``num_threads``, and
    ``cuda``: None without the CUDA backend, else its ``device_count`` and ``devices`` (name,
    compute capability, multiprocessors, memory)."""
    from . import _cuda

    available = list(_core.available_isas())
    return {
        "version": __version__,
        "isa": _core.current_isa(),
        "isas_available": available,
        "isas_emulated": [name for name in available if _core.isa_is_emulated(name)],
        "num_threads": _core.num_threads(),
        "cuda": _cuda.info(),
    }


def set_isa(name: str) -> None:
    """Use the kernels of ISA ``name`` (one of ``info()["isas_available"]``) for later calls.

    Meant for tests and benchmarks; an emulated ISA is correct but slow. Safe to call while
    other threads compute: calls that start afterwards use the new kernels, and a call already
    running finishes on the kernels it started with (a call reads the ISA once). For one
    thread's calls alone, use :func:`using_isa`.
    """
    if not isinstance(name, str) or not _core.use_isa(name):
        raise ValueError(f"name must be one of the isas {_core.available_isas()}; got {name!r}")


@contextlib.contextmanager
def using_isa(name: str) -> Iterator[None]:
    """Run this thread's calls inside the ``with`` block on the kernels of ISA ``name``.

    A setting of the calling thread alone (the library's own threads take it over while they
    work for those calls), so threads can use different ISAs at once, which ``set_isa`` (one
    setting for the whole process) does not allow. Blocks do not nest: leaving one goes back
    to the process's ISA.
    """
    if not isinstance(name, str) or not name or not _core.use_isa_in_this_thread(name):
        raise ValueError(f"name must be one of the isas {_core.available_isas()}; got {name!r}")
    try:
        yield
    finally:
        _core.use_isa_in_this_thread("")


def set_num_threads(n: int) -> None:
    """Default thread count for calls that do not pass ``num_threads``."""
    from ._arrays import check_num_threads

    if n is None:
        raise TypeError("n must be an int")
    _core.set_num_threads(check_num_threads(n))
