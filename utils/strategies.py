"""Data-parallel training strategies on one small decoder, each with the real PyTorch API, measured per rank.

==========  ==============================================================  ======================
strategy    PyTorch API                                                     ZeRO stage it matches
==========  ==============================================================  ======================
single      one process, plain AdamW (the reference)                        --
ddp         ``DistributedDataParallel``: a full replica per rank            0 (data parallel)
zero1       ``ZeroRedundancyOptimizer`` over DDP: optimizer states sharded  1
zero2       FSDP2 ``fully_shard(reshard_after_forward=False)``              2-like
zero3       FSDP2 ``fully_shard(reshard_after_forward=True)``               3 (full sharding)
hybrid      FSDP2 over a 2-D mesh (replicate x shard of ``shard_factor``)   3 within each group
==========  ==============================================================  ======================

Every strategy trains the same ``utils.models`` decoder from the same seed on the same global batch
(split evenly over the ranks), so its loss trajectory must equal the single-process one. Per rank the
worker measures bytes of the *local* parameter, gradient and optimizer-state shards (a DTensor's
``to_local()``, never the global view), the bytes each collective moved in the last step, and the step
time. Worker functions live here (not in a notebook) because spawned processes must import them.
"""

from __future__ import annotations

import hashlib
import statistics
import time
from dataclasses import dataclass, field

import torch

from utils.dist_measure import CollectiveCounter, local_bytes, local_part, optimizer_tensors  # noqa: F401 (re-exported)
from utils.distributed import Rank, choose_backend, launch
from utils.env import seed_everything
from utils.memory import zero_memory_per_device
from utils.validate import check_choice, check_int, check_number

STRATEGIES = ("single", "ddp", "zero1", "zero2", "zero3", "hybrid")
FSDP_STRATEGIES = ("zero2", "zero3", "hybrid")
#: The ZeRO stage whose formula predicts each strategy's per-rank model-state bytes.
ZERO_STAGE = {"single": 0, "ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3, "hybrid": 3}
#: fp32 training with AdamW: 4 B weights, 4 B gradients, 8 B optimizer states (m, v) per parameter.
FP32_ADAMW = dict(weight_bytes=4, gradient_bytes=4, optimizer_bytes=8)
@dataclass(frozen=True)
class DistConfig:
    """One training run: a strategy, how many ranks, the model and the data."""

    strategy: str  # one of STRATEGIES
    world_size: int = 2  # processes (ranks); 1 for "single"
    preset: str = "tiny"  # utils.models preset of the GPT-2-style decoder
    vocab_size: int = 512  # token ids 0..vocab_size-1 (the synthetic data uses all of them)
    global_batch: int = 8  # sequences per optimizer step, split evenly over the ranks
    seq_len: int = 32  # tokens per sequence
    steps: int = 4  # optimizer steps
    lr: float = 3e-3  # AdamW learning rate (constant)
    seed: int = 0  # model init and data
    shard_factor: int | None = None  # hybrid only: ranks per sharding group (1 < f < world_size, divides it)
    mixed_precision: bool = False  # FSDP strategies: bf16 compute/all-gather, fp32 shards and reduction
    cpu_offload: bool = False  # FSDP strategies on CUDA: keep shards and optimizer on the CPU
    return_weights: bool = False  # gather the full weights to rank 0 at the end (for comparisons)

    def __post_init__(self):
        check_choice("strategy", self.strategy, STRATEGIES)
        for name in ("world_size", "global_batch", "seq_len", "steps", "vocab_size"):  # frozen: object.__setattr__
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum=1))
        object.__setattr__(self, "seed", check_int("seed", self.seed, minimum=0))
        object.__setattr__(self, "lr", check_number("lr", self.lr, minimum=0, min_open=True))
        if self.strategy == "single" and self.world_size != 1:
            raise ValueError(f"strategy='single' runs one process; got world_size={self.world_size} (accepted: 1)")
        if self.global_batch % self.world_size:
            raise ValueError(
                f"global_batch={self.global_batch} cannot be split over world_size={self.world_size} ranks; "
                f"accepted: a multiple of {self.world_size}"
            )
        if self.strategy == "hybrid":
            f, n = self.shard_factor, self.world_size
            if not isinstance(f, int) or not 1 < f < n or n % f:
                ok = [d for d in range(2, n) if n % d == 0]
                raise ValueError(f"shard_factor={f!r} is not valid for hybrid with world_size={n}; accepted: {ok} "
                                 "(a divisor strictly between 1 and world_size; 1 is DDP, world_size is zero3)")
        elif self.shard_factor is not None:
            raise ValueError(f"shard_factor={self.shard_factor!r} only applies to strategy='hybrid'")
        if (self.mixed_precision or self.cpu_offload) and self.strategy not in FSDP_STRATEGIES:
            raise ValueError(f"mixed_precision / cpu_offload are FSDP options; strategy={self.strategy!r} "
                             f"(accepted: one of {FSDP_STRATEGIES})")

    @property
    def shard_group(self) -> int:
        """Ranks that share one copy of the sharded model states (the N of the ZeRO formula)."""
        if self.strategy == "hybrid":
            return self.shard_factor
        return 1 if self.strategy in ("single", "ddp") else self.world_size


def global_batch(cfg: DistConfig, step: int) -> torch.Tensor:
    """The global batch of ``step``: counting sequences ``a, a+b, a+2b, ...`` (mod vocab) -- learnable, and
    the same whatever the world size, so every strategy sees identical data."""
    g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
    start = torch.randint(0, cfg.vocab_size, (cfg.global_batch, 1), generator=g)
    stride = torch.randint(1, 4, (cfg.global_batch, 1), generator=g)
    return (start + stride * torch.arange(cfg.seq_len)) % cfg.vocab_size


def local_batch(cfg: DistConfig, step: int, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous slice of the global batch (every rank is a data-parallel worker)."""
    per = cfg.global_batch // world_size
    return global_batch(cfg, step)[rank * per : (rank + 1) * per]


@dataclass
class RankReport:
    """What one rank measured (bytes are this rank's local shards)."""

    rank: int
    world_size: int
    strategy: str
    losses: list[float]  # this rank's loss on its slice of the global batch, per step
    param_bytes: int  # parameters held at rest (after the optimizer step)
    param_bytes_step: int  # parameters the model holds between forward and backward
    grad_bytes: int  # gradients after backward
    optimizer_bytes: int  # optimizer state tensors after the step (AdamW m and v)
    peak_bytes: int | None  # CUDA allocator peak of the run (None on CPU: no allocator counter)
    comm: dict[str, list]  # last step: collective -> [calls, payload bytes, bytes sent by this rank]
    step_time_s: float  # median wall time of the steps after the first
    digests: list[str] = field(default_factory=list)  # sha256 of all parameters after each step (replicas)
    weights: dict | None = None  # rank 0 with return_weights: the full state dict at the end

    @property
    def model_state_bytes(self) -> int:
        """Weights (as held during the step) + gradients + optimizer states: what the ZeRO formula counts."""
        return self.param_bytes_step + self.grad_bytes + self.optimizer_bytes


def wrap_model(cfg: DistConfig, model: torch.nn.Module, rank: Rank):
    if cfg.strategy == "single":
        return model, torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    if cfg.strategy in ("ddp", "zero1"):
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
        from torch.distributed.optim import ZeroRedundancyOptimizer
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [rank.rank] if rank.backend == "nccl" else None
        # gradients as views into DDP's buckets: no second copy; the Python all-reduce hook is countable
        ddp = DDP(model, device_ids=ids, gradient_as_bucket_view=True)
        ddp.register_comm_hook(None, allreduce_hook)
        if cfg.strategy == "ddp":
            return ddp, torch.optim.AdamW(ddp.parameters(), lr=cfg.lr)
        return ddp, ZeroRedundancyOptimizer(ddp.parameters(), optimizer_class=torch.optim.AdamW, lr=cfg.lr)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    n, f = rank.world_size, cfg.shard_group
    dev = rank.device.type
    mesh = (init_device_mesh(dev, (n // f, f), mesh_dim_names=("replicate", "shard")) if cfg.strategy == "hybrid"
            else init_device_mesh(dev, (n,)))
    kw = dict(
        mesh=mesh,
        reshard_after_forward=cfg.strategy != "zero2",
        mp_policy=MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if cfg.mixed_precision else MixedPrecisionPolicy(),
        offload_policy=CPUOffloadPolicy(pin_memory=False) if cfg.cpu_offload else OffloadPolicy(),
    )
    for block in model.transformer.h:  # one communication group per transformer block, then the rest
        fully_shard(block, **kw)
    fully_shard(model, **kw)
    return model, torch.optim.AdamW(model.parameters(), lr=cfg.lr)


def _digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(local_part(p).detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_worker(rank: Rank, cfg: DistConfig) -> RankReport:
    """Train ``cfg.steps`` steps with ``cfg.strategy`` on this rank and measure it (run by :func:`run`)."""
    from utils.models import build_model

    if cfg.cpu_offload and rank.backend != "nccl":
        raise ValueError("cpu_offload=True needs CUDA ranks (it moves shards from the GPU to the CPU); "
                         "on CPU ranks everything already lives in CPU memory")
    seed_everything(cfg.seed)
    device = rank.device
    model = build_model("decoder", cfg.preset, vocab_size=cfg.vocab_size, max_seq_len=max(cfg.seq_len, 8))
    model = model.to(device)
    model, optim = wrap_model(cfg, model, rank)
    counter, losses, times, digests = CollectiveCounter(), [], [], []
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with counter.installed():
        for step in range(cfg.steps):
            x = local_batch(cfg, step, rank.rank, rank.world_size).to(device)
            counter.reset()
            t0 = time.perf_counter()
            optim.zero_grad(set_to_none=True)
            loss = model(input_ids=x, labels=x).loss
            param_step = local_bytes(model.parameters())  # FSDP swaps in the unsharded ones if it keeps them
            loss.backward()
            grads = local_bytes(p.grad for p in model.parameters() if p.grad is not None)
            optim.step()
            if cuda:
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
            losses.append(float(loss.detach()))
            comm = {k: list(v) for k, v in counter.calls.items()}
            if cfg.strategy in ("single", "ddp", "zero1"):
                digests.append(_digest(model))
    weights = None
    if cfg.return_weights:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        inner = getattr(model, "module", model)
        full = get_model_state_dict(inner, options=StateDictOptions(full_state_dict=True, cpu_offload=True)) \
            if cfg.strategy in FSDP_STRATEGIES else inner.state_dict()
        weights = {k: v.detach().cpu().clone() for k, v in full.items()} if rank.is_main else None
    return RankReport(
        rank=rank.rank, world_size=rank.world_size, strategy=cfg.strategy, losses=losses,
        param_bytes=local_bytes(model.parameters()), param_bytes_step=param_step, grad_bytes=grads,
        optimizer_bytes=local_bytes(optimizer_tensors(optim)),
        peak_bytes=torch.cuda.max_memory_allocated(device) if cuda else None, comm=comm,
        step_time_s=statistics.median(times[1:] or times), digests=digests, weights=weights,
    )


def run(cfg: DistConfig, timeout: float = 180.0, backend: str = "auto") -> list[RankReport]:
    """Run ``cfg`` (in this process for "single", else on ``cfg.world_size`` workers); one report per rank."""
    if not isinstance(cfg, DistConfig):
        raise TypeError(f"cfg must be a DistConfig, got {type(cfg).__name__}")
    if cfg.strategy == "single":
        return [train_worker(Rank(0, 1, "gloo"), cfg)]
    if cfg.cpu_offload and choose_backend(cfg.world_size, backend) != "nccl":
        raise ValueError("cpu_offload=True needs one CUDA GPU per rank (it moves shards from the GPU to the "
                         f"CPU); with world_size={cfg.world_size} here the ranks are CPU processes")
    return launch(train_worker, cfg.world_size, cfg, timeout=timeout, backend=backend)


def global_losses(reports: list[RankReport]) -> list[float]:
    """The loss on the whole global batch per step: the mean of the ranks' losses (equal slices)."""
    return [statistics.fmean(step) for step in zip(*(r.losses for r in reports))]


def expected_bytes(cfg: DistConfig, n_params: int) -> float:
    """Per-rank model-state bytes predicted by :func:`utils.memory.zero_memory_per_device` (fp32 AdamW)."""
    return zero_memory_per_device(n_params, cfg.shard_group, ZERO_STAGE[cfg.strategy], **FP32_ADAMW)


def padding_allowance(cfg: DistConfig, shapes: list[tuple[int, ...]]) -> float:
    """How far one rank's measured bytes may sit from the formula, from how each API splits tensors.

    FSDP2 splits every tensor along dim 0 in chunks of ceil(rows / N): a rank can hold up to one row per
    tensor more (or less) than 1/N, for every sharded byte-per-parameter. ZeroRedundancyOptimizer gives
    whole tensors to ranks (largest first, to the least-loaded rank): a rank can be off by up to the
    largest tensor's optimizer state. DDP and single replicate everything: exact.
    """
    numels = [int(torch.Size(s).numel()) for s in shapes]
    if cfg.strategy == "zero1":
        return max(numels) * FP32_ADAMW["optimizer_bytes"]
    if cfg.strategy in FSDP_STRATEGIES:
        per_row = sum(n // s[0] if s else 1 for n, s in zip(numels, shapes))
        sharded = 12 if cfg.strategy == "zero2" else 16
        return per_row * sharded
    return 0.0


def comm_in_model_sizes(report: RankReport, n_params: int, bytes_per_param: int = 4) -> float:
    """The last step's collective payload in units of the model's size, an all-reduce counted twice
    (reduce-scatter + all-gather, the ZeRO paper's accounting): DDP -> 2, ZeRO-3 -> 3."""
    total = sum(p * (2 if op == "all_reduce" else 1) for op, (_, p, _) in report.comm.items())
    return total / (n_params * bytes_per_param)
