"""The memory arithmetic of training: bytes per parameter, activations, ZeRO sharding and GPUs needed.

Pure functions over explicit byte tables -- no torch import, so this module works anywhere. Every size
is in **bytes**; ``GB`` is 10^9 bytes (model sizes, as in the lecture and the papers), ``GiB`` 2^30 (what a
GPU reports: an "80GB" card has 80 GiB, see :mod:`utils.units` and :mod:`utils.hardware`).

What lives in memory while a model trains (Psi = number of parameters):

* **weights** (4 bytes per parameter in fp32, 2 in fp16/bf16, ...),
* **gradients** (one per weight),
* **optimizer states** (Adam: two running moments per weight; SGD with momentum: one),
* **activations**: the tensors the forward pass keeps for the backward pass. They grow with batch size,
  sequence length, width and depth -- not with Psi -- so the lecture's "8 bytes per parameter" is only a
  rule of thumb; :func:`activation_memory` (Korthikanti et al. 2022) and
  :func:`decoder_activation_memory` (a tensor-by-tensor count for Llama-style blocks) do it properly.

Sources: the lecture (24 bytes/param in fp32 with Adam), Rajbhandari et al. 2019 "ZeRO" (16 bytes/param
for mixed-precision Adam, sharding stages), the Hugging Face docs "model memory anatomy" (18 bytes/param),
Korthikanti et al. 2022 "Reducing Activation Recomputation in Large Transformer Models" (activations),
bitsandbytes (8-bit Adam); GPU figures with their sources in :mod:`utils.hardware`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

from utils.hardware import CONTEXT_RESERVE, COURSE_GPUS, GPU, GPU_TABLE
from utils.units import GB, GiB  # noqa: F401 -- re-exported: notebooks import the units from here
from utils.validate import check_choice

#: Bytes per value of each number format. 4-bit formats also need block scales (see ``utils.quant``).
BYTES_PER_DTYPE: dict[str, float] = {
    "fp32": 4,
    "fp16": 2,
    "bf16": 2,
    "int8": 1,
    "fp8": 1,
    "int4": 0.5,
    "nf4": 0.5,
}

# ---------------------------------------------------------------------------------------------------------
# Argument checks: every public function rejects nonsense with a ValueError naming argument, value, choices.
# ---------------------------------------------------------------------------------------------------------


def _check_number(name: str, value, *, allow_zero: bool = False) -> float:
    """A finite real number > 0 (>= 0 with ``allow_zero``); bools and strings are refused."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


def _check_int(name: str, value, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def dtype_bytes(dtype: str) -> float:
    """Bytes per value of ``dtype`` (a key of :data:`BYTES_PER_DTYPE`)."""
    check_choice("dtype", dtype, BYTES_PER_DTYPE)
    return BYTES_PER_DTYPE[dtype]


def model_memory(n_params, dtype: str = "fp32") -> float:
    """Bytes to **store** ``n_params`` weights in ``dtype``: 1B parameters in fp32 = 4 x 10^9 bytes = 4 GB.

    Weights only -- no block scales for 4-bit formats, no activations, no framework overhead.
    """
    _check_number("n_params", n_params)
    return n_params * dtype_bytes(dtype)


# ---------------------------------------------------------------------------------------------------------
# Model states: weights + gradients + optimizer states (+ the lecture's activation rule of thumb)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter of weights and gradients, and of the fp32 master copy the optimizer keeps."""

    weights: float  # bytes of the weight copies the forward pass uses
    gradients: float  # bytes of the gradient
    master: float  # bytes of an fp32 master copy of the weights, counted with the optimizer (ZeRO's view)
    description: str


#: Training precisions and their accounting (bytes per parameter, before optimizer states).
PRECISIONS: dict[str, Precision] = {
    # The lecture: everything in 32-bit floats. (torch.autocast "mixed precision" also keeps fp32 weights,
    # gradients and optimizer states -- only activations become 16-bit -- so its states count like this.)
    "fp32": Precision(4, 4, 0, "fp32 weights (4) + fp32 gradients (4) + fp32 optimizer states"),
    # ZeRO paper sec. 3.1: fp16/bf16 weights (2) and gradients (2); the optimizer holds an fp32 master copy
    # of the weights (4) plus its states, together K = 12 bytes for Adam: 2 + 2 + 12 = 16 bytes/param.
    "mixed": Precision(
        2, 2, 4, "16-bit weights (2) + 16-bit gradients (2) + optimizer: fp32 master weights (4) + states"
    ),
    # Hugging Face docs ("model memory anatomy"): fp32 weights and a 16-bit copy (4 + 2 = 6), fp32
    # gradients (4), optimizer states (Adam 8): 6 + 4 + 8 = 18 bytes/param. The master copy is counted with
    # the weights here, and gradients stay fp32 -- hence 2 bytes more than ZeRO's 16.
    "mixed-hf": Precision(6, 4, 0, "fp32 + 16-bit weights (6) + fp32 gradients (4) + optimizer states"),
}

#: bitsandbytes' 8-bit optimizers: one fp32 absmax per block of 256 values, per state (blockwise mode)...
ADAM8BIT_BLOCK_SIZE = 256
#: ...and parameter tensors smaller than this keep 32-bit states (bitsandbytes' ``min_8bit_size``)...
ADAM8BIT_MIN_SIZE = 4096
#: ...plus two shared 256-entry fp32 quantisation maps (signed for m, unsigned for v), once per optimizer.
ADAM8BIT_QMAP_BYTES = 2 * 256 * 4


@dataclass(frozen=True)
class Optimizer:
    """Bytes per parameter of an optimizer's states (fp32 master copy excluded)."""

    state_bytes: float
    description: str


#: Optimizers and the bytes per parameter of their states.
OPTIMIZERS: dict[str, Optimizer] = {
    "adam": Optimizer(8, "Adam: first and second moments m, v in fp32 (4 + 4)"),
    "adamw": Optimizer(8, "AdamW: the same two fp32 moments as Adam (weight decay needs no state)"),
    "sgd": Optimizer(4, "SGD with momentum: one fp32 momentum buffer"),
    # bitsandbytes Adam8bit, blockwise: m and v as uint8 (1 + 1) plus one fp32 absmax per 256 values for each
    # (2 * 4 / 256 = 0.03125). Exact per-tensor rules (small tensors stay 32-bit): model_state_bytes().
    "adam8bit": Optimizer(
        2 + 2 * 4 / ADAM8BIT_BLOCK_SIZE,
        "bitsandbytes 8-bit Adam: m, v in uint8 (2) + one fp32 scale per 256 values each (0.03125)",
    ),
}


@dataclass(frozen=True)
class TrainingMemory:
    """Where the bytes of training go. All fields in bytes; ``total`` adds them up."""

    weights: float
    gradients: float
    optimizer: float  # optimizer states, including the fp32 master copy under ZeRO's "mixed" accounting
    activations: float = 0.0

    @property
    def model_states(self) -> float:
        """Weights + gradients + optimizer states: what ZeRO shards."""
        return self.weights + self.gradients + self.optimizer

    @property
    def total(self) -> float:
        return self.model_states + self.activations

    def as_dict(self) -> dict[str, float]:
        """The four parts and the total, e.g. for a table."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["total"] = self.total
        return out

    def __add__(self, other: TrainingMemory) -> TrainingMemory:
        if not isinstance(other, TrainingMemory):
            return NotImplemented
        return TrainingMemory(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


def training_memory(
    n_params,
    *,
    precision: str = "fp32",
    optimizer: str = "adam",
    activation_bytes_per_param: float = 8.0,
) -> TrainingMemory:
    """Bytes to **train** ``n_params`` parameters, split into weights / gradients / optimizer / activations.

    ``precision`` (see :data:`PRECISIONS`):

    * ``"fp32"`` -- the lecture: 4 + 4 + 8 (Adam) = 16 bytes of model states, + 8 activations = **24**;
    * ``"mixed"`` -- ZeRO: 2 + 2 + (4 master + 8 Adam) = **16** bytes of model states;
    * ``"mixed-hf"`` -- Hugging Face docs: 6 + 4 + 8 = **18** bytes of model states.

    ``optimizer``: "adam" / "adamw" (8 bytes), "sgd" (momentum, 4), "adam8bit" (2.03125, bitsandbytes).
    ``activation_bytes_per_param``: the lecture's rule of thumb (8, "a high-end estimate"); pass 0 for model
    states alone. Real activations depend on batch and sequence length: see :func:`activation_memory`.
    """
    _check_number("n_params", n_params)
    check_choice("precision", precision, PRECISIONS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_number("activation_bytes_per_param", activation_bytes_per_param, allow_zero=True)
    p, o = PRECISIONS[precision], OPTIMIZERS[optimizer]
    return TrainingMemory(
        weights=n_params * p.weights,
        gradients=n_params * p.gradients,
        optimizer=n_params * (p.master + o.state_bytes),
        activations=n_params * activation_bytes_per_param,
    )


def adam8bit_state_bytes(numel: int) -> float:
    """Exact bytes of bitsandbytes 8-bit Adam's states for one parameter tensor of ``numel`` values.

    Tensors with at least :data:`ADAM8BIT_MIN_SIZE` values: two uint8 states plus two fp32 absmax vectors,
    one entry per block of 256. Smaller tensors (norm weights, biases) keep two fp32 states (8 bytes/value).
    """
    _check_int("numel", numel)
    if numel < ADAM8BIT_MIN_SIZE:
        return 8.0 * numel
    blocks = -(-numel // ADAM8BIT_BLOCK_SIZE)
    return 2.0 * numel + 2 * 4 * blocks


def model_state_bytes(param_numels: Iterable[int], *, precision: str = "fp32", optimizer: str = "adam"):
    """Exact model-state bytes for parameter tensors of the given sizes (one entry per tensor).

    Equals :func:`training_memory` with no activations, except for "adam8bit", whose block scales and
    32-bit small tensors are counted tensor by tensor (plus its two shared quantisation maps). Optimizer
    bookkeeping scalars (torch Adam's 0-dim ``step`` tensor per parameter tensor) are not counted.
    """
    check_choice("precision", precision, PRECISIONS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    numels = [_check_int("param_numels entry", n) for n in param_numels]
    if not numels:
        raise ValueError("param_numels must list at least one tensor size, got an empty list")
    n = sum(numels)
    base = training_memory(n, precision=precision, optimizer=optimizer, activation_bytes_per_param=0)
    if optimizer != "adam8bit":
        return base
    states = sum(adam8bit_state_bytes(k) for k in numels)
    if any(k >= ADAM8BIT_MIN_SIZE for k in numels):
        states += ADAM8BIT_QMAP_BYTES
    master = n * PRECISIONS[precision].master
    return TrainingMemory(base.weights, base.gradients, master + states, 0.0)


# ---------------------------------------------------------------------------------------------------------
# Activations
# ---------------------------------------------------------------------------------------------------------

#: Activation recomputation strategies of :func:`activation_memory`.
RECOMPUTE = ("none", "selective", "flash", "full")


@dataclass(frozen=True)
class ActivationMemory:
    """Bytes kept for the backward pass: ``n_layers`` identical layers, the logits, and the rest."""

    per_layer: float  # bytes one transformer layer keeps
    n_layers: int
    logits: float = 0.0  # logits-sized tensors (batch x sequence x vocabulary), counted apart
    other: float = 0.0  # outside the layers: final norm, token ids, rotary tables, autocast weight copies
    layer_rows: tuple = field(default=(), compare=False)  # (tensor, bytes per token) for one layer
    other_rows: tuple = field(default=(), compare=False)  # (tensor, bytes) outside the layers

    @property
    def layers(self) -> float:
        return self.per_layer * self.n_layers

    @property
    def total(self) -> float:
        return self.layers + self.logits + self.other


def activation_memory(
    *,
    seq_len: int,
    batch_size: int,
    hidden_size: int,
    n_layers: int,
    n_heads: int,
    bytes_per_value: float = 2,
    recompute: str = "none",
    vocab_size: int | None = None,
    logits_bytes_per_value: float = 4,
) -> ActivationMemory:
    r"""Activation bytes of a GPT-style transformer, Korthikanti et al. 2022 (sec. 4.1), no tensor parallelism.

    Per layer, with 16-bit activations (``bytes_per_value=2``), s = ``seq_len``, b = ``batch_size``,
    h = ``hidden_size``, a = ``n_heads``:

    .. math:: s\,b\,h\,\left(34 + 5\,\frac{a\,s}{h}\right)

    34 sbh: the layer norms' inputs (4), the attention block (11: QKV input, Q, K, V, projection input,
    dropout mask) and the MLP (19: input, 4h GELU input and output, dropout mask); 5 as^2b: the attention
    scores' softmax output (2), its dropout mask (1) and dropout output (2). The formula assumes the
    GPT-3 block: multi-head attention, a 4h GELU MLP, dropout.

    ``recompute``: "none"; "selective" (recompute the attention core, Korthikanti's choice) or "flash" (a
    fused attention kernel never stores the s x s scores): both drop the 5as/h term; "full" (activation
    checkpointing): only each layer's input, 2 sbh bytes. Other ``bytes_per_value`` scale the count
    (e.g. 4 for fp32 activations; the 1-byte dropout masks are scaled too, a small overestimate).

    ``vocab_size``: also count the logits, s*b*V values of ``logits_bytes_per_value`` bytes (4: the loss
    is computed in fp32, as the paper's 4sbv output-layer term assumes).
    """
    for name, value in (("seq_len", seq_len), ("batch_size", batch_size), ("hidden_size", hidden_size)):
        _check_int(name, value)
    _check_int("n_layers", n_layers)
    _check_int("n_heads", n_heads)
    _check_number("bytes_per_value", bytes_per_value)
    check_choice("recompute", recompute, RECOMPUTE)
    _check_number("logits_bytes_per_value", logits_bytes_per_value)
    if vocab_size is not None:
        _check_int("vocab_size", vocab_size)
    sbh = seq_len * batch_size * hidden_size
    scale = bytes_per_value / 2  # the paper counts 16-bit bytes
    if recompute == "none":
        per_layer = sbh * (34 + 5 * n_heads * seq_len / hidden_size) * scale
    elif recompute in ("selective", "flash"):
        per_layer = sbh * 34 * scale
    else:  # full
        per_layer = sbh * 2 * scale
    logits = seq_len * batch_size * vocab_size * logits_bytes_per_value if vocab_size else 0.0
    return ActivationMemory(per_layer=per_layer, n_layers=n_layers, logits=logits)


@dataclass(frozen=True)
class DecoderShape:
    """The shape of a Llama-style decoder (RMSNorm, rotary positions, grouped-query attention, SwiGLU MLP)."""

    hidden_size: int  # h
    intermediate_size: int  # I, the SwiGLU MLP's inner width
    n_layers: int  # L
    n_heads: int  # a, query heads
    n_kv_heads: int  # key/value heads (grouped-query attention when < n_heads)
    vocab_size: int  # V
    tie_embeddings: bool = True  # the output projection shares the token embedding matrix

    def __post_init__(self):
        for f in fields(self):
            if f.name != "tie_embeddings":
                _check_int(f.name, getattr(self, f.name))
        if self.hidden_size % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} must divide hidden_size={self.hidden_size}, and n_kv_heads="
                f"{self.n_kv_heads} must divide n_heads (accepted: divisors)"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    @property
    def kv_size(self) -> int:
        """Width of the key (and of the value) projection: n_kv_heads x head_dim."""
        return self.n_kv_heads * self.head_dim

    @property
    def matmul_params(self) -> int:
        """Parameters of the matrix multiplications: attention and MLP projections, and the output head."""
        h, kv, i = self.hidden_size, self.kv_size, self.intermediate_size
        return self.n_layers * (2 * h * h + 2 * h * kv + 3 * h * i) + self.vocab_size * h

    @property
    def n_params(self) -> int:
        """All parameters: matrices, norm weights, token embeddings (once if tied)."""
        norms = (2 * self.n_layers + 1) * self.hidden_size
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)
        return self.matmul_params - self.vocab_size * self.hidden_size + norms + embeddings

    @classmethod
    def from_config(cls, config) -> DecoderShape:
        """Read a ``transformers`` Llama-style config (``LlamaConfig``, a loaded model's ``.config``)."""
        heads = config.num_attention_heads
        return cls(
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            n_layers=config.num_hidden_layers,
            n_heads=heads,
            n_kv_heads=getattr(config, "num_key_value_heads", None) or heads,
            vocab_size=config.vocab_size,
            tie_embeddings=bool(getattr(config, "tie_word_embeddings", True)),
        )


#: SmolLM2-135M (HuggingFaceTB/SmolLM2-135M): 134,515,008 parameters.
SMOLLM2_135M = DecoderShape(
    hidden_size=576, intermediate_size=1536, n_layers=30, n_heads=9, n_kv_heads=3, vocab_size=49152
)

#: Activation precisions of :func:`decoder_activation_memory`: plain fp32, or fp32 weights with
#: ``torch.autocast`` running the matrix multiplications in a 16-bit format.
ACTIVATION_PRECISIONS = ("fp32", "bf16-autocast", "fp16-autocast")
#: Attention implementations: "fused" (a flash / memory-efficient / cuDNN kernel keeps q, k, v, the output
#: and one log-sum-exp per row) or "eager" (the s x s probabilities are materialised and kept: transformers'
#: eager attention, and also torch's "math" SDPA fallback, e.g. fp32 with grouped-query heads on CUDA).
ATTENTION_KINDS = ("fused", "eager")


def _decoder_layer_rows(shape: DecoderShape, seq_len: int, precision: str, attention: str):
    """(tensor, bytes per token) that one Llama decoder layer keeps for backward.

    Counted tensor by tensor from what autograd saves in transformers' LlamaDecoderLayer (checked against
    torch's saved-tensor hooks in tests/test_memory_measure.py):

    * RMSNorm keeps its input x, 1/rms (one value per token) and the normalised x (for the weight's grad).
    * A linear layer keeps its input. Under autocast each projection casts its (fp32) input to 16 bits
      separately, so q/k/v keep three 16-bit copies of the norm output and gate/up keep two.
    * Rotary embeddings multiply by constant cos/sin tables and keep nothing per token; SiLU keeps its
      input, the SwiGLU product keeps both factors, the down projection its input.
    * Attention, "fused": q, k, v (key/value heads only), the output (also the o_proj input), and one fp32
      log-sum-exp per head. "eager": q, keys and values repeated to every head, the probabilities
      (a x s values per token; under autocast the fp32 softmax output and its 16-bit copy), and the
      o_proj input.
    """
    h, kv, i, a = shape.hidden_size, shape.kv_size, shape.intermediate_size, shape.n_heads
    auto = precision != "fp32"
    f32 = 4  # norms and the residual stream stay fp32 under autocast
    mm = 2 if auto else 4  # bytes of a matmul input / output
    rows = [
        ("attention norm: input x", f32 * h),
        ("attention norm: 1/rms", f32),
        ("attention norm: normalised x", f32 * h),
        ("q/k/v projection input" + (" (3 16-bit casts)" if auto else ""), (3 if auto else 1) * mm * h),
    ]
    if attention == "fused":
        rows += [
            ("attention kernel: q", mm * h),
            ("attention kernel: k, v (kv heads)", mm * 2 * kv),
            ("attention kernel: output = o_proj input", mm * h),
            ("attention kernel: log-sum-exp (fp32)", 4 * a),
        ]
    else:
        rows += [
            ("eager attention: q", mm * h),
            ("eager attention: k, v repeated to all heads", mm * 2 * h),
            (
                "eager attention: probabilities (a x s)" + (" fp32 + 16-bit copy" if auto else ""),
                (6 if auto else 4) * a * seq_len,
            ),
            ("o_proj input", mm * h),
        ]
    rows += [
        ("MLP norm: input x", f32 * h),
        ("MLP norm: 1/rms", f32),
        ("MLP norm: normalised x", f32 * h),
        ("gate/up projection input" + (" (2 16-bit casts)" if auto else ""), (2 if auto else 1) * mm * h),
        ("gate output (SiLU input)", mm * i),
        ("SiLU output", mm * i),
        ("up output", mm * i),
        ("down projection input", mm * i),
    ]
    return tuple(rows)


def decoder_activation_memory(
    shape: DecoderShape,
    *,
    batch_size: int,
    seq_len: int,
    precision: str = "fp32",
    attention: str = "fused",
) -> ActivationMemory:
    r"""Activation bytes of one training step of a Llama-style decoder (transformers' LlamaForCausalLM).

    A generalisation of Korthikanti's count to the actual block: RMSNorm (no biases, no dropout),
    grouped-query attention with ``n_kv_heads`` key/value heads, a SwiGLU MLP of width I. Per layer and
    token, fp32, fused attention (values of 4 bytes; kv = n_kv_heads x head_dim):

    .. math:: 8h + 2\,kv + 4I + a + 2

    and eager attention replaces :math:`2h + 2kv + a` (q, output, k, v, log-sum-exp) by
    :math:`4h + a\,s` (q, repeated k and v, o_proj input, probabilities). The tables behind it are in
    ``layer_rows`` / ``other_rows`` of the result.

    ``logits``: the logits tensor the model returns (fp32, or 16-bit under autocast) plus the fp32
    log-softmax the loss keeps. ``other``: final norm and output-head input, token ids and labels (int64),
    the rotary cos/sin tables, and under autocast the 16-bit copies of every matrix (autocast caches them
    for the whole forward pass, and the backward pass needs them).
    """
    if not isinstance(shape, DecoderShape):
        raise ValueError(f"shape must be a DecoderShape, got {type(shape).__name__}")
    _check_int("batch_size", batch_size)
    _check_int("seq_len", seq_len)
    check_choice("precision", precision, ACTIVATION_PRECISIONS)
    check_choice("attention", attention, ATTENTION_KINDS)
    tokens = batch_size * seq_len
    auto = precision != "fp32"
    mm = 2 if auto else 4
    h, v = shape.hidden_size, shape.vocab_size
    layer_rows = _decoder_layer_rows(shape, seq_len, precision, attention)
    per_layer = tokens * sum(b for _, b in layer_rows)
    other_rows = [
        ("final norm: input, 1/rms, normalised x", tokens * (4 * h + 4 + 4 * h)),
        ("output head input", tokens * mm * h),
        ("token ids and labels (int64)", tokens * 2 * 8),
        ("the loss's total weight (one fp32 scalar)", 4),
        (
            "rotary cos/sin tables (fp32, shared by the batch and the layers)",
            seq_len * 2 * 4 * shape.head_dim,
        ),
    ]
    if auto:
        other_rows.append(("16-bit copies of the weight matrices (autocast cache)", 2 * shape.matmul_params))
    logits = tokens * v * (mm + 4)  # logits returned by the model + fp32 log-softmax kept by the loss
    return ActivationMemory(
        per_layer=per_layer,
        n_layers=shape.n_layers,
        logits=logits,
        other=sum(b for _, b in other_rows),
        layer_rows=layer_rows,
        other_rows=tuple(other_rows),
    )


@dataclass(frozen=True)
class PeakMemory:
    """Predicted peak bytes of a training step, and which moment of the step it happens at."""

    weights: float
    gradients: float  # gradients alive at that moment
    optimizer: float
    activations: float  # saved for backward, logits included
    loss_backward: float  # the loss's gradients w.r.t. the logits (two fp32 batch x seq x vocab tensors)
    phase: str  # "start of backward" or "optimizer step"

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.loss_backward


def training_step_peak(
    shape: DecoderShape,
    *,
    batch_size: int,
    seq_len: int,
    precision: str = "fp32",
    attention: str = "fused",
    optimizer: str = "adamw",
    grads_kept: bool = False,
    logits_kept: bool = False,
) -> PeakMemory:
    """Peak bytes of one steady-state training step (forward, backward, optimizer step) of a Llama decoder.

    Model states are fp32 in both ``precision`` modes (autocast keeps fp32 weights, gradients and optimizer
    states). The peak is the larger of two moments:

    * **start of backward**: weights + optimizer states + every saved activation (the loss's fp32
      log-softmax included), plus the loss's two fp32 logits-sized gradients;
    * **optimizer step**: weights + gradients + optimizer states (activations are freed by then; the
      optimizer's temporary buffers are not counted).

    ``grads_kept``: gradients do not exist during the forward pass when ``zero_grad`` sets them to None
    (torch's default, False); True counts them at the start of backward too. ``logits_kept``: a loop that
    keeps only the loss (``loss = model(...).loss``, as :mod:`utils.memory_measure` and the HF Trainer do)
    frees the returned logits before backward (False); True counts them, for loops that hold the output.

    Not counted: the CUDA context, library workspaces (cuBLAS), allocator rounding and fragmentation --
    typically one or two hundred MB on a GPU.
    """
    acts = decoder_activation_memory(
        shape, batch_size=batch_size, seq_len=seq_len, precision=precision, attention=attention
    )
    states = training_memory(
        shape.n_params, precision="fp32", optimizer=optimizer, activation_bytes_per_param=0
    )
    tokens_x_vocab = batch_size * seq_len * shape.vocab_size
    returned_logits = tokens_x_vocab * (4 if precision == "fp32" else 2)
    activations = acts.total - (0 if logits_kept else returned_logits)
    loss_backward = 2 * 4 * tokens_x_vocab
    grads_at_backward = states.gradients if grads_kept else 0.0
    start_backward = states.weights + grads_at_backward + states.optimizer + activations + loss_backward
    if start_backward >= states.model_states:
        return PeakMemory(
            states.weights,
            grads_at_backward,
            states.optimizer,
            activations,
            loss_backward,
            "start of backward",
        )
    return PeakMemory(states.weights, states.gradients, states.optimizer, 0.0, 0.0, "optimizer step")


# ---------------------------------------------------------------------------------------------------------
# ZeRO: sharding the model states over data-parallel devices
# ---------------------------------------------------------------------------------------------------------

ZERO_STAGES = (0, 1, 2, 3)


def zero_memory_per_device(
    n_params,
    n_devices: int,
    stage: int,
    optimizer_bytes: float = 12,
    *,
    weight_bytes: float = 2,
    gradient_bytes: float = 2,
) -> float:
    r"""Model-state bytes per device under ZeRO (Rajbhandari et al. 2019), Psi = ``n_params``, N = ``n_devices``.

    ======  ============================  =====================================================
    stage   what is sharded               bytes per device
    ======  ============================  =====================================================
    0       nothing (data parallel)       :math:`(2 + 2 + K)\,\Psi`
    1       optimizer states (P_os)       :math:`2\Psi + 2\Psi + K\Psi/N`
    2       + gradients (P_os+g)          :math:`2\Psi + (2 + K)\,\Psi/N`
    3       + parameters (P_os+g+p)       :math:`(2 + 2 + K)\,\Psi/N`
    ======  ============================  =====================================================

    K = ``optimizer_bytes`` = 12 for mixed-precision Adam (fp32 master weights, m, v). Paper Fig. 1:
    Psi = 7.5B, N = 64 gives 120, 31.4, 16.6 and 1.9 GB. Activations are not included.
    """
    _check_number("n_params", n_params)
    _check_int("n_devices", n_devices)
    if not isinstance(stage, int) or isinstance(stage, bool) or stage not in ZERO_STAGES:
        raise ValueError(f"stage={stage!r} is not valid; choose one of {ZERO_STAGES}")
    _check_number("optimizer_bytes", optimizer_bytes, allow_zero=True)
    _check_number("weight_bytes", weight_bytes)
    _check_number("gradient_bytes", gradient_bytes)
    w, g, k, n = weight_bytes, gradient_bytes, optimizer_bytes, n_devices
    per_param = {
        0: w + g + k,
        1: w + g + k / n,
        2: w + (g + k) / n,
        3: (w + g + k) / n,
    }[stage]
    return n_params * per_param


# ---------------------------------------------------------------------------------------------------------
# GPUs
# ---------------------------------------------------------------------------------------------------------


#: The GPUs the course's tables compare, rows of :data:`utils.hardware.GPU_TABLE` (which has more cards;
#: :func:`gpu_estimate` accepts any of them).
GPUS: dict[str, GPU] = {key: GPU_TABLE[key] for key in COURSE_GPUS}

#: What a model needs memory for, in :func:`gpus_needed`.
TASKS = ("store", "finetune", "pretrain")


@dataclass(frozen=True)
class GpuEstimate:
    """How many GPUs of one kind hold the bytes a task needs."""

    gpu: str
    task: str
    bytes_needed: float
    gpu_bytes: float
    n_gpus: int


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


def gpus_needed(
    n_params,
    gpu: str = "A100-80",
    task: str = "pretrain",
    *,
    precision: str = "fp32",
    optimizer: str = "adam",
    activation_bytes_per_param: float = 8.0,
    reserve_bytes: float = CONTEXT_RESERVE,
) -> int:
    """The number of ``gpu`` GPUs a ``task`` needs for ``n_params`` parameters (see :func:`gpu_estimate`)."""
    return gpu_estimate(
        n_params,
        gpu,
        task,
        precision=precision,
        optimizer=optimizer,
        activation_bytes_per_param=activation_bytes_per_param,
        reserve_bytes=reserve_bytes,
    ).n_gpus


# ---------------------------------------------------------------------------------------------------------
# A calculator over the GPT-3 family's shapes (for the notebook's interactive widget)
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GptShape:
    """A GPT-3 model's shape (Brown et al. 2020, Table 2.1; parameter counts from Table D.1)."""

    n_params: float
    n_layers: int
    hidden_size: int
    n_heads: int


#: The GPT-3 family (vocabulary 50,257, context 2,048).
GPT3_SHAPES: dict[str, GptShape] = {
    "GPT-3 Small (125M)": GptShape(125e6, 12, 768, 12),
    "GPT-3 Medium (356M)": GptShape(356e6, 24, 1024, 16),
    "GPT-3 Large (760M)": GptShape(760e6, 24, 1536, 16),
    "GPT-3 XL (1.3B)": GptShape(1_320e6, 24, 2048, 24),
    "GPT-3 2.7B": GptShape(2_650e6, 32, 2560, 32),
    "GPT-3 6.7B": GptShape(6_660e6, 32, 4096, 32),
    "GPT-3 13B": GptShape(12_850e6, 40, 5140, 40),
    "GPT-3 175B": GptShape(174_600e6, 96, 12288, 96),
}
GPT3_VOCAB_SIZE = 50257


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
        hidden_size=g.hidden_size,
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


def format_bytes(n_bytes: float, unit: str = "GB", digits: int = 1) -> str:
    """``n_bytes`` in ``unit`` ("B", "KB", "MB", "GB", "TB", or "GiB"/"MiB"), thousands separated."""
    units = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "MiB": 2**20, "GiB": 2**30}
    check_choice("unit", unit, units)
    return f"{n_bytes / units[unit]:,.{digits}f} {unit}"


def format_table(headers, rows) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned (reads well on GitHub too)."""
    headers = [str(h) for h in headers]
    rows = [[str(c) for c in row] for row in rows]
    if any(len(row) != len(headers) for row in rows):
        raise ValueError(f"rows must have {len(headers)} cells each (one per header), got {rows!r}")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers), "  ".join("-" * w for w in widths), *map(line, rows)])
