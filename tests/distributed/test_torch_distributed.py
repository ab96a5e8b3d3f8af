"""process_group= on 2 and 4 local processes (gloo on 127.0.0.1): parameters bit-identical on
every rank after 50 steps for every optimiser, agreement with the single-process run, the
directions-parallel run equal to the single-process one, resume on a different world size,
and failures (a raising, non-finite, hanging or killed rank) that restore the parameters and
raise on every rank within the timeout."""

import multiprocessing
import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import dist_workers as w
from softzo.distributed.local import free_port

# Data parallel changes only the order in which the losses are summed: each agreed loss is
# within a few ulp of the full-batch one, |df| <= 8 u f with u = 2^-53 and f <= 50 here. A
# step moves theta by lr (df / eps) |z| more or less than the single-process step, so 50 steps
# with lr = 0.01, eps >= 1e-4 and |z| <= 5 drift by at most 50 * 0.01 * 8 * 1.1e-16 * 50 /
# 1e-4 * 5 = 1.1e-9 (the descent contracts the difference; measured up to 6e-12).
DATA_PARALLEL_BOUND = 1.1e-9


def spawn(target, world, *args, timeout=240):
    """Runs target(rank, world, port, *args) in ``world`` spawned processes; their exit codes."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=target, args=(r, world, port, *args)) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
    for p in procs:
        if p.is_alive():  # never leave a process behind, even when a test fails
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


def load_ranks(out, world):
    errors = [os.path.join(out, f"error{r}.txt") for r in range(world)]
    for e in errors:
        if os.path.exists(e):
            with open(e) as f:
                pytest.fail(f.read())
    return [dict(np.load(os.path.join(out, f"rank{r}.npz"))) for r in range(world)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The two-rank run of every optimiser, then the four-rank run resuming its mid states."""
    out2, out4 = tmp_path_factory.mktemp("world2"), tmp_path_factory.mktemp("world4")
    assert spawn(w.every_optimiser, 2, str(out2), None) == [0, 0]
    with open(out2 / "saved.pkl", "rb") as f:
        saved = pickle.load(f)
    assert spawn(w.every_optimiser, 4, str(out4), saved) == [0, 0, 0, 0]
    return {2: load_ranks(str(out2), 2), 4: load_ranks(str(out4), 4)}


def single_process(name):
    theta, _, _ = w.run(name, np.arange(w.N), w.STEPS)
    return theta


@pytest.mark.parametrize("world", [2, 4])
def test_parameters_bit_identical_on_every_rank_after_50_steps(runs, world):
    # The odd ranks run the scalar kernels, the even ones the best ISA: a mixed cluster.
    ranks = runs[world]
    keys = [k for k in ranks[0] if not k.endswith("bytes")]
    assert len(keys) >= len(w.configs()) + 1  # every optimiser, and the torch model
    for key in keys:
        for r in range(1, world):
            np.testing.assert_array_equal(ranks[r][key], ranks[0][key], err_msg=f"{key} rank {r}")


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name", list(w.configs()))
def test_data_parallel_follows_the_single_process_run(runs, world, name):
    ref = single_process(name)
    got = runs[world][0][f"{name}/data"]
    assert np.max(np.abs(got - ref)) <= DATA_PARALLEL_BOUND
    assert np.max(np.abs(got - np.random.default_rng(1).standard_normal(w.D))) > 1e-3  # moved


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("name", [n for n, c in w.configs().items() if c[2]])
def test_directions_parallel_equals_the_single_process_run(runs, world, name):
    # Every rank makes every move and evaluates its share: the same bytes as one process.
    np.testing.assert_array_equal(runs[world][0][f"{name}/directions"], single_process(name))


def test_resume_on_a_different_world_size(runs):
    two, four = runs[2][0], runs[4][0]
    resumed = [k for k in four if k.endswith("/resumed")]
    assert len(resumed) == sum(1 + c[2] for c in w.configs().values())
    for key in resumed:
        name, parallel, _ = key.split("/")
        final_on_two = two[f"{name}/{parallel}"]
        if parallel == "directions":  # z and the agreed values do not depend on the world
            np.testing.assert_array_equal(four[key], final_on_two, err_msg=key)
        else:  # the losses are summed over 4 shards instead of 2
            assert np.max(np.abs(four[key] - final_on_two)) <= DATA_PARALLEL_BOUND, key


def test_bytes_per_step_are_a_few_scalars(runs):
    for world in (2, 4):
        r0 = runs[world][0]
        # MeZO: f+, f-, the example count and a status per rank; a ring all-gather forwards
        # world - 1 of those rows from every rank.
        assert r0["mezo/data/bytes"][0] == (world - 1) * 4 * 8
        # RGE: rank 0's 4 norms, then f0, 4 losses, the count and the status.
        assert r0["rge/directions/bytes"][0] == (world - 1) * (4 + 1 + 4 + 2) * 8
        # At construction, every rank checked 7 settings against the others', and rank 0 sent
        # its parameters (12 float64) once.
        setup = (world - 1) * 7 * 8 + 12 * 8
        assert r0["mezo/data/bytes"][1] == w.STEPS * (world - 1) * 32 + setup


@pytest.fixture(scope="module")
def faults(tmp_path_factory):
    out = tmp_path_factory.mktemp("faults")
    # "die" breaks the group, so it comes last; "hang" gets its own pair of processes.
    spawn(w.faults, 2, str(out), ["raise", "nan", "die"], 3.0, timeout=120)
    spawn(w.faults, 2, str(out), ["hang"], 2.0, timeout=120)
    found = {
        (kind, r): dict(np.load(out / f"{kind}{r}.npz"))
        for kind in ("raise", "nan", "hang", "die")
        for r in (0, 1)
        if (out / f"{kind}{r}.npz").exists()
    }
    return {**found, "out": out}


@pytest.mark.parametrize(
    "kind,rank0_error,rank1_error",
    [
        ("raise", "DistributedStepError: the closure raised on rank(s) [1]", "boom on rank 1"),
        ("nan", "ValueError: closure returned a non-finite loss on rank(s) [1]", "non-finite"),
        ("hang", "DistributedStepError: rank 0: the exchange", "DistributedStepError"),
        ("die", "DistributedStepError: rank 0: the exchange", None),
    ],
)
def test_a_failing_rank_raises_everywhere_and_the_parameters_are_restored(
    faults, kind, rank0_error, rank1_error
):
    timeout = 2.0 if kind == "hang" else 3.0
    r0 = faults[(kind, 0)]
    assert rank0_error in str(r0["error"])
    assert r0["seconds"] < timeout + 2.0  # no hang: the timeout at most
    assert r0["step"] == 3  # the failed step did not count
    # Restored by +eps z after +eps z - 2 eps z: within the roundings of those additions.
    np.testing.assert_allclose(r0["failed"], r0["before"], rtol=0, atol=4 * np.spacing(8.0))
    if rank1_error is None:
        assert (kind, 1) not in faults  # it died
        return
    r1 = faults[(kind, 1)]
    assert rank1_error in str(r1["error"])
    # Both ranks undid the step with the same moves, so they still agree to the bit, and the
    # group goes on working after a raise or a NaN.
    np.testing.assert_array_equal(r1["failed"], r0["failed"])
    np.testing.assert_array_equal(r1["next"], r0["next"])
    if kind in ("raise", "nan"):
        assert not np.array_equal(r0["next"], r0["failed"])


def test_processes_that_build_different_optimisers_are_told_so(faults):
    out = faults["out"]
    for r in (0, 1):
        message = str(np.load(out / f"mismatch{r}.npy"))
        assert "differ in seed (low 32 bits)" in message, message


def test_bad_process_group_input_raises_naming_the_argument():
    from softzo import optim

    theta = np.zeros(3)
    with pytest.raises(ValueError, match="parallel"):
        optim.MeZO([theta], parallel="tensor")
    with pytest.raises(ValueError, match="process_group"):
        optim.MeZO([theta], process_group=object())  # torch.distributed not initialised
    with pytest.raises(ValueError, match="num_examples"):
        optim.MeZO([theta]).num_examples = 5
    with pytest.raises(ValueError, match="process_group"):
        optim.AskTell(theta, method="mezo", process_group=object())
