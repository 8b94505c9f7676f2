"""Throughput accounting: FLOPs per token, achieved FLOP/s, model FLOPs utilisation (MFU), budget cost.

Pure functions (no torch needed except :func:`model_flops_per_token`). GPU peaks come from
:mod:`utils.hardware` (re-exported here: :data:`PEAK_FLOPS`, :func:`peak_flops_for`, :func:`device_peak_flops`).

Training FLOPs per token of a dense transformer (Chowdhery et al. 2022, "PaLM", Appendix B; the same
count as Hoffmann et al. 2022, "Chinchilla", Appendix F, and Kaplan et al. 2020, Sec. 2.1):

    6 N + 12 * n_layers * d_model * seq_len

6N: each parameter does one multiply-add (2 FLOPs) per token forward and twice that backward
(2N + 4N). The second term is the attention score and weighted-sum matmuls (Q K^T and A V), which have
no parameters: forward 2 * 2 * n_layers * seq_len * d_model per token, times 3 for forward + backward.
MFU = achieved model FLOP/s / peak FLOP/s (PaLM's definition: recomputation is not counted).
"""

from __future__ import annotations

from dataclasses import dataclass

# The GPU peaks live in the one hardware table; re-exported here, where notebooks and benchmarks import them.
from utils.hardware import PEAK_FLOPS, device_peak_flops, peak_flops_for  # noqa: F401
from utils.validate import check_int, check_number

#: Seconds in a day, and FLOPs in one petaflop/s-day (10^15 FLOP/s for 86,400 s).
SECONDS_PER_DAY = 86_400
PETAFLOP_S_DAY = 1e15 * SECONDS_PER_DAY  # 8.64e19


def training_flops_per_token(n_params: int, n_layers: int, d_model: int, seq_len: int) -> float:
    """Training FLOPs per token: ``6 * N + 12 * n_layers * d_model * seq_len`` (PaLM, Appendix B)."""
    n_params = check_number("n_params", n_params, minimum=0, min_open=True)
    n_layers = check_int("n_layers", n_layers, minimum=1)
    d_model = check_int("d_model", d_model, minimum=1)
    seq_len = check_int("seq_len", seq_len, minimum=1)
    return 6.0 * n_params + 12.0 * n_layers * d_model * seq_len


def model_flops_per_token(model, seq_len: int) -> float:
    """:func:`training_flops_per_token` for a ``transformers`` model, shape read from ``model.config``.

    N counts every distinct parameter once (a tied input/output embedding once: the output projection is a
    real matmul; lookup-only position tables make this a slight overcount). For an encoder-decoder the
    layers of both stacks are counted: an upper bound, since each token goes through only one stack
    (Brown et al. 2020 count such models at ~3N per token).
    """
    cfg = model.config
    n_layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    if getattr(cfg, "is_encoder_decoder", False):
        n_layers = cfg.num_layers + cfg.num_decoder_layers
    d_model = getattr(cfg, "hidden_size", None) or getattr(cfg, "d_model", None) or cfg.n_embd
    n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    return training_flops_per_token(n_params, int(n_layers), int(d_model), seq_len)


def achieved_flops(flops_per_token: float, tokens_per_s: float) -> float:
    """Model FLOP/s achieved: FLOPs per token x tokens per second."""
    flops_per_token = check_number("flops_per_token", flops_per_token, minimum=0, min_open=True)
    tokens_per_s = check_number("tokens_per_s", tokens_per_s, minimum=0)
    return flops_per_token * tokens_per_s


def mfu(flops_per_token: float, tokens_per_s: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation in [0, 1]: achieved FLOP/s / ``peak``; None when the peak is unknown (CPU)."""
    if peak is None:
        return None
    peak = check_number("peak", peak, minimum=0, min_open=True)
    return achieved_flops(flops_per_token, tokens_per_s) / peak


@dataclass(frozen=True)
class BudgetCost:
    """How long a compute budget takes at a given speed, and what it costs."""

    flops: float  # the budget, in FLOPs
    seconds: float  # wall-clock seconds at the given FLOP/s
    days: float  # the same in days
    pfs_days: float  # the budget in petaflop/s-days (8.64e19 FLOPs each)
    cost: float | None  # seconds / 3600 x price per hour (None without a price)


def budget_cost(flops: float, flops_per_s: float, price_per_hour: float | None = None) -> BudgetCost:
    """Turn a FLOP budget into seconds, days and money at ``flops_per_s`` (e.g. ``6 * N * D`` at achieved FLOP/s)."""
    flops = check_number("flops", flops, minimum=0, min_open=True)
    flops_per_s = check_number("flops_per_s", flops_per_s, minimum=0, min_open=True)
    price_per_hour = check_number("price_per_hour", price_per_hour, minimum=0, allow_none=True)
    seconds = flops / flops_per_s
    cost = None if price_per_hour is None else seconds / 3600 * price_per_hour
    return BudgetCost(flops, seconds, seconds / SECONDS_PER_DAY, flops / PETAFLOP_S_DAY, cost)
