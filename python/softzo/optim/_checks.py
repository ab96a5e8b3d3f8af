"""Argument checks shared by the optimisers, their options and the closure's return value."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .._arrays import check_not_masked, framework_of


def loss_value(value: Any) -> float:
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        raise TypeError(
            f"closure must return a number or a scalar array, got {type(value).__name__}"
        ) from None


def check_options(name: str, options: Any, keys: tuple[str, ...], example: str) -> None:
    """A dict of options with known keys only (``subspace=``, ``subset=``)."""
    if not isinstance(options, dict):
        raise TypeError(f"{name} must be a dict like {example}, got {options!r}")
    unknown = sorted(set(options) - set(keys))
    if unknown:
        raise ValueError(f"{name} has unknown keys {unknown}; it takes {list(keys)}")


def check_fraction(name: str, value: Any, one_allowed: bool) -> float:
    """A number in (0, 1], or in (0, 1) without ``one_allowed``."""
    interval = "(0, 1]" if one_allowed else "(0, 1)"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{name} must be a number in {interval}, got {value!r}")
    if not (0.0 < float(value) < 1.0 or (one_allowed and float(value) == 1.0)):
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return float(value)


def group_defaults(lr: Any, eps: Any, weight_decay: Any, **extra: float) -> dict[str, float]:
    """The per-group hyperparameters every two-point optimiser takes, checked."""
    return {
        "lr": check_positive("lr", lr, True),
        "eps": check_positive("eps", eps),
        "weight_decay": check_positive("weight_decay", weight_decay, True),
        **extra,
    }


def sgd_defaults(lr: Any, mu: Any) -> dict[str, float]:
    """RGE's and CGE's per-group hyperparameters: lr, and the difference step mu (as eps)."""
    return {"lr": check_positive("lr", lr, True), "eps": check_positive("mu", mu)}


def check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


def check_positive(name: str, value: Any, allow_zero: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return v


def start_point(x0: Any) -> np.ndarray:
    """x0 as a new 1-D float64 array (a scalar is one coordinate, as in SciPy)."""
    check_not_masked(x0, "x0")
    if framework_of(x0) == "torch":
        x0 = x0.detach().cpu().numpy()
    try:
        arr = np.asarray(x0)
    except (TypeError, ValueError) as e:  # ragged lists, unconvertible objects
        raise TypeError(f"x0 must be an array of real numbers: {e}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"x0 must hold real numbers, got dtype {arr.dtype}")
    if arr.size == 0:
        raise ValueError("x0 must hold at least one number")
    return np.array(arr, dtype=np.float64).reshape(-1)
