"""One training loop for all three objectives (CLM decoder, MLM encoder, span-corruption encoder-decoder).

:func:`train` is the loop of notebook 02 -- forward, backward, clip, step, schedule, log -- with what a real
run needs around it: gradient accumulation (``micro_batches`` pieces of each batch, each loss scaled by 1/k),
mixed precision (bf16 autocast, or fp16 with a GradScaler), AdamW with a warm-up + cosine schedule, a
NaN/inf guard (:mod:`utils.guards`), held-out evaluation every ``eval_every`` steps, and a checkpoint every
``checkpoint_every`` steps from which ``train(..., resume_from=path)`` continues exactly
(:mod:`utils.train_state`, :mod:`utils.checkpoint`).

Data: any iterable of batches (dicts of tensors for ``model(**batch)``), or :class:`TokenBatches`, an infinite,
deterministic and resumable batch maker over a 1-D tensor of token ids for any of the three objectives.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch

from utils.batching import TokenBatches, batch_seed, split_tokens  # noqa: F401 (re-exported)
from utils.checkpoint import check_checkpoint_dir
from utils.env import DEVICE_CHOICES, bf16_supported, get_device, no_bf16_forced, progress_bar
from utils.guards import (
    NonFiniteGuard,
    NonFiniteLossError,  # noqa: F401 (re-exported: the error train() raises)
    check_batch,
    check_token_batches,
    model_limits,
)
from utils.train_state import History, save_run, start_run, take_eval_set
from utils.validate import check_bool, check_choice, check_fraction, check_int, check_number

#: Accepted values of ``TrainConfig.precision``.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
#: Accepted values of ``TrainConfig.on_nonfinite``.
NONFINITE_CHOICES = ("stop", "skip")


@dataclass
class TrainConfig:
    """Everything that decides a training run (saved with each checkpoint)."""

    steps: int = 100  # optimizer steps (parameter updates) in total
    batch_size: int = 16  # sequences per optimizer step, over all micro-batches
    micro_batches: int = 1  # gradient accumulation: forward/backward passes per step (divides batch_size)
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.1  # AdamW's decoupled weight decay, on matrices only (not biases, norms)
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW's moment decay rates (GPT-3's choice)
    warmup_steps: int = 10  # linear warm-up from lr / warmup_steps to lr
    min_lr_ratio: float = 0.1  # the cosine decays the learning rate to lr * min_lr_ratio at the last step
    grad_clip: float | None = 1.0  # clip the global gradient norm to this (None: no clipping)
    precision: str = "auto"  # "fp32" | "bf16" | "fp16" | "auto" (bf16 where native, fp16 on old GPUs, fp32 on CPU)
    eval_every: int = 50  # evaluate every this many steps and after the last one (0: never)
    eval_batches: int = 4  # held-out batches per evaluation (the same ones each time)
    seed: int = 0  # seeds torch's RNG (dropout) at the start of a fresh run
    log_every: int = 10  # record loss / lr / tokens/s every this many steps (the loss averaged over them)
    device: str = "auto"  # "auto" | "cuda" | "mps" | "cpu" (utils.env.get_device)
    compile: bool = False  # run the forward pass through torch.compile
    on_nonfinite: str = "stop"  # a NaN/inf loss or gradient norm: "stop" (raise) or "skip" that update

    def __post_init__(self):
        """Raise ValueError naming the field, the value and what is accepted; store plain Python numbers."""
        for name in ("steps", "batch_size", "micro_batches", "log_every", "eval_batches"):
            setattr(self, name, check_int(name, getattr(self, name), minimum=1))
        for name in ("warmup_steps", "eval_every", "seed"):
            setattr(self, name, check_int(name, getattr(self, name), minimum=0))
        if self.batch_size % self.micro_batches:
            raise ValueError(
                f"micro_batches={self.micro_batches} does not divide batch_size={self.batch_size}; "
                f"accepted: a divisor of {self.batch_size}"
            )
        self.lr = check_number("lr", self.lr, minimum=0, min_open=True)
        self.weight_decay = check_number("weight_decay", self.weight_decay, minimum=0)
        if not isinstance(self.betas, (tuple, list)) or len(self.betas) != 2:
            raise ValueError(f"betas={self.betas!r} is not valid; accepted: two numbers in [0, 1), e.g. (0.9, 0.95)")
        self.betas = tuple(check_number("betas", b, minimum=0, maximum=1, max_open=True) for b in self.betas)
        self.min_lr_ratio = check_fraction("min_lr_ratio", self.min_lr_ratio)
        self.grad_clip = check_number("grad_clip", self.grad_clip, minimum=0, min_open=True, allow_none=True)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("device", self.device, DEVICE_CHOICES)
        self.compile = check_bool("compile", self.compile)
        check_choice("on_nonfinite", self.on_nonfinite, NONFINITE_CHOICES)

    def validate(self) -> TrainConfig:
        """Check the fields again (after in-place changes) and return self."""
        self.__post_init__()
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_precision(precision: str, device, bf16_ok: bool | None = None) -> str:
    """The precision a run on ``device`` uses: "fp32", "bf16" or "fp16" ("auto" resolved).

    "auto": bf16 autocast on a GPU with native bf16, fp16 + GradScaler on a CUDA GPU without it (T4, V100),
    fp32 on CPU / MPS (bf16 on CPU is emulated and slower; ask for it explicitly). Under ``COURSE_NO_BF16=1``
    "auto" takes the T4 path on every device, fp16 + GradScaler on the CPU too, so that path is tested
    without a T4 (CPU fp16 is emulated: correct, not fast). Raises ValueError for a precision the device
    cannot run: fp16 on MPS, bf16 without native support. ``bf16_ok`` overrides the probe (for tests).
    """
    check_choice("precision", precision, PRECISIONS)
    device = torch.device(device)
    if precision in ("auto", "bf16") and bf16_ok is None:
        bf16_ok = bf16_supported(device)
    if precision == "auto":
        if device.type == "cuda" or no_bf16_forced():
            return "bf16" if bf16_ok else "fp16"
        return "fp32"
    if precision == "fp16" and device.type not in ("cuda", "cpu"):
        raise ValueError(
            f"precision='fp16' is not available on device '{device.type}' (fp16 training needs autocast and a "
            "GradScaler for the device: CUDA, or the CPU for testing); accepted here: ('fp32', 'bf16', 'auto')"
        )
    if precision == "bf16" and not bf16_ok:
        raise ValueError(
            f"precision='bf16' is not available on device '{device}' (no native bfloat16, e.g. a T4); "
            "accepted here: ('fp32', 'fp16', 'auto')"
        )
    return precision


def grad_scaler(precision: str, device):
    """A GradScaler for fp16 (None otherwise): fp16's 5-bit exponent flushes small gradients to zero, so
    the loss is multiplied by a large factor before backward and the gradients divided by it before the
    step; the scale halves whenever a step overflows (that step is skipped) and grows again after 2,000
    clean steps."""
    return torch.amp.GradScaler(torch.device(device).type) if precision == "fp16" else None


def autocast(precision: str, device) -> contextlib.AbstractContextManager:
    """The autocast context for a resolved precision (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(torch.device(device).type, dtype=dtype)


def lr_factor(step: int, steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning-rate multiplier for 0-based ``step``: linear warm-up, then cosine down to ``min_lr_ratio``.

    Step ``warmup_steps - 1`` reaches 1.0; the last step (``steps - 1``) reaches ``min_lr_ratio``.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, steps - 1 - warmup_steps))
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (dim >= 2) only; fused kernels on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},  # biases, norm gains
    ]
    groups = [g for g in groups if g["params"]]
    fused = torch.device(device).type == "cuda"
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused or None)


# ---------------------------------------------------------------------------------------------- loop


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[dict], device, precision: str = "fp32") -> float:
    """Mean loss of ``model`` over ``batches`` (eval mode, no gradients); perplexity = exp of it."""
    was_training = model.training
    model.eval()
    losses = []
    for batch in batches:
        with autocast(precision, device):
            losses.append(model(**{k: v.to(device) for k, v in batch.items()}).loss.float())
    model.train(was_training)
    if not losses:
        raise ValueError("evaluate() got no batches")
    return torch.stack(losses).mean().item()


def forward_backward(
    model, batch: dict[str, torch.Tensor], micro_batches: int, device, precision: str = "fp32", scaler=None
) -> torch.Tensor:
    """Accumulate the gradients of one batch in ``micro_batches`` pieces; return the batch loss (detached).

    Each micro-batch loss is scaled by 1/k before ``backward()``, so the summed gradients are the gradient
    of the mean of the k micro-batch losses: exactly the full batch's gradient when every micro-batch has
    the same number of loss tokens (CLM windows, T5 span corruption), very nearly so for MLM.
    """
    total = torch.zeros((), device=device)
    size = batch["input_ids"].shape[0] // micro_batches
    for i in range(micro_batches):
        micro = {k: v[i * size : (i + 1) * size].to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(precision, device):
            loss = model(**micro).loss / micro_batches
        (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.detach().float()
    return total


def _check_args(model, cfg, resume_from, checkpoint_dir, checkpoint_every):
    """(cfg, checkpoint_dir, checkpoint_every) checked before anything runs, each error naming its argument."""
    if cfg is not None and not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig or None, got {type(cfg).__name__}")
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=0)
    if checkpoint_every and checkpoint_dir is None:
        raise ValueError(f"checkpoint_every={checkpoint_every!r} needs a checkpoint_dir; accepted: 0 without one")
    if resume_from is not None and (not isinstance(resume_from, (str, os.PathLike)) or not str(resume_from).strip()):
        raise ValueError(f"resume_from={resume_from!r} is not valid; accepted: a checkpoint folder path or None")
    if checkpoint_dir is not None:  # refuse a folder of other files now, not after an hour of training
        checkpoint_dir = check_checkpoint_dir(checkpoint_dir, "checkpoint_dir")
    return (cfg or TrainConfig()).validate(), checkpoint_dir, checkpoint_every


def _next_batch(batches, step: int, cfg: TrainConfig, limits, values: bool) -> dict:
    """The next batch, checked: a clear ValueError for a short data source or a batch the model cannot take."""
    try:
        batch = next(batches)
    except StopIteration:
        raise ValueError(f"data ran out after {step - 1} batches; cfg.steps={cfg.steps} needs more") from None
    check_batch(batch, step, *limits, values=values)
    if batch["input_ids"].shape[0] != cfg.batch_size:
        raise ValueError(
            f"data gave a batch of {batch['input_ids'].shape[0]} sequences but batch_size={cfg.batch_size}; "
            "make them agree"
        )
    return batch


def train(
    model: torch.nn.Module,
    data: Iterable[dict],
    cfg: TrainConfig | None = None,
    eval_data=None,
    *,
    resume_from=None,
    checkpoint_dir=None,
    checkpoint_every: int = 0,
    callback: Callable[[int, History], bool | None] | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` in place on ``data`` and return the :class:`History`.

    ``data``: batches of ``cfg.batch_size`` sequences (dicts for ``model(**batch)`` with ``labels``), e.g. a
    :class:`TokenBatches`. ``eval_data``: held-out batches (a :class:`TokenBatches` or an iterable; its first
    ``cfg.eval_batches`` are used every time). ``checkpoint_dir`` / ``checkpoint_every``: save there every that
    many steps (and at the end). ``resume_from``: a checkpoint folder; the run continues from its step and on
    CPU reproduces an uninterrupted run bit for bit (weights, optimizer, scheduler, RNG, data position and the
    running loss sum are restored; an iterable without ``load_state_dict`` is fast-forwarded instead).
    ``callback(step, history)`` runs after every step; returning True stops training there.

    Checked before the first step, with a ValueError naming the argument: ``checkpoint_dir`` (a new or empty
    folder, or an earlier checkpoint -- never a folder of other files; writable), token ids within the model's
    vocabulary, sequences within its positions, batches with ``labels``. A NaN/inf loss (or gradient norm
    without a GradScaler, whose overflow-skipped steps are routine) raises :class:`NonFiniteLossError` before
    the weights change, or skips that update with ``cfg.on_nonfinite="skip"`` (``history.skipped_steps``);
    non-finite weights are never saved. This check syncs the device once per step on the CPU; on a GPU (fused
    AdamW) the update is cancelled on the device and the check read at log steps.
    """
    cfg, checkpoint_dir, checkpoint_every = _check_args(model, cfg, resume_from, checkpoint_dir, checkpoint_every)
    limits = model_limits(model)
    if isinstance(data, TokenBatches):
        check_token_batches(data, *limits)
    device = get_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model.to(device).train()
    optimizer = make_optimizer(model, cfg, device)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
    )
    scaler = grad_scaler(precision, device)
    # fused AdamW (CUDA) can cancel an update on the device: the NaN/inf check then never stalls the GPU
    guard = NonFiniteGuard(optimizer, scaler, cfg.on_nonfinite, cfg.lr, deferred=bool(optimizer.defaults.get("fused")))
    forward = torch.compile(model) if cfg.compile else model
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state = (cfg, data, model, optimizer, schedule, scaler)  # what a checkpoint saves
    run, batches = start_run(cfg, data, device, resume_from, model, optimizer, schedule, scaler)
    if run.step >= cfg.steps:
        return run.history
    eval_set = take_eval_set(eval_data, cfg.eval_batches) if eval_data is not None and cfg.eval_every else []

    bar = progress_bar(total=cfg.steps, initial=run.step, desc="train", disable=not progress, unit="step")
    grad_norm = torch.full((), float("nan"))
    first = run.step + 1
    run.restart_clock()
    try:
        for step in range(first, cfg.steps + 1):
            batch = _next_batch(batches, step, cfg, limits, values=step == first)
            lr = optimizer.param_groups[0]["lr"]
            loss = forward_backward(forward, batch, cfg.micro_batches, device, precision, scaler)  # forward, backward
            if scaler:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            if cfg.grad_clip:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)  # clip
            # step: the AdamW update, unless the loss (or, without a GradScaler, the gradient norm) is NaN/inf
            bad = guard.step(step, lr, loss, grad_norm if cfg.grad_clip else None, params, run.history)
            optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # after a step the GradScaler skipped (fp16 overflow) torch warns
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step\\(\\)`")
                schedule.step()  # schedule: the learning rate of the next step
            run.add(loss, bad, guard.deferred, batch["input_ids"].numel())
            run.step = step

            last = step == cfg.steps
            if step % cfg.log_every == 0 or last:  # log
                run.interval_steps -= guard.flush(run.history, step)
                mean_loss = run.record(step, lr, grad_norm)
                bar.set_postfix(loss=f"{mean_loss:.3f}", tok_s=f"{run.history.tokens_per_s[-1]:,.0f}", refresh=False)
            if eval_set and (step % cfg.eval_every == 0 or last):
                run.record_eval(step, evaluate(model, eval_set, device, precision))
            if checkpoint_dir is not None and ((checkpoint_every and step % checkpoint_every == 0) or last):
                run.interval_steps -= guard.flush(run.history, step)  # never save after an unreported bad step
                save_run(checkpoint_dir, run, *state)
            bar.update(1)
            if step % cfg.log_every == 0:  # evaluation and saving are not training throughput
                run.restart_clock()
            if callback is not None and callback(step, run.history):
                break
        guard.flush(run.history, run.step)
    finally:
        bar.close()
    return run.history
