"""``python -m softzo``: what softzo runs on this machine, and how fast, in a few seconds."""

from __future__ import annotations

from . import _quick_bench, info


def main() -> None:
    """Prints the runtime (so a bug report can quote it) and the quick benchmark's tables."""
    rt = info()
    emulated = set(rt["isas_emulated"])
    isas = ", ".join(f"{n} (emulated)" if n in emulated else n for n in rt["isas_available"])
    print(f"softzo {rt['version']}")
    print(f"ISA in use: {rt['isa']}")
    print(f"ISAs available: {isas}")
    print(f"threads: {rt['num_threads']}")
    print()
    print("Quick benchmark (float32, N(0,1) rows, 1 thread; vs NumPy, and PyTorch when installed):")
    print()
    print(_quick_bench.quick())


if __name__ == "__main__":
    main()
