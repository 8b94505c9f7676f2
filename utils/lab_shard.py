"""Checks for lab 03, "Shard a model": count a rank's bytes, measure DDP and sharded runs, predict per-rank
bytes, choose a sharding factor for a memory limit, and run the choice.

Every check calls the learner's function on many inputs and compares with the course library
(:func:`utils.strategies.local_bytes`, :func:`utils.strategies.run`, :func:`utils.memory.zero_memory_per_device`),
or, for a choice, checks the constraints the exercise states (it fits, nothing smaller fits). The reference
computations are private: a check returns a :class:`utils.labs.Result`, never the expected value.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager

import torch

from utils.lab_shard_factor import (  # noqa: F401 -- exercise 4, re-exported
    FACTOR_CASES,
    MIXED_ADAM,
    _check_factor,
    _smallest_factor,
    check_shard_factor,
)
from utils.labs import Result, case, check_function, close, describe
from utils.memory import zero_memory_per_device
from utils.strategies import FP32_ADAMW, ZERO_STAGE, DistConfig, local_bytes, padding_allowance, run

#: The lab's training runs: the tiny decoder (134,912 parameters), small enough for 2-4 CPU processes.
LAB_RUN = dict(preset="tiny", vocab_size=512, global_batch=8, seq_len=32, steps=2)
#: The runs exercise 2 measures (strategy, world size, shard factor).
LAB_RUNS = (("ddp", 2, None), ("zero1", 2, None), ("zero2", 2, None), ("zero3", 2, None), ("hybrid", 4, 2))
#: Exercise 5: 4 ranks, fp32 AdamW, at most this many bytes of model states per rank.
RUN_WORLD_SIZE = 4
RUN_LIMIT_BYTES = 1_200_000


# ------------------------------------------------------------------ exercise 1: the bytes a rank holds


@contextmanager
def _one_rank_group():
    """A one-process gloo group (needed to build DTensors in this process); left as found."""
    import torch.distributed as dist

    mine = not dist.is_initialized()
    if mine:
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        yield
    finally:
        if mine:
            dist.destroy_process_group()


def _shard(rows_here: int, rows_total: int, cols: int, dtype=torch.float32):
    """A DTensor of global shape (rows_total, cols) of which this rank holds ``rows_here`` rows (as FSDP2)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import DTensor, Shard

    mesh = init_device_mesh("cpu", (1,))
    local = torch.randn(rows_here, cols).to(dtype)
    return DTensor.from_local(local, mesh, [Shard(0)], run_check=False, shape=torch.Size([rows_total, cols]),
                              stride=(cols, 1))


def _local_bytes_cases() -> list:
    from utils.models import build_model

    torch.manual_seed(0)
    tied = torch.randn(6, 4)
    model = build_model("decoder", "tiny", vocab_size=512, max_seq_len=32)
    lin = torch.nn.Linear(5, 3)
    opt = torch.optim.AdamW(lin.parameters())
    lin(torch.randn(2, 5)).sum().backward()
    opt.step()
    states = [v for s in opt.state.values() for v in s.values()]
    return [
        case([torch.randn(4, 3)], label="one fp32 tensor of shape (4, 3)"),
        case([torch.randn(10), torch.randn(2, 5).bfloat16(), torch.zeros(7, dtype=torch.int8)],
             label="fp32, bf16 and int8 tensors"),
        case([torch.randn(3, dtype=torch.float64)], label="an fp64 tensor"),
        case([torch.tensor(1.0)], label="a 0-dim tensor"),
        case([], label="an empty list"),
        case([torch.randn(3), None, torch.randn(2)], label="a list with None (a parameter without a gradient)"),
        case([tied, tied], label="the same tensor twice (tied weights)"),
        case(list(model.parameters()) + [model.lm_head.weight], label="a decoder's parameters + its tied output layer"),
        case(tuple(states), label="AdamW's state tensors after one step (a tuple)"),
        case([_shard(4, 16, 3)], label="a DTensor: global shape (16, 3), 4 rows on this rank"),
        case([_shard(2, 16, 8, torch.bfloat16), _shard(3, 12, 5)], label="two bf16/fp32 DTensors sharded by rows"),
        case([_shard(0, 3, 4), torch.randn(2)], label="a DTensor with no rows on this rank (uneven split)"),
    ]


def _global_bytes(tensors) -> int:  # the mistake: a DTensor's global size instead of its local shard
    seen = {id(t): t.numel() * t.element_size() for t in tensors if isinstance(t, torch.Tensor)}
    return sum(seen.values())


def _every_entry(tensors) -> int:  # the mistake: a tensor listed twice counted twice
    out = 0
    for t in tensors:
        if isinstance(t, torch.Tensor):
            t = t.to_local() if hasattr(t, "to_local") else t
            out += t.numel() * t.element_size()
    return out


def _as_fp32(tensors) -> int:  # the mistake: 4 bytes per value whatever the dtype
    return sum(4 * (t.to_local() if hasattr(t, "to_local") else t).numel()
               for t in {id(t): t for t in tensors if isinstance(t, torch.Tensor)}.values())


LOCAL_BYTES_HINTS = [
    (lambda got, exp, c: close(got, _global_bytes(c.args[0])),
     "a DTensor's shape and numel() describe the whole (global) tensor; a rank holds only its local shard"),
    (lambda got, exp, c: close(got, _every_entry(c.args[0])),
     "a tensor that appears twice in the list (tied weights share one storage) is held once"),
    (lambda got, exp, c: close(got, _as_fp32(c.args[0])),
     "not every tensor is fp32: how many bytes does one value of this tensor's dtype take?"),
    (lambda got, exp, c: exp > 0 and close(got * 8, exp),
     "bytes, not bits"),
]


def check_local_bytes(fn) -> Result:
    """Exercise 1: ``fn(tensors) -> int``, bytes of this rank's local pieces, each tensor once, None skipped."""
    with _one_rank_group():
        return check_function(fn, local_bytes, _local_bytes_cases(), name="local_bytes", rtol=0,
                              hints=LOCAL_BYTES_HINTS)


# ------------------------------------------------------------------ exercise 2: measure with the launcher


@functools.cache
def _reports(strategy: str, world_size: int, shard_factor: int | None):
    return run(DistConfig(strategy, world_size, shard_factor=shard_factor, **LAB_RUN), timeout=300)


def _measured(strategy: str, world_size: int, shard_factor: int | None = None) -> list[int]:
    return [r.model_state_bytes for r in _reports(strategy, world_size, shard_factor)]


def _at_rest(strategy: str, world_size: int, shard_factor: int | None = None) -> list[int]:
    return [r.param_bytes + r.grad_bytes + r.optimizer_bytes for r in _reports(strategy, world_size, shard_factor)]


MEASURE_HINTS = [
    (lambda got, exp, c: close(list(got), _at_rest(*c.args, **c.kwargs)),
     "ZeRO-2-like FSDP gathers the full weights for the step and keeps them until the backward pass: count "
     "the weights as held during the step, not after it"),
    (lambda got, exp, c: close([g * 1e3 for g in got], exp) or close([g * 1024 for g in got], exp),
     "the exercise asks for bytes, not kB"),
]


def check_measure(fn) -> Result:
    """Exercise 2: ``fn(strategy, world_size, shard_factor=None) -> list[int]``, per-rank model-state bytes."""
    cases = [case(s, n, shard_factor=f, label=f"{s} on {n} ranks" + (f", shard_factor={f}" if f else ""))
             if f else case(s, n, label=f"{s} on {n} ranks") for s, n, f in LAB_RUNS]
    return check_function(fn, _measured, cases, name="measure", rtol=0, time_limit_s=300, hints=MEASURE_HINTS)


# ------------------------------------------------------------------ exercise 3: predict per-rank bytes


def _group(strategy: str, world_size: int, shard_factor) -> int:
    if strategy in ("single", "ddp"):
        return 1
    return shard_factor if strategy == "hybrid" else world_size


def _predict(n_params, strategy, world_size, shard_factor=None, *, weight_bytes=4, gradient_bytes=4,
             optimizer_bytes=8) -> float:
    return zero_memory_per_device(n_params, _group(strategy, world_size, shard_factor), ZERO_STAGE[strategy],
                                  optimizer_bytes, weight_bytes=weight_bytes, gradient_bytes=gradient_bytes)


def _predict_cases(n_lab: int) -> list:
    out = [case(n_lab, s, n, f) if f else case(n_lab, s, n) for s, n, f in LAB_RUNS]
    out += [case(n_lab, "single", 1), case(n_lab, "zero3", 1, label="zero3 on 1 rank"),
            case(n_lab, "zero1", 1, label="zero1 on 1 rank")]
    big = [("ddp", 64, None), ("zero1", 64, None), ("zero2", 64, None), ("zero3", 64, None)]
    out += [case(7.5e9, s, n, label=f"7.5B, {s} on {n} GPUs, mixed-precision Adam", **MIXED_ADAM) for s, n, _ in big]
    out += [case(70e9, "hybrid", 512, 8, label="70B, hybrid 512 GPUs in groups of 8, mixed Adam", **MIXED_ADAM),
            case(70e9, "hybrid", 512, 256, label="70B, hybrid, groups of 256", **MIXED_ADAM),
            case(1e12, "zero3", 4096, label="1T parameters, zero3 on 4,096 GPUs", **MIXED_ADAM),
            case(1e9, "zero2", 8, weight_bytes=2, gradient_bytes=2, optimizer_bytes=4,
                 label="1B, zero2 on 8, 8-bit Adam (4 B of states)"),
            case(355e6, "zero1", 3, weight_bytes=4, gradient_bytes=4, optimizer_bytes=0, label="SGD: no states"),
            case(1, "zero3", 3, label="one parameter on 3 ranks")]
    return out


def _wrong(fn):
    """A hint predicate: the learner's output equals ``fn(case)`` (None when the mistake does not apply)."""
    return lambda got, exp, c: close(got, fn(*c.args, **c.kwargs))


def _as(strategy_as, when):
    """Another strategy's formula, for cases whose strategy is in ``when``."""
    return lambda n, s, ws, f=None, **kw: _predict(n, strategy_as, ws, **kw) if s in when else None


PREDICT_HINTS = [
    (_wrong(lambda n, s, ws, f=None, **kw: _predict(n, s, ws, f, **kw) / n),
     "that looks like bytes per parameter: the exercise asks for the bytes of the whole model's states on one rank"),
    (_wrong(lambda n, s, ws, f=None, **kw: _predict(n, s, ws, f) if kw else None),
     "use the bytes per parameter passed as arguments (the cases include mixed-precision Adam and SGD)"),
    (_wrong(_as("zero3", ("hybrid",))),
     "hybrid sharding splits the states within a group of shard_factor ranks and replicates them across groups"),
    (_wrong(_as("zero1", ("zero2",))), "stage 2 shards the gradients as well as the optimizer states"),
    (_wrong(_as("zero3", ("zero1", "zero2"))), "stages 1 and 2 keep a full copy of the weights on every rank"),
    (_wrong(_as("ddp", ("zero1", "zero2", "zero3", "hybrid"))),
     "this strategy shards something: which states, and over how many ranks?"),
]


@functools.cache
def _lab_shapes() -> tuple:
    from utils.models import build_model

    model = build_model("decoder", LAB_RUN["preset"], vocab_size=LAB_RUN["vocab_size"], max_seq_len=LAB_RUN["seq_len"])
    return tuple(tuple(p.shape) for p in model.parameters())


def lab_model_params() -> int:
    """Parameters of the lab's model (the tiny decoder, embeddings tied to the output layer, counted once)."""
    return sum(int(torch.Size(s).numel()) for s in _lab_shapes())


def check_predict_bytes(fn) -> Result:
    """Exercise 3: ``fn(n_params, strategy, world_size, shard_factor=None, *, weight_bytes=4,
    gradient_bytes=4, optimizer_bytes=8) -> float``, first against ``zero_memory_per_device`` on many cases,
    then against every rank of the runs measured in exercise 2 (within how each API splits tensors)."""
    name = "predict_bytes"
    n = lab_model_params()
    first = check_function(fn, _predict, _predict_cases(n), name=name, rtol=1e-9, hints=PREDICT_HINTS)
    if not first.ok:
        return first
    for strategy, world_size, f in LAB_RUNS:
        cfg = DistConfig(strategy, world_size, shard_factor=f, **LAB_RUN)
        allowed = padding_allowance(cfg, list(_lab_shapes()))
        predicted = fn(n, strategy, world_size, f)
        for r in _reports(strategy, world_size, f):
            if abs(r.model_state_bytes - predicted) > allowed:
                return Result("wrong", f"{strategy} on {world_size} ranks: rank {r.rank} measured "
                              f"{r.model_state_bytes:,} bytes, more than {allowed:,.0f} bytes from your "
                              f"{predicted:,.0f}", name=name)
    return Result("correct", f"correct: {len(_predict_cases(n))} cases match zero_memory_per_device (rtol 1e-9) "
                  f"and every rank of the {len(LAB_RUNS)} measured runs is within its splitting allowance", name=name)


# ------------------------------------------------------------------ exercise 5: run the choice


def check_chosen_run(factor, reports) -> Result:
    """Exercise 5: the factor chosen for the lab's model on :data:`RUN_WORLD_SIZE` ranks under
    :data:`RUN_LIMIT_BYTES`, and the reports of the run made with it: every rank within the limit."""
    name = "chosen_run"
    if factor is None or reports is None:
        return Result("not done yet", "not done yet -- set chosen_factor and chosen_reports, then run the cell",
                      name=name)
    n, world = lab_model_params(), RUN_WORLD_SIZE
    verdict = _check_factor(name, factor, world, n, RUN_LIMIT_BYTES, FP32_ADAMW,
                            _smallest_factor(n, world, RUN_LIMIT_BYTES, **FP32_ADAMW), "your factor")
    if verdict is not None:
        return verdict
    if not isinstance(reports, (list, tuple)) or not all(hasattr(r, "model_state_bytes") for r in reports):
        return Result("invalid", f"chosen_reports is {describe(reports)}; expected the list that "
                      "utils.strategies.run returns", name=name)
    if len(reports) != world:
        return Result("wrong", f"the run has {len(reports)} rank(s); the exercise runs on {world}", name=name)
    want = "ddp" if factor == 1 else "zero3" if factor == world else "hybrid"
    if reports[0].strategy != want:
        return Result("wrong", f"the run used strategy {reports[0].strategy!r}, which does not shard in groups of "
                      f"{factor}", name=name, hint="DDP is factor 1, zero3 is factor = world size, hybrid in between")
    worst = max(r.model_state_bytes for r in reports)
    if worst > RUN_LIMIT_BYTES:
        return Result("wrong", f"a rank measured {worst:,} bytes, more than the limit", name=name)
    return Result("correct", f"correct: the smallest factor that fits, and every rank measured {worst:,} bytes "
                  f"or fewer (limit {RUN_LIMIT_BYTES:,})", name=name)
