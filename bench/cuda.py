"""CUDA benchmark (``python -m bench.cuda``): softzo against torch on the GPU,
each as a share of the device's measured copy bandwidth, interleaved in one process.

Cases (issue 15's targets): softmax float32 on (4096, 32000) and on one 64M-element row; bf16
cross-entropy forward + backward in place at (8192, 128256) against F.cross_entropy + backward
(and Liger-Kernel's when importable); a MeZO step on 1e9 float32 parameters with Rademacher z
against a torch.normal-per-tensor loop. Times are CUDA-event medians over repetitions after a
warm-up; "copy" is torch's device-to-device copy of the same bytes (read + write), the
roofline every percentage refers to.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable


def _timed(fn: Callable[[], object], reps: int) -> float:
    """Median milliseconds of fn over reps, CUDA events on the current stream."""
    import torch

    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def _interleaved(fns: dict[str, Callable[[], object]], reps: int, rounds: int = 3) -> dict:
    """Each function timed in turn, rounds times over; the best median per function."""
    best = {k: float("inf") for k in fns}
    for _ in range(rounds):
        for k, f in fns.items():
            best[k] = min(best[k], _timed(f, reps))
    return best


def _copy_gbs(nbytes: int, reps: int) -> tuple[float, float]:
    """(ms, GB/s counting read + write) of a torch device-to-device copy of nbytes."""
    import torch

    src = torch.empty(nbytes // 4, dtype=torch.float32, device="cuda")
    dst = torch.empty_like(src)
    ms = _timed(lambda: dst.copy_(src), reps)
    return ms, 2 * nbytes / ms / 1e6


def softmax_cases(reps: int) -> list[dict]:
    import softzo
    import torch

    rows = []
    for shape in [(4096, 32000), (1, 64 << 20)]:
        x = torch.randn(shape, device="cuda") * 4
        out = torch.empty_like(x)
        ref_out = torch.empty_like(x)
        nbytes = x.numel() * 4
        fns = {
            "softzo": lambda x=x, out=out: softzo.softmax(x, out=out),
            "torch": lambda x=x, r=ref_out: torch.softmax(x, -1, out=r),
            "copy": lambda x=x, r=ref_out: r.copy_(x),
        }
        t = _interleaved(fns, reps)
        copy_gbs = 2 * nbytes / t["copy"] / 1e6
        err = float((out - torch.softmax(x.double(), -1)).abs().max())
        rows.append(
            {
                "case": f"softmax fp32 {shape[0]} x {shape[1]}",
                "softzo_ms": t["softzo"],
                "torch_ms": t["torch"],
                "speedup": t["torch"] / t["softzo"],
                "copy_ms": t["copy"],
                "copy_GBps": copy_gbs,
                # the copy's time for the same bytes (read x, write y) over softzo's time
                "pct_of_copy_time": 100 * t["copy"] / t["softzo"],
                "max_abs_err_vs_fp64": err,
            }
        )
        torch.cuda.empty_cache()
    return rows


def cross_entropy_case(reps: int) -> dict:
    import softzo.losses as L
    import torch
    import torch.nn.functional as F

    n, v = 8192, 128256
    torch.manual_seed(0)
    base = (torch.randn(n, v, device="cuda") * 2).to(torch.bfloat16)
    t = torch.randint(0, v, (n,), device="cuda")
    work = base.clone()
    ref = base.clone().requires_grad_()

    def softzo_step():
        work.copy_(base)
        return L.cross_entropy(work, t, grad_out=work)

    def torch_step():
        ref.grad = None
        F.cross_entropy(ref, t).backward()

    def reset_only():
        work.copy_(base)

    fns = {"softzo": softzo_step, "torch": torch_step, "reset": reset_only}
    liger = None
    try:
        from liger_kernel.transformers import LigerCrossEntropyLoss  # type: ignore

        liger = LigerCrossEntropyLoss()
        lig = base.clone().requires_grad_()

        def liger_step():
            lig.grad = None
            liger(lig, t).backward()

        fns["liger"] = liger_step
    except ImportError:
        pass
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    softzo_step()
    torch.cuda.synchronize()
    peak_softzo = torch.cuda.max_memory_allocated() - before
    t_ms = _interleaved(fns, reps)
    loss, _ = softzo_step()
    ref.grad = None
    ref_loss = F.cross_entropy(ref.float(), t)
    ref_loss.backward()
    grad_err = float((work.float() - ref.grad.float()).abs().max())
    soft_ms = t_ms["softzo"] - t_ms["reset"]  # the copy that restores the logits is not CE's
    nbytes = n * v * 2
    copy_ms, copy_gbs = _copy_gbs(nbytes, reps)
    out = {
        "case": f"cross-entropy bf16 fwd+bwd in place {n} x {v}",
        "softzo_ms": soft_ms,
        "torch_ms": t_ms["torch"],
        "speedup": t_ms["torch"] / soft_ms,
        "copy_ms": copy_ms,
        "copy_GBps": copy_gbs,
        "pct_of_copy_time": 100 * copy_ms / soft_ms,
        "softzo_peak_extra_MiB": peak_softzo / 2**20,
        "loss_softzo": float(loss),
        "loss_torch_fp32": float(ref_loss),
        "max_abs_grad_diff_vs_torch_bf16": grad_err,
    }
    if liger is not None:
        out["liger_ms"] = t_ms["liger"]
    return out


def mezo_case(reps: int, numel: int = 1_000_000_000) -> dict:
    import torch
    from softzo import optim

    chunk = 50_000_000  # 20 tensors of 5e7: a model's worth of parameter tensors
    params = [torch.zeros(chunk, device="cuda") for _ in range(numel // chunk)]
    opt = optim.MeZO(params, lr=1e-7, eps=1e-3, distribution="rademacher", seed=0)
    losses = iter(range(10**9))

    def softzo_step():
        opt.step(lambda: float(next(losses) % 7))

    gen = torch.Generator(device="cuda").manual_seed(0)

    def torch_step():  # MeZO's reference loop: z drawn by torch.normal per tensor, 4 passes
        for scale in (1.0, -2.0, 1.0):
            gen.manual_seed(0)
            for p in params:
                z = torch.normal(0.0, 1.0, p.shape, device=p.device, generator=gen)
                p.add_(z, alpha=scale * 1e-3)
        gen.manual_seed(0)
        for p in params:
            z = torch.normal(0.0, 1.0, p.shape, device=p.device, generator=gen)
            p.add_(z, alpha=-1e-7 * 0.5)

    t = _interleaved({"softzo": softzo_step, "torch": torch_step}, max(2, reps // 5), rounds=2)
    copy_ms, copy_gbs = _copy_gbs(chunk * 4, reps)
    pass_ms = copy_ms * (numel // chunk)  # one streaming read + write pass over every parameter
    return {
        "case": f"MeZO step, {numel:.0e} fp32 params, Rademacher z",
        "softzo_ms": t["softzo"],
        "torch_ms": t["torch"],
        "speedup": t["torch"] / t["softzo"],
        "copy_ms": pass_ms,
        "copy_GBps": copy_gbs,
        "streaming_passes": t["softzo"] / pass_ms,
    }


def _table(rows: list[dict]) -> str:
    lines = [
        "| case | softzo | torch | speed-up | copy of the same bytes | % of copy time |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        pct = r.get("pct_of_copy_time")
        extra = f"{pct:.0f}%" if pct is not None else f"{r['streaming_passes']:.2f} passes"
        lines.append(
            f"| {r['case']} | {r['softzo_ms']:.3f} ms | {r['torch_ms']:.3f} ms | "
            f"{r['speedup']:.2f}x | {r['copy_ms']:.3f} ms ({r['copy_GBps']:.0f} GB/s) | {extra} |"
        )
    return "\n".join(lines) + "\n"


def main(out_dir: Path, reps: int = 20) -> None:
    """Runs every case, prints the table, writes cuda.md and cuda.json to out_dir."""
    import softzo
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("python -m bench.cuda: no CUDA device visible")
    t0 = time.time()
    rows = []
    for name, case in (
        ("softmax", lambda: softmax_cases(reps)),
        ("cross-entropy", lambda: [cross_entropy_case(reps)]),
        ("mezo", lambda: [mezo_case(reps)]),
    ):
        try:
            rows += case()
        except Exception as e:  # noqa: BLE001 (one failing case must not lose the others')
            print(f"{name} case failed: {type(e).__name__}: {e}")
        torch.cuda.empty_cache()
    info = softzo.info()["cuda"]
    table = _table(rows)
    heading = (
        "# softzo CUDA benchmark\n\n"
        f"`python -m bench.cuda`, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{torch.cuda.get_device_name(0)} (compute capability "
        f"{'.'.join(map(str, torch.cuda.get_device_capability(0)))}), torch {torch.__version__}, "
        f"{time.time() - t0:.0f} s. Median of {reps} CUDA-event timings per function, best of "
        "interleaved rounds. '% of copy time' = torch's device-to-device copy of the case's "
        "bytes (read once, write once) over softzo's time: 100% is a kernel that reads its input "
        "once and writes once at copy speed. MeZO: softzo's step in units of one such pass over "
        "all parameters.\n\n"
    )
    text = heading + table
    print(text)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cuda.md").write_text(text, encoding="utf-8")
    (out_dir / "cuda.json").write_text(json.dumps({"rows": rows, "cuda": info}, indent=1))
    extra = os.environ.get("OUT")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        (Path(extra) / "cuda.md").write_text(text, encoding="utf-8")
        (Path(extra) / "cuda.json").write_text(json.dumps({"rows": rows, "cuda": info}, indent=1))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()
    main(args.out, args.reps)
