"""What :func:`utils.train.train` keeps between steps and across a restart.

* :class:`History` -- what a run recorded (returned by ``train``, saved in each checkpoint, plotted).
* :class:`RunState` -- the counters behind each logged loss: the running loss sum (kept on the device, so a
  GPU is not synced every step), tokens seen, throughput clock.
* :func:`start_run` / :func:`save_run` -- a fresh start, or the restore from a checkpoint that lets a
  resumed run reproduce an uninterrupted one bit for bit on the CPU; and the save that makes it possible.
"""

from __future__ import annotations

import itertools
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, fields

import torch

from utils.checkpoint import load_checkpoint, save_checkpoint


@dataclass
class History:
    """What a run recorded, for plots (:func:`utils.plots.plot_history`) and checks."""

    step: list[int] = field(default_factory=list)  # optimizer step of each record
    loss: list[float] = field(default_factory=list)  # training loss, averaged over the steps since the last record
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


@dataclass
class RunState:
    """The counters of a run in progress; all but the clock are saved with each checkpoint."""

    history: History  # what was recorded so far
    step: int  # optimizer steps completed
    interval_loss: torch.Tensor  # sum of the step losses since the last record, on the device (no sync)
    interval_steps: int = 0  # steps in that sum
    tokens_seen: int = 0  # input tokens consumed so far
    clock: tuple[float, int] = (0.0, 0)  # (time, tokens_seen) where the throughput interval started

    def __post_init__(self):
        self.restart_clock()

    def restart_clock(self) -> None:
        self.clock = (time.perf_counter(), self.tokens_seen)

    def add(self, loss: torch.Tensor, bad, deferred: bool, n_tokens: int) -> None:
        """Count one step's tokens and (unless its update was skipped) its loss."""
        self.tokens_seen += n_tokens
        if deferred:  # ``bad`` is a device flag: a bad step adds no loss and is taken off the count later
            self.interval_loss += torch.where(bad, torch.zeros_like(loss), loss)
            self.interval_steps += 1
        elif not bad:
            self.interval_loss += loss
            self.interval_steps += 1

    def record(self, step: int, lr: float, grad_norm: torch.Tensor) -> float:
        """Append the mean loss and throughput since the last record to the history; return the loss."""
        # .item() syncs the device: only here, at log steps (nan when every step since the last was skipped)
        mean_loss = self.interval_loss.item() / self.interval_steps if self.interval_steps else float("nan")
        t0, tokens0 = self.clock
        h = self.history
        h.step.append(step)
        h.loss.append(mean_loss)
        h.lr.append(lr)
        h.tokens_seen.append(self.tokens_seen)
        h.tokens_per_s.append((self.tokens_seen - tokens0) / max(time.perf_counter() - t0, 1e-9))
        h.grad_norm.append(float(grad_norm))
        self.interval_loss.zero_()
        self.interval_steps = 0
        return mean_loss

    def record_eval(self, step: int, loss: float) -> None:
        self.history.eval_step.append(step)
        self.history.eval_loss.append(loss)
        self.history.eval_tokens_seen.append(self.tokens_seen)


#: Fields that change the trajectory: resuming with different values is no longer an exact continuation.
TRAJECTORY_FIELDS = ("steps", "batch_size", "micro_batches", "lr", "weight_decay", "betas", "warmup_steps",
                     "min_lr_ratio", "grad_clip", "precision", "seed")


def warn_if_config_changed(saved: dict | None, config: dict, stacklevel: int = 2) -> None:
    """Warn, naming each field, when a resumed run's config changes its trajectory."""
    if not saved:
        return
    now = json.loads(json.dumps(config))  # tuples -> lists, as stored
    changed = [f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in TRAJECTORY_FIELDS if saved.get(k) != now[k]]
    if changed:
        warnings.warn(
            "resuming with a config that differs from the checkpoint's (" + "; ".join(changed) + "): the run "
            "continues, but not as the original run would have",
            stacklevel=stacklevel + 1,
        )


def start_run(cfg, data, device, resume_from, model, optimizer, scheduler, scaler):
    """(:class:`RunState`, batch iterator) of a fresh run, or of the run saved in ``resume_from``.

    A restore loads weights, optimizer, scheduler, GradScaler and RNG states, the history and the counters;
    a batch source with ``load_state_dict`` (:class:`utils.batching.TokenBatches`) jumps to its saved
    position, any other iterable is fast-forwarded past the batches already consumed."""
    if resume_from is None:
        torch.manual_seed(cfg.seed)  # dropout masks
        return RunState(History(), 0, torch.zeros((), device=device)), iter(data)
    ckpt = load_checkpoint(resume_from, model, optimizer, scheduler, scaler, device=device)
    warn_if_config_changed(ckpt.config, cfg.to_dict(), stacklevel=3)
    extra = ckpt.extra
    run = RunState(History.from_dict(ckpt.history or {}), ckpt.step, extra["interval_loss"].to(device),
                   extra["interval_steps"], extra["tokens_seen"])
    if hasattr(data, "load_state_dict") and ckpt.data_state is not None:
        data.load_state_dict(ckpt.data_state)
        return run, iter(data)
    return run, itertools.islice(iter(data), run.step, None)  # a re-iterable such as a list


def save_run(folder, run: RunState, cfg, data, model, optimizer, scheduler, scaler) -> None:
    """A checkpoint of everything :func:`start_run` restores, at step ``run.step``."""
    save_checkpoint(
        folder, model, optimizer, scheduler,
        step=run.step,
        history=run.history,
        data_state=data.state_dict() if hasattr(data, "state_dict") else None,
        scaler=scaler,
        config=cfg.to_dict(),
        extra={"interval_loss": run.interval_loss, "interval_steps": run.interval_steps,
               "tokens_seen": run.tokens_seen},
    )


def take_eval_set(eval_data, n: int) -> list[dict]:
    """The held-out batches every evaluation of a run uses: the first ``n`` of ``eval_data``."""
    if hasattr(eval_data, "batch"):  # TokenBatches: random access, independent of its position
        return [eval_data.batch(i) for i in range(n)]
    return list(itertools.islice(iter(eval_data), n))
