"""utils.planning: GPUs needed (usable bytes per card), the GPT-3 memory calculator."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from utils.hardware import GPU_TABLE
from utils.planning import GPUS, TASKS, gpu_estimate, gpus_needed, memory_calculator, task_memory
from utils.shapes import GPT3_SHAPES
from utils.units import GB

params = st.floats(min_value=1.0, max_value=1e13, allow_nan=False, allow_infinity=False)


# ---- GPUs --------------------------------------------------------------------------------------------------


def test_course_gpus_are_rows_of_the_hardware_table():
    assert list(GPUS) == ["T4", "A100-40", "A100-80", "H100"]
    assert all(GPUS[k] is GPU_TABLE[k] for k in GPUS)
    assert GPUS["T4"].memory_gb == 16 and not GPUS["T4"].bf16  # the label of the table headers


def test_gpus_needed_examples():
    assert gpus_needed(1e9, "A100-80", "pretrain") == 1  # 24 GB
    assert gpus_needed(1e9, "T4", "pretrain") == 2  # 24 GB over 14.8e9 usable bytes per T4
    assert gpus_needed(1e9, "T4", "store") == 1
    # 4,200 GB over (81,090 MiB seen by torch - 1 GiB reserve) = 83.96e9 bytes per H100: 50.03 -> 51
    assert gpus_needed(175e9, "H100", "pretrain") == 51
    assert gpus_needed(175e9, "H100", "pretrain", reserve_bytes=0) == 50  # 4,200 / 85.03 = 49.4
    assert gpus_needed(175e9, "A100-80", "store", precision="fp16") == 5  # 350 GB / 83.9 GB = 4.2
    assert gpus_needed(20e9, "A100-80", "store") == 1  # 80 GB (74.5 GiB) fits an "80GB" (80 GiB) card
    est = gpu_estimate(7e9, "A100-40", "finetune")
    assert est.bytes_needed == 16 * 7e9 and est.n_gpus == 3
    assert task_memory(1e9, "store", precision="mixed") == 2 * GB


def test_gpu_estimate_uses_the_usable_bytes_exactly():
    usable = 81_049 * 2**20 - 2**30  # A100 80GB: torch's total_memory less the 1 GiB reserve
    assert gpu_estimate(1e9, "A100-80", "store").gpu_bytes == usable
    assert gpus_needed(usable / 4, "A100-80", "store") == 1  # fp32: exactly the usable bytes fit
    assert gpus_needed(usable / 4 * (1 + 1e-6), "A100-80", "store") == 2
    assert gpus_needed(1e9, "L4", "pretrain") == 2  # any card of the hardware table, not only GPUS


def test_memory_calculator():
    out = memory_calculator("GPT-3 175B", precision="mixed", batch_size=1, seq_len=2048, gpu="H100")
    assert out["weights"] == 2 * 174_600e6 and out["optimizer"] == 12 * 174_600e6
    assert out["total"] == pytest.approx(3_069.43e9, rel=1e-5)
    assert out["n_gpus"] == 37  # 3,069 GB / 83.96e9 usable bytes per H100 = 36.6
    assert len(GPT3_SHAPES) == 8


@settings(max_examples=100, deadline=None)
@given(n=params, gpu=st.sampled_from(sorted(GPUS)), task=st.sampled_from(TASKS))
def test_gpus_needed_hold_the_bytes(n, gpu, task):
    est = gpu_estimate(n, gpu, task)
    assert est.n_gpus >= 1
    assert est.n_gpus * est.gpu_bytes >= est.bytes_needed * (1 - 1e-9)
    assert (est.n_gpus - 1) * est.gpu_bytes < est.bytes_needed or est.n_gpus == 1
    assert gpus_needed(n, gpu, "store") <= gpus_needed(n, gpu, "finetune") <= gpus_needed(n, gpu, "pretrain")
