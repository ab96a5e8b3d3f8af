"""The exact factored output layer for huge output spaces (Vincent, de Brebisson & Bouthillier
2015, arXiv 1412.7091), trained with the Z-loss (de Brebisson & Vincent, arXiv 1604.08859) or
another loss of the spherical family.

A D x d output layer W (o = W h) trained by SGD costs O(D d) per example. When the loss depends
on o only through s = sum o, q = sum o^2 and the target outputs, the same SGD step can be taken
exactly at O(d^2) per example: W is kept as W = V U + 1 omega^T with Q = W^T W and w_bar = W^T 1,
and a step changes U, U^-1 (Woodbury), Q, w_bar, omega and only the rows of V at the targets.
:class:`FactoredOutputLayer` is that layer; :func:`dense_step` is the same SGD step on a dense W
(through BLAS), the reference and the baseline.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import as_input, check_choice
from ._blas import _factored
from .losses import _float_arg, _numpy_view, _wrap

__all__ = ["LOSSES", "FactoredOutputLayer", "blas_threads", "dense_step", "set_blas_threads"]

LOSSES = ("z_loss", "log_spherical", "log_taylor", "mse")
_KIND = {"z_loss": 0, "log_spherical": 1, "log_taylor": 2, "mse": 3}
_STATE_KEYS = ("V", "U", "U_inv", "Q", "w_bar", "omega")


def set_blas_threads(num_threads: int) -> None:
    """Sets the number of threads of the OpenBLAS that the factored layer uses (process-wide).

    OpenBLAS starts with one thread per core (or ``OPENBLAS_NUM_THREADS``). On a machine whose
    cores are busy with other work, 1 is often much faster: oversubscribed OpenBLAS threads spin.
    """
    if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
        raise TypeError(f"num_threads must be an int, got {type(num_threads).__name__}")
    if not 1 <= num_threads < 2**31:
        raise ValueError(f"num_threads must be >= 1 (and below 2**31), got {num_threads}")
    _factored.set_blas_threads(int(num_threads))


def blas_threads() -> int:
    """The number of threads of the OpenBLAS that the factored layer uses."""
    return _factored.blas_threads()


def _dtype(dtype: Any) -> np.dtype:
    """float32 or float64, given as a NumPy dtype, its name, or torch.float32 / torch.float64."""
    if dtype is None:  # NumPy would read None as float64
        raise TypeError("dtype must be float32 or float64, got None")
    name = str(dtype).replace("torch.", "")
    try:
        dt = np.dtype(name if name in ("float32", "float64") else dtype)
    except TypeError:
        dt = None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    return dt


def _h(h: Any, dim: int, dtype: np.dtype) -> tuple[np.ndarray, str]:
    view, framework = as_input(h, "h")
    arr = _numpy_view(view, framework)
    if arr.ndim != 2 or arr.shape[1] != dim or arr.shape[0] == 0:
        raise ValueError(f"h must have shape (m, {dim}) with m >= 1, got {arr.shape}")
    if arr.dtype != dtype:
        raise TypeError(f"h must have the layer's dtype {dtype}, got {arr.dtype}")
    return np.ascontiguousarray(arr), framework


def _targets(targets: Any, m: int) -> np.ndarray:
    """(m,) or (m, K) class indices as an (m, K) int64 array; -1 marks an unused slot."""
    t = targets.detach().cpu().numpy() if hasattr(targets, "detach") else np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(f"targets must hold integer class indices, got dtype {t.dtype}")
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or t.shape[0] != m or t.shape[1] == 0:
        raise ValueError(f"targets must have shape ({m},) or ({m}, K), got {np.shape(targets)}")
    return np.require(t, np.int64, ["C", "A"])  # contiguous and aligned


class FactoredOutputLayer:
    """A num_classes x dim output layer and its loss, trained by SGD at O(dim^2) per example.

    ``step(h, targets)`` takes a minibatch of hidden vectors h (m x dim) and returns the mean
    loss and its gradient with respect to h, and updates the layer exactly as plain SGD
    ``W <- (1 - lr weight_decay) W - lr dL/dW`` would (to rounding). targets are (m,) class
    indices, or (m, K) for several targets per example (-1 marks an unused slot): the loss is
    then summed over an example's targets, except ``"mse"``, which is |o - y|^2 for the
    multi-hot y.

    Losses (o = W h, s = sum o, q = sum o^2, D = num_classes):
      - ``"z_loss"``: softplus(a (b - z_c)) / a with z = (o - mean o) / std o; invariant to
        o -> alpha o + beta. Predict with the largest o.
      - ``"log_spherical"``: -log(o_c^2 + eps) + log(q + D eps). Predict with the largest o^2.
      - ``"log_taylor"``: -log(1 + o_c + o_c^2/2) + log(D + s + q/2).
      - ``"mse"``: |o - y|^2.

    W starts as ``init`` (num_classes x dim) or U(-1/sqrt(dim), 1/sqrt(dim)) draws from
    ``seed`` (torch.nn.Linear's default). The state is V (num_classes x dim, ``dtype``) and
    double-precision U, U^-1, Q, w_bar, omega: those are dim-sized and follow long low-rank
    recurrences. Every ``stabilize_every`` steps, U's singular values outside
    [sigma_min, sigma_max] are reset to 1 by a change of V that leaves W unchanged, and U^-1 is
    recomputed.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        *,
        loss: str = "z_loss",
        lr: float,
        weight_decay: float = 0.0,
        dtype: Any = np.float32,
        seed: int | None = None,
        init: Any = None,
        a: float = 1.0,
        b: float = 0.0,
        eps: float = 1e-6,
        stabilize_every: int = 100,
        sigma_min: float = 0.5,
        sigma_max: float = 2.0,
    ) -> None:
        for name, value in (("num_classes", num_classes), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if seed is not None and (
            isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0
        ):
            raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
        self._dtype = _dtype(dtype)
        self._options = {}
        self._set_options(
            loss=loss, lr=lr, weight_decay=weight_decay, a=a, b=b, eps=eps,
            stabilize_every=stabilize_every, sigma_min=sigma_min, sigma_max=sigma_max,
        )  # fmt: skip
        w0 = None
        if init is not None:
            w0 = np.asarray(init.detach().cpu().numpy() if hasattr(init, "detach") else init)
            if w0.shape != (num_classes, dim):
                raise ValueError(f"init must have shape ({num_classes}, {dim}), got {w0.shape}")
            if not np.all(np.isfinite(w0)):
                raise ValueError("init must be finite")
            w0 = np.require(w0, self._dtype, ["C", "A"])
        cls = _factored.FactoredLayer32 if self._dtype == np.float32 else _factored.FactoredLayer64
        self._layer = cls(int(num_classes), int(dim), *self._core_options(), init=w0)
        if w0 is None:
            # U(-1/sqrt(dim), 1/sqrt(dim)) into V in blocks (U = I): no second D x dim buffer.
            rng, bound, v = np.random.default_rng(seed), 1.0 / np.sqrt(dim), self._layer.v()
            for r in range(0, num_classes, 1 << 14):
                rows = v[r : r + (1 << 14)]
                rows[...] = rng.uniform(-bound, bound, size=rows.shape)
            self._layer.refresh()
        # The cached batch: (framework, rows, slots, "stats" or "loss", batch id).
        self._pending: tuple | None = None
        self._batch_id = 0

    # ---- options ------------------------------------------------------------------------
    def _set_options(self, **changes: Any) -> None:
        o = dict(self._options, **changes)
        o["loss"] = check_choice(o["loss"], "loss", LOSSES)
        o["lr"] = _float_arg(o["lr"], "lr", 0.0)
        o["weight_decay"] = _float_arg(o["weight_decay"], "weight_decay", 0.0)
        if o["lr"] * o["weight_decay"] >= 1.0:
            raise ValueError("lr * weight_decay must be < 1")
        o["a"] = _float_arg(o["a"], "a", 0.0)
        if o["a"] == 0.0:
            raise ValueError("a must be > 0")
        o["b"] = _float_arg(o["b"], "b")
        o["eps"] = _float_arg(o["eps"], "eps", 0.0)
        if o["eps"] == 0.0 and o["loss"] == "log_spherical":
            raise ValueError("eps must be > 0 for loss='log_spherical'")
        every = o["stabilize_every"]
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 0:
            raise ValueError(f"stabilize_every must be an int >= 0, got {every!r}")
        o["sigma_min"] = _float_arg(o["sigma_min"], "sigma_min", 0.0, 1.0)
        o["sigma_max"] = _float_arg(o["sigma_max"], "sigma_max", 1.0)
        if o["sigma_min"] == 0.0:
            raise ValueError("sigma_min must be > 0")
        self._options = o
        if hasattr(self, "_layer"):
            self._layer.set_options(*self._core_options())

    def _core_options(self) -> tuple:
        o = self._options
        return (
            _KIND[o["loss"]], o["a"], o["b"], o["eps"], o["lr"], o["weight_decay"],
            int(o["stabilize_every"]), o["sigma_min"], o["sigma_max"],
        )  # fmt: skip

    @property
    def lr(self) -> float:
        return self._options["lr"]

    @lr.setter
    def lr(self, value: float) -> None:
        self._set_options(lr=value)

    @property
    def weight_decay(self) -> float:
        return self._options["weight_decay"]

    @weight_decay.setter
    def weight_decay(self, value: float) -> None:
        self._set_options(weight_decay=value)

    @property
    def loss(self) -> str:
        return self._options["loss"]

    @property
    def num_classes(self) -> int:
        return self._layer.v().shape[0]

    @property
    def dim(self) -> int:
        return self._layer.v().shape[1]

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def steps(self) -> int:
        """Updates taken so far."""
        return self._layer.steps

    # ---- training -------------------------------------------------------------------------
    def step(self, h: Any, targets: Any) -> tuple[float, Any]:
        """One SGD step on the minibatch: returns (mean loss, dL/dh) with dL/dh taken at the
        weights before the update, in h's framework."""
        arr, framework = _h(h, self.dim, self._dtype)
        t = _targets(targets, arr.shape[0])
        grad = np.empty_like(arr)
        self._pending = None
        value = self._layer.step(arr, t, grad)
        return float(value), _wrap(grad, framework)

    def evaluate(self, h: Any, targets: Any) -> float:
        """The mean loss on the minibatch, without updating. The batch is kept, so
        ``backward_scaled`` can follow (the torch module's backward does)."""
        arr, framework = _h(h, self.dim, self._dtype)
        t = _targets(targets, arr.shape[0])
        self._layer.forward(arr, t)
        self._batch_id += 1
        self._pending = (framework, arr.shape[0], t.shape[1], "loss", self._batch_id)
        return float(self._layer.loss())

    def backward_scaled(self, scale: float = 1.0) -> np.ndarray:
        """After :meth:`evaluate`: the update for ``scale`` times the gradient of the mean loss
        (an upstream gradient). Returns dL/dh times scale, at the weights before the update."""
        if self._pending is None or self._pending[3] != "loss":
            raise ValueError("backward_scaled needs an evaluate call first")
        m = self._pending[1]
        grad = np.empty((m, self.dim), dtype=self._dtype)
        self._layer.backward_scaled(_float_arg(scale, "scale"), grad)
        self._pending = None
        return grad

    @property
    def batch_id(self) -> int:
        """Counts :meth:`evaluate` calls: which batch a later backward_scaled would update with."""
        return self._batch_id

    def forward_stats(self, h: Any, targets: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The statistics the loss sees, without updating: target outputs A (shape of targets;
        0 at unused slots), s = sum o and q = sum o^2 per example, as float64 NumPy arrays.

        The batch is kept for :meth:`backward_update`, so any spherical-family loss can be
        trained: compute its gradients with respect to (A, s, q) and pass them there.
        """
        arr, framework = _h(h, self.dim, self._dtype)
        t = _targets(targets, arr.shape[0])
        A, s, q = self._layer.forward(arr, t)
        self._batch_id += 1
        self._pending = (framework, arr.shape[0], t.shape[1], "stats", self._batch_id)
        return (A[:, 0] if len(getattr(targets, "shape", np.shape(targets))) == 1 else A), s, q

    def backward_update(self, grad_A: Any, grad_s: Any, grad_q: Any) -> Any:
        """After :meth:`forward_stats`: the update for upstream gradients dL/dA, dL/ds, dL/dq
        of any loss. Returns dL/dh (at the weights before the update)."""
        if self._pending is None or self._pending[3] != "stats":
            raise ValueError("backward_update needs a forward_stats call first")
        framework, m, k = self._pending[:3]
        ga = np.asarray(grad_A, dtype=np.float64).reshape(m, -1)
        if ga.shape != (m, k):
            raise ValueError(f"grad_A must have the shape of forward_stats' A, ({m}, {k})")
        gs, gq = (np.asarray(g, dtype=np.float64) for g in (grad_s, grad_q))
        if gs.shape != (m,) or gq.shape != (m,):
            raise ValueError(f"grad_s and grad_q must have shape ({m},)")
        grad = np.empty((m, self.dim), dtype=self._dtype)
        self._layer.backward_update(
            *(np.require(g, requirements=["C", "A"]) for g in (ga, gs, gq)), grad
        )
        self._pending = None
        return _wrap(grad, framework)

    # ---- prediction and inspection ------------------------------------------------------------
    def topk(self, h: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k best classes per example by the loss's score (o for the Z-loss and MSE, o^2 for
        log-spherical, 1 + o + o^2/2 for log-Taylor), best first: (outputs o, indices), each
        (m, k). O(num_classes * dim * m)."""
        arr, _ = _h(h, self.dim, self._dtype)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an int, got {k!r}")
        if not 1 <= k <= self.num_classes:
            raise ValueError(f"k must be an int in [1, {self.num_classes}], got {k!r}")
        return self._layer.topk(arr, int(k))

    def weight(self) -> np.ndarray:
        """W materialised: a new (num_classes, dim) array. O(num_classes * dim^2)."""
        return self._layer.weight()

    def stabilize(self) -> None:
        """Resets U's extreme singular values and recomputes U^-1 now (W is unchanged)."""
        self._layer.stabilize()

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """A copy of the state: V, U, U_inv, Q, w_bar, omega, steps and the options."""
        arrays = (self._layer.v(), *self._layer.small_state())
        state = {key: np.array(a) for key, a in zip(_STATE_KEYS, arrays)}
        state["steps"] = self.steps
        state["options"] = dict(self._options)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores a :meth:`state_dict` of a layer of the same shape and dtype (bit-exact)."""
        if not isinstance(state, dict):
            raise TypeError("state must be a dict from state_dict()")
        missing = [k for k in (*_STATE_KEYS, "steps", "options") if k not in state]
        if missing:
            raise ValueError(f"state is missing {missing}")
        targets = (self._layer.v(), *self._layer.small_state())
        for key, dst in zip(_STATE_KEYS, targets):
            src = np.asarray(state[key])
            if src.shape != dst.shape or src.dtype != dst.dtype:
                raise ValueError(
                    f"state[{key!r}] must be {dst.dtype} of shape {dst.shape}, got "
                    f"{src.dtype} of shape {src.shape}"
                )
            if not np.all(np.isfinite(src)):
                raise ValueError(f"state[{key!r}] must be finite")
        options = dict(state["options"])
        self._set_options(**options)
        for key, dst in zip(_STATE_KEYS, targets):
            dst[...] = state[key]
        self._layer.steps = int(state["steps"])
        self._pending = None


def dense_step(
    weight: Any,
    h: Any,
    targets: Any,
    *,
    loss: str = "z_loss",
    lr: float,
    weight_decay: float = 0.0,
    a: float = 1.0,
    b: float = 0.0,
    eps: float = 1e-6,
) -> tuple[float, np.ndarray]:
    """The same SGD step on a dense weight (num_classes x dim NumPy array, updated in place):
    o = W h through BLAS, the loss and dL/do per row, dL/dh = (dL/do) W, then
    W <- (1 - lr weight_decay) W - lr (dL/do)^T h. O(num_classes * dim * m); needs an
    m x num_classes buffer. Returns (mean loss, dL/dh)."""
    if not isinstance(weight, np.ndarray) or weight.ndim != 2:
        raise TypeError("weight must be a 2-D NumPy array (updated in place)")
    if weight.dtype not in (np.float32, np.float64):
        raise TypeError(f"weight must be float32 or float64, got {weight.dtype}")
    if not (weight.flags.c_contiguous and weight.flags.aligned and weight.flags.writeable):
        raise ValueError("weight must be C-contiguous, aligned and writeable")
    arr, _ = _h(h, weight.shape[1], weight.dtype)
    t = _targets(targets, arr.shape[0])
    loss = check_choice(loss, "loss", LOSSES)
    lr_v, wd_v = _float_arg(lr, "lr", 0.0), _float_arg(weight_decay, "weight_decay", 0.0)
    if lr_v * wd_v >= 1.0:
        raise ValueError("lr * weight_decay must be < 1")
    grad = np.empty_like(arr)
    value = _factored.dense_step(
        weight, arr, t, _KIND[loss], _float_arg(a, "a", 0.0), _float_arg(b, "b"),
        _float_arg(eps, "eps", 0.0), lr_v, wd_v, grad,
    )  # fmt: skip
    return float(value), grad
