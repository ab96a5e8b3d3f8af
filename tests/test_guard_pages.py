"""No kernel reads or writes outside its rows: every kernel family x ISA x dtype runs on arrays
flush against PROT_NONE pages (tests/guard_pages.py), each in a child process so that a fault
fails the test and names the case instead of ending the session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import softzo
from guard_pages import DTYPES, FAMILIES, GuardedArena

HERE = Path(__file__).parent
ISAS = softzo.info()["isas_available"]
# Where the CPU has AVX-512 the SIMDe build is not registered by default; the environment
# variable SOFTZO_EMULATE_AVX512=1 puts it in place of the native kernels, so both run here.
EMULATED_TOO = "avx512" in ISAS and "avx512" not in softzo.info()["isas_emulated"]
VARIANTS = [(isa, False) for isa in ISAS] + ([("avx512", True)] if EMULATED_TOO else [])


def _id(variant):
    isa, emulated = variant
    return isa + ("-emulated" if emulated else "")


@pytest.mark.parametrize("variant", VARIANTS, ids=_id)
@pytest.mark.parametrize(
    ("family", "dtype"), [pytest.param(f, d, id=f"{f}-{d}") for f in FAMILIES for d in DTYPES[f]]
)
def test_guard_pages(family, variant, dtype):
    if dtype == "bfloat16":
        pytest.importorskip("ml_dtypes")
    isa, emulated = variant
    env = dict(os.environ)
    env.pop("SOFTZO_ISA", None)
    if emulated:
        env["SOFTZO_EMULATE_AVX512"] = "1"
    cmd = [sys.executable, str(HERE / "guard_pages.py"), family, isa, dtype]
    if emulated:
        cmd.append("--expect-emulated")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800, check=False)
    cases = [line for line in proc.stdout.splitlines() if line.startswith("CASE ")]
    last = cases[-1] if cases else "(before the first case)"
    assert proc.returncode == 0, f"exit status {proc.returncode} in {last}\n{proc.stderr[-4000:]}"
    assert proc.stdout.splitlines()[-1].startswith("DONE"), proc.stdout[-2000:]


def test_guard_page_faults_on_overread():
    """The harness itself: reading the element after an "end" array, or the one before a
    "start" array, kills the child."""
    for at, step in (("end", 3), ("start", -1)):
        snippet = (
            f"import sys, ctypes, numpy as np; sys.path.insert(0, {str(HERE)!r});"
            "from guard_pages import GuardedArena;"
            f"a = GuardedArena(4096).array((3,), np.float32, {at!r}); a[...] = 1;"
            "print(float(a.sum()), flush=True);"
            f"print(ctypes.c_float.from_address(a.ctypes.data + 4 * ({step})).value)"
        )
        proc = subprocess.run(
            [sys.executable, "-c", snippet], capture_output=True, text=True, check=False
        )
        assert proc.stdout.splitlines() == ["3.0"], proc.stderr[-500:]  # the read never returned
        # SIGSEGV, or under AddressSanitizer (the sanitizer job) its SEGV report and exit code.
        crashed = proc.returncode == -11 or (proc.returncode != 0 and "SEGV" in proc.stderr)
        assert crashed, (at, proc.returncode, proc.stderr[-500:])


def test_arena_placement():
    arena = GuardedArena(3 * 4096)
    end = arena.array((5,), "float64", "end")
    start = arena.array((5,), "float64", "start")
    assert (end.ctypes.data + end.nbytes) % 4096 == 0
    assert start.ctypes.data % 4096 == 0
