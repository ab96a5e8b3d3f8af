"""Next-word prediction on the Python standard library's text: factored Z-loss vs dense softmax.

``python -m bench.nextword [--epochs E] [--max-tokens N] [--eval-tokens N] [--quick]``

A real task on real text that nobody here wrote, built offline and on the fly (nothing of it is
committed): the words of every ``.py`` file of the running interpreter's standard library
(``sysconfig.get_paths()["stdlib"]``, without ``site-packages``), code, docstrings and comments
alike.

Data. Each file is decoded with the encoding ``tokenize.detect_encoding`` finds (undecodable bytes
replaced), backslash escapes such as ``\\n`` or ``\\x41`` are blanked so that ``"\\nfoo"`` gives
``foo`` rather than ``nfoo``, and its words are the maximal runs of ``\\w`` (Unicode letters,
digits, underscore): identifiers, keywords, numbers, and the words of strings and comments;
punctuation and operators are dropped and case is kept (``Path`` and ``path`` are different names
in code). A file goes to the test split when the first byte of the SHA-256 of its path relative to
the stdlib root (``/``-separated) is below 26 (about 10% of the files), to the training split
otherwise. The vocabulary is every distinct word of the training split, ordered by descending count
then by the word, plus ``<unk>`` (test words never seen in training, which count as errors: no
model predicts ``<unk>``); a context that runs past the start of its file is padded with ``<s>``
(an input only, never a class). Contexts never cross files.

Model. The previous ``--context`` words are embedded (``nn.Embedding(sparse=True)``), concatenated
and go through ``Linear -> ReLU -> Linear -> tanh`` to a hidden vector ``h`` of ``--dim``. Two
variants share that body (same initial weights from the same seed, same batches in the same
order, the same optimisers: ``SparseAdam`` for the embedding, ``Adam`` for the two linear layers)
and differ only in the output layer, both of the form ``o = W h`` (no bias) over every class:

- dense: ``nn.Linear(dim, V, bias=False)`` and ``F.cross_entropy``, its weight trained by
  ``--dense-opt`` at ``--dense-lr`` (``adam``, the default, or plain ``sgd``);
- factored: ``softzo.torch.FactoredOutputHead(loss="z_loss")``, the exact factored update of
  Vincent et al. (2015) with the Z-loss of de Brébisson & Vincent (2016): its backward pass returns
  the gradient for ``h`` and applies its own SGD step (``--factored-lr``; Z-loss
  softplus(a (b - z_c)) / a with ``--zloss-a``, ``--zloss-b``) in O(dim^2) per example, whatever V
  is. It starts from the dense variant's initial W (``init=``). Its OpenBLAS runs on
  ``--blas-threads`` threads (default 1: its matrices are dim-sized, and a second OpenBLAS thread
  competing with torch's for 2 shared cores made steps up to 100x slower here).

Each epoch trains on ``--max-tokens`` target words: consecutive disjoint slices of one fixed
shuffle of every training position (so no word is seen twice until the shuffle is used up, and
both variants see exactly the same batches). Wall time per epoch counts training only (batch
gathering, forward, backward, optimiser steps); after each epoch, top-1 and top-10 accuracy are
measured on a fixed random sample of ``--eval-tokens`` test positions (dense: ``torch.topk`` of
the logits; factored: ``layer.topk``), ``<unk>`` targets included as errors. With
``--equal-time`` (the default) the factored variant then keeps training on further slices until
its training time reaches the dense variant's total, evaluated about 4 times on the way. Writes
``nextword.md`` and ``nextword.png`` (accuracy against cumulative training time) to ``--out``
(default ``bench/results`` of the checkout; ``--quick`` writes only with ``--out``).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import io
import os
import platform
import re
import sys
import sysconfig
import time
import tokenize
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._common import RESULTS, load, provenance, pyplot, write
from ._nextword_model import Config, Epoch, train_variant

WORD_RE = re.compile(r"\w+")
ESCAPE_RE = re.compile(
    r"\\(?:x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[0-7]{1,3}|[abfnrtv])"
)
TEST_BYTE_BELOW = 26  # first SHA-256 byte of the relative path below this: test split (~10%)
UNK, BOS = "<unk>", "<s>"


# --------------------------------------------------------------------------------------- data


def stdlib_files(root: str | os.PathLike[str]) -> list[str]:
    """The ``.py`` files under ``root`` (not site-packages or __pycache__), as sorted ``/`` paths."""
    root = os.fspath(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("site-packages", "__pycache__"))
        for name in filenames:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, name), root)
                out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def decode_source(data: bytes) -> str:
    """Source bytes as text, in the encoding its coding cookie or BOM names (UTF-8 otherwise)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError:
        encoding = "utf-8"
    try:
        return data.decode(encoding, errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def words(text: str) -> list[str]:
    """The words of a source text: identifiers, keywords, numbers, words of strings and comments
    (maximal runs of ``\\w`` once backslash escapes are blanked)."""
    return WORD_RE.findall(ESCAPE_RE.sub(" ", text))


def is_test_file(rel_path: str) -> bool:
    """The deterministic split: by the SHA-256 of the file's ``/``-separated relative path."""
    return hashlib.sha256(rel_path.encode("utf-8")).digest()[0] < TEST_BYTE_BELOW


@dataclasses.dataclass
class Split:
    stream: np.ndarray  # int32 ids: per file, `context` <s> pads then the file's word ids
    positions: np.ndarray  # int64 indices into stream of the target words
    files: int
    bytes: int

    @property
    def tokens(self) -> int:
        return int(self.positions.size)


@dataclasses.dataclass
class Corpus:
    root: str
    vocab: list[str]  # class ids 0..V-1; the last is <unk>; <s> (id V) is an input only
    train: Split
    test: Split
    test_oov: int  # test targets that are <unk>
    context: int

    @property
    def num_classes(self) -> int:
        return len(self.vocab)

    @property
    def bos(self) -> int:
        return len(self.vocab)

    def batch(self, split: Split, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(contexts (m, context) int64, targets (m,) int64) of the targets at ``pos``."""
        offs = pos[:, None] + np.arange(-self.context, 0)
        return split.stream[offs].astype(np.int64), split.stream[pos].astype(np.int64)


def build_corpus(root: str | None = None, context: int = 3) -> Corpus:
    """Tokenises the standard library under ``root`` (default: this interpreter's) and splits it."""
    root = root or sysconfig.get_paths()["stdlib"]
    per_file: dict[bool, list[list[str]]] = {False: [], True: []}
    nbytes = {False: 0, True: 0}
    for rel in stdlib_files(root):
        data = Path(root, rel).read_bytes()
        test = is_test_file(rel)
        per_file[test].append(words(decode_source(data)))
        nbytes[test] += len(data)
    counts = collections.Counter(w for f in per_file[False] for w in f)
    vocab = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))] + [UNK]
    index = {w: i for i, w in enumerate(vocab)}
    unk, bos = index[UNK], len(vocab)

    def make(test: bool) -> tuple[Split, int]:
        ids: list[int] = []
        pos: list[int] = []
        oov = 0
        for f in per_file[test]:
            ids.extend([bos] * context)
            start = len(ids)
            for w in f:
                i = index.get(w, unk)
                oov += i == unk
                ids.append(i)
            pos.extend(range(start, len(ids)))
        split = Split(
            np.asarray(ids, dtype=np.int32),
            np.asarray(pos, dtype=np.int64),
            len(per_file[test]),
            nbytes[test],
        )
        return split, oov

    train, _ = make(False)
    test, oov = make(True)
    return Corpus(root, vocab, train, test, oov, context)


# ------------------------------------------------------------------------------------- report

LABELS = {
    "dense": "dense softmax + cross-entropy",
    "factored": "factored Z-loss (softzo)",
}
Runs = dict[str, tuple[list[Epoch], str]]


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.2f}%"


def summary_table(runs: Runs, cfg: Config) -> list[str]:
    """One row per variant over the common epochs, plus the factored variant's equal-time row."""
    rows = [
        "| output layer | epochs x tokens | time per epoch | tokens/s | top-1 | top-10 |",
        "|---|---|---|---|---|---|",
    ]
    for kind, (eps, _) in runs.items():
        common = [e for e in eps if not e.extra]
        t = sum(e.train_s for e in common)
        rows.append(
            f"| {LABELS[kind]} | {len(common)} x {cfg.max_tokens:,} | {t / len(common):.1f} s | "
            f"{common[-1].tokens / t:,.0f} | {_pct(common[-1].top1)} | {_pct(common[-1].top10)} |"
        )
    for kind, (eps, _) in runs.items():
        if eps[-1].extra:
            t = sum(e.train_s for e in eps)
            rows.append(
                f"| {LABELS[kind]}, for the dense variant's training time ({t:.0f} s) "
                f"| {len(eps)} x {cfg.max_tokens:,} | {t / len(eps):.1f} s | "
                f"{eps[-1].tokens / t:,.0f} | {_pct(eps[-1].top1)} | {_pct(eps[-1].top10)} |"
            )
    return rows


def report(corpus: Corpus, cfg: Config, runs: Runs, header: str) -> str:
    tr, te = corpus.train, corpus.test
    lines = [
        header,
        "## Data",
        "",
        (
            f"- source: every `.py` file of `{corpus.root}` (Python {platform.python_version()}),"
            " site-packages excluded; code, docstrings and comments"
        ),
        (
            "- words: maximal runs of `\\w` (identifiers, keywords, numbers, words of strings "
            "and comments) after blanking backslash escapes; case kept; punctuation dropped"
        ),
        (
            f"- split by file (SHA-256 of the relative path, first byte < {TEST_BYTE_BELOW}): "
            f"train {tr.files} files ({tr.bytes / 1e6:.1f} MB), {tr.tokens:,} tokens; "
            f"test {te.files} files ({te.bytes / 1e6:.1f} MB), {te.tokens:,} tokens"
        ),
        (
            f"- vocabulary: {corpus.num_classes:,} classes (every distinct training word, plus "
            f"`<unk>`); test out-of-vocabulary rate {corpus.test_oov / te.tokens:.2%}, so no "
            f"accuracy here can exceed {1 - corpus.test_oov / te.tokens:.2%}"
        ),
        (
            f"- each epoch: {cfg.max_tokens:,} training targets (disjoint slices of one fixed "
            "shuffle of the training positions, the same for both variants); accuracy on a "
            f"fixed sample of {min(cfg.eval_tokens, te.tokens):,} test targets"
        ),
        "",
        "## Model",
        "",
        (
            f"- body: previous {cfg.context} words -> `Embedding({corpus.num_classes + 1}, "
            f"{cfg.emb}, sparse=True)` concatenated -> `Linear({cfg.context * cfg.emb}, "
            f"{cfg.hidden})` -> ReLU -> `Linear({cfg.hidden}, {cfg.dim})` -> tanh = h; "
            f"SparseAdam (embedding) and Adam (linear layers), lr {cfg.lr:g}; seed {cfg.seed}, "
            f"batch {cfg.batch}; torch threads {cfg.threads}, OpenBLAS threads (the factored "
            f"layer's) {cfg.blas_threads}"
        ),
        (
            "- output layer: o = W h, W of shape (V, dim), no bias, both variants starting from "
            "the same W (nn.Linear's default init, drawn after the body's)"
        ),
    ]
    for kind, (_, desc) in runs.items():
        lines.append(f"- {kind}: `{desc}`")
    opt = "Adam" if cfg.dense_opt == "adam" else "plain SGD"
    lines.append(f"- dense output weight trained by {opt}, lr {cfg.dense_lr:g}")
    lines.append(
        "- the defaults (factored lr 2, Z-loss a = 1, b = 30; dense Adam 1e-3) come from a "
        "one-epoch sweep scored on a 4,096-target test sample (factored lr 0.1 to 32 and b 0 to "
        "100: b = 0 left top-1 at the most frequent word's share; dense Adam 1e-3 against SGD "
        "lr 2, Adam the better); there is no separate validation split"
    )
    lines += ["", "## Results", "", *summary_table(runs, cfg), ""]
    lines += [
        (
            "Time per epoch is training only (batch gathering, forward, backward, optimiser "
            "steps); top-1/top-10 are after the last epoch of the row. The equal-time row keeps "
            "training the factored variant on further slices until its training time reaches "
            "the dense variant's total."
        ),
        "",
        "### Per epoch",
        "",
        (
            "| output layer | epoch | tokens seen | train time | cumulative | tokens/s "
            "| mean train loss | top-1 | top-10 | eval time |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, (eps, _) in runs.items():
        cum = 0.0
        for e in eps:
            cum += e.train_s
            if e.extra and not e.evaluated:
                continue
            lines.append(
                f"| {LABELS[kind]} | {e.epoch}{' (extension)' if e.extra else ''} | "
                f"{e.tokens:,} | {e.train_s:.1f} s | {cum:.0f} s | "
                f"{cfg.max_tokens / e.train_s:,.0f} | {e.loss:.4f} | {_pct(e.top1)} | "
                f"{_pct(e.top10)} | {e.eval_s:.1f} s |"
            )
    lines += [
        "",
        (
            "Extension epochs that were not evaluated are left out (their time is in the "
            "cumulative column). The train losses are each variant's own: cross-entropy (nats) "
            "for dense, the Z-loss for factored; they are not comparable with each other. Eval "
            "time: top-10 over the test sample (dense: logits and torch.topk; factored: "
            "layer.topk), O(V dim) per example for both."
        ),
        "",
    ]
    return "\n".join(lines)


def _plot(runs: Runs, path: Path) -> None:
    plt = pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for (kind, (eps, _)), color in zip(runs.items(), ("tab:blue", "tab:orange")):
        t = np.cumsum([e.train_s for e in eps])
        pts = [(ti, e) for ti, e in zip(t, eps) if e.evaluated]
        xs = [ti for ti, _ in pts]
        ax.plot(
            xs, [100 * e.top10 for _, e in pts], "o-", color=color, label=f"{LABELS[kind]}, top-10"
        )
        ax.plot(
            xs, [100 * e.top1 for _, e in pts], "s--", color=color, label=f"{LABELS[kind]}, top-1"
        )
    ax.set_xscale("log")
    ax.set_xlabel("cumulative training wall time (s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Next word of the Python standard library's text")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _limit_blas_threads(n: int) -> Any:
    """Caps OpenBLAS (the factored layer's BLAS; torch's own GEMMs are not affected)."""
    os.environ["OPENBLAS_NUM_THREADS"] = str(n)  # read if OpenBLAS is not loaded yet
    try:
        from softzo import spherical  # noqa: F401  (loads the layer's OpenBLAS, to cap it)
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=n, user_api="blas")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.nextword", description=__doc__.split("\n")[0]
    )
    d = Config()
    parser.add_argument("--epochs", type=int, default=None, help=f"default {d.epochs}")
    parser.add_argument(
        "--max-tokens", type=int, default=None, help=f"training targets per epoch ({d.max_tokens})"
    )
    parser.add_argument(
        "--eval-tokens", type=int, default=None, help=f"test targets evaluated ({d.eval_tokens})"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="1 epoch of 1024 tokens, 512 evaluated, no equal-time run; files only with --out",
    )
    parser.add_argument(
        "--equal-time",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="then train the factored variant for as long as the dense one trained (default: "
        "yes, but not with --quick)",
    )
    parser.add_argument("--variants", nargs="+", choices=list(LABELS), default=list(LABELS))
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    for f in dataclasses.fields(Config):
        if f.name not in ("epochs", "max_tokens", "eval_tokens"):
            kwargs: dict[str, Any] = {"type": type(f.default), "default": f.default}
            if f.name == "dense_opt":
                kwargs["choices"] = ["adam", "sgd"]
            parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)
    args = parser.parse_args(argv)
    quick = {"epochs": 1, "max_tokens": 1024, "eval_tokens": 512} if args.quick else {}
    equal_time = not args.quick if args.equal_time is None else args.equal_time
    values = {}
    for f in dataclasses.fields(Config):
        v = getattr(args, f.name)
        if v is None:
            v = quick.get(f.name, f.default)
        values[f.name] = v
    cfg = Config(**values)
    t_start = time.perf_counter()
    load0 = load()
    limiter = _limit_blas_threads(cfg.blas_threads)
    corpus = build_corpus(context=cfg.context)
    print(
        f"corpus: {corpus.train.tokens:,} train / {corpus.test.tokens:,} test tokens, "
        f"vocabulary {corpus.num_classes:,} ({time.perf_counter() - t_start:.1f} s)",
        file=sys.stderr,
    )
    runs: Runs = {}
    for kind in args.variants:
        budget = None
        if kind == "factored" and equal_time and "dense" in runs:
            budget = sum(e.train_s for e in runs["dense"][0])
        runs[kind] = train_variant(kind, corpus, cfg, time_budget=budget)
    if limiter is not None:
        limiter.restore_original_limits()
    print("\n".join(summary_table(runs, cfg)))
    out = args.out if args.out or args.quick else RESULTS
    if out is None:
        return
    header = (
        "# Next-word prediction on the Python standard library: factored Z-loss vs dense softmax\n"
        f"\n{provenance('bench.nextword', argv, t_start, load0)} (other processes "
        "on the machine's 2 cores slow every number here)\n"
    )
    write(out, "nextword.md", report(corpus, cfg, runs, header))
    _plot(runs, out / "nextword.png")


if __name__ == "__main__":
    main()
