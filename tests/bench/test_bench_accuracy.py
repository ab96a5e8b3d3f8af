"""python -m bench.accuracy on one seed: a row per dtype x case x algorithm x ISA, each with
softzo's and torch's maxima, and the summary counts the rows where softzo is behind."""

import softzo

from bench import accuracy


def test_report_has_a_row_per_dtype_case_algorithm_and_isa():
    worst = accuracy.measure(seeds=1)
    isas = softzo.info()["isas_available"] + softzo.info()["isas_emulated"]
    cases = {key[1] for key in worst}
    assert {"N(0,1)", "target+30", "two elements", "tied max", "SciPy's cases"} <= cases
    assert len(worst) == 2 * len(cases) * len(accuracy.ALGORITHMS) * len(isas)
    text = accuracy.report(worst)
    rows = [ln for ln in text.splitlines() if ln.startswith("| float")]
    assert len(rows) == len(worst)
    behind = sum(ln.rstrip(" |").endswith("**yes**") for ln in rows)
    assert text.startswith(f"softzo's maximum error is above PyTorch's in {behind} of {len(rows)}")
