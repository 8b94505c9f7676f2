"""Activation memory and the peak of a training step.

Activations are the tensors the forward pass keeps for the backward pass. They grow with batch size,
sequence length, width and depth -- not with the parameter count -- so the lecture's "8 bytes per
parameter" is only a rule of thumb: :func:`activation_memory` (Korthikanti et al. 2022, GPT-3-style blocks)
and :func:`decoder_activation_memory` (tensor by tensor, Llama-style blocks) count them properly, and
:func:`training_step_peak` adds the model states at the step's busiest moment. No torch import.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from utils.model_states import training_memory
from utils.shapes import DecoderShape
from utils.validate import check_amount, check_choice, check_int, fail

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
    d_model: int | None = None,
    n_layers: int,
    n_heads: int,
    bytes_per_value: float = 2,
    recompute: str = "none",
    vocab_size: int | None = None,
    logits_bytes_per_value: float = 4,
    hidden_size: int | None = None,
) -> ActivationMemory:
    r"""Activation bytes of a GPT-style transformer, Korthikanti et al. 2022 (sec. 4.1), no tensor parallelism.

    Per layer, with 16-bit activations (``bytes_per_value=2``), s = ``seq_len``, b = ``batch_size``,
    h = ``d_model`` (the paper's hidden size; ``hidden_size=`` is accepted as another name for it, as
    notebook 03 and the labs spell it after the paper), a = ``n_heads``:

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
    if (d_model is None) == (hidden_size is None):
        fail("d_model", d_model, f"exactly one of d_model and hidden_size (its other name), got hidden_size={hidden_size!r}")
    name = "d_model" if hidden_size is None else "hidden_size"
    hidden_size = check_int(name, hidden_size if d_model is None else d_model, minimum=1)
    seq_len = check_int("seq_len", seq_len, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    n_layers = check_int("n_layers", n_layers, minimum=1)
    n_heads = check_int("n_heads", n_heads, minimum=1)
    bytes_per_value = check_amount("bytes_per_value", bytes_per_value)
    check_choice("recompute", recompute, RECOMPUTE)
    logits_bytes_per_value = check_amount("logits_bytes_per_value", logits_bytes_per_value)
    vocab_size = check_int("vocab_size", vocab_size, minimum=1, allow_none=True)
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


#: Activation precisions of :func:`decoder_activation_memory` and :func:`training_step_peak`, each mapped to
#: its autocast format: plain fp32, or fp32 weights with ``torch.autocast`` running the matrix
#: multiplications in bf16 / fp16 -- spelled as ``utils.train.TrainConfig.precision`` spells them ("bf16",
#: "fp16"), or, as before, "bf16-autocast" / "fp16-autocast" (the same thing).
ACTIVATION_PRECISIONS: dict[str, str] = {
    "fp32": "fp32",
    "bf16": "bf16",
    "fp16": "fp16",
    "bf16-autocast": "bf16",
    "fp16-autocast": "fp16",
}
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

    ``precision``: a key of :data:`ACTIVATION_PRECISIONS` ("fp32", "bf16", "fp16"; 16-bit means autocast).
    ``logits``: the logits tensor the model returns (fp32, or 16-bit under autocast) plus the fp32
    log-softmax the loss keeps. ``other``: final norm and output-head input, token ids and labels (int64),
    the rotary cos/sin tables, and under autocast the 16-bit copies of every matrix (autocast caches them
    for the whole forward pass, and the backward pass needs them).
    """
    if not isinstance(shape, DecoderShape):
        fail("shape", shape, "a DecoderShape")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    seq_len = check_int("seq_len", seq_len, minimum=1)
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
