"""The API fuzz (fuzz_softmax_losses.py, fuzz_optim.py) in child pytest processes, one per
area, so that a crash fails the test and names the last call instead of ending the session. The
hypothesis profile is passed on: "fuzz-ci" (fixed seed, the default) or what
--hypothesis-profile names."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
FUNCTIONS, OPTIM = "fuzz_softmax_losses.py", "fuzz_optim.py"
AREAS = {  # area: (the module, its tests)
    "softmax": (FUNCTIONS, ["test_softmax_family", "test_set_isa", "test_using_isa",
                            "test_set_num_threads"]),
    "losses": (FUNCTIONS, ["test_cross_entropy", "test_row_losses", "test_normalizers",
                           "test_kl_div", "test_hl_gauss"]),
    "factored": (OPTIM, ["test_factored_layer", "test_set_blas_threads"]),
    "optim": (OPTIM, ["test_optimizers", "test_minimize", "test_ask_tell"]),
    "torch": (FUNCTIONS, ["test_torch_functions"]),
}  # fmt: skip


@pytest.mark.parametrize("area", AREAS)
def test_fuzz(area, request, tmp_path):
    profile = request.config.getoption("hypothesis_profile", None) or "fuzz-ci"
    last_case, counts = tmp_path / "last_case.txt", tmp_path / "counts.json"
    env = {
        **__import__("os").environ,
        "SOFTZO_FUZZ_LAST_CASE": str(last_case),
        "SOFTZO_FUZZ_COUNTS": str(counts),
    }
    module, names = AREAS[area]
    tests = [f"{HERE / module}::{name}" for name in names]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
           f"--hypothesis-profile={profile}", *tests]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode < 0 or proc.returncode > 1:
        case = last_case.read_text() if last_case.exists() else "(none)"
        pytest.fail(f"fuzz child died (status {proc.returncode}) in: {case}\n{proc.stderr[-3000:]}")
    assert proc.returncode == 0, proc.stdout[-6000:]
    total = json.loads(counts.read_text())
    request.node.user_properties.append(("fuzz_cases", total))
    print(f"fuzz {area} ({profile}): {sum(sum(c.values()) for c in total.values())} calls, {total}")
