"""Long-double NumPy references for softzo.losses, written from the API contract alone: every
loss returns (value, analytic gradient), with PyTorch's semantics where the contract names them.

Everything is computed in np.longdouble (80-bit on x86-64) from the exact input values, so the
references are far more accurate than the float32/float64 results they are compared with.
"""

import numpy as np
from reference import ref_logsumexp, ref_softmax
from scipy.special import ndtr

WIDE = np.longdouble


def _wide(x):
    return np.asarray(x).astype(WIDE)


def _hard_target(target, n):
    t = np.asarray(target).astype(np.int64)
    assert t.shape == (n,)
    return t


def _onehot(t, v):
    out = np.zeros((len(t), v), WIDE)
    out[np.arange(len(t)), t] = 1
    return out


def _reduce(rows, grad_rows, reduction, denom=None):
    """Reduces per-row losses and scales the per-row gradient to match (the gradient of
    reduction="none" is the gradient of the sum of the rows)."""
    if reduction == "none":
        return rows, grad_rows
    if reduction == "sum":
        return rows.sum(), grad_rows
    if reduction == "mean":
        denom = WIDE(len(rows)) if denom is None else WIDE(denom)
        with np.errstate(invalid="ignore", divide="ignore"):
            return rows.sum() / denom, grad_rows / denom
    raise ValueError(reduction)


def _bad_rows(x):
    """Rows PyTorch turns into NaN: a NaN or +inf anywhere, or nothing but -inf."""
    return np.isnan(x).any(-1) | np.isposinf(x).any(-1) | np.isneginf(x).all(-1)


# ---------------------------------------------------------------- cross-entropy


def _ce_coefficients(x, target, weight, ignore_index, label_smoothing):
    """Coefficients c_ij of -log p_j in each row loss, the kept (non-ignored) rows, and the
    "mean" denominators of the CE part and of the lse^2 part."""
    n, v = x.shape
    w = np.ones(v, WIDE) if weight is None else _wide(weight)
    eps = WIDE(label_smoothing)
    target = np.asarray(target)
    if target.dtype.kind == "f":
        assert target.shape == (n, v)
        coef = w * ((1 - eps) * _wide(target) + eps / v)
        return coef, np.ones(n, bool), n, n  # torch divides soft-target losses by N
    t = _hard_target(target, n)
    keep = t != ignore_index
    safe = np.where(keep, t, 0)
    coef = np.zeros((n, v), WIDE)
    if eps:
        coef += eps / v * w
    coef[np.arange(n), safe] += (1 - eps) * w[safe]
    coef[~keep] = 0
    return coef, keep, w[safe][keep].sum(), keep.sum()  # torch's weighted mean


def ref_cross_entropy(
    logits,
    target,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    lse_square_scale=0.0,
    reduction="mean",
):
    """(loss, grad, lse) of softzo.losses.cross_entropy, in long double.

    Every row loss is a weighted sum of -log p_j = lse - x_j with coefficients c_ij:
      hard: c_ij = (1-eps) w_t [j == t] + (eps/V) w_j  (0 for ignored rows)
      soft: c_ij = w_j ((1-eps) t_ij + eps/V)
    so that d(row)/dx_k = p_k sum_j c_ij - c_ik; lambda lse^2 adds 2 lambda lse p_k.
    """
    x = _wide(logits)
    lam = WIDE(lse_square_scale)
    coef, keep, ce_denom, lse_denom = _ce_coefficients(
        x, target, weight, ignore_index, label_smoothing
    )
    lse = ref_logsumexp(x)
    p = ref_softmax(x)
    with np.errstate(invalid="ignore", over="ignore"):
        nlogp = lse[:, None] - x  # +inf for masked (-inf) classes
        # A zero coefficient contributes nothing, even against a masked class.
        rows = np.where(coef == 0, 0, coef * nlogp).sum(-1)
        grad = p * coef.sum(-1, keepdims=True) - coef
    rows[~keep] = 0
    grad[~keep] = 0
    bad = keep & _bad_rows(x)
    rows[bad] = np.nan
    grad[bad] = np.nan

    if reduction == "mean":
        loss, grad = _reduce(rows, grad, "mean", ce_denom)
    else:
        loss, grad = _reduce(rows, grad, reduction)
    if lam:
        with np.errstate(invalid="ignore"):
            z_rows = np.where(keep, lam * lse * lse, 0)
            z_grad = np.where(keep[:, None], 2 * lam * lse[:, None] * p, 0)
        z_loss, z_grad = _reduce(z_rows, z_grad, reduction, lse_denom)
        loss = loss + z_loss
        grad = grad + z_grad
    grad[~keep] = 0  # ignored rows stay exactly 0 even when every row is ignored
    return loss, grad, lse


def ref_cross_entropy_scales(
    logits,
    target,
    weight=None,
    ignore_index=-100,
    label_smoothing=0.0,
    lse_square_scale=0.0,
    reduction="mean",
):
    """(loss scale, gradient scale): the size of the terms the loss and its gradient are made
    of, after the reduction. Rounding errors are relative to these, not to the results, which
    can cancel to 0 (V = 1, or p_t = 1): a row loss sums c_ij (lse_i - x_ij) + lambda lse_i^2,
    a gradient row p_k sum_j c_ij - c_ik + 2 lambda lse_i p_k."""
    x = _wide(logits)
    coef, keep, ce_denom, lse_denom = _ce_coefficients(
        x, target, weight, ignore_index, label_smoothing
    )
    lam = abs(float(lse_square_scale))
    with np.errstate(invalid="ignore", over="ignore"):
        lse = np.abs(ref_logsumexp(x))
        big = np.where(np.isfinite(x), np.abs(x), 0).max(-1, initial=0)
        loss_ce = coef.sum(-1) * (lse + big)
        grad_ce = 2 * coef.sum(-1)
        loss_sq = lam * lse * lse * keep
        grad_sq = 2 * lam * lse * keep
    if reduction == "mean" and lse_denom:
        loss_ce, grad_ce = loss_ce / ce_denom, grad_ce / ce_denom
        loss_sq, grad_sq = loss_sq / lse_denom, grad_sq / lse_denom
    loss_rows, grad_rows = loss_ce + loss_sq, grad_ce + grad_sq
    loss_rows = loss_rows[np.isfinite(loss_rows)]
    grad_rows = grad_rows[np.isfinite(grad_rows)]
    loss = loss_rows.max(initial=0) if reduction == "none" else loss_rows.sum()
    return float(loss), float(grad_rows.max(initial=0))


# ---------------------------------------------------------------- Z-loss


def ref_z_loss(outputs, target, a=1.0, b=0.0, reduction="mean"):
    """de Brebisson & Vincent's Z-loss softplus(a (b - z_c)) / a on z-scored outputs."""
    o = _wide(outputs)
    n, d = o.shape
    t = _hard_target(target, n)
    a, b = WIDE(a), WIDE(b)
    centred = o - o.mean(-1, keepdims=True)
    sigma = np.sqrt((centred * centred).mean(-1, keepdims=True))
    flat = sigma == 0  # every output equal: z_c := 0 and the gradient is 0
    z = np.where(flat, 0, centred / np.where(flat, 1, sigma))
    zc = z[np.arange(n), t]
    arg = a * (b - zc)
    rows = np.logaddexp(WIDE(0), arg) / a
    with np.errstate(over="ignore"):
        g = -1 / (1 + np.exp(-arg))  # -sigmoid(arg)
    grad = (g[:, None] / np.where(flat, 1, sigma)) * (_onehot(t, d) - (1 + zc[:, None] * z) / d)
    grad[flat[:, 0]] = 0
    return _reduce(rows, grad, reduction)


# ---------------------------------------------------------------- softmax alternatives


def _along(fn, x, axis):
    xl = np.moveaxis(_wide(x), axis, -1)
    return np.moveaxis(fn(xl), -1, axis)


def ref_spherical_softmax(o, axis=-1, eps=1e-6):
    def fn(x):
        s = x * x + WIDE(eps)
        return s / s.sum(-1, keepdims=True)

    return _along(fn, o, axis)


def ref_taylor_softmax(o, axis=-1):
    def fn(x):
        s = 1 + x + x * x / 2
        return s / s.sum(-1, keepdims=True)

    return _along(fn, o, axis)


def _stable_s(x):
    """s(x) = x + 1 (x >= 0), 1 / (1 - x) (x < 0), and its derivative 1 or s(x)^2."""
    neg = x < 0
    s = np.where(neg, 1 / (1 - np.where(neg, x, 0)), x + 1)
    return s, np.where(neg, s * s, 1)


def ref_stablemax(x, axis=-1):
    def fn(xl):
        s, _ = _stable_s(xl)
        return s / s.sum(-1, keepdims=True)

    return _along(fn, x, axis)


def ref_stablemax_cross_entropy(logits, target, reduction="mean"):
    x = _wide(logits)
    n = x.shape[0]
    t = _hard_target(target, n)
    s, ds = _stable_s(x)
    total = s.sum(-1)
    r = np.arange(n)
    rows = np.log(total) - np.log(s[r, t])
    grad = ds / total[:, None]
    grad[r, t] -= ds[r, t] / s[r, t]
    return _reduce(rows, grad, reduction)


# ---------------------------------------------------------------- spherical family


def ref_spherical_loss(o, target, kind="log_spherical", eps=1e-6, reduction="mean"):
    x = _wide(o)
    n, d = x.shape
    t = _hard_target(target, n)
    r = np.arange(n)
    xc = x[r, t]
    q = (x * x).sum(-1)
    eps = WIDE(eps)
    if kind == "log_spherical":
        rows = -np.log(xc * xc + eps) + np.log(q + d * eps)
        grad = 2 * x / (q + d * eps)[:, None]
        grad[r, t] -= 2 * xc / (xc * xc + eps)
    elif kind == "log_taylor":
        s = x.sum(-1)
        num = 1 + xc + xc * xc / 2
        den = d + s + q / 2
        rows = -np.log(num) + np.log(den)
        grad = (1 + x) / den[:, None]
        grad[r, t] -= (1 + xc) / num
    elif kind == "mse":
        rows = q - 2 * xc + 1
        grad = 2 * x - 2 * _onehot(t, d)
    else:
        raise ValueError(kind)
    return _reduce(rows, grad, reduction)


# ---------------------------------------------------------------- comp-sum


def ref_comp_sum_loss(logits, target, tau, reduction="mean"):
    """Phi^tau(1 / p_t) with u^(1-tau) = exp((1-tau)(lse - x_t)), so no 1/p_t overflow."""
    x = _wide(logits)
    n, v = x.shape
    t = _hard_target(target, n)
    tau = WIDE(tau)
    nll = ref_logsumexp(x) - x[np.arange(n), t]  # -log p_t
    if tau == 1:
        rows = nll
    else:
        rows = np.expm1((1 - tau) * nll) / (1 - tau)
    coef = np.exp((1 - tau) * nll)  # p_t^(tau - 1)
    grad = coef[:, None] * (ref_softmax(x) - _onehot(t, v))
    return _reduce(rows, grad, reduction)


# ---------------------------------------------------------------- distillation


def ref_kl_div(student_logits, teacher_logits, temperature=1.0, reduction="batchmean"):
    """Per-row KL(softmax(t/T) || softmax(s/T)); zero teacher probabilities count 0."""
    temp = WIDE(temperature)
    s = _wide(student_logits) / temp
    t = _wide(teacher_logits) / temp
    n, v = s.shape
    log_ps = s - ref_logsumexp(s)[:, None]
    log_pt = t - ref_logsumexp(t)[:, None]
    pt = np.exp(log_pt)
    with np.errstate(invalid="ignore"):
        rows = np.where(pt == 0, 0, pt * (log_pt - log_ps)).sum(-1)
    grad = (np.exp(log_ps) - pt) / temp
    if reduction == "batchmean":
        return _reduce(rows, grad, "mean", n)
    if reduction == "mean":
        return _reduce(rows, grad, "mean", n * v)
    return _reduce(rows, grad, reduction)


# ---------------------------------------------------------------- HL-Gauss


def ref_hl_gauss_targets(values, vmin, vmax, num_bins, sigma=None):
    """Float64 HL-Gauss bin probabilities, each bin's mass taken on the side of the Gaussian
    where the difference of normal CDFs does not cancel."""
    v = np.clip(np.asarray(values, np.float64), vmin, vmax)
    edges = np.linspace(vmin, vmax, num_bins + 1)
    if sigma is None:
        sigma = 0.75 * (vmax - vmin) / num_bins
    z = (edges[None, :] - v[:, None]) / sigma
    lo, hi = z[:, :-1], z[:, 1:]
    right = lo >= 0  # both edges above v: Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi)
    mass = np.where(right, ndtr(-lo) - ndtr(-hi), ndtr(hi) - ndtr(lo))
    total = 1 - ndtr(-z[:, -1]) - ndtr(z[:, 0])  # Phi(zmax) - Phi(zmin), zmin <= 0 <= zmax
    return mass / total[:, None]


def ref_hl_gauss_values(probs, vmin, vmax):
    p = np.asarray(probs, np.float64)
    edges = np.linspace(vmin, vmax, p.shape[-1] + 1)
    return p @ ((edges[:-1] + edges[1:]) / 2)
