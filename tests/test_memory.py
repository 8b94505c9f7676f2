"""utils.memory, the one import of the memory arithmetic: every name it exported before the split into
utils.model_states / activations / planning / display is still there, and is the same object."""

import subprocess
import sys

from utils import activations, display, hardware, memory, model_states, planning, shapes, units

# The public names utils/memory.py defined before it was split by concept (notebooks 03-05, lab 01, tests).
EXPORTED = {
    model_states: "ADAM8BIT_BLOCK_SIZE ADAM8BIT_MIN_SIZE ADAM8BIT_QMAP_BYTES BYTES_PER_DTYPE OPTIMIZERS PRECISIONS "
    "ZERO_STAGES Optimizer Precision TrainingMemory adam8bit_state_bytes dtype_bytes model_memory "
    "model_state_bytes training_memory zero_memory_per_device",
    activations: "ACTIVATION_PRECISIONS ATTENTION_KINDS RECOMPUTE ActivationMemory PeakMemory activation_memory "
    "decoder_activation_memory training_step_peak",
    shapes: "SMOLLM2_135M DecoderShape GPT3_SHAPES GPT3_VOCAB_SIZE GptShape",
    planning: "GPUS TASKS GpuEstimate gpu_estimate gpus_needed memory_calculator task_memory",
    hardware: "GPU",
    display: "format_bytes format_table",
    units: "GB GiB",
}


def test_every_name_is_re_exported_unchanged():
    for module, names in EXPORTED.items():
        for name in names.split():
            assert getattr(memory, name) is getattr(module, name), (module.__name__, name)


def test_the_memory_modules_import_without_torch():
    modules = "utils.memory, utils.model_states, utils.activations, utils.planning, utils.shapes, utils.flops"
    code = f"import sys; sys.modules['torch'] = None; import {modules}; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


def test_no_module_imports_the_facade():
    """The arithmetic modules import each other bottom-up; none goes back through utils.memory (no cycle)."""
    for module in (model_states, activations, planning, shapes, hardware, display, units):
        source = open(module.__file__).read()
        assert "utils.memory" not in source.replace("utils.memory_measure", ""), module.__name__
