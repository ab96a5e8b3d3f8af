"""Concurrency stress: many Python threads (and spawned processes) calling softzo at once get
the serial results bit for bit, while other threads change the thread count and the ISA."""

import itertools
import multiprocessing
import threading
import time

import numpy as np
import softzo
from softzo import losses, optim

THREADS = 8  # Python threads calling softzo at once
ITERATIONS = 40  # workload runs per thread (each several softzo calls)
NUM_THREADS = (None, 1, 2, 3)  # num_threads= values the calls cycle through


# ---- workloads: each (seed, num_threads) -> a list of arrays, independent of num_threads ----


def softmax_work(seed, num_threads):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((24, 3000)) * 5).astype(np.float32)
    row = rng.standard_normal((1 << 18) + 4099)  # float64, split into 2^16 chunks
    algorithm = softzo.ALGORITHMS[seed % len(softzo.ALGORITHMS)]
    return [
        softzo.softmax(x, algorithm=algorithm, num_threads=num_threads),
        softzo.log_softmax(row, num_threads=num_threads),
        softzo.logsumexp(x, axis=0, num_threads=num_threads),
    ]


def cross_entropy_work(seed, num_threads):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((16, 5003)) * 3).astype(np.float32)
    target = rng.integers(0, 5003, 16)
    loss, grad = losses.cross_entropy(
        logits, target, label_smoothing=0.1, lse_square_scale=1e-4, return_grad=True,
        num_threads=num_threads,
    )  # fmt: skip
    kl = losses.kl_div(logits, logits[::-1].copy(), temperature=2.0, num_threads=num_threads)
    return [np.asarray(loss), grad, np.asarray(kl)]


def factored_work(seed, num_threads):
    from softzo import spherical

    rng = np.random.default_rng(seed)
    layer = spherical.FactoredOutputLayer(300, 24, lr=0.05, seed=seed)
    values = []
    for _ in range(4):
        h = rng.standard_normal((8, 24)).astype(np.float32)
        value, grad = layer.step(h, rng.integers(0, 300, 8))
        values += [np.asarray(value), grad]
    return values + [layer.weight()]


def optimizer_work(seed, num_threads):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(4097).astype(np.float32), rng.standard_normal((33, 20))]
    opt = optim.MeZO(params, lr=1e-3, seed=seed, num_threads=num_threads)
    hizoo_param = [rng.standard_normal(999)]
    hizoo = optim.HiZOO(hizoo_param, lr=1e-3, seed=seed, num_threads=num_threads)

    def closure():
        return float(sum(np.sum(np.asarray(p, np.float64) ** 2) for p in params))

    for _ in range(3):
        opt.step(closure)
        hizoo.step(lambda: float(np.sum(hizoo_param[0] ** 2)))
    return [params[0], params[1], hizoo_param[0]]


WORKLOADS = [softmax_work, cross_entropy_work, factored_work, optimizer_work]


def _run_all_serial(seeds, workloads=WORKLOADS):
    return {(w.__name__, s): w(s, 1) for w in workloads for s in seeds}


def _same(a, b):
    return len(a) == len(b) and all(
        x.shape == y.shape and x.tobytes() == y.tobytes()
        for x, y in zip(map(np.asarray, a), map(np.asarray, b))
    )


def _run_threads(target, count):
    errors = []

    def guarded(i):
        try:
            target(i)
        except Exception as e:  # noqa: BLE001 - re-raised below, so a thread failure fails
            errors.append(e)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_threads_match_serial_while_thread_count_changes():
    """8 threads x 40 workload runs (softmax family incl. a chunked 2^18 row, cross-entropy and
    KL, 4 factored-layer steps, 3 MeZO + HiZOO steps) with mixed num_threads, against the serial
    results; meanwhile another thread keeps calling set_num_threads."""
    before = softzo.info()["num_threads"]
    expected = _run_all_serial(range(THREADS))
    done = threading.Event()
    changes = itertools.count()

    def change_thread_count():
        for n in itertools.cycle((1, 2, 3, 4)):
            if done.is_set():
                return
            softzo.set_num_threads(n)
            next(changes)
            time.sleep(1e-4)  # let the workers in between (the GIL)

    changer = threading.Thread(target=change_thread_count)
    changer.start()
    runs = itertools.count()

    def work(i):
        for it in range(ITERATIONS):
            w = WORKLOADS[(i + it) % len(WORKLOADS)]
            got = w(i, NUM_THREADS[(i + it) % len(NUM_THREADS)])
            assert _same(got, expected[(w.__name__, i)]), (w.__name__, i, it)
            next(runs)

    try:
        _run_threads(work, THREADS)
    finally:
        done.set()
        changer.join()
        softzo.set_num_threads(before)
    assert next(runs) == THREADS * ITERATIONS
    n_changes = next(changes)
    assert n_changes > 10  # the changer really ran alongside
    print(f"{THREADS} threads x {ITERATIONS} runs, {n_changes} set_num_threads calls meanwhile")


def test_set_isa_while_other_threads_compute():
    """set_isa is safe concurrently: every row is computed by the kernels of one ISA (the one
    current when its call, or its task of rows, started), so each row is bitwise that row of
    one ISA's serial result (8 threads x 20 workload runs while another thread cycles through
    the ISAs)."""
    isas = softzo.info()["isas_available"]
    before = softzo.info()["isa"]
    workloads = [softmax_work, cross_entropy_work, optimizer_work]
    per_isa = [_serial_on(isa, workloads) for isa in isas]
    try:
        done = threading.Event()
        switches = itertools.count()

        def switch_isa():
            for isa in itertools.cycle(isas):
                if done.is_set():
                    return
                softzo.set_isa(isa)
                next(switches)
                time.sleep(1e-4)

        switcher = threading.Thread(target=switch_isa)
        switcher.start()

        def work(i):
            for it in range(ITERATIONS // 2):
                w = workloads[(i + it) % len(workloads)]
                got = w(i, NUM_THREADS[it % len(NUM_THREADS)])
                for k, a in enumerate(got):
                    refs = [ref[(w.__name__, i)][k] for ref in per_isa]
                    assert _rows_from_some_isa(a, refs), (w.__name__, i, k)

        try:
            _run_threads(work, THREADS)
        finally:
            done.set()
            switcher.join()
        n_switches = next(switches)
        assert n_switches > 10
        print(f"{THREADS} threads x {ITERATIONS // 2} runs, {n_switches} set_isa calls meanwhile")
    finally:
        softzo.set_isa(before)


def _serial_on(isa, workloads):
    with softzo.using_isa(isa):
        return _run_all_serial(range(THREADS), workloads)


def test_threads_on_different_isas_at_once():
    """using_isa is per thread: 8 threads, each on its own ISA (cycling through the available
    ones, the SIMDe build included where it is registered), x 20 workload runs at once; every
    result is bitwise that ISA's serial result, also where a call's rows run on the pool."""
    isas = softzo.info()["isas_available"]
    workloads = [softmax_work, cross_entropy_work, optimizer_work]
    per_isa = {isa: _serial_on(isa, workloads) for isa in isas}

    def work(i):
        isa = isas[i % len(isas)]
        with softzo.using_isa(isa):
            for it in range(ITERATIONS // 2):
                w = workloads[(i + it) % len(workloads)]
                got = w(i, NUM_THREADS[it % len(NUM_THREADS)])
                assert _same(got, per_isa[isa][(w.__name__, i)]), (isa, w.__name__, i, it)

    _run_threads(work, THREADS)


def _rows_from_some_isa(a, refs):
    """Every row of a 2-D result (every element of a 1-D one) is bitwise that of one ISA: a
    workload spans several calls, and a call's row tasks each read the ISA once."""
    a = np.asarray(a)
    shape = (a.shape[0], -1) if a.ndim >= 2 else (-1, 1)
    rows, refs = a.reshape(shape), [np.asarray(r).reshape(shape) for r in refs]
    return all(any(row.tobytes() == ref[i].tobytes() for ref in refs) for i, row in enumerate(rows))


def _spawned_worker(task):
    name, seed, num_threads = task
    return [np.asarray(a) for a in globals()[name](seed, num_threads)]


def test_spawn_workers_match_serial():
    """multiprocessing "spawn" workers (a fresh interpreter each, pool created there) give the
    parent's serial results."""
    seeds = range(4)
    expected = _run_all_serial(seeds)
    tasks = [(w.__name__, s, NUM_THREADS[s % len(NUM_THREADS)]) for w in WORKLOADS for s in seeds]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_spawned_worker, tasks)
    for (name, seed, _), got in zip(tasks, results):
        assert _same(got, expected[(name, seed)]), (name, seed)
