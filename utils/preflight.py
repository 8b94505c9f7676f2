"""Checks before a notebook commits to a device: are Apple MPS's numbers right, and does the step fit?

* :func:`check_mps` -- where MPS is the device, train a copy of the model for a few steps on MPS and on
  the CPU (same weights, same batches, dropout off) and compare the losses; beyond ``LOSS_RTOL`` the
  notebook falls back to the CPU with a message instead of training silently on wrong numbers (MPS has
  had wrong kernels in several torch releases). :func:`compare_losses` is the decision, a pure function.
* :func:`fits_device` -- before a GPU cell that could run out of memory, predict the step's peak bytes
  with :mod:`utils.memory`, read what the device reports free, and halve the batch until it fits (or
  explain why nothing fits) instead of dying with a CUDA out-of-memory error. :func:`fit_batch` is the
  decision, a pure function of the figures.

Typical use (notebook 02's first training cell)::

    check = check_mps(model, [data.batch(i) for i in range(3)], device)
    device = torch.device(check.device)  # "cpu" when MPS disagreed; check.message says why
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from utils.memory import activation_memory, format_bytes, model_state_bytes
from utils.validate import check_choice, check_int, check_number

# Relative tolerance between MPS's and the CPU's loss at each step. Both run fp32; reductions summed in
# another order differ by ~1e-6 relative, and a few AdamW steps at lr 1e-4 move each weight by at most
# ~1e-4, so a correct device stays well inside 1e-3; the MPS bugs seen in the wild (wrong results of a
# kernel, NaN) move the loss by percent or more.
LOSS_RTOL = 1e-3
SAFETY = 1.2  # predicted peak x 1.2: allocator rounding and fragmentation (utils.memory counts neither)
RESERVE_BYTES = 512 * 2**20  # CUDA context and cuBLAS workspaces, also outside utils.memory's count


@dataclass(frozen=True)
class DeviceCheck:
    """The outcome of comparing a device's training losses with the CPU's."""

    device: str  # the device to train on: the one checked, or "cpu" after a disagreement
    cpu_losses: tuple  # the CPU's loss at each step
    device_losses: tuple  # the checked device's loss at each step (empty when no check was needed)
    max_rel_diff: float  # the largest |device - cpu| / |cpu| over the steps (inf for a non-finite loss)
    rtol: float  # the tolerance the difference was held to
    agree: bool  # True when every step is within rtol (or no check was needed)
    message: str  # one line for the notebook's output


def compare_losses(cpu_losses: Sequence[float], device_losses: Sequence[float], device: str,
                   *, rtol: float = LOSS_RTOL) -> DeviceCheck:
    """Decide whether ``device``'s losses agree with the CPU's, step by step, within ``rtol``."""
    rtol = check_number("rtol", rtol, minimum=0, min_open=True)
    cpu, dev = tuple(float(x) for x in cpu_losses), tuple(float(x) for x in device_losses)
    if not cpu or len(cpu) != len(dev):
        raise ValueError(f"cpu_losses and device_losses must have the same non-zero length, got {len(cpu)} "
                         f"and {len(dev)}")
    if not all(math.isfinite(x) for x in cpu):
        raise ValueError(f"cpu_losses={cpu} is not valid; accepted: finite losses (the reference must train)")
    diffs = [abs(d - c) / max(abs(c), 1e-12) if math.isfinite(d) else math.inf for c, d in zip(cpu, dev)]
    worst = max(diffs)
    agree = worst <= rtol
    shown = "non-finite" if math.isinf(worst) else f"{worst:.2e}"
    if agree:
        message = (f"{device}: losses of {len(cpu)} training steps agree with the CPU's (largest relative "
                   f"difference {shown} <= {rtol:.0e})")
    else:
        message = (f"{device}: losses of {len(cpu)} training steps differ from the CPU's on the same weights "
                   f"and batches (largest relative difference {shown} > {rtol:.0e}): training on the CPU "
                   f"instead. The {device} kernels of this torch give wrong numbers for this model; a newer "
                   "torch may fix it.")
    return DeviceCheck("cpu" if not agree else device, cpu, dev, worst, rtol, agree, message)


def step_losses(model, batches: Sequence[dict], device, *, lr: float = 1e-4) -> list[float]:
    """Train a copy of ``model`` on ``device`` for one AdamW step per batch; the loss of each step.

    Dropout is off (``eval()``) so that the two devices' random numbers cannot differ; gradients and the
    optimizer step run as in training."""
    import torch

    lr = check_number("lr", lr, minimum=0, min_open=True)
    model = copy.deepcopy(model).to(device).eval()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, foreach=False)
    losses = []
    for batch in batches:
        loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def check_mps(model, batches: Sequence[dict], device, *, lr: float = 1e-4, rtol: float = LOSS_RTOL,
              force: bool = False) -> DeviceCheck:
    """Where ``device`` is MPS (or ``force``), compare a few training steps' losses with the CPU's.

    ``batches``: the steps to compare (3 is plenty), the same tensors on both devices. Returns a
    :class:`DeviceCheck` whose ``device`` is "cpu" when the two disagree beyond ``rtol``. Other devices are
    not checked (CUDA is tested by CI's GPU job), unless ``force`` (the tests use it on the CPU)."""
    import torch

    device = torch.device(device)
    if not batches:
        raise ValueError("batches=[] is not valid; accepted: one or more batches (3 is plenty)")
    if device.type != "mps" and not force:
        return DeviceCheck(device.type, (), (), 0.0, rtol, True, f"{device.type}: no numerics check (MPS only)")
    cpu = step_losses(model, batches, "cpu", lr=lr)
    return compare_losses(cpu, step_losses(model, batches, device, lr=lr), device.type, rtol=rtol)


# -- does the step fit? --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fit:
    """A batch size that fits a device's free memory, or why none does."""

    batch_size: int  # the batch to run: the requested one, a halved one, or 0 when nothing fits
    requested: int  # the batch the notebook asked for
    need_bytes: float  # predicted peak of a step at batch_size (at 1 when nothing fits)
    free_bytes: float | None  # what the device reported free (None: it reports nothing)
    total_bytes: float | None  # the device's total memory as it reports it
    message: str  # one line for the notebook's output

    @property
    def fits(self) -> bool:
        return self.batch_size > 0


def _size(n_bytes: float) -> str:
    # MiB below a GiB: a tiny model's step would print as "0.00 GiB"
    return format_bytes(n_bytes, "GiB", 2) if n_bytes >= 2**30 else format_bytes(n_bytes, "MiB", 1)


def fit_batch(bytes_at: Callable[[int], float], batch_size: int, free_bytes: float | None,
              total_bytes: float | None = None, *, safety: float = SAFETY,
              reserve_bytes: float = RESERVE_BYTES, device: str = "the device") -> Fit:
    """The largest of batch_size, batch_size/2, ... whose predicted step fits ``free_bytes``.

    A step fits when ``bytes_at(batch) * safety + reserve_bytes <= free_bytes``. ``free_bytes=None`` (a
    device that reports nothing) keeps the batch and says so."""
    batch_size = check_int("batch_size", batch_size, minimum=1)
    safety = check_number("safety", safety, minimum=1)
    reserve_bytes = check_number("reserve_bytes", reserve_bytes, minimum=0)
    if free_bytes is None:
        return Fit(batch_size, batch_size, float(bytes_at(batch_size)), None, total_bytes,
                   f"{device} reports no free memory: batch {batch_size} unchecked")
    free_bytes = check_number("free_bytes", free_bytes, minimum=0)
    of_total = f" of {_size(total_bytes)}" if total_bytes else ""
    batch = batch_size
    while batch >= 1:
        need = float(bytes_at(batch))
        if need * safety + reserve_bytes <= free_bytes:
            verdict = "fits" if batch == batch_size else f"does not fit: batch {batch_size} -> {batch}"
            return Fit(batch, batch_size, need, free_bytes, total_bytes,
                       f"{device}: predicted step {_size(need)} (x{safety:g} + "
                       f"{_size(reserve_bytes)} reserve) vs {_size(free_bytes)} free{of_total}: "
                       f"{verdict}")
        batch //= 2
    need = float(bytes_at(1))
    return Fit(0, batch_size, need, free_bytes, total_bytes,
               f"{device}: even batch 1 needs {_size(need)} (x{safety:g} + {_size(reserve_bytes)}"
               f" reserve) but only {_size(free_bytes)} is free{of_total}: skip this cell here, or "
               "use a smaller model, shorter sequences, bf16 or gradient checkpointing")


def device_memory(device) -> tuple[float, float] | None:
    """(free, total) bytes as the device reports them: CUDA's mem_get_info, MPS's recommended maximum
    minus what its driver holds, the CPU's available RAM (psutil); None where nothing is reported."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        return float(free), float(total)
    if device.type == "mps":
        total = float(torch.mps.recommended_max_memory())
        return total - float(torch.mps.driver_allocated_memory()), total
    try:
        import psutil
    except ImportError:
        return None
    memory = psutil.virtual_memory()
    return float(memory.available), float(memory.total)


def fits_device(bytes_at: Callable[[int], float], batch_size: int, device, *,
                figures: tuple[float, float] | None = None, **options) -> Fit:
    """:func:`fit_batch` with the free/total bytes ``device`` reports (``figures`` overrides them: tests)."""
    import torch

    device = torch.device(device)
    free, total = figures if figures is not None else (device_memory(device) or (None, None))
    return fit_batch(bytes_at, batch_size, free, total, device=device.type, **options)


def _config_int(config, names: tuple[str, ...]) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"config={type(config).__name__} is not valid; accepted: a config with one of {names}")


def step_bytes(model, *, seq_len: int, precision: str = "fp32",
               optimizer: str = "adamw") -> Callable[[int], float]:
    """A function batch -> predicted peak bytes of one training step of ``model`` (a transformers model).

    Model states from the parameters' sizes (:func:`utils.memory.model_state_bytes`; autocast keeps them
    fp32), plus activations by Korthikanti et al.'s GPT formula from the config's width, depth and heads,
    with fp32 logits (:func:`utils.memory.activation_memory`); ``precision`` is the autocast format."""
    check_choice("precision", precision, ("fp32", "bf16", "fp16"))
    seq_len = check_int("seq_len", seq_len, minimum=1)
    config = model.config
    width = _config_int(config, ("hidden_size", "n_embd", "d_model"))
    layers = _config_int(config, ("num_hidden_layers", "n_layer", "num_layers"))
    layers += getattr(config, "num_decoder_layers", 0) or 0 if getattr(config, "is_encoder_decoder", False) else 0
    heads = _config_int(config, ("num_attention_heads", "n_head", "num_heads"))
    states = model_state_bytes([p.numel() for p in model.parameters()], precision="fp32", optimizer=optimizer)
    per_value = 4 if precision == "fp32" else 2

    def bytes_at(batch: int) -> float:
        acts = activation_memory(seq_len=seq_len, batch_size=batch, d_model=width, n_layers=layers,
                                 n_heads=heads, bytes_per_value=per_value, vocab_size=config.vocab_size)
        return states.total + acts.total

    return bytes_at
