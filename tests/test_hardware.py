"""utils.hardware: one GPU table (memory as the card reports it, dense peaks, bf16, price), with sources."""

import pytest

from utils import flops, memory
from utils.hardware import (
    CONTEXT_RESERVE,
    COURSE_GPUS,
    GPU,
    GPU_TABLE,
    PEAK_DTYPES,
    PEAK_FLOPS,
    device_peak_flops,
    gpu_for_device_name,
    peak_flops_for,
)
from utils.units import GB, GiB, MiB


def test_the_cards_the_course_names_are_in_the_table():
    assert {"T4", "V100-16", "V100-32", "A10G", "L4", "A100-40", "A100-80", "H100", "H100-PCIe", "H200"} <= set(
        GPU_TABLE
    )
    assert set(COURSE_GPUS) <= set(GPU_TABLE)


def test_memory_is_what_the_card_reports_in_binary_units():
    a100 = GPU_TABLE["A100-80"]
    assert a100.memory_mib == 81_920 and a100.memory_bytes == 80 * GiB  # "80GB" is 80 GiB ...
    assert a100.memory_bytes / GB == pytest.approx(85.9, abs=0.05)  # ... about 85.9e9 bytes
    assert GPU_TABLE["H100"].memory_mib == 81_559  # an H100 "80GB" reports a little less than 80 GiB
    assert GPU_TABLE["T4"].memory_mib == 16 * 1024 * 15 // 16  # GDDR6: 1/16 kept for ECC
    for row in GPU_TABLE.values():
        assert row.memory_gb == row.name_gib  # the label in the product name
        assert row.memory_mib <= row.name_gib * 1024 * 1.05  # nobody reports more than the name says (+5%)
        if row.cuda_total_mib is not None:  # the driver keeps a share: torch sees at most the smi total
            assert row.memory_mib - 1_000 <= row.cuda_total_mib <= row.memory_mib, row.key
        assert row.usable_bytes() == row.cuda_total_bytes - CONTEXT_RESERVE


def test_usable_bytes_fall_back_to_the_smi_total_and_check_the_reserve():
    l4 = GPU_TABLE["L4"]
    assert l4.cuda_total_mib is None and l4.cuda_total_bytes == 23_034 * MiB
    assert l4.usable_bytes(0) == 23_034 * MiB
    with pytest.raises(ValueError, match="reserve_bytes"):
        l4.usable_bytes(-1)
    with pytest.raises(ValueError, match="reserve_bytes"):
        l4.usable_bytes(l4.cuda_total_bytes)


def test_every_figure_has_a_source():
    for row in GPU_TABLE.values():
        assert {"memory_mib", "peak_flops", "price_per_hour"} <= set(row.sources), row.key
        if row.cuda_total_mib is not None:
            assert "cuda_total_mib" in row.sources, row.key
        assert all(isinstance(v, str) and len(v) > 10 for v in row.sources.values())


def test_datasheet_peaks_dense_not_sparse():
    assert GPU_TABLE["H100"].peak() == 989e12 and GPU_TABLE["H100"].peak("fp8") == 1979e12
    assert GPU_TABLE["H100-PCIe"].peak() == 756e12
    assert GPU_TABLE["A100-40"].peak("tf32") == 156e12 and GPU_TABLE["A100-80"].peak("int8") == 624e12
    assert GPU_TABLE["L4"].peak() == 121e12
    t4 = GPU_TABLE["T4"]
    assert not t4.bf16 and t4.tensor_dtype == "fp16" and t4.peak() == 65e12 and t4.peak("bf16") is None
    for row in GPU_TABLE.values():  # tensor cores beat plain fp32 by about 4x (L4, A10) or more
        assert set(row.peak_flops) <= set(PEAK_DTYPES)
        assert row.peak() >= 3.9 * row.peak("fp32"), row.key
    with pytest.raises(ValueError, match="dtype"):
        GPU_TABLE["H100"].peak("fp64")


@pytest.mark.parametrize(
    "name, key",
    [
        ("NVIDIA H100 80GB HBM3", "H100"),
        ("NVIDIA H100 PCIe", "H100-PCIe"),
        ("NVIDIA H200", "H200"),
        ("NVIDIA A100-SXM4-40GB", "A100-40"),  # A100 40/80 share a pattern and their peaks
        ("NVIDIA A10G", "A10G"),
        ("Tesla V100-SXM2-16GB", "V100-16"),
        ("Tesla T4", "T4"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", None),  # not an L4
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_lookup_by_device_name(name, key):
    row = gpu_for_device_name(name)
    assert (row.key if row else None) == key
    assert peak_flops_for(name) == (GPU_TABLE[key].peak() if key else None)


def test_peak_table_is_derived_and_re_exported():
    assert flops.PEAK_FLOPS is PEAK_FLOPS and flops.peak_flops_for is peak_flops_for
    peak = {pattern.replace("\\b", ""): value for pattern, value, _ in PEAK_FLOPS}  # as notebook 06 reads it
    assert (peak["V100"], peak["A100"], peak["H100"]) == (125e12, 312e12, 989e12)
    assert peak_flops_for("NVIDIA H100 80GB HBM3", "tf32") == 494e12
    assert device_peak_flops("cpu") is None


def test_bad_rows_and_keys_are_refused():
    assert memory.GPUS["T4"] is GPU_TABLE["T4"]
    good = dict(key="X", name="X", pattern="X", name_gib=8, memory_mib=8192, cuda_total_mib=None,
                peak_flops={"fp32": 1e12, "fp16": 8e12}, bf16=False, price_per_hour=1.0,
                sources={"memory_mib": "a test", "peak_flops": "a test", "price_per_hour": "a test"})
    GPU(**good)
    for change, argument in [
        ({"cuda_total_mib": 9000}, "cuda_total_mib"),  # torch cannot see more than the card has
        ({"peak_flops": {"fp64": 1e12}}, "peak_flops"),
        ({"peak_flops": {"fp16": float("inf")}}, "peak_flops"),
        ({"bf16": True}, "bf16"),  # bf16 support without a bf16 peak
        ({"cuda_total_mib": 8000}, "sources"),  # a figure without a source
        ({"price_per_hour": 0}, "price_per_hour"),
        ({"memory_mib": True}, "memory_mib"),
    ]:
        with pytest.raises(ValueError, match=argument):
            GPU(**{**good, **change})
