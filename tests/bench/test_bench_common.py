"""bench._common: the input distributions, the targets, the timing loop and the results path."""

from pathlib import Path

import numpy as np
import pytest

from bench import _common as c


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_distributions_are_what_their_names_say(dtype):
    rng = np.random.default_rng(0)
    shape = (8, 4000)
    xs = {d: c.draw(d, shape, rng, dtype) for d in c.DISTRIBUTIONS}
    for x in xs.values():
        assert x.shape == shape and x.dtype == dtype and x.flags.c_contiguous
    for d, scale in (("normal", 1), ("wide30", 30), ("wide100", 100), ("temp0.1", 10)):
        assert np.isfinite(xs[d]).all()
        assert abs(xs[d].mean()) < 0.05 * scale
        assert xs[d].std() == pytest.approx(scale, rel=0.03)
    masked = np.isneginf(xs["masked"])
    assert masked.mean() == pytest.approx(c.MASKED_FRACTION, abs=0.01)
    assert np.isfinite(xs["masked"][~masked]).all() and masked.any(axis=1).all()
    padded = xs["padded"]
    assert (padded[:, 2000:] == c.PAD).all()
    assert np.isfinite(padded[:, :2000]).all() and padded[:, :2000].std() == pytest.approx(
        1, rel=0.05
    )


def test_a_shared_mask_masks_the_same_classes():
    rng = np.random.default_rng(1)
    student = c.draw("masked", (4, 500), rng)
    teacher = c.draw("masked", (4, 500), rng, mask=np.isneginf(student))
    assert np.array_equal(np.isneginf(teacher), np.isneginf(student))
    assert not np.array_equal(teacher[np.isfinite(teacher)], student[np.isfinite(student)])


def test_unknown_distribution_is_refused():
    with pytest.raises(ValueError, match="unknown distribution 'uniform'"):
        c.draw("uniform", (2, 3), np.random.default_rng(0))


@pytest.mark.parametrize("dist", ["masked", "padded"])
def test_targets_are_real_classes(dist):
    rng = np.random.default_rng(2)
    x = c.draw(dist, (64, 300), rng)
    t = c.targets(x, rng)
    assert t.shape == (64,) and t.dtype.kind == "i"
    assert np.isfinite(x[np.arange(64), t]).all() and (x[np.arange(64), t] > c.PAD).all()
    assert len(set(t.tolist())) > 20  # spread over the real classes, not always the first


def test_measure_times_every_candidate_and_runs_untimed_work_outside_the_time():
    calls = {"fast": 0, "setup": 0, "prepare": 0}

    def count(k):
        calls[k] += 1

    cands = {
        "fast": c.Candidate(lambda: count("fast"), setup=lambda: count("setup")),
        "slow": c.Candidate(lambda: sum(range(20000)), prepare=lambda: count("prepare")),
    }
    t = c.measure(cands, reps=2, budget=0.0)
    assert set(t) == {"fast", "slow"}
    assert 0 < t["fast"] < t["slow"] < 1
    assert calls["setup"] == 3 + 2  # once per sample: 3 to size the batch, then one per rep
    assert calls["prepare"] > 0


def test_results_are_the_checkouts_bench_results():
    repo = Path(__file__).resolve().parents[2]
    assert c.RESULTS == repo / "bench" / "results" and c.REPO == repo
    assert (c.RESULTS / "softmax.md").is_file()


def test_machine_names_the_cpu_and_its_simd_flags():
    text = c.machine()
    model, simd = c.cpu()
    assert f"- CPU: {model};" in text
    assert "- CPU flags (SIMD): " in text
    for flag in simd:
        assert flag in text
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        cpuinfo = f.read()
    if "avx2" in cpuinfo.split():
        assert "avx2" in simd


def test_table_and_formatting():
    assert c.table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
    assert c.label((1 << 15,)) == "32K" and c.label((1 << 26,)) == "64M"
    assert c.label((64, 32000)) == "64x32000" and c.label((1000,)) == "1000"
    assert c.fmt_time(2.5e-6) == "2.5 us" and c.fmt_time(None) == "-"
    assert c.ratio(3.0, 2.0) == "1.50x" and c.ratio(None, 1.0) == "-"
