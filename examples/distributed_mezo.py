"""MeZO on a 2-layer MLP (scikit-learn's digits) across processes, exchanging scalars only.

    python examples/distributed_mezo.py --engine torch   # 2 gloo ranks on 127.0.0.1
    python examples/distributed_mezo.py --engine ray     # 2 actors on a local ray.init()

Each rank (actor) holds a replica of the model and a shard of the training set; a step sends
each rank's two losses and its example count, never a gradient or a parameter. Prints the
training loss, the test accuracy and the bytes each rank sent per step.
"""

import argparse

import numpy as np
import torch
from softzo import optim
from softzo.distributed.local import free_port, init_gloo

HIDDEN, LR, EPS = 32, 5e-3, 1e-3


def data():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    order = np.random.default_rng(0).permutation(len(y))
    train, test = order[:1400], order[1400:]
    X, y = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    return (X[train], y[train]), (X[test], y[test])


def replica(shard, shards):
    """The model (the same on every rank: seeded) and the closure on this rank's shard."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, HIDDEN), torch.nn.Tanh(), torch.nn.Linear(HIDDEN, 10)
    )
    (X, y), _ = data()
    rows = np.array_split(np.arange(len(y)), shards)[shard]
    Xs, ys = X[rows], y[rows]

    def closure():
        with torch.no_grad():
            return torch.nn.functional.cross_entropy(model(Xs), ys).item(), len(rows)

    return model, closure


def accuracy(model):
    _, (X, y) = data()
    with torch.no_grad():
        return float((model(X).argmax(1) == y).float().mean())


def torch_rank(rank, world, port, steps):
    import torch.distributed as dist

    torch.set_num_threads(1)  # one core per rank
    init_gloo(rank, world, port)
    model, closure = replica(rank, world)
    opt = optim.MeZO(list(model.parameters()), lr=LR, eps=EPS, process_group=dist.group.WORLD)
    for k in range(steps):
        loss = opt.step(closure)
        if rank == 0 and (k % (steps // 10) == 0 or k == steps - 1):
            print(f"step {k:5d}  loss {loss:.4f}  bytes sent by this rank {opt.comm_bytes}")
    if rank == 0:
        params = sum(p.numel() for p in model.parameters())
        ddp = 2 * (world - 1) / world * 4 * params  # a ring all-reduce of float32 gradients
        print(f"test accuracy {accuracy(model):.3f}; {params} parameters: DDP would send")
        print(f"{ddp:.0f} bytes per rank and step, {ddp / opt.comm_bytes:.0f}x these")
    dist.destroy_process_group()


def run_torch(steps, world=2):
    import torch.multiprocessing as mp

    mp.spawn(torch_rank, args=(world, free_port(), steps), nprocs=world)


class RayReplica:
    """make_replica for the Ray driver: parameters and closure of shard ``index``."""

    def __init__(self, shards):
        self.shards = shards

    def __call__(self, index):
        model, closure = replica(index % self.shards, self.shards)
        return list(model.parameters()), closure


def run_ray(steps, actors=2):
    import ray
    from softzo.distributed.ray import Driver

    ray.init(num_cpus=actors, include_dashboard=False, log_to_driver=False)
    driver = Driver(RayReplica(actors), actors, method="mezo", options={"lr": LR, "eps": EPS})
    for k in range(steps):
        loss = driver.step()
        if k % (steps // 10) == 0 or k == steps - 1:
            print(f"step {k:5d}  loss {loss:.4f}  bytes moved by the driver {driver.comm_bytes}")
    model, _ = replica(0, actors)
    flat = np.concatenate(driver.parameters())
    torch.nn.utils.vector_to_parameters(torch.tensor(flat, dtype=torch.float32), model.parameters())
    print(f"test accuracy {accuracy(model):.3f}")
    ray.shutdown()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["torch", "ray"], default="torch")
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    (run_torch if args.engine == "torch" else run_ray)(args.steps)
