"""torch.distributed on one machine (tests, examples, benchmarks): a free TCP port on
127.0.0.1 and the default process group over gloo there."""

from __future__ import annotations

import datetime
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_gloo(rank: int, world: int, port: int, timeout: float = 60.0) -> None:
    """``torch.distributed.init_process_group("gloo")`` for rank ``rank`` of ``world``
    processes meeting at 127.0.0.1:``port``; ``timeout`` seconds for the group's operations."""
    import torch.distributed as dist

    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout),
    )
