"""Tables and predictions for the distributed-training notebook: per-rank memory next to the ZeRO formula,
communication per step, and the traffic a sharding factor implies (pure arithmetic, then the measured rows).
"""

from __future__ import annotations

from utils.display import format_table
from utils.strategies import (
    ZERO_STAGE,
    DistConfig,
    RankReport,
    comm_in_model_sizes,
    expected_bytes,
    padding_allowance,
)
from utils.validate import check_int

KB = 1e3


def ring_bytes_sent(world_size: int, shard_factor: int, model_bytes: float) -> float:
    """Bytes one rank sends per step with ring collectives, for full-parameter resharding (ZeRO-3 style).

    ``shard_factor`` f = 1 is DDP: one all-reduce of the model over N ranks, 2(N-1)/N of its bytes.
    f > 1: within each group of f ranks two all-gathers (forward, backward) and one reduce-scatter,
    3(f-1)/f of the model, plus -- when there are r = N/f > 1 replicas -- an all-reduce of this rank's
    1/f shard across the replicas, 2(r-1)/r of M/f. f = N is full sharding (no replicas).
    """
    world_size = check_int("world_size", world_size, minimum=1)
    shard_factor = check_int("shard_factor", shard_factor, minimum=1)
    if world_size % shard_factor:
        raise ValueError(f"shard_factor={shard_factor} must divide world_size={world_size}")
    n, f, m = world_size, shard_factor, model_bytes
    if f == 1:
        return 2 * (n - 1) / n * m
    r = n // f
    return 3 * (f - 1) / f * m + 2 * (r - 1) / r * m / f


def stage_label(cfg: DistConfig) -> str:
    if cfg.strategy == "hybrid":
        return f"3 in groups of {cfg.shard_factor}"
    return str(ZERO_STAGE[cfg.strategy]) + ("-like" if cfg.strategy == "zero2" else "")


def memory_rows(runs: dict[str, tuple[DistConfig, list[RankReport]]], n_params: int, shapes) -> list[tuple]:
    """One row per rank: measured local bytes (kB) next to ``zero_memory_per_device`` and the allowance."""
    rows = []
    for name, (cfg, reports) in runs.items():
        expected = expected_bytes(cfg, n_params)
        pad = padding_allowance(cfg, shapes)
        for r in reports:
            diff = r.model_state_bytes - expected
            rows.append((name, stage_label(cfg), f"{r.rank}/{r.world_size}", f"{r.param_bytes_step / KB:,.1f}",
                         f"{r.param_bytes / KB:,.1f}", f"{r.grad_bytes / KB:,.1f}", f"{r.optimizer_bytes / KB:,.1f}",
                         f"{r.model_state_bytes / KB:,.1f}", f"{expected / KB:,.1f}", f"{diff / KB:+,.1f}",
                         f"{pad / KB:,.1f}", "yes" if abs(diff) <= pad else "NO"))
    return rows


MEMORY_HEADERS = ["strategy", "ZeRO stage", "rank", "params in step kB", "params at rest kB", "grads kB",
                  "optimizer kB", "measured kB", "formula kB", "diff kB", "allowed kB", "within"]


def comm_rows(runs: dict[str, tuple[DistConfig, list[RankReport]]], n_params: int) -> list[tuple]:
    """Rank 0's collectives in the last step: calls and payload per kind, total in model sizes."""
    rows = []
    for name, (_, reports) in runs.items():
        r0 = reports[0]
        kinds = ", ".join(f"{op} x{calls} ({payload / KB:,.0f} kB)" for op, (calls, payload, _) in r0.comm.items())
        sent = sum(s for _, _, s in r0.comm.values())
        rows.append((name, kinds or "none", f"{comm_in_model_sizes(r0, n_params):.2f}", f"{sent / KB:,.1f}",
                     f"{1e3 * max(r.step_time_s for r in reports):.0f}"))
    return rows


COMM_HEADERS = ["strategy", "collectives in one step (rank 0, payload)", "model sizes", "sent by rank 0 kB",
                "step ms"]


def show_memory(runs, n_params: int, shapes) -> str:
    return format_table(MEMORY_HEADERS, memory_rows(runs, n_params, shapes))


def show_comm(runs, n_params: int) -> str:
    return format_table(COMM_HEADERS, comm_rows(runs, n_params))

