"""External yardstick: softzo's SPSA against nevergrad's SPSA and pycma's CMA-ES on COCO's
``bbob-largescale`` suite.

``python -m bench.coco [--dims 80,160,320,640] [--functions 1,2,6,...] [--instances 1]
[--budget-mult 50] [--workers 2] [--quick] [--out DIR]``

The default run (about 20 minutes on 2 cores) takes two functions per COCO group: f1 sphere, f2
ellipsoid (separable); f6 attractive sector, f8 Rosenbrock (moderate); f10 rotated ellipsoid, f12
bent cigar (ill-conditioned); f15 rotated Rastrigin, f17 Schaffer F7 (multimodal); f20
Schwefel, f22 Gallagher 21 peaks (weakly structured), in dimensions 80, 160, 320 and 640,
instance 1, with 50 * d evaluations per run. The optimisers' own costs set that scope, not the
functions': nevergrad's ask/tell costs about 0.5 ms per evaluation and pycma's full-covariance
CMA-ES about 1 ms at d = 640, so the whole suite (``--functions 1-24``) at this budget takes
about 2.5 times as long.

Needs the benchmark-only packages ``coco-experiment`` (``cocoex``), ``nevergrad``, ``cma`` (pycma)
and matplotlib, none of which softzo depends on: ``pip install coco-experiment nevergrad cma
matplotlib`` (or ``pip install .[bench]``).

Protocol. Every (function, dimension, instance) problem of the suite is solved once by each
optimiser with the same budget of ``budget_mult * d`` evaluations, counted by a wrapper that
refuses any evaluation past it. Every optimiser starts from ``problem.initial_solution`` (the
centre of the search domain [-5, 5]^d) and is given that box; the run's seed is
``1000 * instance + function`` for all three:

- softzo: ``optim.minimize(problem, x0, method="spsa", maxfev=budget, bounds=(lower, upper),
  seed=seed, options=SPSA_OPTIONS)`` with ``SPSA_OPTIONS`` (bench/_coco_setup.py) the same for
  every problem; they are SPSA's documented defaults (``a="auto"`` from 10 probes with
  ``target_step=0.1``, ``c=0.1``, ``A = 0.1 * maxiter`` with maxiter = (budget - 20) / 2, the
  steps the budget holds after the probes, alpha 0.602, gamma 0.101, one direction per step),
  one thread.
- nevergrad: ``ng.optimizers.SPSA(parametrization=ng.p.Array(init=x0).set_bounds(lower,
  upper), budget=budget)`` driven by ask/tell, its defaults, seeded through the
  parametrization's ``random_state``.
- pycma: ``cma.CMAEvolutionStrategy(x0, 2.0, {"bounds": [lower, upper], "maxfevals": ...})``,
  full covariance, default population, ask/tell; when it stops before the budget is spent it
  restarts from a uniform point of [-4, 4]^d with the budget left (COCO's usual practice).

Measures: COCO records the best f-value of all evaluations (``best_observed_fvalue1``); the
precision reached is Delta f = best - f_opt, and a run reaches target t when Delta f <= t, over
the 51 targets 10^2, 10^1.8, ..., 10^-8 of COCO's bbob empirical runtime distributions
(``TARGETS``). cocoex does not expose f_opt in Python: it is f(x_opt) with x_opt written by
``problem._best_parameter("print")``, evaluated on a second, scratch copy of the problem and
rounded to the 0.01 grid on which COCO draws f_opt, and checked with ``final_target_hit``.

Report, per dimension: the fraction of (function, instance, target) triples each optimiser
reached, and softzo's SPSA against nevergrad's per function as wins / ties / losses (by targets
reached, summed over instances; and by the median Delta f). ``--out DIR`` (default
``bench/results`` of the checkout for a full run; ``--quick`` writes files only with ``--out``)
writes coco.md and coco.png. Runs are spread over ``--workers`` processes, each limited to one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ._coco_setup import (
    BUDGET_MULT,
    CMA_SIGMA0,
    DIMS,
    FUNCTION_SUBSET,
    FUNCTIONS,
    QUICK,
    SOLVERS,
    SPSA_OPTIONS,
    SUITE,
    TARGETS,
    count_targets,
    summarise,
)
from ._common import RESULTS, command, load, machine, pyplot

# ---- the problems ------------------------------------------------------------------------------


class BudgetExhausted(Exception):
    """Raised by :class:`Counted` when an optimiser asks for an evaluation past its budget."""


class Counted:
    """The objective with a hard budget: ``left`` evaluations remain, then it raises."""

    def __init__(self, fun: Callable[[np.ndarray], float], budget: int) -> None:
        self.fun, self.left = fun, int(budget)

    def __call__(self, x: Any) -> float:
        if self.left <= 0:
            raise BudgetExhausted
        self.left -= 1
        return float(self.fun(np.asarray(x, dtype=np.float64)))


_SUITES: dict[int, Any] = {}


@contextlib.contextmanager
def _in_scratch_dir() -> Iterator[str]:
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="softzo_coco_") as tmp:
        os.chdir(tmp)
        try:
            yield tmp
        finally:
            os.chdir(cwd)


def _problem(function: int, dim: int, instance: int) -> tuple[Any, float]:
    """A fresh (unevaluated) cocoex problem and its f_opt."""
    import cocoex

    if dim not in _SUITES:
        _SUITES[dim] = cocoex.Suite(SUITE, "", f"dimensions: {dim}")
    suite = _SUITES[dim]
    scratch = suite.get_problem_by_function_dimension_instance(function, dim, instance)
    with _in_scratch_dir():
        scratch._best_parameter("print")  # writes x_opt to a file in the working directory
        (path,) = [n for n in os.listdir(".") if "best_parameter" in n]  # a dotfile
        x_opt = np.loadtxt(path, dtype=np.float64).reshape(-1)
    f_at_opt = float(scratch(x_opt))
    f_opt = round(f_at_opt, 2)  # COCO draws f_opt on a 0.01 grid
    if not (scratch.final_target_hit and abs(f_at_opt - f_opt) < 1e-8):
        raise RuntimeError(f"could not recover f_opt of {scratch.id} (f(x_opt) = {f_at_opt})")
    scratch.free()
    problem = suite.get_problem_by_function_dimension_instance(function, dim, instance)
    return problem, f_opt


# ---- the optimisers ----------------------------------------------------------------------------


def _run_softzo(fun: Counted, x0, lower, upper, budget: int, seed: int) -> None:
    from softzo import optim

    options = {**SPSA_OPTIONS, "num_threads": 1}
    optim.minimize(
        fun, x0, method="spsa", maxfev=budget, bounds=(lower, upper), seed=seed, options=options
    )


def _run_nevergrad(fun: Counted, x0, lower, upper, budget: int, seed: int) -> None:
    import nevergrad as ng

    param = ng.p.Array(init=np.array(x0, dtype=np.float64)).set_bounds(lower, upper)
    param.random_state = np.random.RandomState(seed)
    opt = ng.optimizers.SPSA(parametrization=param, budget=budget)
    for _ in range(budget):
        cand = opt.ask()
        opt.tell(cand, fun(cand.value))


def _run_cma(fun: Counted, x0, lower, upper, budget: int, seed: int) -> None:
    import cma

    rng = np.random.default_rng(seed)
    start = np.array(x0, dtype=np.float64)
    restart = 0
    while fun.left > 0:
        opts = {
            "bounds": [list(lower), list(upper)],
            "maxfevals": fun.left,
            "seed": seed * 100 + restart + 1,  # cma: 0 would mean "random"
            "verbose": -9,
        }
        es = cma.CMAEvolutionStrategy(start, CMA_SIGMA0, opts)
        while not es.stop():
            xs = es.ask()
            es.tell(xs, [fun(x) for x in xs])  # BudgetExhausted ends the run
        restart += 1
        start = rng.uniform(np.maximum(lower, -4.0), np.minimum(upper, 4.0))


RUNNERS = {"softzo": _run_softzo, "nevergrad": _run_nevergrad, "cma": _run_cma}


def run_one(task: tuple[int, int, int, str, int]) -> dict[str, Any]:
    """One optimiser on one problem: (function, dim, instance, solver, budget) -> record."""
    function, dim, instance, solver, budget = task
    problem, f_opt = _problem(function, dim, instance)
    fun = Counted(problem, budget)
    x0 = np.array(problem.initial_solution, dtype=np.float64)
    lower = np.array(problem.lower_bounds, dtype=np.float64)
    upper = np.array(problem.upper_bounds, dtype=np.float64)
    t0 = time.process_time()
    error = None
    try:
        RUNNERS[solver](fun, x0, lower, upper, budget, 1000 * instance + function)
    except BudgetExhausted:
        pass
    except Exception as e:  # noqa: BLE001 - the run ends there; its evaluations so far count
        error = f"{type(e).__name__}: {e}"
    seconds = time.process_time() - t0
    evaluations = problem.evaluations
    delta = problem.best_observed_fvalue1 - f_opt if evaluations else float("nan")
    problem.free()
    delta = max(delta, 0.0)  # f - f_opt >= 0 up to rounding
    return {
        "function": function,
        "dim": dim,
        "instance": instance,
        "solver": solver,
        "budget": budget,
        "evaluations": evaluations,
        "delta": delta,
        "targets": count_targets(delta),
        "seconds": seconds,
        "error": error,
    }


def _init_worker() -> None:
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # CMA-ES's linear algebra: one thread per worker
    except ImportError:
        pass
    import warnings

    warnings.filterwarnings("ignore")  # cma and nevergrad warn about budgets and bounds


def _cost(task: tuple[int, int, int, str, int]) -> float:
    """Rough relative cost, to start the longest runs first."""
    function, dim, _, solver, budget = task
    per_eval = {21: 30.0, 22: 6.0, 23: 6.0}.get(function, 1.0) * dim / 640
    overhead = {"softzo": 0.5, "nevergrad": 6.0, "cma": 10.0 * dim / 640}[solver]
    return budget * (per_eval + overhead)


def run(
    dims: Sequence[int],
    functions: Sequence[int],
    instances: Sequence[int],
    budget_mult: int,
    workers: int,
    solvers: Sequence[str] = tuple(SOLVERS),
) -> list[dict[str, Any]]:
    tasks = [
        (f, d, i, s, budget_mult * d)
        for d in dims
        for f in functions
        for i in instances
        for s in solvers
    ]
    tasks.sort(key=_cost, reverse=True)
    records = []
    t0 = time.perf_counter()
    if workers <= 1:
        _init_worker()
        results: Iterable[dict[str, Any]] = map(run_one, tasks)
        pool = None
    else:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_init_worker)
        results = pool.imap_unordered(run_one, tasks)
    try:
        for n, r in enumerate(results, 1):
            records.append(r)
            print(
                f"[{n}/{len(tasks)} {time.perf_counter() - t0:6.0f} s] f{r['function']} "
                f"d={r['dim']} i={r['instance']} {r['solver']}: Delta f = {r['delta']:.3g}, "
                f"{r['targets']} targets ({r['seconds']:.1f} s)",
                file=sys.stderr,
            )
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    key = list(SOLVERS)
    records.sort(key=lambda r: (r["dim"], r["function"], r["instance"], key.index(r["solver"])))
    return records


# ---- report ------------------------------------------------------------------------------------


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for dist in ("coco-experiment", "nevergrad", "cma", "matplotlib"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return ", ".join(parts)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def report(records: list[dict[str, Any]], solvers: Sequence[str] = tuple(SOLVERS)) -> str:
    summary = summarise(records, solvers)
    names = [SOLVERS[s] for s in solvers]
    lines = [
        "### Fraction of (function, instance, target) triples reached",
        "",
        "| dimension | runs per optimiser | "
        + " | ".join(names)
        + " | softzo vs nevergrad per function, W/T/L by targets | W/T/L by median Δf |",
        "|---|---|" + "---|" * len(names) + "---|---|",
    ]
    for dim, row in summary.items():
        label = "all" if dim == "all" else f"{dim}"
        fr = " | ".join(_pct(row["fraction"][s]) for s in solvers)
        wt, wd = row["wtl_targets"], row["wtl_delta"]
        lines.append(
            f"| {label} | {row['runs'][solvers[0]]} | {fr} | {wt[0]}/{wt[1]}/{wt[2]} | "
            f"{wd[0]}/{wd[1]}/{wd[2]} |"
        )
    dims = sorted({r["dim"] for r in records})
    funcs = sorted({r["function"] for r in records})
    runs = {(r["function"], r["dim"], r["solver"]): [] for r in records}
    for r in records:
        runs[r["function"], r["dim"], r["solver"]].append(r)
    order = " / ".join(names)
    for title, cell in (
        (
            f"Targets reached per function (of 51 per instance): {order}",
            lambda rs: str(sum(r["targets"] for r in rs)),
        ),
        (
            f"Median best f − f_opt over instances: {order}",
            lambda rs: f"{float(np.median([r['delta'] for r in rs])):.2g}",
        ),
    ):
        lines += ["", f"### {title}", "", "| function | " + " | ".join(f"d={d}" for d in dims)]
        lines[-1] += " |"
        lines.append("|---|" + "---|" * len(dims))
        for f in funcs:
            cells = []
            for d in dims:
                cells.append(" / ".join(cell(runs.get((f, d, s), [])) for s in solvers))
            lines.append(f"| f{f} {FUNCTIONS.get(f, '')} | " + " | ".join(cells) + " |")
    errors = [r for r in records if r.get("error")]
    if errors:
        lines += ["", "Runs that ended on an error (their evaluations up to it count):", ""]
        for r in errors:
            lines.append(
                f"- f{r['function']} d={r['dim']} i={r['instance']} {SOLVERS[r['solver']]}: "
                f"{r['error']} after {r['evaluations']} evaluations"
            )
    cpu = {s: sum(r["seconds"] for r in records if r["solver"] == s) for s in solvers}
    lines += [
        "",
        "CPU time per optimiser, objective included, summed over its runs: "
        + ", ".join(f"{SOLVERS[s]} {cpu[s]:.0f} s" for s in solvers)
        + ".",
    ]
    return "\n".join(lines) + "\n"


def _plot(records: list[dict[str, Any]], path: Path, solvers: Sequence[str] = tuple(SOLVERS)):
    """Left: fraction of targets reached against dimension; right: per function, all dims."""
    plt = pyplot()
    if plt is None:
        return
    summary = summarise(records, solvers)
    dims = [d for d in summary if d != "all"]
    funcs = sorted({r["function"] for r in records})
    colors = dict(zip(solvers, plt.get_cmap("tab10").colors))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [1, 3]})
    for s in solvers:
        ys = [summary[d]["fraction"][s] for d in dims]
        ax.plot(dims, ys, marker="o", color=colors[s], label=SOLVERS[s])
    ax.set_xscale("log", base=2)
    ax.set_xticks(dims, [str(d) for d in dims])
    top = max([0.05] + [summary[d]["fraction"][s] for d in dims for s in solvers])
    ax.set_ylim(0, min(1.0, 1.15 * top))
    ax.set_xlabel("dimension")
    ax.set_ylabel("fraction of (function, instance, target) reached")
    ax.set_title("bbob-largescale, 51 targets 1e2..1e-8")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    width = 0.8 / len(solvers)
    tops = [0.05]
    for j, s in enumerate(solvers):
        ys = []
        for f in funcs:
            rs = [r for r in records if r["function"] == f and r["solver"] == s]
            ys.append(sum(r["targets"] for r in rs) / (len(TARGETS) * len(rs)) if rs else 0.0)
        xs = np.arange(len(funcs)) + (j - (len(solvers) - 1) / 2) * width
        bx.bar(xs, ys, width, color=colors[s], label=SOLVERS[s])
        tops += ys
    labels = [f"f{f}\n{FUNCTIONS.get(f, '')}" for f in funcs]
    bx.set_xticks(range(len(funcs)), labels, fontsize=7)
    bx.set_ylim(0, min(1.0, 1.15 * max(tops)))
    bx.set_ylabel("fraction of targets reached")
    bx.set_title(f"per function, dimensions {', '.join(map(str, dims))} together")
    bx.grid(True, axis="y", alpha=0.3)
    bx.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ints(text: str) -> list[int]:
    """Parses "1,3,5-7" as [1, 3, 5, 6, 7]."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.coco", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dims", type=_ints, default=None, help="default 80,160,320,640")
    parser.add_argument(
        "--functions", type=_ints, default=None, help="default 1,2,6,8,10,12,15,17,20,22"
    )
    parser.add_argument("--instances", type=_ints, default=[1], help="default 1")
    parser.add_argument(
        "--budget-mult", type=int, default=None, help=f"evaluations per dimension ({BUDGET_MULT})"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="d=80, f1,2,8,10,15,20, 20*d evaluations; files only with --out",
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    parser.add_argument("--save-records", type=Path, default=None, help="also write runs (JSON)")
    parser.add_argument(
        "--from-records", type=Path, default=None, help="report runs saved by --save-records"
    )
    args = parser.parse_args(argv)
    dims = args.dims or (QUICK["dims"] if args.quick else DIMS)
    functions = args.functions or (QUICK["functions"] if args.quick else FUNCTION_SUBSET)
    mult = args.budget_mult or (QUICK["budget_mult"] if args.quick else BUDGET_MULT)
    out = args.out if args.out or args.quick else RESULTS

    if args.from_records:
        saved = json.loads(args.from_records.read_text(encoding="utf-8"))
        meta, records = saved["meta"], saved["records"]
    else:
        argv_used = sys.argv[1:] if argv is None else list(argv)
        if "--save-records" in argv_used:  # where the runs are saved changes nothing
            i = argv_used.index("--save-records")
            del argv_used[i : i + 2]
        t0, load0 = time.perf_counter(), load()
        records = run(dims, functions, args.instances, mult, args.workers)
        meta = {
            "command": command("bench.coco", argv_used),
            "wall": time.perf_counter() - t0,
            "load": [load0, load()],
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "workers": args.workers,
            "dims": list(dims),
            "functions": list(functions),
            "instances": list(args.instances),
            "budget_mult": mult,
        }
        if args.save_records:
            text = json.dumps({"meta": meta, "records": records})
            args.save_records.write_text(text, encoding="utf-8")
    tables = report(records)
    print(tables)
    if out is None:
        return
    dims, functions, mult = meta["dims"], meta["functions"], meta["budget_mult"]
    options = SPSA_OPTIONS or "documented defaults"
    heading = (
        "# softzo SPSA on COCO bbob-largescale\n\n"
        f"{machine()}\n"
        f"- {_versions()}\n"
        f"- date: {meta['date']}\n"
        f"- command (from the repository's root): `{meta['command']}` "
        f"({meta['wall'] / 60:.1f} min wall on "
        f"{meta['workers']} worker processes of one thread)\n"
        f"- 1-minute load average before / after: {meta['load'][0]:.2f} / "
        f"{meta['load'][1]:.2f}\n\n"
        f"Suite `{SUITE}`, functions {_span(functions)}, dimensions "
        f"{', '.join(map(str, dims))}, instance(s) {_span(meta['instances'])}; budget "
        f"{mult}·d evaluations per run for every optimiser (a wrapper refuses any "
        "evaluation past it). All start at the domain's centre with the box [-5, 5]^d and the "
        'seed 1000·instance + function. softzo: `optim.minimize(method="spsa", '
        f"bounds=(lower, upper), options={options})`, the same for every problem. nevergrad: "
        "`ng.optimizers.SPSA` (its defaults) on `ng.p.Array(init=x0).set_bounds(lower, upper)`. "
        f"pycma: `CMAEvolutionStrategy(x0, {CMA_SIGMA0}, bounds)`, full covariance, restarted "
        "from a uniform point of [-4, 4]^d with the budget left if it stops early. A target "
        "f_opt + t (t = 10^2, 10^1.8, ..., 10^-8: COCO's 51 ECDF targets) is reached when the "
        "best f of all evaluations is <= it. W/T/L: functions where softzo's SPSA reached more / "
        "as many / fewer targets than nevergrad's (summed over instances), or a smaller / equal "
        "/ larger median best f − f_opt. See the docstring of `bench/coco.py`.\n\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "coco.md").write_text(heading + tables, encoding="utf-8")
    _plot(records, out / "coco.png")
    print(f"wrote {out / 'coco.md'} and coco.png", file=sys.stderr)


def _span(values: Sequence[int]) -> str:
    v = sorted(values)
    if len(v) > 2 and v == list(range(v[0], v[-1] + 1)):
        return f"{v[0]}–{v[-1]}"
    return ", ".join(map(str, v))


if __name__ == "__main__":
    main()
