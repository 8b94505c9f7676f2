"""What a training run checks as it goes: batches that fit the model, and losses that stay finite.

* :func:`check_batch` / :func:`check_token_batches`: a clear ``ValueError`` before a step for what would
  otherwise fail deep inside the model (no labels, token ids beyond the vocabulary, sequences longer than
  the positions).
* :class:`NonFiniteGuard`: a NaN/inf loss (or gradient norm, without a GradScaler) either stops the run
  with :class:`NonFiniteLossError` or skips that update (``on_nonfinite="skip"``). On the CPU it checks
  every step (a sync costs nothing there). With a fused optimizer (CUDA) a check every step would stall the
  GPU -- the CPU could no longer queue work ahead -- so the update of a bad step is cancelled *on the
  device* (the fused optimizer's ``found_inf`` input, the mechanism GradScaler uses) and the flags are read
  at the next log step, checkpoint or end of the run. Either way no non-finite update reaches the weights.
"""

from __future__ import annotations

import torch

from utils.objectives import IGNORE_INDEX


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite: the run diverged (``on_nonfinite="stop"``)."""


# ------------------------------------------------------------------------------------------- batches


def model_limits(model) -> tuple[int | None, int | None]:
    """(vocabulary size, longest sequence) of a transformers model; None where it has no such limit."""
    config = getattr(model, "config", None)
    vocab = getattr(config, "vocab_size", None)
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embeddings is not None and hasattr(embeddings, "num_embeddings"):
        vocab = embeddings.num_embeddings
    positions = getattr(config, "max_position_embeddings", None)  # None for T5 (relative positions)
    return vocab, positions


def _check_ids_fit(name: str, ids: torch.Tensor, vocab: int | None, where: str) -> None:
    if vocab is None or ids.numel() == 0:
        return
    ignored = ids == IGNORE_INDEX
    if bool(ignored.all()):
        return
    lo, hi = torch.aminmax(ids.masked_fill(ignored, 0))  # one pass, no boolean indexing
    lo, hi = int(lo), int(hi)
    if hi >= vocab or lo < 0:
        bad = hi if hi >= vocab else lo
        raise ValueError(
            f"data: {where} has {name} id {bad}, but the model's vocabulary has ids 0..{vocab - 1}; accepted: "
            f"ids below {vocab} (tokenize with the model's tokenizer, or build the model with vocab_size > {bad})"
        )


def check_token_batches(data, vocab: int | None, positions: int | None) -> None:
    """Check a :class:`utils.batching.TokenBatches` once, before training: its ids and window length."""
    _check_ids_fit("token", data.tokens, vocab, "tokens")
    if positions is not None and data.seq_len > positions:
        raise ValueError(
            f"data: seq_len={data.seq_len} is longer than the model's {positions} positions; accepted: "
            f"seq_len <= {positions}"
        )


def check_batch(batch, step: int, vocab: int | None, positions: int | None, values: bool = True) -> None:
    """Clear errors, before the step, for what would fail deep inside the model.

    ``values=False`` checks keys, shapes and types only: reading the ids of a batch already on a GPU would
    sync the device, so the trainer checks values on the first batch and on CPU batches (cheap) only."""
    where = f"batch {step}"
    if not isinstance(batch, dict) or not isinstance(batch.get("input_ids"), torch.Tensor):
        got = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"data: {where} is {got}; accepted: a dict with 'input_ids' and 'labels' tensors")
    if "labels" not in batch:
        raise ValueError(
            f"data: {where} has no 'labels' (keys {sorted(batch)}): the model computes no loss without them; "
            "accepted: batches from utils.objectives (make_batch) or TokenBatches"
        )
    ids = batch["input_ids"]
    if ids.dim() != 2 or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"data: {where} input_ids has shape {tuple(ids.shape)}, {ids.dtype}; accepted: (B, T) integers")
    if positions is not None and ids.shape[1] > positions:
        raise ValueError(
            f"data: {where} has sequences of {ids.shape[1]} tokens, longer than the model's {positions} "
            f"positions; accepted: at most {positions} (a shorter seq_len)"
        )
    if values or ids.device.type == "cpu":
        _check_ids_fit("token", ids, vocab, where)
        _check_ids_fit("label", batch["labels"], vocab, where)


# ------------------------------------------------------------------------------------- finite losses


def _grad_norm(params) -> torch.Tensor | None:
    """The global gradient norm (when clipping is off and so did not compute it)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    if hasattr(torch.nn.utils, "get_total_norm"):  # torch >= 2.6: a few fused kernels, not one per tensor
        return torch.nn.utils.get_total_norm(grads)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.detach().float()) for g in grads]))


class NonFiniteGuard:
    """Stops or skips steps whose loss (or, without a GradScaler, gradient norm) is NaN or infinite.

    ``on_nonfinite``: "stop" raises :class:`NonFiniteLossError`, "skip" records the step in
    ``history.skipped_steps``. ``deferred`` (a fused optimizer: CUDA) cancels bad updates on the device and
    reports them at :meth:`flush`, which the trainer calls at log steps, before saving and at the end.
    """

    def __init__(self, optimizer, scaler, on_nonfinite: str, lr: float, deferred: bool):
        self.optimizer, self.scaler, self.on_nonfinite, self.base_lr = optimizer, scaler, on_nonfinite, lr
        self.deferred = deferred
        self.pending: list[tuple[int, float, torch.Tensor]] = []  # (step, lr, [loss bad, grad bad]) to read

    def _flags(self, loss: torch.Tensor, grad_norm) -> torch.Tensor:
        loss = loss.detach().float().reshape(())
        grad = torch.zeros((), device=loss.device) if grad_norm is None else grad_norm.detach().float().reshape(())
        return ~torch.isfinite(torch.stack([loss, grad.to(loss.device)]))

    def step(self, step: int, lr: float, loss: torch.Tensor, grad_norm, params, history) -> torch.Tensor | bool:
        """Apply the optimizer update of ``step`` unless its loss or gradients are not finite.

        ``grad_norm``: the clipping norm (None without clipping: computed here). Returns whether the step is
        bad -- a Python bool, or with ``deferred`` a device tensor read later."""
        if self.scaler is not None:  # overflowing gradients are routine there: the scaler skips them itself
            grad_norm = None
        elif grad_norm is None:
            grad_norm = _grad_norm(params)
        flags = self._flags(loss, grad_norm)
        if not self.deferred:
            loss_bad, grad_bad = flags.tolist()  # one sync: free on the CPU
            if loss_bad or grad_bad:
                what = f"the loss is {loss.item()}" if loss_bad else f"the gradient norm is {grad_norm.item()}"
                self._skip_or_stop(what, step, lr, stopped_at=step, history=history)
                return True
            self._update()
            return False
        bad = flags.any()
        self.pending.append((step, lr, flags))
        if self.scaler is not None:
            self._update()  # a NaN loss makes NaN gradients: the scaler's own found_inf cancels the update
        else:
            self.optimizer.found_inf = bad.float()  # the fused kernel skips the update (and its step count)
            try:
                self.optimizer.step()
            finally:
                del self.optimizer.found_inf
        return bad

    def _update(self) -> None:
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()

    def flush(self, history, step: int) -> int:
        """Read the pending flags (one sync); stop or record the bad steps. Returns how many were bad."""
        if not self.pending:
            return 0
        rows = torch.stack([f for _, _, f in self.pending]).tolist()
        pending, self.pending = self.pending, []
        n_bad = 0
        for (s, lr, _), (loss_bad, grad_bad) in zip(pending, rows):
            if loss_bad or grad_bad:
                n_bad += 1
                self._skip_or_stop("the loss is not finite" if loss_bad else "the gradient norm is not finite",
                                   s, lr, stopped_at=step, history=history)
        return n_bad

    def _skip_or_stop(self, problem: str, step: int, lr: float, stopped_at: int, history) -> None:
        if self.on_nonfinite == "stop":
            when = ("stopped before updating the weights" if stopped_at == step else
                    f"its update was cancelled on the device and the run stopped at step {stopped_at}, where the "
                    "check is read (on a GPU flags are read at log steps, so the GPU is never stalled)")
            raise NonFiniteLossError(
                f"step {step}: {problem} (learning rate {lr:.3g}): the training diverged; {when} (checkpoints "
                f"already written are kept). Lower the learning rate (cfg.lr={self.base_lr:g}), keep grad_clip on, "
                "or pass TrainConfig(on_nonfinite='skip') to skip such steps instead."
            )
        history.skipped_steps.append(step)
        if self.scaler is not None and not self.deferred:  # what the scaler does after an overflow
            self.scaler.update(self.scaler.get_scale() * self.scaler.get_backoff_factor())
