"""One training loop for all three objectives (CLM decoder, MLM encoder, span-corruption encoder-decoder).

What it does each optimizer step: take one batch of ``batch_size`` sequences, split it into ``micro_batches``
pieces (gradient accumulation, each loss scaled by 1/k), forward + backward each under the chosen precision,
clip the global gradient norm, AdamW step, warm-up + cosine learning-rate schedule. Every ``log_every`` steps
it records loss, learning rate, tokens seen and tokens/s in a :class:`History`; every ``eval_every`` steps
the loss and perplexity on held-out batches; every ``checkpoint_every`` steps a checkpoint
(:mod:`utils.checkpoint`) from which ``train(..., resume_from=path)`` continues exactly.

Data: any iterable of batches (dicts of tensors for ``model(**batch)``), or :class:`TokenBatches`, an infinite,
deterministic and resumable batch maker over a 1-D tensor of token ids for any of the three objectives.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields

import torch

from utils.batching import IndexedBatches
from utils.checkpoint import check_checkpoint_dir, load_checkpoint, save_checkpoint
from utils.env import DEVICE_CHOICES, bf16_supported, get_device, no_bf16_forced, progress_bar
from utils.guards import (
    NonFiniteGuard,
    NonFiniteLossError,  # noqa: F401 (re-exported: the error train() raises)
    check_batch,
    check_token_batches,
    model_limits,
)
from utils.objectives import OBJECTIVES, check_token_ids, make_batch
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
    precision: str = (
        "auto"  # "fp32" | "bf16" | "fp16" | "auto" (bf16 where native, fp16 on older GPUs, fp32 on CPU)
    )
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
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not valid; accepted: {PRECISIONS}")
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


# ---------------------------------------------------------------------------------------------- data


def batch_seed(seed: int, index: int) -> int:
    """The generator seed of batch ``index`` of a stream seeded ``seed`` (what :class:`TokenBatches` uses).

    torch's CPU generator (mt19937) keeps only the low 32 bits of a seed, so ``seed * 2**32 + index`` would
    give every seed the same stream. Instead each seed starts the index at its own point of a Weyl sequence
    (``seed`` times 2**32 / golden ratio, mod 2**32): streams of different seeds meet only ~10^9 batches
    apart, and seed 0 keeps the plain ``index``.
    """
    return (index + seed * 0x9E3779B9) % 2**32


class TokenBatches(IndexedBatches):
    """Infinite, deterministic batches of random windows of ``tokens``, with an objective applied.

    Batch number ``i`` depends only on (``seed``, ``i``): a fresh ``torch.Generator`` seeded with both picks
    ``batch_size`` window starts and then the objective's random choices. So the position (how many batches
    were drawn) is the whole iterator state, and :meth:`batch` gives random access (held-out sets).

    ``objective``: "clm", "mlm" or "span"; ``ids``: the special ids that objective needs
    (see :func:`utils.objectives.make_batch`), e.g. ``mask_id=..., vocab_size=...`` for "mlm".
    It is an iterator: a second ``train()`` on the same object continues where the first stopped
    (``position = 0`` starts over).
    """

    def __init__(
        self,
        tokens: torch.Tensor,
        objective: str = "clm",
        batch_size: int = 16,
        seq_len: int = 128,
        *,
        seed: int = 0,
        **ids,
    ):
        tokens = check_token_ids("tokens", tokens, dim=1)
        check_choice("objective", objective, OBJECTIVES)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        seq_len = check_int("seq_len", seq_len, minimum=2)
        seed = check_int("seed", seed, minimum=0)
        if batch_size * seq_len > len(tokens):
            raise ValueError(
                f"batch_size * seq_len = {batch_size} * {seq_len} = {batch_size * seq_len} tokens is larger "
                f"than the data ({len(tokens)} tokens); use a smaller batch_size or seq_len, or more text"
            )
        self.tokens = tokens.long()
        self.objective, self.ids = objective, ids
        self.batch_size, self.seq_len, self.seed = batch_size, seq_len, seed
        self.position = 0  # batches drawn so far = index of the next one
        self.batch(0)  # fail now, not mid-training, on missing or wrong special ids

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        """Batch number ``index`` (does not move the position)."""
        g = torch.Generator().manual_seed(batch_seed(self.seed, index))
        starts = torch.randint(
            0, len(self.tokens) - self.seq_len + 1, (self.batch_size,), generator=g
        )  # (B,)
        windows = self.tokens[starts[:, None] + torch.arange(self.seq_len)]  # (B, T)
        return make_batch(self.objective, windows, generator=g, **self.ids)



def split_tokens(tokens: torch.Tensor, eval_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out): the last ``eval_fraction`` of a 1-D token tensor is held out."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 1:
        raise ValueError(f"tokens must be a 1-D tensor of token ids; got {getattr(tokens, 'shape', type(tokens).__name__)}")
    eval_fraction = check_fraction("eval_fraction", eval_fraction, low_open=True, high_open=True)
    cut = int(len(tokens) * (1 - eval_fraction))
    return tokens[:cut], tokens[cut:]


# ------------------------------------------------------------------------------------------- history


@dataclass
class History:
    """What a run recorded, for plots (:func:`utils.plots.plot_history`) and checks."""

    step: list[int] = field(default_factory=list)  # optimizer step of each record
    loss: list[float] = field(
        default_factory=list
    )  # training loss, averaged over the steps since the last record
    lr: list[float] = field(default_factory=list)  # learning rate used at that step
    tokens_seen: list[int] = field(default_factory=list)  # input tokens consumed so far
    tokens_per_s: list[float] = field(default_factory=list)  # throughput since the last record
    grad_norm: list[float] = field(default_factory=list)  # global gradient norm before clipping (nan if off)
    eval_step: list[int] = field(default_factory=list)  # steps at which the held-out loss was measured
    eval_loss: list[float] = field(default_factory=list)  # mean held-out loss
    eval_tokens_seen: list[int] = field(default_factory=list)  # tokens seen at those evaluations
    skipped_steps: list[int] = field(default_factory=list)  # steps whose update was skipped (NaN/inf loss)

    @property
    def eval_perplexity(self) -> list[float]:
        """exp(held-out loss): the effective number of equally likely next tokens."""
        return [math.exp(x) for x in self.eval_loss]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> History:
        return cls(**{f.name: list(data.get(f.name, [])) for f in fields(cls)})


# ---------------------------------------------------------------------------------------------- loop


def _take_eval_set(eval_data, n: int) -> list[dict]:
    if hasattr(eval_data, "batch"):  # TokenBatches: random access, independent of its position
        return [eval_data.batch(i) for i in range(n)]
    return list(itertools.islice(iter(eval_data), n))


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


def _split(batch: dict[str, torch.Tensor], k: int) -> list[dict[str, torch.Tensor]]:
    """k equal micro-batches along dim 0."""
    size = next(iter(batch.values())).shape[0] // k
    return [{name: t[i * size : (i + 1) * size] for name, t in batch.items()} for i in range(k)]


#: Fields that change the trajectory: resuming with different values is no longer an exact continuation.
_TRAJECTORY_FIELDS = (
    "steps",
    "batch_size",
    "micro_batches",
    "lr",
    "weight_decay",
    "betas",
    "warmup_steps",
    "min_lr_ratio",
    "grad_clip",
    "precision",
    "seed",
)


def _warn_if_config_changed(saved: dict | None, cfg: TrainConfig) -> None:
    if not saved:
        return
    now = json.loads(json.dumps(cfg.to_dict()))  # tuples -> lists, as stored
    changed = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in _TRAJECTORY_FIELDS if saved.get(k) != now[k]]
    if changed:
        warnings.warn(
            "resuming with a config that differs from the checkpoint's (" + "; ".join(changed) + "): the run "
            "continues, but not as the original run would have",
            stacklevel=3,
        )


def forward_backward(
    model, batch: dict[str, torch.Tensor], micro_batches: int, device, precision: str = "fp32", scaler=None
) -> torch.Tensor:
    """Accumulate the gradients of one batch in ``micro_batches`` pieces; return the batch loss (detached).

    Each micro-batch loss is scaled by 1/k before ``backward()``, so the summed gradients are the gradient
    of the mean of the k micro-batch losses: exactly the full batch's gradient when every micro-batch has
    the same number of loss tokens (CLM windows, T5 span corruption), very nearly so for MLM.
    """
    total = torch.zeros((), device=device)
    for micro in _split(batch, micro_batches):
        micro = {k: v.to(device, non_blocking=True) for k, v in micro.items()}
        with autocast(precision, device):
            loss = model(**micro).loss / micro_batches
        (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.detach().float()
    return total


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
    non-finite weights are never saved. This check syncs the device once per step.
    """
    cfg = (cfg or TrainConfig()).validate()
    if not isinstance(cfg, TrainConfig):
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
    limits = model_limits(model)
    if isinstance(data, TokenBatches):
        check_token_batches(data, *limits)
    device = get_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    model.to(device)
    model.train()
    optimizer = make_optimizer(model, cfg, device)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio)
    )
    scaler = grad_scaler(precision, device)
    # fused AdamW (CUDA) can cancel an update on the device: the NaN/inf check then never stalls the GPU
    guard = NonFiniteGuard(optimizer, scaler, cfg.on_nonfinite, cfg.lr, deferred=bool(optimizer.defaults.get("fused")))
    forward = torch.compile(model) if cfg.compile else model
    params = [p for group in optimizer.param_groups for p in group["params"]]

    history, start = History(), 0
    # sum of the step losses since the last record, kept on the device: no sync until it is logged
    interval_loss = torch.zeros((), device=device)
    interval_steps, tokens_seen = 0, 0
    if resume_from is not None:
        ckpt = load_checkpoint(resume_from, model, optimizer, scheduler, scaler, device=device)
        _warn_if_config_changed(ckpt.config, cfg)
        start, history = ckpt.step, History.from_dict(ckpt.history or {})
        interval_loss = ckpt.extra["interval_loss"].to(device)
        interval_steps, tokens_seen = ckpt.extra["interval_steps"], ckpt.extra["tokens_seen"]
        if hasattr(data, "load_state_dict") and ckpt.data_state is not None:
            data.load_state_dict(ckpt.data_state)
            batches = iter(data)
        else:  # a re-iterable such as a list: skip what was already consumed
            batches = itertools.islice(iter(data), start, None)
    else:
        torch.manual_seed(cfg.seed)  # dropout masks
        batches = iter(data)
    if start >= cfg.steps:
        return history
    eval_set = _take_eval_set(eval_data, cfg.eval_batches) if eval_data is not None and cfg.eval_every else []

    def save(step: int) -> None:
        extra = {"interval_loss": interval_loss, "interval_steps": interval_steps, "tokens_seen": tokens_seen}
        data_state = data.state_dict() if hasattr(data, "state_dict") else None
        save_checkpoint(
            checkpoint_dir,
            model,
            optimizer,
            scheduler,
            step=step,
            history=history,
            data_state=data_state,
            scaler=scaler,
            config=cfg.to_dict(),
            extra=extra,
        )

    bar = progress_bar(total=cfg.steps, initial=start, desc="train", disable=not progress, unit="step")
    t_last, tokens_last = time.perf_counter(), tokens_seen
    grad_norm = torch.full((), float("nan"))
    try:
        for step in range(start + 1, cfg.steps + 1):
            try:
                batch = next(batches)
            except StopIteration:
                raise ValueError(
                    f"data ran out after {step - 1} batches; cfg.steps={cfg.steps} needs more"
                ) from None
            check_batch(batch, step, *limits, values=step == start + 1)
            if batch["input_ids"].shape[0] != cfg.batch_size:
                raise ValueError(
                    f"data gave a batch of {batch['input_ids'].shape[0]} sequences but "
                    f"batch_size={cfg.batch_size}; make them agree"
                )
            lr = optimizer.param_groups[0]["lr"]
            loss = forward_backward(forward, batch, cfg.micro_batches, device, precision, scaler)
            if scaler:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            if cfg.grad_clip:
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            # the update, unless the loss (or, without a GradScaler, the gradient norm) is NaN/inf
            bad = guard.step(step, lr, loss, grad_norm if cfg.grad_clip else None, params, history)
            optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # after a step the GradScaler skipped (fp16 overflow) torch warns
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step\\(\\)`")
                scheduler.step()
            tokens_seen += batch["input_ids"].numel()
            if guard.deferred:  # a bad step adds no loss; it is taken off the count when the flags are read
                interval_loss += torch.where(bad, torch.zeros_like(loss), loss)
                interval_steps += 1
            elif not bad:
                interval_loss += loss
                interval_steps += 1

            if step % cfg.log_every == 0 or step == cfg.steps:
                interval_steps -= guard.flush(history, step)
                # .item() syncs: only at log steps (nan when every step since the last record was skipped)
                mean_loss = interval_loss.item() / interval_steps if interval_steps else float("nan")
                now = time.perf_counter()
                history.step.append(step)
                history.loss.append(mean_loss)
                history.lr.append(lr)
                history.tokens_seen.append(tokens_seen)
                history.tokens_per_s.append((tokens_seen - tokens_last) / max(now - t_last, 1e-9))
                history.grad_norm.append(float(grad_norm))
                bar.set_postfix(
                    loss=f"{mean_loss:.3f}", tok_s=f"{history.tokens_per_s[-1]:,.0f}", refresh=False
                )
                interval_loss.zero_()
                interval_steps = 0
            if eval_set and (step % cfg.eval_every == 0 or step == cfg.steps):
                history.eval_step.append(step)
                history.eval_loss.append(evaluate(model, eval_set, device, precision))
                history.eval_tokens_seen.append(tokens_seen)
            if checkpoint_dir is not None and (
                (checkpoint_every and step % checkpoint_every == 0) or step == cfg.steps
            ):
                interval_steps -= guard.flush(history, step)  # never save after an unreported bad step
                save(step)
            bar.update(1)
            if step % cfg.log_every == 0:  # evaluation and saving are not training throughput
                t_last, tokens_last = time.perf_counter(), tokens_seen
            if callback is not None and callback(step, history):
                break
        guard.flush(history, step)
    finally:
        bar.close()
    return history
