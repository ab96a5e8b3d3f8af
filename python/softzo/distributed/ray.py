"""Zeroth-order training over Ray actors that each hold a replica of the parameters.

    import ray
    from softzo.distributed.ray import Driver

    def make_replica(index):          # runs in the actor: its parameters and its closure
        model = build_model()
        shard = load_shard(index)
        return list(model.parameters()), lambda: (loss_on(model, shard), len(shard))

    ray.init()
    driver = Driver(make_replica, num_actors=4, method="mezo", options={"lr": 1e-6})
    for _ in range(1000):
        loss = driver.step()           # the agreed loss; driver.comm_bytes: this step's payload

Each actor runs a :mod:`softzo.optim` optimiser whose exchanges go through the driver: at each
of a step's rounds (see ``softzo.optim._comm``) the actors send the driver their few float64
losses and receive everyone's, so the driver broadcasts only scalars (the seed and the step
live in every replica's optimiser) and the replicas stay bit-identical. Data parallel (each
actor's closure on its shard, weighted by its example count) or directions parallel, as with
``process_group=``.

- ``add_actors(n)``: new actors get the current parameters and optimiser state once, then
  take part from the next step on; ``remove_actor(i)`` between steps.
- A checkpoint is ``state_dict()``: the optimiser's state and one replica's parameters.
- An actor that dies, hangs past ``timeout`` or whose closure raises or returns a non-finite
  loss fails the step: the other actors restore their parameters to the last completed step,
  and the driver raises :class:`~softzo.distributed.DistributedStepError`
  (``on_failure="raise"``), or, with ``on_failure="retry"``, drops the failed actors and runs
  the step again on the others (warning).
"""

from __future__ import annotations

import queue
import threading
import warnings
from typing import Any, Callable

import numpy as np

from .._arrays import check_choice
from ..optim._comm import OK, Channel, DistributedStepError
from ..optim._engine import DEFAULT_TIMEOUT
from ..optim._methods import METHODS

__all__ = ["Driver", "Replica"]


class _DriverChannel(Channel):
    """An actor's side of the exchange: its row goes to the driver, everyone's comes back."""

    def __init__(self) -> None:
        self.rank, self.world, self.timeout = 0, 1, DEFAULT_TIMEOUT
        self.outbox: queue.Queue = queue.Queue()  # to the driver, through Replica.advance
        self.inbox: queue.Queue = queue.Queue()
        self.stepping = False  # in a step started by the driver

    def exchange(self, local: np.ndarray, losses: bool = False) -> np.ndarray:
        if not self.stepping:
            # The optimiser's construction: alone until the driver copies a replica's
            # parameters and state into this one (Driver.add_actors).
            return local[None]
        self.outbox.put(("exchange", local, losses))
        try:
            kind, payload = self.inbox.get(timeout=self.timeout)
        except queue.Empty:
            raise DistributedStepError(
                f"actor {self.rank}: no answer from the driver within {self.timeout:g} s"
            ) from None
        if kind == "abort":
            raise DistributedStepError(payload)
        return payload

    def broadcast(self, arrays: list[np.ndarray]) -> int:
        return 0  # the driver copies one replica's parameters into new ones (Driver.add_actors)

    def bytes_sent(self, local: np.ndarray) -> int:
        return local.nbytes  # to the driver only


class Replica:
    """A Ray actor's replica: the parameters and closure of ``make_replica(index)`` and the
    optimiser over them, whose steps run in a thread that pauses at each exchange."""

    def __init__(
        self,
        make_replica: Callable[[int], tuple[list[Any], Callable[[], Any]]],
        index: int,
        method: str,
        options: dict[str, Any],
    ) -> None:
        params, self.closure = make_replica(index)
        self.channel = _DriverChannel()
        self.opt = METHODS[method](params, process_group=self.channel, **options)
        self.thread: threading.Thread | None = None

    def advance(self, rank: int, world: int, message: tuple | None) -> tuple:
        """Starts a step (``message`` None) or answers an exchange (("rows", rows) or
        ("abort", reason)); returns the next exchange's ("exchange", row, whether the row
        holds a round's losses), or ("done", loss, bytes sent) / ("error", description) when
        the step ends."""
        if self.thread is None:
            self.channel.rank, self.channel.world = rank, world
            self.channel.stepping = True
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        else:
            self.channel.inbox.put(message)
        reply = self.channel.outbox.get()
        if reply[0] != "exchange":
            self.thread.join()
            self.thread = None
            self.channel.stepping = False
        return reply

    def _run(self) -> None:
        try:
            loss = self.opt.step(self.closure)
            self.channel.outbox.put(("done", loss, self.opt.comm_bytes))
        except BaseException as e:  # noqa: BLE001 -- handed to the driver
            self.channel.outbox.put(("error", f"{type(e).__name__}: {e}"))

    def get_state(self) -> tuple[dict[str, Any], list[np.ndarray]]:
        """The optimiser's state_dict and the parameters (float32 masters of float16 ones)."""
        return self.opt.state_dict(), [v.copy() for v, _, _ in self.opt._views]

    def set_state(self, state: tuple[dict[str, Any], list[np.ndarray]]) -> None:
        opt_state, params = state
        if [p.size for p in params] != [v.size for v, _, _ in self.opt._views]:
            raise ValueError("the parameters do not match this replica's (sizes differ)")
        for (view, _, _), p in zip(self.opt._views, params):
            view[...] = p
        self.opt.load_state_dict(opt_state)  # also rounds float16 masters into the tensors

    def step_count(self) -> int:
        return self.opt.step_count

    def set_timeout(self, timeout: float) -> None:
        self.channel.timeout = timeout


class _StepFailed(Exception):
    """Ranks that failed a step (``lost``: those that died or hang, never to be used again)."""

    def __init__(self, failed: list[int], lost: list[int], reason: str) -> None:
        super().__init__(reason)
        self.failed, self.lost, self.reason = failed, lost, reason


class Driver:
    """Runs a :mod:`softzo.optim` method over Ray actors holding replicas (module docstring).

    Args:
        make_replica: ``make_replica(index) -> (params, closure)``, run in each actor (index
            0, 1, ... in the order actors are added); the closure returns the loss of the
            actor's shard, or a (loss, example count) pair.
        num_actors: actors to start with.
        method: a name of :func:`softzo.optim.minimize` ("mezo", "spsa", "rge", ...).
        options: keyword arguments of the optimiser class (lr, eps, seed, parallel, ...).
        timeout: seconds the driver waits for the actors at each exchange.
        on_failure: "raise" or "retry" (drop the failed actors and run the step again).
        actor_options: passed to ``ray.remote`` (``{"num_cpus": 1}``, ...).
    """

    def __init__(
        self,
        make_replica: Callable[[int], tuple[list[Any], Callable[[], Any]]],
        num_actors: int = 2,
        *,
        method: str = "mezo",
        options: dict[str, Any] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        on_failure: str = "raise",
        actor_options: dict[str, Any] | None = None,
    ) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("softzo.distributed.ray needs Ray: pip install ray") from None
        self._ray = ray
        if not callable(make_replica):
            raise TypeError("make_replica must be callable: index -> (params, closure)")
        check_choice(method, "method", tuple(METHODS))
        self.on_failure = check_choice(on_failure, "on_failure", ("raise", "retry"))
        self.timeout = float(timeout)
        if not self.timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        self._make, self._method, self._options = make_replica, method, dict(options or {})
        self._actor_cls = (
            ray.remote(**actor_options)(Replica) if actor_options else ray.remote(Replica)
        )
        self.actors: list[Any] = []
        self._next_index = 0
        self.comm_bytes = 0  # payload the driver sent and received in the last step
        self.comm_bytes_total = 0  # ... since construction, the parameter copies included
        self.add_actors(num_actors)

    # -- actors ----------------------------------------------------------------------------------

    def add_actors(self, n: int) -> None:
        """Starts ``n`` actors; they get the current parameters and state once."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an int >= 1, got {n!r}")
        new = []
        for _ in range(n):
            new.append(
                self._actor_cls.remote(self._make, self._next_index, self._method, self._options)
            )
            self._next_index += 1
        self._get([a.set_timeout.remote(self.timeout) for a in new])
        source = self.actors[0] if self.actors else new[0]
        state = self._get(source.get_state.remote())
        ref = self._ray.put(state)
        targets = new if self.actors else new[1:]
        self._get([a.set_state.remote(ref) for a in targets])
        self.comm_bytes_total += len(targets) * sum(p.nbytes for p in state[1])
        self.actors += new

    def remove_actor(self, index: int) -> None:
        """Stops actor ``index`` (between steps); the others keep their ranks' order."""
        self._ray.kill(self.actors.pop(index))

    def _get(self, refs: Any) -> Any:
        return self._ray.get(refs, timeout=self.timeout)

    # -- steps -----------------------------------------------------------------------------------

    def step(self) -> float:
        """One step on every actor; returns the agreed loss."""
        while True:
            try:
                return self._step()
            except _StepFailed as e:
                retry = self.on_failure == "retry"
                for i in sorted(e.failed if retry else e.lost, reverse=True):
                    self._ray.kill(self.actors.pop(i), no_restart=True)
                if not retry or not self.actors:
                    raise DistributedStepError(
                        f"{e.reason}; the actors that died or hang were stopped, and the others' "
                        f"parameters restored to the last completed step ({self.step_count})"
                    ) from None
                warnings.warn(
                    f"{e.reason}; retrying the step on the {len(self.actors)} other actors",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def _step(self) -> float:
        world = len(self.actors)
        pending = [a.advance.remote(r, world, None) for r, a in enumerate(self.actors)]
        self.comm_bytes = 0
        lost: list[int] = []
        while True:
            replies, failed, reason = self._collect(pending)
            if not failed:
                kinds = {reply[0] for reply in replies}
                if kinds == {"done"}:
                    self.comm_bytes_total += self.comm_bytes
                    return float(replies[0][1])
                if kinds != {"exchange"}:
                    raise AssertionError(f"actors out of step: {sorted(kinds)}")
                rows = np.stack([reply[1] for reply in replies])
                self.comm_bytes += rows.nbytes * (1 + world)  # rows in, everyone's rows out
                if replies[0][2]:  # a round of losses: the driver sees who failed
                    failed, reason = _failed_rows(rows, self._options.get("parallel", "data"))
                message = ("rows", rows)  # the actors raise on the failed rows themselves
            else:
                lost = failed
                message = ("abort", reason)
            waiting = [r for r in range(world) if r not in failed and replies[r] is not None]
            pending = [None] * world
            for r in waiting:
                pending[r] = self.actors[r].advance.remote(r, world, message)
            if failed:
                self._collect(pending)  # the survivors restore and report their error
                raise _StepFailed(failed, lost, reason)

    def _collect(self, pending: list[Any]) -> tuple[list[Any], list[int], str]:
        """The replies (None where none came), the ranks that failed, and why."""
        refs = [p for p in pending if p is not None]
        ready, _ = self._ray.wait(refs, num_returns=len(refs), timeout=self.timeout)
        ready = set(ready)
        replies: list[Any] = [None] * len(pending)
        failed, reasons = [], []
        for r, ref in enumerate(pending):
            if ref is None:
                continue
            if ref not in ready:
                failed.append(r)
                reasons.append(f"actor {r} did not answer within {self.timeout:g} s")
                continue
            try:
                replies[r] = self._ray.get(ref)
            except Exception as e:  # noqa: BLE001 -- an actor that died
                failed.append(r)
                reasons.append(f"actor {r} died ({type(e).__name__})")
        return replies, failed, "; ".join(reasons)

    # -- state -----------------------------------------------------------------------------------

    @property
    def step_count(self) -> int:
        return int(self._get(self.actors[0].step_count.remote()))

    def parameters(self, index: int = 0) -> list[np.ndarray]:
        """Copies of actor ``index``'s parameters (flat; float32 masters of float16 ones)."""
        return self._get(self.actors[index].get_state.remote())[1]

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint: the optimiser's state and one replica's parameters."""
        opt_state, params = self._get(self.actors[0].get_state.remote())
        return {"optimizer": opt_state, "params": params}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Puts a ``state_dict()`` into every replica."""
        ref = self._ray.put((state["optimizer"], state["params"]))
        self._get([a.set_state.remote(ref) for a in self.actors])


def _failed_rows(rows: np.ndarray, parallel: str) -> tuple[list[int], str]:
    """Ranks whose closure raised or returned a non-finite loss, read from the exchanged rows
    (values, example count, status): the actors find the same and raise."""
    world, k = rows.shape[0], rows.shape[1] - 2
    bad = []
    for r in range(world):
        owned = range(k) if parallel == "data" else range(r, k, world)
        if rows[r, -1] != OK or not all(np.isfinite(rows[r, j]) for j in owned):
            bad.append(r)
    return bad, (
        f"the closure raised or returned a non-finite loss on actor(s) {bad}" if bad else ""
    )
