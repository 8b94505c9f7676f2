"""Model-state memory: bytes per parameter of weights, gradients and optimizer states, and ZeRO's sharding.

Pure functions over explicit byte tables (no torch import). Every size is in bytes; the lecture's and
the papers' sizes are decimal (1B parameters in fp32 = 4 GB = 4 x 10^9 bytes).

Sources: the lecture (24 bytes/param in fp32 with Adam), Rajbhandari et al. 2019 "ZeRO" (16 bytes/param
for mixed-precision Adam, sharding stages), the Hugging Face docs "model memory anatomy" (18 bytes/param),
bitsandbytes (8-bit Adam).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from utils.validate import check_amount, check_choice, check_int, fail

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


def dtype_bytes(dtype: str) -> float:
    """Bytes per value of ``dtype`` (a key of :data:`BYTES_PER_DTYPE`)."""
    check_choice("dtype", dtype, BYTES_PER_DTYPE)
    return BYTES_PER_DTYPE[dtype]


def model_memory(n_params, dtype: str = "fp32") -> float:
    """Bytes to **store** ``n_params`` weights in ``dtype``: 1B parameters in fp32 = 4 x 10^9 bytes = 4 GB.

    Weights only -- no block scales for 4-bit formats, no activations, no framework overhead.
    """
    n_params = check_amount("n_params", n_params)
    return n_params * dtype_bytes(dtype)


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
    n_params = check_amount("n_params", n_params)
    check_choice("precision", precision, PRECISIONS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    activation_bytes_per_param = check_amount("activation_bytes_per_param", activation_bytes_per_param, allow_zero=True)
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
    numel = check_int("numel", numel, minimum=1)
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
    numels = [check_int("param_numels entry", n, minimum=1) for n in param_numels]
    if not numels:
        fail("param_numels", [], "at least one tensor size")
    n = sum(numels)
    base = training_memory(n, precision=precision, optimizer=optimizer, activation_bytes_per_param=0)
    if optimizer != "adam8bit":
        return base
    states = sum(adam8bit_state_bytes(k) for k in numels)
    if any(k >= ADAM8BIT_MIN_SIZE for k in numels):
        states += ADAM8BIT_QMAP_BYTES
    master = n * PRECISIONS[precision].master
    return TrainingMemory(base.weights, base.gradients, master + states, 0.0)


# ZeRO: sharding the model states over data-parallel devices

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
    n_params = check_amount("n_params", n_params)
    n_devices = check_int("n_devices", n_devices, minimum=1)
    stage = check_int("stage", stage)  # refuses 1.0 and True, which `in ZERO_STAGES` would let through
    check_choice("stage", stage, ZERO_STAGES)
    optimizer_bytes = check_amount("optimizer_bytes", optimizer_bytes, allow_zero=True)
    weight_bytes = check_amount("weight_bytes", weight_bytes)
    gradient_bytes = check_amount("gradient_bytes", gradient_bytes)
    w, g, k, n = weight_bytes, gradient_bytes, optimizer_bytes, n_devices
    per_param = {
        0: w + g + k,
        1: w + g + k / n,
        2: w + (g + k) / n,
        3: (w + g + k) / n,
    }[stage]
    return n_params * per_param
