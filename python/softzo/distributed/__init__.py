"""Zeroth-order training across processes: every optimiser of :mod:`softzo.optim` takes
``process_group=`` (torch.distributed), and :mod:`softzo.distributed.ray` drives replicas held
by Ray actors. Processes exchange only seeds, steps and a few float64 losses per step."""

from ..optim._comm import DistributedStepError

__all__ = ["DistributedStepError"]
