"""Quantizing a whole transformers model with bitsandbytes, on the device at hand, and measuring it.

:mod:`utils.quant` shows the algorithms from scratch; this module runs the real kernels on a real model:

* :func:`replace_linears` swaps every ``nn.Linear`` of the transformer blocks for a bitsandbytes layer (the
  swap that ``transformers`` does at load time with ``BitsAndBytesConfig``);
* :func:`quantize_model` puts a model on ``device`` in one of :data:`MODEL_FORMATS`: fp32 / bf16 / fp16 as
  plain casts, or every ``nn.Linear`` of the transformer blocks replaced by a bitsandbytes layer --
  ``Linear8bitLt`` (LLM.int8(), outlier threshold 6.0) or ``Linear4bit`` (NF4 / FP4 in blocks of 64 with
  double-quantized scales). Quantization happens when the layer moves to the device.
* :func:`compute_dtype` picks the 16-bit type the quantized layers compute in: bf16 on a GPU that has it,
  fp16 on one that does not (a T4), fp32 on the CPU (bitsandbytes de-quantizes there; 16-bit CPU math is
  emulated and slower).
* :func:`state_bytes`, :func:`measure_generation` (tokens/s and, on CUDA, the allocator's peak) and
  :func:`int8_outlier_columns` (which input features a real ``Linear8bitLt`` kept in 16 bits).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import torch
from torch import nn

from utils.env import bf16_supported, check_choice, import_bitsandbytes
from utils.memory_measure import storage_bytes
from utils.validate import check_int, check_number

#: What :func:`quantize_model` produces: plain floating-point casts, then bitsandbytes formats.
MODEL_FORMATS = ("fp32", "bf16", "fp16", "int8", "nf4", "fp4")
BNB_FORMATS = ("int8", "nf4", "fp4")
#: LLM.int8()'s default: an input feature with any |value| at or above this is multiplied in 16 bits
#: (the paper says "larger than"; bitsandbytes' kernels select |x| >= threshold, and we follow the library).
INT8_THRESHOLD = 6.0

# bitsandbytes logs "inputs will be cast from float32 to float16" on every int8 forward whose input is not
# fp16 (every one on the CPU, where we compute in fp32): noise for a learner, so only its errors are shown.
logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)


def compute_dtype(device, bf16_ok: bool | None = None) -> torch.dtype:
    """The dtype quantized layers compute in on ``device`` (``bf16_ok`` overrides the probe, for tests)."""
    device = torch.device(device)
    if device.type == "cpu":
        return torch.float32
    ok = bf16_supported(device) if bf16_ok is None else bf16_ok
    return torch.bfloat16 if ok else torch.float16


def format_dtype(fmt: str, device, bf16_ok: bool | None = None) -> torch.dtype:
    """The dtype of everything a format does not quantize (embeddings, norms, the head) on ``device``.

    int8 computes in fp16 on a GPU (bitsandbytes casts its input to fp16 anyway), 4-bit formats in
    :func:`compute_dtype`; the plain formats are their own dtype.
    """
    check_choice("fmt", fmt, MODEL_FORMATS)
    plain = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if fmt in plain:
        return plain[fmt]
    if torch.device(device).type == "cpu":
        return torch.float32
    return torch.float16 if fmt == "int8" else compute_dtype(device, bf16_ok)


def _bnb_linear(bnb, child: nn.Linear, fmt: str, dtype: torch.dtype, threshold: float, blocksize: int):
    bias = child.bias is not None
    if fmt == "int8":
        new = bnb.nn.Linear8bitLt(
            child.in_features, child.out_features, bias=bias, has_fp16_weights=False, threshold=threshold
        )
        new.weight = bnb.nn.Int8Params(child.weight.data.to(dtype), requires_grad=False, has_fp16_weights=False)
    else:
        new = bnb.nn.Linear4bit(
            child.in_features, child.out_features, bias=bias, compute_dtype=dtype, quant_type=fmt,
            compress_statistics=True,  # double quantization: the block scales are stored in 8 bits
        )
        new.weight = bnb.nn.Params4bit(
            child.weight.data.to(dtype), requires_grad=False, quant_type=fmt, blocksize=blocksize
        )
    if bias:
        new.bias = nn.Parameter(child.bias.data.to(dtype), requires_grad=False)
    return new


def quantize_model(
    model: nn.Module,
    fmt: str,
    device="cpu",
    *,
    blocks: str = "model.layers",
    threshold: float = INT8_THRESHOLD,
    blocksize: int = 64,
    bf16_ok: bool | None = None,
    copy_model: bool = True,
) -> nn.Module:
    """``model`` in format ``fmt`` on ``device`` (a copy unless ``copy_model=False``).

    For int8 / nf4 / fp4 every ``nn.Linear`` under the attribute path ``blocks`` (a Llama's
    ``model.layers``) becomes a bitsandbytes layer; the embeddings, norms and output head stay in
    :func:`format_dtype`. ``threshold``: LLM.int8()'s outlier threshold (0 turns the decomposition off).
    """
    check_choice("fmt", fmt, MODEL_FORMATS)
    device = torch.device(device)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    threshold = check_number("threshold", threshold, minimum=0)
    _check_blocksize(blocksize)
    dtype = format_dtype(fmt, device, bf16_ok)
    _block_root(model, blocks)  # a wrong path fails before the copy
    m = copy.deepcopy(model) if copy_model else model
    if fmt in BNB_FORMATS:
        replace_linears(m, fmt, blocks=blocks, dtype=dtype, threshold=threshold, blocksize=blocksize)
    # non-quantized parameters take the format's dtype; bitsandbytes' own tensors keep theirs
    for p in m.parameters():
        if p.is_floating_point() and type(p) is nn.Parameter:
            p.data = p.data.to(dtype)
    # Inference only, and one code path whatever the grad mode: on a CPU with AVX512-BF16, bitsandbytes
    # repacks a Linear4bit at its first forward *whose input needs no grad* (scales rounded to bf16, a
    # different kernel). With trainable embeddings that depends on torch.no_grad(), and the logits moved
    # by up to 0.4 on SmolLM2 between the two paths; frozen parameters make every forward take the same one.
    m.requires_grad_(False)
    return m.to(device).eval()  # moving a bitsandbytes layer to the device quantizes it


def _check_blocksize(blocksize) -> int:
    if blocksize not in (32, 64, 128, 256, 512, 1024, 2048, 4096) or isinstance(blocksize, bool):
        raise ValueError(f"blocksize={blocksize!r} is not valid; accepted: a power of two from 32 to 4096")
    return int(blocksize)


def _block_root(model: nn.Module, blocks: str) -> nn.Module:
    root = model
    for part in blocks.split("."):
        if not hasattr(root, part):
            raise ValueError(f"blocks={blocks!r} is not an attribute path of this model (no {part!r})")
        root = getattr(root, part)
    return root


def replace_linears(
    model: nn.Module,
    fmt: str,
    *,
    blocks: str = "model.layers",
    dtype: torch.dtype = torch.float32,
    threshold: float = INT8_THRESHOLD,
    blocksize: int = 64,
) -> int:
    """Swap, in place, every ``nn.Linear`` under ``blocks`` for a bitsandbytes layer of format ``fmt``
    (int8 / nf4 / fp4) holding the same weights in ``dtype``, not yet quantized (moving it to a device
    does that). Returns how many layers were swapped. :func:`quantize_model` is this plus the casts."""
    check_choice("fmt", fmt, BNB_FORMATS)
    threshold = check_number("threshold", threshold, minimum=0)
    blocksize = _check_blocksize(blocksize)
    bnb = import_bitsandbytes()
    root = _block_root(model, blocks)
    swapped = 0
    for module in list(root.modules()):
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, name, _bnb_linear(bnb, child, fmt, dtype, threshold, blocksize))
                swapped += 1
    return swapped


def _packed_for_cpu(module: nn.Module) -> bool:
    """Whether a Linear4bit in ``module`` was repacked for bitsandbytes' CPU kernel (at its first forward)."""
    return any(
        getattr(getattr(getattr(m, "weight", None), "quant_state", None), "packing_format_for_cpu", False)
        for m in module.modules()
    )


#: The tail of bitsandbytes' serialized quant-state key: ``<param>.quant_state.bitsandbytes__nf4`` (or fp4).
PACKED_METADATA = ".quant_state.bitsandbytes__"


def state_bytes(module: nn.Module, exclude_tied: bool = True) -> int:
    """Bytes of what ``module`` holds: its state dict's tensors (weights, scales, quantization maps), exactly.

    A tied output head shares the embedding's storage: counted once (``exclude_tied``).

    One state-dict entry per 4-bit layer is not held by the layer but written by ``state_dict()`` for saving:
    ``...quant_state.bitsandbytes__nf4``, a uint8 tensor holding a JSON text of the quant type, block size,
    dtype, shape and ``nested_offset`` (the mean subtracted from the block scales before they are
    double-quantized). Its length follows the offset's shortest decimal repr (``0.051690228283405304``,
    20 characters, vs ``0.05169963836669922``, 19): about 170 bytes that change by a byte or two whenever the
    scales are re-quantized (bitsandbytes' CPU repacking does that). It is left out; the offset itself,
    which the layer holds as a 4-byte tensor, is counted instead. So the count is what the model holds and
    does not move when the layer is repacked.
    """
    if _packed_for_cpu(module):
        # bitsandbytes' state_dict() turns a CPU-repacked Linear4bit back into its storage format and, with
        # double quantization, re-quantizes the block scales: the layer's outputs change (by up to 0.3 in
        # SmolLM2's logits). Count a copy and leave the caller's model as it is.
        module = copy.deepcopy(module)
    tensors = [t for k, t in module.state_dict(keep_vars=True).items()
               if isinstance(t, torch.Tensor) and PACKED_METADATA not in k]
    for m in module.modules():  # the double-quantization offsets the JSON text carried
        offset = getattr(getattr(getattr(m, "weight", None), "quant_state", None), "offset", None)
        if isinstance(offset, torch.Tensor):
            tensors.append(offset)
    if exclude_tied:  # unique storages, as utils.memory_measure counts a model's parameters
        return storage_bytes(tensors)
    return sum(t.numel() * t.element_size() for t in tensors)


@dataclass
class GenerationRun:
    """What :func:`measure_generation` measured."""

    new_tokens: int  # tokens generated after the prompt (greedy)
    seconds: float  # wall time of the timed generation (after one warm-up call)
    tokens_per_s: float  # new_tokens / seconds
    peak_bytes: int | None  # CUDA: max allocated during the timed call; None elsewhere
    resident_bytes: int | None  # CUDA: allocated before the first call (the model and its inputs, nothing else
    # if the caller holds nothing else there); the peak also counts cuBLAS's workspace (32 MiB on an H100/H200)
    text: str  # the continuation, decoded


@torch.no_grad()
def measure_generation(model, tokenizer, prompt: str, max_new_tokens: int = 32) -> GenerationRun:
    """Greedy generation speed of ``model`` on its own device (one untimed warm-up call first)."""
    max_new_tokens = check_int("max_new_tokens", max_new_tokens, minimum=1)
    device = next(model.parameters()).device
    enc = tokenizer(prompt, return_tensors="pt").to(device)
    kwargs = dict(max_new_tokens=max_new_tokens, min_new_tokens=max_new_tokens, do_sample=False,
                  pad_token_id=tokenizer.eos_token_id)
    cuda = device.type == "cuda"
    if cuda:  # before any kernel runs: the model alone (cuBLAS then adds a 32 MiB workspace to the allocator)
        torch.cuda.synchronize(device)
        resident = torch.cuda.memory_allocated(device)
    model.generate(**enc, **{**kwargs, "max_new_tokens": 2, "min_new_tokens": 2})  # warm-up: kernels, caches
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    out = model.generate(**enc, **kwargs)
    if cuda:
        torch.cuda.synchronize(device)
    secs = time.perf_counter() - t0
    n = out.shape[1] - enc["input_ids"].shape[1]
    return GenerationRun(
        new_tokens=n,
        seconds=secs,
        tokens_per_s=n / secs,
        peak_bytes=torch.cuda.max_memory_allocated(device) if cuda else None,
        resident_bytes=resident if cuda else None,
        text=tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True),
    )


@dataclass
class OutlierReport:
    """One ``Linear8bitLt`` after a forward pass: which input features LLM.int8() multiplied in 16 bits."""

    name: str  # the layer's name in the model
    in_features: int  # input features (columns of the activations)
    kept_16bit: list  # bitsandbytes' outlier columns (``layer.state.idx``), sorted
    above_threshold: list  # columns where our own rule (any |x| >= threshold) fires on the same input
    max_abs: torch.Tensor  # per-column max |x| of the input (fp32, on the CPU), for a plot


@torch.no_grad()
def int8_outlier_columns(model, inputs: dict, threshold: float = INT8_THRESHOLD) -> list[OutlierReport]:
    """Run ``model(**inputs)`` once and report, for every ``Linear8bitLt``, the columns kept in 16 bits.

    ``kept_16bit`` is what the library decided (its ``state.idx``); ``above_threshold`` is the paper's rule
    applied to the input we captured, rounded to fp16 as bitsandbytes does: the two should agree.
    """
    bnb = import_bitsandbytes()
    captured, hooks = {}, []
    for name, layer in model.named_modules():
        if isinstance(layer, bnb.nn.Linear8bitLt):
            def hook(mod, args, name=name):
                x = args[0].reshape(-1, args[0].shape[-1]).to(torch.float16).float()
                captured[name] = x.abs().amax(dim=0).cpu()
            hooks.append(layer.register_forward_pre_hook(hook))
    try:
        model(**inputs)
    finally:
        for h in hooks:
            h.remove()
    reports = []
    for name, layer in model.named_modules():
        if name in captured:
            idx = getattr(layer.state, "idx", None)
            kept = sorted(int(i) for i in idx.tolist()) if idx is not None else []
            max_abs = captured[name]
            reports.append(OutlierReport(
                name=name, in_features=max_abs.numel(), kept_16bit=kept,
                above_threshold=(max_abs >= threshold).nonzero().flatten().tolist(), max_abs=max_abs,
            ))
    return reports
