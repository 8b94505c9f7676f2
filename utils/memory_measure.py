"""Measure what :mod:`utils.memory` predicts: the bytes of a real model's weights, gradients, optimizer
states, saved activations, and (on a CUDA GPU) the allocator's peak during a training step.

Counting rule: a tensor costs ``numel * element_size`` bytes, but what memory really holds are *storages*;
views and tied weights (SmolLM2's output head is its embedding matrix) share one storage, so every count
here sums **unique storages** (``tensor.untyped_storage()``, keyed by device and address).

Activations on a CPU: torch has no allocator peak counter for the CPU, and the profiler's memory view
mixes in temporaries freed within the same operator. What training keeps between forward and backward is
exactly what autograd saves, so :func:`measure_activations` runs the forward pass under
``torch.autograd.graph.saved_tensors_hooks`` and sums the unique storages of every saved tensor that is
not a parameter, plus the logits tensor the model returns. On CUDA, :func:`cuda_peak_step_memory` reads
``torch.cuda.max_memory_allocated`` around a real step instead.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch

from utils.model_states import TrainingMemory
from utils.shapes import DecoderShape
from utils.validate import fail

#: autograd node names of fused attention kernels (flash, memory-efficient, cuDNN; CPU flash).
FUSED_ATTENTION_NODES = ("ScaledDotProductFlash", "ScaledDotProductEfficient", "ScaledDotProductCudnn")


def _storage_key(t: torch.Tensor):
    st = t.untyped_storage()
    return (str(t.device), st.data_ptr()), st.nbytes()


def storage_bytes(tensors) -> int:
    """Bytes of the unique storages behind ``tensors`` (views and shared/tied tensors counted once)."""
    seen = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            key, nbytes = _storage_key(t)
            seen[key] = nbytes
    return sum(seen.values())


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of the model's parameters (a tied embedding / output head counted once)."""
    return storage_bytes(model.parameters())


def gradient_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters' ``.grad`` tensors (0 before backward, or after ``zero_grad()``)."""
    return storage_bytes(p.grad for p in model.parameters() if p.grad is not None)


def _state_tensors(optimizer: torch.optim.Optimizer):
    for state in optimizer.state.values():
        for value in state.values():
            if isinstance(value, torch.Tensor):
                yield value


def optimizer_state_bytes(optimizer: torch.optim.Optimizer, include_scalars: bool = False) -> int:
    """Bytes of the optimizer's state tensors (AdamW's m and v, SGD's momentum, 8-bit Adam's uint8 states,
    block scales and quantisation maps). 0-dim bookkeeping tensors (AdamW's ``step`` counter, 4 bytes
    per parameter tensor) are left out unless ``include_scalars``: see :func:`optimizer_scalar_bytes`."""
    return storage_bytes(t for t in _state_tensors(optimizer) if include_scalars or t.dim() > 0)


def optimizer_scalar_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's 0-dim state tensors (AdamW: one fp32 ``step`` per parameter tensor)."""
    return storage_bytes(t for t in _state_tensors(optimizer) if t.dim() == 0)


def measure_model_states(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainingMemory:
    """Weights, gradients and optimizer states of a model as they are now, in bytes (activations 0).

    Call it after ``loss.backward()`` and ``optimizer.step()`` (and before ``zero_grad``), when all three
    exist; compare with :func:`utils.memory.model_state_bytes` of the parameter sizes.
    """
    return TrainingMemory(
        weights=parameter_bytes(model),
        gradients=gradient_bytes(model),
        optimizer=optimizer_state_bytes(optimizer),
        activations=0,
    )


def param_numels(model: torch.nn.Module) -> list[int]:
    """Sizes of the model's parameter tensors (tied ones once), for :func:`utils.memory.model_state_bytes`."""
    return [p.numel() for p in model.parameters()]  # parameters() already yields a tied tensor once


def _autocast(device: torch.device, dtype):
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def train_step(model, optimizer, input_ids: torch.Tensor, autocast_dtype=None) -> float:
    """One real training step of a causal LM (labels = inputs): zero_grad, forward, backward, step.

    ``zero_grad`` sets gradients to None (torch's default), so they exist only from backward to the next
    step. ``autocast_dtype``: e.g. ``torch.bfloat16`` for mixed precision with ``torch.autocast``.
    """
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with _autocast(input_ids.device, autocast_dtype):
        loss = model(input_ids=input_ids, labels=input_ids).loss
    loss.backward()
    optimizer.step()
    return float(loss.detach())


@dataclass
class MeasuredActivations:
    """Bytes a forward pass leaves behind for backward: ``saved`` by autograd, plus the returned ``logits``."""

    saved: int  # unique storages of the saved tensors that are not parameters
    logits: int  # the logits tensor the model returns (alive until the step ends; not saved by autograd)
    by_dtype: dict = field(default_factory=dict)  # saved bytes per dtype
    attention: str = "unknown"  # "fused" or "eager", read from the autograd graph

    @property
    def total(self) -> int:
        return self.saved + self.logits


def attention_kind(loss: torch.Tensor) -> str:
    """Which attention the graph behind ``loss`` used: "fused" when a fused SDPA kernel's backward node
    (flash, memory-efficient, cuDNN) is in it, else "eager" (probabilities materialised, as in torch's
    "math" fallback or transformers' eager attention)."""
    stack, seen = [loss.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if node.name().startswith(FUSED_ATTENTION_NODES):
            return "fused"
        stack.extend(fn for fn, _ in node.next_functions)
    return "eager"


def measure_activations(model, input_ids: torch.Tensor, autocast_dtype=None) -> MeasuredActivations:
    """Run one training-mode forward pass (with the loss) and count what it keeps for backward.

    Every tensor autograd saves passes through a ``saved_tensors_hooks`` pack hook; we record its storage
    (once per storage, parameters excluded -- they exist anyway) and leave the tensor untouched. The
    logits the model returns are added when autograd did not save them. The graph is freed afterwards
    (no backward is run).
    """
    model.train()
    params = {_storage_key(p)[0] for p in model.parameters()}
    saved: dict = {}
    dtypes: dict = {}

    def pack(t: torch.Tensor):
        key, nbytes = _storage_key(t)
        if key not in params and key not in saved:
            saved[key] = nbytes
            dtypes[key] = str(t.dtype).removeprefix("torch.")
        return t

    with (
        torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t),
        _autocast(input_ids.device, autocast_dtype),
    ):
        out = model(input_ids=input_ids, labels=input_ids)
    kind = attention_kind(out.loss)
    key, nbytes = _storage_key(out.logits)
    logits = 0 if key in saved else nbytes
    by_dtype = defaultdict(int)
    for k, nb in saved.items():
        by_dtype[dtypes[k]] += nb
    del out
    return MeasuredActivations(
        saved=sum(saved.values()), logits=logits, by_dtype=dict(by_dtype), attention=kind
    )


def llama_from_shape(shape: DecoderShape, attn_implementation: str = "sdpa", seed: int = 0):
    """A randomly initialised ``transformers.LlamaForCausalLM`` of ``shape`` (fp32, on the CPU).

    Same parameter count and tensor shapes as the real model of that shape, so every byte count matches;
    no weights need downloading.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.n_layers,
        num_attention_heads=shape.n_heads,
        num_key_value_heads=shape.n_kv_heads,
        vocab_size=shape.vocab_size,
        tie_word_embeddings=shape.tie_embeddings,
        max_position_embeddings=8192,
        attn_implementation=attn_implementation,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


@dataclass
class CudaPeak:
    """A CUDA training step's peak, measured by the caching allocator."""

    peak: int  # torch.cuda.max_memory_allocated during the measured step
    before_step: int  # torch.cuda.memory_allocated when the measured step began (weights + optimizer)
    attention: str  # "fused" or "eager": the attention kernel torch picked


def cuda_peak_step_memory(
    model, optimizer, input_ids: torch.Tensor, autocast_dtype=None, warmup_steps: int = 1
):
    """Peak allocated CUDA memory of one steady-state training step (model, optimizer and ids on CUDA).

    ``warmup_steps`` steps run first, so the optimizer's states exist (Adam creates them lazily in its first
    step) and the measured step is like every later one. Then ``reset_peak_memory_stats``, one step, and
    ``max_memory_allocated``: tensors only -- the CUDA context and the allocator's cached-but-free blocks
    (``memory_reserved``) are not included.
    """
    if input_ids.device.type != "cuda":
        fail("input_ids", f"<tensor on {input_ids.device}>", "a tensor on a CUDA device")
    for _ in range(warmup_steps):
        train_step(model, optimizer, input_ids, autocast_dtype)
    optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    model.train()
    with _autocast(input_ids.device, autocast_dtype):
        loss = model(input_ids=input_ids, labels=input_ids).loss
    kind = attention_kind(loss)
    loss.backward()
    optimizer.step()
    del loss
    torch.cuda.synchronize()
    return CudaPeak(peak=torch.cuda.max_memory_allocated(), before_step=before, attention=kind)
