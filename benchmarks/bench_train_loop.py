"""Throughput of utils.train.train against a plain PyTorch loop, and GPT-2-small MFU on a GPU.

Two modes:

``--mode compare`` (default; CPU or GPU): the same model (same initial weights), the same pre-built batches
and the same optimizer (AdamW), once through a bare loop (forward, backward, step, zero_grad) and once
through ``train()`` (scheduler, clipping, logging, progress bar). On a GPU both run eager and with
``torch.compile``. Reports tokens/s of each and the loop's overhead in percent. Target: < 10% on CPU.

``--mode gpt2`` (CUDA GPU): a GPT-2-small-shaped decoder (vocabulary padded to 50304, context 1024) through
``train()`` with bf16 autocast, fused AdamW, TF32 matmuls and torch.compile; reports tokens/s, achieved
TFLOP/s and MFU against the GPU's peak (989 TFLOP/s for an H100 SXM). A few warm-up steps (compilation
included) are excluded from the timing; about 2 minutes on an H100 in total.

Examples::

    python benchmarks/bench_train_loop.py --preset tiny --batch 16 --seq-len 128 --steps 40
    python benchmarks/bench_train_loop.py --mode gpt2 --json gpt2.json

Prints a table, then one line of JSON (also written to ``--json``).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from utils.env import get_device, seed_everything  # noqa: E402
from utils.flops import device_peak_flops, mfu, model_flops_per_token  # noqa: E402
from utils.models import PRESETS, build_model  # noqa: E402
from utils.train import (  # noqa: E402
    TokenBatches,
    TrainConfig,
    autocast,
    make_optimizer,
    resolve_precision,
    train,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _compiled(model):
    # a fresh dynamo cache per run: every run compiles once (in its warm-up), and repeated runs never
    # reach dynamo's recompile limit (which would silently fall back to eager)
    torch._dynamo.reset()
    return torch.compile(model)


class StepProfiler:
    """``torch.profiler`` over a few steps of one loop; writes the op tables to ``folder/<name>.txt``.

    ``step()`` is called once per optimizer step; recording covers steps ``start`` .. ``start + count - 1``.
    Off (every call a no-op) when ``folder`` is None.
    """

    def __init__(self, folder: Path | None, name: str, start: int, count: int = 5):
        self.folder, self.name, self.start, self.count, self.i, self.prof = folder, name, start, count, 0, None

    def step(self) -> None:
        if self.folder is None:
            return
        self.i += 1
        if self.i == self.start:
            acts = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                acts.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=acts)
            self.prof.__enter__()
        elif self.prof is not None and self.i == self.start + self.count:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.prof.__exit__(None, None, None)
            ka = self.prof.key_averages()
            self.folder.mkdir(parents=True, exist_ok=True)
            text = [f"{self.name}: {self.count} steps\n", "== by self CPU time ==",
                    ka.table(sort_by="self_cpu_time_total", row_limit=30)]
            if torch.cuda.is_available():
                text += ["== by self device time ==", ka.table(sort_by="self_device_time_total", row_limit=30)]
            (self.folder / f"{self.name}.txt").write_text("\n".join(text))
            self.prof = None


def make_batches(vocab_size: int, batch: int, seq_len: int, n: int, seed: int = 0) -> list[dict]:
    """``n`` CLM batches of random tokens (content does not matter for throughput), built before timing."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab_size, (max(batch * seq_len * 4, 100_000),), generator=g)
    source = TokenBatches(tokens, "clm", batch, seq_len, seed=seed)
    return [next(source) for _ in range(n)]


def model_and_batches(args):
    """The seeded decoder of ``args.preset`` and the pre-built batches both loops train on."""
    seed_everything(0)
    model = build_model(
        "decoder",
        args.preset,
        vocab_size=args.vocab,
        max_seq_len=max(args.seq_len, PRESETS[args.preset]["max_seq_len"]),
    )
    return model, make_batches(args.vocab, args.batch, args.seq_len, args.warmup + args.steps)


def plain_loop(model, batches, cfg: TrainConfig, device, precision: str, warmup: int, profiler=None) -> float:
    """The baseline: forward, backward, AdamW step, zero_grad; nothing else. Returns timed tokens/s.

    No schedule, clipping, loss bookkeeping, logging or progress bar: what ``train()`` adds is the difference.
    """
    model.to(device).train()
    opt = make_optimizer(model, cfg, device)  # the same AdamW (groups, fused on CUDA) as train() builds
    forward = _compiled(model) if cfg.compile else model
    t0, tokens = None, 0
    for i, batch in enumerate(batches):
        if i == warmup:
            _sync(device)
            t0, tokens = time.perf_counter(), 0
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(precision, device):
            loss = forward(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        tokens += batch["input_ids"].numel()
        if profiler is not None:
            profiler.step()
    _sync(device)
    return tokens / (time.perf_counter() - t0)


def course_loop(model, batches, cfg: TrainConfig, warmup: int, progress: bool, profiler=None) -> float:
    """``utils.train.train`` on the same batches; the timer starts after ``warmup`` steps."""
    device = get_device(cfg.device)
    marks = {}

    def timer(step, history):
        if profiler is not None:
            profiler.step()
        if step == warmup:
            _sync(device)
            marks["t0"] = time.perf_counter()

    if cfg.compile:
        torch._dynamo.reset()  # as in _compiled(): train() compiles the model itself
    train(model, batches, cfg, callback=timer, progress=progress)
    _sync(device)
    timed_tokens = sum(b["input_ids"].numel() for b in batches[warmup:])
    return timed_tokens / (time.perf_counter() - marks["t0"])


def compare(args) -> dict:
    device = get_device(args.device)
    precision = resolve_precision(args.precision, device)
    base, batches = model_and_batches(args)
    compiles = [False, True] if device.type == "cuda" and not args.no_compile else [False]
    if args.compile_only:
        compiles = [True]
    rows = []
    for compiled in compiles:
        cfg = TrainConfig(
            steps=len(batches),
            batch_size=args.batch,
            lr=3e-4,
            warmup_steps=2,
            log_every=10,
            eval_every=0,
            precision=precision,
            device=device.type,
            compile=compiled,
            grad_clip=args.grad_clip,
        )
        if args.profile:
            tag = "compiled" if compiled else "eager"
            plain_loop(copy.deepcopy(base), batches, cfg, device, precision, args.warmup,
                       StepProfiler(args.profile, f"plain-{tag}", args.warmup + 1))
            course_loop(copy.deepcopy(base), batches, cfg, args.warmup, False,
                        StepProfiler(args.profile, f"train-{tag}", args.warmup + 1))
        best = {"plain": 0.0, "train()": 0.0}
        for _ in range(args.repeats):  # alternate the two loops; keep each one's best (least disturbed) run
            best["plain"] = max(
                best["plain"], plain_loop(copy.deepcopy(base), batches, cfg, device, precision, args.warmup)
            )
            best["train()"] = max(
                best["train()"], course_loop(copy.deepcopy(base), batches, cfg, args.warmup, args.progress)
            )
        overhead = 100.0 * (best["plain"] / best["train()"] - 1.0)
        rows.append(
            {
                "compile": compiled,
                "plain_tokens_per_s": best["plain"],
                "train_tokens_per_s": best["train()"],
                "overhead_percent": overhead,
            }
        )
    print(
        f"\n{args.preset} decoder, batch {args.batch} x {args.seq_len}, {precision}, grad_clip={args.grad_clip}, {device} "
        f"({args.steps} timed steps after {args.warmup} warm-up, best of {args.repeats})"
    )
    print(f"{'compile':>8} | {'plain tok/s':>12} | {'train() tok/s':>13} | {'overhead':>8}")
    for r in rows:
        print(
            f"{str(r['compile']):>8} | {r['plain_tokens_per_s']:>12,.0f} | {r['train_tokens_per_s']:>13,.0f} | "
            f"{r['overhead_percent']:>7.1f}%"
        )
    return {
        "mode": "compare",
        "preset": args.preset,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "precision": precision,
        "grad_clip": args.grad_clip,
        "device": _device_name(device),
        "rows": rows,
    }


def gpt2(args) -> dict:
    device = get_device(args.device)
    if device.type != "cuda" and not args.allow_cpu:
        raise SystemExit(
            "--mode gpt2 needs a CUDA GPU (add --allow-cpu with a small --preset to smoke-test it)"
        )
    torch.set_float32_matmul_precision("high")  # TF32 for any fp32 matmul left outside autocast
    precision = resolve_precision(args.precision, device)
    model, batches = model_and_batches(args)
    cfg = TrainConfig(
        steps=len(batches),
        batch_size=args.batch,
        micro_batches=args.micro_batches,
        lr=6e-4,
        warmup_steps=2,
        log_every=10,
        eval_every=0,
        precision=precision,
        device=device.type,
        compile=not args.no_compile,
    )
    fpt = model_flops_per_token(model, args.seq_len)
    t = time.perf_counter()
    # profile warm-up steps 2 .. warmup-1 (after the compiling first step): the timed steps stay clean
    profiler = StepProfiler(args.profile, "gpt2-train", 2, args.warmup - 2) if args.profile and args.warmup >= 4 else None
    tps = course_loop(model, batches, cfg, args.warmup, args.progress, profiler)
    total_s = time.perf_counter() - t
    peak = args.peak_tflops * 1e12 if args.peak_tflops else device_peak_flops(device)
    util = mfu(fpt, tps, peak)
    result = {
        "mode": "gpt2",
        "preset": args.preset,
        "vocab": args.vocab,
        "batch": args.batch,
        "micro_batches": args.micro_batches,
        "seq_len": args.seq_len,
        "precision": precision,
        "compile": cfg.compile,
        "device": _device_name(device),
        "params": sum(p.numel() for p in model.parameters()),
        "flops_per_token": fpt,
        "tokens_per_s": tps,
        "achieved_tflops": fpt * tps / 1e12,
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": util,
        "wall_s_incl_compile": total_s,
    }
    if device.type == "cuda":
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
    print(
        f"\n{args.preset} decoder ({result['params']:,} params), batch {args.batch} x {args.seq_len}, "
        f"{precision}, compile={cfg.compile}, {result['device']}"
    )
    print(
        f"tokens/s {tps:,.0f} | {result['achieved_tflops']:.1f} TFLOP/s | MFU "
        f"{'n/a (no peak for this device)' if util is None else f'{100 * util:.1f}%'} | "
        f"{total_s:.0f} s incl. warm-up/compile"
    )
    return result


def _device_name(device: torch.device) -> str:
    return (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"
    )


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=["compare", "gpt2"], default="compare")
    p.add_argument(
        "--preset", default=None, help="model preset (default: tiny for compare, gpt2-small for gpt2)"
    )
    p.add_argument(
        "--vocab", type=int, default=None, help="vocabulary (default 4096; gpt2: 50304 = 50257 padded)"
    )
    p.add_argument("--batch", type=int, default=None, help="sequences per step (default 16; gpt2: 32)")
    p.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 128; gpt2: 1024)")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (compilation included)")
    p.add_argument("--repeats", type=int, default=2, help="compare mode: runs of each loop, best kept")
    p.add_argument(
        "--precision", default="auto", help="fp32 | bf16 | fp16 | auto (bf16 on a GPU that has it)"
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile on the GPU")
    p.add_argument("--compile-only", action="store_true", help="compare mode: only the torch.compile runs")
    p.add_argument("--peak-tflops", type=float, default=None, help="gpt2 mode: peak to compute MFU against")
    p.add_argument("--allow-cpu", action="store_true", help="gpt2 mode: run on CPU anyway (smoke test)")
    p.add_argument("--progress", action="store_true", help="show train()'s progress bar")
    p.add_argument("--micro-batches", type=int, default=1, help="gpt2 mode: gradient accumulation steps")
    p.add_argument("--grad-clip", type=lambda v: None if v == "none" else float(v), default=1.0,
                   help="compare mode: train()'s clipping norm, or 'none' (to measure what clipping costs)")
    p.add_argument("--profile", type=Path, default=None,
                   help="write torch.profiler op tables of a few timed steps of each loop into this folder")
    p.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    gpt = args.mode == "gpt2"
    defaults = dict(
        preset="gpt2-small" if gpt else "tiny",
        vocab=50304 if gpt else 4096,
        batch=32 if gpt else 16,
        seq_len=1024 if gpt else 128,
        warmup=5,
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    result = gpt2(args) if gpt else compare(args)
    result.update(torch=torch.__version__, steps=args.steps, warmup=args.warmup)
    line = json.dumps(result)
    print(line)
    if args.json:
        args.json.write_text(line + "\n")
    return result


if __name__ == "__main__":
    main()
