"""The memory arithmetic of training, in one import: what lives in memory, how big it is, and how many GPUs
hold it. Notebooks and labs import from here; the arithmetic lives in one module per concept:

* :mod:`utils.model_states` -- bytes per parameter of **weights** (4 in fp32, 2 in fp16/bf16, ...),
  **gradients** (one per weight) and **optimizer states** (Adam: two moments per weight; SGD with
  momentum: one), and ZeRO's sharding of them over data-parallel devices;
* :mod:`utils.activations` -- **activations**, the tensors the forward pass keeps for the backward pass
  (Korthikanti et al. 2022 for GPT-3-style blocks, tensor by tensor for Llama-style ones), and the peak of
  a whole training step;
* :mod:`utils.planning` -- GPUs needed for a task, and a calculator over the GPT-3 family;
* :mod:`utils.shapes` -- the model shapes these count for (a Llama-style decoder, the GPT-3 family);
* :mod:`utils.hardware` -- the GPU table (memory as each card reports it, peaks, prices, sources);
* :mod:`utils.units` and :mod:`utils.display` -- byte units and plain-text output.

Units: ``GB`` is 10^9 bytes (model sizes, as in the lecture and the papers); ``GiB`` is 2^30 bytes (what
a GPU reports: an "80GB" card has 80 GiB, about 85.9 x 10^9 bytes).

Precision, three meanings, three spellings (one table each):

* a **number format** -- ``BYTES_PER_DTYPE``: "fp32", "fp16", "bf16", "int8", "fp8", "int4", "nf4";
* how the **model states** of a training run are counted -- ``PRECISIONS``: "fp32" (the lecture),
  "mixed" (ZeRO's 16 bytes/param), "mixed-hf" (the Hugging Face docs' 18 bytes/param);
* the **autocast** format of the forward pass -- "fp32", "bf16", "fp16", as ``utils.train.TrainConfig``
  spells it (``ACTIVATION_PRECISIONS`` also accepts the older "bf16-autocast" / "fp16-autocast").

No torch import: this works anywhere.
"""

from __future__ import annotations

from utils.activations import (  # noqa: F401 -- re-exported
    ACTIVATION_PRECISIONS,
    ATTENTION_KINDS,
    RECOMPUTE,
    ActivationMemory,
    PeakMemory,
    activation_memory,
    decoder_activation_memory,
    training_step_peak,
)
from utils.display import format_bytes, format_table  # noqa: F401 -- re-exported
from utils.hardware import GPU, GPU_TABLE  # noqa: F401 -- re-exported
from utils.model_states import (  # noqa: F401 -- re-exported
    ADAM8BIT_BLOCK_SIZE,
    ADAM8BIT_MIN_SIZE,
    ADAM8BIT_QMAP_BYTES,
    BYTES_PER_DTYPE,
    OPTIMIZERS,
    PRECISIONS,
    ZERO_STAGES,
    Optimizer,
    Precision,
    TrainingMemory,
    adam8bit_state_bytes,
    dtype_bytes,
    model_memory,
    model_state_bytes,
    training_memory,
    zero_memory_per_device,
)
from utils.planning import (  # noqa: F401 -- re-exported
    GPUS,
    TASKS,
    GpuEstimate,
    gpu_estimate,
    gpus_needed,
    memory_calculator,
    task_memory,
)
from utils.shapes import GPT3_SHAPES, GPT3_VOCAB_SIZE, SMOLLM2_135M, DecoderShape, GptShape  # noqa: F401
from utils.units import GB, GiB  # noqa: F401 -- re-exported
