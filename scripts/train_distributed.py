"""Train the course's small decoder with DDP or FSDP2, on one process, one machine or many -- unchanged.

The same file runs under every launcher (each sets RANK / WORLD_SIZE / MASTER_ADDR in the environment):

  python scripts/train_distributed.py --steps 20                                  # one process
  torchrun --nproc-per-node 4 scripts/train_distributed.py --strategy zero3       # one machine, 4 ranks
  torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
           --rdzv-endpoint HOST:29500 --rdzv-id job42 scripts/train_distributed.py  # on each of 2 nodes
  accelerate launch --config_file scripts/accelerate_fsdp.yaml scripts/train_distributed.py

Backend: NCCL when every local rank has its own GPU, else gloo on the CPU. Checkpoints are
``torch.distributed.checkpoint`` (DCP) folders: every rank writes its own shards in parallel, nothing is
gathered to rank 0, and a run resumes from them at another world size (DCP reshards on load).
Under ``accelerate launch`` the script lets accelerate wrap the model (FSDP2 with the committed config on
GPUs; on CPUs accelerate falls back to DDP, which it reports) and checkpoints with DCP the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the course's utils/, wherever we run from

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.distributed.checkpoint as dcp  # noqa: E402
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict  # noqa: E402

from utils.distributed import Rank, free_port  # noqa: E402
from utils.env import seed_everything  # noqa: E402
from utils.models import build_model  # noqa: E402
from utils.strategies import DistConfig, local_batch, wrap_model  # noqa: E402

STRATEGIES = ("ddp", "zero2", "zero3", "hybrid")
#: Fields that must match between a checkpoint and the run resuming it (the world size may change).
SAME_ON_RESUME = ("preset", "vocab_size", "global_batch", "seq_len", "seed", "lr")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategy", default="zero3", choices=STRATEGIES, help="ignored under accelerate launch")
    p.add_argument("--shard-factor", type=int, default=None, help="hybrid: ranks per sharding group")
    p.add_argument("--preset", default="tiny", help="utils.models preset (tiny, small, medium, gpt2-small)")
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--global-batch", type=int, default=8, help="sequences per step, over all ranks")
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="train until this step (counting resumed ones)")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", type=Path, default=None, help="DCP folder to save to (and resume from)")
    p.add_argument("--save-every", type=int, default=0, help="also save every N steps (0: at the end only)")
    p.add_argument("--resume", action="store_true", help="continue from the newest step in --checkpoint")
    return p.parse_args(argv)


def under_accelerate() -> bool:
    return any(k.startswith("ACCELERATE_") for k in os.environ)


def setup_process_group() -> Rank:
    """Join the job the launcher started (or a one-process job when run with plain python)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    nccl = torch.cuda.is_available() and torch.cuda.device_count() >= local_world and world > 1
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))  # plain python: a port nobody uses
        if nccl:
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if nccl else "gloo", rank=rank, world_size=world)
    return Rank(rank, world, "nccl" if nccl else "gloo")


def latest_step(folder: Path) -> Path | None:
    steps = sorted(folder.glob("step-*/meta.json"))
    return steps[-1].parent if steps else None


def save(folder: Path, step: int, model, optim, cfg: DistConfig, world: int, rank: int) -> None:
    target = folder / f"step-{step:06d}"
    model_sd, optim_sd = get_state_dict(model, optim)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(target))  # every rank its shards
    dist.barrier()
    if rank == 0:  # meta.json last: a step folder without it is an interrupted save, never resumed
        meta = dict(step=step, world_size=world, strategy=cfg.strategy,
                    **{k: getattr(cfg, k) for k in SAME_ON_RESUME})
        (target / "meta.json").write_text(json.dumps(meta, indent=1))
    dist.barrier()


def load(folder: Path, model, optim, cfg: DistConfig) -> dict:
    meta = json.loads((folder / "meta.json").read_text())
    changed = {k: (meta[k], getattr(cfg, k)) for k in SAME_ON_RESUME if meta[k] != getattr(cfg, k)}
    if changed:
        raise ValueError(f"--resume: {folder} was trained with different settings (saved, now): {changed}")
    model_sd, optim_sd = get_state_dict(model, optim)  # this run's layout: DCP reshards into it
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(folder))
    set_state_dict(model, optim, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return meta


def main(argv=None) -> int:
    args = parse_args(argv)
    accelerator = None
    if under_accelerate():
        from accelerate import Accelerator

        # cpu=True on a machine without GPUs: otherwise accelerate ignores the launcher's ranks
        accelerator = Accelerator(cpu=not torch.cuda.is_available())
        rank = Rank(accelerator.process_index, accelerator.num_processes,
                    "nccl" if accelerator.device.type == "cuda" else "gloo")
    else:
        rank = setup_process_group()
    strategy = args.strategy if accelerator is None else "ddp"  # accelerate decides; "ddp" only labels data
    if rank.world_size == 1 and strategy == "hybrid":
        strategy = "zero3"
    cfg = DistConfig(strategy, rank.world_size, preset=args.preset, vocab_size=args.vocab_size,
                     global_batch=args.global_batch, seq_len=args.seq_len, steps=args.steps, lr=args.lr,
                     seed=args.seed, shard_factor=args.shard_factor if strategy == "hybrid" else None)
    seed_everything(cfg.seed)
    device = rank.device if accelerator is None else accelerator.device
    model = build_model("decoder", cfg.preset, vocab_size=cfg.vocab_size, max_seq_len=max(cfg.seq_len, 8))
    if accelerator is None:
        model, optim = wrap_model(cfg, model.to(device), rank)
        how = f"{cfg.strategy} ({rank.backend})"
    else:
        optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
        model, optim = accelerator.prepare(model, optim)
        how = f"accelerate {accelerator.distributed_type} ({type(model).__name__})"
    log = print if rank.is_main else (lambda *a, **k: None)
    start = 0
    if args.resume:
        folder = latest_step(args.checkpoint) if args.checkpoint else None
        if folder is None:
            raise SystemExit(f"--resume: no checkpoint (step-*/meta.json) under {args.checkpoint}")
        meta = load(folder, model, optim, cfg)
        start = meta["step"]
        log(f"resumed from step {start} (saved at world size {meta['world_size']}) on world size {rank.world_size}")
    elif args.checkpoint and latest_step(args.checkpoint):
        raise SystemExit(f"{args.checkpoint} already holds checkpoints: pass --resume, or another folder")
    log(f"training {cfg.preset} decoder, {how}, world size {rank.world_size}, steps {start}..{cfg.steps}")
    for step in range(start, cfg.steps):
        t0 = time.perf_counter()
        x = local_batch(cfg, step, rank.rank, rank.world_size).to(device)
        optim.zero_grad(set_to_none=True)
        loss = model(input_ids=x, labels=x).loss
        loss.backward() if accelerator is None else accelerator.backward(loss)
        optim.step()
        mean = loss.detach().clone()
        dist.all_reduce(mean)  # the global batch's loss: mean over ranks (equal slices)
        log(f"step {step} ({time.perf_counter() - t0:.3f} s) loss {float(mean) / rank.world_size:.8f}")
        done = step + 1
        if args.checkpoint and (done == cfg.steps or (args.save_every and done % args.save_every == 0)):
            save(args.checkpoint, done, model, optim, cfg, rank.world_size, rank.rank)
            log(f"saved step {done} to {args.checkpoint.name}/step-{done:06d} (DCP, {rank.world_size} shards)")
    dist.barrier()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
