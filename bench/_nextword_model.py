"""The next-word benchmark's model and training (bench.nextword): the shared body, the dense
and factored output layers, the epochs over fixed slices of the training positions, and the
top-1/top-10 evaluation. The data pipeline, the report and the command line are in
nextword.py, whose docstring describes the protocol."""

from __future__ import annotations

import dataclasses
import itertools
import math
import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .nextword import Corpus

TOPK = 10


# -------------------------------------------------------------------------------------- model


@dataclasses.dataclass
class Config:
    epochs: int = 3
    max_tokens: int = 49152
    eval_tokens: int = 8192
    batch: int = 256
    context: int = 3
    emb: int = 128
    hidden: int = 512
    dim: int = 256
    lr: float = 1e-3  # Adam / SparseAdam of the shared body
    dense_opt: str = "adam"
    dense_lr: float = 1e-3
    factored_lr: float = 2.0
    zloss_a: float = 1.0
    zloss_b: float = 30.0
    seed: int = 0
    threads: int = 2
    blas_threads: int = 1


@dataclasses.dataclass
class Epoch:
    epoch: int
    tokens: int  # training targets seen so far
    train_s: float  # this epoch's training wall time
    loss: float  # mean training loss over the epoch (each variant's own loss)
    top1: float | None  # None: not evaluated after this epoch
    top10: float | None
    eval_s: float
    extra: bool = False  # an epoch of the equal-time extension

    @property
    def evaluated(self) -> bool:
        return self.top1 is not None


def _body(torch: Any, corpus: Corpus, cfg: Config) -> Any:
    nn = torch.nn

    class Body(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(corpus.num_classes + 1, cfg.emb, sparse=True)
            self.fc1 = nn.Linear(cfg.context * cfg.emb, cfg.hidden)
            self.fc2 = nn.Linear(cfg.hidden, cfg.dim)

        def forward(self, ctx: Any) -> Any:
            x = self.emb(ctx).flatten(1)
            return torch.tanh(self.fc2(torch.relu(self.fc1(x))))

    return Body()


def factored_layer_class() -> Any:
    """``softzo.torch.FactoredOutputHead``."""
    from softzo.torch import FactoredOutputHead

    return FactoredOutputHead


def _epoch_positions(corpus: Corpus, cfg: Config) -> Iterator[np.ndarray]:
    """Disjoint slices of ``max_tokens`` of one fixed shuffle of the training positions (wrapping
    around when the shuffle is used up), without end."""
    order = np.random.default_rng(cfg.seed).permutation(corpus.train.positions)
    for e in itertools.count():
        yield order[np.arange(e * cfg.max_tokens, (e + 1) * cfg.max_tokens) % order.size]


def eval_positions(corpus: Corpus, cfg: Config) -> np.ndarray:
    rng = np.random.default_rng(cfg.seed + 1)
    n = min(cfg.eval_tokens, corpus.test.tokens)
    return np.sort(rng.choice(corpus.test.positions, size=n, replace=False))


def train_variant(
    kind: str,
    corpus: Corpus,
    cfg: Config,
    time_budget: float | None = None,
    progress: bool = True,
) -> tuple[list[Epoch], str]:
    """Trains the ``kind`` ("dense" or "factored") variant for ``cfg.epochs`` epochs, then, given
    a ``time_budget`` (s), for more epochs until its total training time reaches the budget
    (evaluated about 4 times). Returns the epochs and a description of the output layer."""
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    body = _body(torch, corpus, cfg)
    params = [p for n, p in body.named_parameters() if not n.startswith("emb.")]
    opts = [
        torch.optim.SparseAdam(body.emb.parameters(), lr=cfg.lr),
        torch.optim.Adam(params, cfg.lr),
    ]
    V = corpus.num_classes
    # Both variants start from the same W: nn.Linear's default init, drawn after the body's.
    out = torch.nn.Linear(cfg.dim, V, bias=False)
    if kind == "dense":
        if cfg.dense_opt == "adam":
            opts.append(torch.optim.Adam(out.parameters(), lr=cfg.dense_lr))
        else:
            opts.append(torch.optim.SGD(out.parameters(), lr=cfg.dense_lr))
        desc = f"nn.Linear({cfg.dim}, {V}, bias=False) + F.cross_entropy, {cfg.dense_opt}"

        def step_loss(h: Any, y: Any) -> Any:
            return F.cross_entropy(out(h), y)

        def topk(h: Any) -> Any:
            return torch.topk(out(h), TOPK, dim=1).indices

    else:
        cls = factored_layer_class()
        layer = cls(
            num_classes=V,
            dim=cfg.dim,
            loss="z_loss",
            lr=cfg.factored_lr,
            weight_decay=0.0,
            dtype=torch.float32,
            seed=cfg.seed,
            a=cfg.zloss_a,
            b=cfg.zloss_b,
            init=out.weight.detach(),
        )
        del out
        desc = (
            f"{cls.__module__}.{cls.__qualname__}(loss='z_loss', lr={cfg.factored_lr:g}, "
            f"a={cfg.zloss_a:g}, b={cfg.zloss_b:g})"
        )

        def step_loss(h: Any, y: Any) -> Any:
            return layer(h, y)

        def topk(h: Any) -> Any:
            return layer.topk(h, TOPK)[1]

    def evaluate() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        top1 = top10 = 0
        body.eval()
        with torch.no_grad():
            for b in range(0, ev_pos.size, 1024):
                ctx, y = corpus.batch(corpus.test, ev_pos[b : b + 1024])
                idx = topk(body(torch.from_numpy(ctx))).numpy()
                hit = idx == y[:, None]
                top1 += int(hit[:, 0].sum())
                top10 += int(hit.any(axis=1).sum())
        body.train()
        return top1 / ev_pos.size, top10 / ev_pos.size, time.perf_counter() - t0

    ev_pos = eval_positions(corpus, cfg)
    results: list[Epoch] = []
    seen, total_s, eval_every, next_eval = 0, 0.0, 1, 0
    body.train()
    for e, positions in enumerate(_epoch_positions(corpus, cfg), 1):
        extra = e > cfg.epochs
        if extra and (time_budget is None or total_s >= time_budget):
            break
        loss_sum, batches = 0.0, 0
        t0 = time.perf_counter()
        for b in range(0, positions.size, cfg.batch):
            ctx, y = corpus.batch(corpus.train, positions[b : b + cfg.batch])
            h = body(torch.from_numpy(ctx))
            loss = step_loss(h, torch.from_numpy(y))
            for o in opts:
                o.zero_grad(set_to_none=True)
            loss.backward()
            for o in opts:
                o.step()
            loss_sum += float(loss.detach())
            batches += 1
        train_s = time.perf_counter() - t0
        seen += positions.size
        total_s += train_s
        if e == cfg.epochs and time_budget is not None:
            left = (time_budget - total_s) / (total_s / e)  # extension epochs left, about
            eval_every, next_eval = max(1, math.ceil(left / 4)), e
        if extra:
            done = time_budget is not None and total_s >= time_budget
            do_eval = done or e - next_eval >= eval_every
        else:
            do_eval = True
        top1 = top10 = None
        eval_s = 0.0
        if do_eval:
            top1, top10, eval_s = evaluate()
            next_eval = e if extra else next_eval
        ep = Epoch(e, seen, train_s, loss_sum / max(batches, 1), top1, top10, eval_s, extra)
        results.append(ep)
        if progress:
            acc = f", top-1 {top1:.2%}, top-10 {top10:.2%} (eval {eval_s:.1f} s)" if do_eval else ""
            print(
                f"{kind:8s} epoch {e}{'+' if extra else ''}: train {train_s:7.1f} s "
                f"({positions.size / train_s:7.0f} tok/s), loss {ep.loss:.4f}{acc}",
                file=sys.stderr,
                flush=True,
            )
        if not math.isfinite(ep.loss):
            print(f"{kind}: non-finite training loss, stopping", file=sys.stderr)
            break
    if not results[-1].evaluated:  # stopped early: evaluate the final state
        top1, top10, eval_s = evaluate()
        results[-1] = dataclasses.replace(results[-1], top1=top1, top10=top10, eval_s=eval_s)
    return results, desc
