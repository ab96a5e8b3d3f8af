"""Zeroth-order steps across processes: a step's evaluations are exchanged as scalars, never
parameters or gradients, since every process regenerates z from the shared seed.

A step runs in rounds. In each round every process makes the same moves of theta and calls
``Rounds.evaluate`` for each loss the round needs, then ``Rounds.agree`` exchanges the values
(one all-gather of a few float64 per process) and returns the agreed ones, identical bytes on
every process, so every process applies the same update and the parameters stay bit-identical.

- ``parallel="data"``: every process evaluates every loss on its own shard; the agreed value is
  the mean weighted by each process's example count, summed in rank order.
- ``parallel="directions"``: the evaluations of a round are dealt out, evaluation j to rank
  j % world; the agreed value is the owner's. Every process still makes every move (three
  memory passes per direction), so the parameters follow the single-process run exactly.

A process whose closure raises or returns a non-finite loss stops evaluating but keeps making
the round's moves, so that at the exchange every process learns of it and restores theta the
same way before raising. A process that dies or hangs makes the exchange fail within
``timeout`` seconds on the others, which restore theta and raise :class:`DistributedStepError`.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Callable

import numpy as np

from ._checks import loss_value

# The last column of a process's row in an exchange.
OK, RAISED = 0.0, 1.0


class DistributedStepError(RuntimeError):
    """Another process failed this step (raised, died or timed out); this one restored its
    parameters to the last completed step before raising."""


class Channel:
    """The exchange between the processes of one optimiser: ``rank`` of ``world``."""

    rank: int
    world: int
    timeout: float

    def exchange(self, local: np.ndarray, losses: bool = False) -> np.ndarray:
        """Every process's ``local`` (1-D float64, the same size everywhere), as (world, size)
        rows in rank order; raises DistributedStepError when a process fails to take part.
        ``losses``: the rows are a round's (values, example count, status)."""
        raise NotImplementedError

    def broadcast(self, arrays: list[np.ndarray]) -> int:
        """Rank 0's arrays into every process's (in place); returns the bytes this rank sent."""
        raise NotImplementedError

    def bytes_sent(self, local: np.ndarray) -> int:
        """Bytes this process sends in one exchange of ``local``: a ring all-gather forwards
        world - 1 rows of the same size (the payload; transport headers not counted)."""
        return (self.world - 1) * local.nbytes


class TorchChannel(Channel):
    """A torch.distributed process group: gloo on the CPU, NCCL through a CUDA device."""

    def __init__(self, group: Any, timeout: float) -> None:
        import torch.distributed as dist

        if not dist.is_available() or not dist.is_initialized():
            raise ValueError(
                "process_group needs torch.distributed initialised (init_process_group) first"
            )
        self.dist, self.group, self.timeout = dist, group, timeout
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        if self.rank < 0:
            raise ValueError("process_group does not contain this process")
        self.src = dist.get_global_rank(group, 0) if group is not None else 0
        self.device = "cpu"
        if dist.get_backend(group) == "nccl":
            import torch

            self.device = f"cuda:{torch.cuda.current_device()}"

    def _wait(self, work: Any, what: str) -> None:
        try:
            work.wait(timeout=datetime.timedelta(seconds=self.timeout))
        except Exception as e:  # gloo: "Operation timed out!", or a peer's closed connection
            raise DistributedStepError(
                f"rank {self.rank}: {what} with the other ranks failed (a rank died, or hangs "
                f"past the timeout of {self.timeout:g} s): {type(e).__name__}: {e}"
            ) from e

    def exchange(self, local: np.ndarray, losses: bool = False) -> np.ndarray:
        import torch

        mine = torch.from_numpy(local).to(self.device)
        rows = torch.empty((self.world, local.size), dtype=torch.float64, device=self.device)
        try:
            work = self.dist.all_gather(list(rows.unbind(0)), mine, group=self.group, async_op=True)
        except Exception as e:
            raise DistributedStepError(
                f"rank {self.rank}: the exchange failed to start: {e}"
            ) from e
        self._wait(work, "the exchange of the step's losses")
        return rows.cpu().numpy()

    def broadcast(self, arrays: list[np.ndarray]) -> int:
        import torch

        sent = 0
        for a in arrays:
            t = torch.from_numpy(a).to(self.device)
            self._wait(
                self.dist.broadcast(t, src=self.src, group=self.group, async_op=True),
                "the broadcast of rank 0's parameters",
            )
            if self.device != "cpu":
                a[...] = t.cpu().numpy()
            sent += a.nbytes if self.rank == 0 else 0
        return sent


def channel_for(process_group: Any, timeout: Any) -> Channel:
    """The channel of ``process_group=``: a torch.distributed group, or a Channel as it is."""
    t = float(timeout)
    if not math.isfinite(t) or t <= 0:
        raise ValueError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if isinstance(process_group, Channel):
        process_group.timeout = t
        return process_group
    return TorchChannel(process_group, t)


class Rounds:
    """One optimiser's evaluations and exchanges (see the module docstring)."""

    def __init__(self, channel: Channel, parallel: str) -> None:
        self.channel = channel
        self.parallel = parallel
        self.examples = 1.0  # this process's weight: the closure's count, or num_examples
        self.slot = 0  # evaluations made in the current round
        self.failure: BaseException | None = None  # this process's closure error in the round
        self.bytes = 0  # sent in the current step

    def evaluate(self, closure: Callable[[], Any]) -> float:
        """This process's value of the round's next evaluation: the closure's, or 0.0 when
        another rank owns it or a previous evaluation of the round failed here."""
        slot, self.slot = self.slot, self.slot + 1
        ch = self.channel
        if self.failure is not None:
            return 0.0
        if self.parallel == "directions" and slot % ch.world != ch.rank:
            return 0.0
        try:
            return self.loss(closure())
        except Exception as e:  # noqa: BLE001 -- reported at the exchange, after the moves
            self.failure = e
            return 0.0

    def loss(self, value: Any) -> float:
        """The closure's loss; a (loss, example count) pair also sets this process's weight."""
        if isinstance(value, tuple):
            if len(value) != 2:
                raise TypeError("closure must return a loss or a (loss, example count) pair")
            self.set_examples(value[1])
            value = value[0]
        return loss_value(value)

    def set_examples(self, count: Any) -> None:
        c = float(count)
        if not math.isfinite(c) or c < 0:
            raise ValueError(f"the example count (num_examples) must be >= 0, got {count!r}")
        self.examples = c

    def check_same(self, settings: dict[str, int]) -> int:
        """Raises ValueError, on every process, naming the settings (integers below 2^53)
        in which some process differs from rank 0; returns the bytes this process sent."""
        local = np.array(list(settings.values()), dtype=np.float64)
        rows = self.channel.exchange(local)
        differ = [name for j, name in enumerate(settings) if np.any(rows[:, j] != rows[0, j])]
        if differ:
            raise ValueError(
                f"process_group: the processes differ in {', '.join(differ)}; every process "
                "must build the same optimiser (same seed, options and parameter shapes)"
            )
        return self.channel.bytes_sent(local)

    def from_rank0(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every process: for quantities whose last bits depend on the
        process's CPU (a reduction's order on AVX2 against AVX-512) and that steer the moves."""
        local = np.array(values, dtype=np.float64)
        self.bytes += self.channel.bytes_sent(local)
        return [float(v) for v in self.channel.exchange(local)[0]]

    def agree(self, values: list[float], finite: bool = True) -> list[float]:
        """The agreed values of the round (see the module docstring); raises, on every
        process alike, when any failed (with ``finite``: also when a value is not finite),
        the caller restoring theta first."""
        ch = self.channel
        k = len(values)
        if k != self.slot:
            raise AssertionError("a round's values are its evaluations, in order")
        failure, self.failure, self.slot = self.failure, None, 0
        local = np.array([*values, self.examples, RAISED if failure else OK], dtype=np.float64)
        self.bytes += ch.bytes_sent(local)
        rows = ch.exchange(local, losses=True)
        raised = [r for r in range(ch.world) if rows[r, -1] != OK]
        if raised:
            if failure is not None:
                raise failure
            raise DistributedStepError(
                f"the closure raised on rank(s) {raised} (see their errors); rank {ch.rank} "
                "restored its parameters and did not update"
            )
        if self.parallel == "directions":
            agreed = [float(rows[j % ch.world, j]) for j in range(k)]
            bad = sorted({j % ch.world for j in range(k) if not math.isfinite(agreed[j])})
        else:
            bad = [r for r in range(ch.world) if not np.all(np.isfinite(rows[r, :k]))]
            agreed = weighted_means(rows[:, :k], rows[:, k]) if not (bad and finite) else []
        if bad and finite:
            raise ValueError(
                f"closure returned a non-finite loss on rank(s) {bad}; the parameters were "
                "restored and not updated"
            )
        return agreed


def weighted_means(values: np.ndarray, weights: np.ndarray) -> list[float]:
    """Per column, sum_r w_r v_r / sum_r w_r, summed in rank order with plain float64 scalar
    arithmetic: the same bytes on every process whatever its BLAS."""
    total = 0.0
    for w in weights:
        total += float(w)
    if total <= 0.0:
        raise ValueError("every rank reported 0 examples: the weighted mean is undefined")
    out = []
    for j in range(values.shape[1]):
        s = 0.0
        for r in range(values.shape[0]):
            s += float(weights[r]) * float(values[r, j])
        out.append(s / total)
    return out
