"""What each process of the torch.distributed tests runs (spawned: importable by the child).

Every optimiser minimises a least-squares loss over N = 67 examples, split unevenly over the
ranks (34 + 33 on two, 17 + 17 + 17 + 16 on four), so the example-weighted mean matters."""

import os
import time
import traceback

import numpy as np

N, D, STEPS = 67, 12, 50


def problem():
    g = np.random.default_rng(7)
    X = g.standard_normal((N, D))
    y = X @ g.standard_normal(D) + 0.1 * g.standard_normal(N)
    return X, y


def shard_loss(theta, rows):
    """Mean squared error over ``rows`` and their count (the closure's (loss, n) pair)."""
    X, y = problem()
    e = X[rows] @ theta.astype(np.float64) - y[rows]
    return float(np.mean(e * e)), len(rows)


def configs():
    """name -> (class name, options, directions parallel too)."""
    return {
        "mezo": ("MeZO", {"lr": 0.01, "eps": 1e-3}, True),
        "mezo_q3": ("MeZO", {"lr": 0.01, "eps": 1e-3, "num_queries": 3}, True),
        "sparse_mezo": ("MeZO", {"lr": 0.01, "eps": 1e-3, "sparsity": 0.5}, False),
        "mezo_subset": ("MeZO", {"lr": 0.01, "subset": {"fraction": 0.5, "block": 4}}, False),
        "mezo_subspace": ("MeZO", {"lr": 0.01, "subspace": {"history": 8}}, False),
        "spsa": ("SPSA", {"c": 0.01, "num_queries": 4}, True),
        "spsa_gc": ("SPSA_GC", {"a": 0.01, "c": 0.01}, False),
        "zo_sgd": ("ZOSGD", {"lr": 0.01, "momentum": 0.9}, False),
        "zo_sgd_cons": ("ZOSGD", {"lr": 0.01, "conservative": True}, True),
        "zo_adam": ("ZOAdam", {"lr": 0.01}, False),
        "hizoo": ("HiZOO", {"lr": 0.01, "hessian_smooth": 1e-3, "num_queries": 2}, True),
        "rge": ("RGE", {"lr": 0.01, "mu": 1e-4, "num_queries": 4}, True),
        "cge": ("CGE", {"lr": 0.01, "mu": 1e-4}, True),
    }


def run(name, rows, steps, group=None, parallel="data", theta=None, state=None, save_at=None):
    """``steps`` steps of config ``name`` on ``rows``; returns theta (and the state at
    ``save_at``, with theta then)."""
    from softzo import optim

    cls, options, _ = configs()[name]
    if theta is None:
        theta = np.random.default_rng(1).standard_normal(D)
    kw = {} if group is None else {"process_group": group, "parallel": parallel}
    opt = getattr(optim, cls)([theta], seed=3, **options, **kw)
    if state is not None:
        opt.load_state_dict(state)
    saved = None
    for k in range(steps):
        if k == save_at:
            saved = (opt.state_dict(), theta.copy())
        opt.step(lambda: shard_loss(theta, rows))
    return theta, saved, opt


def _init(rank, world, port):
    import torch.distributed as dist
    from softzo.distributed.local import init_gloo

    init_gloo(rank, world, port)
    return dist


def _ranks_rows(rank, world):
    return np.array_split(np.arange(N), world)[rank]


def torch_model(rank, rows, group):
    """MeZO on a torch Linear layer and a bfloat16 tensor, initialised differently on every
    rank (the optimiser starts all from rank 0's); the parameters after STEPS steps."""
    import torch
    from softzo import optim

    torch.manual_seed(rank)
    model = torch.nn.Linear(D, 1)
    shift = torch.full((3,), float(rank), dtype=torch.bfloat16)
    X, y = problem()
    Xt, yt = torch.tensor(X[rows], dtype=torch.float32), torch.tensor(y[rows], dtype=torch.float32)
    opt = optim.MeZO([*model.parameters(), shift], lr=0.01, seed=5, process_group=group)
    opt.num_examples = len(rows)
    with torch.no_grad():
        for _ in range(STEPS):
            opt.step(lambda: torch.mean((model(Xt)[:, 0] + shift.float().sum() - yt) ** 2))
    return np.concatenate(
        [p.detach().double().numpy().ravel() for p in opt.param_groups[0]["params"]]
    )


def every_optimiser(rank, world, port, out, resume_from):
    """Each config, data parallel (and directions parallel where marked), STEPS steps; saves
    theta per config and rank, the state at step STEPS // 2, and (with ``resume_from``, the
    two-rank run's saved states) the resumed runs on this world size."""
    try:
        import softzo

        if rank % 2:  # odd ranks on the scalar kernels: a cluster of mixed CPUs
            softzo.set_isa("scalar")
        dist = _init(rank, world, port)
        rows = _ranks_rows(rank, world)
        all_rows = np.arange(N)
        results, saved = {}, {}
        for name, (_, _, directions) in configs().items():
            theta, state, opt = run(name, rows, STEPS, dist.group.WORLD, save_at=STEPS // 2)
            results[f"{name}/data"] = theta
            results[f"{name}/data/bytes"] = np.array([opt.comm_bytes, opt.comm_bytes_total])
            saved[f"{name}/data"] = state
            if directions:
                theta, state, opt = run(
                    name, all_rows, STEPS, dist.group.WORLD, "directions", save_at=STEPS // 2
                )
                results[f"{name}/directions"] = theta
                results[f"{name}/directions/bytes"] = np.array([opt.comm_bytes, 0])
                saved[f"{name}/directions"] = state
        results["torch/data"] = torch_model(rank, rows, dist.group.WORLD)
        for key, (state, theta) in (resume_from or {}).items():
            name, parallel = key.split("/")
            theta = theta.copy()
            rows_here = rows if parallel == "data" else all_rows
            theta, _, _ = run(
                name, rows_here, STEPS - STEPS // 2, dist.group.WORLD, parallel, theta, state
            )
            results[f"{key}/resumed"] = theta
        np.savez(os.path.join(out, f"rank{rank}.npz"), **results)
        if rank == 0:
            import pickle

            with open(os.path.join(out, "saved.pkl"), "wb") as f:
                pickle.dump(saved, f)
        dist.destroy_process_group()
    except BaseException:
        with open(os.path.join(out, f"error{rank}.txt"), "w") as f:
            f.write(traceback.format_exc())
        raise


def faults(rank, world, port, out, kinds, timeout):
    """For each of ``kinds`` ("raise", "nan", "hang" or "die"), a fresh MeZO whose rank 1 fails
    at step 3, at f(theta - eps z); every rank saves what it raised, how long the failed step
    took and theta before and after it. "hang" and "die" break the group: last, alone."""
    from softzo import optim

    dist = _init(rank, world, port)
    rows = _ranks_rows(rank, world)
    try:  # every process must build the same optimiser: here the seeds differ
        optim.MeZO([np.zeros(D)], seed=rank, process_group=dist.group.WORLD)
        mismatch = "none"
    except ValueError as e:
        mismatch = str(e)
    np.save(os.path.join(out, f"mismatch{rank}.npy"), np.array(mismatch))
    for kind in kinds:
        theta = np.random.default_rng(1).standard_normal(D)
        opt = optim.MeZO([theta], lr=0.01, process_group=dist.group.WORLD, timeout=timeout)
        calls = []

        def closure(theta=theta, opt=opt, calls=calls, kind=kind):
            calls.append(1)
            if rank == 1 and len(calls) == 2 * 3 + 2:  # step 3, once
                if kind == "raise":
                    raise RuntimeError("boom on rank 1")
                if kind == "nan":
                    return float("nan")
                if kind == "hang":
                    time.sleep(2 * timeout)
                if kind == "die":
                    os._exit(17)
            return shard_loss(theta, rows)

        for _ in range(3):
            opt.step(closure)
        before = theta.copy()
        t0 = time.time()
        try:
            opt.step(closure)
            error = "none"
        except BaseException as e:  # noqa: BLE001 -- recorded for the test
            error = f"{type(e).__name__}: {e}"
        seconds, failed, step = time.time() - t0, theta.copy(), opt.step_count
        if kind in ("raise", "nan"):  # the group still works: one more step on every rank
            opt.step(closure)
        np.savez(
            os.path.join(out, f"{kind}{rank}.npz"),
            before=before,
            failed=failed,
            seconds=seconds,
            error=np.array(error),
            step=step,
            next=theta,
        )
    os._exit(0)  # after a timeout, gloo's teardown may wait on the dead peer
