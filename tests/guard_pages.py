"""Guard-page runs of every kernel: arrays placed flush against PROT_NONE pages.

Each array the kernels read or write lives in its own mapping [PROT_NONE page][data][PROT_NONE
page], placed so that its last byte ends a page ("end") or its first byte starts one ("start").
A kernel that touches one element past the end, or one before the start, then faults at once
instead of reading a neighbour's bytes. Every result is also compared bitwise with the same call
on ordinary heap copies, so a masked tail that lets outside bytes in shows up as well.

Run as a script (by tests/test_guard_pages.py, in a child process, so that a fault is reported
as a failed test): ``python tests/guard_pages.py FAMILY ISA DTYPE`` runs every case of one
kernel family on one ISA and dtype, printing each case before it starts, so the last line
printed names the case that crashed. SOFTZO_GUARD_LENGTHS=quick runs fewer lengths (see
lengths()). ``--expect-emulated`` fails unless the ISA is the SIMDe
build (the parent sets SOFTZO_EMULATE_AVX512=1 for it on AVX-512 machines).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

import numpy as np

PAGE = mmap.PAGESIZE
FAMILIES = ("softmax", "losses", "zo", "factored", "half_softmax")
# The element types each family runs on (the half softmax kernels take only half rows).
DTYPES = {f: ("float32", "float64") for f in FAMILIES} | {"half_softmax": ("float16", "bfloat16")}
_PROT_NONE = 0
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def lengths(tile: int, quick: bool = False) -> list[int]:
    """1 ... 3 tiles (every tail of every unroll) and one vector more, then each side of the
    block sizes the kernels and ops use: fold blocks (128-2048 elements), 8 KiB blocks, the mask
    block (8192), the 2^16 task/chunk size and the 2^18 split threshold. ``quick`` (the
    sanitizer job) keeps the tails, three sides of four blocks and one split row."""
    small = set(range(1, 3 * tile + 17))
    if quick:
        around = {b + d for b in (512, 2048, 8192) for d in (-1, 0, 1)}
        return sorted(small | around | {2**18 + 2**16 + 13})
    blocks = (512, 1024, 2048, 4096, 8192, 16384)
    around = {b + d for b in blocks for d in (-1, 0, 1, 7, 15)}
    big = {2**16 - 1, 2**16, 2**16 + 1, 2**18 - 1, 2**18, 2**18 + 1, 2**18 + 2**16 + 13}
    return sorted(small | around | big)


class GuardedArena:
    """One mapping per array role, reused for every length: [guard][data pages][guard]."""

    def __init__(self, capacity_bytes: int) -> None:
        self._pages = -(-capacity_bytes // PAGE)
        self._map = mmap.mmap(-1, (self._pages + 2) * PAGE)
        # The mapping's address: a ctypes view of its first byte (kept alive with the map).
        self._anchor = ctypes.c_char.from_buffer(self._map)
        base = ctypes.addressof(self._anchor)
        for page in (0, self._pages + 1):
            if _libc.mprotect(base + page * PAGE, PAGE, _PROT_NONE) != 0:
                raise OSError(ctypes.get_errno(), "mprotect failed")

    def array(self, shape: tuple[int, ...], dtype: np.dtype, at: str) -> np.ndarray:
        """A C-contiguous array flush against the trailing ("end") or leading ("start") guard."""
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if nbytes > self._pages * PAGE:
            raise ValueError("array larger than the arena")
        offset = PAGE if at == "start" else (self._pages + 1) * PAGE - nbytes
        return np.ndarray(shape, dtype=dtype, buffer=self._map, offset=offset)


class Placer:
    """Hands out guarded arrays by role, each role in its own arena, and heap twins of them."""

    def __init__(self, capacity_bytes: int, at: str) -> None:
        self.capacity, self.at = capacity_bytes, at
        self._arenas: dict[str, GuardedArena] = {}

    def put(self, role: str, values: np.ndarray) -> np.ndarray:
        """A guarded copy of values under ``role`` (each role owns its arena)."""
        if role not in self._arenas:
            self._arenas[role] = GuardedArena(self.capacity)
        a = self._arenas[role].array(values.shape, values.dtype, self.at)
        a[...] = values
        return a


def assert_same(got, want, what: str) -> None:
    """Bitwise equality (NaN equal to NaN) of a guarded result and its heap twin's."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or got.tobytes() != want.tobytes():
        bad = np.flatnonzero(~((got == want) | (np.isnan(got) & np.isnan(want))).ravel())
        raise AssertionError(f"{what}: differs from the heap run at flat indices {bad[:8]}")


# ---- the cases: each calls the public API (or a _core entry of the optimisers) twice, on
# guarded arrays and on heap copies, and compares -------------------------------------------


def softmax_cases(n, dt, place, rng):
    import softzo

    x = rng.normal(0, 3, n).astype(dt)
    # The exact scalar path: a 1e30 entry puts the row max outside the kernels' range; and a
    # -inf entry, which the kernels map to 0.
    special = x.copy()
    special[-1] = 1e30
    special[0] = -np.inf
    for algo in softzo.ALGORITHMS:
        for fn in (softzo.softmax, softzo.log_softmax):
            yield (
                f"{fn.__name__}/{algo}",
                lambda fn=fn, a=algo: _pair(
                    lambda xs, os: fn(xs, out=os, algorithm=a), place, {"x": x, "out": x}
                ),
            )
        yield (
            f"logsumexp/{algo}",
            lambda a=algo: _pair(lambda xs: softzo.logsumexp(xs, algorithm=a), place, {"x": x}),
        )
        yield (
            f"softmax/{algo}/in_place",
            lambda a=algo: _pair(
                lambda xs: softzo.softmax(xs, out=xs, algorithm=a) + 0, place, {"x": x}
            ),
        )
        yield (
            f"softmax/{algo}/special_row",
            lambda a=algo: _pair(lambda xs: softzo.softmax(xs, algorithm=a), place, {"x": special}),
        )
        yield (
            f"log_softmax/{algo}/special_row",
            lambda a=algo: _pair(
                lambda xs: softzo.log_softmax(xs, algorithm=a), place, {"x": special}
            ),
        )
    if n <= 4096:
        # Two rows, and the strided path: the class axis first.
        x2 = rng.normal(0, 3, (2, n)).astype(dt)
        yield "softmax/rows", lambda: _pair(lambda xs: softzo.softmax(xs), place, {"x": x2})
        xt = np.ascontiguousarray(x2.T)
        yield (
            "softmax/axis0",
            lambda: _pair(lambda xs: softzo.softmax(xs, axis=0), place, {"x": xt}),
        )
        yield (
            "logsumexp/axis0",
            lambda: _pair(lambda xs: softzo.logsumexp(xs, axis=0), place, {"x": xt}),
        )

    # The raw exp kernel (the ULP sweep's hook), on the ISA in use.
    def vexp(xs, os):
        from softzo import _testing

        _testing.vexp(xs, os, softzo.info()["isa"])
        return os + 0

    yield "vexp", lambda: _pair(vexp, place, {"x": x, "out": x})


def loss_cases(n, dt, place, rng):
    from softzo import losses

    rows = 2 if n <= 2**16 else 1
    logits = rng.normal(0, 3, (rows, n)).astype(dt)
    target = rng.integers(0, n, rows)
    target_ignored = target.copy()
    target_ignored[0] = -100
    soft = rng.random((rows, n)).astype(dt)
    soft /= soft.sum(1, keepdims=True)
    weight = rng.random(n).astype(dt) + dt(0.5)
    arrays = {"logits": logits, "target": target}

    def ce(**kw):
        def call(lg, tg, gr=None):
            return losses.cross_entropy(lg, tg, return_grad=True, grad_out=gr, **kw)

        return call

    yield "cross_entropy", lambda: _pair(ce(), place, {**arrays, "grad": logits})
    yield "cross_entropy/none", lambda: _pair(ce(reduction="none"), place, arrays)
    yield (
        "cross_entropy/in_place",
        lambda: _pair(
            lambda lg, tg: (losses.cross_entropy(lg, tg, grad_out=lg)[0], lg + 0), place, arrays
        ),
    )
    yield "cross_entropy/options", lambda: _pair(
        lambda lg, tg, w: losses.cross_entropy(
            lg, tg, weight=w, label_smoothing=0.1, lse_square_scale=1e-4, return_grad=True,
            return_lse=True,
        ),
        place,
        {"logits": logits, "target": target_ignored, "weight": weight},
    )  # fmt: skip
    yield (
        "cross_entropy/soft",
        lambda: _pair(
            lambda lg, st, w: losses.cross_entropy(lg, st, weight=w, return_grad=True),
            place,
            {"logits": logits, "soft": soft, "weight": weight},
        ),
    )
    yield (
        "comp_sum_loss",
        lambda: _pair(
            lambda lg, tg: losses.comp_sum_loss(lg, tg, 0.5, return_grad=True), place, arrays
        ),
    )
    yield (
        "kl_div",
        lambda: _pair(
            lambda s, t: losses.kl_div(s, t, temperature=2.0, return_grad=True, reduction="none"),
            place,
            {"student": logits, "teacher": soft},
        ),
    )
    yield (
        "z_loss",
        lambda: _pair(
            lambda o, tg: losses.z_loss(o, tg, return_grad=True, reduction="none"), place, arrays
        ),
    )
    for kind in ("log_spherical", "log_taylor", "mse"):
        yield (
            f"spherical_loss/{kind}",
            lambda k=kind: _pair(
                lambda o, tg: losses.spherical_loss(o, tg, kind=k, return_grad=True), place, arrays
            ),
        )
    for fn in (losses.spherical_softmax, losses.taylor_softmax, losses.stablemax):
        yield fn.__name__, lambda fn=fn: _pair(fn, place, {"x": logits})
    yield (
        "stablemax_cross_entropy",
        lambda: _pair(
            lambda lg, tg: losses.stablemax_cross_entropy(lg, tg, return_grad=True), place, arrays
        ),
    )
    if n <= 4096:
        values = rng.uniform(-1, 2, n).astype(dt)
        yield (
            "hl_gauss_targets",
            lambda: _pair(
                lambda v: losses.hl_gauss_targets(v, 0.0, 1.0, 7), place, {"values": values}
            ),
        )


def zo_cases(n, dt, place, rng):
    from softzo import _core

    theta = rng.normal(0, 1, n).astype(dt)
    sigma = rng.uniform(0.5, 2, n).astype(dt)
    words = -(-n // 32)
    mask = rng.integers(0, 2**32, words, dtype=np.uint32)
    # An offset that starts mid Philox block (4 elements) and mid Rademacher block (128), for
    # every tail; beyond three tiles that offset alone.
    for offset in (0, 127) if n <= 400 else (127,):
        # Past the blocks, the chunked rows' last tails are short tails again (covered above by
        # every distribution); Rademacher z keeps the 2^18-element rows cheap on the scalar ISA.
        for dist in (0, 1, 2) if n <= 20000 else (0,):
            tag = f"offset={offset}/dist={dist}"
            key = (7, 3, 1, dist, offset)

            def fill(out, key=key):
                _core._zo_fill(*key, out, 0)
                return out + 0

            yield f"zo_fill/{tag}", lambda f=fill: _pair(f, place, {"out": theta})

            def perturb(t, key=key):
                _core._zo_restore_update(*key, t, 1e-3, 0.0, 0.0, 0.0, None, -1.0, 0)
                return t + 0

            def update(t, key=key):
                _core._zo_restore_update(*key, t, 1e-3, 1e-2, 0.5, 0.1, None, -1.0, 0)
                return t + 0

            def perturb_build_mask(t, m, key=key):
                _core._zo_restore_update(*key, t, 1e-3, 0.0, 0.0, 0.0, m, 0.8, 0)
                return np.concatenate([t.view(np.uint8), m.view(np.uint8)])

            def update_mask(t, m, key=key):
                _core._zo_restore_update(*key, t, 1e-3, 1e-2, 0.5, 0.1, m, -1.0, 0)
                return t + 0

            def hizoo(t, s, key=key):
                _core._zo_hizoo(*key, t, s, 1e-3, False, 0, 0, 0, 0, 0, 0)
                _core._zo_hizoo(*key, t, s, -1e-3, True, 1e-2, 0.5, 0.1, 0.9, 0.1, 0)
                return np.concatenate([t, s])

            def dot(v, key=key):
                return _core._zo_dot(*key, v, 0)

            yield f"zo_perturb/{tag}", lambda f=perturb: _pair(f, place, {"theta": theta})
            yield f"zo_restore_update/{tag}", lambda f=update: _pair(f, place, {"theta": theta})
            yield (
                f"zo_mask_build/{tag}",
                lambda f=perturb_build_mask: _pair(f, place, {"theta": theta, "mask": mask}),
            )
            yield (
                f"zo_update_mask/{tag}",
                lambda f=update_mask: _pair(f, place, {"theta": theta, "mask": mask}),
            )
            yield (
                f"zo_hizoo/{tag}",
                lambda f=hizoo: _pair(f, place, {"theta": theta, "sigma": sigma}),
            )
            yield f"zo_dot/{tag}", lambda f=dot: _pair(f, place, {"v": theta})
    if n <= 40 or n in (127, 128, 129, 8193, 2**16 + 1):
        # The optimisers end to end, on a guarded parameter (the engine works in place on it).
        from softzo import optim

        for name, make in (
            ("MeZO", lambda p: optim.MeZO([p], lr=1e-3, seed=3)),
            ("MeZO/sparse", lambda p: optim.MeZO([p], lr=1e-3, seed=3, sparsity=0.5)),
            (
                "MeZO/subset",
                lambda p: optim.MeZO([p], lr=1e-3, seed=3, subset={"fraction": 0.5, "block": 64}),
            ),
            ("HiZOO", lambda p: optim.HiZOO([p], lr=1e-3, seed=3)),
            ("RGE", lambda p: optim.RGE([p], lr=1e-3, seed=3)),
        ):

            def steps(p, make=make):
                opt = make(p)
                for _ in range(2):
                    opt.step(lambda: float(np.sum(p.astype(np.float64) ** 2)))
                return p + 0

            yield f"optim/{name}", lambda f=steps: _pair(f, place, {"param": theta})


def factored_cases(n, dt, place, rng):
    from softzo import spherical

    # n is the hidden size here (every tail up to 33, then around the vector tiles); a few
    # class counts, one past the 1024-row blocks of V.
    if n > 33 and n not in (63, 64, 65, 127, 128, 129):
        return
    for classes in (1, 5, 1025) if n in (1, 16, 17, 64, 129) else (1, 5):
        m = 3
        h = rng.normal(0, 1, (m, n)).astype(dt)
        targets = rng.integers(0, classes, m)
        w0 = rng.uniform(-0.5, 0.5, (classes, n)).astype(dt)
        for loss in spherical.LOSSES:

            def step(hs, ts, loss=loss, classes=classes, w0=w0):
                layer = spherical.FactoredOutputLayer(
                    classes, n, loss=loss, lr=0.01, init=w0, dtype=dt
                )
                value, grad = layer.step(hs, ts)
                value2 = layer.evaluate(hs, ts)
                stats = layer.forward_stats(hs, ts)
                return np.concatenate([[value, value2], grad.ravel(), *stats])

            def dense(hs, ts, w, loss=loss):
                value, grad = spherical.dense_step(w, hs, ts, loss=loss, lr=0.01)
                return np.concatenate([[value], grad.ravel(), w.ravel()])

            tag = f"classes={classes}/{loss}"
            arrays = {"h": h, "targets": targets}
            yield f"factored/{tag}", lambda f=step, a=arrays: _pair(f, place, a)
            yield (
                f"dense_step/{tag}",
                lambda f=dense, a={**arrays, "weight": w0}: _pair(f, place, a),
            )


def half_softmax_cases(n, dt, place, rng):
    import softzo

    x = (rng.normal(0, 3, n) * 3).astype(dt)
    special = x.copy()  # a -inf entry (the flushing sweep) and a NaN row (the exact path)
    special[0] = -np.inf
    nan_row = x.copy()
    nan_row[-1] = np.nan
    yield (
        "softmax",
        lambda: _pair(lambda xs, os: softzo.softmax(xs, out=os), place, {"x": x, "out": x}),
    )
    yield (
        "softmax/in_place",
        lambda: _pair(lambda xs: softzo.softmax(xs, out=xs) + 0, place, {"x": x}),
    )
    for name, row in (("flushing_row", special), ("nan_row", nan_row)):
        yield f"softmax/{name}", lambda r=row: _pair(softzo.softmax, place, {"x": r})
    if n <= 4096:  # three rows through the pipeline, and the strided (staged) path
        x3 = (rng.normal(0, 3, (3, n)) * 3).astype(dt)
        x3[1, 0] = np.nan
        yield "softmax/rows", lambda: _pair(softzo.softmax, place, {"x": x3})
        xt = np.ascontiguousarray(x3.T)
        yield (
            "softmax/strided",
            lambda: _pair(lambda xs: softzo.softmax(xs, axis=0), place, {"x": xt}),
        )


CASES = {
    "softmax": softmax_cases,
    "losses": loss_cases,
    "zo": zo_cases,
    "factored": factored_cases,
    "half_softmax": half_softmax_cases,
}
# The widest unrolled loop of each family, in elements: 4 AVX-512 float32 vectors for the
# softmax and loss kernels, a 128-element Rademacher block for the zo kernels (the factored
# layer's hidden sizes stop at 129 anyway).
TILES = {"softmax": 64, "losses": 64, "zo": 128, "factored": 64, "half_softmax": 64}


def _pair(fn, place: Placer, arrays: dict[str, np.ndarray]):
    """fn on guarded copies of arrays, then on heap copies; the two results must agree."""
    guarded = [place.put(role, a) for role, a in arrays.items()]
    got = _flatten(fn(*guarded))
    want = _flatten(fn(*[np.array(a) for a in arrays.values()]))
    assert_same(got, want, "result")


def _flatten(result) -> np.ndarray:
    parts = result if isinstance(result, tuple) else (result,)
    return np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in parts])


def main(family: str, isa: str, dtype: str, *flags: str) -> int:
    import softzo

    if "--expect-emulated" in flags and isa not in softzo.info()["isas_emulated"]:
        print(f"{isa} is not the emulated build here: {softzo.info()}", file=sys.stderr)
        return 2
    with softzo.using_isa(isa):
        return _run_cases(family, isa, dtype)


def _run_cases(family: str, isa: str, dtype: str) -> int:
    dt = np.dtype(dtype).type if dtype != "bfloat16" else __import__("ml_dtypes").bfloat16
    rng = np.random.default_rng(20240611)
    count = 0
    ns = lengths(TILES[family], quick=os.environ.get("SOFTZO_GUARD_LENGTHS") == "quick")
    capacity = 2 * (max(ns) + 2**16) * 8  # two rows of the largest length, float64
    for at in ("end", "start"):
        place = Placer(capacity, at)
        for n in ns:
            for name, run in CASES[family](n, dt, place, rng):
                print(f"CASE {family} {isa} {dtype} n={n} at={at} {name}", flush=True)
                run()
                count += 1
    print(f"DONE {count} cases", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
