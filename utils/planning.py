"""Planning: how many GPUs a model needs for a task, and a memory calculator over the GPT-3 family.

Counts use the bytes each card really offers (:meth:`utils.hardware.GPU.usable_bytes`: what a CUDA
program sees, less a reserve for the CUDA context), never the decimal reading of the "80GB" in a card's
name. No torch import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from utils.activations import activation_memory
from utils.hardware import CONTEXT_RESERVE, COURSE_GPUS, GPU, GPU_TABLE
from utils.model_states import BYTES_PER_DTYPE, PRECISIONS, model_memory, training_memory
from utils.shapes import GPT3_SHAPES, GPT3_VOCAB_SIZE
from utils.validate import check_choice

#: The GPUs the course's tables compare, rows of :data:`utils.hardware.GPU_TABLE` (which has more cards;
#: :func:`gpu_estimate` accepts any of them).
GPUS: dict[str, GPU] = {key: GPU_TABLE[key] for key in COURSE_GPUS}

#: What a model needs memory for, in :func:`gpus_needed`.
TASKS = ("store", "finetune", "pretrain")


@dataclass(frozen=True)
class GpuEstimate:
    """How many GPUs of one kind hold the bytes a task needs."""

    gpu: str  # a key of utils.hardware.GPU_TABLE
    task: str  # one of TASKS
    bytes_needed: float  # what the task needs, bytes
    gpu_bytes: float  # usable bytes per card: torch's total_memory less the reserve (not the name's "80GB")
    n_gpus: int  # cards needed with perfect sharding, at least 1


def task_memory(
    n_params,
    task: str = "pretrain",
    *,
    precision: str = "fp32",
    optimizer: str = "adam",
    activation_bytes_per_param: float = 8.0,
) -> float:
    """Bytes ``task`` needs for a model of ``n_params`` parameters -- the assumptions, stated:

    * ``"store"``: the weights alone, in ``precision`` -- a number format ("fp32", "bf16", "int8",
      "nf4", ...) or a training precision ("mixed" and "mixed-hf" store 16-bit weights, 2 bytes);
    * ``"finetune"``: **full** fine-tuning -- every weight is trained, so weights + gradients + optimizer
      states are the same as in pre-training; activations are left out, assuming short sequences, small
      micro-batches and activation checkpointing keep them small next to the model states. A lower bound;
      LoRA / QLoRA (train few weights, freeze a quantised base) need far less;
    * ``"pretrain"``: model states + the lecture's activation estimate (``activation_bytes_per_param``,
      8 bytes by default: the 24 bytes/param of fp32 Adam training).
    """
    check_choice("task", task, TASKS)
    if task == "store":
        check_choice("precision", precision, tuple(BYTES_PER_DTYPE) + tuple(PRECISIONS))
        dtype = precision if precision in BYTES_PER_DTYPE else "bf16"
        return model_memory(n_params, dtype)
    mem = training_memory(
        n_params,
        precision=precision,
        optimizer=optimizer,
        activation_bytes_per_param=activation_bytes_per_param,
    )
    return mem.model_states if task == "finetune" else mem.total


def gpu_estimate(
    n_params,
    gpu: str = "A100-80",
    task: str = "pretrain",
    *,
    precision: str = "fp32",
    optimizer: str = "adam",
    activation_bytes_per_param: float = 8.0,
    reserve_bytes: float = CONTEXT_RESERVE,
) -> GpuEstimate:
    """:func:`task_memory` divided over GPUs of kind ``gpu`` (a key of :data:`utils.hardware.GPU_TABLE`),
    rounded up.

    Each card offers its usable bytes: the memory a CUDA program sees (torch's ``total_memory``: an A100
    80GB reports 81,920 MiB to nvidia-smi and shows 81,049 MiB, about 85.0e9 bytes, to torch) less
    ``reserve_bytes`` (1 GiB by default) for the CUDA context, workspaces and fragmentation. Assumes the
    bytes split perfectly over the GPUs (ZeRO-3 / FSDP sharding of every state, activations too): a lower
    bound on the GPU count.
    """
    check_choice("gpu", gpu, GPU_TABLE)
    need = task_memory(
        n_params,
        task,
        precision=precision,
        optimizer=optimizer,
        activation_bytes_per_param=activation_bytes_per_param,
    )
    have = GPU_TABLE[gpu].usable_bytes(reserve_bytes)
    n = max(1, math.ceil(need / have - 1e-9))  # 1e-9: a need of exactly the usable bytes fits one card
    return GpuEstimate(gpu=gpu, task=task, bytes_needed=need, gpu_bytes=have, n_gpus=n)


def gpus_needed(n_params, gpu: str = "A100-80", task: str = "pretrain", **options) -> int:
    """The number of ``gpu`` GPUs a ``task`` needs for ``n_params`` parameters: :func:`gpu_estimate`'s
    ``n_gpus``, with the same keyword ``options`` (precision, optimizer, activation_bytes_per_param,
    reserve_bytes)."""
    return gpu_estimate(n_params, gpu, task, **options).n_gpus


# A calculator over the GPT-3 family's shapes (for the notebook's interactive widget)

def memory_calculator(
    model: str = "GPT-3 XL (1.3B)",
    *,
    precision: str = "mixed",
    optimizer: str = "adam",
    batch_size: int = 8,
    seq_len: int = 2048,
    recompute: str = "none",
    gpu: str = "A100-80",
) -> dict[str, float]:
    """Training memory of a GPT-3 model: model states + Korthikanti activations, and the GPUs needed.

    Activations are 16-bit except with ``precision="fp32"``; the logits are counted in fp32. Returns
    bytes for "weights", "gradients", "optimizer", "activations" (layers + logits) and "total", and the
    GPU count "n_gpus" (perfect sharding over the usable bytes of each card, as in :func:`gpu_estimate`).
    """
    check_choice("model", model, GPT3_SHAPES)
    check_choice("gpu", gpu, GPU_TABLE)
    g = GPT3_SHAPES[model]
    states = training_memory(
        g.n_params, precision=precision, optimizer=optimizer, activation_bytes_per_param=0
    )
    acts = activation_memory(
        seq_len=seq_len,
        batch_size=batch_size,
        d_model=g.d_model,
        n_layers=g.n_layers,
        n_heads=g.n_heads,
        bytes_per_value=4 if precision == "fp32" else 2,
        recompute=recompute,
        vocab_size=GPT3_VOCAB_SIZE,
    )
    total = states.model_states + acts.total
    return {
        "weights": states.weights,
        "gradients": states.gradients,
        "optimizer": states.optimizer,
        "activations": acts.total,
        "total": total,
        "n_gpus": max(1, math.ceil(total / GPU_TABLE[gpu].usable_bytes() - 1e-9)),
    }
