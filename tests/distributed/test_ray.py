"""softzo.distributed.ray on a local ray.init() with 2 and 4 actors: replicas bit-identical,
agreement with the single-process run (bitwise when directions parallel), actors added and
removed between steps, checkpoint and resume on another actor count, and failures (a dying,
hanging or non-finite actor) that restore the others or, asked to, retry without it."""

import numpy as np
import pytest

ray = pytest.importorskip("ray")

import ray_workers as rw
from softzo import optim
from softzo.distributed import DistributedStepError
from softzo.distributed.ray import Driver

# As in test_torch_distributed.py: data parallel only changes the summation order.
DATA_PARALLEL_BOUND = 1.1e-9
RGE = {"lr": 0.01, "mu": 1e-4, "num_queries": 4, "seed": 3}


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.cloudpickle.register_pickle_by_value(rw)  # the actors cannot import the tests
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def single_process(method, options, steps):
    theta = np.random.default_rng(1).standard_normal(rw.D)
    opt = optim._methods.METHODS[method]([theta], **options)
    for _ in range(steps):
        opt.step(lambda: rw.loss(theta, np.arange(rw.N)))
    return theta


def replicas(driver):
    params = [driver.parameters(i)[0] for i in range(len(driver.actors))]
    for p in params[1:]:
        np.testing.assert_array_equal(p, params[0])  # bit-identical replicas
    return params[0]


@pytest.mark.parametrize("actors", [2, 4])
def test_data_parallel_replicas_agree_with_one_process(actors):
    options = {"lr": 0.01, "eps": 1e-3, "seed": 3}
    driver = Driver(rw.Replicas(shards=actors), actors, method="mezo", options=options)
    for _ in range(50):
        driver.step()
    theta = replicas(driver)
    assert np.max(np.abs(theta - single_process("mezo", options, 50))) <= DATA_PARALLEL_BOUND
    # One row of (f+, f-, count, status) per actor in, every row out to every actor.
    assert driver.comm_bytes == actors * 32 * (1 + actors)


def test_directions_parallel_with_actors_added_and_removed_equals_one_process():
    options = {**RGE, "parallel": "directions"}
    driver = Driver(rw.Replicas(), 2, method="rge", options=options)
    for _ in range(10):
        driver.step()
    driver.add_actors(2)  # they get the parameters once, then seeds and scalars only
    for _ in range(10):
        driver.step()
    driver.remove_actor(1)
    for _ in range(10):
        driver.step()
    np.testing.assert_array_equal(replicas(driver), single_process("rge", RGE, 30))


def test_checkpoint_resumes_on_another_actor_count():
    options = {**RGE, "parallel": "directions"}
    driver = Driver(rw.Replicas(), 2, method="rge", options=options)
    for _ in range(10):
        driver.step()
    checkpoint = driver.state_dict()
    for name in ("optimizer", "params"):
        assert name in checkpoint
    resumed = Driver(rw.Replicas(), 3, method="rge", options=options)
    resumed.load_state_dict(checkpoint)
    for _ in range(10):
        resumed.step()
    np.testing.assert_array_equal(replicas(resumed), single_process("rge", RGE, 20))


@pytest.mark.parametrize("kind", ["die", "hang", "nan"])
def test_a_failing_actor_fails_the_step_and_the_others_are_restored(kind):
    options = {"lr": 0.01, "seed": 3}
    # Actor 1 fails at its 8th evaluation: f(theta - eps z) of step 3.
    make = rw.Replicas(shards=2, fail=(1, 8, kind))
    driver = Driver(make, 2, method="mezo", options=options, timeout=5.0)
    for _ in range(3):
        driver.step()
    before = driver.parameters(0)[0]
    with pytest.raises(DistributedStepError, match="actor"):
        driver.step()
    # Actor 0 undid the in-flight perturbation (+eps z, -2 eps z, +eps z: within roundings).
    assert driver.step_count == 3
    np.testing.assert_allclose(driver.parameters(0)[0], before, rtol=0, atol=4 * np.spacing(8.0))
    assert len(driver.actors) == (2 if kind == "nan" else 1)  # dead or hung actors are stopped


def test_retry_runs_the_step_again_without_the_dead_actor():
    make = rw.Replicas(shards=2, fail=(1, 8, "die"))
    driver = Driver(make, 2, method="mezo", options={"lr": 0.01, "seed": 3}, on_failure="retry")
    for _ in range(3):
        driver.step()
    with pytest.warns(RuntimeWarning, match="retrying"):
        driver.step()
    assert driver.step_count == 4 and len(driver.actors) == 1


def test_bad_driver_input_raises_naming_the_argument():
    with pytest.raises(ValueError, match="method"):
        Driver(rw.Replicas(), 1, method="adam")
    with pytest.raises(ValueError, match="on_failure"):
        Driver(rw.Replicas(), 1, on_failure="ignore")
    with pytest.raises(TypeError, match="make_replica"):
        Driver(None, 1)
